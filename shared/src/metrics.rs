//! Per-instance request metrics: counts by route and status, latency histograms (percentiles from the buckets),
//! error rate, cold-start flag, uptime — exposed as Prometheus text by `GET /api/v1/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::MatchedPath;
use serde::Serialize;

/// Upper bounds of the latency buckets, in seconds (Prometheus' own defaults, plus finer low end).
pub const BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Counts per bucket, plus the +Inf bucket at the end (not cumulative).
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        let i = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    /// The upper bound of the bucket holding the q-quantile (an over-estimate by at most one bucket).
    fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            }
        }
        f64::INFINITY
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    all: Histogram,
}

/// The metrics of this instance.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    caches: Mutex<Vec<(&'static str, Arc<dyn CacheSource>)>>,
    served_first: AtomicBool,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            caches: Mutex::default(),
            served_first: AtomicBool::new(false),
            started: Instant::now(),
        }
    }
}

/// A summary for health and alerts.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub server_errors: u64,
    pub error_rate: f64,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
    pub p99_seconds: f64,
    pub uptime_seconds: f64,
    /// True until this instance has served its first request.
    pub cold: bool,
}

/// Where a cache's counters come from: each feature registers its caches when it builds them.
pub trait CacheSource: Send + Sync + std::fmt::Debug {
    fn stats(&self) -> crate::cache::CacheStats;
}

impl<K: std::hash::Hash + Eq + Clone + Send, V: Clone + Send> CacheSource for crate::cache::Cache<K, V> {
    fn stats(&self) -> crate::cache::CacheStats {
        crate::cache::Cache::stats(self)
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a cache to the exposition as `cloud_agent_cache_events_total{cache="<name>",...}`.
    pub fn register_cache(&self, name: &'static str, cache: Arc<dyn CacheSource>) {
        self.caches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((name, cache));
    }

    /// Records one request; returns true for the instance's first (its cold start).
    pub fn record(&self, route: &'static str, status: u16, secs: f64) -> bool {
        let mut inner = self.lock();
        *inner.requests.entry((route, status)).or_default() += 1;
        inner.latency.entry(route).or_default().observe(secs);
        inner.all.observe(secs);
        !self.served_first.swap(true, Ordering::SeqCst)
    }

    pub fn summary(&self) -> Summary {
        let inner = self.lock();
        let requests = inner.all.count;
        let server_errors: u64 = inner.requests.iter().filter(|((_, s), _)| *s >= 500).map(|(_, n)| n).sum();
        Summary {
            requests,
            server_errors,
            error_rate: if requests == 0 { 0.0 } else { server_errors as f64 / requests as f64 },
            p50_seconds: inner.all.quantile(0.5),
            p95_seconds: inner.all.quantile(0.95),
            p99_seconds: inner.all.quantile(0.99),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            cold: !self.served_first.load(Ordering::SeqCst),
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn prometheus(&self, instance: &str, breakers: &crate::breaker::Registry) -> String {
        let inner = self.lock();
        let mut out = String::new();
        out.push_str("# HELP cloud_agent_requests_total Requests served by this instance, by route and status.\n");
        out.push_str("# TYPE cloud_agent_requests_total counter\n");
        for ((route, status), n) in &inner.requests {
            let _ = writeln!(out, "cloud_agent_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP cloud_agent_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE cloud_agent_request_duration_seconds histogram\n");
        for (route, h) in &inner.latency {
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.counts[i];
                let _ = writeln!(
                    out,
                    "cloud_agent_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "cloud_agent_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "cloud_agent_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "cloud_agent_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        drop(inner);
        let summary = self.summary();
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ =
                write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{instance=\"{instance}\"}} {value}\n");
        };
        gauge(&mut out, "cloud_agent_uptime_seconds", "Seconds since this instance started.", summary.uptime_seconds);
        gauge(&mut out, "cloud_agent_error_rate", "Share of requests answered 5xx.", summary.error_rate);
        gauge(
            &mut out,
            "cloud_agent_cold",
            "1 until the instance has served a request.",
            f64::from(u8::from(summary.cold)),
        );
        out.push_str(
            "# HELP cloud_agent_breaker_state Circuit breaker state (0 closed, 1 open, 2 half-open, 3 forced open).\n",
        );
        out.push_str("# TYPE cloud_agent_breaker_state gauge\n");
        for b in breakers.snapshots() {
            let code = match b.state {
                crate::breaker::State::Closed => 0,
                crate::breaker::State::Open => 1,
                crate::breaker::State::HalfOpen => 2,
                crate::breaker::State::ForcedOpen => 3,
            };
            let _ = writeln!(out, "cloud_agent_breaker_state{{name=\"{}\"}} {code}", b.name);
        }
        out.push_str("# HELP cloud_agent_cache_events_total Cache lookups and evictions, by cache.\n");
        out.push_str("# TYPE cloud_agent_cache_events_total counter\n");
        for (name, cache) in self.caches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let stats = cache.stats();
            for (kind, n) in
                [("hit", stats.hits), ("miss", stats.misses), ("stale", stats.stale), ("eviction", stats.evictions)]
            {
                let _ = writeln!(out, "cloud_agent_cache_events_total{{cache=\"{name}\",kind=\"{kind}\"}} {n}");
            }
        }
        out
    }
}

/// One CloudWatch Embedded Metric Format record for a request: CloudWatch turns the log line into metrics
/// (Latency, Requests, Errors, ColdStart by Route) with no API call from the function.
pub fn emf_line(route: &str, status: u16, secs: f64, cold: bool, function: &str, epoch_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": epoch_ms,
            "CloudWatchMetrics": [{
                "Namespace": "CloudAgent",
                "Dimensions": [["Function", "Route"]],
                "Metrics": [
                    {"Name": "Latency", "Unit": "Milliseconds"},
                    {"Name": "Requests", "Unit": "Count"},
                    {"Name": "Errors", "Unit": "Count"},
                    {"Name": "ColdStart", "Unit": "Count"}
                ]
            }]
        },
        "Function": function,
        "Route": route,
        "Status": status,
        "Latency": secs * 1000.0,
        "Requests": 1,
        "Errors": u8::from(status >= 500),
        "ColdStart": u8::from(cold)
    })
    .to_string()
}

/// What the metrics layer needs: where to record, the route label of every mounted path (a Vercel alias is
/// labelled with its route's public path), and the function name when EMF lines are on.
#[derive(Debug, Clone)]
pub struct Tracking {
    metrics: Arc<Metrics>,
    labels: Arc<HashMap<String, &'static str>>,
    emf_function: Option<Arc<str>>,
}

impl Tracking {
    pub fn new(metrics: Arc<Metrics>, labels: HashMap<String, &'static str>, emf_function: Option<&str>) -> Self {
        Self { metrics, labels: Arc::new(labels), emf_function: emf_function.map(Arc::from) }
    }

