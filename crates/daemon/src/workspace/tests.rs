//! WorkspaceService through its seams: a fake `guest_dial` that runs the
//! guest script in a local `sh` with `$HOME` pointing at a temp "guest home",
//! and a fake `VmLookup`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use banger_api::Vm;
use banger_api::guest::{WorkspaceExportParams, WorkspacePrepareParams};
use banger_testsupport::{git, skip};

use crate::common::error::DaemonError;
use crate::common::lockset::VmLockSet;
use crate::workspace::guest_config::GuestConfig;
use crate::workspace::service::{VmLookup, WorkspaceDeps, WorkspaceService};
use crate::workspace::ssh::{GuestDial, GuestSshError, GuestTarget, SshClient, banner_waiter};

struct LocalDial {
    home: PathBuf,
    gate: Option<PathBuf>,
    /// Put first on the guest's `PATH`.
    bin: Option<PathBuf>,
}

impl GuestDial for LocalDial {
    fn command(&self, _t: &GuestTarget, remote: &str) -> Command {
        let mut c = Command::new("sh");
        let script = match &self.gate {
            Some(g) => format!(
                "while [ ! -e '{}' ]; do sleep 0.05; done\n{remote}",
                g.display()
            ),
            None => remote.to_string(),
        };
        c.arg("-c")
            .arg(script)
            .env("HOME", &self.home)
            .current_dir(&self.home);
        if let Some(bin) = &self.bin {
            let path = std::env::var("PATH").unwrap_or_default();
            c.env("PATH", format!("{}:{path}", bin.display()));
        }
        c
    }
    fn classify(&self, t: &GuestTarget, stderr: &str) -> GuestSshError {
        GuestSshError::Failed {
            vm: t.vm_name.clone(),
            addr: t.addr,
            stderr: stderr.into(),
        }
    }
}

struct OneVm {
    vm: Vm,
    locks: VmLockSet,
    vsock: std::sync::Mutex<Option<PathBuf>>,
}

impl VmLookup for OneVm {
    fn resolve_vm(&self, name: &str) -> Result<Vm, DaemonError> {
        if name == self.vm.name || name == self.vm.id {
            Ok(self.vm.clone())
        } else {
            Err(DaemonError::NotFound(name.into()))
        }
    }
    fn is_alive(&self, _id: &str) -> bool {
        true
    }
    fn vm_locks(&self) -> &VmLockSet {
        &self.locks
    }
    fn list_vms(&self) -> Result<Vec<Vm>, DaemonError> {
        Ok(vec![self.vm.clone()])
    }
    fn vsock_socket(&self, _id: &str) -> Option<PathBuf> {
        self.vsock.lock().unwrap().clone()
    }
}

pub(crate) fn test_vm() -> Vm {
    serde_json::from_value(serde_json::json!({
        "id": "00aa", "name": "dev", "state": "running", "image_id": "i", "image_name": "d",
        "vcpus": 1, "memory_mib": 128, "disk_bytes": 1, "guest_ip": "127.0.0.1",
        "guest_mac": "06:00:7f:00:00:01", "created_at": 0, "updated_at": 0,
        "started_at": null, "last_error": null
    }))
    .unwrap()
}

fn service(dir: &Path, gate: Option<PathBuf>) -> (Arc<WorkspaceService>, Arc<OneVm>) {
    service_with(dir, gate, GuestConfig::default(), None)
}

fn service_with(
    dir: &Path,
    gate: Option<PathBuf>,
    guest: GuestConfig,
    bin: Option<PathBuf>,
) -> (Arc<WorkspaceService>, Arc<OneVm>) {
    let guest_home = dir.join("guest-home");
    std::fs::create_dir_all(&guest_home).unwrap();
    let lookup = Arc::new(OneVm {
        vm: test_vm(),
        locks: VmLockSet::default(),
        vsock: std::sync::Mutex::new(None),
    });
    let ssh = SshClient {
        bin: "ssh".into(),
        key: dir.join("key/id_ed25519"),
        known_hosts: dir.join("known_hosts"),
        user: "root".into(),
        connect_timeout: Duration::from_secs(2),
    };
    let deps = WorkspaceDeps {
        dial: Arc::new(LocalDial {
            home: guest_home,
            gate,
            bin,
        }),
        wait_for_ssh: banner_waiter(),
        ssh,
        guest,
        vms_dir: dir.join("vms"),
        home: dir.join("owner-home"),
    };
    let lookup_dyn: Arc<dyn VmLookup> = lookup.clone();
    (Arc::new(WorkspaceService::new(lookup_dyn, deps)), lookup)
}

