//! The manifest step of `image.pull`, with a bounded body.
//!
//! oci-client reads manifest and index bodies whole into memory, whatever
//! their size; a hostile registry could answer with gigabytes. Here the
//! manifest (and, for a manifest list, the index first) is fetched with
//! reqwest and read up to [`MAX_MANIFEST_BYTES`]; oci-client still does the
//! authentication (`Client::auth`: the bearer-token dance, whose token is
//! reused here and by the blob downloads that follow).
//!
//! The digest of what arrived is computed here: it must match the
//! reference's digest when the reference pins one, and an index entry's
//! digest when the manifest was picked from an index.

use oci_client::manifest::{ImageIndexEntry, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::Digest as _;

/// Largest manifest or index body read (4 MiB; real ones are a few KiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Which platform to pick from an index.
pub struct Platform<'a> {
    /// `linux`.
    pub os: &'a str,
    /// `amd64`.
    pub arch: &'a str,
    /// `v8`, if asked for.
    pub variant: Option<&'a str>,
}

impl Platform<'_> {
    /// Whether index entry `e` is this platform.
    pub fn matches(&self, e: &ImageIndexEntry) -> bool {
        e.platform.as_ref().is_some_and(|p| {
            p.os.to_string() == self.os
                && p.architecture.to_string() == self.arch
                && (self.variant.is_none() || p.variant.as_deref() == self.variant)
        })
    }
}

/// Fetch the image manifest of `reference` for `platform` (through an
/// index when the reference names one). Returns it and its digest.
pub async fn fetch_manifest(
    client: &Client,
    auth: &RegistryAuth,
    reference: &Reference,
    scheme: &str,
    platform: &Platform<'_>,
) -> Result<(OciImageManifest, String), String> {
    let token = client
        .auth(reference, auth, RegistryOperation::Pull)
        .await
        .map_err(|e| format!("authentication failed: {e}"))?;
    let http = reqwest::Client::new();
    let registry = reference.resolve_registry();
    let get = |what: String| {
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{what}",
            reference.repository()
        );
        let mut req = http.get(url).header(reqwest::header::ACCEPT, ACCEPT);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        } else if let RegistryAuth::Basic(u, p) = auth {
            req = req.basic_auth(u, Some(p));
        }
        req
    };
    let first = reference
        .digest()
        .or(reference.tag())
        .unwrap_or("latest")
        .to_string();
    let (body, digest) = read_bounded(get(first)).await?;
    if let Some(pinned) = reference.digest()
        && pinned != digest
    {
        return Err(format!(
            "the registry sent a manifest with digest {digest}, not {pinned}"
        ));
    }
    let manifest: OciManifest =
        serde_json::from_slice(&body).map_err(|e| format!("invalid manifest: {e}"))?;
    match manifest {
        OciManifest::Image(m) => Ok((m, digest)),
        OciManifest::ImageIndex(index) => {
            let entry = index
                .manifests
                .iter()
                .find(|e| platform.matches(e))
                .ok_or_else(|| {
                    format!(
                        "the image index has no manifest for {}/{}",
                        platform.os, platform.arch
                    )
                })?;
            let (body, got) = read_bounded(get(entry.digest.clone())).await?;
            if got != entry.digest {
                return Err(format!(
                    "the registry sent a manifest with digest {got}, not {}",
                    entry.digest
                ));
            }
            match serde_json::from_slice(&body) {
                Ok(OciManifest::Image(m)) => Ok((m, got)),
                Ok(OciManifest::ImageIndex(_)) => {
                    Err("an index entry names another index".to_string())
                }
                Err(e) => Err(format!("invalid manifest: {e}")),
            }
        }
    }
}

/// Send `req` and read its body, at most [`MAX_MANIFEST_BYTES`]. Returns
/// the body and its `sha256:` digest.
async fn read_bounded(req: reqwest::RequestBuilder) -> Result<(Vec<u8>, String), String> {
    let too_big = || {
        format!(
            "the manifest is larger than {MAX_MANIFEST_BYTES} bytes (banger's limit); the registry is broken or hostile"
        )
    };
    let mut resp = req.send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(&body));
    Ok((body, digest))
}
