//! Prometheus exporter for the MXRC systemd units.
//!
//! Each collection interval runs one `systemctl show` child for the configured
//! units, parses its output and stores the result as a snapshot. The HTTP
//! server encodes the latest snapshot on every scrape and never runs
//! `systemctl` itself.

pub mod cli;
pub mod http;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod parse;
pub mod poll;
pub mod snapshot;
pub mod units;
