//! The root-disk strategies through the seam: device-mapper through a
//! recording fake of the privileged ops (this host has no device-mapper),
//! the copy for real.

use std::collections::HashSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use banger_dmsnap::{
    CopyStrategy, DmSnapshotStrategy, RootDiskStrategy, StrategyKind, choose, detect, remove_stale,
};
use banger_privops::{
    LoopInfo, Policy, PrivOp, PrivOpsError, PrivReply, PrivilegedOps, snapshot_table,
};

/// Records every operation (after checking it against the policy, as the
/// real adapters do) and fails the one named in `fail_on`.
struct Recorder {
    policy: Policy,
    log: Mutex<Vec<String>>,
    next_loop: Mutex<u32>,
    fail_on: Option<&'static str>,
    disks: (Vec<String>, Vec<LoopInfo>),
}

impl Recorder {
    fn new(root: &Path, fail_on: Option<&'static str>) -> Self {
        Recorder {
            policy: Policy {
                device_prefix: "bg".into(),
                state_dir: root.join("state"),
                runtime_dir: root.join("run"),
                subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
                owner_uid: 0,
                vmm_binary: "/usr/bin/firecracker".into(),
            },
            log: Mutex::new(Vec::new()),
            next_loop: Mutex::new(0),
            fail_on,
            disks: (Vec::new(), Vec::new()),
        }
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl PrivilegedOps for Recorder {
    fn execute(&self, op: PrivOp) -> Result<PrivReply, PrivOpsError> {
        let op = op.validate(&self.policy)?;
        let entry = match &op {
            PrivOp::LoopAttach { file, read_only } => format!(
                "loop_attach {} {}",
                file.display(),
                if *read_only { "ro" } else { "rw" }
            ),
            PrivOp::LoopDetach { device } => format!("loop_detach {}", device.display()),
            PrivOp::DmCreateSnapshot {
                name,
                sectors,
                base,
                cow,
                chunk_sectors,
            } => format!(
                "dm_create {name} {}",
                snapshot_table(*sectors, base, cow, *chunk_sectors)
            ),
            PrivOp::DmRemove { name } => format!("dm_remove {name}"),
            other => other.name().to_string(),
        };
        if self.fail_on.is_some_and(|f| entry.starts_with(f)) {
            self.log.lock().unwrap().push(format!("FAILED {entry}"));
            return Err(PrivOpsError::Command {
                program: "fake",
                message: "told to fail".into(),
            });
        }
        self.log.lock().unwrap().push(entry);
        Ok(match op {
            PrivOp::LoopAttach { .. } => {
                let mut n = self.next_loop.lock().unwrap();
                let device = PathBuf::from(format!("/dev/loop{n}"));
                *n += 1;
                PrivReply::LoopAttached { device }
            }
            PrivOp::LoopDetach { .. } | PrivOp::DmRemove { .. } => {
                PrivReply::Removed { existed: true }
            }
            PrivOp::ListDisks => PrivReply::Disks {
                dm: self.disks.0.clone(),
                loops: self.disks.1.clone(),
            },
            _ => PrivReply::Done,
        })
    }
}

struct Host {
    dir: tempfile::TempDir,
    base: PathBuf,
    vm_dir: PathBuf,
}

fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("images/img1")).unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    let vm_dir = state.join("vms/vm1");
    std::fs::create_dir_all(&vm_dir).unwrap();
    let base = state.join("images/img1/rootfs.ext4");
    let f = std::fs::File::create(&base).unwrap();
    f.set_len(2 << 30).unwrap();
    let state = state.canonicalize().unwrap();
    Host {
        base: state.join("images/img1/rootfs.ext4"),
        vm_dir: state.join("vms/vm1"),
        dir,
    }
}

#[test]
fn dm_snapshot_exact_table_and_order_of_create_and_teardown() {
    let h = host();
    let rec = Arc::new(Recorder::new(h.dir.path(), None));
    let s = DmSnapshotStrategy::new(rec.clone());
    assert_eq!(s.kind(), StrategyKind::DmSnapshot);
    let drive = s.create("vm1", &h.base, &h.vm_dir, 4 << 30).unwrap();
    let cow = h.vm_dir.join("root.cow");
    assert_eq!(
        rec.log(),
        vec![
            format!("loop_attach {} ro", h.base.display()),
            format!("loop_attach {} rw", cow.display()),
            "dm_create bgroot-vm1 0 4194304 snapshot /dev/loop0 /dev/loop1 P 8".to_string(),
        ]
    );
    assert_eq!(drive, h.vm_dir.join("root.ext4"));
    assert_eq!(
        std::fs::read_link(&drive).unwrap(),
        Path::new("/dev/mapper/bgroot-vm1")
    );
    assert!(
        cow.metadata().unwrap().len() >= 2 << 30,
        "COW holds every chunk"
    );
    rec.log.lock().unwrap().clear();
    s.remove("vm1", &h.vm_dir).unwrap();
    assert_eq!(
        rec.log(),
        vec![
            "dm_remove bgroot-vm1",
            "loop_detach /dev/loop1",
            "loop_detach /dev/loop0"
        ]
    );
    assert!(drive.symlink_metadata().is_err() && !cow.exists());
    assert!(!h.vm_dir.join("root.dm").exists());
}

