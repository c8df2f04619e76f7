//! The root-disk strategies through the seam: device-mapper through a
//! recording fake of the privileged ops (this host has no device-mapper),
//! the copy for real.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use banger_dmsnap::{
    CopyStrategy, DmSnapshotStrategy, RootDiskStrategy, StrategyKind, choose, detect, remove_stale,
};
use banger_privops::{
    DevNum, DiskOps, LOOP_MAJOR, LoopInfo, Policy, PrivOp, PrivOpsError, PrivReply, PrivilegedOps,
    snapshot_table,
};
use banger_testsupport::ext4::{Mkfs, fsck_clean};
use banger_testsupport::{RecordingOps, skip};

/// The host's devices as the fake sees them.
#[derive(Default)]
struct FakeHost {
    /// dm name -> the loop devices its table holds.
    dm: BTreeMap<String, [PathBuf; 2]>,
    /// loop number -> (backing file, autoclear).
    loops: BTreeMap<u32, (PathBuf, bool)>,
}

/// Keeps the devices in a [`FakeHost`] with the kernel's rules: the lowest
/// free loop number, autoclear loops detached with the dm device holding
/// them. Like the helper, it refuses a detach or a snapshot whose loops are
/// not backed by the files the request names.
struct FakeDisks {
    host: Mutex<FakeHost>,
    /// Answered once to the next `ListDisks` instead of the truth (a
    /// listing that went stale before the next operation).
    stale_listing: Mutex<Option<Vec<LoopInfo>>>,
}

/// Records every operation (after checking it against the policy, as the
/// real adapters do) and fails the one named in `fail_on`; [`FakeDisks`]
/// answers the others.
type Recorder = RecordingOps<FakeDisks>;

fn recorder(root: &Path, fail_on: Option<&'static str>) -> Recorder {
    let policy = Policy {
        device_prefix: "bg".into(),
        state_dir: root.join("state"),
        runtime_dir: root.join("run"),
        subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: 0,
        vmm_binary: "/usr/bin/firecracker".into(),
    };
    RecordingOps::new(FakeDisks {
        host: Mutex::new(FakeHost::default()),
        stale_listing: Mutex::new(None),
    })
    .validating(policy)
    .labelled(label)
    .failing(move |op| {
        fail_on
            .filter(|f| label(op).starts_with(f))
            .map(|_| PrivOpsError::Command {
                program: "fake",
                message: "told to fail".into(),
            })
    })
}

impl FakeDisks {
    /// A host reboot: every dm and loop device is gone, files stay.
    fn reboot(&self) {
        *self.host.lock().unwrap() = FakeHost::default();
    }
    fn dm_names(&self) -> Vec<String> {
        self.host.lock().unwrap().dm.keys().cloned().collect()
    }
    fn loops(&self) -> Vec<(u32, PathBuf)> {
        let h = self.host.lock().unwrap();
        h.loops.iter().map(|(n, (f, _))| (*n, f.clone())).collect()
    }
}

fn loop_no(p: &Path) -> u32 {
    p.to_str().unwrap()["/dev/loop".len()..].parse().unwrap()
}

fn devnum(p: &Path) -> DevNum {
    DevNum {
        major: LOOP_MAJOR,
        minor: loop_no(p),
    }
}

fn refused(op: &'static str, reason: String) -> PrivOpsError {
    PrivOpsError::Refused { op, reason }
}

/// The log line of `op`: its name, with the devices and table it names.
fn label(op: &PrivOp) -> String {
    match op {
        PrivOp::LoopAttach { file, read_only } => format!(
            "loop_attach {} {}",
            file.display(),
            if *read_only { "ro" } else { "rw" }
        ),
        PrivOp::LoopDetach { device, .. } => format!("loop_detach {}", device.display()),
        PrivOp::DmCreateSnapshot {
            name,
            sectors,
            base,
            cow,
            chunk_sectors,
            ..
        } => format!(
            "dm_create {name} {}",
            snapshot_table(*sectors, devnum(base), devnum(cow), *chunk_sectors)
        ),
        PrivOp::DmRemove { name } => format!("dm_remove {name}"),
        other => other.name().to_string(),
    }
}

