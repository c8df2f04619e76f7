//! Image bundles (format in `banger_imagemgr::bundle` and docs/images.md):
//! `image.export_bundle` writes one, and `image.pull` of an absolute path
//! or an `http(s)://` URL imports one as an asynchronous operation.
//!
//! Import reads and verifies the bundle into a staging directory
//! (unlocked), checks the root filesystem and kernel, then publishes with
//! the same atom as every other image (`ImageService::publish`). A URL is
//! streamed straight into the reader (no downloaded copy). Bounds (see
//! `banger_imagemgr::read_bundle_from`): the manifest is at most 1 MiB, the
//! declared sizes must fit in the free space of the state directory's
//! filesystem before anything is written, and each member is written
//! through a writer that stops at its declared size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_api::rpc::{ImageExportBundleParams, ImagePullParams};
use banger_api::{BundleExported, Image, Operation, validate};
use banger_imagemgr::{BundleManifest, BundleSource, read_bundle, read_bundle_from, write_bundle};
use futures_util::StreamExt;

use crate::common::Persist;
use crate::common::blocking;
use crate::images::ImageError;
use crate::images::service::{ImageService, Staged, name_taken};

/// Where an imported bundle comes from.
enum BundleFrom {
    File(PathBuf),
    Url(String),
}

/// Whether `reference` names a bundle rather than a registry image.
pub fn is_bundle_ref(reference: &str) -> bool {
    reference.starts_with('/')
        || reference.starts_with("http://")
        || reference.starts_with("https://")
}

impl ImageService {
    /// `image.export_bundle`.
    pub async fn export_bundle(
        &self,
        p: ImageExportBundleParams,
    ) -> Result<BundleExported, ImageError> {
        let image = self.resolve(&p.name)?;
        let out = PathBuf::from(&p.file);
        if !out.is_absolute() {
            return Err(ImageError::Invalid(format!(
                "bundle path {:?} must be absolute",
                p.file
            )));
        }
        if out.exists() {
            return Err(ImageError::Conflict(format!(
                "{} already exists; pick another file or remove it first",
                out.display()
            )));
        }
        let dir = self.layout.image_dir(&image.id);
        let img = image.clone();
        let o = out.clone();
        let manifest = blocking(move || {
            let kernel = (!img.kernel_path.is_empty()).then(|| PathBuf::from(&img.kernel_path));
            let initrd = img.initrd_path.as_ref().map(PathBuf::from);
            let seed = dir.join("work-seed.ext4");
            let seed = seed.is_file().then_some(seed);
            Ok::<_, ImageError>(write_bundle(
                &BundleSource {
                    name: &img.name,
                    rootfs: Path::new(&img.rootfs_path),
                    kernel: kernel.as_deref(),
                    initrd: initrd.as_deref(),
                    work_seed: seed.as_deref(),
                },
                &o,
            )?)
        })
        .await?;
        let bytes = std::fs::metadata(&out)
            .map_err(ImageError::io("cannot stat", &out))?
            .len();
        Ok(BundleExported {
            name: image.name,
            path: out.display().to_string(),
            bytes,
            rootfs_sha256: format!("sha256:{}", manifest.rootfs.sha256),
        })
    }

    /// `image.pull` of a bundle file or URL.
    pub(crate) fn pull_bundle(
        self: &Arc<Self>,
        p: ImagePullParams,
    ) -> Result<Operation, ImageError> {
        let from = if p.reference.starts_with('/') {
            let path = crate::images::service::existing_file(&p.reference, "bundle")?;
            BundleFrom::File(path)
        } else {
            let url = reqwest::Url::parse(&p.reference).map_err(|e| {
                ImageError::Invalid(format!("invalid bundle URL {:?}: {e}", p.reference))
            })?;
            let host = url.host_str().unwrap_or("");
            let local = host == "localhost" || host == "[::1]" || host.starts_with("127.");
            if url.scheme() == "http" && !local {
                return Err(ImageError::Invalid(format!(
                    "refusing plain HTTP for {host}: use https:// (plain HTTP is only for localhost)"
                )));
            }
            BundleFrom::Url(p.reference.clone())
        };
        let kernel = p
            .kernel_name
            .as_deref()
            .map(|k| {
                crate::images::kernels::catalog_kernel(
                    &self.store,
                    k,
                    p.kernel.as_deref().unwrap_or(""),
                )
            })
            .transpose()?;
        if let Some(n) = &p.name {
            validate::image_name(n)?;
            if self.store.find_image(n)?.is_some() {
                return Err(name_taken(n));
            }
        }
        let op = self.ops.start(
            "image.pull",
            p.name.clone().unwrap_or_else(|| p.reference.clone()),
            3,
            Persist::AtEnd,
        );
        let this = Arc::clone(self);
        let op_id = op.id.clone();
        tokio::spawn(async move {
            let result = this
                .run_bundle(&op_id, from, p.name, kernel, &p.reference)
                .await;
            if let Ok(image) = &result {
                this.ops.set_subject(&op_id, &image.name);
            }
            this.finish_pull(&op_id, result.map(|_| ()));
        });
        Ok(op)
    }

