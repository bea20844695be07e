//! One window's analytics from its hour items: buckets of an hour or a day, each series' points, the window's
//! summary from merged sketches, anomalies against each series' trailing baseline, and the cost estimate.

use std::collections::BTreeMap;

use cloud_agent_wire::analytics::{
    Analytics, Anomaly, Bucket, Cost, Percentiles, PlatformCost, RoutePoint, RouteSeries, Severity, TaskPoint,
    TaskSeries,
};

use super::anomaly::{self, AnomalyRules};
use super::cost::{PriceTable, Usage};
use super::requests::RequestHour;
use super::sketch::{ACCURACY, Sketch};
use super::task_hours::TaskHour;

/// The buckets asked for: `count` buckets from `start` (a bucket boundary, seconds since the epoch), of which the
/// first `baseline` only serve as the anomalies' baseline and are not answered.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub bucket: Bucket,
    pub start: i64,
    pub baseline: usize,
    pub count: usize,
}

impl Span {
    /// The bucket an hour key (`YYYY-MM-DDTHH`) falls in.
    fn index_of(&self, hour: &str) -> Option<usize> {
        let at = time::PrimitiveDateTime::parse(
            &format!("{hour}:00:00"),
            &time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
        .ok()?
        .assume_utc()
        .unix_timestamp();
        let offset = at - self.start;
        (offset >= 0)
            .then(|| usize::try_from(offset / self.bucket.seconds()).ok())
            .flatten()
            .filter(|i| *i < self.count)
    }

    fn start_of(&self, index: usize) -> String {
        rfc3339(self.start + i64::try_from(index).unwrap_or(i64::MAX / 2) * self.bucket.seconds())
    }
}

pub fn rfc3339(epoch_secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch_secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Default)]
struct TaskSums {
    total: u64,
    outcomes: [u64; 4],
    timed: u64,
    duration_ms_sum: u64,
    durations: Sketch,
}

impl TaskSums {
    fn add(&mut self, hour: &TaskHour) {
        self.total += hour.total;
        for (sum, n) in self.outcomes.iter_mut().zip(hour.outcomes) {
            *sum += n;
        }
        self.timed += hour.timed;
        self.duration_ms_sum += hour.duration_ms_sum;
        self.durations.merge(&hour.durations);
    }

    fn merge(&mut self, other: &Self) {
        self.total += other.total;
        for (sum, n) in self.outcomes.iter_mut().zip(other.outcomes) {
            *sum += n;
        }
        self.timed += other.timed;
        self.duration_ms_sum += other.duration_ms_sum;
        self.durations.merge(&other.durations);
    }

    fn error_rate(&self) -> Option<f64> {
        (self.total > 0).then(|| (self.outcomes[1] + self.outcomes[2]) as f64 / self.total as f64)
    }

