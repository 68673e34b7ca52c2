//! Prometheus metrics: requests by protocol and kind, their latency, errors, open
//! connections. Rendered in the text exposition format by [`Metrics::render`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    errors: u64,
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(&'static str, &'static str), Series>>,
    connections: [AtomicI64; 3],
}

/// A protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP JSON API.
    Http,
    /// Postgres wire protocol.
    Pg,
    /// Arrow Flight SQL.
    Flight,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Pg => "pg",
            Protocol::Flight => "flight",
        }
    }
}

impl Metrics {
    /// Record one request of `kind` (`sql`, `search`, `publish`, `subscribe`, …).
    pub fn record(&self, protocol: Protocol, kind: &'static str, took: Duration, ok: bool) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = series.entry((protocol.label(), kind)).or_default();
        s.count += 1;
        s.errors += u64::from(!ok);
        let seconds = took.as_secs_f64();
        s.sum_seconds += seconds;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            s.buckets[i] += 1;
        }
    }

    /// A connection opened; the guard counts it closed when dropped.
    pub fn connection(self: &Arc<Self>, protocol: Protocol) -> ConnectionGuard {
        self.connections[protocol as usize].fetch_add(1, Ordering::Relaxed);
        ConnectionGuard { metrics: Arc::clone(self), protocol }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        out.push_str("# HELP jammi_requests_total Requests handled, by protocol and kind.\n# TYPE jammi_requests_total counter\n");
        for ((protocol, kind), s) in &series {
            let _ = writeln!(out, "jammi_requests_total{{protocol=\"{protocol}\",kind=\"{kind}\"}} {}", s.count);
        }
        out.push_str("# HELP jammi_request_errors_total Requests that failed, by protocol and kind.\n# TYPE jammi_request_errors_total counter\n");
        for ((protocol, kind), s) in &series {
            let _ = writeln!(out, "jammi_request_errors_total{{protocol=\"{protocol}\",kind=\"{kind}\"}} {}", s.errors);
        }
        out.push_str("# HELP jammi_request_duration_seconds Request latency, by protocol and kind.\n# TYPE jammi_request_duration_seconds histogram\n");
        for ((protocol, kind), s) in &series {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(out, "jammi_request_duration_seconds_bucket{{protocol=\"{protocol}\",kind=\"{kind}\",le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "jammi_request_duration_seconds_bucket{{protocol=\"{protocol}\",kind=\"{kind}\",le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "jammi_request_duration_seconds_sum{{protocol=\"{protocol}\",kind=\"{kind}\"}} {}", s.sum_seconds);
            let _ = writeln!(out, "jammi_request_duration_seconds_count{{protocol=\"{protocol}\",kind=\"{kind}\"}} {}", s.count);
        }
        out.push_str("# HELP jammi_open_connections Connections open now, by protocol.\n# TYPE jammi_open_connections gauge\n");
        for protocol in [Protocol::Http, Protocol::Pg, Protocol::Flight] {
            let _ = writeln!(out, "jammi_open_connections{{protocol=\"{}\"}} {}", protocol.label(), self.connections[protocol as usize].load(Ordering::Relaxed));
        }
        out
    }
}

/// Counts one open connection until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
    protocol: Protocol,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connections[self.protocol as usize].fetch_sub(1, Ordering::Relaxed);
    }
}
