//! Block devices (`/drives`): Firecracker's rules for the drive list.
//!
//! - The backing file is opened at `PUT` (read-only when `is_read_only`), so
//!   a missing file fails the call with its path in the message.
//! - At most one root device, kept first in the list; re-`PUT` of an existing
//!   id replaces it in place.
//! - `path_on_host` and `socket` (vhost-user) are mutually exclusive and one
//!   is required ("Invalid block config.").

use std::fs::{File, OpenOptions};
use std::path::Path;

use banger_fcapi::{Drive, PartialDrive};

use crate::fault::Fault;

const PREFIX: &str = "Drive config error: Unable to create the virtio block device";

/// One configured drive and its open backing file.
#[derive(Debug)]
pub struct BlockDevice {
    /// Configuration with defaults filled in.
    pub config: Drive,
    file: Option<File>,
}

impl BlockDevice {
    fn open(config: Drive) -> Result<Self, Fault> {
        let config = config.with_defaults();
        let file = match (&config.path_on_host, &config.socket) {
            (Some(path), None) => Some(open_backing_file(
                path,
                config.is_read_only.unwrap_or(false),
            )?),
            (None, Some(socket)) => {
                // vhost-user: the simulator only requires the backend socket to exist.
                std::fs::metadata(socket).map_err(|e| {
                    Fault::bad_request(format!("{PREFIX}: Vhost user backend error: {e} {socket}"))
                })?;
                None
            }
            _ => {
                return Err(Fault::bad_request(format!(
                    "{PREFIX}: Invalid block config."
                )));
            }
        };
        Ok(Self { config, file })
    }

    /// Whether the backing file can still be read through the open descriptor.
    pub fn readable(&self) -> bool {
        use std::os::unix::fs::FileExt;
        match &self.file {
            Some(file) => file.read_at(&mut [0u8; 1], 0).is_ok(),
            None => true,
        }
    }
}

fn open_backing_file(path: &str, read_only: bool) -> Result<File, Fault> {
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(Path::new(path))
        .map_err(|e| {
            Fault::bad_request(format!(
                "{PREFIX}: Virtio backend error: Error manipulating the backing file: {e} {path}"
            ))
        })
}

/// The drive list, root device first.
#[derive(Debug, Default)]
pub struct BlockDevices {
    list: Vec<BlockDevice>,
}

impl BlockDevices {
    fn position(&self, id: &str) -> Option<usize> {
        self.list.iter().position(|d| d.config.drive_id == id)
    }

    fn has_root(&self) -> bool {
        self.list.first().is_some_and(|d| d.config.is_root_device)
    }

    /// Adds or replaces a drive (`PUT /drives/{id}`).
    pub fn insert(&mut self, config: Drive) -> Result<(), Fault> {
        let is_root = config.is_root_device;
        let position = self.position(&config.drive_id);
        if is_root && self.has_root() && position != Some(0) {
            return Err(Fault::bad_request(
                "Drive config error: A root block device already exists!",
            ));
        }
        let device = BlockDevice::open(config)?;
        match position {
            None if is_root => self.list.insert(0, device),
            None => self.list.push(device),
            Some(index) => {
                self.list[index] = device;
                if index != 0 && is_root {
                    self.list.swap(0, index);
                }
            }
        }
        Ok(())
    }

    /// Applies `PATCH /drives/{id}` (post-boot).
    pub fn update(&mut self, update: &PartialDrive) -> Result<(), Fault> {
        // Approximate text: not recorded.
        let index = self.position(&update.drive_id).ok_or_else(|| {
            Fault::bad_request(format!(
                "Drive config error: Error during drive update (patch): Invalid drive id: {}",
                update.drive_id
            ))
        })?;
        let device = &mut self.list[index];
        if let Some(path) = &update.path_on_host {
            device.file = Some(open_backing_file(
                path,
                device.config.is_read_only.unwrap_or(false),
            )?);
            device.config.path_on_host = Some(path.clone());
        }
        if update.rate_limiter.is_some() {
            device.config.rate_limiter = update.rate_limiter;
        }
        Ok(())
    }

    /// Removes a drive (hot-unplug); false when the id is unknown.
    pub fn remove(&mut self, id: &str) -> bool {
        self.position(id)
            .map(|index| self.list.remove(index))
            .is_some()
    }

    /// The drives in order.
    pub fn iter(&self) -> impl Iterator<Item = &BlockDevice> {
        self.list.iter()
    }

    /// Configurations in order (as `GET /vm/config` lists them).
    pub fn configs(&self) -> Vec<Drive> {
        self.list.iter().map(|d| d.config.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_rules_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"y").unwrap();
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        let mut drives = BlockDevices::default();
        drives.insert(Drive::new("data", b, false)).unwrap();
        drives.insert(Drive::new("root", a, true)).unwrap();
        assert_eq!(drives.configs()[0].drive_id, "root");
        let err = drives.insert(Drive::new("second", b, true)).unwrap_err();
        assert_eq!(
            err.message,
            "Drive config error: A root block device already exists!"
        );
        drives
            .insert(Drive::new("root", a, true).read_only(true))
            .unwrap();
        assert_eq!(drives.configs()[0].is_read_only, Some(true));
        let missing = dir.path().join("missing");
        let err = drives
            .insert(Drive::new("x", missing.to_str().unwrap(), false))
            .unwrap_err();
        assert!(err.message.ends_with(&format!(
            "No such file or directory (os error 2) {}",
            missing.display()
        )));
    }
}
