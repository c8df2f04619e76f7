//! Helpers for the pull tests: a real `docker-registry` on a free loopback
//! port (config written here, no auth, storage in a temp dir), layer and
//! image builders that push with oci-client, and no-mount ext4 checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_api::Operation;
use banger_api::rpc::ImagePullParams;
use banger_daemon::ImageService;
use banger_daemon::config::Layout;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{ImageIndexEntry, OciImageIndex, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// Print a SKIP line past the harness capture and say whether to skip.
pub fn skip_without(test: &str, programs: &[&str]) -> bool {
    if let Some(p) = programs.iter().find(|p| !banger_testsupport::in_path(p)) {
        banger_testsupport::skip!(
            return true;
            test, "{p} not installed (apt-get install docker-registry e2fsprogs)"
        );
    }
    false
}

/// A `docker-registry serve` on 127.0.0.1:<free port>, killed on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = banger_testsupport::free_port();
        let addr = format!("127.0.0.1:{port}");
        let root = dir.path().join("data");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                root.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if http_get_status(&addr, "/v2/") == Some(200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            addr,
            root,
            _dir: dir,
        }
    }

    /// The registry's stored data file of blob `digest`.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One tar entry of a test layer.
pub enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Owned(&'a str, u32, u32, u32, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Xattr(&'a str, &'a str, &'a [u8]),
}

