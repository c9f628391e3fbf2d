//! What the agent exports: the Prometheus text of a scan, and the HTTP server
//! that serves it.

pub mod http;
pub mod metrics;
pub mod sdnotify;
