//! The boot timings the daemon logs on every start (`VM running` with
//! `request_to_instance_start_us`, `vmm_startup_us`, `instance_start_us`,
//! `guest_boot_us`, `request_to_ready_us`): `guest_e2e` and `make bench-boot`.

/// One `VM running` line of the daemon log, in milliseconds.
pub struct Timing {
    /// Request to `InstanceStart` sent, minus the VMM's start-up.
    pub banger_ms: f64,
    /// Spawn to API socket.
    pub vmm_ms: f64,
    /// `InstanceStart` sent to acknowledged (the front starts QEMU).
    pub instance_start_ms: f64,
    /// `InstanceStart` acknowledged to the guest answering.
    pub guest_ms: f64,
    /// Request to ready.
    pub total_ms: f64,
}

/// Every `VM running` line of `log`, in order.
pub fn timings(log: &str) -> Vec<Timing> {
    let field = |line: &str, key: &str| -> Option<f64> {
        // ` key=`: `instance_start_us` also ends `request_to_instance_start_us`.
        let start = line.find(&format!(" {key}="))? + key.len() + 2;
        let v: u64 = line[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        Some(v as f64 / 1000.0)
    };
    log.lines()
        .filter(|l| l.contains("VM running"))
        .filter_map(|l| {
            let to_start = field(l, "request_to_instance_start_us")?;
            let vmm = field(l, "vmm_startup_us")?;
            let ack = field(l, "instance_start_us")?;
            let boot = field(l, "guest_boot_us")?;
            Some(Timing {
                banger_ms: to_start - vmm,
                vmm_ms: vmm,
                instance_start_ms: ack,
                guest_ms: boot,
                total_ms: field(l, "request_to_ready_us")?,
            })
        })
        .collect()
}
