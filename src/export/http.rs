//! The agent's HTTP endpoint: `/metrics`, `/healthz` and `/`.
//!
//! A scrape never scans: it clones the last scan's rendered text (a reference
//! count), so it costs the same on any host. Connections are capped and each
//! one is bounded in time (header read timeout, connection lifetime); when
//! every slot is taken, a new connection closes the one idle the longest
//! (slowloris clients never start a request), so no client can starve a
//! scrape. An accept error (EMFILE above all: this is an
//! fd-leak detector, the host may be out of fds) is logged, and the loop backs
//! off and continues; it is never fatal.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_TYPE,
    VARY,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustc_hash::FxHashMap;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

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
fn accepts_gzip(accept_encoding: Option<&HeaderValue>) -> bool {
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
    /// After this, responses ask the client to close the connection
    /// (`Connection: close`): keep-alive is not forever...
    pub connection_lifetime: Duration,
    /// ...and this much later it is cut off whatever it is doing (a client
    /// that never reads its responses cannot hold a slot). Also the time
    /// in-flight requests get on shutdown before their connection is cut.
    pub connection_drain: Duration,
    /// How long in-flight requests may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            connection_drain: Duration::from_secs(10),
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

/// Answers one request from the published state; `/metrics` comes gzipped
/// when `accept_encoding` allows it.
pub fn respond(
    method: &Method,
    path: &str,
    accept_encoding: Option<&HeaderValue>,
    shared: &Shared,
) -> Response<Full<Bytes>> {
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
            let gzip = p
                .metrics_gzip
                .as_ref()
                .filter(|_| accepts_gzip(accept_encoding));
            let mut r = Response::new(Full::new(gzip.unwrap_or(&p.metrics).clone()));
            let headers = r.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            if gzip.is_some() {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
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

/// Answers a request; from `retire_at` on, each response asks the client to
/// close the connection (hyper closes it once that response is sent).
async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    retire_at: Instant,
    open: Arc<OpenConnections>,
    id: u64,
) -> Result<Response<Full<Bytes>>, Infallible> {
    open.request_started(id);
    let mut r = respond(
        req.method(),
        req.uri().path(),
        req.headers().get(ACCEPT_ENCODING),
        &shared,
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if Instant::now() >= retire_at {
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(r)
}
/// The open connections, each with the time it was accepted or last began
/// a request. When every slot is taken, a new connection is not left in the
/// kernel's backlog behind clients that send nothing (slowloris, idle
/// keep-alive): the connection idle the longest is closed to make room.
#[derive(Debug, Default)]
struct OpenConnections {
    by_id: Mutex<FxHashMap<u64, OpenConnection>>,
}

#[derive(Debug)]
struct OpenConnection {
    active_at: Instant,
    /// Closes the connection; taken once it has been asked to.
    close: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OpenConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<u64, OpenConnection>> {
        match self.by_id.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn opened(&self, id: u64, close: tokio::sync::oneshot::Sender<()>) {
        self.lock().insert(
            id,
            OpenConnection {
                active_at: Instant::now(),
                close: Some(close),
            },
        );
    }

    fn request_started(&self, id: u64) {
        if let Some(c) = self.lock().get_mut(&id) {
            c.active_at = Instant::now();
        }
    }

    fn closed(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the connection idle the longest to close; false if every one
    /// has already been asked.
    fn close_idlest(&self) -> bool {
        let mut open = self.lock();
        let idlest = open
            .iter()
            .filter(|(_, c)| c.close.is_some())
            .min_by_key(|(_, c)| c.active_at)
            .map(|(id, _)| *id);
        match idlest.and_then(|id| open.get_mut(&id)?.close.take()) {
            Some(close) => close.send(()).is_ok(),
            None => false,
        }
    }
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

/// Serves one connection. Its responses ask the client to close once
/// `limits.connection_lifetime` has passed (see `handle`); a client still
/// there `limits.connection_drain` later (one that never reads its answers)
/// is cut off. On shutdown the connection closes gracefully: the request in
/// flight is answered first.
async fn connection<C>(
    conn: C,
    limits: Limits,
    mut stop: tokio::sync::watch::Receiver<bool>,
    make_room: tokio::sync::oneshot::Receiver<()>,
) where
    C: Future<Output = Result<(), hyper::Error>> + GracefulConnection,
{
    let mut conn = std::pin::pin!(conn);
    let stopping = async {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        Ok(()) = make_room => {
            log::debug!("every slot taken: closed the connection idle the longest");
            Ok(())
        }
        () = tokio::time::sleep(limits.connection_lifetime + limits.connection_drain) => {
            log::debug!("connection outlived its lifetime and drain time; closed");
            Ok(())
        }
        () = stopping => {
            conn.as_mut().shutdown_gracefully();
            match tokio::time::timeout(limits.connection_drain, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        log::debug!("connection: {e}");
    }
}

/// The one thing `connection` needs of hyper's connection type.
trait GracefulConnection {
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
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
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut backoff = Backoff {
        delay: Backoff::MIN,
        logged_at: None,
        suppressed: 0,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let open = Arc::new(OpenConnections::default());
    let mut next_id: u64 = 0;
    loop {
        // Accept first: a client that waits in the backlog behind clients
        // that send nothing would wait for their header timeout (or, once
        // the backlog overflows, for its own SYN retries).
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
        if slots.available_permits() == 0 {
            open.close_idlest();
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let retire_at = Instant::now() + limits.connection_lifetime;
        let id = next_id;
        next_id += 1;
        let (make_room_tx, make_room) = tokio::sync::oneshot::channel();
        open.opened(id, make_room_tx);
        let in_handler = open.clone();
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(16 * 1024)
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    handle(req, shared.clone(), retire_at, in_handler.clone(), id)
                }),
            );
        let stop = stop_rx.clone();
        let open = open.clone();
        tokio::spawn(async move {
            connection(conn, limits, stop, make_room).await;
            open.closed(id);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every permit back means every connection has finished.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => {}
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
            respond(&Method::GET, "/nope", None, &shared).status(),
            StatusCode::NOT_FOUND
        );
        let r = respond(&Method::POST, "/metrics", None, &shared);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }

    #[test]
    fn healthz_follows_the_age_of_the_last_scan() {
        let shared = Shared::new(Duration::from_millis(10));
        assert_eq!(
            respond(&Method::GET, "/healthz", None, &shared).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        shared.publish(Published {
            metrics: Bytes::from_static(b"x 1\n"),
            scanned_at: Some(Instant::now()),
            ..Published::default()
        });
        shared.set_interval(Duration::from_secs(60));
        assert_eq!(
            respond(&Method::GET, "/healthz", None, &shared).status(),
            StatusCode::OK
        );
        shared.set_interval(Duration::from_nanos(1));
        assert_eq!(
            respond(&Method::GET, "/healthz", None, &shared).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    /// Reads one HTTP/1.1 response with a content-length body; `None` at EOF
    /// before any byte of it. Panics on a truncated response.
    fn read_response(r: &mut impl std::io::BufRead) -> Option<Vec<String>> {
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            let n = r.read_line(&mut line).expect("read");
            if n == 0 {
                assert!(headers.is_empty(), "response cut in its head: {headers:?}");
                return None;
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            headers.push(line.to_ascii_lowercase());
        }
        let len: usize = headers
            .iter()
            .find_map(|h| h.strip_prefix("content-length: "))
            .expect("content-length")
            .parse()
            .expect("a number");
        let mut body = vec![0; len];
        r.read_exact(&mut body).expect("the whole body");
        Some(headers)
    }

    #[test]
    fn a_busy_connection_is_recycled_between_responses_never_during_one() {
        use std::io::Write;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::new(Duration::from_secs(60)));
        shared.publish(Published {
            metrics: Bytes::from(vec![b'x'; 50_000]),
            scanned_at: Some(Instant::now()),
            ..Published::default()
        });
        let limits = Limits {
            connection_lifetime: Duration::from_millis(50),
            ..Limits::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                serve(listener, shared, limits, async move {
                    let _ = stop_rx.await;
                })
                .await;
            });
        });
        // A keep-alive client, as Prometheus is: one request, its response,
        // the next request, on one connection, for longer than its 50 ms
        // lifetime. (A client that pipelines requests can meet an RST when the
        // server closes with requests still unread: not what scrapers do.)
        // Before connect: the server counts the lifetime from accept.
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
        let mut answered = 0;
        let closed_after = loop {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                .expect("send a request");
            let headers = read_response(&mut reader).expect("every request is answered in full");
            answered += 1;
            if headers.iter().any(|h| h == "connection: close") {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never asked to close"
            );
        };
        assert!(
            answered > 1,
            "kept alive until its lifetime ({answered} responses)"
        );
        assert!(
            closed_after >= Duration::from_millis(50),
            "{closed_after:?}"
        );
        // The server closes once that response is sent: EOF, not an error.
        assert!(read_response(&mut reader).is_none());
        let _ = stop_tx.send(());
        server.join().expect("server thread");
    }

    #[test]
    fn metrics_serve_the_published_text() {
        let shared = Shared::new(Duration::from_secs(15));
        assert_eq!(
            respond(&Method::GET, "/metrics", None, &shared).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        shared.publish(Published {
            metrics: Bytes::from_static(b"closewatch_scans_total 1\n"),
            scanned_at: Some(Instant::now()),
            ..Published::default()
        });
        let r = respond(&Method::GET, "/metrics", None, &shared);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], METRICS_CONTENT_TYPE);
    }

    #[test]
    fn metrics_come_gzipped_to_clients_that_accept_it() {
        use std::io::Read;
        let text = "closewatch_scans_total 1\n".repeat(100);
        let shared = Shared::new(Duration::from_secs(15));
        shared.publish(Published::scan(Bytes::from(text.clone()), Instant::now()));
        let body = |r: Response<Full<Bytes>>| {
            let (parts, body) = r.into_parts();
            let bytes = futures_body(body);
            (parts.headers, bytes)
        };
        for (accept, gzipped) in [
            (None, false),
            (Some("gzip"), true),
            (Some("deflate, GZIP;q=0.5"), true),
            (Some("*"), true),
            (Some("gzip;q=0"), false),
            (Some("gzip; q=0.000, identity"), false),
            (Some("br, deflate"), false),
        ] {
            let accept = accept.map(HeaderValue::from_static);
            let (headers, bytes) =
                body(respond(&Method::GET, "/metrics", accept.as_ref(), &shared));
            assert_eq!(headers[VARY], "Accept-Encoding");
            let plain = if gzipped {
                assert_eq!(headers[CONTENT_ENCODING], "gzip", "{accept:?}");
                assert!(bytes.len() < text.len() / 4);
                let mut out = String::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_string(&mut out)
                    .expect("valid gzip");
                out
            } else {
                assert!(headers.get(CONTENT_ENCODING).is_none(), "{accept:?}");
                String::from_utf8(bytes.to_vec()).expect("UTF-8")
            };
            assert_eq!(plain, text, "{accept:?}");
        }
    }

    /// The bytes of a `Full` body (one frame).
    fn futures_body(body: Full<Bytes>) -> Bytes {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(body.collect())
            .map(|c| c.to_bytes())
            .unwrap_or_else(|e: Infallible| match e {})
    }

    #[test]
    fn the_connection_idle_the_longest_makes_room() {
        let open = OpenConnections::default();
        let mut closes = Vec::new();
        for id in 0..3 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            open.opened(id, tx);
            closes.push(rx);
            std::thread::sleep(Duration::from_millis(2));
        }
        // 0 was accepted first but has just started a request: 1 is idlest.
        open.request_started(0);
        assert!(open.close_idlest());
        assert!(closes[1].try_recv().is_ok());
        assert!(closes[0].try_recv().is_err() && closes[2].try_recv().is_err());
        // Asked once, 1 is not asked again: 2 is next, then 0.
        assert!(open.close_idlest());
        assert!(closes[2].try_recv().is_ok());
        assert!(open.close_idlest());
        assert!(closes[0].try_recv().is_ok());
        assert!(!open.close_idlest(), "every connection was asked already");
        open.closed(0);
        open.closed(1);
        open.closed(2);
        assert!(open.lock().is_empty());
    }
}