fn repo(dir: &Path) -> PathBuf {
    let r = dir.join("proj");
    std::fs::create_dir_all(r.join("src")).unwrap();
    git(&r, &["init", "-q", "-b", "main"]);
    std::fs::write(r.join("src/lib.rs"), "fn a() {}\n").unwrap();
    std::fs::write(r.join(".gitignore"), "target/\n").unwrap();
    git(&r, &["add", "-A"]);
    git(&r, &["commit", "-q", "-m", "one"]);
    std::fs::create_dir_all(r.join("target")).unwrap();
    std::fs::write(r.join("target/big.o"), "ignored").unwrap();
    r
}

/// [`repo`] plus a commit of 300 more files (300+ loose objects) and a
/// dirty `src/f7.rs`.
fn repo_with_many_objects(dir: &Path) -> PathBuf {
    let r = repo(dir);
    for i in 0..300 {
        std::fs::write(r.join(format!("src/f{i}.rs")), format!("// {i}\n")).unwrap();
    }
    git(&r, &["add", "-A"]);
    git(&r, &["commit", "-q", "-m", "many"]);
    std::fs::write(r.join("src/f7.rs"), "// dirty\n").unwrap();
    r
}

fn params(r: &Path) -> WorkspacePrepareParams {
    WorkspacePrepareParams {
        vm: "dev".into(),
        path: r.display().to_string(),
        full: false,
        trust_guest: false,
    }
}

#[tokio::test]
async fn prepare_then_delta_then_export_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, _) = service(dir.path(), None);
    let r = repo(dir.path());
    let first = ws.prepare(params(&r)).await.unwrap();
    assert!(first.full);
    assert_eq!(first.guest_dir, "work/proj");
    let guest = dir.path().join("guest-home/work/proj");
    assert_eq!(
        std::fs::read(guest.join("src/lib.rs")).unwrap(),
        b"fn a() {}\n"
    );
    assert!(
        !guest.join("target").exists(),
        "ignored files must not arrive"
    );
    assert_eq!(
        git(&guest, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "main"
    );

    std::fs::write(r.join("src/new.rs"), "x").unwrap();
    let second = ws.prepare(params(&r)).await.unwrap();
    assert!(!second.full);
    assert_eq!(second.files_sent, 1, "{second:?}");
    assert_eq!(std::fs::read(guest.join("src/new.rs")).unwrap(), b"x");

    // Guest work comes back as banger/dev; the host tree is untouched.
    std::fs::write(guest.join("src/lib.rs"), "fn b() {}\n").unwrap();
    let before = std::fs::read(r.join("src/lib.rs")).unwrap();
    let out = ws
        .export(WorkspaceExportParams {
            vm: "dev".into(),
            path: r.display().to_string(),
            branch: None,
            patch: None,
        })
        .await
        .unwrap();
    assert!(out.changed);
    assert_eq!(out.branch.as_deref(), Some("banger/dev"));
    assert_eq!(std::fs::read(r.join("src/lib.rs")).unwrap(), before);
    assert_eq!(git(&r, &["show", "banger/dev:src/lib.rs"]), "fn b() {}\n");
}

#[tokio::test]
async fn delta_to_a_guest_without_the_checkout_resends_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, _) = service(dir.path(), None);
    let r = repo(dir.path());
    ws.prepare(params(&r)).await.unwrap();
    std::fs::remove_dir_all(dir.path().join("guest-home/work")).unwrap();
    let again = ws.prepare(params(&r)).await.unwrap();
    assert!(again.full);
    assert!(dir.path().join("guest-home/work/proj/src/lib.rs").exists());
}

