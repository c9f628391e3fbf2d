//! The routes: `/metrics` (gzipped when the client accepts it), `/healthz`
//! (200 while the last scan is younger than 3 × the interval), `/`; 404 and
//! 405 for the rest. Answers come from the published state only.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONNECTION,
    CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};

use super::auth::{self, Verdict};
use super::connections::OpenConnections;
use super::published::{accepts_gzip, Shared};
use super::Web;
use crate::export::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::sync::lock;

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
        "/metrics" => metrics(accept_encoding, shared),
        "/healthz" => healthz(shared),
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

/// The last scan's metrics, gzipped when the client accepts it; 503 before
/// the first scan.
fn metrics(accept_encoding: Option<&HeaderValue>, shared: &Shared) -> Response<Full<Bytes>> {
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

/// 200 while the last scan is younger than 3 × the interval, else 503.
fn healthz(shared: &Shared) -> Response<Full<Bytes>> {
    let Some(at) = shared.current().scanned_at else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy: no scan has completed yet\n",
        );
    };
    let age = at.elapsed();
    let age_s = format!("{:.1}s", age.as_secs_f64());
    if age < shared.interval() * 3 {
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

/// Answers one request: the rate limit and basic auth of `web` first, then
/// the route; `web`'s headers go on every answer.
pub(super) async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    web: Arc<Web>,
    retire_at: Instant,
    open: Arc<OpenConnections>,
    id: u64,
) -> Result<Response<Full<Bytes>>, Infallible> {
    open.request_started(id);
    let mut r = match gate(&req, &web, &shared).await {
        Some(refused) => refused,
        None => respond(
            req.method(),
            req.uri().path(),
            req.headers().get(ACCEPT_ENCODING),
            &shared,
        ),
    };
    let headers = r.headers_mut();
    for (name, value) in &web.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if Instant::now() >= retire_at {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(r)
}

/// The refusal of a request `web` does not let through, if it is one.
/// `/healthz` needs no credentials: liveness probes carry none, and it
/// tells nothing about the host.
async fn gate(
    req: &Request<Incoming>,
    web: &Web,
    shared: &Shared,
) -> Option<Response<Full<Bytes>>> {
    if let Some(limiter) = &web.limiter {
        if !lock(limiter).take(Instant::now()) {
            shared.count(|c| c.rate_limited += 1);
            return Some(too_many("rate limit exceeded\n"));
        }
    }
    let auth = web.auth.as_ref()?;
    if req.uri().path() == "/healthz" {
        return None;
    }
    let verdict = auth.check(req.headers().get(AUTHORIZATION)).await;
    shared.count(|c| match verdict {
        Verdict::Allowed => {}
        Verdict::Missing => c.no_credentials += 1,
        Verdict::Denied => c.wrong_credentials += 1,
        Verdict::Throttled => c.auth_throttled += 1,
    });
    match verdict {
        Verdict::Allowed => None,
        Verdict::Missing | Verdict::Denied => {
            let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"closewatch\""),
            );
            Some(r)
        }
        Verdict::Throttled => Some(too_many("too many new credentials; retry shortly\n")),
    }
}

fn too_many(body: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, body);
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(auth::RETRY_AFTER.as_secs()));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::export::http::published::Published;

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
}