    /// The route template a request was routed to (bounded label values: never the raw path).
    pub fn label(&self, matched: Option<&MatchedPath>) -> &'static str {
        matched.and_then(|m| self.labels.get(m.as_str()).copied()).unwrap_or("unmatched")
    }

    /// Records one served request under its route template (and as an EMF line when enabled).
    pub fn record(&self, route: &'static str, status: u16, secs: f64) {
        let cold = self.metrics.record(route, status, secs);
        if cold {
            tracing::info!(route, cold_start = true, "first request of this instance");
        }
        if let Some(function) = &self.emf_function {
            let now_ms = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            // stdout, one line: the Lambda log agent forwards it to CloudWatch Logs, which extracts the metrics.
            println!("{}", emf_line(route, status, secs, cold, function, now_ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_follow_the_specification() {
        let line: serde_json::Value =
            serde_json::from_str(&emf_line("/health", 503, 0.012, true, "health", 1_795_000_000_000)).unwrap();
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(line["_aws"]["Timestamp"], 1_795_000_000_000i64);
        assert_eq!(directive["Namespace"], "CloudAgent");
        // Every dimension and metric the directive names is a top-level member of the record.
        for dim in directive["Dimensions"][0].as_array().unwrap() {
            assert!(line[dim.as_str().unwrap()].is_string());
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(line[metric["Name"].as_str().unwrap()].is_number(), "{metric}");
        }
        assert_eq!(line["ColdStart"], 1);
        assert_eq!(line["Errors"], 1);
        assert!((line["Latency"].as_f64().unwrap() - 12.0).abs() < 1e-9);
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = Histogram::default();
        for _ in 0..90 {
            h.observe(0.004);
        }
        for _ in 0..10 {
            h.observe(0.3);
        }
        assert!((h.quantile(0.5) - 0.005).abs() < 1e-9);
        assert!((h.quantile(0.95) - 0.5).abs() < 1e-9);
    }
}