#[test]
fn a_failure_mid_create_tears_down_what_was_made() {
    for (fail, undo) in [
        ("loop_attach /", vec![]),
        (
            "dm_create",
            vec!["loop_detach /dev/loop1", "loop_detach /dev/loop0"],
        ),
    ] {
        let h = host();
        let rec = Arc::new(Recorder::new(h.dir.path(), Some(fail)));
        let s = DmSnapshotStrategy::new(rec.clone());
        let err = s.create("vm1", &h.base, &h.vm_dir, 0).unwrap_err();
        assert!(err.to_string().contains("vm1"), "{err}");
        let log = rec.log();
        let after: Vec<&str> = log
            .iter()
            .skip_while(|l| !l.starts_with("FAILED"))
            .skip(1)
            .map(String::as_str)
            .collect();
        assert_eq!(after, undo, "{fail}: {log:?}");
        let left: Vec<_> = std::fs::read_dir(&h.vm_dir).unwrap().collect();
        assert!(left.is_empty(), "{fail}: files left {left:?}");
    }
    // Failing on the second attach detaches the first.
    let h = host();
    let cow = format!("loop_attach {}", h.vm_dir.join("root.cow").display());
    let fail: &'static str = Box::leak(cow.into_boxed_str());
    let rec = Arc::new(Recorder::new(h.dir.path(), Some(fail)));
    DmSnapshotStrategy::new(rec.clone())
        .create("vm1", &h.base, &h.vm_dir, 0)
        .unwrap_err();
    assert_eq!(rec.log().last().unwrap(), "loop_detach /dev/loop0");
}

#[test]
fn bad_names_are_refused_by_the_policy_before_anything() {
    let h = host();
    let rec = Arc::new(Recorder::new(h.dir.path(), None));
    let s = DmSnapshotStrategy::new(rec.clone());
    // An image outside banger's directories never reaches losetup.
    let outside = tempfile::NamedTempFile::new().unwrap();
    assert!(s.create("vm1", outside.path(), &h.vm_dir, 0).is_err());
    assert!(rec.log().is_empty(), "{:?}", rec.log());
}

#[test]
fn reconcile_removes_devices_of_deleted_vms_dm_first() {
    let h = host();
    let mut rec = Recorder::new(h.dir.path(), None);
    std::fs::write(
        h.vm_dir.join("root.dm"),
        r#"{"name":"bgroot-vm1","base_loop":"/dev/loop0","cow_loop":"/dev/loop1"}"#,
    )
    .unwrap();
    let info = |n: u32, f: &str| LoopInfo {
        device: format!("/dev/loop{n}").into(),
        backing_file: h.dir.path().join(f),
    };
    rec.disks = (
        vec!["bgroot-vm1".into(), "bgroot-gone".into(), "bgother".into()],
        vec![
            info(0, "state/images/img1/rootfs.ext4"),
            info(1, "state/vms/vm1/root.cow"),
            info(4, "state/images/img1/rootfs.ext4"),
            info(5, "state/vms/gone/root.cow"),
        ],
    );
    let known: HashSet<String> = ["vm1".to_string()].into();
    let report = remove_stale(&rec, h.vm_dir.parent().unwrap(), &known).unwrap();
    assert_eq!(
        rec.log(),
        vec![
            "list_disks",
            "dm_remove bgroot-gone",
            "loop_detach /dev/loop4",
            "loop_detach /dev/loop5"
        ]
    );
    assert_eq!(report.dm_removed, vec!["bgroot-gone"]);
    assert_eq!(report.loops_detached.len(), 2);
}

#[test]
fn choice_follows_dev_mapper_control() {
    let d = tempfile::tempdir().unwrap();
    let ops: Arc<dyn PrivilegedOps> = Arc::new(Recorder::new(d.path(), None));
    assert_eq!(detect(d.path()), StrategyKind::Copy);
    assert_eq!(choose(d.path(), ops.clone()).kind(), StrategyKind::Copy);
    std::fs::create_dir_all(d.path().join("mapper")).unwrap();
    std::fs::write(d.path().join("mapper/control"), b"").unwrap();
    assert_eq!(detect(d.path()), StrategyKind::DmSnapshot);
    assert_eq!(choose(d.path(), ops).kind(), StrategyKind::DmSnapshot);
}

#[test]
fn copy_fallback_for_real() {
    let Ok(st) = std::process::Command::new("mkfs.ext4").arg("-V").output() else {
        writeln!(
            std::io::stderr(),
            "SKIP copy_fallback_for_real: mkfs.ext4 missing"
        )
        .unwrap();
        return;
    };
    assert!(st.status.success());
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base.ext4");
    std::fs::File::create(&base)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let ok = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&base)
        .status()
        .unwrap();
    assert!(ok.success());
    let vm_dir = t.path().join("vm");
    std::fs::create_dir(&vm_dir).unwrap();
    let s = CopyStrategy;
    let disk = s.create("vm", &base, &vm_dir, 128 << 20).unwrap();
    assert_eq!(disk, vm_dir.join("root.ext4"));
    assert_eq!(disk.metadata().unwrap().len(), 128 << 20);
    assert!(!vm_dir.join("root.ext4.partial").exists());
    let fsck = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{fsck:?}");
    s.remove("vm", &vm_dir).unwrap();
    assert!(!disk.exists());
    s.remove("vm", &vm_dir).unwrap();
    // A missing image fails and leaves nothing.
    let err = s
        .create("vm", &t.path().join("nope.ext4"), &vm_dir, 0)
        .unwrap_err();
    assert!(err.to_string().contains("nope.ext4"), "{err}");
    assert_eq!(std::fs::read_dir(&vm_dir).unwrap().count(), 0);
}
