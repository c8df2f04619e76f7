//! `guest.ssh_config` and `vm.ssh_argv`: plain `ssh NAME.vm` from the
//! user's shell and `banger vm ssh`, both with the daemon's pinned host keys.

use banger_api::Vm;
use banger_api::guest::{SshArgv, SshConfigText, VmSshParams};

use crate::common::error::DaemonError;
use crate::workspace::service::{WorkspaceOpError, WorkspaceService};
use crate::workspace::ssh::{SshClient, ensure_client_files};

/// The include text: one `Host <name>.vm` block per VM, pinned by VM id.
pub fn ssh_config_text(ssh: &SshClient, port: u16, vms: &[Vm]) -> String {
    let mut out = String::from(
        "# Written by `banger ssh-config`. Run it again after creating VMs.\n\
         # Host keys are pinned per VM in banger's own known_hosts.\n",
    );
    for vm in vms {
        out.push_str(&format!(
            "\nHost {name}.vm\n  HostName {ip}\n  Port {port}\n  User {user}\n  \
             IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  \
             HostKeyAlias banger-{id}\n  StrictHostKeyChecking accept-new\n  CheckHostIP no\n",
            name = vm.name,
            ip = vm.guest_ip,
            user = ssh.user,
            key = ssh.key.display(),
            kh = ssh.known_hosts.display(),
            id = vm.id,
        ));
    }
    out
}

impl WorkspaceService {
    /// `guest.ssh_config`.
    pub fn ssh_config(&self) -> Result<SshConfigText, DaemonError> {
        ensure_client_files(&self.deps.ssh).map_err(WorkspaceOpError::from)?;
        // A running VM without a network card is left out: `ssh NAME.vm`
        // would leave through the host's default route.
        let (vms, no_nic): (Vec<Vm>, Vec<Vm>) = self
            .vms
            .list_vms()?
            .into_iter()
            .partition(|vm| self.check_reachable(vm).is_ok());
        let mut text = ssh_config_text(&self.deps.ssh, self.deps.guest.ssh_port, &vms);
        for vm in no_nic {
            text.push_str(&format!(
                "\n# {}.vm: left out, the VM has no network card\n",
                vm.name
            ));
        }
        Ok(SshConfigText { text })
    }

    /// Drop VM `vm_id`'s pinned host key from the daemon's known_hosts
    /// (`ssh-keygen -R banger-<id>`), after the VM was deleted. Blocking.
    pub fn forget_host_key(&self, vm_id: &str) {
        let kh = &self.deps.ssh.known_hosts;
        if !kh.exists() {
            return;
        }
        // ssh stores a non-22 port as `[alias]:port`.
        let alias = format!("banger-{vm_id}");
        let mut names = vec![alias.clone()];
        if self.deps.guest.ssh_port != 22 {
            names.push(format!("[{alias}]:{}", self.deps.guest.ssh_port));
        }
        for name in names {
            let out = std::process::Command::new("ssh-keygen")
                .arg("-R")
                .arg(&name)
                .arg("-f")
                .arg(kh)
                .stdin(std::process::Stdio::null())
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => tracing::warn!(
                    vm = vm_id,
                    error = %String::from_utf8_lossy(&o.stderr).trim(),
                    "cannot forget the VM's host key"
                ),
                Err(e) => tracing::warn!(vm = vm_id, error = %e, "cannot run ssh-keygen -R"),
            }
        }
        let _ = std::fs::remove_file(kh.with_extension("old"));
    }

    /// `vm.ssh_argv`: the argv `banger vm ssh` execs.
    pub fn ssh_argv(&self, p: &VmSshParams) -> Result<SshArgv, DaemonError> {
        let vm = self.running_vm(&p.vm)?;
        ensure_client_files(&self.deps.ssh).map_err(WorkspaceOpError::from)?;
        Ok(SshArgv {
            argv: self
                .deps
                .ssh
                .interactive_argv(&self.target(&vm), &p.command),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pinned_block_per_vm() {
        let ssh = SshClient {
            bin: "ssh".into(),
            key: "/h/.config/banger/ssh/id_ed25519".into(),
            known_hosts: "/s/ssh/known_hosts".into(),
            user: "root".into(),
            connect_timeout: std::time::Duration::from_secs(5),
        };
        let vm: Vm = serde_json::from_value(serde_json::json!({
            "id": "ab12", "name": "dev", "state": "running", "image_id": "i", "image_name": "d",
            "vcpus": 1, "memory_mib": 128, "disk_bytes": 1, "guest_ip": "172.30.0.2",
            "guest_mac": "06:00:ac:1e:00:02", "created_at": 0, "updated_at": 0,
            "started_at": null, "last_error": null
        }))
        .unwrap();
        let t = ssh_config_text(&ssh, 22, &[vm]);
        assert!(t.contains("Host dev.vm\n  HostName 172.30.0.2\n  Port 22\n  User root\n"));
        assert!(t.contains("HostKeyAlias banger-ab12"));
        assert!(t.contains("UserKnownHostsFile /s/ssh/known_hosts"));
    }
}
