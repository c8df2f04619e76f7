//! Registry credentials from the owner's Docker config, the way `docker`
//! finds them: `credHelpers[host]`, then `auths[host].auth`, then the
//! default `credsStore`. A credential helper `docker-credential-<name>` is
//! run by argv with the server on stdin (`get`) and answers with JSON.
//! No config, no entry → anonymous.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    Anonymous,
    /// Username and password (or token) for HTTP basic / token exchange.
    Basic(String, String),
}

/// Errors while reading credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryAuthError {
    /// The config file exists but is not valid.
    #[error("cannot read docker config {path}: {reason}; fix or remove it")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    Helper {
        /// Helper name.
        helper: String,
        /// Registry host.
        registry: String,
        /// Why, and what to do.
        reason: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Where credentials come from.
#[derive(Debug, Clone)]
pub struct AuthSource {
    /// `config.json` (usually `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
    pub config: PathBuf,
    /// Directory holding `docker-credential-*` helpers; `None` searches `$PATH`.
    pub helper_dir: Option<PathBuf>,
}

impl AuthSource {
    /// The owner's Docker config, as `docker` would find it.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from("/nonexistent"));
        Self {
            config: dir.join("config.json"),
            helper_dir: None,
        }
    }

    /// Credentials for `registry` (`host[:port]`).
    pub fn credentials(&self, registry: &str) -> Result<Credentials, RegistryAuthError> {
        let text = match std::fs::read_to_string(&self.config) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Credentials::Anonymous);
            }
            Err(e) => return Err(self.config_err(e.to_string())),
        };
        let cfg: DockerConfig =
            serde_json::from_str(&text).map_err(|e| self.config_err(e.to_string()))?;
        let keys = candidate_keys(registry);
        if let Some(helper) = keys.iter().find_map(|k| cfg.cred_helpers.get(k)) {
            return self.run_helper(helper, registry);
        }
        if let Some(entry) = keys.iter().find_map(|k| cfg.auths.get(k)) {
            if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
                return decode_auth(auth).ok_or_else(|| {
                    self.config_err(format!(
                        "auths[{registry:?}].auth is not base64 of user:password"
                    ))
                });
            }
            if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                return Ok(Credentials::Basic(u.clone(), p.clone()));
            }
        }
        if let Some(store) = &cfg.creds_store {
            return match self.run_helper(store, registry) {
                // The default store knows nothing of most registries.
                Err(RegistryAuthError::Helper { reason, .. })
                    if reason.contains("credentials not found") =>
                {
                    Ok(Credentials::Anonymous)
                }
                other => other,
            };
        }
        Ok(Credentials::Anonymous)
    }

    fn config_err(&self, reason: String) -> RegistryAuthError {
        RegistryAuthError::Config {
            path: self.config.clone(),
            reason,
        }
    }

    fn run_helper(&self, helper: &str, registry: &str) -> Result<Credentials, RegistryAuthError> {
        let err = |reason: String| RegistryAuthError::Helper {
            helper: helper.to_string(),
            registry: registry.to_string(),
            reason,
        };
        if helper.is_empty() || helper.contains('/') {
            return Err(err("the helper name is not a plain name".into()));
        }
        let program = match &self.helper_dir {
            Some(d) => d.join(format!("docker-credential-{helper}")),
            None => PathBuf::from(format!("docker-credential-{helper}")),
        };
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                err(format!(
                    "cannot run it ({e}); install it or remove it from the docker config"
                ))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(registry.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stdout).trim().to_string()
                + String::from_utf8_lossy(&out.stderr).trim();
            return Err(err(msg));
        }
        let reply: HelperReply = serde_json::from_slice(&out.stdout)
            .map_err(|e| err(format!("unreadable answer: {e}")))?;
        Ok(Credentials::Basic(reply.username, reply.secret))
    }
}

/// The keys `docker` accepts for a registry in `auths`/`credHelpers`.
fn candidate_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ];
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.push("https://index.docker.io/v1/".into());
        keys.push("docker.io".into());
        keys.push("index.docker.io".into());
    }
    keys
}

fn decode_auth(b64: &str) -> Option<Credentials> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credentials::Basic(u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn source(dir: &Path, config: &str) -> AuthSource {
        std::fs::write(dir.join("config.json"), config).unwrap();
        AuthSource {
            config: dir.join("config.json"),
            helper_dir: Some(dir.to_path_buf()),
        }
    }

    #[test]
    fn auths_helpers_and_anonymous() {
        let t = tempfile::tempdir().unwrap();
        let helper = t.path().join("docker-credential-fake");
        // The helper echoes the server it was asked about as the username.
        std::fs::write(
            &helper,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread s\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"s3cret\"}' \"$s\" \"$s\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let src = source(
            t.path(),
            r#"{"auths":{"reg.example:5000":{"auth":"YWxpY2U6cHc="},"https://other.example":{"username":"bob","password":"x"}},
                "credHelpers":{"helped.example":"fake"}}"#,
        );
        assert_eq!(
            src.credentials("reg.example:5000").unwrap(),
            Credentials::Basic("alice".into(), "pw".into())
        );
        assert_eq!(
            src.credentials("other.example").unwrap(),
            Credentials::Basic("bob".into(), "x".into())
        );
        assert_eq!(
            src.credentials("helped.example").unwrap(),
            Credentials::Basic("helped.example".into(), "s3cret".into())
        );
        assert_eq!(
            src.credentials("nobody.example").unwrap(),
            Credentials::Anonymous
        );

        let broken = source(t.path(), r#"{"credHelpers":{"x.example":"missing"}}"#);
        let e = broken.credentials("x.example").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-missing") && e.contains("install"),
            "{e}"
        );
        let bad = source(t.path(), "{not json");
        assert!(
            bad.credentials("a")
                .unwrap_err()
                .to_string()
                .contains("config")
        );
        let none = AuthSource {
            config: t.path().join("absent.json"),
            helper_dir: None,
        };
        assert_eq!(none.credentials("a").unwrap(), Credentials::Anonymous);
    }
}
