//! The virtio-mem device (`/hotplug/memory`): configured before boot, resized after.
//!
//! Nothing was recorded for it; sizes are checked with Firecracker's
//! documented rules (block a power of two ≥ 2 MiB, slot ≥ 128 MiB and a
//! multiple of the block, total a multiple of the slot) and the texts are
//! approximate. The simulated guest plugs whatever is requested at once.

use banger_fcapi::{MemoryHotplugConfig, MemoryHotplugStatus};

use crate::fault::Fault;

/// A configured memory hotplug device.
#[derive(Debug, Clone, Copy)]
pub struct MemoryHotplug {
    /// Configuration with defaults filled in.
    pub config: MemoryHotplugConfig,
    plugged_mib: u64,
}

impl MemoryHotplug {
    /// Validates a `PUT /hotplug/memory` body.
    pub fn new(config: MemoryHotplugConfig) -> Result<Self, Fault> {
        let error =
            |detail: &str| Fault::bad_request(format!("Memory hotplug config error: {detail}"));
        let block = config.block_size_mib.unwrap_or(2);
        let slot = config.slot_size_mib.unwrap_or(128);
        if block < 2 || !block.is_power_of_two() {
            return Err(error("Block size must be a power of 2 and at least 2 MiB"));
        }
        if slot < 128 || !slot.is_multiple_of(block) {
            return Err(error(
                "Slot size must be at least 128 MiB and a multiple of the block size",
            ));
        }
        if config
            .total_size_mib
            .is_some_and(|total| !total.is_multiple_of(slot))
        {
            return Err(error("Total size must be a multiple of the slot size"));
        }
        Ok(Self {
            config: MemoryHotplugConfig {
                total_size_mib: config.total_size_mib,
                slot_size_mib: Some(slot),
                block_size_mib: Some(block),
            },
            plugged_mib: 0,
        })
    }

    /// `GET /hotplug/memory`.
    pub fn status(&self) -> MemoryHotplugStatus {
        MemoryHotplugStatus {
            total_size_mib: self.config.total_size_mib,
            slot_size_mib: self.config.slot_size_mib,
            block_size_mib: self.config.block_size_mib,
            plugged_size_mib: Some(self.plugged_mib),
            requested_size_mib: Some(self.plugged_mib),
        }
    }

    /// `PATCH /hotplug/memory`.
    pub fn resize(&mut self, requested_mib: u64) -> Result<(), Fault> {
        let block = self.config.block_size_mib.unwrap_or(2);
        let too_big = self
            .config
            .total_size_mib
            .is_some_and(|total| requested_mib > total);
        if too_big || !requested_mib.is_multiple_of(block) {
            return Err(Fault::bad_request(format!(
                "Memory hotplug update error: Invalid requested size {requested_mib} MiB"
            )));
        }
        self.plugged_mib = requested_mib;
        Ok(())
    }
}

/// `GET`/`PATCH /hotplug/memory` without a device.
pub fn no_memory_hotplug() -> Fault {
    Fault::bad_request("Internal VMM error: Memory hotplug device not found")
}