    fn point(&self, start: String, seconds: i64) -> TaskPoint {
        TaskPoint {
            start,
            total: self.total,
            succeeded: self.outcomes[0],
            failed: self.outcomes[1],
            timed_out: self.outcomes[2],
            cancelled: self.outcomes[3],
            error_rate: self.error_rate(),
            throughput_per_s: self.total as f64 / seconds as f64,
            duration_ms: percentiles(&self.durations, self.timed, self.duration_ms_sum),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct RouteSums {
    total: u64,
    server_errors: u64,
    client_errors: u64,
    duration_ms_sum: u64,
    durations: Sketch,
}

impl RouteSums {
    fn add(&mut self, hour: &RequestHour) {
        self.total += hour.total;
        self.server_errors += hour.server_errors;
        self.client_errors += hour.client_errors;
        self.duration_ms_sum += hour.duration_ms_sum;
        self.durations.merge(&hour.durations);
    }

    fn merge(&mut self, other: &Self) {
        self.total += other.total;
        self.server_errors += other.server_errors;
        self.client_errors += other.client_errors;
        self.duration_ms_sum += other.duration_ms_sum;
        self.durations.merge(&other.durations);
    }

    fn error_rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.server_errors as f64 / self.total as f64)
    }

    fn point(&self, start: String) -> RoutePoint {
        RoutePoint {
            start,
            requests: self.total,
            server_errors: self.server_errors,
            client_errors: self.client_errors,
            error_rate: self.error_rate(),
            duration_ms: percentiles(&self.durations, self.total, self.duration_ms_sum),
        }
    }
}

fn percentiles(sketch: &Sketch, timed: u64, sum_ms: u64) -> Percentiles {
    Percentiles {
        p50: sketch.quantile(0.50).map(round2),
        p95: sketch.quantile(0.95).map(round2),
        p99: sketch.quantile(0.99).map(round2),
        mean: (timed > 0).then(|| round2(sum_ms as f64 / timed as f64)),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Everything the route answers.
pub fn build(
    span: Span,
    task_hours: &[TaskHour],
    request_hours: &[RequestHour],
    rules: &AnomalyRules,
    prices: &PriceTable,
) -> Analytics {
    let seconds = span.bucket.seconds();
    let mut tasks: BTreeMap<&str, Vec<TaskSums>> = BTreeMap::new();
    for hour in task_hours {
        let Some(i) = span.index_of(&hour.hour) else { continue };
        tasks.entry(&hour.kind).or_insert_with(|| vec![TaskSums::default(); span.count])[i].add(hour);
    }
    let mut routes: BTreeMap<&str, Vec<RouteSums>> = BTreeMap::new();
    for hour in request_hours {
        let Some(i) = span.index_of(&hour.hour) else { continue };
        routes.entry(&hour.route).or_insert_with(|| vec![RouteSums::default(); span.count])[i].add(hour);
    }
    let answered = span.baseline..span.count;
    let mut anomalies = Vec::new();
    // The smallest meaningful move of each metric: one item per bucket, one percentage point, one millisecond.
    let unit = |metric: &str| match metric {
        "throughput" => 1.0 / seconds as f64,
        "error_rate" => 0.01,
        _ => 1.0,
    };
    let mut judge = |series: String, metric: &str, values: Vec<Option<f64>>| {
        for flag in anomaly::detect(&values, span.baseline, unit(metric), rules) {
            anomalies.push(Anomaly {
                series: series.clone(),
                metric: metric.to_owned(),
                start: span.start_of(flag.index),
                value: flag.value,
                mean: flag.mean,
                deviation: flag.deviation,
                z: (flag.z * 100.0).round() / 100.0,
                severity: match flag.severity {
                    anomaly::Severity::Warning => Severity::Warning,
                    anomaly::Severity::Critical => Severity::Critical,
                },
            });
        }
    };

    let mut task_series = Vec::new();
    for (kind, sums) in &tasks {
        let series = format!("task:{kind}");
        judge(series.clone(), "throughput", sums.iter().map(|s| Some(s.total as f64 / seconds as f64)).collect());
        judge(series.clone(), "error_rate", sums.iter().map(TaskSums::error_rate).collect());
        judge(series, "p95_ms", sums.iter().map(|s| s.durations.quantile(0.95)).collect());
        let mut whole = TaskSums::default();
        let points = answered
            .clone()
            .map(|i| {
                whole.merge(&sums[i]);
                sums[i].point(span.start_of(i), seconds)
            })
            .collect();
        let window_seconds = seconds * i64::try_from(span.count - span.baseline).unwrap_or(1);
        task_series.push(TaskSeries {
            kind: (*kind).to_owned(),
            points,
            window: whole.point(span.start_of(span.baseline), window_seconds),
        });
    }
    // A type with nothing in the answered buckets (only in the baseline) is left out.
    task_series.retain(|s| s.window.total > 0);

    let mut route_series = Vec::new();
    let mut usage = Usage::default();
    for (route, sums) in &routes {
        let series = format!("route:{route}");
        judge(series.clone(), "throughput", sums.iter().map(|s| Some(s.total as f64 / seconds as f64)).collect());
        judge(series.clone(), "error_rate", sums.iter().map(RouteSums::error_rate).collect());
        judge(series, "p95_ms", sums.iter().map(|s| s.durations.quantile(0.95)).collect());
        let mut whole = RouteSums::default();
        let points = answered
            .clone()
            .map(|i| {
                whole.merge(&sums[i]);
                sums[i].point(span.start_of(i))
            })
            .collect();
        usage.invocations += whole.total;
        usage.busy += std::time::Duration::from_millis(whole.duration_ms_sum);
        route_series.push(RouteSeries {
            route: (*route).to_owned(),
            points,
            window: whole.point(span.start_of(span.baseline)),
        });
    }
    route_series.retain(|s| s.window.requests > 0);
    anomalies.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.series.cmp(&b.series)));

    let platform = |memory_mb: u32, e: super::cost::Estimate| PlatformCost {
        memory_mb,
        compute_usd: e.compute,
        requests_usd: e.requests,
        total_usd: e.total,
    };
    let cost = Cost {
        prices_as_of: prices.as_of.clone(),
        invocations: usage.invocations,
        busy_seconds: usage.busy.as_secs_f64(),
        basis: "list prices without free tiers; invocations and durations as this service counted them (a floor: \
                an instance that stopped unannounced loses its last unwritten counts); Vercel's active CPU taken as \
                the whole duration, an upper bound"
            .into(),
        platforms: BTreeMap::from([
            ("lambda".to_owned(), platform(prices.lambda_memory_mb, prices.lambda(usage))),
            ("vercel".to_owned(), platform(prices.vercel_memory_mb, prices.vercel(usage))),
        ]),
    };
    Analytics {
        from: span.start_of(span.baseline),
        to: span.start_of(span.count),
        bucket: span.bucket,
        accuracy: ACCURACY,
        buckets: answered.map(|i| span.start_of(i)).collect(),
        tasks: task_series,
        requests: route_series,
        anomalies,
        cost,
    }
}
