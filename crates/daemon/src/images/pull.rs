//! `image.pull`: an OCI/Docker image from a registry becomes a banger image.
//!
//! 1. Resolve the reference and credentials (`registry_auth`); plain HTTP
//!    only for `localhost`/`127.0.0.1`/`[::1]`.
//! 2. Fetch the manifest (a manifest list picks the requested platform),
//!    at most 4 MiB of it (`manifest.rs`).
//! 3. Check that the layers not cached yet fit in the free space (plus
//!    `banger_imagemgr::SPACE_MARGIN`), then fetch each into the blob cache
//!    `<state>/blobs/sha256/<hex>`, hashing as it streams and writing never
//!    more than its descriptor's size (more is refused: `Oversized`); a blob already cached with the right digest is
//!    not fetched again, and an interrupted download resumes from its
//!    `.partial` file with a range request. Nothing enters the cache
//!    without matching its digest.
//! 4. Apply the layers in a staging directory and build the ext4 image
//!    without mounting (`banger_imagemgr`). Descriptors declare only
//!    compressed sizes: the decompressed content of all layers may use at
//!    most half of the staging filesystem's free space (and at most
//!    `banger_imagemgr::MAX_FLATTENED_BYTES`); the rest is for the image.
//!
//! Not bounded yet: the registry's token answer is read whole into memory
//! by oci-client.
//! 5. Publish under `image_ops_mu` (see `service.rs`).
//!
//! Everything but step 5 runs unlocked, on the operation's own task. Any
//! failure removes the staging directory; nothing half-built is published.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_api::rpc::ImagePullParams;
use banger_api::{Image, Operation, validate};
use banger_imagemgr::{Flattener, Hasher, Sha256Digest};
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncWriteExt;

use crate::common::Persist;
use crate::common::blocking;
use crate::common::error::DaemonError;
use crate::images::ImageError;
use crate::images::registry_auth::{AuthSource, Credentials};
use crate::images::service::{ImageService, Staged, existing_file};

/// Layer media types banger can apply (compression is told by magic bytes).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

/// A checked pull request.
struct PullJob {
    reference: Reference,
    name: String,
    kernel: Option<PathBuf>,
    /// `kernel` is a registered kernel (`--kernel-name`): hard-linked.
    link_kernel: bool,
    os: String,
    arch: String,
    variant: Option<String>,
}

impl ImageService {
    /// `image.pull`: check the request, then pull on a task. Returns the
    /// operation to follow.
    pub fn pull(self: &Arc<Self>, p: ImagePullParams) -> Result<Operation, ImageError> {
        if crate::images::bundle::is_bundle_ref(&p.reference) {
            return self.pull_bundle(p);
        }
        let reference = Reference::from_str(&p.reference).map_err(|e| {
            ImageError::Invalid(format!(
                "invalid image reference {:?}: {e}; use REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]",
                p.reference
            ))
        })?;
        let name = match p.name {
            Some(n) => n,
            None => default_name(&reference),
        };
        validate::image_name(&name)?;
        if self.store.find_image(&name)?.is_some() {
            return Err(crate::images::service::name_taken(&name));
        }
        let (kernel, link_kernel) = match &p.kernel_name {
            Some(k) => (
                Some(crate::images::kernels::catalog_kernel(
                    &self.store,
                    k,
                    p.kernel.as_deref().unwrap_or(""),
                )?),
                true,
            ),
            None => (
                p.kernel
                    .as_deref()
                    .map(|k| existing_file(k, "kernel"))
                    .transpose()?,
                false,
            ),
        };
        if let Some(k) = kernel.as_ref().filter(|_| !link_kernel) {
            crate::images::service::check_kernel_or_bzimage(k)?;
        }
        let (os, arch, variant) = parse_platform(p.platform.as_deref().unwrap_or("linux/amd64"))?;
        let job = PullJob {
            reference,
            name,
            kernel,
            link_kernel,
            os,
            arch,
            variant,
        };
        let op = self
            .ops
            .start("image.pull", job.name.clone(), 3, Persist::AtStartAndEnd);
        let this = Arc::clone(self);
        let op_id = op.id.clone();
        tokio::spawn(async move {
            let result = this.run_pull(&op_id, job).await;
            this.finish_pull(&op_id, result.map(|_| ()));
        });
        Ok(op)
    }

