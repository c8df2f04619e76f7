//! Validation shared by the CLI and the daemon.

use crate::rpc::{ErrorKind, RpcError};
use crate::size::ByteSize;

/// Longest VM name (a DNS label).
pub const MAX_NAME_LEN: usize = 63;
/// Most vCPUs Firecracker accepts.
pub const MAX_VCPUS: u32 = 32;
/// Smallest guest memory banger accepts, in MiB.
pub const MIN_MEMORY_MIB: u32 = 128;
/// Largest guest memory banger accepts, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u32 = 1 << 20;
/// Longest wait `vm stop --timeout` / `daemon.stop_timeout_secs` allows
/// between Ctrl-Alt-Del and SIGKILL (1 hour).
pub const MAX_STOP_TIMEOUT_SECS: u64 = 3600;
/// Largest root or work disk banger creates (16 TiB). An image's ext4 may
/// allow less (its block size and `64bit` feature); the daemon checks that
/// too.
pub const MAX_DISK_BYTES: u64 = 16 << 40;
/// Most lines `vm logs --tail` returns.
pub const MAX_LOG_TAIL: u32 = 10_000;

fn invalid(message: String) -> RpcError {
    RpcError::new(ErrorKind::InvalidArgument, message)
}

/// Check a stop timeout in seconds (0–3600).
pub fn stop_timeout_secs(n: u64) -> Result<(), RpcError> {
    if n <= MAX_STOP_TIMEOUT_SECS {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid stop timeout {n} s: use 0 to {MAX_STOP_TIMEOUT_SECS} seconds (the wait between Ctrl-Alt-Del and kill)"
        )))
    }
}

/// Check a disk size (`what` is "disk" or "work disk"): more than 0 and at
/// most [`MAX_DISK_BYTES`].
pub fn disk_size(what: &str, size: ByteSize) -> Result<(), RpcError> {
    if size.bytes() == 0 || size.bytes() > MAX_DISK_BYTES {
        return Err(invalid(format!(
            "invalid {what} size {size}: use more than 0 and at most {} (e.g. 20G)",
            ByteSize(MAX_DISK_BYTES)
        )));
    }
    Ok(())
}

/// Check a `vm logs` line count (1–10000).
pub fn log_tail(n: u32) -> Result<(), RpcError> {
    if (1..=MAX_LOG_TAIL).contains(&n) {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid line count {n}: use 1 to {MAX_LOG_TAIL}"
        )))
    }
}

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

/// Check a memory size as given (`--memory`, `vm.memory`) and turn it into
/// whole MiB. The error names the value as parsed, with its unit, so a
/// bare number (bytes) is seen for what it is.
pub fn memory(size: ByteSize) -> Result<u32, RpcError> {
    let given = if size.bytes() < 1024 {
        format!("{} B", size.bytes())
    } else {
        format!("{size} ({} bytes)", size.bytes())
    };
    let invalid = |msg: String| Err(RpcError::new(ErrorKind::InvalidArgument, msg));
    if size.bytes() < u64::from(MIN_MEMORY_MIB) * ByteSize::MIB {
        return invalid(format!(
            "memory {given} is below the minimum {MIN_MEMORY_MIB} MiB; sizes take a unit: 512M, 2G"
        ));
    }
    if size.as_mib() > u64::from(MAX_MEMORY_MIB) {
        return invalid(format!(
            "memory {given} is above the maximum 1T; sizes take a unit: 512M, 2G"
        ));
    }
    let mib = size.as_mib() as u32;
    memory_mib(mib).map(|()| mib)
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
        let e = memory(ByteSize(1)).unwrap_err().message;
        assert!(
            e.contains("memory 1 B is below the minimum 128 MiB") && e.contains("512M"),
            "{e}"
        );
        let e = memory("100K".parse().unwrap()).unwrap_err().message;
        assert!(e.contains("memory 100K (102400 bytes)"), "{e}");
        let e = memory(ByteSize(2 << 40)).unwrap_err().message;
        assert!(e.contains("memory 2T") && e.contains("maximum 1T"), "{e}");
        assert_eq!(memory(ByteSize::mib(128)), Ok(128));
        assert_eq!(memory(ByteSize::gib(1024)), Ok(1 << 20));
        assert!(memory_mib(512).is_ok());
    }

    #[test]
    fn ranges() {
        assert!(stop_timeout_secs(0).is_ok());
        assert!(stop_timeout_secs(3600).is_ok());
        let e = stop_timeout_secs(u64::MAX).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("0 to 3600"), "{}", e.message);
        assert!(disk_size("disk", ByteSize::gib(20)).is_ok());
        assert!(disk_size("disk", ByteSize(16 << 40)).is_ok());
        assert!(disk_size("disk", ByteSize((16 << 40) + 1)).is_err());
        assert!(disk_size("work disk", ByteSize(0)).is_err());
        let e = disk_size("work disk", ByteSize(u64::MAX)).unwrap_err();
        assert!(e.message.contains("at most 16T"), "{}", e.message);
        assert!(log_tail(0).is_err());
        assert!(log_tail(1).is_ok());
        assert!(log_tail(10_000).is_ok());
        assert!(log_tail(10_001).is_err());
        assert!(memory_mib(u32::MAX).is_err());
        assert!(vcpus(u32::MAX).is_err());
    }

    #[test]
    fn image_names() {
        assert!(image_name("debian-12.5_x").is_ok());
        assert!(image_name("../x").is_err());
        assert!(image_name("a/b").is_err());
        assert!(image_name("").is_err());
    }
}
