//! The agent's HTTP endpoint: `/metrics`, `/healthz` and `/`.
//!
//! A scrape never scans: it clones the last scan's rendered text (a reference
//! count), so it costs the same on any host. Connections are capped and each
//! one is bounded in time (header read timeout, connection lifetime), so no
//! client can starve a scrape. An accept error (EMFILE above all: this is an
//! fd-leak detector, the host may be out of fds) is logged, and the loop backs
//! off and continues; it is never fatal.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// What the last scan published.
#[derive(Debug, Default)]
pub struct Published {
    /// The rendered metrics text.
    pub metrics: Bytes,
    /// When the last scan finished; `None` before the first.
    pub scanned_at: Option<Instant>,
}

/// Shared between the scan thread (writer) and the server (reader).
#[derive(Debug)]
pub struct Shared {
    published: Mutex<Arc<Published>>,
    /// The scan interval, for /healthz's staleness rule.
    interval: Mutex<Duration>,
}

impl Shared {
    pub fn new(interval: Duration) -> Shared {
        Shared {
            published: Mutex::new(Arc::new(Published::default())),
            interval: Mutex::new(interval),
        }
    }

    pub fn publish(&self, p: Published) {
        let p = Arc::new(p);
        match self.published.lock() {
            Ok(mut g) => *g = p,
            Err(poisoned) => *poisoned.into_inner() = p,
        }
    }

    pub fn current(&self) -> Arc<Published> {
        match self.published.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_interval(&self, d: Duration) {
        match self.interval.lock() {
            Ok(mut g) => *g = d,
            Err(poisoned) => *poisoned.into_inner() = d,
        }
    }

    fn interval(&self) -> Duration {
        match self.interval.lock() {
            Ok(g) => *g,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// Limits that keep misbehaving clients from starving a scrape.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Longest life of one connection, keep-alive included.
    pub connection_timeout: Duration,
    /// How long in-flight requests may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_millis(500),
        }
    }
}

const INDEX: &str = "<!doctype html>\n<html><head><title>closewatch</title></head><body>\n\
<h1>closewatch</h1>\n<p>Finds TCP sockets and file descriptors that programs forgot to close.</p>\n\
<ul><li><a href=\"/metrics\">/metrics</a></li><li><a href=\"/healthz\">/healthz</a></li></ul>\n\
</body></html>\n";

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answers one request from the published state.
pub fn respond(method: &Method, path: &str, shared: &Shared) -> Response<Full<Bytes>> {
    if !matches!(path, "/" | "/metrics" | "/healthz") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            let p = shared.current();
            if p.scanned_at.is_none() {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no scan has completed yet\n",
                );
            }
            let mut r = Response::new(Full::new(p.metrics.clone()));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            r
        }
        "/healthz" => {
            let p = shared.current();
            let limit = shared.interval() * 3;
            match p.scanned_at {
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unhealthy: no scan has completed yet\n",
                ),
                Some(at) => {
                    let age = at.elapsed();
                    let age_s = format!("{:.1}s", age.as_secs_f64());
                    if age < limit {
                        text(StatusCode::OK, format!("ok: last scan {age_s} ago\n"))
                    } else {
                        text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "unhealthy: last scan {age_s} ago, more than 3 × the {} interval\n",
                                humantime::format_duration(shared.interval())
                            ),
                        )
                    }
                }
            }
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(INDEX.as_bytes())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut r = respond(req.method(), req.uri().path(), &shared);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Accept-error backoff: 10 ms doubling to 1 s, reset by a good accept.
struct Backoff {
    delay: Duration,
    logged_at: Option<Instant>,
    suppressed: u64,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn failed(&mut self, e: &std::io::Error) -> Duration {
        // One log line per second at most: an EMFILE storm must not flood
        // the journal.
        if self
            .logged_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            let more = if self.suppressed > 0 {
                format!(" ({} more since the last message)", self.suppressed)
            } else {
                String::new()
            };
            log::warn!("accept failed: {e}; backing off {:?}{more}", self.delay);
            self.logged_at = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        let d = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        d
    }

    fn succeeded(&mut self) {
        self.delay = Self::MIN;
    }
}

/// Serves until `shutdown` completes, then stops accepting and gives
/// in-flight requests `limits.shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Backoff {
        delay: Backoff::MIN,
        logged_at: None,
        suppressed: 0,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff.succeeded();
                stream
            }
            Err(e) => {
                let pause = backoff.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(16 * 1024)
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| handle(req, shared.clone())),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(limits.connection_timeout, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("connection: {e}"),
                Err(_) => log::debug!("connection closed after {:?}", limits.connection_timeout),
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            log::debug!("shutdown grace elapsed with connections still open");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        let shared = Shared::new(Duration::from_secs(15));
        assert_eq!(
            respond(&Method::GET, "/nope", &shared).status(),
            StatusCode::NOT_FOUND
        );
        let r = respond(&Method::POST, "/metrics", &shared);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }

    #[test]
    fn healthz_follows_the_age_of_the_last_scan() {
        let shared = Shared::new(Duration::from_millis(10));
        assert_eq!(
            respond(&Method::GET, "/healthz", &shared).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        shared.publish(Published {
            metrics: Bytes::from_static(b"x 1\n"),
            scanned_at: Some(Instant::now()),
        });
        shared.set_interval(Duration::from_secs(60));
        assert_eq!(
            respond(&Method::GET, "/healthz", &shared).status(),
            StatusCode::OK
        );
        shared.set_interval(Duration::from_nanos(1));
        assert_eq!(
            respond(&Method::GET, "/healthz", &shared).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn metrics_serve_the_published_text() {
        let shared = Shared::new(Duration::from_secs(15));
        assert_eq!(
            respond(&Method::GET, "/metrics", &shared).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        shared.publish(Published {
            metrics: Bytes::from_static(b"closewatch_scans_total 1\n"),
            scanned_at: Some(Instant::now()),
        });
        let r = respond(&Method::GET, "/metrics", &shared);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], METRICS_CONTENT_TYPE);
    }
}
