//! Setup shared by the daemon benchmarks (`lifecycle`, `stats_load`; each
//! includes this module): a release `bangerd` in a temporary directory
//! whose firecracker is the simulator, no guest readiness wait, and an
//! image `bench` registered (a small ext4 root filesystem and a minimal ELF
//! kernel). [`Setup::Lean`] turns the network and identity sync off;
//! [`Setup::Default`] keeps banger's default configuration (network, work
//! disk, identity sync) and runs the daemon inside a private network
//! namespace with its own `HOME`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use banger_api::rpc::ImageRegisterParams;
use banger_api::{Image, Request};
use banger_cli::client::Client;

/// Which configuration the daemon runs.
#[derive(Debug, Clone)]
#[allow(dead_code)] // each benchmark uses one of them
pub enum Setup {
    /// Network off, identity sync off; `daemon_extra` is added to the
    /// config's `[daemon]` table.
    Lean {
        /// Extra `[daemon]` keys.
        daemon_extra: String,
    },
    /// banger's default configuration (network with NAT and `vm.` DNS,
    /// 8 GiB work disks, identity sync), with readiness `none` for the
    /// simulator, run inside the network namespace `netns` (which the
    /// caller made; `ip netns exec`). `HOME` is a directory of the
    /// benchmark's with an SSH public key and a git identity.
    Default {
        /// The network namespace's name.
        netns: String,
    },
}

/// A running benchmark daemon and one open connection to it.
pub struct BenchDaemon {
    /// The temporary directory holding state, config, log and fixtures;
    /// removed when dropped.
    _dir: tempfile::TempDir,
    /// The daemon's RPC socket.
    pub socket: PathBuf,
    /// The daemon's log (its stderr).
    pub log: PathBuf,
    /// The `bangerd` process.
    pub process: Child,
    /// A connection made once the daemon answered.
    pub client: Client,
}

impl BenchDaemon {
    /// Start `bangerd` in a new directory named `prefix…`, with
    /// `daemon_extra` added to the config's `[daemon]` table, logging at
    /// `log_filter`, and register image `bench` (root filesystem of
    /// `rootfs_size`, `mkfs.ext4`'s size syntax).
    #[allow(dead_code)] // not every benchmark uses it
    pub fn start(
        prefix: &str,
        daemon_extra: &str,
        log_filter: &str,
        rootfs_size: &str,
    ) -> BenchDaemon {
        let setup = Setup::Lean {
            daemon_extra: daemon_extra.to_string(),
        };
        Self::start_with(prefix, &setup, log_filter, rootfs_size)
    }

    /// [`BenchDaemon::start`] with the configuration `setup`.
    pub fn start_with(
        prefix: &str,
        setup: &Setup,
        log_filter: &str,
        rootfs_size: &str,
    ) -> BenchDaemon {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let state = dir.path().join("state");
        let config = dir.path().join("config.toml");
        let fcsim = env!("CARGO_BIN_EXE_banger-fcsim");
        let home = dir.path().join("home");
        let text = match setup {
            Setup::Lean { daemon_extra } => format!(
                "firecracker_bin = {fcsim:?}\n[daemon]\nstop_timeout_secs = 5\n{daemon_extra}[network]\nenabled = false\n[guest]\nreadiness = \"none\"\nsync_identity = false\n"
            ),
            Setup::Default { .. } => {
                std::fs::create_dir_all(home.join(".ssh")).unwrap();
                std::fs::write(
                    home.join(".ssh/id_ed25519.pub"),
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBenchBenchBenchBenchBenchBench bench@host\n",
                )
                .unwrap();
                std::fs::write(
                    home.join(".gitconfig"),
                    "[user]\n\tname = Bench User\n\temail = bench@example.invalid\n",
                )
                .unwrap();
                format!(
                    "firecracker_bin = {fcsim:?}\n[daemon]\nstop_timeout_secs = 5\n[guest]\nreadiness = \"none\"\n"
                )
            }
        };
        std::fs::write(&config, text).unwrap();
        let (rootfs, kernel) = fixtures(dir.path(), rootfs_size);
        let log = dir.path().join("bangerd.log");
        let mut cmd = match setup {
            Setup::Lean { .. } => Command::new(env!("CARGO_BIN_EXE_bangerd")),
            Setup::Default { netns } => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_bangerd")])
                    .env("HOME", &home)
                    .env("XDG_CONFIG_HOME", home.join(".config"))
                    .env("XDG_CACHE_HOME", home.join(".cache"))
                    .env("XDG_DATA_HOME", home.join(".local/share"));
                c
            }
        };
        let process = cmd
            .arg("--state-dir")
            .arg(&state)
            .arg("--config")
            .arg(&config)
            .arg("--log")
            .arg(log_filter)
            .env_remove("XDG_RUNTIME_DIR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start bangerd");
        let socket = state.join("run/bangerd.sock");
        let mut client = connect(&socket);
        let _: Image = client
            .call(Request::ImageRegister(ImageRegisterParams {
                name: "bench".into(),
                rootfs: rootfs.display().to_string(),
                kernel: kernel.display().to_string(),
                initrd: None,
                kernel_name: None,
            }))
            .expect("register");
        BenchDaemon {
            _dir: dir,
            socket,
            log,
            process,
            client,
        }
    }

    /// Kill the daemon and wait for it.
    pub fn stop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for BenchDaemon {
    /// A benchmark that panics leaves no daemon behind (its network
    /// namespace could not go while the daemon runs in it).
    fn drop(&mut self) {
        self.stop();
    }
}

/// A connection to the daemon at `socket`, waiting up to 20 s for it.
pub fn connect(socket: &Path) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(socket) {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("bangerd did not come up: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A root filesystem of `size` and a 4 KiB ELF header the simulator takes
/// for a kernel, in `dir`.
fn fixtures(dir: &Path, size: &str) -> (PathBuf, PathBuf) {
    let rootfs = dir.join("rootfs.ext4");
    banger_testsupport::ext4::Mkfs::new()
        .file("etc/hostname", "bench\n")
        .file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        .file("root/.profile", "# bench\n")
        .build(&rootfs, size)
        .expect("mkfs.ext4 is needed");
    let kernel = dir.join("vmlinux");
    let mut h = vec![0u8; 4096];
    h[0..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[16] = 2;
    h[18] = 62;
    h[20] = 1;
    h[24..32].copy_from_slice(&0x0100_0000u64.to_le_bytes());
    h[32] = 64; // program headers right after the ELF header
    h[54] = 56; // program header size
    h[56] = 1; // one program header
    std::fs::write(&kernel, h).unwrap();
    (rootfs, kernel)
}

/// The `p`th percentile of `samples` (0 when there are none).
pub fn pct(samples: &[Duration], p: usize) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut s = samples.to_vec();
    s.sort();
    s[((s.len() - 1) * p) / 100]
}
