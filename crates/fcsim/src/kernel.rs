//! "Is this a kernel?": the checks Firecracker's kernel loader makes at InstanceStart.
//!
//! x86_64 Firecracker first tries the image as an ELF `vmlinux`; when the ELF
//! magic is missing it tries a `bzImage`. The simulator checks the same
//! headers (nothing is loaded):
//! - ELF: 64-bit little-endian, x86_64, 56-byte program headers inside the
//!   file, entry address at or above 1 MiB (a user-space ELF fails here with
//!   "Invalid entry address", as recorded).
//! - bzImage: boot flag `0xAA55` at 0x1FE, `HdrS` at 0x202, boot protocol
//!   2.00 or later, `LOADED_HIGH`, and a payload after the setup sectors.
//!
//! [`test_kernel_image`] builds the smallest image that passes.

use std::fmt;

/// Lowest entry address a kernel may have (`HIMEM_START`).
const HIMEM_START: u64 = 0x10_0000;

/// Which loader refused the image, and why (linux-loader's wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelImageError {
    /// An ELF that is not a loadable x86_64 kernel.
    Elf(&'static str),
    /// Neither ELF nor a valid bzImage.
    BzImage(&'static str),
}

impl fmt::Display for KernelImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, reason) = match self {
            Self::Elf(reason) => ("ELF", reason),
            Self::BzImage(reason) => ("bzImage", reason),
        };
        write!(
            f,
            "System configuration error: Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: failed to load {kind} kernel image: Kernel Loader: {reason}"
        )
    }
}

fn u16_at(image: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        image.get(offset..offset + 2)?.try_into().ok()?,
    ))
}

fn u64_at(image: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        image.get(offset..offset + 8)?.try_into().ok()?,
    ))
}

/// Checks the first bytes of an image (`head`, at least 4 KiB when the file has them)
/// of total size `len`.
pub fn check_kernel_image(head: &[u8], len: u64) -> Result<(), KernelImageError> {
    if head.starts_with(b"\x7fELF") {
        check_elf(head, len)
    } else {
        check_bzimage(head, len)
    }
}

fn check_elf(image: &[u8], len: u64) -> Result<(), KernelImageError> {
    const BAD_MAGIC: KernelImageError = KernelImageError::Elf("Invalid ELF magic number");
    if image.len() < 64 || image[4] != 2 {
        return Err(BAD_MAGIC);
    }
    if image[5] != 1 {
        return Err(KernelImageError::Elf("Big endian ELF image"));
    }
    if u16_at(image, 18) != Some(62) {
        return Err(KernelImageError::Elf("Invalid ELF magic number"));
    }
    let entry = u64_at(image, 24).ok_or(BAD_MAGIC)?;
    let phoff = u64_at(image, 32).ok_or(BAD_MAGIC)?;
    let phentsize = u16_at(image, 54).ok_or(BAD_MAGIC)?;
    let phnum = u16_at(image, 56).ok_or(BAD_MAGIC)?;
    if phentsize != 56 {
        return Err(KernelImageError::Elf("Invalid program header size"));
    }
    if phoff.saturating_add(u64::from(phnum) * 56) > len {
        return Err(KernelImageError::Elf("Invalid program header offset"));
    }
    if entry < HIMEM_START {
        return Err(KernelImageError::Elf("Invalid entry address"));
    }
    Ok(())
}

fn check_bzimage(image: &[u8], len: u64) -> Result<(), KernelImageError> {
    const INVALID: KernelImageError = KernelImageError::BzImage("Invalid bzImage");
    if u16_at(image, 0x1FE) != Some(0xAA55) || image.get(0x202..0x206) != Some(b"HdrS") {
        return Err(INVALID);
    }
    let version = u16_at(image, 0x206).ok_or(INVALID)?;
    let loadflags = *image.get(0x211).ok_or(INVALID)?;
    if version < 0x0200 || loadflags & 0x01 == 0 {
        return Err(INVALID);
    }
    let setup_sects = match image.get(0x1F1).copied().ok_or(INVALID)? {
        0 => 4,
        n => u64::from(n),
    };
    if (setup_sects + 1) * 512 >= len {
        return Err(INVALID);
    }
    Ok(())
}

/// A 4 KiB fake `bzImage` the simulator accepts as a kernel, for tests that
/// need a `kernel_image_path` (one setup sector, boot protocol 2.15).
pub fn test_kernel_image() -> Vec<u8> {
    let mut image = vec![0u8; 4096];
    image[0x1F1] = 1;
    image[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    image[0x211] = 0x01;
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_bzimage_passes_zeros_fail() {
        let image = test_kernel_image();
        assert_eq!(check_kernel_image(&image, image.len() as u64), Ok(()));
        let zeros = vec![0u8; 4096];
        let err = check_kernel_image(&zeros, 4096).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("failed to load bzImage kernel image: Kernel Loader: Invalid bzImage")
        );
    }

    #[test]
    fn user_space_elf_has_invalid_entry() {
        let mut elf = vec![0u8; 128];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 62;
        elf[24..32].copy_from_slice(&0x1040u64.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54] = 56;
        let err = check_kernel_image(&elf, 128).unwrap_err();
        assert_eq!(err, KernelImageError::Elf("Invalid entry address"));
        elf[24..32].copy_from_slice(&0x0100_0000u64.to_le_bytes());
        assert_eq!(check_kernel_image(&elf, 128), Ok(()));
    }
}
