//! `image.build`: a VM-ready Debian image built locally from the
//! distribution's own packages, with no registry and no mount on the host.
//!
//! 1. Bootstrap: `mmdebstrap --mode=auto --variant=minbase --format=tar`
//!    (root uses a chroot, a plain user an unshared user namespace) writes
//!    one tarball of the whole root filesystem. Two hooks shape it: the
//!    essential hook configures initramfs-tools *before* the kernel package
//!    is installed, so the initrd its postinst builds carries the virtio-mmio,
//!    block, net, ext4 and vsock modules; the customize hook writes the
//!    hostname and fstab, locks root's password (SSH by key only), removes
//!    the SSH host keys the postinst generated and makes `ssh.service`
//!    generate a fresh ed25519 one on first boot (the only `HostKey`: an
//!    RSA key takes tens of seconds under emulation), masks the units a dev
//!    VM does not need at boot ([`MASKED_UNITS`]: measured with
//!    `systemd-analyze blame` under the QEMU front, e2scrub_reap alone took
//!    2.6 s) and drops the host's `/etc/resolv.conf` that mmdebstrap copied in.
//! 2. The tarball is cached under `<state>/cache/bootstrap/<key>.tar`, `key`
//!    being the sha256 of the [`Recipe`] (suite, mirror, packages, hooks), so
//!    a second build skips the bootstrap (`no_cache` forces it).
//! 3. The tarball is flattened with the OCI layer code
//!    ([`banger_imagemgr::Flattener`]) in a staging directory; the kernel
//!    (`/boot/vmlinuz-*`, turned into an ELF vmlinux) and the initrd are
//!    taken from the tree; [`banger_imagemgr::build_ext4`] makes the image.
//! 4. Publication through [`ImageService::publish`] under `image_ops_mu`.
//!
//! Everything but step 4 runs unlocked, on the operation's own task; any
//! failure removes the staging directory, so nothing half-built is published.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_api::rpc::ImageBuildParams;
use banger_api::{Image, Operation, validate};
use banger_imagemgr::{Flattened, Flattener};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::Persist;
use crate::common::blocking;
use crate::common::error::DaemonError;
use crate::images::ImageError;
use crate::images::build::MICROVM_KERNEL;
use crate::images::service::{ImageService, Staged, name_taken};

/// Suite built when none is given.
pub const DEFAULT_SUITE: &str = "bookworm";

/// Mirror used when none is given and the host is not Debian.
pub const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";

/// Packages every built image has (on top of `minbase`).
pub const BASE_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "openssh-server",
    "iproute2",
    "git",
    "ca-certificates",
    // systemd-logind needs D-Bus (minbase skips systemd's Recommends);
    // without logind nothing handles the ACPI power button, so `vm stop`
    // under the QEMU front waited for its timeout and killed the guest.
    "dbus",
];

/// Packages added when the image carries Debian's cloud kernel
/// (`--debian-kernel`): the kernel, and what builds and loads its initrd
/// and modules. An image booting a registered kernel (banger's microVM
/// kernel, everything built in) needs none of them.
pub const DEBIAN_KERNEL_PACKAGES: &[&str] = &["initramfs-tools", "kmod", "linux-image-cloud-amd64"];

/// Modules the initrd loads: the Debian cloud kernel has virtio-mmio,
/// virtio-blk and virtio-net as modules, so the root disk needs them early.
pub const INITRD_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "ext4",
    "vsock",
    "vmw_vsock_virtio_transport",
];

/// Bump when the hooks' effect changes in a way their text does not show.
const RECIPE_VERSION: &str = "2";

/// Runs after the Essential packages, before the kernel is installed:
/// `MODULES=list` plus [`INITRD_MODULES`], so the kernel's postinst builds a
/// small initrd that can mount a virtio root disk.
fn essential_hook() -> String {
    format!(
        r#"set -eu
mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
printf 'MODULES=list\n' >"$1/etc/initramfs-tools/conf.d/banger.conf"
printf '%s\n' {} >"$1/usr/share/initramfs-tools/modules.d/banger.conf"
"#,
        INITRD_MODULES.join(" ")
    )
}

/// Units the customize hook masks (links to `/dev/null`): boot-time
/// scrubbing and periodic maintenance a throwaway dev VM does not need, and
/// the getty on the VT nobody looks at (the serial getty stays).
pub const MASKED_UNITS: &[&str] = &[
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "getty@tty1.service",
];

