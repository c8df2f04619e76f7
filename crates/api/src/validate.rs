//! Validation shared by the CLI and the daemon.

use crate::rpc::{ErrorKind, RpcError};

/// Longest VM name (a DNS label).
pub const MAX_NAME_LEN: usize = 63;
/// Most vCPUs Firecracker accepts.
pub const MAX_VCPUS: u32 = 32;
/// Smallest guest memory banger accepts, in MiB.
pub const MIN_MEMORY_MIB: u32 = 128;
/// Largest guest memory banger accepts, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u32 = 1 << 20;

/// Check that `name` is a DNS label: 1–63 characters of lower-case letters,
/// digits and `-`, starting with a letter and not ending with `-`.
pub fn vm_name(name: &str) -> Result<(), RpcError> {
    let bad = |why: &str| {
        Err(RpcError::new(
            ErrorKind::InvalidArgument,
            format!(
                "invalid VM name {name:?}: {why}; use 1-63 lower-case letters, digits or '-', starting with a letter (it becomes {name}.vm)"
            ),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 63 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("it must start with a lower-case letter");
    }
    if name.ends_with('-') {
        return bad("it must not end with '-'");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return bad(&format!("{c:?} is not allowed"));
    }
    Ok(())
}

/// Image names follow the same rule as VM names, plus `.` and `_`.
pub fn image_name(name: &str) -> Result<(), RpcError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(())
    } else {
        Err(RpcError::new(
            ErrorKind::InvalidArgument,
            format!(
                "invalid image name {name:?}: use 1-128 letters, digits, '-', '.' or '_', starting with a letter or digit"
            ),
        ))
    }
}

/// Check a vCPU count (1–32; Firecracker's own limit).
pub fn vcpus(n: u32) -> Result<(), RpcError> {
    if (1..=MAX_VCPUS).contains(&n) {
        Ok(())
    } else {
        Err(RpcError::new(
            ErrorKind::InvalidArgument,
            format!("invalid vCPU count {n}: use a number from 1 to {MAX_VCPUS}"),
        ))
    }
}

/// Check a memory size in MiB.
pub fn memory_mib(n: u32) -> Result<(), RpcError> {
    if (MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&n) {
        Ok(())
    } else {
        Err(RpcError::new(
            ErrorKind::InvalidArgument,
            format!(
                "invalid memory size {n} MiB: use at least {MIN_MEMORY_MIB}M and at most 1T (e.g. --memory 1G)"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_names() {
        for good in ["a", "dev", "dev-1", "a1b2", &"a".repeat(63)] {
            assert!(vm_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Dev",
            "1dev",
            "-dev",
            "dev-",
            "dev_1",
            "dev.vm",
            "dé",
            &"a".repeat(64),
        ] {
            let e = vm_name(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(e.message.contains("invalid VM name"), "{}", e.message);
        }
    }

    #[test]
    fn resources() {
        assert!(vcpus(0).is_err());
        assert!(vcpus(1).is_ok());
        assert!(vcpus(32).is_ok());
        assert!(vcpus(33).is_err());
        assert!(memory_mib(64).is_err());
        assert!(memory_mib(512).is_ok());
    }

    #[test]
    fn image_names() {
        assert!(image_name("debian-12.5_x").is_ok());
        assert!(image_name("../x").is_err());
        assert!(image_name("a/b").is_err());
        assert!(image_name("").is_err());
    }
}
