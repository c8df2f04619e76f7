//! Guest MAC addresses as Firecracker parses and prints them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A MAC address. Parses `aa:bb:cc:dd:ee:ff` (any case), prints lower-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// The string is not six `:`-separated pairs of hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("The provided MAC address is invalid.")]
pub struct MacAddrError;

impl FromStr for MacAddr {
    type Err = MacAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(MacAddrError);
        }
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(parts) {
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(MacAddrError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacAddrError)?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_prints_lower() {
        let mac: MacAddr = "06:00:AC:10:00:02".parse().unwrap();
        assert_eq!(mac.to_string(), "06:00:ac:10:00:02");
        assert!("zz:00:00:00:00:01".parse::<MacAddr>().is_err());
        assert!("06:00:ac:10:00".parse::<MacAddr>().is_err());
        assert!("6:00:ac:10:00:02".parse::<MacAddr>().is_err());
    }

    #[test]
    fn serde_error_is_firecrackers() {
        let err = serde_json::from_str::<MacAddr>("\"nope\"").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("The provided MAC address is invalid.")
        );
    }
}