    async fn run_pull(&self, op_id: &str, job: PullJob) -> Result<Image, ImageError> {
        let id = banger_store::new_id();
        let staging = self.staging_dir(&id);
        let result = self.pull_into(op_id, &job, &id, &staging).await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    async fn pull_into(
        &self,
        op_id: &str,
        job: &PullJob,
        id: &str,
        staging: &Path,
    ) -> Result<Image, ImageError> {
        let registry = job.reference.resolve_registry().to_string();
        self.op_stage(op_id, 1, &format!("fetching manifest from {registry}"));
        let source = AuthSource::from_env();
        let creds = tokio::task::spawn_blocking({
            let registry = registry.clone();
            move || source.credentials(&registry)
        })
        .await
        .map_err(|e| ImageError::Internal(e.to_string()))??;
        let auth = match creds {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic(u, p) => RegistryAuth::Basic(u, p),
        };
        let client = client_for(&registry);
        let whole = job.reference.whole();
        let platform = crate::images::manifest::Platform {
            os: &job.os,
            arch: &job.arch,
            variant: job.variant.as_deref(),
        };
        let scheme = if is_local(&registry) { "http" } else { "https" };
        let (manifest, manifest_digest) = crate::images::manifest::fetch_manifest(
            &client,
            &auth,
            &job.reference,
            scheme,
            &platform,
        )
        .await
        .map_err(|e| match e {
            // Not the user's argument: the network or the registry is down.
            crate::images::manifest::ManifestError::Unreachable(cause) => {
                ImageError::RegistryUnreachable {
                    cause,
                    registry: registry.clone(),
                    reference: whole.to_string(),
                }
            }
            crate::images::manifest::ManifestError::Refused(e) => ImageError::Invalid(format!(
                "cannot fetch the manifest of {whole}: {e}; check the reference, the platform ({}/{}) and your registry login",
                job.os, job.arch
            )),
        })?;
        for l in &manifest.layers {
            if !LAYER_TYPES.contains(&l.media_type.as_str()) {
                return Err(ImageError::Invalid(format!(
                    "{whole} has a layer of type {} ({}); banger only applies tar layers (plain, gzip or zstd)",
                    l.media_type, l.digest
                )));
            }
        }
        let n = manifest.layers.len();
        // Free space for the layers not cached yet, before any is fetched.
        let dir = self.blob_dir();
        std::fs::create_dir_all(&dir).map_err(ImageError::io("cannot create", &dir))?;
        let mut to_fetch = 0u64;
        for l in &manifest.layers {
            let size = u64::try_from(l.size).map_err(|_| {
                ImageError::Invalid(format!(
                    "{whole}: layer {} declares a negative size; the registry is broken",
                    l.digest
                ))
            })?;
            let cached = Sha256Digest::parse(&l.digest)
                .map(|d| dir.join(d.hex()).is_file())
                .unwrap_or(false);
            if !cached {
                to_fetch = to_fetch.saturating_add(size);
            }
        }
        banger_imagemgr::ensure_free_space(
            &dir,
            to_fetch,
            &format!("the layers of {whole} ({to_fetch} bytes to download)"),
        )?;
        let mut blobs = Vec::with_capacity(n);
        for (i, layer) in manifest.layers.iter().enumerate() {
            let label = format!("layer {}/{n}", i + 1);
            blobs.push((
                self.fetch_blob(op_id, &client, &job.reference, layer, &label)
                    .await?,
                layer.digest.clone(),
            ));
        }

        self.op_stage(op_id, 2, &format!("applying {n} layers"));
        std::fs::create_dir_all(staging).map_err(ImageError::io("cannot create", staging))?;
        let (st, kernel, link) = (staging.to_path_buf(), job.kernel.clone(), job.link_kernel);
        blocking(move || build_rootfs(&st, &blobs, kernel.as_deref(), link)).await?;

        self.op_stage(op_id, 3, "publishing");
        let staged = Staged {
            id: id.to_string(),
            name: job.name.clone(),
            has_kernel: job.kernel.is_some(),
            has_initrd: false,
            source: format!("oci:{whole}@{manifest_digest}"),
        };
        self.publish(staging, staged).await
    }

    /// Fetch one blob into the cache (or find it there) and return its path.
    async fn fetch_blob(
        &self,
        op_id: &str,
        client: &Client,
        reference: &Reference,
        desc: &OciDescriptor,
        label: &str,
    ) -> Result<PathBuf, ImageError> {
        let digest = Sha256Digest::parse(&desc.digest)?;
        let _blob = self.blob_locks.lock(digest.hex()).await;
        let dir = self.blob_dir();
        std::fs::create_dir_all(&dir).map_err(ImageError::io("cannot create", &dir))?;
        let blob = dir.join(digest.hex());
        if blob.is_file() {
            let (b, d) = (blob.clone(), digest.clone());
            let ok = tokio::task::spawn_blocking(move || banger_imagemgr::verify_file(&b, &d))
                .await
                .map_err(|e| ImageError::Internal(e.to_string()))?;
            if ok.is_ok() {
                self.op_stage(op_id, 1, &format!("{label} cached ({digest})"));
                return Ok(blob);
            }
            tracing::warn!(blob = %blob.display(), "cached blob is corrupt; fetching it again");
            let _ = std::fs::remove_file(&blob);
        }
        let partial = dir.join(format!("{}.partial", digest.hex()));
        // Checked non-negative by pull_into; never unbounded.
        let size = u64::try_from(desc.size).unwrap_or(0);
        let result = self
            .download(op_id, client, reference, desc, &partial, size, label)
            .await;
        match result {
            Ok(hasher) => {
                let actual = hasher.finish();
                if actual != digest {
                    let _ = std::fs::remove_file(&partial);
                    return Err(banger_imagemgr::ImageMgrError::DigestMismatch {
                        what: format!("{label} of {}", reference.whole()),
                        expected: digest.to_string(),
                        actual: actual.to_string(),
                    }
                    .into());
                }
                std::fs::rename(&partial, &blob).map_err(ImageError::io("cannot store", &blob))?;
                Ok(blob)
            }
            Err(e) => Err(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn download(
        &self,
        op_id: &str,
        client: &Client,
        reference: &Reference,
        desc: &OciDescriptor,
        partial: &Path,
        size: u64,
        label: &str,
    ) -> Result<Hasher, ImageError> {
        // Resume: hash what an interrupted download left, then ask for the rest.
        let mut have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if have > size {
            let _ = std::fs::remove_file(partial);
            have = 0;
        }
        let mut hasher = Hasher::new();
        if have > 0 {
            let p = partial.to_path_buf();
            hasher = tokio::task::spawn_blocking(move || -> std::io::Result<Hasher> {
                let mut h = Hasher::new();
                std::io::copy(&mut std::fs::File::open(&p)?, &mut h)?;
                Ok(h)
            })
            .await
            .map_err(|e| ImageError::Internal(e.to_string()))?
            .map_err(ImageError::io("cannot read", partial))?;
        }
        let whole = reference.whole();
        let fetch_err = |got: u64, e: &dyn std::fmt::Display| {
            ImageError::Internal(format!(
                "downloading {label} ({}) of {whole} failed after {got} of {size} bytes: {e}; pull again to resume (finished layers are cached)",
                desc.digest
            ))
        };
        let (stream, append) = if have > 0 && have < size {
            match client
                .pull_blob_stream_partial(reference, desc, have, None)
                .await
                .map_err(|e| fetch_err(have, &e))?
            {
                oci_client::client::BlobResponse::Partial(s) => (s, true),
                oci_client::client::BlobResponse::Full(s) => (s, false),
            }
        } else {
            let s = client
                .pull_blob_stream(reference, desc)
                .await
                .map_err(|e| fetch_err(0, &e))?;
            (s, false)
        };
        if !append {
            hasher = Hasher::new();
            have = 0;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .await
            .map_err(ImageError::io("cannot write", partial))?;
        let mut stream = stream.stream;
        let mut last = Instant::now();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // Keep what arrived for the next pull to resume from.
                    let _ = file.flush().await;
                    return Err(fetch_err(have, &e));
                }
            };
            // Never more than the descriptor's size is written.
            let room = usize::try_from(size - have).unwrap_or(usize::MAX);
            let part = &chunk[..chunk.len().min(room)];
            hasher.update(part);
            file.write_all(part)
                .await
                .map_err(ImageError::io("cannot write", partial))?;
            have += part.len() as u64;
            if chunk.len() > room {
                drop(file);
                let _ = std::fs::remove_file(partial);
                return Err(banger_imagemgr::ImageMgrError::Oversized {
                    what: format!("{label} ({}) of {whole}", desc.digest),
                    declared: size,
                    declared_by: "its descriptor in the image manifest declares",
                    advice: "the registry is broken or hostile",
                }
                .into());
            }
            if last.elapsed() > Duration::from_millis(250) {
                last = Instant::now();
                self.op_stage(
                    op_id,
                    1,
                    &format!("downloading {label}: {} / {} MiB", have >> 20, size >> 20),
                );
            }
        }
        file.flush()
            .await
            .map_err(ImageError::io("cannot write", partial))?;
        file.sync_all()
            .await
            .map_err(ImageError::io("cannot write", partial))?;
        if have != size {
            // Keep the partial file: the next pull resumes from it.
            return Err(fetch_err(have, &"the connection ended early"));
        }
        Ok(hasher)
    }

    /// The blob cache, `<state>/blobs/sha256`.
    fn blob_dir(&self) -> PathBuf {
        self.layout.state_dir.join("blobs").join("sha256")
    }

    pub(crate) fn stage(&self, op_id: &str, step: u32, stage: &str) {
        self.op_stage(op_id, step, stage);
    }

    fn op_stage(&self, op_id: &str, step: u32, stage: &str) {
        self.ops.stage(op_id, step, stage);
    }

    pub(crate) fn finish_pull(&self, op_id: &str, result: Result<(), ImageError>) {
        let result = result.map_err(DaemonError::from);
        let outcome = result.as_ref().map(|_| "done".to_string());
        if let Some(e) = self.ops.finish(op_id, outcome) {
            tracing::warn!(op = op_id, error = %e.message, "image.pull failed");
        }
    }
}

/// Apply the layers and build `rootfs.ext4` (and copy the kernel) in `staging`.
fn build_rootfs(
    staging: &Path,
    blobs: &[(PathBuf, String)],
    kernel: Option<&Path>,
    link_kernel: bool,
) -> Result<(), ImageError> {
    let tree_dir = staging.join("tree");
    let result = (|| -> Result<(), ImageError> {
        // The layers' decompressed content may fill half of the free space
        // (the ext4 image built from it needs about as much again).
        let free = banger_imagemgr::available_bytes(staging)?;
        let limit = free.saturating_sub(banger_imagemgr::SPACE_MARGIN) / 2;
        let mut f = Flattener::new(&tree_dir)?.with_limit(limit);
        for (blob, digest) in blobs {
            f.apply_layer(blob, digest)?;
        }
        let tree = f.finish()?;
        banger_imagemgr::build_ext4(&tree, &staging.join("rootfs.ext4"))?;
        match kernel {
            Some(k) if link_kernel => {
                crate::images::service::link_or_copy(k, &staging.join("vmlinux"))?
            }
            Some(k) => crate::images::service::install_kernel(k, &staging.join("vmlinux"))?,
            None => {}
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tree_dir);
    result
}

/// Whether `registry` (`host[:port]`) is loopback (plain HTTP allowed).
fn is_local(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
}

/// The registry client (authentication, blobs). Manifests are fetched by
/// `images_manifest`, which picks the platform itself.
fn client_for(registry: &str) -> Client {
    Client::new(ClientConfig {
        protocol: if is_local(registry) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        ..Default::default()
    })
}

/// `os/arch[/variant]`.
fn parse_platform(s: &str) -> Result<(String, String, Option<String>), ImageError> {
    let parts: Vec<&str> = s.split('/').collect();
    let ok = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric());
    match parts.as_slice() {
        [os, arch] if ok(os) && ok(arch) => Ok((os.to_string(), arch.to_string(), None)),
        [os, arch, v] if ok(os) && ok(arch) && ok(v) => {
            Ok((os.to_string(), arch.to_string(), Some(v.to_string())))
        }
        _ => Err(ImageError::Invalid(format!(
            "invalid platform {s:?}: use OS/ARCH[/VARIANT], e.g. linux/amd64"
        ))),
    }
}

/// The repository's last component, made a valid image name.
pub fn default_name(reference: &Reference) -> String {
    let last = reference.repository().rsplit('/').next().unwrap_or("image");
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if let Some(tag) = reference.tag().filter(|t| *t != "latest") {
        name.push('-');
        name.push_str(tag);
    }
    name.truncate(128);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_platforms() {
        let r = Reference::from_str("127.0.0.1:5000/test/busybox:latest").unwrap();
        assert_eq!(default_name(&r), "busybox");
        let r = Reference::from_str("debian:12.5").unwrap();
        assert_eq!(default_name(&r), "debian-12.5");
        assert_eq!(
            parse_platform("linux/arm64/v8").unwrap(),
            ("linux".into(), "arm64".into(), Some("v8".into()))
        );
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux/../x").is_err());
    }
}