/// Runs last, before the tarball is written: [`CUSTOMIZE_TEMPLATE`] with
/// [`MASKED_UNITS`] filled in.
fn customize_hook() -> String {
    CUSTOMIZE_TEMPLATE.replace("@MASKED_UNITS@", &MASKED_UNITS.join(" "))
}

const CUSTOMIZE_TEMPLATE: &str = r#"set -eu
r="$1"
echo debian >"$r/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$r/etc/fstab"
sed -i 's/^root:[^:]*:/root:*:/' "$r/etc/shadow"
rm -f "$r"/etc/ssh/ssh_host_*
mkdir -p "$r/etc/systemd/system/ssh.service.d" "$r/etc/ssh/sshd_config.d"
cat >"$r/etc/systemd/system/ssh.service.d/banger-host-keys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'test -s /etc/ssh/ssh_host_ed25519_key || exec /usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'
EOF
for u in @MASKED_UNITS@; do
  ln -sf /dev/null "$r/etc/systemd/system/$u"
done
cat >"$r/etc/ssh/sshd_config.d/banger.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
EOF
rm -f "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r/etc/resolv.conf"
"#;

/// What is bootstrapped; its [`cache_key`](Recipe::cache_key) names the
/// cached tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// Debian suite.
    pub suite: String,
    /// Mirror URL.
    pub mirror: String,
    /// All packages, sorted and deduplicated.
    pub packages: Vec<String>,
    /// Debian's cloud kernel and its initrd are installed in the image.
    pub debian_kernel: bool,
}

impl Recipe {
    /// Check the request's values and fill in the defaults; `host_mirror`
    /// is asked only when no mirror is given.
    pub fn new(
        suite: Option<&str>,
        mirror: Option<&str>,
        include: &[String],
        debian_kernel: bool,
        host_mirror: impl FnOnce() -> Option<String>,
    ) -> Result<Self, ImageError> {
        let suite = suite.unwrap_or(DEFAULT_SUITE).to_string();
        if !valid_suite(&suite) {
            return Err(ImageError::Invalid(format!(
                "invalid suite {suite:?}: use a Debian suite or codename such as bookworm or trixie"
            )));
        }
        let mirror = match mirror {
            Some(m) => m.to_string(),
            None => host_mirror().unwrap_or_else(|| FALLBACK_MIRROR.to_string()),
        };
        if !valid_mirror(&mirror) {
            return Err(ImageError::Invalid(format!(
                "invalid mirror {mirror:?}: use an http://, https:// or file:// URL such as {FALLBACK_MIRROR}"
            )));
        }
        let mut packages: Vec<String> = BASE_PACKAGES.iter().map(|p| p.to_string()).collect();
        if debian_kernel {
            packages.extend(DEBIAN_KERNEL_PACKAGES.iter().map(|p| p.to_string()));
        }
        for p in include.iter().flat_map(|p| p.split(',')) {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            if !valid_package(p) {
                return Err(ImageError::Invalid(format!(
                    "invalid package name {p:?}: Debian package names use lower-case letters, digits and + - ."
                )));
            }
            packages.push(p.to_string());
        }
        packages.sort();
        packages.dedup();
        Ok(Recipe {
            suite,
            mirror,
            packages,
            debian_kernel,
        })
    }

