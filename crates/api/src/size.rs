//! Human byte sizes (`512M`, `8G`, `1.5GiB`, `4096`) as used on the command
//! line and in the config file.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes that parses and prints with binary units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// A size string that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid size {input:?}: use a number with an optional unit K, M, G or T (binary units), e.g. 512M or 8G"
)]
pub struct SizeParseError {
    /// What was given.
    pub input: String,
}

impl ByteSize {
    /// One mebibyte.
    pub const MIB: u64 = 1 << 20;
    /// One gibibyte.
    pub const GIB: u64 = 1 << 30;

    /// Size from mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n * Self::MIB)
    }

    /// Size from gibibytes.
    pub const fn gib(n: u64) -> Self {
        Self(n * Self::GIB)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The size in whole mebibytes, rounded down.
    pub const fn as_mib(self) -> u64 {
        self.0 / Self::MIB
    }
}

impl FromStr for ByteSize {
    type Err = SizeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SizeParseError {
            input: s.to_string(),
        };
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(err());
        }
        let unit = unit.trim().to_ascii_lowercase();
        let mult: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            _ => return Err(err()),
        };
        if unit == "b" || unit.is_empty() {
            return num.parse::<u64>().map(ByteSize).map_err(|_| err());
        }
        let value: f64 = num.parse().map_err(|_| err())?;
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(err());
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("T", 1 << 40),
            ("G", 1 << 30),
            ("M", 1 << 20),
            ("K", 1 << 10),
        ];
        for (name, mult) in UNITS {
            if self.0 >= mult {
                if self.0.is_multiple_of(mult) {
                    return write!(f, "{}{}", self.0 / mult, name);
                }
                return write!(f, "{:.1}{}", self.0 as f64 / mult as f64, name);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("512M".parse::<ByteSize>().unwrap(), ByteSize::mib(512));
        assert_eq!("8G".parse::<ByteSize>().unwrap(), ByteSize::gib(8));
        assert_eq!("8GiB".parse::<ByteSize>().unwrap(), ByteSize::gib(8));
        assert_eq!("1.5g".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!("1k".parse::<ByteSize>().unwrap(), ByteSize(1024));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "G", "12X", "-1G", "1.2.3M", "ten"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(ByteSize::gib(8).to_string(), "8G");
        assert_eq!(ByteSize::mib(1536).to_string(), "1.5G");
        assert_eq!(ByteSize(10).to_string(), "10B");
    }
}