pub fn tar_bytes(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        match e {
            E::Dir(p, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*m);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, m, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, p, *d).unwrap();
            }
            E::Owned(p, m, u, g, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                h.set_uid((*u).into());
                h.set_gid((*g).into());
                h.set_size(d.len() as u64);
                b.append_data(&mut h, p, *d).unwrap();
            }
            E::Sym(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Hard(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Char(p, ma, mi) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_device_major(*ma).unwrap();
                h.set_device_minor(*mi).unwrap();
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Xattr(p, name, value) => {
                let key = format!("SCHILY.xattr.{name}");
                b.append_pax_extensions([(key.as_str(), *value)]).unwrap();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o755);
                h.set_size(2);
                b.append_data(&mut h, p, &b"ok"[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub const OCI_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_GZ: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

pub fn layer(data: Vec<u8>, media_type: &str) -> ImageLayer {
    ImageLayer::new(data, media_type.to_string(), None)
}

fn config_blob(arch: &str, docker: bool, diff_ids: &[String]) -> Config {
    let ids = serde_json::to_string(diff_ids).unwrap();
    let data = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":{ids}}},"config":{{}}}}"#
    );
    let mt = if docker {
        "application/vnd.docker.container.image.v1+json"
    } else {
        "application/vnd.oci.image.config.v1+json"
    };
    Config::new(data.into_bytes(), mt.to_string(), None)
}

/// Push an image (OCI media types, or Docker's when `docker`); returns the
/// manifest digest.
pub async fn push(reference: &str, layers: Vec<ImageLayer>, arch: &str, docker: bool) -> String {
    push_with_diff_ids(reference, layers, arch, docker, &[]).await
}

/// [`push`] with the config's `rootfs.diff_ids` filled (tools like umoci
/// need them; banger does not read them).
pub async fn push_with_diff_ids(
    reference: &str,
    layers: Vec<ImageLayer>,
    arch: &str,
    docker: bool,
    diff_ids: &[String],
) -> String {
    let r = Reference::from_str(reference).unwrap();
    let cfg = config_blob(arch, docker, diff_ids);
    let mut manifest = OciImageManifest::build(&layers, &cfg, None);
    if docker {
        manifest.media_type =
            Some("application/vnd.docker.distribution.manifest.v2+json".to_string());
        manifest.config.media_type = cfg.media_type.clone();
    }
    let c = client();
    c.push(&r, &layers, cfg, &RegistryAuth::Anonymous, Some(manifest))
        .await
        .unwrap();
    let (_, digest) = c
        .pull_manifest_raw(
            &r,
            &RegistryAuth::Anonymous,
            &[
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ],
        )
        .await
        .unwrap();
    digest
}

/// Push a manifest list of already pushed per-platform manifests.
pub async fn push_index(reference: &str, entries: &[(&str, &str, i64)]) {
    let r = Reference::from_str(reference).unwrap();
    let manifests = entries
        .iter()
        .map(|(digest, arch, size)| ImageIndexEntry {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.to_string(),
            size: *size,
            platform: Some(
                serde_json::from_value(serde_json::json!({"architecture": arch, "os": "linux"}))
                    .unwrap(),
            ),
            annotations: None,
            artifact_type: None,
        })
        .collect();
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some("application/vnd.oci.image.index.v1+json".into()),
        manifests,
        annotations: None,
        artifact_type: None,
    };
    client()
        .push_manifest_list(&r, &RegistryAuth::Anonymous, index)
        .await
        .unwrap();
}

/// Size of a pushed manifest.
pub async fn manifest_size(reference: &str) -> i64 {
    let r = Reference::from_str(reference).unwrap();
    let (raw, _) = client()
        .pull_manifest_raw(
            &r,
            &RegistryAuth::Anonymous,
            &["application/vnd.oci.image.manifest.v1+json"],
        )
        .await
        .unwrap();
    raw.len() as i64
}

/// An image service over a fresh state dir.
pub struct Svc {
    pub images: Arc<ImageService>,
    pub store: Arc<banger_store::Store>,
    pub state: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn service() -> Svc {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("images")).unwrap();
    let store = Arc::new(banger_store::Store::open(state.join("banger.db")).unwrap());
    let layout = Layout {
        config_file: dir.path().join("config.toml"),
        state_dir: state.clone(),
        runtime_dir: dir.path().join("run"),
    };
    Svc {
        images: Arc::new(ImageService::new(Arc::clone(&store), layout)),
        store,
        state,
        _dir: dir,
    }
}

impl Svc {
    /// Run a pull to its end and return the final operation.
    pub async fn pull(&self, reference: &str, name: &str, platform: Option<&str>) -> Operation {
        let op = self
            .images
            .pull(ImagePullParams {
                reference: reference.to_string(),
                name: Some(name.to_string()),
                kernel: None,
                platform: platform.map(str::to_string),
                kernel_name: None,
            })
            .unwrap();
        let mut rx = self.images.watch_op(&op.id).unwrap();
        tokio::time::timeout(
            Duration::from_secs(120),
            rx.wait_for(|o| o.0.state.is_done()),
        )
        .await
        .expect("pull finished in time")
        .unwrap()
        .0
        .clone()
    }

    /// Run a pull that must fail: it publishes nothing (see
    /// [`Svc::assert_nothing_published`]); returns its error message.
    pub async fn pull_fails(&self, reference: &str, name: &str, platform: Option<&str>) -> String {
        let op = self.pull(reference, name, platform).await;
        assert_eq!(op.state, banger_api::OpState::Failed, "{reference}");
        self.assert_nothing_published(name);
        op.error.expect("a failed operation says why").message
    }

    /// No staging leftovers and no image row named `name`.
    pub fn assert_nothing_published(&self, name: &str) {
        assert!(self.store.find_image(name).unwrap().is_none());
        let leftovers: Vec<_> = std::fs::read_dir(self.state.join("images"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".staging-"))
            .collect();
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    }

    pub fn rootfs(&self, name: &str) -> PathBuf {
        PathBuf::from(self.store.find_image(name).unwrap().unwrap().rootfs_path)
    }
}

/// `debugfs -R CMD IMG` stdout, or None when debugfs reports an error.
pub fn dfs(img: &Path, cmd: &str) -> Option<String> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err
        .lines()
        .any(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
    {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Unused-import guard for BTreeMap in some builds.
pub type Annotations = BTreeMap<String, String>;