#[tokio::test]
async fn vm_lock_is_free_while_the_guest_import_runs() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let (ws, lookup) = service(dir.path(), Some(gate.clone()));
    let r = repo(dir.path());
    let running = tokio::spawn({
        let ws = Arc::clone(&ws);
        let p = params(&r);
        async move { ws.prepare(p).await }
    });
    // Wait until the prepare holds its workspace lock (guest phase).
    loop {
        if tokio::time::timeout(Duration::from_millis(20), ws.workspace_locks.lock("00aa"))
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A lifecycle operation (which takes vm_locks[id]) is not blocked.
    let vm_lock = tokio::time::timeout(Duration::from_secs(5), lookup.locks.lock("00aa")).await;
    assert!(vm_lock.is_ok(), "vm lock held during the guest import");
    assert!(!running.is_finished());
    drop(vm_lock);
    std::fs::write(&gate, b"").unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn file_sync_refuses_escapes_and_copies_inside_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, _) = service(dir.path(), None);
    let home = dir.path().join("owner-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".gitconfig"), "[user]\n").unwrap();
    std::fs::write(dir.path().join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), home.join(".out")).unwrap();
    let with = |files: &[&str]| {
        let mut deps = ws.deps.clone();
        deps.guest.sync_files = files.iter().map(PathBuf::from).collect();
        Arc::new(WorkspaceService::new(Arc::clone(&ws.vms), deps))
    };
    for bad in ["../secret", "/etc/passwd", ".out"] {
        let s = with(&[".gitconfig", bad]);
        let e = s.sync_files("dev").await.unwrap_err();
        assert!(matches!(e, DaemonError::Invalid(_)), "{bad}: {e}");
        assert!(
            !dir.path().join("guest-home/.gitconfig").exists(),
            "nothing is copied when one path is refused"
        );
    }
    let s = with(&[".gitconfig"]);
    let done = s.sync_files("dev").await.unwrap();
    assert_eq!(done.files, vec![".gitconfig".to_string()]);
    assert_eq!(
        std::fs::read(dir.path().join("guest-home/.gitconfig")).unwrap(),
        b"[user]\n"
    );
}

/// `vm ports` asks the guest agent over vsock (a fake Firecracker socket
/// in front of the real agent protocol handler over this host's `/proc`);
/// SSH is gated shut, so only the agent can have answered.
#[tokio::test]
async fn ports_come_from_the_agent_over_vsock() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, lookup) = service(dir.path(), Some(dir.path().join("never")));
    let sock = crate::workspace::ready::tests::fake(
        dir.path(),
        crate::workspace::ready::tests::Fake::Agent,
    );
    *lookup.vsock.lock().unwrap() = Some(sock);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ports = tokio::time::timeout(Duration::from_secs(10), ws.ports("dev"))
        .await
        .expect("the agent answered without SSH")
        .unwrap();
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    let hit = ports
        .iter()
        .find(|p| p.port == port && p.proto == "tcp")
        .unwrap_or_else(|| panic!("{port} missing from {ports:?}"));
    assert_eq!(hit.address, "127.0.0.1");
    assert_eq!(hit.endpoint, format!("dev.vm:{port}"));
    assert_eq!(hit.process.as_deref(), Some(me.trim_end()));
}

