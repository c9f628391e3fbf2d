//! What the scan thread publishes and the server serves: the last scan's
//! metrics text (and its gzip form, made once per scan), when it finished,
//! and the scan interval /healthz judges its age by.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderValue;

use crate::sync::lock;

/// What the last scan published.
#[derive(Debug, Default)]
pub struct Published {
    /// The rendered metrics text.
    pub metrics: Bytes,
    /// The same, gzip-compressed once for every scraper that accepts it
    /// (Prometheus does): a tenth of the bytes to copy per scrape.
    pub metrics_gzip: Option<Bytes>,
    /// When the last scan finished; `None` before the first.
    pub scanned_at: Option<Instant>,
}

impl Published {
    /// A scan's text, with its gzip form made here (on the scan thread, not
    /// per request).
    pub fn scan(metrics: Bytes, scanned_at: Instant) -> Published {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(metrics.len() / 8),
            flate2::Compression::fast(),
        );
        let metrics_gzip = match gz.write_all(&metrics).and_then(|()| gz.finish()) {
            Ok(body) => Some(Bytes::from(body)),
            Err(e) => {
                log::warn!("compressing the metrics: {e}; serving them uncompressed");
                None
            }
        };
        Published {
            metrics,
            metrics_gzip,
            scanned_at: Some(scanned_at),
        }
    }
}

/// Whether an `Accept-Encoding` value accepts gzip (RFC 9110 §12.5.3:
/// `gzip`, `x-gzip` or `*`, unless its weight is `q=0`).
pub(super) fn accepts_gzip(accept_encoding: Option<&HeaderValue>) -> bool {
    let Some(value) = accept_encoding.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let wanted = ["gzip", "x-gzip", "*"]
            .iter()
            .any(|c| coding.eq_ignore_ascii_case(c));
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.len() > 2
                && p[..2].eq_ignore_ascii_case("q=")
                && p[2..].trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
        });
        wanted && !q_zero
    })
}

/// Shared between the scan thread (writer) and the server (reader).
#[derive(Debug)]
pub struct Shared {
    published: Mutex<Arc<Published>>,
    /// The scan interval, for /healthz's staleness rule.
    interval: Mutex<Duration>,
    /// TLS, users and headers, swapped whole by a reload.
    web: Mutex<Arc<super::Web>>,
    counts: Mutex<HttpCounts>,
}

/// What the server refused, since the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpCounts {
    pub no_credentials: u64,
    pub wrong_credentials: u64,
    pub auth_throttled: u64,
    pub rate_limited: u64,
    pub tls_handshake_failures: u64,
}

impl HttpCounts {
    /// The refusals by their `reason` label.
    pub fn refused(&self) -> [(&'static str, u64); 4] {
        [
            ("no_credentials", self.no_credentials),
            ("wrong_credentials", self.wrong_credentials),
            ("auth_throttled", self.auth_throttled),
            ("rate_limited", self.rate_limited),
        ]
    }
}

impl Shared {
    pub fn new(interval: Duration) -> Shared {
        Shared {
            published: Mutex::new(Arc::new(Published::default())),
            interval: Mutex::new(interval),
            web: Mutex::new(Arc::new(super::Web::default())),
            counts: Mutex::default(),
        }
    }

    pub fn publish(&self, p: Published) {
        *lock(&self.published) = Arc::new(p);
    }

    pub fn current(&self) -> Arc<Published> {
        lock(&self.published).clone()
    }

    pub fn set_interval(&self, d: Duration) {
        *lock(&self.interval) = d;
    }

    pub(super) fn interval(&self) -> Duration {
        *lock(&self.interval)
    }

    /// New connections are served with `web`.
    pub fn set_web(&self, web: Arc<super::Web>) {
        *lock(&self.web) = web;
    }

    pub fn web(&self) -> Arc<super::Web> {
        lock(&self.web).clone()
    }

    pub(super) fn count(&self, f: impl FnOnce(&mut HttpCounts)) {
        f(&mut lock(&self.counts));
    }

    pub fn counts(&self) -> HttpCounts {
        *lock(&self.counts)
    }
}
