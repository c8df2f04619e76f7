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

/// Why the manifest could not be had.
#[derive(Debug)]
pub enum ManifestError {
    /// No connection to the registry (refused, unresolvable, timed out):
    /// the innermost cause, e.g. "Connection refused (os error 111)".
    Unreachable(String),
    /// The registry answered, but not with a usable manifest.
    Refused(String),
}

impl From<String> for ManifestError {
    fn from(s: String) -> Self {
        ManifestError::Refused(s)
    }
}

/// When `e` (or one of its sources) is a reqwest failure to connect or a
/// timeout, the innermost cause of the chain.
fn unreachable_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    let mut connect = false;
    let mut last = e;
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<reqwest::Error>()
            && (r.is_connect() || r.is_timeout())
        {
            connect = true;
        }
        last = c;
        cur = c.source();
    }
    connect.then(|| last.to_string())
}

/// A failed request: [`ManifestError::Unreachable`] when no connection was
/// made, else `what` and the error.
fn request_error(what: &str, e: &(dyn std::error::Error + 'static)) -> ManifestError {
    match unreachable_cause(e) {
        Some(cause) => ManifestError::Unreachable(cause),
        None => ManifestError::Refused(format!("{what}{e}")),
    }
}

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
) -> Result<(OciImageManifest, String), ManifestError> {
    let token = client
        .auth(reference, auth, RegistryOperation::Pull)
        .await
        .map_err(|e| match &e {
            // A transparent wrapper: its source() skips the reqwest error.
            oci_client::errors::OciDistributionError::RequestError(r) => {
                request_error("authentication failed: ", r)
            }
            _ => request_error("authentication failed: ", &e),
        })?;
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
        return Err(ManifestError::Refused(format!(
            "the registry sent a manifest with digest {digest}, not {pinned}"
        )));
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
                return Err(ManifestError::Refused(format!(
                    "the registry sent a manifest with digest {got}, not {}",
                    entry.digest
                )));
            }
            match serde_json::from_slice(&body) {
                Ok(OciManifest::Image(m)) => Ok((m, got)),
                Ok(OciManifest::ImageIndex(_)) => Err(ManifestError::Refused(
                    "an index entry names another index".to_string(),
                )),
                Err(e) => Err(ManifestError::Refused(format!("invalid manifest: {e}"))),
            }
        }
    }
}

/// Send `req` and read its body, at most [`MAX_MANIFEST_BYTES`]. Returns
/// the body and its `sha256:` digest.
async fn read_bounded(req: reqwest::RequestBuilder) -> Result<(Vec<u8>, String), ManifestError> {
    let too_big = || {
        format!(
            "the manifest is larger than {MAX_MANIFEST_BYTES} bytes (banger's limit); the registry is broken or hostile"
        )
    };
    let mut resp = req.send().await.map_err(|e| request_error("", &e))?;
    if !resp.status().is_success() {
        return Err(ManifestError::Refused(format!("HTTP {}", resp.status())));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
    {
        return Err(too_big().into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| request_error("", &e))? {
        if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(too_big().into());
        }
        body.extend_from_slice(&chunk);
    }
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(&body));
    Ok((body, digest))
}
