//! The agent's HTTP endpoint: `/metrics`, `/healthz` and `/`.
//!
//! A scrape never scans: it clones the last scan's rendered text (a reference
//! count), so it costs the same on any host. Connections are capped and each
//! one is bounded in time (header read timeout, connection lifetime); when
//! every slot is taken, a new connection closes the one idle the longest
//! (slowloris clients never start a request), so no client can starve a
//! scrape. An accept error is logged, and the loop backs off and continues;
//! it is never fatal.
//!
//! With a web config ([`web_config`]), connections are TLS and requests need
//! basic auth; the handshake counts against the header read timeout, and a
//! connection still in its handshake is idle, so it is the first closed to
//! make room. Each connection serves the web config in force when it was
//! accepted.
//!
//! The rooms: [`published`] (what is served), `routes` (the answers),
//! `connections` (the registry that makes room), `lifetime` (one
//! connection's limits and drain), `backoff` (accept errors), [`address`]
//! (`--listen`), [`web_config`] with `tls` and [`auth`]; the serve loop is
//! here.

pub mod address;
pub mod auth;
mod backoff;
mod bucket;
mod client_sans;
mod connections;
mod lifetime;
pub mod published;
mod routes;
mod tls;
pub mod web_config;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use backoff::Backoff;
use connections::OpenConnections;
pub use published::{HttpCounts, Published, Shared};
pub use routes::respond;
pub use web_config::Web;

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

/// The requests of connection `id`: answered from `shared`, asking the
/// client to close from `retire_at` on.
fn service(
    id: u64,
    shared: &Arc<Shared>,
    web: &Arc<Web>,
    open: &Arc<OpenConnections>,
    retire_at: Instant,
) -> impl Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
{
    let (shared, web, open) = (shared.clone(), web.clone(), open.clone());
    service_fn(move |req| {
        routes::handle(
            req,
            shared.clone(),
            web.clone(),
            retire_at,
            open.clone(),
            id,
        )
    })
}

/// Accepts on `listener` for as long as the server takes connections,
/// backing off after errors; each connection goes to `to`.
async fn accept_loop(listener: TcpListener, to: tokio::sync::mpsc::Sender<TcpStream>) {
    let mut backoff = Backoff::new();
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                backoff.succeeded();
                if to.send(stream).await.is_err() {
                    return;
                }
            }
            Err(e) => tokio::time::sleep(backoff.failed(&e)).await,
        }
    }
}

/// What every connection needs from the server.
#[derive(Clone)]
struct Context {
    shared: Arc<Shared>,
    open: Arc<OpenConnections>,
    limits: Limits,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// Serves until `shutdown` completes, then stops accepting and gives
/// in-flight requests `limits.shutdown_grace` to finish.
pub async fn serve(
    listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(1);
    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(l, accepted_tx.clone())))
        .collect();
    drop(accepted_tx);
    let cx = Context {
        shared,
        open: Arc::new(OpenConnections::default()),
        limits,
        stop: stop_rx,
    };
    let mut next_id: u64 = 0;
    // Accept first: a client that waits in the backlog behind clients that
    // send nothing would wait for their header timeout (or, once the
    // backlog overflows, for its own SYN retries).
    loop {
        let stream = tokio::select! {
            s = accepted.recv() => match s { Some(s) => s, None => break },
            () = &mut shutdown => break,
        };
        if slots.available_permits() == 0 {
            cx.open.close_idlest();
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let id = next_id;
        next_id += 1;
        let (make_room_tx, make_room) = tokio::sync::oneshot::channel();
        cx.open.opened(id, make_room_tx);
        let cx = cx.clone();
        tokio::spawn(async move {
            connection(stream, id, &cx, make_room).await;
            cx.open.closed(id);
            drop(permit);
        });
    }
    for a in acceptors {
        a.abort();
    }
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

/// One connection, from its TLS handshake (with a web config that asks for
/// TLS) to its close.
async fn connection(
    stream: TcpStream,
    id: u64,
    cx: &Context,
    mut make_room: tokio::sync::oneshot::Receiver<()>,
) {
    let web = cx.shared.web();
    let Some(acceptor) = web.tls.clone() else {
        return http(TokioIo::new(stream), id, cx, &web, make_room).await;
    };
    let handshake = async {
        if !tls_hello(&stream).await {
            refuse_plaintext(stream).await;
            return None;
        }
        match acceptor.accept(stream).await {
            Ok(tls) => Some(tls),
            Err(e) => {
                log::debug!("TLS handshake: {e}");
                None
            }
        }
    };
    let handshaken = tokio::select! {
        r = tokio::time::timeout(cx.limits.header_read_timeout, handshake) => r.ok().flatten(),
        Ok(()) = &mut make_room => None,
    };
    let Some(stream) = handshaken else {
        cx.shared.count(|c| c.tls_handshake_failures += 1);
        return;
    };
    http(TokioIo::new(stream), id, cx, &web, make_room).await;
}

/// HTTP/1.1 on an open (and, with TLS, handshaken) connection.
async fn http<I>(
    io: TokioIo<I>,
    id: u64,
    cx: &Context,
    web: &Arc<Web>,
    make_room: tokio::sync::oneshot::Receiver<()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(cx.limits.header_read_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(
            io,
            service(
                id,
                &cx.shared,
                web,
                &cx.open,
                Instant::now() + cx.limits.connection_lifetime,
            ),
        );
    lifetime::connection(conn, cx.limits, cx.stop.clone(), make_room).await;
}

/// Whether the client's first byte is a TLS handshake record's (22).
async fn tls_hello(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 22)
}

/// What Go's TLS server answers a plain HTTP request on a TLS port: a 400
/// that says why, and no metrics. The request is read first (closing with
/// it unread would reset the connection, and the client would see no
/// answer), and the close waits for the client's (bounded by the caller's
/// handshake timeout).
async fn refuse_plaintext(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    log::debug!("plain HTTP on the TLS port: answered 400");
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).await;
    let _ = stream
        .write_all(
            b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
              Client sent an HTTP request to an HTTPS server.\n",
        )
        .await;
    let _ = stream.shutdown().await;
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
                serve(vec![listener], shared, limits, async move {
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
}
