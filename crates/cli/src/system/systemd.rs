//! `systemctl`, when systemd runs: whether it is usable here, unit state,
//! enable/start/stop. Every call is argv-only; absence is reported, never
//! hidden.

use std::path::Path;
use std::process::Command;

/// How to reach systemd.
#[derive(Debug, Clone)]
pub struct Systemd {
    /// `None` when systemd is not usable, with the reason.
    unusable: Option<String>,
}

impl Systemd {
    /// Probe this host: `systemctl` on `$PATH` and `/run/systemd/system`
    /// (systemd as PID 1).
    pub fn probe() -> Systemd {
        let has_ctl = Command::new("systemctl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let unusable = if !has_ctl {
            Some("systemctl is not installed".to_string())
        } else if !Path::new("/run/systemd/system").is_dir() {
            Some("systemd is not running as PID 1 here".to_string())
        } else {
            None
        };
        Systemd { unusable }
    }

    /// Why systemd cannot be used, if it cannot.
    pub fn unusable(&self) -> Option<&str> {
        self.unusable.as_deref()
    }

    fn run(&self, args: &[&str]) -> String {
        if let Some(why) = &self.unusable {
            return format!("skipped `systemctl {}`: {why}", args.join(" "));
        }
        match Command::new("systemctl").args(args).output() {
            Ok(o) if o.status.success() => format!("systemctl {}: ok", args.join(" ")),
            Ok(o) => format!(
                "systemctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run systemctl: {e}"),
        }
    }

    /// daemon-reload, then enable and start `units`.
    pub fn enable_now(&self, units: &[&str]) -> String {
        let reload = self.run(&["daemon-reload"]);
        let mut args = vec!["enable", "--now"];
        args.extend_from_slice(units);
        format!("{reload}; {}", self.run(&args))
    }

    /// `systemd-tmpfiles --create FILE`: apply a tmpfiles.d file now
    /// (systemd applies it at every boot).
    pub fn tmpfiles_create(&self, file: &Path) -> String {
        if let Some(why) = &self.unusable {
            return format!(
                "skipped `systemd-tmpfiles --create {}`: {why}",
                file.display()
            );
        }
        match Command::new("systemd-tmpfiles")
            .arg("--create")
            .arg(file)
            .output()
        {
            Ok(o) if o.status.success() => {
                format!("systemd-tmpfiles --create {}: ok", file.display())
            }
            Ok(o) => format!(
                "systemd-tmpfiles --create {} failed: {}",
                file.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run systemd-tmpfiles: {e}"),
        }
    }

    /// Stop and disable `units`, then daemon-reload.
    pub fn disable_now(&self, units: &[&str]) -> String {
        let mut args = vec!["disable", "--now"];
        args.extend_from_slice(units);
        let r = self.run(&args);
        format!("{r}; {}", self.run(&["daemon-reload"]))
    }

    /// Restart `units` (in order).
    pub fn restart(&self, units: &[&str]) -> Result<String, String> {
        if let Some(why) = &self.unusable {
            return Err(why.clone());
        }
        let mut args = vec!["restart"];
        args.extend_from_slice(units);
        let out = Command::new("systemctl")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run systemctl: {e}"))?;
        if out.status.success() {
            Ok(format!("restarted {}", units.join(" and ")))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// `systemctl is-active <unit>` (e.g. `active`, `inactive`, `failed`),
    /// or why it cannot be known.
    pub fn state(&self, unit: &str) -> String {
        if let Some(why) = &self.unusable {
            return format!("unknown ({why})");
        }
        match Command::new("systemctl").args(["is-active", unit]).output() {
            Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            Err(e) => format!("unknown (cannot run systemctl: {e})"),
        }
    }
}
