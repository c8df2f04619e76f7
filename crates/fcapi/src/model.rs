//! Introspection traits implemented by every API model.
//!
//! Firecracker's OpenAPI description names each request/response body a
//! *definition*. [`ApiModel`] lets code (chiefly the spec-conformance test)
//! ask a Rust type which definition it encodes, which JSON fields it knows and
//! which of them are required, without parsing Rust source. [`ApiEnum`] does
//! the same for string enums. The lists are written by hand next to each type
//! and checked against serde's actual behaviour by the crate's tests, so they
//! cannot drift from the derive attributes.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A JSON object type of the Firecracker API.
pub trait ApiModel: Serialize + DeserializeOwned {
    /// Name of the matching definition in Firecracker's OpenAPI description.
    const DEFINITION: &'static str;
    /// JSON field names in declaration order (the order serde lists them in
    /// its "expected one of" error messages, which Firecracker returns verbatim).
    const FIELDS: &'static [&'static str];
    /// Fields that must be present when deserializing.
    const REQUIRED: &'static [&'static str];
    /// Whether unknown fields are refused (`deny_unknown_fields`).
    const DENIES_UNKNOWN: bool = true;

    /// A value with every optional field set, used to check [`Self::FIELDS`]
    /// against what serde actually serializes.
    fn sample() -> Self;
}

/// A string enum of the Firecracker API.
pub trait ApiEnum: Sized + Copy + Serialize + DeserializeOwned + 'static {
    /// Every variant, in declaration order.
    const ALL: &'static [Self];

    /// The JSON string of this variant.
    fn as_str(self) -> &'static str;

    /// The JSON strings of all variants, in declaration order.
    fn values() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.as_str()).collect()
    }
}

/// Implements [`ApiEnum`] and `Display` for a fieldless enum whose serde
/// names are given next to each variant.
macro_rules! api_enum {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $crate::model::ApiEnum for $ty {
            const ALL: &'static [Self] = &[$(<$ty>::$variant),+];

            fn as_str(self) -> &'static str {
                match self {
                    $(<$ty>::$variant => $name),+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::model::ApiEnum::as_str(*self))
            }
        }
    };
}

pub(crate) use api_enum;
