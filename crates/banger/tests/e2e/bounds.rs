//! Bounded input, end to end against a real `bangerd` (the simulator as
//! firecracker): out-of-range numbers from a raw RPC client are refused
//! with `invalid_argument` and change nothing, the daemon keeps answering,
//! and a disk larger than the image's ext4 can grow to is refused before a
//! row or a file exists.

use crate::util;

use banger_testsupport::ext4::Mkfs;
use banger_testsupport::skip;

use banger_api::rpc::{VmCreateParams, VmLogsParams, VmSetParams, VmStopParams};
use banger_api::{ByteSize, ErrorKind, Request, Vm, VmCreated, VmLogs, VmState};
use util::{Fixtures, TestDaemon};

fn invalid<T: std::fmt::Debug>(r: Result<T, banger_cli::client::ClientError>) -> String {
    let e = r.unwrap_err();
    let rpc = e.rpc().unwrap_or_else(|| panic!("not an RPC error: {e}"));
    assert_eq!(rpc.kind, ErrorKind::InvalidArgument, "{}", rpc.message);
    rpc.message.clone()
}

#[test]
fn out_of_range_numbers_are_refused_and_change_nothing() {
    let Some(fx) = Fixtures::new("out_of_range_numbers_are_refused_and_change_nothing") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    let vm = d.create("dev", "base").unwrap();
    assert_eq!(vm.state, VmState::Running);
    let mut c = d.client();

    // The case that panicked a daemon worker and left the VM `stopping`.
    for request in [
        Request::VmStop(VmStopParams {
            vm: "dev".into(),
            timeout_secs: Some(u64::MAX),
        }),
        Request::VmRestart(VmStopParams {
            vm: "dev".into(),
            timeout_secs: Some(3601),
        }),
    ] {
        let msg = invalid(c.call::<Vm>(request));
        assert!(msg.contains("0 to 3600"), "{msg}");
        let now = d.vm("dev").unwrap();
        assert_eq!(now.state, VmState::Running, "state unchanged");
        assert_eq!(now.started_at, vm.started_at, "not restarted");
    }
    for tail in [0, 10_001, u32::MAX] {
        let msg = invalid(c.call::<VmLogs>(Request::VmLogs(VmLogsParams {
            vm: "dev".into(),
            source: Default::default(),
            tail: Some(tail),
            since: None,
        })));
        assert!(msg.contains("1 to 10000"), "{msg}");
    }
    for (vcpus, memory_mib, disk, work_disk, needle) in [
        (Some(u32::MAX), None, None, None, "vCPU"),
        (None, Some(u32::MAX), None, None, "memory"),
        (None, None, Some(ByteSize(u64::MAX)), None, "disk size"),
        (None, None, None, Some(ByteSize(0)), "work disk size"),
    ] {
        let msg = invalid(c.call::<Vm>(Request::VmSet(VmSetParams {
            vm: "dev".into(),
            vcpus,
            memory_mib,
            disk,
            work_disk,
        })));
        assert!(msg.contains(needle), "{msg}");
        let create = VmCreateParams {
            name: "other".into(),
            image: Some("base".into()),
            vcpus,
            memory_mib,
            disk,
            work_disk,
            no_start: true,
        };
        let msg = invalid(c.call::<VmCreated>(Request::VmCreate(create)));
        assert!(msg.contains(needle), "{msg}");
    }
    let list: Vec<Vm> = c.call(Request::VmList).unwrap();
    assert_eq!(list.len(), 1, "no VM created: {list:?}");
    assert_eq!(list[0].state, VmState::Running);
    assert_eq!(
        (list[0].vcpus, list[0].memory_mib),
        (vm.vcpus, vm.memory_mib)
    );

    // The CLI refuses the same before sending anything.
    let out = d.cli(&["vm", "stop", "dev", "--timeout", "18446744073709551615"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3600"));
    // The daemon still works: a stop within range succeeds.
    d.cli_ok(&["vm", "stop", "dev", "--timeout", "1"]);
    assert_eq!(d.vm("dev").unwrap().state, VmState::Stopped);
    assert!(
        !d.log().contains("panicked"),
        "{}",
        util::tail(&d.log(), 30)
    );
}

#[test]
fn a_disk_beyond_what_the_ext4_can_grow_to_is_refused_up_front() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("small-blocks.ext4");
    if let Err(why) = Mkfs::new().block_size(1024).build(&rootfs, "16M") {
        skip!(
            "a_disk_beyond_what_the_ext4_can_grow_to_is_refused_up_front",
            "{why}"
        );
    }
    let Some(fx) = Fixtures::new("a_disk_beyond_what_the_ext4_can_grow_to_is_refused_up_front")
    else {
        return;
    };
    let d = TestDaemon::start(&[]);
    let out = d.cli(&[
        "image",
        "register",
        "small",
        "--rootfs",
        &rootfs.display().to_string(),
        "--kernel",
        &fx.kernel.display().to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");

    let out = d.cli(&[
        "vm",
        "create",
        "big",
        "--image",
        "small",
        "--disk",
        "2T",
        "--no-start",
    ]);
    assert_eq!(
        out.status.code(),
        Some(ErrorKind::InvalidArgument.exit_code())
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("disk size 2T is more than the ext4 filesystem")
            && err.contains("1024-byte blocks")
            && err.contains("--disk 1032192M or less"),
        "{err}"
    );
    let list: Vec<Vm> = d.client().call(Request::VmList).unwrap();
    assert!(list.is_empty(), "no row: {list:?}");
    assert!(d.vm_dirs().is_empty(), "no files: {:?}", d.vm_dirs());

    // `vm set --disk` checks the VM's own disk the same way.
    d.cli_ok(&["vm", "create", "ok", "--image", "small", "--no-start"]);
    let before = d.vm("ok").unwrap();
    let out = d.cli(&["vm", "set", "ok", "--disk", "2T"]);
    assert_eq!(
        out.status.code(),
        Some(ErrorKind::InvalidArgument.exit_code())
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1024-byte blocks"),
        "{out:?}"
    );
    assert_eq!(d.vm("ok").unwrap().disk_bytes, before.disk_bytes);
    // Every check comes before any change: a refused work disk leaves the
    // root disk as it was, in the row and on disk.
    let root = d.state_dir().join("vms").join(&before.id).join("root.ext4");
    let root_len = std::fs::metadata(&root).unwrap().len();
    let out = d.cli(&["vm", "set", "ok", "--disk", "128M", "--work-disk", "1M"]);
    assert_eq!(
        out.status.code(),
        Some(ErrorKind::InvalidArgument.exit_code())
    );
    assert_eq!(d.vm("ok").unwrap().disk_bytes, before.disk_bytes);
    assert_eq!(std::fs::metadata(&root).unwrap().len(), root_len);
    // A size it can reach still works.
    d.cli_ok(&["vm", "set", "ok", "--disk", "64M"]);
    assert_eq!(d.vm("ok").unwrap().disk_bytes, 64 << 20);
}
