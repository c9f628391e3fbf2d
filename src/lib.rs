//! closewatch finds TCP sockets and file descriptors that programs forgot to
//! close, and names the process responsible.
//!
//! Data flows one way: [`collect`] (kernel access) fills a [`model::Snapshot`];
//! [`analyse`] (pure) judges it; [`report`] prints the verdict and [`export`]
//! serves it to Prometheus ([`agent`]). `main.rs` only parses flags and
//! dispatches.

pub mod agent;
pub mod analyse;
pub mod build_info;
pub mod cli;
pub mod collect;
pub mod config;
pub mod defaults;
pub mod export;
pub mod logging;
pub mod malloc;
pub mod model;
pub mod oneshot;
pub mod report;
pub mod sync;

#[cfg(test)]
mod byte_edits;
