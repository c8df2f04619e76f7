//! The simulated guest: its kernel command line and serial console.
//!
//! No guest code runs. After InstanceStart the "guest" prints a few boot
//! lines on its 8250 serial console, which (as in Firecracker) is the
//! process's stdout unless `PUT /serial` named a file. Like a real kernel it
//! prints only when the command line has `console=ttyS0`; Firecracker's
//! default command line disables the UART, so nothing appears then.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};

use banger_fcapi::{Drive, MachineConfiguration};

use crate::fault::Fault;
use crate::log::write_stdout;

/// Where serial output goes.
#[derive(Debug)]
enum SerialTarget {
    Stdout,
    File(File),
    Silent,
}

/// The guest's serial console, shared with the lifecycle timers.
#[derive(Debug, Clone)]
pub struct SerialConsole {
    target: Arc<Mutex<SerialTarget>>,
}

impl SerialConsole {
    /// Opens the console for a guest booted with `cmdline`; `serial_out_path`
    /// comes from `PUT /serial`.
    pub fn open(cmdline: &str, serial_out_path: Option<&str>) -> Result<Self, Fault> {
        let uses_uart = cmdline
            .split_whitespace()
            .any(|arg| arg.starts_with("console=ttyS0"));
        let target = match (uses_uart, serial_out_path) {
            (false, _) => SerialTarget::Silent,
            (true, None) => SerialTarget::Stdout,
            (true, Some(path)) => SerialTarget::File(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(|e| {
                        // Approximate text: not recorded.
                        Fault::bad_request(format!(
                            "Start microvm error: Error creating serial device: {e}"
                        ))
                    })?,
            ),
        };
        Ok(Self {
            target: Arc::new(Mutex::new(target)),
        })
    }

    /// Prints one console line with a kernel-style timestamp.
    pub fn kernel_line(&self, seconds: f64, text: &str) {
        self.raw_line(&format!("[{seconds:12.6}] {text}"));
    }

    /// Prints one console line as is.
    pub fn raw_line(&self, text: &str) {
        let line = format!("{text}\r\n");
        let mut target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        // Serial output that cannot be written is lost, as with a real UART.
        let _ = match &mut *target {
            SerialTarget::Stdout => write_stdout(line.as_bytes()),
            SerialTarget::File(file) => file.write_all(line.as_bytes()),
            SerialTarget::Silent => Ok(()),
        };
    }
}

/// The command line the guest kernel receives: the configured (or default)
/// arguments plus what Firecracker appends for the root device and PCI.
pub fn kernel_cmdline(boot_args: &str, drives: &[Drive], enable_pci: bool) -> String {
    let mut cmdline = boot_args.trim().to_string();
    if let Some(root) = drives.iter().find(|d| d.is_root_device) {
        let mode = if root.is_read_only.unwrap_or(false) {
            "ro"
        } else {
            "rw"
        };
        match &root.partuuid {
            Some(uuid) => cmdline.push_str(&format!(" root=PARTUUID={uuid} {mode}")),
            None => cmdline.push_str(&format!(" root=/dev/vda {mode}")),
        }
    }
    if !enable_pci {
        cmdline.push_str(" pci=off");
    }
    cmdline
}

/// Prints the simulated boot messages.
pub fn print_boot(
    console: &SerialConsole,
    instance_id: &str,
    cmdline: &str,
    machine: &MachineConfiguration,
    drives: &[Drive],
) {
    console.kernel_line(
        0.0,
        "Linux version 6.1.0-fcsim (banger-fcsim simulated guest) #1 SMP",
    );
    console.kernel_line(0.0, &format!("Command line: {cmdline}"));
    console.kernel_line(
        0.0,
        &format!(
            "Memory: {}MiB, {} vCPUs",
            machine.mem_size_mib, machine.vcpu_count
        ),
    );
    for (index, drive) in drives.iter().enumerate() {
        let name = char::from(b'a' + (index % 26) as u8);
        console.kernel_line(
            0.05,
            &format!("virtio_blk virtio{index}: [vd{name}] {}", drive.drive_id),
        );
    }
    console.kernel_line(0.1, "fcsim: this guest is simulated; no kernel code runs");
    console.kernel_line(0.2, "Run /sbin/init as init process");
    console.raw_line(&format!("banger-fcsim guest {instance_id} is up"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_gets_root_and_pci_off() {
        let root = Drive::new("rootfs", "/r", true);
        assert_eq!(
            kernel_cmdline("console=ttyS0 reboot=k", std::slice::from_ref(&root), false),
            "console=ttyS0 reboot=k root=/dev/vda rw pci=off"
        );
        let ro = root.read_only(true);
        assert_eq!(kernel_cmdline("x", &[ro], true), "x root=/dev/vda ro");
    }

    #[test]
    fn console_is_silent_without_ttys0() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let console = SerialConsole::open("reboot=k", Some(path.to_str().unwrap())).unwrap();
        console.raw_line("hello");
        assert!(!path.exists());
        let console = SerialConsole::open("console=ttyS0", Some(path.to_str().unwrap())).unwrap();
        console.raw_line("hello");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello\r\n");
    }
}
