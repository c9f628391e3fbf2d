//! One connection's life: asked to close after its lifetime, cut off after
//! the drain time that follows, closed to make room, or drained gracefully
//! on shutdown (the request in flight is answered first).

use std::future::Future;

use hyper::body::Incoming;
use hyper::server::conn::http1;

use super::Limits;

/// Serves one connection. Its responses ask the client to close once
/// `limits.connection_lifetime` has passed (see `handle`); a client still
/// there `limits.connection_drain` later (one that never reads its answers)
/// is cut off. On shutdown the connection closes gracefully: the request in
/// flight is answered first.
pub(super) async fn connection<C>(
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
pub(super) trait GracefulConnection {
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
