//! Reconcile of root-disk devices: after a crash, dm snapshots and loop
//! devices of VMs that no longer exist (or that a dead daemon left
//! half-made) are removed, dm devices first, then loops.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use banger_privops::{DiskOps, PrivOpsError, PrivilegedOps};

use crate::dm::{DM_PREFIX, DmRecord, dm_name};

/// What [`remove_stale`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StaleReport {
    /// dm devices removed.
    pub dm_removed: Vec<String>,
    /// Loop devices detached.
    pub loops_detached: Vec<PathBuf>,
}

/// Remove banger's root-disk dm devices whose VM is not in `known` (VM
/// ids), and detach every loop device backed by a banger file that no
/// known VM's record (`<vms_dir>/<id>/root.dm`) refers to (same device
/// and, where recorded, same backing file: after a reboot a record's
/// device numbers may belong to someone else).
pub fn remove_stale(
    ops: &dyn PrivilegedOps,
    vms_dir: &Path,
    known: &HashSet<String>,
) -> Result<StaleReport, PrivOpsError> {
    let (dm, loops) = ops.list_disks()?;
    let keep_dm: HashSet<String> = known.iter().map(|id| dm_name(id)).collect();
    let records: Vec<DmRecord> = known
        .iter()
        .filter_map(|id| DmRecord::read(&vms_dir.join(id)))
        .collect();
    let mut report = StaleReport::default();
    for name in dm {
        if name.starts_with(DM_PREFIX) && !keep_dm.contains(&name) {
            ops.dm_remove(&name)?;
            report.dm_removed.push(name);
        }
    }
    // Loops of removed snapshots were autoclear and went with them.
    let loops = if report.dm_removed.is_empty() {
        loops
    } else {
        ops.list_disks()?.1
    };
    for l in loops {
        if records
            .iter()
            .any(|r| r.owns_loop(&l.device, &l.backing_file))
        {
            continue;
        }
        // Named with its backing file: a device reused since the listing
        // is refused by the helper and left alone.
        if crate::dm::detach_ours(ops, &l.device, &l.backing_file)? {
            report.loops_detached.push(l.device);
        }
    }
    Ok(report)
}
