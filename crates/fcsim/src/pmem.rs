//! virtio-pmem devices (`/pmem`): like drives, backing files opened at `PUT`.
//!
//! No pmem exchange was recorded; the error texts here are approximations in
//! Firecracker's style.

use std::fs::{File, OpenOptions};

use banger_fcapi::{PartialPmem, Pmem};

use crate::fault::Fault;

/// One pmem device and its open backing file.
#[derive(Debug)]
struct PmemDevice {
    config: Pmem,
    _file: File,
}

/// The pmem device list in insertion order.
#[derive(Debug, Default)]
pub struct PmemDevices {
    list: Vec<PmemDevice>,
}

impl PmemDevices {
    /// Adds or replaces a device (`PUT /pmem/{id}`).
    pub fn insert(&mut self, mut config: Pmem) -> Result<(), Fault> {
        let read_only = config.read_only.unwrap_or(false);
        config.root_device.get_or_insert(false);
        config.read_only.get_or_insert(false);
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&config.path_on_host)
            .map_err(|e| {
                Fault::bad_request(format!(
                    "Pmem device error: Error accessing backing file: {e} {}",
                    config.path_on_host
                ))
            })?;
        let device = PmemDevice {
            config,
            _file: file,
        };
        match self
            .list
            .iter()
            .position(|d| d.config.id == device.config.id)
        {
            Some(index) => self.list[index] = device,
            None => self.list.push(device),
        }
        Ok(())
    }

    /// Applies `PATCH /pmem/{id}` (post-boot).
    pub fn update(&mut self, update: &PartialPmem) -> Result<(), Fault> {
        let device = self
            .list
            .iter_mut()
            .find(|d| d.config.id == update.id)
            .ok_or_else(|| {
                Fault::bad_request(format!(
                    "Pmem device error: Device with id {} not found",
                    update.id
                ))
            })?;
        if update.rate_limiter.is_some() {
            device.config.rate_limiter = update.rate_limiter;
        }
        Ok(())
    }

    /// Removes a device (hot-unplug); false when the id is unknown.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|d| d.config.id != id);
        self.list.len() != before
    }

    /// Configurations in order.
    pub fn configs(&self) -> Vec<Pmem> {
        self.list.iter().map(|d| d.config.clone()).collect()
    }
}
