//! `--web-config`: TLS, basic auth, response headers and a request rate
//! limit, in the file format of the Prometheus exporter-toolkit, so the file
//! a fleet already gives node_exporter works here too.
//!
//! Read at start and again on every SIGHUP, together with the config; a file
//! that does not load keeps the running one (and the reload is counted as
//! failed). The certificate and key are read when the file is, so a rotated
//! certificate is served after the next reload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::auth::Authenticator;
use super::bucket::Bucket;
use super::tls;

/// The file as written. Unknown keys are errors, as in the toolkit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: TlsFile,
    #[serde(default)]
    http_server_config: HttpFile,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    rate_limit: RateLimitFile,
}

/// `tls_server_config`, every key of the toolkit's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Go's crypto/tls ignores it since Go 1.17; so does rustls.
    #[allow(dead_code)]
    pub prefer_server_cipher_suites: Option<bool>,
    pub client_allowed_sans: Option<Vec<String>>,
}

impl TlsFile {
    /// Whether any key that turns TLS on is given (the toolkit's rule).
    fn enabled(&self) -> bool {
        self.cert.is_some()
            || self.key.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.client_ca.is_some()
            || self.client_ca_file.is_some()
            || self.client_auth_type.is_some()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// HTTP/2 is not served: accepted so shared files load, and ignored.
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    #[serde(default)]
    burst: u32,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
}

/// The response headers the toolkit lets a web config set.
const SETTABLE_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// A request rate limit: `burst` requests at once, then one per `interval`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub interval: Duration,
}

/// What the server runs with: the loaded web config; the default is plain
/// HTTP with no authentication (no `--web-config`).
#[derive(Default)]
pub struct Web {
    /// Set: every connection is TLS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Set: every request but `/healthz` needs one of these users.
    pub auth: Option<Arc<Authenticator>>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub rate_limit: Option<RateLimit>,
    /// The requests `rate_limit` still allows.
    pub(super) limiter: Option<Mutex<Bucket>>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("tls", &self.tls.is_some())
            .field("users", &self.auth.as_ref().map_or(0, |a| a.users()))
            .field("headers", &self.headers)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl Web {
    /// `http` or `https`, for the log.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// A one-line summary for the log.
    pub fn describe(&self) -> String {
        let mut parts = vec![if self.tls.is_some() { "TLS" } else { "no TLS" }.to_string()];
        match &self.auth {
            Some(a) => parts.push(format!("basic auth ({} users)", a.users())),
            None => parts.push("no authentication".to_string()),
        }
        if let Some(r) = self.rate_limit {
            parts.push(format!(
                "rate limit {} per {}",
                r.burst,
                humantime::format_duration(r.interval)
            ));
        }
        parts.join(", ")
    }
}

/// Why a web config did not load; names the file.
#[derive(Debug, thiserror::Error)]
#[error("web config {}: {message}", path.display())]
pub struct WebConfigError {
    pub path: PathBuf,
    pub message: String,
}

/// Reads, checks and builds the web config at `path`: certificates and keys
/// are read and parsed, every bcrypt hash is checked to be one.
pub fn load(path: &Path) -> Result<Web, WebConfigError> {
    let fail = |message: String| WebConfigError {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| fail(e.to_string()))?
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    build(file, dir).map_err(fail)
}

fn build(file: File, dir: &Path) -> Result<Web, String> {
    if file.http_server_config.http2 == Some(true) {
        log::debug!("web config: http2 is not served (HTTP/1.1 only); ignored");
    }
    let tls = if file.tls_server_config.enabled() {
        Some(tls::acceptor(&file.tls_server_config, dir)?)
    } else {
        None
    };
    let auth = if file.basic_auth_users.is_empty() {
        None
    } else {
        Some(Arc::new(Authenticator::new(file.basic_auth_users)?))
    };
    let rate_limit = rate_limit(&file.rate_limit)?;
    Ok(Web {
        tls,
        auth,
        headers: headers(&file.http_server_config.headers)?,
        rate_limit,
        limiter: rate_limit.map(|r| Mutex::new(Bucket::new(r.burst, r.interval, Instant::now()))),
    })
}

fn headers(given: &BTreeMap<String, String>) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    given
        .iter()
        .map(|(name, value)| {
            if !SETTABLE_HEADERS
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
            {
                return Err(format!(
                    "header {name:?} cannot be set (only {})",
                    SETTABLE_HEADERS.join(", ")
                ));
            }
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("header {name}: {value:?} is not a valid value"))?;
            Ok((name, value))
        })
        .collect()
}

fn rate_limit(r: &RateLimitFile) -> Result<Option<RateLimit>, String> {
    match r.interval {
        None | Some(Duration::ZERO) => Ok(None),
        Some(_) if r.burst == 0 => Err("rate_limit: burst must be at least 1".to_string()),
        Some(interval) => Ok(Some(RateLimit {
            burst: r.burst,
            interval,
        })),
    }
}

/// `path` relative to the web config's directory, as the toolkit reads it.
pub(super) fn beside(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Web, WebConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).expect("write");
        load(&path)
    }

    #[test]
    fn an_empty_file_is_plain_http() {
        let web = load_text("").expect("loads");
        assert!(web.tls.is_none() && web.auth.is_none() && web.headers.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_as_in_the_toolkit() {
        let e = load_text("basic_auth_user:\n  a: b\n").expect_err("misspelt");
        assert!(e.to_string().contains("basic_auth_user"), "{e}");
        let e = load_text("tls_server_config:\n  certfile: x\n").expect_err("misspelt");
        assert!(e.to_string().contains("certfile"), "{e}");
    }

    #[test]
    fn only_the_toolkits_headers_can_be_set() {
        let web = load_text(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    \
             Strict-Transport-Security: max-age=31536000\n",
        )
        .expect("loads");
        assert_eq!(web.headers.len(), 2);
        let e = load_text("http_server_config:\n  headers:\n    Server: x\n").expect_err("Server");
        assert!(e.to_string().contains("cannot be set"), "{e}");
    }

    #[test]
    fn a_hash_that_is_not_bcrypt_is_an_error() {
        let e = load_text("basic_auth_users:\n  alice: plaintext\n").expect_err("not bcrypt");
        assert!(e.to_string().contains("alice"), "{e}");
    }

    #[test]
    fn a_rate_limit_needs_a_burst() {
        let web = load_text("rate_limit:\n  burst: 5\n  interval: 1s\n").expect("loads");
        assert_eq!(
            web.rate_limit,
            Some(RateLimit {
                burst: 5,
                interval: Duration::from_secs(1)
            })
        );
        assert!(load_text("rate_limit:\n  interval: 1s\n").is_err());
    }

    #[test]
    fn tls_without_a_key_is_an_error_naming_what_is_missing() {
        let e = load_text("tls_server_config:\n  cert_file: c.pem\n").expect_err("no key");
        assert!(e.to_string().contains("key"), "{e}");
    }
}