    /// sha256 (hex) of everything that shapes the tarball.
    pub fn cache_key(&self) -> String {
        let hook = essential_hook();
        let mut h = Sha256::new();
        for part in [
            "banger-image-build",
            RECIPE_VERSION,
            &self.suite,
            &self.mirror,
            &self.packages.join(","),
            if self.debian_kernel { &hook } else { "" },
            &customize_hook(),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    }

    /// The argv (after `mmdebstrap`) that writes the tarball to `output`.
    pub fn mmdebstrap_args(&self, output: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "--mode=auto",
            "--variant=minbase",
            "--format=tar",
            "--aptopt=Acquire::Retries \"3\"",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push(format!("--include={}", self.packages.join(",")).into());
        if self.debian_kernel {
            args.push(format!("--essential-hook={}", essential_hook()).into());
        }
        args.push(format!("--customize-hook={}", customize_hook()).into());
        args.push(self.suite.clone().into());
        args.push(output.as_os_str().to_owned());
        args.push(self.mirror.clone().into());
        args
    }
}

fn valid_suite(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.len() <= 64
}

fn valid_mirror(m: &str) -> bool {
    ["http://", "https://", "file:///"]
        .iter()
        .any(|p| m.starts_with(p) && m.len() > p.len())
        && !m.chars().any(|c| c.is_whitespace() || c.is_control())
        && m.len() <= 1024
}

/// Debian policy 5.6.1: lower-case letters, digits, `+`, `-`, `.`; at least
/// two characters, starting with an alphanumeric.
fn valid_package(p: &str) -> bool {
    let mut chars = p.chars();
    p.len() >= 2
        && p.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// The host's Debian mirror: the first `URIs:` of a deb822 source (or URL of
/// a one-line `deb` source) that is not a security or updates archive, when
/// `/etc/os-release` says Debian.
pub fn host_mirror() -> Option<String> {
    let os_release = std::fs::read_to_string("/etc/os-release").ok()?;
    let mut sources = Vec::new();
    for f in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        if let Ok(text) = std::fs::read_to_string(f) {
            sources.push(text);
        }
    }
    mirror_from(&os_release, &sources)
}

/// [`host_mirror`] on given file contents.
pub fn mirror_from(os_release: &str, sources: &[String]) -> Option<String> {
    let is_debian = os_release.lines().any(|l| {
        let l = l.trim();
        l == "ID=debian" || l == "ID=\"debian\""
    });
    if !is_debian {
        return None;
    }
    let usable =
        |u: &str| valid_mirror(u) && !u.contains("security") && !u.contains("snapshot.debian.org");
    for text in sources {
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("URIs:") {
                if let Some(u) = rest.split_whitespace().find(|u| usable(u)) {
                    return Some(u.trim_end_matches('/').to_string());
                }
            } else if let Some(rest) = line.strip_prefix("deb ") {
                // `deb [opts] URL suite components`
                let mut words = rest.split_whitespace().peekable();
                if words.peek().is_some_and(|w| w.starts_with('[')) {
                    for w in words.by_ref() {
                        if w.ends_with(']') {
                            break;
                        }
                    }
                }
                if let Some(u) = words.next().filter(|u| usable(u)) {
                    return Some(u.trim_end_matches('/').to_string());
                }
            }
        }
    }
    None
}

/// A checked build request.
struct BuildJob {
    name: String,
    recipe: Recipe,
    no_cache: bool,
    /// The registered kernel the image boots (`None`: Debian's, from the tree).
    kernel: Option<PathBuf>,
}

/// Time spent in each step, for the progress text and the log.
#[derive(Default)]
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn record(&mut self, step: &'static str, since: Instant) {
        self.0.push((step, since.elapsed()));
    }
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, d)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{step} {:.1} s", d.as_secs_f64())?;
        }
        Ok(())
    }
}

const STEPS: u32 = 4;

impl ImageService {
    /// `image.build`: check the request, then build on a task. Returns the
    /// operation to follow.
    pub fn build(self: &Arc<Self>, p: ImageBuildParams) -> Result<Operation, ImageError> {
        let kernel = self.build_kernel_choice(&p)?;
        let recipe = Recipe::new(
            p.suite.as_deref(),
            p.mirror.as_deref(),
            &p.include,
            kernel.is_none(),
            host_mirror,
        )?;
        let name = p
            .name
            .clone()
            .unwrap_or_else(|| format!("debian-{}", recipe.suite));
        validate::image_name(&name)?;
        if self.store.find_image(&name)?.is_some() {
            return Err(name_taken(&name));
        }
        let cached = self.bootstrap_cache(&recipe).is_file();
        if (p.no_cache || !cached) && banger_config::find_binary("mmdebstrap").is_none() {
            return Err(mmdebstrap_missing());
        }
        let job = BuildJob {
            name,
            recipe,
            no_cache: p.no_cache,
            kernel,
        };
        let op = self.ops.start(
            "image.build",
            job.name.clone(),
            STEPS,
            Persist::AtStartAndEnd,
        );
        let this = Arc::clone(self);
        let op_id = op.id.clone();
        tokio::spawn(async move {
            let mut timings = Timings::default();
            let id = banger_store::new_id();
            let staging = this.staging_dir(&id);
            let result = this
                .build_into(&op_id, &job, &id, &staging, &mut timings)
                .await;
            if result.is_err() {
                let _ = std::fs::remove_dir_all(&staging);
            }
            this.finish_build(&op_id, &job, result, &timings);
        });
        Ok(op)
    }

