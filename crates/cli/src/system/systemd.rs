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

    /// Stop and disable `units`, forget their failed state (a unit that
    /// failed stays loaded, and listed, until then), then daemon-reload.
    pub fn disable_now(&self, units: &[&str]) -> String {
        let mut args = vec!["disable", "--now"];
        args.extend_from_slice(units);
        let r = self.run(&args);
        let mut reset = vec!["reset-failed"];
        reset.extend_from_slice(units);
        // Nothing to reset is the usual case; its "not loaded" is no failure.
        let _ = self.run(&reset);
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

    /// What systemd says of `unit` (`systemctl show -p
    /// ActiveState,SubState,StatusText,MainPID`), or why it cannot be asked.
    pub fn show(&self, unit: &str) -> Result<UnitState, String> {
        if let Some(why) = &self.unusable {
            return Err(why.clone());
        }
        let out = Command::new("systemctl")
            .args([
                "show",
                "-p",
                "ActiveState,SubState,StatusText,MainPID",
                unit,
            ])
            .output()
            .map_err(|e| format!("cannot run systemctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "systemctl show {unit} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(UnitState::parse(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// A unit's state as systemd reports it. With `Type=notify`, a unit is
/// `active (running)` only after its daemon sent `READY=1`, which both
/// daemons send once their socket serves; `StatusText` is their last
/// `STATUS=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `ActiveState` (`active`, `activating`, `failed`, ...).
    pub active: String,
    /// `SubState` (`running`, `start`, `dead`, ...).
    pub sub: String,
    /// `StatusText`: what the daemon last said.
    pub status_text: String,
    /// `MainPID` (0 when none).
    pub main_pid: u32,
}

impl UnitState {
    /// Parse `systemctl show` output (`Key=Value` lines, any order).
    pub fn parse(text: &str) -> UnitState {
        let mut s = UnitState::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "ActiveState" => s.active = v.to_string(),
                "SubState" => s.sub = v.to_string(),
                "StatusText" => s.status_text = v.to_string(),
                "MainPID" => s.main_pid = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        s
    }

    /// Started and ready: `active (running)`.
    pub fn ready(&self) -> bool {
        self.active == "active" && self.sub == "running"
    }

    /// One line: `active (running), pid 42: serving /run/banger/bangerd.sock`.
    pub fn describe(&self) -> String {
        let mut d = format!("{} ({})", self.active, self.sub);
        if self.main_pid != 0 {
            d.push_str(&format!(", pid {}", self.main_pid));
        }
        if !self.status_text.is_empty() {
            d.push_str(&format!(": {}", self.status_text));
        }
        if self.active == "activating" {
            d.push_str(" (not ready yet: READY=1 not sent)");
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::UnitState;

    #[test]
    fn readiness_comes_from_active_and_sub_state() {
        let ready = UnitState::parse(
            "MainPID=4242\nActiveState=active\nSubState=running\nStatusText=serving /run/banger/bangerd.sock\n",
        );
        assert!(ready.ready());
        assert_eq!(
            ready.describe(),
            "active (running), pid 4242: serving /run/banger/bangerd.sock"
        );
        let starting =
            UnitState::parse("ActiveState=activating\nSubState=start\nMainPID=7\nStatusText=\n");
        assert!(!starting.ready());
        assert!(
            starting.describe().contains("not ready yet"),
            "{starting:?}"
        );
        let failed = UnitState::parse("ActiveState=failed\nSubState=failed\nMainPID=0\n");
        assert!(!failed.ready());
        assert_eq!(failed.describe(), "failed (failed)");
        assert!(!UnitState::parse("").ready());
    }
}