/// A VMM that closes vsock connections (no vsock device): `vm ports`
/// tried it, then answered from `ss` over SSH.
#[tokio::test]
async fn ports_fall_back_to_ss_over_ssh() {
    if Command::new("ss").arg("-V").output().is_err() {
        skip!(
            "ports_fall_back_to_ss_over_ssh",
            "no `ss` (iproute2) on this host"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (ws, lookup) = service(dir.path(), None);
    let path = dir.path().join("closing.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let tried = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = tried.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    *lookup.vsock.lock().unwrap() = Some(path);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ports = ws.ports("dev").await.unwrap();
    assert!(
        tried.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "vsock tried first"
    );
    let hit = ports
        .iter()
        .find(|p| p.port == port && p.proto == "tcp")
        .unwrap_or_else(|| panic!("{port} missing from {ports:?}"));
    assert_eq!(hit.endpoint, format!("dev.vm:{port}"));
    assert_eq!(hit.address, "127.0.0.1");
}

#[tokio::test]
async fn many_loose_objects_arrive_as_they_are_and_the_guest_repo_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, _) = service(dir.path(), None);
    let r = repo_with_many_objects(dir.path());
    let first = ws.prepare(params(&r)).await.unwrap();
    assert!(first.full);
    let guest = dir.path().join("guest-home/work/proj");
    let loose = |d: &Path| {
        git(d, &["count-objects", "-v"])
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(loose(&guest), loose(&r), "the same loose objects");
    assert!(loose(&r) != "count: 0");
    git(&guest, &["fsck", "--no-progress", "--no-dangling"]);
    assert_eq!(
        git(&guest, &["rev-parse", "HEAD"]),
        git(&r, &["rev-parse", "HEAD"])
    );
    assert_eq!(git(&guest, &["status", "--porcelain"]), " M src/f7.rs\n");
    assert_eq!(git(&guest, &["show", "HEAD~1:src/lib.rs"]), "fn a() {}\n");

    // A delta after a new commit: few new objects, sent as loose files.
    std::fs::write(r.join("src/f8.rs"), "// changed\n").unwrap();
    git(&r, &["commit", "-q", "-am", "three"]);
    let second = ws.prepare(params(&r)).await.unwrap();
    assert!(!second.full);
    assert_eq!(
        git(&guest, &["rev-parse", "HEAD"]),
        git(&r, &["rev-parse", "HEAD"])
    );
    git(&guest, &["fsck", "--no-progress", "--no-dangling"]);
    assert_eq!(git(&guest, &["status", "--porcelain"]), "");
}

#[tokio::test]
async fn the_stream_is_zstd_when_the_guest_has_it_and_plain_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo_with_many_objects(dir.path());

    // Plain tar when compression is off, whatever the guest has.
    let plain_dir = dir.path().join("plain");
    let guest = GuestConfig {
        compress_stream: false,
        ..GuestConfig::default()
    };
    let (ws, _) = service_with(&plain_dir, None, guest, None);
    ws.prepare(params(&r)).await.unwrap();
    let plain = plain_dir.join("guest-home/work/proj");
    git(&plain, &["fsck", "--no-progress", "--no-dangling"]);
    assert_eq!(git(&plain, &["status", "--porcelain"]), " M src/f7.rs\n");

    let Some(real) = ["/usr/bin/zstd", "/bin/zstd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        skip!(
            "zstd stream",
            "no zstd on this machine (apt-get install zstd)"
        );
    };
    // A zstd on the guest's PATH that notes each use.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.path().join("zstd.log");
    let wrapper = bin.join("zstd");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec {real} \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&wrapper, perm).unwrap();
    let z_dir = dir.path().join("zstd");
    let guest = GuestConfig {
        compress_stream: true,
        ..GuestConfig::default()
    };
    let (ws, _) = service_with(&z_dir, None, guest, Some(bin));
    ws.prepare(params(&r)).await.unwrap();
    assert!(
        std::fs::read_to_string(&log).unwrap().contains("-dcq"),
        "the guest decompressed the stream"
    );
    let zd = z_dir.join("guest-home/work/proj");
    git(&zd, &["fsck", "--no-progress", "--no-dangling"]);
    assert_eq!(git(&zd, &["status", "--porcelain"]), " M src/f7.rs\n");
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&plain)
        .arg(&zd)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

