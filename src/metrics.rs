//! Counters for `GET /metrics`, in Prometheus text format.
//!
//! Plain relaxed atomics: each is touched once per event, delivery or
//! connection, and a scrape that is a few increments stale is fine.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::router::Transport;

/// One monotonically increasing counter (or a gauge, with `dec`).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// Subtracts one (gauges only).
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events accepted by publish.
    pub published: Counter,
    /// Events handed to subscribers.
    pub deliveries: Counter,
    /// Gap notices handed to subscribers.
    pub gaps: Counter,
    /// Body bytes produced for subscribers.
    pub bytes_written: Counter,
    /// Open TCP connections.
    pub connections: Counter,
    /// Connections refused at the connection limit.
    pub refused: Counter,
    /// Open subscriber responses per transport (gauge).
    pub open: [Counter; Transport::COUNT],
}

impl Metrics {
    /// Renders every counter in Prometheus text exposition format.
    pub fn render(&self, channels: usize) -> String {
        let mut s = String::new();
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = write!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        };
        one(
            "tandem_events_published_total",
            "counter",
            "Events accepted by publish.",
            self.published.get(),
        );
        one(
            "tandem_deliveries_total",
            "counter",
            "Events handed to subscribers.",
            self.deliveries.get(),
        );
        one(
            "tandem_gaps_total",
            "counter",
            "Gap notices handed to subscribers.",
            self.gaps.get(),
        );
        one(
            "tandem_bytes_written_total",
            "counter",
            "Body bytes produced for subscribers.",
            self.bytes_written.get(),
        );
        one(
            "tandem_connections_open",
            "gauge",
            "Open TCP connections.",
            self.connections.get(),
        );
        one(
            "tandem_connections_refused_total",
            "counter",
            "Connections refused at the connection limit.",
            self.refused.get(),
        );
        one(
            "tandem_channels",
            "gauge",
            "Channels in the router.",
            channels as u64,
        );
        s.push_str("# HELP tandem_subscribers_open Open subscriber responses per transport.\n# TYPE tandem_subscribers_open gauge\n");
        for t in Transport::ALL {
            let _ = writeln!(
                s,
                "tandem_subscribers_open{{transport=\"{}\"}} {}",
                t.name(),
                self.open[t as usize].get()
            );
        }
        s
    }
}
