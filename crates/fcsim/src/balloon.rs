//! The balloon device: configuration before boot, target and statistics after.
//!
//! The simulated guest's balloon driver is always up, so post-boot updates
//! succeed and statistics report the balloon as fully inflated to its target.
//! Only "No balloon device found." was recorded; other texts are approximate.

use banger_fcapi::{Balloon, BalloonHintingStatus, BalloonStartCmd, BalloonStats, BalloonUpdate};

use crate::fault::Fault;

const PAGES_PER_MIB: u32 = 256;

/// The configured balloon device.
#[derive(Debug, Clone)]
pub struct BalloonDevice {
    /// Configuration with defaults filled in.
    pub config: Balloon,
    hinting: Option<BalloonHintingStatus>,
}

/// `GET /balloon` without a device.
pub fn no_balloon() -> Fault {
    Fault::bad_request("Balloon config error: No balloon device found.")
}

fn too_big(mem_size_mib: usize) -> Fault {
    Fault::bad_request(format!(
        "Balloon config error: Amount of pages requested cannot be greater than the total memory ({mem_size_mib} MiB)."
    ))
}

impl BalloonDevice {
    /// Validates a `PUT /balloon` body against the machine's memory.
    pub fn new(config: Balloon, mem_size_mib: usize) -> Result<Self, Fault> {
        if config.amount_mib as usize > mem_size_mib {
            return Err(too_big(mem_size_mib));
        }
        Ok(Self {
            config: config.with_defaults(),
            hinting: None,
        })
    }

    /// `PATCH /balloon`.
    pub fn update(&mut self, update: BalloonUpdate, mem_size_mib: usize) -> Result<(), Fault> {
        if update.amount_mib as usize > mem_size_mib {
            return Err(too_big(mem_size_mib));
        }
        self.config.amount_mib = update.amount_mib;
        Ok(())
    }

    /// `PATCH /balloon/statistics`: statistics cannot be switched on or off after boot.
    pub fn update_stats_interval(&mut self, interval_s: u16) -> Result<(), Fault> {
        let current = self.config.stats_polling_interval_s.unwrap_or(0);
        if (current == 0) != (interval_s == 0) {
            return Err(Fault::bad_request(
                "Balloon update error: Cannot enable or disable the statistics after boot.",
            ));
        }
        self.config.stats_polling_interval_s = Some(interval_s);
        Ok(())
    }

    /// `GET /balloon/statistics`.
    pub fn stats(&self, mem_size_mib: usize) -> Result<BalloonStats, Fault> {
        if self.config.stats_polling_interval_s.unwrap_or(0) == 0 {
            return Err(Fault::bad_request(
                "Internal VMM error: Balloon: Statistics for the balloon device are not enabled",
            ));
        }
        let mib = self.config.amount_mib;
        let total = (mem_size_mib as u64) << 20;
        let free = total.saturating_sub(u64::from(mib) << 20) / 2;
        Ok(BalloonStats {
            target_pages: mib * PAGES_PER_MIB,
            actual_pages: mib * PAGES_PER_MIB,
            target_mib: mib,
            actual_mib: mib,
            swap_in: Some(0),
            swap_out: Some(0),
            major_faults: Some(0),
            minor_faults: Some(0),
            free_memory: Some(free),
            total_memory: Some(total),
            available_memory: Some(free),
            disk_caches: Some(0),
            ..BalloonStats::default()
        })
    }

    /// `PATCH /balloon/hinting/start`.
    pub fn start_hinting(&mut self, _cmd: BalloonStartCmd) -> Result<(), Fault> {
        if !self.config.free_page_hinting.unwrap_or(false) {
            return Err(Fault::bad_request(
                "Balloon update error: Free page hinting is not enabled on the balloon device.",
            ));
        }
        let host_cmd = self.hinting.map_or(1, |h| h.host_cmd + 1);
        self.hinting = Some(BalloonHintingStatus {
            host_cmd,
            guest_cmd: Some(host_cmd),
        });
        Ok(())
    }

    /// `GET /balloon/hinting/status`.
    pub fn hinting_status(&self) -> Result<BalloonHintingStatus, Fault> {
        self.hinting.ok_or_else(|| {
            Fault::bad_request("Balloon update error: No free page hinting run has been started.")
        })
    }

    /// `PATCH /balloon/hinting/stop`.
    pub fn stop_hinting(&mut self) -> Result<(), Fault> {
        self.hinting_status().map(|_| ())
    }
}
