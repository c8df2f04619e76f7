//! Registry credentials the way `docker` and `podman` find them, read with
//! the `docker_credential` crate: first Docker's `config.json`
//! (`credHelpers[host]`, an `identitytoken`, `auths[host].auth` or
//! `username`/`password`, then the default `credsStore`; a helper
//! `docker-credential-<name>` is run from `$PATH` with the server on stdin),
//! then Podman's `auth.json` (same format). No file, no entry, or a helper
//! that answers "credentials not found" → anonymous; anything else is a
//! [`RegistryAuthError`] naming the file or helper and the fix.
//!
//! The files are located here, not by the crate's `get_credential` /
//! `get_podman_credential`: those read the process environment at every
//! call, and the Podman one neither falls back to
//! `~/.config/containers/auth.json` nor works without `$XDG_RUNTIME_DIR`
//! (which `bangerd.service` does not set). Only the parsing and the helper
//! protocol come from the crate (`get_credential_from_reader`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use docker_credential::{CredentialRetrievalError, DockerCredential};

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
    /// A config file exists but cannot be read or is not valid.
    #[error("cannot read registry credentials from {path}: {reason}; fix or remove it")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A credential helper failed.
    #[error(
        "credential helper docker-credential-{helper} (named in {config}) failed for {registry}: {reason}"
    )]
    Helper {
        /// Helper name.
        helper: String,
        /// The config file naming it.
        config: PathBuf,
        /// Registry host.
        registry: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The login for the registry is an identity token, which the registry
    /// client cannot use.
    #[error(
        "the login for {registry} in {path} is an identity token (an OAuth refresh token), which banger's registry client cannot exchange; log in with a username and a password or access token instead (`docker login -u USER {registry}`), or remove the entry to pull anonymously"
    )]
    IdentityToken {
        /// Registry host.
        registry: String,
        /// The config file holding it.
        path: PathBuf,
    },
}

/// Where credentials come from.
#[derive(Debug, Clone)]
pub struct AuthSource {
    /// Docker's `config.json` (`$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`); read first.
    pub docker_config: PathBuf,
    /// Podman's `auth.json` candidates; the first that exists is read after
    /// Docker's config.
    pub podman_auth: Vec<PathBuf>,
}

impl AuthSource {
    /// The files `docker` and `podman` would read for this process (the
    /// owner's: `bangerd` runs as the owner, and systemd gives
    /// `bangerd.service` the owner's `HOME`).
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var_os(k), nix::unistd::getuid().as_raw())
    }

    /// [`from_env`](Self::from_env) with the variables from `var` and
    /// `/run/user/<uid>` when `$XDG_RUNTIME_DIR` is unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, uid: u32) -> Self {
        let home = var("HOME").map(PathBuf::from);
        let docker_dir = var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".docker")))
            .unwrap_or_else(|| PathBuf::from("/nonexistent/.docker"));
        // containers-auth.json(5): $REGISTRY_AUTH_FILE alone when set, else
        // the runtime dir's, then the config dir's.
        let podman_auth = match var("REGISTRY_AUTH_FILE") {
            Some(f) => vec![PathBuf::from(f)],
            None => {
                let runtime = var("XDG_RUNTIME_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(format!("/run/user/{uid}")));
                let mut v = vec![runtime.join("containers/auth.json")];
                if let Some(c) = var("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| home.as_ref().map(|h| h.join(".config")))
                {
                    v.push(c.join("containers/auth.json"));
                }
                v
            }
        };
        Self {
            docker_config: docker_dir.join("config.json"),
            podman_auth,
        }
    }

    /// Credentials for `registry` (`host[:port]`): Docker's config first,
    /// then Podman's.
    pub fn credentials(&self, registry: &str) -> Result<Credentials, RegistryAuthError> {
        if let Some(c) = from_file(&self.docker_config, registry)? {
            return Ok(c);
        }
        if let Some(p) = self.podman_auth.iter().find(|p| p.is_file())
            && let Some(c) = from_file(p, registry)?
        {
            return Ok(c);
        }
        Ok(Credentials::Anonymous)
    }
}

/// The servers to look a registry up under: Docker Hub's logins are kept
/// under its v1 URL (also what helpers are asked for), and under the bare
/// host by other tools.
fn servers(registry: &str) -> Vec<&str> {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            vec!["https://index.docker.io/v1/", "index.docker.io"]
        }
        _ => vec![registry],
    }
}

