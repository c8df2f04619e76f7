//! Range and format checks Firecracker applies to API values.
//!
//! The messages are Firecracker's own, so the simulator can return them
//! verbatim and a client can refuse bad input before sending it.

use thiserror::Error;

use crate::machine::HugePages;

/// Firecracker's vCPU limit.
pub const MAX_VCPUS: u8 = 32;
/// Longest `--id` Firecracker accepts.
pub const MAX_INSTANCE_ID_LEN: usize = 64;
/// Smallest MTU the API accepts.
pub const MIN_MTU: u16 = 68;

/// A value Firecracker would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// `vcpu_count` is 0, above 32, or odd (and not 1) with SMT on.
    #[error(
        "The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even number if SMT is enabled."
    )]
    InvalidVcpuCount,
    /// `mem_size_mib` is 0 or not a multiple of the huge page size.
    #[error("The memory size (MiB) is either 0, or not a multiple of the configured page size.")]
    InvalidMemorySize,
    /// A path resource id (`drive_id`, `iface_id`, pmem `id`) is empty.
    #[error("The ID cannot be empty.")]
    EmptyResourceId,
    /// A path resource id has a character other than alphanumerics and `_`.
    #[error("API Resource IDs can only contain alphanumeric characters and underscores.")]
    InvalidResourceId,
    /// The `--id` of the process is malformed.
    #[error("Invalid instance ID: {0:?}")]
    InvalidInstanceId(InstanceIdError),
    /// `mtu` is below 68.
    #[error("The MTU must be between {MIN_MTU} and 65535, got {0}.")]
    InvalidMtu(u16),
    /// `guest_cid` is below 3 (the spec's minimum; Firecracker itself accepts 0 and 2).
    #[error("The guest CID must be at least 3, got {0}.")]
    InvalidGuestCid(u32),
}

/// Why an instance id (`--id`) is refused. The `Debug` form is Firecracker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceIdError {
    /// A character other than alphanumerics and `-`, and its index.
    InvalidChar(char, usize),
    /// Length outside the allowed range: (length, min, max).
    InvalidLen(usize, usize, usize),
}

/// Checks a vCPU count against Firecracker's rule (1..=32, 1 or even with SMT).
pub fn validate_vcpu_count(vcpu_count: u8, smt: bool) -> Result<(), ValidationError> {
    if vcpu_count == 0 || vcpu_count > MAX_VCPUS {
        return Err(ValidationError::InvalidVcpuCount);
    }
    if smt && vcpu_count > 1 && vcpu_count % 2 == 1 {
        return Err(ValidationError::InvalidVcpuCount);
    }
    Ok(())
}

/// Checks a memory size: not 0, and a multiple of 2 MiB with 2M huge pages.
pub fn validate_mem_size_mib(
    mem_size_mib: usize,
    huge_pages: HugePages,
) -> Result<(), ValidationError> {
    let divisor = match huge_pages {
        HugePages::Hugetlbfs2M => 2,
        HugePages::None | HugePages::Transparent => 1,
    };
    if mem_size_mib == 0 || !mem_size_mib.is_multiple_of(divisor) {
        return Err(ValidationError::InvalidMemorySize);
    }
    Ok(())
}

/// Checks an id used in an API path: non-empty, alphanumerics and `_` only.
pub fn validate_resource_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::EmptyResourceId);
    }
    if !id.chars().all(|c| c == '_' || c.is_alphanumeric()) {
        return Err(ValidationError::InvalidResourceId);
    }
    Ok(())
}

/// Checks a process id (`--id`): 1..=64 characters, alphanumerics and `-` only.
///
/// Note the opposite rule from [`validate_resource_id`]: `_` is refused here.
pub fn validate_instance_id(id: &str) -> Result<(), InstanceIdError> {
    let len = id.chars().count();
    if !(1..=MAX_INSTANCE_ID_LEN).contains(&len) {
        return Err(InstanceIdError::InvalidLen(len, 1, MAX_INSTANCE_ID_LEN));
    }
    match id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '-'))
    {
        Some((index, c)) => Err(InstanceIdError::InvalidChar(c, index)),
        None => Ok(()),
    }
}

/// Checks a network interface MTU against the spec's range (68..=65535).
pub fn validate_mtu(mtu: u16) -> Result<(), ValidationError> {
    if mtu < MIN_MTU {
        return Err(ValidationError::InvalidMtu(mtu));
    }
    Ok(())
}

/// Checks a vsock guest CID against the spec's minimum of 3.
///
/// Firecracker does not enforce this (0 and 2 were accepted, see OBSERVED.md);
/// clients should, because CIDs 0-2 are reserved by the vsock address family.
pub fn validate_guest_cid(guest_cid: u32) -> Result<(), ValidationError> {
    if guest_cid < 3 {
        return Err(ValidationError::InvalidGuestCid(guest_cid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_count_bounds() {
        assert!(validate_vcpu_count(1, false).is_ok());
        assert!(validate_vcpu_count(32, false).is_ok());
        assert!(validate_vcpu_count(1, true).is_ok());
        assert!(validate_vcpu_count(4, true).is_ok());
        assert_eq!(
            validate_vcpu_count(0, false),
            Err(ValidationError::InvalidVcpuCount)
        );
        assert_eq!(
            validate_vcpu_count(33, false),
            Err(ValidationError::InvalidVcpuCount)
        );
        assert_eq!(
            validate_vcpu_count(3, true),
            Err(ValidationError::InvalidVcpuCount)
        );
    }

    #[test]
    fn mem_size() {
        assert!(validate_mem_size_mib(128, HugePages::None).is_ok());
        assert!(validate_mem_size_mib(0, HugePages::None).is_err());
        assert!(validate_mem_size_mib(129, HugePages::Hugetlbfs2M).is_err());
        assert!(validate_mem_size_mib(130, HugePages::Hugetlbfs2M).is_ok());
    }

    #[test]
    fn resource_ids() {
        assert!(validate_resource_id("root_fs1").is_ok());
        assert_eq!(
            validate_resource_id(""),
            Err(ValidationError::EmptyResourceId)
        );
        assert_eq!(
            validate_resource_id("root-fs"),
            Err(ValidationError::InvalidResourceId)
        );
    }

    #[test]
    fn instance_ids_match_firecracker_debug_text() {
        assert!(validate_instance_id("banger-test1").is_ok());
        assert!(validate_instance_id(&"b".repeat(64)).is_ok());
        let err = validate_instance_id("bad_id").unwrap_err();
        assert_eq!(format!("{err:?}"), "InvalidChar('_', 3)");
        let err = validate_instance_id(&"a".repeat(65)).unwrap_err();
        assert_eq!(format!("{err:?}"), "InvalidLen(65, 1, 64)");
        let msg = ValidationError::InvalidInstanceId(err).to_string();
        assert_eq!(msg, "Invalid instance ID: InvalidLen(65, 1, 64)");
    }

    #[test]
    fn mtu_and_cid() {
        assert!(validate_mtu(68).is_ok());
        assert!(validate_mtu(67).is_err());
        assert!(validate_guest_cid(3).is_ok());
        assert!(validate_guest_cid(2).is_err());
    }
}
