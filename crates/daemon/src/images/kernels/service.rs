//! `KernelService`: the kernel catalogue (`banger kernel list|pull|register|delete`).
//!
//! Kernels live in `<state>/kernels/<id>/vmlinux` (plus `initrd` when the
//! catalog entry has one), rows in the store's `kernels` table. Downloads and
//! bzImage extraction run unlocked in `<state>/kernels/.staging-<id>`; only
//! the publication atom (re-check the name, rename into place, insert the
//! row) holds `kernel_mu`. An image registered with `--kernel-name` hard-links
//! the kernel file, so a kernel is "in use" while some image's kernel file is
//! the same inode; `kernel.delete` refuses then, naming the images.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_api::{Deleted, Kernel, validate};
use banger_store::Store;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::common::blocking;
use crate::config::Layout;
use crate::images::ImageError;
use crate::images::kernels::catalog::Catalog;
use crate::images::service::{existing_file, install_kernel};

/// The kernel service.
pub struct KernelService {
    store: Arc<Store>,
    layout: Layout,
    catalog: Option<PathBuf>,
    /// Publication lock; a leaf, nothing slow runs under it.
    kernel_mu: tokio::sync::Mutex<()>,
}

impl KernelService {
    /// Build the service; `catalog` is the `kernel_catalog` config key.
    pub fn new(store: Arc<Store>, layout: Layout, catalog: Option<PathBuf>) -> Self {
        Self {
            store,
            layout,
            catalog,
            kernel_mu: tokio::sync::Mutex::new(()),
        }
    }

    fn kernels_dir(&self) -> PathBuf {
        self.layout.state_dir.join("kernels")
    }

    /// `kernel.list`, with each file's size.
    pub fn list(&self) -> Result<Vec<Kernel>, ImageError> {
        let mut ks = self.store.list_kernels()?;
        for k in &mut ks {
            k.size_bytes = std::fs::metadata(&k.path).map(|m| m.len()).unwrap_or(0);
        }
        Ok(ks)
    }

    /// A kernel by name or id, with a hint when there is none.
    pub fn resolve(&self, name: &str) -> Result<Kernel, ImageError> {
        self.store.find_kernel(name)?.ok_or_else(|| {
            ImageError::NotFound(format!(
                "no kernel named {name:?}; see `banger kernel list`, or add one with `banger kernel pull` / `banger kernel register`"
            ))
        })
    }

    /// `kernel.register`: a local ELF vmlinux or bzImage.
    pub async fn register(
        &self,
        name: &str,
        file: &str,
        version: Option<String>,
    ) -> Result<Kernel, ImageError> {
        self.check_free(name)?;
        let src = existing_file(file, "kernel")?;
        crate::images::service::check_kernel_or_bzimage(&src)?;
        let source = format!("register:{}", src.display());
        self.install(name, &src, version, source).await
    }