    /// The registered kernel an image build boots: `--kernel-name`, else
    /// [`MICROVM_KERNEL`] when `banger kernel build` registered it; `None`
    /// (Debian's cloud kernel in the image) with `--debian-kernel` or when
    /// there is no such kernel.
    fn build_kernel_choice(&self, p: &ImageBuildParams) -> Result<Option<PathBuf>, ImageError> {
        match (&p.kernel_name, p.debian_kernel) {
            (Some(_), true) => Err(ImageError::Invalid(
                "give either --kernel-name NAME or --debian-kernel, not both".into(),
            )),
            (Some(k), false) => {
                crate::images::kernels::catalog_kernel(&self.store, k, "").map(Some)
            }
            (None, true) => Ok(None),
            (None, false) => Ok(self
                .store
                .find_kernel(MICROVM_KERNEL)?
                .map(|k| PathBuf::from(k.path))),
        }
    }

    /// Where the tarball of `recipe` is cached.
    fn bootstrap_cache(&self, recipe: &Recipe) -> PathBuf {
        self.bootstrap_cache_dir()
            .join(format!("{}.tar", recipe.cache_key()))
    }

    fn bootstrap_cache_dir(&self) -> PathBuf {
        self.layout.state_dir.join("cache").join("bootstrap")
    }

    async fn build_into(
        &self,
        op_id: &str,
        job: &BuildJob,
        id: &str,
        staging: &Path,
        timings: &mut Timings,
    ) -> Result<Image, ImageError> {
        let recipe = &job.recipe;
        let key = recipe.cache_key();
        let tarball = self.bootstrap_cache(recipe);
        // Leaf lock: two builds of one recipe never write the same tarball.
        let _tar_lock = self.blob_locks.lock(&format!("bootstrap-{key}")).await;
        let t = Instant::now();
        if !job.no_cache && tarball.is_file() {
            self.stage(
                op_id,
                1,
                &format!(
                    "using the cached bootstrap of {} ({})",
                    recipe.suite,
                    &key[..12]
                ),
            );
            timings.record("cached bootstrap", t);
        } else {
            self.bootstrap(op_id, recipe, &tarball).await?;
            timings.record("bootstrap", t);
        }

        let t = Instant::now();
        self.stage(
            op_id,
            2,
            &format!("flattening the root filesystem ({timings})"),
        );
        std::fs::create_dir_all(staging).map_err(ImageError::io("cannot create", staging))?;
        let (st, tb) = (staging.to_path_buf(), tarball.clone());
        let label = format!("bootstrap {}", &key[..12]);
        let tree = blocking(move || flatten(&st, &tb, &label)).await?;
        timings.record("flatten", t);

        let t = Instant::now();
        self.stage(op_id, 3, &format!("building the ext4 image ({timings})"));
        let st = staging.to_path_buf();
        let kernel = job.kernel.clone();
        blocking(move || assemble(&st, &tree, kernel.as_deref())).await?;
        timings.record("ext4+kernel", t);

        let t = Instant::now();
        self.stage(op_id, 4, &format!("publishing ({timings})"));
        let image = self
            .publish(
                staging,
                Staged {
                    id: id.to_string(),
                    name: job.name.clone(),
                    has_kernel: true,
                    has_initrd: job.kernel.is_none(),
                    source: format!("build:debian/{}", recipe.suite),
                },
            )
            .await?;
        timings.record("publish", t);
        Ok(image)
    }