    async fn run_bundle(
        &self,
        op_id: &str,
        from: BundleFrom,
        name: Option<String>,
        kernel: Option<PathBuf>,
        reference: &str,
    ) -> Result<Image, ImageError> {
        let id = banger_store::new_id();
        let staging = self.staging_dir(&id);
        std::fs::create_dir_all(&staging).map_err(ImageError::io("cannot create", &staging))?;
        let result = async {
            let st = staging.clone();
            let check = move |m: BundleManifest| -> Result<BundleManifest, ImageError> {
                banger_imagemgr::check_rootfs(&st.join("rootfs.ext4"))?;
                if m.kernel.is_some() {
                    banger_imagemgr::check_kernel(&st.join("vmlinux"))?;
                }
                if let Some(k) = &kernel {
                    if m.kernel.is_some() {
                        return Err(ImageError::Invalid(
                            "this bundle carries its own kernel; pull it without --kernel-name"
                                .into(),
                        ));
                    }
                    crate::images::service::link_or_copy(k, &st.join("vmlinux"))?;
                }
                Ok(m)
            };
            let st = staging.clone();
            let manifest = match &from {
                BundleFrom::File(p) => {
                    self.stage(op_id, 2, "verifying bundle");
                    let b = p.clone();
                    blocking(move || check(read_bundle(&b, &st)?)).await?
                }
                BundleFrom::Url(url) => {
                    self.stage(op_id, 1, "downloading and verifying bundle");
                    stream_bundle(url, &st, check).await?
                }
            };
            let name = name.unwrap_or(manifest.name.clone());
            validate::image_name(&name)?;
            self.stage(op_id, 3, "publishing");
            self.publish(
                &staging,
                Staged {
                    id: id.clone(),
                    name,
                    has_kernel: manifest.kernel.is_some() || staging.join("vmlinux").is_file(),
                    has_initrd: manifest.initrd.is_some(),
                    source: format!("bundle:{reference}"),
                },
            )
            .await
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }
}

/// Read a bundle straight from its download into `staging` (no copy of the
/// bundle is kept on disk): the body streams through a channel into
/// [`read_bundle_from`] on a blocking thread, so every member is bounded by
/// its declared size and the free-space check sees the manifest before
/// anything is written. `check` runs on the same thread after the read.
async fn stream_bundle(
    url: &str,
    staging: &Path,
    check: impl FnOnce(BundleManifest) -> Result<BundleManifest, ImageError> + Send + 'static,
) -> Result<BundleManifest, ImageError> {
    let fail = |e: &dyn std::fmt::Display| {
        ImageError::Internal(format!("downloading bundle {url} failed: {e}; try again"))
    };
    let resp = reqwest::get(url).await.map_err(|e| fail(&e))?;
    if !resp.status().is_success() {
        return Err(fail(&format!("HTTP {}", resp.status())));
    }
    // A valid bundle is no larger than the files it unpacks to (plus tar
    // headers), which must fit in the free space: a longer stream (say,
    // endless compressed padding that unpacks to nothing) is cut there.
    let cap = banger_imagemgr::available_bytes(staging)?.saturating_add(1 << 20);
    let too_long = || {
        format!(
            "bundle {url} is longer than the {cap} bytes its files could take in {} (the free space, plus 1 MiB); the bundle is corrupt or hostile, or free space there",
            staging.display()
        )
    };
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(ImageError::Invalid(too_long()));
    }
    let mut received = 0u64;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(8);
    let (st, label) = (staging.to_path_buf(), PathBuf::from(url));
    let reader = tokio::task::spawn_blocking(move || {
        let input = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        check(read_bundle_from(input, &label, &st)?)
    });
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let mut item = chunk.map(Vec::from).map_err(|e| fail(&e).to_string());
        if let Ok(c) = &item {
            received = received.saturating_add(c.len() as u64);
            if received > cap {
                item = Err(too_long());
            }
        }
        let failed = item.is_err();
        // A closed channel: the reader is done (or refused the bundle).
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    reader
        .await
        .map_err(|e| ImageError::Internal(e.to_string()))?
}

/// `Read` over the chunks of a download, for the blocking bundle reader.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => (self.buf, self.pos) = (b, 0),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