/// Credentials for `registry` from one file; `None` when the file does not
/// exist or holds nothing for the registry.
fn from_file(path: &Path, registry: &str) -> Result<Option<Credentials>, RegistryAuthError> {
    let config_err = |reason: String| RegistryAuthError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(config_err(e.to_string())),
    };
    for server in servers(registry) {
        match docker_credential::get_credential_from_reader(text.as_slice(), server) {
            Ok(DockerCredential::UsernamePassword(u, p)) => {
                return Ok(Some(Credentials::Basic(u, p)));
            }
            Ok(DockerCredential::IdentityToken(_)) => {
                return Err(RegistryAuthError::IdentityToken {
                    registry: registry.to_string(),
                    path: path.to_path_buf(),
                });
            }
            Err(CredentialRetrievalError::NoCredentialConfigured) => {}
            // Helpers say this for registries they hold nothing for.
            Err(CredentialRetrievalError::HelperFailure {
                ref stdout,
                ref stderr,
                ..
            }) if [stdout, stderr]
                .iter()
                .any(|s| s.contains("credentials not found")) => {}
            Err(e) => return Err(map_error(e, path, &text, registry, server)),
        }
    }
    Ok(None)
}

fn map_error(
    e: CredentialRetrievalError,
    path: &Path,
    text: &[u8],
    registry: &str,
    server: &str,
) -> RegistryAuthError {
    use CredentialRetrievalError as E;
    let config_err = |reason: &str| RegistryAuthError::Config {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let helper_err = |reason: String| RegistryAuthError::Helper {
        helper: helper_name(text, server),
        config: path.to_path_buf(),
        registry: registry.to_string(),
        reason,
    };
    match e {
        E::ConfigReadError | E::ConfigNotFound => {
            config_err("not a JSON credentials file (auths, credHelpers, credsStore)")
        }
        E::CredentialDecodingError => config_err(&format!(
            "the `auth` entry for {registry} is not base64 of user:password"
        )),
        E::CredentialMismatchError => config_err(&format!(
            "the `auth` entry for {registry} disagrees with its username/password"
        )),
        E::HelperCommunicationError => helper_err(
            "cannot run it; install it on the daemon's PATH or remove it from the config".into(),
        ),
        E::MalformedHelperResponse => {
            helper_err("its answer is not {\"Username\",\"Secret\"} JSON".into())
        }
        E::HelperFailure { stdout, stderr, .. } => helper_err(format!(
            "{}; check the helper's login (`docker login {registry}`)",
            format!("{} {}", stdout.trim(), stderr.trim()).trim()
        )),
        E::NoCredentialConfigured => config_err("no credential"),
    }
}

/// The helper a config names for `server` (`credHelpers`, else `credsStore`),
/// for error messages.
fn helper_name(text: &[u8], server: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
    v.get("credHelpers")
        .and_then(|h| h.get(server))
        .or_else(|| v.get("credsStore"))
        .and_then(|s| s.as_str())
        .unwrap_or("?")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    fn source(dir: &Path, docker: &str, podman: Option<&str>) -> AuthSource {
        std::fs::write(dir.join("config.json"), docker).unwrap();
        if let Some(p) = podman {
            std::fs::write(dir.join("auth.json"), p).unwrap();
        }
        AuthSource {
            docker_config: dir.join("config.json"),
            podman_auth: vec![dir.join("absent-auth.json"), dir.join("auth.json")],
        }
    }

    #[test]
    fn auths_and_anonymous() {
        let t = tempfile::tempdir().unwrap();
        let src = source(
            t.path(),
            r#"{"auths":{"reg.example:5000":{"auth":"YWxpY2U6cHc="},"https://other.example":{"username":"bob","password":"x"},
                "https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"}}}"#,
            None,
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
            src.credentials("index.docker.io").unwrap(),
            Credentials::Basic("hub".into(), "hubpw".into())
        );
        assert_eq!(
            src.credentials("nobody.example").unwrap(),
            Credentials::Anonymous
        );
        let bad = source(t.path(), "{not json", None);
        let e = bad.credentials("a").unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("fix or remove"),
            "{e}"
        );
        let undecodable = source(t.path(), r#"{"auths":{"a":{"auth":"!!"}}}"#, None);
        let e = undecodable.credentials("a").unwrap_err().to_string();
        assert!(e.contains("base64"), "{e}");
        let none = AuthSource {
            docker_config: t.path().join("absent.json"),
            podman_auth: vec![t.path().join("absent2.json")],
        };
        assert_eq!(none.credentials("a").unwrap(), Credentials::Anonymous);
    }

    #[test]
    fn identity_token_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let src = source(
            t.path(),
            r#"{"auths":{"id.example":{"identitytoken":"refresh-me"}}}"#,
            None,
        );
        let e = src.credentials("id.example").unwrap_err();
        assert!(matches!(e, RegistryAuthError::IdentityToken { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("id.example") && e.contains("docker login -u USER id.example"),
            "{e}"
        );
    }

    #[test]
    fn podman_auth_json_after_docker() {
        let t = tempfile::tempdir().unwrap();
        let src = source(
            t.path(),
            r#"{"auths":{"both.example":{"auth":"ZG9ja2VyOmQ="}}}"#,
            Some(
                r#"{"auths":{"both.example":{"auth":"cG9kbWFuOnA="},"quay.example":{"auth":"cG9kbWFuOnA="}}}"#,
            ),
        );
        // Docker's config wins where both have an entry.
        assert_eq!(
            src.credentials("both.example").unwrap(),
            Credentials::Basic("docker".into(), "d".into())
        );
        assert_eq!(
            src.credentials("quay.example").unwrap(),
            Credentials::Basic("podman".into(), "p".into())
        );
        // No Docker config at all: Podman's alone.
        std::fs::remove_file(t.path().join("config.json")).unwrap();
        assert_eq!(
            src.credentials("quay.example").unwrap(),
            Credentials::Basic("podman".into(), "p".into())
        );
        std::fs::write(t.path().join("auth.json"), "[]").unwrap();
        let e = src.credentials("quay.example").unwrap_err().to_string();
        assert!(e.contains("auth.json"), "{e}");
    }

    #[test]
    fn paths_from_the_environment() {
        let vars = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, OsString> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect();
            move |k: &str| m.get(k).cloned()
        };
        let s = AuthSource::from_vars(vars(&[("HOME", "/h")]), 1000);
        assert_eq!(s.docker_config, Path::new("/h/.docker/config.json"));
        assert_eq!(
            s.podman_auth,
            vec![
                PathBuf::from("/run/user/1000/containers/auth.json"),
                PathBuf::from("/h/.config/containers/auth.json")
            ]
        );
        let s = AuthSource::from_vars(
            vars(&[
                ("HOME", "/h"),
                ("DOCKER_CONFIG", "/d"),
                ("XDG_RUNTIME_DIR", "/r"),
                ("XDG_CONFIG_HOME", "/c"),
            ]),
            1000,
        );
        assert_eq!(s.docker_config, Path::new("/d/config.json"));
        assert_eq!(
            s.podman_auth,
            vec![
                PathBuf::from("/r/containers/auth.json"),
                PathBuf::from("/c/containers/auth.json")
            ]
        );
        let s = AuthSource::from_vars(vars(&[("REGISTRY_AUTH_FILE", "/a.json")]), 0);
        assert_eq!(s.podman_auth, vec![PathBuf::from("/a.json")]);
    }

    const CHILD: &str = "BANGER_REGISTRY_AUTH_HELPER_DIR";

    /// Helpers are found on `$PATH` (by the crate), so this test runs its
    /// body in a child copy of the test binary whose `PATH` starts with a
    /// temporary directory of fake helpers; this process's environment is
    /// never changed.
    #[test]
    fn helpers_run_by_argv() {
        if let Some(dir) = std::env::var_os(CHILD) {
            return helpers_child(Path::new(&dir));
        }
        let t = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| {
            let p = t.path().join(format!("docker-credential-{name}"));
            std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // Echoes the server it was asked about as the username; only `get`.
        write(
            "fake",
            "[ \"$1\" = get ] || exit 3\nread s\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"s3cret\"}' \"$s\" \"$s\"\n",
        );
        write(
            "store",
            "read s\necho 'credentials not found in native keychain'\nexit 1\n",
        );
        write("broken", "read s\necho 'keychain locked' >&2\nexit 1\n");
        write(
            "tokens",
            "read s\nprintf '{\"Username\":\"<token>\",\"Secret\":\"t\"}'\n",
        );
        let path = std::env::join_paths(std::iter::once(t.path().to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "images::registry_auth::tests::helpers_run_by_argv",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, t.path())
            .env("PATH", path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "child failed:\n{text}"
        );
    }

    fn helpers_child(dir: &Path) {
        let src = source(
            dir,
            r#"{"credHelpers":{"helped.example":"fake","x.example":"missing","b.example":"broken","t.example":"tokens"},
                "credsStore":"store"}"#,
            None,
        );
        assert_eq!(
            src.credentials("helped.example").unwrap(),
            Credentials::Basic("helped.example".into(), "s3cret".into())
        );
        // The default store knows nothing of this one: anonymous.
        assert_eq!(
            src.credentials("nobody.example").unwrap(),
            Credentials::Anonymous
        );
        let e = src.credentials("x.example").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-missing") && e.contains("install"),
            "{e}"
        );
        let e = src.credentials("b.example").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-broken") && e.contains("keychain locked"),
            "{e}"
        );
        // A helper answering `<token>` hands out an identity token.
        let e = src.credentials("t.example").unwrap_err();
        assert!(matches!(e, RegistryAuthError::IdentityToken { .. }), "{e}");
    }
}