    /// Install the ELF vmlinux or bzImage `src` (already checked) as kernel
    /// `name`, recording `source`: `kernel.register` and `kernel.build`.
    pub(crate) async fn install(
        &self,
        name: &str,
        src: &Path,
        version: Option<String>,
        source: String,
    ) -> Result<Kernel, ImageError> {
        self.check_free(name)?;
        let src = src.to_path_buf();
        let id = banger_store::new_id();
        let staging = self.kernels_dir().join(format!(".staging-{id}"));
        let result = async {
            mkdir(&staging)?;
            let (s, d) = (src.clone(), staging.join("vmlinux"));
            blocking(move || install_kernel(&s, &d)).await?;
            self.publish(&staging, &id, name, version, source).await
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    /// `kernel.pull`: download a catalog entry, verify, register.
    pub async fn pull(&self, name: &str) -> Result<Kernel, ImageError> {
        let catalog = Catalog::load(self.catalog.as_deref())?;
        let entry = catalog.entry(name)?.clone();
        self.check_free(name)?;
        let id = banger_store::new_id();
        let staging = self.kernels_dir().join(format!(".staging-{id}"));
        let result = async {
            mkdir(&staging)?;
            let raw = staging.join("download");
            download_verified(&entry.url, &entry.sha256, &raw).await?;
            if let (Some(url), Some(sha)) = (&entry.initrd_url, &entry.initrd_sha256) {
                download_verified(url, sha, &staging.join("initrd")).await?;
            }
            let dst = staging.join("vmlinux");
            let r = raw.clone();
            blocking(move || {
                crate::images::service::check_kernel_or_bzimage(&r)?;
                install_kernel(&r, &dst)?;
                std::fs::remove_file(&r).map_err(ImageError::io("cannot remove", &r))
            })
            .await?;
            let source = format!("catalog:{}", entry.url);
            self.publish(&staging, &id, name, Some(entry.version.clone()), source)
                .await
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    pub(crate) fn check_free(&self, name: &str) -> Result<(), ImageError> {
        validate::image_name(name)?;
        if self.store.find_kernel(name)?.is_some() {
            return Err(ImageError::Conflict(format!(
                "a kernel named {name:?} already exists; pick another name or delete it with `banger kernel delete {name}`"
            )));
        }
        Ok(())
    }

    async fn publish(
        &self,
        staging: &Path,
        id: &str,
        name: &str,
        version: Option<String>,
        source: String,
    ) -> Result<Kernel, ImageError> {
        let st = staging.join("vmlinux");
        let sha = blocking(move || Ok::<_, ImageError>(banger_imagemgr::sha256_file(&st)?)).await?;
        let final_dir = self.kernels_dir().join(id);
        let kernel = Kernel {
            id: id.to_string(),
            name: name.to_string(),
            version,
            path: final_dir.join("vmlinux").display().to_string(),
            sha256: sha.hex().to_string(),
            created_at: banger_store::now_millis(),
            size_bytes: 0,
            source,
        };
        let _publish = self.kernel_mu.lock().await;
        self.check_free(name)?;
        std::fs::rename(staging, &final_dir)
            .map_err(ImageError::io("cannot publish", &final_dir))?;
        if let Err(e) = self.store.insert_kernel(&kernel) {
            let _ = std::fs::remove_dir_all(&final_dir);
            return Err(e.into());
        }
        tracing::info!(kernel = %name, id = %id, "kernel registered");
        Ok(Kernel {
            size_bytes: std::fs::metadata(&kernel.path)
                .map(|m| m.len())
                .unwrap_or(0),
            ..kernel
        })
    }

    /// `kernel.delete`: refused while an image boots this kernel file.
    pub async fn delete(&self, name: &str) -> Result<Deleted, ImageError> {
        let kernel = self.resolve(name)?;
        let _publish = self.kernel_mu.lock().await;
        let users = self.images_using(&kernel)?;
        if !users.is_empty() {
            return Err(ImageError::Conflict(format!(
                "kernel {:?} is used by image(s) {}; delete those images first (`banger image delete NAME`)",
                kernel.name,
                users.join(", ")
            )));
        }
        self.store.delete_kernel(&kernel.id)?;
        let dir = self.kernels_dir().join(&kernel.id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove kernel files");
        }
        Ok(Deleted {
            id: kernel.id,
            name: kernel.name,
        })
    }

    /// Names of the images whose kernel file is this kernel's file.
    fn images_using(&self, kernel: &Kernel) -> Result<Vec<String>, ImageError> {
        let Ok(k) = std::fs::metadata(&kernel.path) else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .list_images()?
            .into_iter()
            .filter(|i| {
                std::fs::metadata(&i.kernel_path)
                    .is_ok_and(|m| m.dev() == k.dev() && m.ino() == k.ino())
            })
            .map(|i| i.name)
            .collect())
    }

    /// Remove staging directories a crash left behind (daemon start).
    pub fn sweep_staging(&self) {
        let Ok(rd) = std::fs::read_dir(self.kernels_dir()) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".staging-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn mkdir(p: &Path) -> Result<(), ImageError> {
    std::fs::create_dir_all(p).map_err(ImageError::io("cannot create", p))
}

/// Largest kernel or initrd `kernel.pull` downloads (kernels are tens of
/// MiB; a bigger answer is a wrong URL or a hostile server).
const MAX_KERNEL_DOWNLOAD: u64 = 512 << 20;

/// A download that sends nothing for this long fails.
const DOWNLOAD_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Download `url` to `dest`, hashing as it streams, at most
/// [`MAX_KERNEL_DOWNLOAD`] bytes (free space checked against the declared
/// length first); a digest mismatch is an error (the caller removes the
/// staging directory).
async fn download_verified(url: &str, sha256: &str, dest: &Path) -> Result<(), ImageError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ImageError::Invalid(format!("kernel catalog URL {url:?} is invalid: {e}")))?;
    let host = parsed.host_str().unwrap_or("");
    let local = host == "localhost" || host == "[::1]" || host.starts_with("127.");
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && local) {
        return Err(ImageError::Invalid(format!(
            "kernel catalog URL {url}: only https:// (or http:// to localhost) is allowed"
        )));
    }
    let fail = |e: &dyn std::fmt::Display| {
        ImageError::Internal(format!(
            "downloading kernel {url} failed: {e}; check the network and try again"
        ))
    };
    let resp = reqwest::get(parsed.clone()).await.map_err(|e| fail(&e))?;
    if !resp.status().is_success() {
        return Err(fail(&format!("HTTP {}", resp.status())));
    }
    let too_big = |n: u64| {
        ImageError::Invalid(format!(
            "kernel download {url} is larger than {n} bytes; banger accepts kernel and initrd files of at most {MAX_KERNEL_DOWNLOAD} bytes (check the catalog entry)"
        ))
    };
    if let Some(len) = resp.content_length() {
        if len > MAX_KERNEL_DOWNLOAD {
            return Err(too_big(len.saturating_sub(1)));
        }
        if let Some(dir) = dest.parent() {
            banger_imagemgr::ensure_free_space(dir, len, "the kernel download")
                .map_err(|e| ImageError::Invalid(e.to_string()))?;
        }
    }
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(ImageError::io("cannot write", dest))?;
    let mut hasher = banger_imagemgr::Hasher::new();
    let mut stream = resp.bytes_stream();
    let mut written: u64 = 0;
    loop {
        let next = tokio::time::timeout(DOWNLOAD_STALL, stream.next())
            .await
            .map_err(|_| fail(&format!("no data for {} s", DOWNLOAD_STALL.as_secs())))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| fail(&e))?;
        written = written.saturating_add(chunk.len() as u64);
        if written > MAX_KERNEL_DOWNLOAD {
            return Err(too_big(MAX_KERNEL_DOWNLOAD));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(ImageError::io("cannot write", dest))?;
    }
    file.flush()
        .await
        .map_err(ImageError::io("cannot write", dest))?;
    let got = hasher.finish();
    if got.hex() != sha256 {
        return Err(ImageError::Invalid(format!(
            "kernel download {url} has sha256 {} but the catalog says {sha256}; nothing was registered (fix the catalog entry or the server)",
            got.hex()
        )));
    }
    Ok(())
}

/// The file of registered kernel `name`, for `image register --kernel-name`
/// (refused together with an explicit kernel file).
pub(crate) fn catalog_kernel(
    store: &Store,
    name: &str,
    explicit: &str,
) -> Result<PathBuf, ImageError> {
    if !explicit.is_empty() {
        return Err(ImageError::Invalid(
            "give either --kernel FILE or --kernel-name NAME, not both".into(),
        ));
    }
    let k = store.find_kernel(name)?.ok_or_else(|| {
        ImageError::NotFound(format!(
            "no kernel named {name:?}; see `banger kernel list`, or add one with `banger kernel pull` / `banger kernel register`"
        ))
    })?;
    Ok(PathBuf::from(k.path))
}