impl PrivilegedOps for FakeDisks {
    fn execute(&self, op: PrivOp) -> Result<PrivReply, PrivOpsError> {
        let mut h = self.host.lock().unwrap();
        Ok(match op {
            PrivOp::LoopAttach { file, .. } => {
                let n = (0..).find(|n| !h.loops.contains_key(n)).unwrap();
                h.loops.insert(n, (file, false));
                PrivReply::LoopAttached {
                    device: format!("/dev/loop{n}").into(),
                }
            }
            PrivOp::LoopDetach {
                device,
                backing_file,
            } => {
                let n = loop_no(&device);
                match h.loops.get(&n) {
                    None => PrivReply::Removed { existed: false },
                    Some((f, _)) if *f == backing_file => {
                        h.loops.remove(&n);
                        PrivReply::Removed { existed: true }
                    }
                    Some((f, _)) => {
                        return Err(refused(
                            "loop_detach",
                            format!("{} is backed by {}", device.display(), f.display()),
                        ));
                    }
                }
            }
            PrivOp::DmCreateSnapshot {
                name,
                base,
                base_file,
                cow,
                cow_file,
                ..
            } => {
                for (l, file) in [(&base, &base_file), (&cow, &cow_file)] {
                    if h.loops.get(&loop_no(l)).map(|(f, _)| f) != Some(file) {
                        return Err(refused(
                            "dm_create_snapshot",
                            format!("{} is not backed by {}", l.display(), file.display()),
                        ));
                    }
                }
                for l in [&base, &cow] {
                    let e = h
                        .loops
                        .get_mut(&loop_no(l))
                        .expect("dm over an attached loop");
                    e.1 = true; // autoclear, as the real op sets it
                }
                h.dm.insert(name, [base, cow]);
                PrivReply::Done
            }
            PrivOp::DmRemove { name } => match h.dm.remove(&name) {
                Some(held) => {
                    for l in held {
                        let n = loop_no(&l);
                        if h.loops.get(&n).is_some_and(|(_, auto)| *auto) {
                            h.loops.remove(&n);
                        }
                    }
                    PrivReply::Removed { existed: true }
                }
                None => PrivReply::Removed { existed: false },
            },
            PrivOp::ListDisks => PrivReply::Disks {
                dm: h.dm.keys().cloned().collect(),
                loops: match self.stale_listing.lock().unwrap().take() {
                    Some(stale) => stale,
                    None => h
                        .loops
                        .iter()
                        .map(|(n, (f, _))| LoopInfo {
                            device: format!("/dev/loop{n}").into(),
                            backing_file: f.clone(),
                        })
                        .collect(),
                },
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

/// A pretend host, its recorder (nothing fails) and a dm-snapshot strategy
/// over it.
fn dm_host() -> (Host, Arc<Recorder>, DmSnapshotStrategy) {
    let h = host();
    let rec = Arc::new(recorder(h.dir.path(), None));
    let s = DmSnapshotStrategy::new(rec.clone());
    (h, rec, s)
}

#[test]
fn dm_snapshot_exact_table_and_order_of_create_and_teardown() {
    let (h, rec, s) = dm_host();
    assert_eq!(s.kind(), StrategyKind::DmSnapshot);
    let drive = s.create("vm1", &h.base, &h.vm_dir, 2 << 30).unwrap();
    let cow = h.vm_dir.join("root.cow");
    assert_eq!(
        rec.log(),
        vec![
            format!("loop_attach {} ro", h.base.display()),
            format!("loop_attach {} rw", cow.display()),
            "dm_create bgroot-vm1 0 4194304 snapshot 7:0 7:1 P 8".to_string(),
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
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = cow.metadata().unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "the COW file is private, not {mode:o}");
    }
    assert_eq!(rec.dm_names(), vec!["bgroot-vm1"]);
    rec.clear_log();
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
    assert!(rec.dm_names().is_empty() && rec.loops().is_empty());
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
        let rec = Arc::new(recorder(h.dir.path(), Some(fail)));
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
    let rec = Arc::new(recorder(h.dir.path(), Some(fail)));
    DmSnapshotStrategy::new(rec.clone())
        .create("vm1", &h.base, &h.vm_dir, 0)
        .unwrap_err();
    assert_eq!(rec.log().last().unwrap(), "loop_detach /dev/loop0");
}

#[test]
fn bad_names_are_refused_by_the_policy_before_anything() {
    let (h, rec, s) = dm_host();
    // An image outside banger's directories never reaches losetup.
    let outside = tempfile::NamedTempFile::new().unwrap();
    assert!(s.create("vm1", outside.path(), &h.vm_dir, 0).is_err());
    assert!(rec.log().is_empty(), "{:?}", rec.log());
}

#[test]
fn reconcile_removes_only_stale_devices_dm_first_and_keeps_live_ones() {
    let (h, rec, s) = dm_host();
    let vms = h.vm_dir.parent().unwrap().to_path_buf();
    // vm1 lives on; "gone" was deleted while bangerd was down (its
    // directory is gone, its devices are not); a loop of a crashed create
    // is left over too.
    s.create("vm1", &h.base, &h.vm_dir, 0).unwrap();
    let gone = vms.join("gone");
    std::fs::create_dir_all(&gone).unwrap();
    s.create("gone", &h.base, &gone, 0).unwrap();
    std::fs::remove_dir_all(&gone).unwrap();
    let crashed = rec.loop_attach(&h.base, true).unwrap();
    // A dm device of someone else and one with banger's device prefix but
    // not a root disk's: never touched.
    rec.host.lock().unwrap().dm.insert(
        "bgother".into(),
        ["/dev/loop90".into(), "/dev/loop91".into()],
    );
    rec.clear_log();
    let known: HashSet<String> = ["vm1".to_string()].into();
    let report = remove_stale(rec.as_ref(), &vms, &known).unwrap();
    assert_eq!(
        rec.log(),
        vec![
            "list_disks".to_string(),
            "dm_remove bgroot-gone".to_string(),
            // gone's loops were autoclear and went with its dm device.
            "list_disks".to_string(),
            format!("loop_detach {}", crashed.display()),
        ]
    );
    assert_eq!(report.dm_removed, vec!["bgroot-gone"]);
    assert_eq!(report.loops_detached, vec![crashed]);
    assert_eq!(rec.dm_names(), vec!["bgother", "bgroot-vm1"]);
    let cow = h.vm_dir.join("root.cow");
    assert_eq!(rec.loops(), vec![(0, h.base.clone()), (1, cow)]);
    // Nothing stale left: a second pass only lists.
    rec.clear_log();
    let again = remove_stale(rec.as_ref(), &vms, &known).unwrap();
    assert_eq!(again, Default::default());
    assert_eq!(rec.log(), vec!["list_disks"]);
}

#[test]
fn reconcile_of_a_stale_loop_reused_meanwhile_leaves_it_alone() {
    let h = host();
    let rec = recorder(h.dir.path(), None);
    let vms = h.vm_dir.parent().unwrap().to_path_buf();
    let other = vms.join("vm1/root.cow");
    std::fs::write(&other, b"").unwrap();
    // Listed as backed by the image; by the time of the detach, loop0 is
    // backed by another file: the helper refuses the detach, and
    // reconcile leaves the device alone instead of failing.
    rec.loop_attach(&other, false).unwrap();
    *rec.stale_listing.lock().unwrap() = Some(vec![LoopInfo {
        device: "/dev/loop0".into(),
        backing_file: h.base.clone(),
    }]);
    let report = remove_stale(&rec, &vms, &HashSet::new()).unwrap();
    assert!(report.loops_detached.is_empty(), "{report:?}");
    assert_eq!(rec.loops(), vec![(0, other.clone())]);
    // Directly, the refusal is what the helper answers.
    assert!(matches!(
        rec.loop_detach(Path::new("/dev/loop0"), &h.base),
        Err(PrivOpsError::Refused { .. })
    ));
    assert!(rec.loop_detach(Path::new("/dev/loop0"), &other).unwrap());
}

#[test]
fn removing_a_vm_with_an_old_record_finds_the_backing_files_from_the_listing() {
    let (h, rec, s) = dm_host();
    let cow = h.vm_dir.join("root.cow");
    std::fs::write(&cow, b"").unwrap();
    // A crash after both attaches, recorded by an older version (no
    // backing files in root.dm): the helper needs the files to detach.
    rec.loop_attach(&h.base, true).unwrap();
    rec.loop_attach(&cow, false).unwrap();
    std::fs::write(
        h.vm_dir.join("root.dm"),
        r#"{"name":"bgroot-vm1","base_loop":"/dev/loop0","cow_loop":"/dev/loop1"}"#,
    )
    .unwrap();
    rec.clear_log();
    s.remove("vm1", &h.vm_dir).unwrap();
    assert_eq!(
        rec.log(),
        vec![
            "dm_remove bgroot-vm1",
            "list_disks",
            "loop_detach /dev/loop1",
            "loop_detach /dev/loop0"
        ]
    );
    assert!(rec.loops().is_empty(), "{:?}", rec.loops());
    assert!(!cow.exists() && !h.vm_dir.join("root.dm").exists());
}

#[test]
fn vm_start_after_a_reboot_re_creates_the_snapshot_over_the_same_cow() {
    let (h, rec, s) = dm_host();
    let cow = h.vm_dir.join("root.cow");
    s.create("vm1", &h.base, &h.vm_dir, 0).unwrap();
    // While live, ensure only looks.
    rec.clear_log();
    assert_eq!(
        s.ensure("vm1", &h.base, &h.vm_dir).unwrap(),
        h.vm_dir.join("root.ext4")
    );
    assert_eq!(rec.log(), vec!["list_disks"]);
    // The guest wrote to its disk: exceptions in the COW file.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&cow).unwrap();
        f.write_all_at(b"SnAp exceptions", 0).unwrap();
    }
    let cow_len = cow.metadata().unwrap().len();
    rec.reboot();
    // Another VM boots first and takes loop0 and loop1, the numbers vm1's
    // record names.
    let vm2 = h.vm_dir.parent().unwrap().join("vm2");
    std::fs::create_dir_all(&vm2).unwrap();
    s.create("vm2", &h.base, &vm2, 0).unwrap();
    assert!(s.present(&h.vm_dir), "the COW file and record survive");
    rec.clear_log();
    let drive = s.ensure("vm1", &h.base, &h.vm_dir).unwrap();
    assert_eq!(
        rec.log(),
        vec![
            "list_disks".to_string(),
            format!("loop_attach {} ro", h.base.display()),
            format!("loop_attach {} rw", cow.display()),
            "dm_create bgroot-vm1 0 4194304 snapshot 7:2 7:3 P 8".to_string(),
        ],
        "vm2's loops are not vm1's, even with the record's numbers"
    );
    assert_eq!(
        std::fs::read_link(&drive).unwrap(),
        Path::new("/dev/mapper/bgroot-vm1")
    );
    let mut head = [0u8; 15];
    {
        use std::os::unix::fs::FileExt;
        std::fs::File::open(&cow)
            .unwrap()
            .read_exact_at(&mut head, 0)
            .unwrap();
    }
    assert_eq!(&head, b"SnAp exceptions", "the COW was reused, not wiped");
    assert_eq!(cow.metadata().unwrap().len(), cow_len);
    let r = banger_dmsnap::DmRecord::read(&h.vm_dir).unwrap();
    assert_eq!(
        (r.base_loop, r.cow_loop),
        ("/dev/loop2".into(), "/dev/loop3".into())
    );
    assert_eq!(rec.dm_names(), vec!["bgroot-vm1", "bgroot-vm2"]);
    // Teardown after the re-creation releases exactly the new devices.
    rec.clear_log();
    s.remove("vm1", &h.vm_dir).unwrap();
    assert_eq!(
        rec.log(),
        vec![
            "dm_remove bgroot-vm1",
            "loop_detach /dev/loop3",
            "loop_detach /dev/loop2"
        ]
    );
    assert_eq!(
        rec.loops(),
        vec![(0, h.base.clone()), (1, vm2.join("root.cow"))]
    );
}

#[test]
fn start_after_a_crash_mid_teardown_releases_the_leftover_cow_loop_first() {
    let (h, rec, s) = dm_host();
    let cow = h.vm_dir.join("root.cow");
    s.create("vm1", &h.base, &h.vm_dir, 0).unwrap();
    // bangerd died after removing the dm device, before its (here not
    // autoclear) COW loop was detached.
    rec.reboot();
    rec.loop_attach(&h.base, true).unwrap();
    rec.loop_attach(&cow, false).unwrap();
    rec.clear_log();
    s.ensure("vm1", &h.base, &h.vm_dir).unwrap();
    assert_eq!(
        rec.log(),
        vec![
            "list_disks".to_string(),
            "loop_detach /dev/loop1".to_string(),
            format!("loop_attach {} ro", h.base.display()),
            format!("loop_attach {} rw", cow.display()),
            "dm_create bgroot-vm1 0 4194304 snapshot 7:1 7:2 P 8".to_string(),
        ]
    );
    // The image's leftover loop0 (indistinguishable from another VM's)
    // is reconcile's: vm1's record now names loop1 and loop2.
    let vms = h.vm_dir.parent().unwrap();
    let known: HashSet<String> = ["vm1".to_string()].into();
    let report = remove_stale(rec.as_ref(), vms, &known).unwrap();
    assert_eq!(report.loops_detached, vec![PathBuf::from("/dev/loop0")]);
}

#[test]
fn a_snapshot_missing_its_cow_file_cannot_start() {
    let (h, rec, s) = dm_host();
    s.create("vm1", &h.base, &h.vm_dir, 0).unwrap();
    rec.reboot();
    std::fs::remove_file(h.vm_dir.join("root.cow")).unwrap();
    assert!(!s.present(&h.vm_dir));
    rec.clear_log();
    let err = s.ensure("vm1", &h.base, &h.vm_dir).unwrap_err();
    assert!(
        err.to_string().contains("root.cow is missing")
            && err.to_string().contains("delete the VM"),
        "{err}"
    );
    assert!(rec.log().is_empty(), "{:?}", rec.log());
}

#[test]
fn growing_a_snapshot_is_refused_clearly_and_makes_nothing() {
    let (h, rec, s) = dm_host();
    let err = s.create("vm1", &h.base, &h.vm_dir, 4 << 30).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot grow") && text.contains("leave out --disk"),
        "{text}"
    );
    assert!(rec.log().is_empty());
    assert_eq!(std::fs::read_dir(&h.vm_dir).unwrap().count(), 0);
    s.create("vm1", &h.base, &h.vm_dir, 2 << 30).unwrap();
    rec.clear_log();
    let err = s.grow("vm1", &h.vm_dir, 4 << 30).unwrap_err();
    assert!(
        err.to_string()
            .contains("a snapshot is exactly as large as its origin"),
        "{err}"
    );
    assert!(rec.log().is_empty());
}

#[test]
fn a_copied_disk_under_the_dm_strategy_stays_a_copy() {
    // Made by the copy (say before device-mapper was loaded): the dm
    // strategy checks, keeps and removes it as a file, no devices.
    let (h, rec, s) = dm_host();
    assert!(!s.present(&h.vm_dir));
    std::fs::write(h.vm_dir.join("root.ext4"), b"disk").unwrap();
    assert!(s.present(&h.vm_dir));
    assert_eq!(
        s.ensure("vm1", &h.base, &h.vm_dir).unwrap(),
        h.vm_dir.join("root.ext4")
    );
    s.remove("vm1", &h.vm_dir).unwrap();
    assert!(!h.vm_dir.join("root.ext4").exists());
    assert!(rec.log().is_empty(), "{:?}", rec.log());
}

#[test]
fn choice_follows_dev_mapper_control() {
    let d = tempfile::tempdir().unwrap();
    let ops: Arc<dyn PrivilegedOps> = Arc::new(recorder(d.path(), None));
    assert_eq!(detect(d.path()), StrategyKind::Copy);
    assert_eq!(choose(d.path(), ops.clone()).kind(), StrategyKind::Copy);
    std::fs::create_dir_all(d.path().join("mapper")).unwrap();
    std::fs::write(d.path().join("mapper/control"), b"").unwrap();
    assert_eq!(detect(d.path()), StrategyKind::DmSnapshot);
    assert_eq!(choose(d.path(), ops).kind(), StrategyKind::DmSnapshot);
}

#[test]
fn this_host_gets_the_copy_fallback_automatically() {
    let has_dm = Path::new("/dev/mapper/control").exists();
    let d = tempfile::tempdir().unwrap();
    let ops: Arc<dyn PrivilegedOps> = Arc::new(recorder(d.path(), None));
    let chosen = choose(Path::new("/dev"), ops).kind();
    if has_dm {
        assert_eq!(chosen, StrategyKind::DmSnapshot);
        skip!(
            "this_host_gets_the_copy_fallback_automatically",
            "this host has device-mapper"
        );
    }
    assert_eq!(detect(Path::new("/dev")), StrategyKind::Copy);
    assert_eq!(chosen, StrategyKind::Copy);
}

#[test]
fn copy_fallback_for_real() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base.ext4");
    if let Err(why) = Mkfs::new().build(&base, "64M") {
        skip!("copy_fallback_for_real", "{why}");
    }
    let vm_dir = t.path().join("vm");
    std::fs::create_dir(&vm_dir).unwrap();
    let s = CopyStrategy;
    let disk = s.create("vm", &base, &vm_dir, 128 << 20).unwrap();
    assert_eq!(disk, vm_dir.join("root.ext4"));
    assert_eq!(disk.metadata().unwrap().len(), 128 << 20);
    assert!(!vm_dir.join("root.ext4.partial").exists());
    fsck_clean(&disk);
    assert!(s.present(&vm_dir));
    assert_eq!(s.ensure("vm", &base, &vm_dir).unwrap(), disk);
    // `--disk` on a copy grows the file and its filesystem.
    s.grow("vm", &vm_dir, 192 << 20).unwrap();
    assert_eq!(disk.metadata().unwrap().len(), 192 << 20);
    fsck_clean(&disk);
    s.remove("vm", &vm_dir).unwrap();
    assert!(!s.present(&vm_dir));
    assert!(s.ensure("vm", &base, &vm_dir).is_err());
    assert!(!disk.exists());
    s.remove("vm", &vm_dir).unwrap();
    // A missing image fails and leaves nothing.
    let err = s
        .create("vm", &t.path().join("nope.ext4"), &vm_dir, 0)
        .unwrap_err();
    assert!(err.to_string().contains("nope.ext4"), "{err}");
    assert_eq!(std::fs::read_dir(&vm_dir).unwrap().count(), 0);
}

/// After a create, a spare copy of the image (grown to that size) waits
/// next to it; the next create of that size takes it with a rename (its
/// inode becomes the VM's disk), a create of another size or of a
/// rewritten image never does, and a refill drops stale spares.
#[test]
fn spare_root_disks_are_taken_by_rename_and_follow_the_image_version() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("img/rootfs.ext4");
    std::fs::create_dir_all(base.parent().unwrap()).unwrap();
    if let Err(why) = Mkfs::new().build(&base, "64M") {
        skip!(
            "spare_root_disks_are_taken_by_rename_and_follow_the_image_version",
            "{why}"
        );
    }
    let vm = |n: &str| {
        let d = t.path().join(n);
        std::fs::create_dir(&d).unwrap();
        d
    };
    let ino = |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&p.metadata().unwrap());
    let s = CopyStrategy;
    banger_dmsnap::refill_spare(&base, 128 << 20).unwrap();
    let spare = banger_dmsnap::spare_path(&base, 128 << 20).unwrap();
    assert!(spare.starts_with(t.path().join("img/spare-root")));
    assert_eq!(spare.metadata().unwrap().len(), 128 << 20);
    fsck_clean(&spare);
    let spare_ino = ino(&spare);
    // Taken whole by the next create of that size.
    let disk = s.create("a", &base, &vm("a"), 128 << 20).unwrap();
    assert_eq!(ino(&disk), spare_ino, "the spare itself became the disk");
    assert!(!spare.exists() || ino(&spare) != spare_ino);
    fsck_clean(&disk);
    // Another size is a copy, never the spare of 128M.
    banger_dmsnap::refill_spare(&base, 128 << 20).unwrap();
    let other = s.create("b", &base, &vm("b"), 96 << 20).unwrap();
    assert_eq!(other.metadata().unwrap().len(), 96 << 20);
    assert!(spare.exists(), "the 128M spare is untouched");
    // A rewritten image has another version: the old spare is not used,
    // and the next refill removes it.
    let stale_ino = ino(&spare);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&base)
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    let fresh = banger_dmsnap::spare_path(&base, 128 << 20).unwrap();
    assert_ne!(fresh, spare);
    let disk = s.create("c", &base, &vm("c"), 128 << 20).unwrap();
    assert_ne!(ino(&disk), stale_ino);
    banger_dmsnap::refill_spare(&base, 128 << 20).unwrap();
    assert!(fresh.exists());
    assert!(!spare.exists(), "the stale spare is gone");
}
