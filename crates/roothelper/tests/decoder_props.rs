//! Property test of the helper's front door: random bytes, random
//! structured requests and byte-mutated valid requests go through the
//! decoder and the validator. Nothing may panic, and every request the
//! validator accepts must satisfy the rules, checked here independently.
//! Then the path rules: `Policy::beneath` against an independent lexical
//! rule (random paths with `..`, `.`, empty and over-long components,
//! non-UTF-8 bytes), and `open_beneath` on a real tree with symlinks
//! pointing out, in and up: whatever opens is the very object at the
//! lexical path, reached through no symlink, inside the state directory.
//! Fixed number of cases, deterministic seed (same cases on every run);
//! each test prints its count (`decoder: N cases`, `policy: N cases`,
//! `beneath: N cases`) on stderr, outside the test harness's capture.
//!
//! When a `PrivOp` variant is added, `within_rules` and `op_strategy` must
//! learn it (an unknown accepted variant fails the property).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use banger_privops::wire::{Call, PROTOCOL_VERSION, WireRequest, decode_request};
use banger_privops::{Policy, PrivOp, SpawnVmm, VmmSignal};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const CASES: u32 = 2000;

fn policy(root: &Path) -> Policy {
    Policy {
        device_prefix: "bg".into(),
        state_dir: root.join("state"),
        runtime_dir: root.join("run"),
        subnet: (std::net::Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: 1000,
        vmm_binary: PathBuf::from("/usr/bin/firecracker"),
    }
}

fn inside(p: &Path, policy: &Policy) -> bool {
    p.is_absolute()
        && !p.components().any(|c| matches!(c, Component::ParentDir))
        && [&policy.state_dir, &policy.runtime_dir]
            .iter()
            .any(|r| p.starts_with(r) && p != r.as_path())
        && {
            // The existing part, resolved, is still inside.
            let mut cur = p.to_path_buf();
            while !cur.exists() {
                if !cur.pop() {
                    break;
                }
            }
            let real = cur.canonicalize().unwrap_or(cur);
            [&policy.state_dir, &policy.runtime_dir]
                .iter()
                .any(|r| real.starts_with(r))
        }
}

/// The rules, restated independently of `validate`.
fn within_rules(op: &PrivOp, policy: &Policy) -> bool {
    match op {
        PrivOp::SpawnVmm(s) => {
            s.binary == policy.vmm_binary
                && (1..=64).contains(&s.id.len())
                && s.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && [
                    &s.api_sock,
                    &s.console_log,
                    &s.stderr_log,
                    &s.exit_status_file,
                    &s.lock_file,
                ]
                .iter()
                .all(|p| inside(p, policy))
        }
        // Which process may be signalled is decided at execution (uid,
        // start time, executable through a pidfd: tests/hostile_process.rs).
        PrivOp::SignalVmm { pid, .. } => *pid > 1 && *pid <= i32::MAX as u32,
        PrivOp::EnsureBridge {
            name,
            gateway,
            prefix,
        } => device_ok(name, policy) && in_subnet(*gateway, policy) && *prefix == policy.subnet.1,
        PrivOp::CreateTap { name, bridge } => device_ok(name, policy) && device_ok(bridge, policy),
        PrivOp::DeleteLink { name } => device_ok(name, policy),
        PrivOp::ApplyNat {
            bridge,
            network,
            prefix,
        } => device_ok(bridge, policy) && (*network, *prefix) == policy.subnet,
        PrivOp::ResolverRoute { bridge, dns, .. } => {
            device_ok(bridge, policy) && in_subnet(*dns, policy)
        }
        PrivOp::ListLinks | PrivOp::RemoveNat | PrivOp::SetIpForward { .. } => true,
        PrivOp::LoopAttach { file, .. } => below_state(file, policy),
        PrivOp::LoopDetach {
            device,
            backing_file,
        } => loop_ok(device) && below_state(backing_file, policy),
        PrivOp::DmCreateSnapshot {
            name,
            sectors,
            base,
            base_file,
            cow,
            cow_file,
            chunk_sectors,
        } => {
            dm_ok(name, policy)
                && loop_ok(base)
                && loop_ok(cow)
                && base != cow
                && below_state(base_file, policy)
                && below_state(cow_file, policy)
                && base_file != cow_file
                && (1..=1u64 << 40).contains(sectors)
                && [8, 16, 32, 64, 128, 256, 512, 1024, 2048].contains(chunk_sectors)
        }
        PrivOp::DmRemove { name } => dm_ok(name, policy),
        PrivOp::ListDisks => true,
        // A variant added later must state its rules here and be added to
        // `op_strategy`; until then the generators never produce it, and
        // random bytes decoding into it and passing `validate` fail the
        // property loudly rather than pass unchecked.
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Disk files: lexically strictly below the state directory (absolute, no
/// `..`; `Path` drops interior `.`, which is harmless), not in the
/// runtime directory. Symlinks are not looked at here: execution opens
/// the path with no symlink following.
fn below_state(p: &Path, policy: &Policy) -> bool {
    p.is_absolute()
        && !p
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        && p.starts_with(&policy.state_dir)
        && p.components().count() > policy.state_dir.components().count()
        && !p.starts_with(&policy.runtime_dir)
}

/// The device-name rule, stated independently of `Policy::check_device`.
fn device_ok(name: &str, policy: &Policy) -> bool {
    let p = &policy.device_prefix;
    name.len() > p.len()
        && name.len() <= 15
        && name.starts_with(p.as_str())
        && name[p.len()..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `/dev/loop` followed by 1-6 decimal digits, nothing else.
fn loop_ok(p: &Path) -> bool {
    let s = p.to_string_lossy();
    let digits = s.strip_prefix("/dev/loop").unwrap_or("");
    p.to_str().is_some()
        && (1..=6).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// dm names: the prefix, then `[a-z0-9-]`, at most 127 characters.
fn dm_ok(name: &str, policy: &Policy) -> bool {
    let p = &policy.device_prefix;
    name.len() > p.len()
        && name.len() <= 127
        && name.starts_with(p.as_str())
        && name[p.len()..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn in_subnet(ip: std::net::Ipv4Addr, policy: &Policy) -> bool {
    let (net, len) = policy.subnet;
    let bits = 32 - u32::from(len);
    (u32::from(ip) >> bits) == (u32::from(net) >> bits)
}

fn path_strategy(root: PathBuf) -> impl Strategy<Value = PathBuf> + Clone {
    let parts = prop::collection::vec(
        prop::sample::select(vec![
            "state",
            "run",
            "..",
            ".",
            "evil",
            "etc",
            "passwd",
            "vms",
            "a",
            "api.sock",
            "",
            "state/../..",
            "/etc",
            "x\u{0}y",
        ]),
        0..6,
    );
    let root2 = root.clone();
    let random = (any::<bool>(), parts).prop_map(move |(absolute, parts)| {
        let mut p = if absolute {
            root.clone()
        } else {
            PathBuf::new()
        };
        for part in parts {
            p.push(part);
        }
        p
    });
    // Mostly plausible paths, so that valid requests are generated too.
    let plausible = (
        prop::sample::select(vec!["state", "run"]),
        prop::collection::vec(
            prop::sample::select(vec!["vms", "a", "api.sock", "x.log", "evil", ".."]),
            1..3,
        ),
    )
        .prop_map(move |(top, rest)| {
            let mut p = root2.join(top);
            for r in rest {
                p.push(r);
            }
            p
        });
    prop_oneof![1 => random, 3 => plausible]
}

fn op_strategy(root: PathBuf) -> impl Strategy<Value = PrivOp> {
    let root2 = root.clone();
    let path = path_strategy(root);
    let binary = prop::sample::select(vec![
        "/usr/bin/firecracker",
        "/bin/sh",
        "/usr/bin/firecracker/../../bin/sh",
        "firecracker",
    ]);
    let id = prop_oneof!["[a-z0-9-]{1,12}", "[a-zA-Z0-9_/.-]{0,70}"];
    // Mostly the usual lock file, so that whole valid spawns still occur.
    let lock = prop_oneof![
        3 => Just(root2.join("state/vms/a/vmm.lock")),
        1 => path.clone(),
    ];
    let spawn = (
        binary,
        path.clone(),
        id,
        path.clone(),
        path.clone(),
        path.clone(),
        lock,
    )
        .prop_map(|(b, a, id, c, e, x, l)| {
            PrivOp::SpawnVmm(SpawnVmm {
                binary: b.into(),
                api_sock: a,
                id,
                console_log: c,
                stderr_log: e,
                exit_status_file: x,
                lock_file: l,
            })
        });
    let signal = (any::<u32>(), any::<u64>(), any::<bool>()).prop_map(|(pid, start_time, kill)| {
        PrivOp::SignalVmm {
            pid,
            start_time,
            signal: if kill {
                VmmSignal::Kill
            } else {
                VmmSignal::Term
            },
        }
    });
    let device = prop_oneof![
        "bg[a-z0-9-]{1,13}",
        "[a-zA-Z0-9_./-]{0,20}",
        Just("eth0".to_string()),
        Just("bg".to_string()),
    ];
    let ip = prop_oneof![
        (0u8..=255).prop_map(|d| std::net::Ipv4Addr::new(172, 30, 0, d)),
        any::<u32>().prop_map(std::net::Ipv4Addr::from),
    ];
    let prefix = prop_oneof![Just(24u8), 0u8..=32];
    let net = prop_oneof![
        (device.clone(), ip.clone(), prefix.clone()).prop_map(|(name, gateway, prefix)| {
            PrivOp::EnsureBridge {
                name,
                gateway,
                prefix,
            }
        }),
        (device.clone(), device.clone())
            .prop_map(|(name, bridge)| PrivOp::CreateTap { name, bridge }),
        device.clone().prop_map(|name| PrivOp::DeleteLink { name }),
        (device.clone(), ip.clone(), prefix).prop_map(|(bridge, network, prefix)| {
            PrivOp::ApplyNat {
                bridge,
                network,
                prefix,
            }
        }),
        (device, ip, any::<bool>()).prop_map(|(bridge, dns, revert)| PrivOp::ResolverRoute {
            bridge,
            dns,
            revert
        }),
    ];
    let loopdev = prop_oneof![
        (0u32..64).prop_map(|n| PathBuf::from(format!("/dev/loop{n}"))),
        "/dev/[a-z0-9./]{0,12}".prop_map(PathBuf::from),
        Just(PathBuf::from("/dev/loop")),
        Just(PathBuf::from("/dev/loop1/../sda")),
    ];
    let dmname = prop_oneof![
        "bg[a-z0-9-]{1,40}",
        "[a-zA-Z0-9_./-]{0,20}",
        Just("bg".to_string()),
        "bg[a-z]{130}",
    ];
    let disk = prop_oneof![
        (path_strategy(root2.clone()), any::<bool>())
            .prop_map(|(file, read_only)| PrivOp::LoopAttach { file, read_only }),
        (loopdev.clone(), path_strategy(root2.clone())).prop_map(|(device, backing_file)| {
            PrivOp::LoopDetach {
                device,
                backing_file,
            }
        }),
        (
            dmname.clone(),
            prop_oneof![1u64..1 << 24, any::<u64>()],
            (loopdev.clone(), path_strategy(root2.clone())),
            (loopdev, path_strategy(root2)),
            prop_oneof![Just(8u32), any::<u32>()]
        )
            .prop_map(
                |(name, sectors, (base, base_file), (cow, cow_file), chunk_sectors)| {
                    PrivOp::DmCreateSnapshot {
                        name,
                        sectors,
                        base,
                        base_file,
                        cow,
                        cow_file,
                        chunk_sectors,
                    }
                }
            ),
        dmname.prop_map(|name| PrivOp::DmRemove { name }),
        Just(PrivOp::ListDisks),
    ];
    prop_oneof![spawn, signal, net, disk]
}

fn check(body: &[u8], policy: &Policy) -> Result<(), TestCaseError> {
    let Ok(req) = decode_request(body) else {
        return Ok(());
    };
    prop_assert_eq!(req.version, PROTOCOL_VERSION);
    if let Call::Op(op) = req.call {
        let shown = format!("{op:?}");
        if let Ok(v) = op.validate(policy) {
            prop_assert!(
                within_rules(&v, policy),
                "accepted outside the rules: {}",
                shown
            );
        }
    }
    Ok(())
}

fn runner() -> TestRunner {
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

fn setup() -> (tempfile::TempDir, PathBuf, Policy) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("state/vms/a")).unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("state/evil")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("run/evil")).unwrap();
    let p = policy(&root);
    (t, root, p)
}

/// State the number of cases on stderr (not captured by the harness).
fn report(what: &str, cases: u32, detail: &str) {
    let _ = writeln!(std::io::stderr(), "{what}: {cases} cases ({detail})");
}

#[test]
fn random_bytes_never_panic_nor_pass_outside_the_rules() {
    let (_t, _root, policy) = setup();
    let n = std::cell::Cell::new(0u32);
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..4096), |bytes| {
            n.set(n.get() + 1);
            check(&bytes, &policy)
        })
        .unwrap();
    report("decoder", n.get(), "random bytes");
}

#[test]
fn structured_requests_are_accepted_only_within_the_rules() {
    let (_t, root, policy) = setup();
    let accepted = std::cell::Cell::new(0u32);
    let spawns = std::cell::Cell::new(0u32);
    let disks = std::cell::Cell::new(0u32);
    let cases = std::cell::Cell::new(0u32);
    runner()
        .run(&op_strategy(root), |op| {
            cases.set(cases.get() + 1);
            let shown = format!("{op:?}");
            if let Ok(v) = op.validate(&policy) {
                accepted.set(accepted.get() + 1);
                if matches!(v, PrivOp::SpawnVmm(_)) {
                    spawns.set(spawns.get() + 1);
                }
                if matches!(
                    v,
                    PrivOp::LoopAttach { .. }
                        | PrivOp::LoopDetach { .. }
                        | PrivOp::DmCreateSnapshot { .. }
                ) {
                    disks.set(disks.get() + 1);
                }
                prop_assert!(
                    within_rules(&v, &policy),
                    "accepted outside the rules: {}",
                    shown
                );
            }
            Ok(())
        })
        .unwrap();
    // The generator reaches valid requests too, so the property has teeth.
    assert!(accepted.get() > 0, "no request was ever accepted");
    assert!(spawns.get() > 0, "no spawn was ever accepted");
    assert!(
        disks.get() > 0,
        "no disk operation with a file was ever accepted"
    );
    report(
        "decoder",
        cases.get(),
        &format!("structured requests, {} accepted", accepted.get()),
    );
}

#[test]
fn mutated_valid_requests_never_panic_nor_pass_outside_the_rules() {
    let (_t, root, policy) = setup();
    let strategy = (
        op_strategy(root),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..8),
    );
    let n = std::cell::Cell::new(0u32);
    runner()
        .run(&strategy, |(op, edits)| {
            n.set(n.get() + 1);
            let req = WireRequest {
                version: PROTOCOL_VERSION,
                call: Call::Op(op),
            };
            let mut body = serde_json::to_vec(&req).unwrap();
            for (at, byte, kind) in edits {
                if body.is_empty() {
                    break;
                }
                let i = at.index(body.len());
                match kind {
                    0 => body[i] = byte,
                    1 => body.insert(i, byte),
                    _ => {
                        body.remove(i);
                    }
                }
            }
            check(&body, &policy)
        })
        .unwrap();
    report("decoder", n.get(), "mutated valid requests");
}

/// Components for random paths: the tricky ones.
fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "state", "run", "vms", "a", "dir", "sub", "file", "file2", "link_out", "link_in",
            "link_file", "link_up", "..", ".", "", "hostname", "passwd", "secret",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => Just(vec![b'x'; 255]),
        1 => Just(vec![b'y'; 256]),
        1 => prop::collection::vec(any::<u8>().prop_filter("no NUL or /", |b| *b != 0 && *b != b'/'), 1..6),
        1 => Just(vec![0xff, 0xfe, b'a']),
    ]
}

fn random_path(root: PathBuf) -> impl Strategy<Value = PathBuf> {
    (0u8..4, prop::collection::vec(component(), 0..7)).prop_map(move |(start, parts)| {
        let mut bytes: Vec<u8> = match start {
            0 => root.join("state").as_os_str().as_bytes().to_vec(),
            1 => root.join("run").as_os_str().as_bytes().to_vec(),
            2 => root.as_os_str().as_bytes().to_vec(),
            _ => Vec::new(),
        };
        for p in parts {
            bytes.push(b'/');
            bytes.extend_from_slice(&p);
        }
        PathBuf::from(OsStr::from_bytes(&bytes))
    })
}

/// The lexical rule of `Policy::beneath`, restated: absolute, no `.` or
/// `..` component, strictly below one root; the longer root wins.
fn beneath_rule(p: &Path, policy: &Policy) -> Option<(PathBuf, PathBuf)> {
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return None;
    }
    let mut roots = [&policy.state_dir, &policy.runtime_dir];
    roots.sort_by_key(|r| std::cmp::Reverse(r.as_os_str().len()));
    roots.iter().find_map(|r| {
        let rel: PathBuf = p.strip_prefix(r).ok()?.components().collect();
        (!rel.as_os_str().is_empty()).then(|| (r.to_path_buf(), rel))
    })
}

#[test]
fn policy_beneath_is_exactly_the_lexical_rule() {
    let (_t, root, mut policy) = setup();
    // The dev layout too: the runtime dir inside the state dir.
    let n = std::cell::Cell::new(0u32);
    let accepted = std::cell::Cell::new(0u32);
    for runtime in [root.join("run"), root.join("state/run")] {
        policy.runtime_dir = runtime;
        runner()
            .run(&random_path(root.clone()), |p| {
                n.set(n.get() + 1);
                let got = policy.beneath("t", &p).ok();
                let want = beneath_rule(&p, &policy);
                let got_pair = got
                    .as_ref()
                    .map(|b| (b.root_dir.clone(), b.rel.components().collect::<PathBuf>()));
                prop_assert_eq!(&got_pair, &want, "{}", p.display());
                if let Some(b) = got {
                    accepted.set(accepted.get() + 1);
                    prop_assert!(!b.rel.is_absolute());
                    prop_assert_eq!(
                        b.display_path().components().collect::<PathBuf>(),
                        p.components().collect::<PathBuf>()
                    );
                }
                Ok(())
            })
            .unwrap();
    }
    assert!(accepted.get() > 0, "no path was ever accepted");
    report(
        "policy",
        n.get(),
        &format!(
            "random paths against the lexical rule, {} below a root",
            accepted.get()
        ),
    );
}

#[test]
fn open_beneath_opens_only_the_object_at_the_lexical_path() {
    use banger_privops::beneath::{open_beneath, stat_fd};
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let (_t, root, policy) = setup();
    let state = root.join("state");
    std::fs::create_dir_all(state.join("dir/sub")).unwrap();
    std::fs::write(state.join("dir/file"), b"f").unwrap();
    std::fs::write(state.join("dir/sub/file2"), b"f").unwrap();
    std::fs::write(state.join("file"), b"f").unwrap();
    std::fs::write(state.join("x".repeat(255)), b"f").unwrap();
    std::fs::write(root.join("secret"), b"s").unwrap();
    std::os::unix::fs::symlink("/etc", state.join("link_out")).unwrap();
    std::os::unix::fs::symlink("dir", state.join("link_in")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", state.join("dir/link_file")).unwrap();
    std::os::unix::fs::symlink("..", state.join("dir/link_up")).unwrap();
    std::os::unix::fs::symlink(root.join("secret"), state.join("dir/sub/secret")).unwrap();
    let n = std::cell::Cell::new(0u32);
    let opened = std::cell::Cell::new(0u32);
    let refused_links = std::cell::Cell::new(0u32);
    // Mostly walks of the tree below the state dir, so that many paths
    // get to the open; some fully random ones too.
    let names = prop::sample::select(vec![
        "dir",
        "sub",
        "file",
        "file2",
        "link_out",
        "link_in",
        "link_file",
        "link_up",
        "hostname",
        "secret",
        "..",
        ".",
    ]);
    let st = state.clone();
    let walks = prop::collection::vec(names, 1..5).prop_map(move |parts| {
        let mut p = st.clone();
        for c in parts {
            p.push(c);
        }
        p
    });
    let paths = prop_oneof![3 => walks, 1 => random_path(root.clone())];
    runner()
        .run(&paths, |p| {
            n.set(n.get() + 1);
            let Ok(b) = policy.beneath("t", &p) else {
                return Ok(());
            };
            let via_symlink = {
                let mut cur = b.root_dir.clone();
                b.rel.components().any(|c| {
                    cur.push(c);
                    std::fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink())
                })
            };
            let Ok(fd) = open_beneath(&b, OFlag::O_PATH, Mode::empty()) else {
                if via_symlink {
                    refused_links.set(refused_links.get() + 1);
                }
                return Ok(());
            };
            opened.set(opened.get() + 1);
            let st = stat_fd(&fd).unwrap();
            // No component below the root is a symlink...
            let mut cur = b.root_dir.clone();
            for c in b.rel.components() {
                cur.push(c);
                let m = std::fs::symlink_metadata(&cur);
                prop_assert!(
                    m.as_ref().is_ok_and(|m| !m.file_type().is_symlink()),
                    "{} opened through {}",
                    p.display(),
                    cur.display()
                );
            }
            // ...and the fd is the very object at the lexical path,
            // inside the state or runtime dir.
            let m = std::fs::symlink_metadata(&cur).unwrap();
            use std::os::unix::fs::MetadataExt;
            prop_assert_eq!((st.st_dev, st.st_ino), (m.dev(), m.ino()));
            let real = cur.canonicalize().unwrap();
            prop_assert!(
                real.starts_with(&state) || real.starts_with(root.join("run")),
                "{} is {}",
                p.display(),
                real.display()
            );
            Ok(())
        })
        .unwrap();
    assert!(opened.get() > 0, "nothing was ever opened");
    assert!(
        refused_links.get() > 0,
        "no path through a symlink was tried"
    );
    report(
        "beneath",
        n.get(),
        &format!(
            "random paths on a tree with symlinks out, in and up; {} opened, {} through a symlink refused",
            opened.get(),
            refused_links.get()
        ),
    );
}