/// A second prepare asks the guest for its own listing: a file changed
/// inside the guest (even with its mtime put back), one deleted there and
/// one replaced by a rename are restored, and a host-side deletion of a
/// file the guest also changed still deletes it. `trust_guest` skips the
/// check and leaves the guest's edits alone.
#[tokio::test]
async fn second_prepare_restores_files_changed_or_deleted_in_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, _) = service(dir.path(), None);
    let r = repo_with_many_objects(dir.path());
    std::fs::write(r.join("untracked.txt"), "host\n").unwrap();
    ws.prepare(params(&r)).await.unwrap();
    let guest = dir.path().join("guest-home/work/proj");
    let same = ws.prepare(params(&r)).await.unwrap();
    assert_eq!(
        (same.files_sent, same.guest_changed),
        (0, 0),
        "an untouched guest copy needs nothing: {same:?}"
    );

    let edit = |rel: &str, data: &str| {
        let p = guest.join(rel);
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    };
    // Same size, mtime restored: only the ctime tells.
    edit("src/lib.rs", "fn z() {}\n");
    std::fs::remove_file(guest.join("src/f3.rs")).unwrap();
    std::fs::write(guest.join("tmp"), "// 5\n").unwrap();
    std::fs::rename(guest.join("tmp"), guest.join("src/f5.rs")).unwrap();
    edit("untracked.txt", "gues\n");
    std::fs::remove_file(r.join("untracked.txt")).unwrap();
    let loose = git(&r, &["rev-parse", "HEAD"]);
    let object = format!(".git/objects/{}/{}", &loose[..2], loose[2..].trim());
    std::fs::remove_file(guest.join(&object)).unwrap();

    // Trusting the guest: nothing is checked, the host's deletion applies.
    let mut trusted = params(&r);
    trusted.trust_guest = true;
    let t = ws.prepare(trusted).await.unwrap();
    assert_eq!((t.files_sent, t.files_deleted, t.guest_changed), (0, 1, 0));
    assert!(!guest.join("untracked.txt").exists());
    assert_eq!(
        std::fs::read(guest.join("src/lib.rs")).unwrap(),
        b"fn z() {}\n"
    );

    let fixed = ws.prepare(params(&r)).await.unwrap();
    assert_eq!(fixed.guest_changed, 4, "{fixed:?}");
    assert_eq!(fixed.files_sent, 4, "{fixed:?}");
    for (rel, want) in [
        ("src/lib.rs", "fn a() {}\n"),
        ("src/f3.rs", "// 3\n"),
        ("src/f5.rs", "// 5\n"),
    ] {
        assert_eq!(std::fs::read_to_string(guest.join(rel)).unwrap(), want);
    }
    assert!(guest.join(&object).exists());
    git(&guest, &["fsck", "--no-progress", "--no-dangling"]);
    assert_eq!(git(&guest, &["status", "--porcelain"]), " M src/f7.rs\n");
    let again = ws.prepare(params(&r)).await.unwrap();
    assert_eq!((again.files_sent, again.guest_changed), (0, 0), "{again:?}");
}

/// The host deletes a file the guest changed: it is deleted on the guest
/// too, not resent.
#[tokio::test]
async fn host_deletion_of_a_file_changed_in_the_guest_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, _) = service(dir.path(), None);
    let r = repo(dir.path());
    std::fs::write(r.join("notes.txt"), "host\n").unwrap();
    ws.prepare(params(&r)).await.unwrap();
    let guest = dir.path().join("guest-home/work/proj");
    std::fs::write(guest.join("notes.txt"), "guest edit\n").unwrap();
    std::fs::remove_file(r.join("notes.txt")).unwrap();
    let p = ws.prepare(params(&r)).await.unwrap();
    assert_eq!((p.files_sent, p.files_deleted), (0, 1), "{p:?}");
    assert!(!guest.join("notes.txt").exists());
}

/// [`OneVm`] whose VMM has no network card.
struct NoNic(Arc<OneVm>);

impl VmLookup for NoNic {
    fn resolve_vm(&self, name: &str) -> Result<Vm, DaemonError> {
        self.0.resolve_vm(name)
    }
    fn is_alive(&self, id: &str) -> bool {
        self.0.is_alive(id)
    }
    fn vm_locks(&self) -> &VmLockSet {
        self.0.vm_locks()
    }
    fn list_vms(&self) -> Result<Vec<Vm>, DaemonError> {
        self.0.list_vms()
    }
    fn has_nic(&self, _id: &str) -> bool {
        false
    }
}

/// A VM without a network card whose address is not on a link of this
/// namespace (127.0.0.1 is in the local table, not on a main-table link)
/// is never dialed: guest access is refused with the way out, the guest
/// is untouched, and the ssh_config include leaves it out.
#[tokio::test]
async fn a_vm_without_a_network_card_is_never_dialed() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, lookup) = service(dir.path(), None);
    let ws = Arc::new(WorkspaceService::new(
        Arc::new(NoNic(lookup)),
        ws.deps.clone(),
    ));
    let r = repo(dir.path());
    let err = ws.prepare(params(&r)).await.unwrap_err().to_string();
    assert!(err.contains("no network card"), "{err}");
    assert!(err.contains("network.enabled = true"), "{err}");
    assert!(!dir.path().join("guest-home/work").exists(), "nothing ran");
    let text = ws.ssh_config().unwrap().text;
    assert!(!text.contains("Host dev.vm"), "{text}");
    assert!(text.contains("# dev.vm: left out"), "{text}");
}