    /// Run mmdebstrap into `<tarball>.partial`, then rename it into the cache.
    async fn bootstrap(
        &self,
        op_id: &str,
        recipe: &Recipe,
        tarball: &Path,
    ) -> Result<(), ImageError> {
        let dir = self.bootstrap_cache_dir();
        std::fs::create_dir_all(&dir).map_err(ImageError::io("cannot create", &dir))?;
        let partial = tarball.with_extension("tar.partial");
        let _ = std::fs::remove_file(&partial);
        let what = format!(
            "bootstrapping Debian {} from {}",
            recipe.suite, recipe.mirror
        );
        self.stage(op_id, 1, &what);
        let result = self.run_mmdebstrap(op_id, recipe, &partial, &what).await;
        if let Err(e) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, tarball).map_err(ImageError::io("cannot store", tarball))
    }

    async fn run_mmdebstrap(
        &self,
        op_id: &str,
        recipe: &Recipe,
        output: &Path,
        what: &str,
    ) -> Result<(), ImageError> {
        let mut child = tokio::process::Command::new("mmdebstrap")
            .args(recipe.mmdebstrap_args(output))
            .env("LC_ALL", "C.UTF-8")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    mmdebstrap_missing()
                } else {
                    ImageError::Internal(format!("cannot run mmdebstrap: {e}"))
                }
            })?;
        let mut last: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        if let Some(stderr) = child.stderr.take() {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(info) = line.strip_prefix("I: ") {
                    self.stage(op_id, 1, &format!("{what}: {}", info.trim_end_matches('.')));
                }
                if last.len() == TAIL_LINES {
                    last.pop_front();
                }
                last.push_back(line);
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| ImageError::Internal(format!("cannot wait for mmdebstrap: {e}")))?;
        if status.success() && output.is_file() {
            return Ok(());
        }
        let tail: Vec<String> = last.into_iter().collect();
        Err(ImageError::Internal(format!(
            "mmdebstrap failed ({status}) {what}; check that the mirror is reachable from this host and has suite {:?} (pick another with --mirror URL / --suite NAME). Its last output:\n{}",
            recipe.suite,
            tail.join("\n")
        )))
    }

    fn finish_build(
        &self,
        op_id: &str,
        job: &BuildJob,
        result: Result<Image, ImageError>,
        timings: &Timings,
    ) {
        match &result {
            Ok(image) => tracing::info!(
                op = op_id, image = %image.name, suite = %job.recipe.suite,
                mirror = %job.recipe.mirror, bootstrap = %job.recipe.cache_key(),
                timings = %timings, "image built"
            ),
            Err(e) => tracing::warn!(op = op_id, error = %e, "image.build failed"),
        }
        let result = result.map_err(DaemonError::from);
        self.ops
            .finish(op_id, result.as_ref().map(|_| format!("done ({timings})")));
    }
}

/// Lines of mmdebstrap's output quoted in an error.
const TAIL_LINES: usize = 15;

fn mmdebstrap_missing() -> ImageError {
    ImageError::Invalid(
        "mmdebstrap is not installed on the daemon's host; install it (`apt install mmdebstrap`) and build again"
            .into(),
    )
}

/// Flatten the tarball into `<staging>/tree`.
fn flatten(staging: &Path, tarball: &Path, label: &str) -> Result<Flattened, ImageError> {
    let tree_dir = staging.join("tree");
    let result = (|| {
        let mut f = Flattener::new(&tree_dir)?;
        f.apply_layer(tarball, label)?;
        Ok(f.finish()?)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tree_dir);
    }
    result
}

/// Link the registered `kernel`, or take Debian's kernel and initrd from
/// the tree, and build `rootfs.ext4`; the tree is removed either way.
fn assemble(staging: &Path, tree: &Flattened, kernel: Option<&Path>) -> Result<(), ImageError> {
    let result = (|| {
        if let Some(k) = kernel {
            crate::images::service::link_or_copy(k, &staging.join("vmlinux"))?;
        } else {
            let (vmlinuz, initrd) = boot_files(&tree.root)?;
            crate::images::service::install_kernel(&vmlinuz, &staging.join("vmlinux"))?;
            banger_imagemgr::clone_or_copy(&initrd, &staging.join("initrd"))?;
        }
        banger_imagemgr::build_ext4(tree, &staging.join("rootfs.ext4"))?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tree.root);
    result
}

/// `/boot/vmlinuz-<v>` and `/boot/initrd.img-<v>` of the newest version `v`
/// that has both.
pub fn boot_files(root: &Path) -> Result<(PathBuf, PathBuf), ImageError> {
    let boot = root.join("boot");
    let mut versions: Vec<String> = std::fs::read_dir(&boot)
        .map_err(ImageError::io("cannot read", &boot))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .filter(|v| boot.join(format!("initrd.img-{v}")).is_file())
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    let v = versions.pop().ok_or_else(|| {
        ImageError::Internal(
            "the bootstrapped system has no /boot/vmlinuz-* with a matching initrd.img-*; the kernel package did not install cleanly, build again with --no-cache"
                .into(),
        )
    })?;
    Ok((
        boot.join(format!("vmlinuz-{v}")),
        boot.join(format!("initrd.img-{v}")),
    ))
}

/// Compare kernel versions by their numeric runs (`6.1.0-9` < `6.1.0-10`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<(u64, String)> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .map(|p| (p.parse::<u64>().unwrap_or(0), p.to_string()))
            .collect()
    };
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(include: &[&str]) -> Recipe {
        let inc: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        Recipe::new(None, None, &inc, false, || None).unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let r = recipe(&[]);
        assert_eq!(r.suite, "bookworm");
        assert_eq!(r.mirror, FALLBACK_MIRROR);
        for p in BASE_PACKAGES {
            assert!(r.packages.iter().any(|x| x == p), "{p}");
        }
        let host = Recipe::new(None, None, &[], false, || {
            Some("http://m.example/debian".into())
        })
        .unwrap();
        assert_eq!(host.mirror, "http://m.example/debian");
        let given = Recipe::new(
            Some("trixie"),
            Some("https://x.example/d"),
            &[],
            false,
            || None,
        )
        .unwrap();
        assert_eq!(
            (given.suite.as_str(), given.mirror.as_str()),
            ("trixie", "https://x.example/d")
        );

        let bad = |s: Option<&str>, m: Option<&str>, inc: &[&str]| {
            let inc: Vec<String> = inc.iter().map(|s| s.to_string()).collect();
            Recipe::new(s, m, &inc, false, || None)
                .unwrap_err()
                .to_string()
        };
        assert!(bad(Some("--x"), None, &[]).contains("invalid suite"));
        assert!(bad(Some("Bookworm"), None, &[]).contains("invalid suite"));
        assert!(bad(None, Some("ftp://x"), &[]).contains("invalid mirror"));
        assert!(bad(None, Some("http://x y"), &[]).contains("invalid mirror"));
        assert!(bad(None, Some("http://"), &[]).contains("invalid mirror"));
        assert!(bad(None, None, &["--hook=x"]).contains("invalid package"));
        assert!(bad(None, None, &["vim;rm"]).contains("invalid package"));
        assert!(bad(None, None, &["Vim"]).contains("invalid package"));
    }

    #[test]
    fn packages_are_merged_sorted_and_deduplicated() {
        let r = recipe(&["vim,curl", "git", " htop ", "libc6-dev,g++"]);
        let mut expected: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
        expected.extend(["vim", "curl", "htop", "libc6-dev", "g++"].map(String::from));
        expected.sort();
        assert_eq!(r.packages, expected);
    }

    #[test]
    fn cache_key_follows_the_recipe_only() {
        let a = recipe(&["vim", "curl"]);
        let b = recipe(&["curl,vim", "vim"]);
        assert_eq!(
            a.cache_key(),
            b.cache_key(),
            "order and repeats do not matter"
        );
        assert_eq!(a.cache_key().len(), 64);
        assert!(a.cache_key().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.cache_key(), recipe(&["vim"]).cache_key());
        let mut c = a.clone();
        c.suite = "trixie".into();
        assert_ne!(a.cache_key(), c.cache_key());
        let mut m = a.clone();
        m.mirror = "http://other.example/debian".into();
        assert_ne!(a.cache_key(), m.cache_key());
        // Stable across runs: a cached tarball stays valid after a restart.
        assert_eq!(a.cache_key(), recipe(&["vim", "curl"]).cache_key());
    }

    #[test]
    fn mmdebstrap_argv() {
        let r = recipe(&["vim"]);
        let args: Vec<String> = r
            .mmdebstrap_args(Path::new("/c/x.tar.partial"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let n = args.len();
        assert_eq!(
            &args[n - 3..],
            ["bookworm", "/c/x.tar.partial", FALLBACK_MIRROR]
        );
        for flag in ["--mode=auto", "--variant=minbase", "--format=tar"] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
        let include = args
            .iter()
            .find_map(|a| a.strip_prefix("--include="))
            .unwrap();
        assert_eq!(include.split(',').collect::<Vec<_>>(), r.packages);
        // Every option comes before the positional arguments.
        assert!(args[..n - 3].iter().all(|a| a.starts_with("--")));
        // A registered kernel: no Debian kernel, initrd hook or modules.
        assert!(!args.iter().any(|a| a.starts_with("--essential-hook=")));
        for p in DEBIAN_KERNEL_PACKAGES {
            assert!(!r.packages.iter().any(|x| x == p), "{p}");
        }
        let deb = Recipe::new(None, None, &["vim".into()], true, || None).unwrap();
        for p in DEBIAN_KERNEL_PACKAGES {
            assert!(deb.packages.iter().any(|x| x == p), "{p}");
        }
        assert_ne!(deb.cache_key(), r.cache_key());
        let deb_args: Vec<String> = deb
            .mmdebstrap_args(Path::new("/c/x.tar.partial"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let ess = deb_args
            .iter()
            .find_map(|a| a.strip_prefix("--essential-hook="))
            .unwrap();
        assert!(ess.contains("MODULES=list"));
        for m in INITRD_MODULES {
            assert!(ess.contains(&format!(" {m}")), "initrd module {m}");
        }
        let cus = args
            .iter()
            .find_map(|a| a.strip_prefix("--customize-hook="))
            .unwrap();
        for needle in [
            "/etc/hostname",
            "/dev/vda / ext4 rw,relatime 0 1",
            "rm -f \"$r\"/etc/ssh/ssh_host_*",
            "ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key",
            "HostKey /etc/ssh/ssh_host_ed25519_key",
            "root:*:",
        ] {
            assert!(cus.contains(needle), "customize hook lacks {needle}");
        }
        // The host-key drop-in resets ExecStartPre (Debian's `sshd -t`
        // fails without host keys, and sshd checks its config anyway).
        let reset = cus.find("ExecStartPre=\n").unwrap();
        let keygen = cus.find("ssh-keygen -q").unwrap();
        assert!(reset < keygen);
        assert!(!cus.contains("sshd -t"));
        let masked = cus
            .split("for u in ")
            .nth(1)
            .and_then(|r| r.split("; do").next())
            .unwrap();
        assert_eq!(masked.split(' ').collect::<Vec<_>>(), MASKED_UNITS);
        assert!(cus.contains("ln -sf /dev/null \"$r/etc/systemd/system/$u\""));
    }

    #[test]
    fn host_mirror_detection() {
        let deb = "PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\n".to_string();
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/2025\nURIs: http://mirror.example/debian/\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n".to_string();
        assert_eq!(
            mirror_from(&deb, std::slice::from_ref(&deb822)).as_deref(),
            Some("http://mirror.example/debian")
        );
        let security_first =
            "URIs: http://security.debian.org/debian-security\nURIs: https://m2.example/debian\n"
                .to_string();
        assert_eq!(
            mirror_from(&deb, &[security_first]).as_deref(),
            Some("https://m2.example/debian")
        );
        let one_line = "# deb http://commented.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m3.example/debian bookworm main\n".to_string();
        assert_eq!(
            mirror_from(&deb, &[String::new(), one_line]).as_deref(),
            Some("http://m3.example/debian")
        );
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\n";
        assert_eq!(mirror_from(ubuntu, &[deb822]), None);
        assert_eq!(mirror_from(&deb, &[]), None);
    }

    #[test]
    fn boot_files_pick_the_newest_complete_pair() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        std::fs::create_dir(&boot).unwrap();
        assert!(boot_files(dir.path()).is_err());
        for f in [
            "vmlinuz-6.1.0-9-cloud-amd64",
            "initrd.img-6.1.0-9-cloud-amd64",
            "vmlinuz-6.1.0-10-cloud-amd64",
            "initrd.img-6.1.0-10-cloud-amd64",
            "vmlinuz-6.1.0-11-cloud-amd64",
        ] {
            std::fs::write(boot.join(f), b"x").unwrap();
        }
        let (k, i) = boot_files(dir.path()).unwrap();
        assert!(k.ends_with("vmlinuz-6.1.0-10-cloud-amd64"), "{k:?}");
        assert!(i.ends_with("initrd.img-6.1.0-10-cloud-amd64"), "{i:?}");
    }
}
