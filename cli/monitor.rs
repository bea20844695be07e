//! `cloudagent monitor`: a live dashboard of a deployment in the terminal, read every `--interval` from the
//! service's own routes, never from a local copy: the request rate and error rate (deltas of the counters of
//! `GET /api/v1/metrics` between two readings), request latency percentiles (that exposition's histogram) and each
//! task type's (`GET /api/metrics`), the breakers (`GET /api/v1/circuit-breakers`), the health checks
//! (`GET /health`), the queue's depth and oldest due work (`GET /api/metrics`) and the latest failed tasks
//! (`GET /v3/tasks?status=failed`). A panel whose route refuses the key says which permission it needs; the others
//! go on.
//!
//! Reading runs on its own task and publishes a [`Snapshot`]; drawing is a pure function of the snapshot and the
//! [`View`] the keys chose, so the layout is tested without a terminal.

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_agent_sdk::api::health::{HealthReport, HealthStatus};
use cloud_agent_sdk::api::tasks::{Status, Task, TaskMetrics};
use cloud_agent_sdk::client::{Client, ClientError, TaskFilter};
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Table, Wrap};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

#[derive(Debug, clap::Args)]
pub(crate) struct MonitorArgs {
    /// Time between readings: 2s, 500ms, 1m (a bare number is seconds).
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    interval: Duration,
    #[command(flatten)]
    target: crate::operator::Target,
}

/// Readings kept for the sparklines (four minutes at the default interval); a panel shows the last that fit.
const HISTORY: usize = 120;
/// Failed tasks shown (a zoomed panel shows them all).
const FAILURES: u32 = 20;
/// Listing requests per reading in search of them: the server filters by status as it reads (up to 125 tasks
/// per request at this page size), so failures among many successes may need several; past these, older tasks
/// are not searched.
const FAILURE_READS: usize = 4;
/// The permission of `/api/metrics`, `/api/v1/metrics` and `/api/v1/circuit-breakers`.
const METRICS_READ: &str = "metrics:read";
/// The permission of `/v3/tasks`.
const TASK_READ: &str = "task:read";

fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?}: write a duration from 200ms to 1h, e.g. 2s, 500ms or 1m");
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return Err(bad()),
    };
    let interval = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    if (Duration::from_millis(200)..=Duration::from_hours(1)).contains(&interval) { Ok(interval) } else { Err(bad()) }
}

/// One panel's data as last read, or why there is none.
#[derive(Debug, Clone)]
pub(crate) enum Reading<T> {
    /// Not read yet.
    Waiting,
    Ready(T),
    /// The route refused the key or failed: what the panel says instead.
    Unavailable(String),
}

impl<T> Reading<T> {
    /// The answer of a route that needs `permission`; a refusal names it, which is what the person can act on.
    fn of(result: Result<T, ClientError>, permission: &str) -> Self {
        match result {
            Ok(value) => Self::Ready(value),
            Err(ClientError::Forbidden(_)) => {
                Self::Unavailable(format!("forbidden for this key's role: needs {permission}"))
            }
            Err(e @ ClientError::Unauthorized(_)) => Self::Unavailable(format!("{e} (check --key or the profile)")),
            Err(e) => Self::Unavailable(e.to_string()),
        }
    }

    /// The answer of a public route: no permission to name.
    fn public(result: Result<T, ClientError>) -> Self {
        result.map_or_else(|e| Self::Unavailable(e.to_string()), Self::Ready)
    }
}

/// Request latency percentiles in seconds: the upper bounds of the histogram buckets holding them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
}

/// The requests of the instance that answered, as the dashboard shows them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Traffic {
    /// Requests per second between consecutive readings, oldest first; `None` where the two readings cannot be
    /// compared (another instance answered, or it restarted).
    pub(crate) rate: VecDeque<Option<f64>>,
    /// The share of those requests answered 5xx.
    pub(crate) errors: VecDeque<Option<f64>>,
    /// Since the instance started.
    pub(crate) requests: u64,
    pub(crate) server_errors: u64,
    /// Over the last interval (`since_start` false) or, before a second reading, since the instance started.
    pub(crate) latency: Option<Percentiles>,
    pub(crate) since_start: bool,
    pub(crate) instance: Option<String>,
}

/// One breaker of the instance that answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BreakerRow {
    pub(crate) name: String,
    /// CLOSED, OPEN, HALF_OPEN, FORCED_OPEN.
    pub(crate) state: String,
    /// 0–1, over the breaker's window.
    pub(crate) failure_rate: f64,
    pub(crate) calls: u64,
    pub(crate) retry_after_secs: Option<f64>,
}

/// One failed task, as a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// HH:MM:SS UTC of its end.
    pub(crate) at: String,
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) attempts: String,
    /// The problem's detail, else its title.
    pub(crate) reason: String,
}

impl Failure {
    fn from_task(task: &Task) -> Self {
        let problem = task.problem.as_ref();
        let reason = problem
            .and_then(|p| p["detail"].as_str().or_else(|| p["title"].as_str()))
            .unwrap_or("no problem recorded")
            .to_owned();
        Self {
            at: task.finished_ms.or(task.started_ms).map_or_else(|| "-".to_owned(), |ms| clock(utc_ms(ms))),
            kind: task.kind.clone(),
            id: task.id.clone(),
            attempts: format!("{}/{}", task.attempts, task.max_attempts),
            reason,
        }
    }
}

/// The latest failed tasks, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Failures {
    pub(crate) rows: Vec<Failure>,
    /// Every task was searched (or enough failures were found); false when older tasks were left unread.
    pub(crate) complete: bool,
}

/// Everything the dashboard shows, as last read.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) url: String,
    pub(crate) interval: Duration,
    /// When the last reading ended.
    pub(crate) read_at: Option<OffsetDateTime>,
    pub(crate) traffic: Reading<Traffic>,
    pub(crate) tasks: Reading<TaskMetrics>,
    pub(crate) breakers: Reading<Vec<BreakerRow>>,
    pub(crate) health: Reading<HealthReport>,
    pub(crate) failures: Reading<Failures>,
}

impl Snapshot {
    fn new(url: String, interval: Duration) -> Self {
        Self {
            url,
            interval,
            read_at: None,
            traffic: Reading::Waiting,
            tasks: Reading::Waiting,
            breakers: Reading::Waiting,
            health: Reading::Waiting,
            failures: Reading::Waiting,
        }
    }
}

/// What the Prometheus exposition of one instance says at one moment, summed over routes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Scrape {
    pub(crate) instance: Option<String>,
    pub(crate) requests: u64,
    pub(crate) server_errors: u64,
    /// The latency histogram's cumulative buckets over every route: (upper bound in seconds, count), ascending,
    /// `+Inf` last.
    pub(crate) buckets: Vec<(f64, u64)>,
}

/// A sample's labels: `name="value"` pairs up to the closing brace outside quotes (route templates carry braces).
fn labels(text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        rest = &after[end + 1..];
    }
}

/// Reads the samples this dashboard needs from the text exposition (format 0.0.4); other lines are skipped.
pub(crate) fn parse_prometheus(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, labels, rest) = match line.split_once('{') {
            Some((name, after)) => match labels(after) {
                Some((labels, rest)) => (name, labels, rest),
                None => continue,
            },
            None => match line.split_once(' ') {
                Some((name, rest)) => (name, BTreeMap::new(), rest),
                None => continue,
            },
        };
        // The value, then an optional timestamp.
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let count = value as u64;
        match name {
            "cloud_agent_requests_total" => {
                scrape.requests += count;
                if labels.get("status").and_then(|s| s.parse::<u16>().ok()).is_some_and(|s| s >= 500) {
                    scrape.server_errors += count;
                }
            }
            "cloud_agent_request_duration_seconds_bucket" => {
                let bound = match labels.get("le").map(String::as_str) {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(bound) => bound,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                match buckets.iter_mut().find(|(b, _)| b.total_cmp(&bound).is_eq()) {
                    Some((_, n)) => *n += count,
                    None => buckets.push((bound, count)),
                }
            }
            "cloud_agent_uptime_seconds" => scrape.instance = labels.get("instance").cloned(),
            _ => {}
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    scrape.buckets = buckets;
    scrape
}

/// The upper bound of the bucket holding the q-quantile of cumulative `buckets`; `None` without requests.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    buckets.iter().find(|(_, n)| *n >= rank).map(|(bound, _)| *bound)
}

fn percentiles(buckets: &[(f64, u64)]) -> Option<Percentiles> {
    Some(Percentiles { p50: quantile(buckets, 0.5)?, p95: quantile(buckets, 0.95)?, p99: quantile(buckets, 0.99)? })
}

/// The buckets' counts between two scrapes (a bucket absent before counted from zero: its route was new).
fn bucket_delta(before: &[(f64, u64)], now: &[(f64, u64)]) -> Vec<(f64, u64)> {
    now.iter()
        .map(|(bound, n)| {
            let old = before.iter().find(|(b, _)| b.total_cmp(bound).is_eq()).map_or(0, |(_, n)| *n);
            (*bound, n.saturating_sub(old))
        })
        .collect()
}

impl Traffic {
    /// Adds a scrape taken `elapsed` after `before` (the previous one, if any).
    fn observe(&mut self, before: Option<&Scrape>, now: &Scrape, elapsed: Duration) {
        // Counters only compare within one instance's life: another instance, or a restart, starts over.
        let comparable = before.filter(|b| {
            b.instance == now.instance && b.requests <= now.requests && b.server_errors <= now.server_errors
        });
        let (rate, errors, latency) = match comparable {
            Some(before) if !elapsed.is_zero() => {
                let requests = now.requests - before.requests;
                let errors = now.server_errors - before.server_errors;
                let share = (requests > 0).then(|| errors as f64 / requests as f64);
                let rate = requests as f64 / elapsed.as_secs_f64();
                (Some(rate), share, percentiles(&bucket_delta(&before.buckets, &now.buckets)))
            }
            _ => (None, None, None),
        };
        if before.is_some() {
            push(&mut self.rate, rate);
            push(&mut self.errors, errors);
        }
        self.since_start = comparable.is_none();
        self.latency = if self.since_start { percentiles(&now.buckets) } else { latency };
        self.requests = now.requests;
        self.server_errors = now.server_errors;
        self.instance.clone_from(&now.instance);
    }
}

fn push(history: &mut VecDeque<Option<f64>>, value: Option<f64>) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(value);
}

/// What the reader keeps between readings: the last scrape and when it came, and the history drawn from them.
#[derive(Debug, Default)]
struct Reader {
    last: Option<(Scrape, Instant)>,
    traffic: Traffic,
}

impl Reader {
    /// One reading of every route at once; each panel gets its own answer.
    async fn read(&mut self, client: &Client, snapshot: &mut Snapshot) {
        let (exposition, tasks, breakers, health, failures) = tokio::join!(
            client.get_text("/api/v1/metrics"),
            client.task_metrics(),
            client.send_json(reqwest::Method::GET, "/api/v1/circuit-breakers", None, false),
            client.health_now(),
            recent_failures(client),
        );
        snapshot.traffic = Reading::of(
            exposition.map(|text| {
                let scrape = parse_prometheus(&text);
                let now = Instant::now();
                let elapsed = self.last.as_ref().map_or(Duration::ZERO, |(_, at)| now.saturating_duration_since(*at));
                self.traffic.observe(self.last.as_ref().map(|(before, _)| before), &scrape, elapsed);
                self.last = Some((scrape, now));
                self.traffic.clone()
            }),
            METRICS_READ,
        );
        snapshot.tasks = Reading::of(tasks, METRICS_READ);
        snapshot.breakers = Reading::of(breakers.map(|(_, body)| breaker_rows(&body)), METRICS_READ);
        snapshot.health = Reading::public(health);
        snapshot.failures = Reading::of(failures, TASK_READ);
        snapshot.read_at = Some(OffsetDateTime::now_utc());
    }
}

async fn recent_failures(client: &Client) -> Result<Failures, ClientError> {
    let failed = TaskFilter { status: Some(Status::Failed), page_size: Some(FAILURES), ..TaskFilter::default() };
    let mut pages = client.tasks(failed);
    let mut failures = Failures::default();
    for _ in 0..FAILURE_READS {
        let Some(page) = pages.next_page().await else {
            failures.complete = true;
            break;
        };
        failures.rows.extend(page?.iter().map(Failure::from_task));
        if failures.rows.len() >= FAILURES as usize {
            failures.rows.truncate(FAILURES as usize);
            failures.complete = true;
            break;
        }
    }
    Ok(failures)
}

fn breaker_rows(body: &serde_json::Value) -> Vec<BreakerRow> {
    body["breakers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| BreakerRow {
            name: b["name"].as_str().unwrap_or("?").to_owned(),
            state: b["state"].as_str().unwrap_or("?").to_owned(),
            failure_rate: b["failure_rate"].as_f64().unwrap_or(0.0),
            calls: b["calls_in_window"].as_u64().unwrap_or(0),
            retry_after_secs: b["retry_after_secs"].as_f64(),
        })
        .collect()
}

/// Reads every `interval` (at once when asked) until the dashboard closes.
async fn keep_reading(client: Client, interval: Duration, read_now: Arc<Notify>, readings: watch::Sender<Snapshot>) {
    let mut reader = Reader::default();
    let mut ticks = tokio::time::interval(interval);
    // A slow reading delays the next one instead of bunching readings up behind it.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = read_now.notified() => ticks.reset(),
        }
        let mut snapshot = readings.borrow().clone();
        reader.read(&client, &mut snapshot).await;
        if readings.send(snapshot).is_err() {
            return;
        }
    }
}

/// The dashboard's panels, numbered as their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Panel {
    Requests,
    Latency,
    Breakers,
    Health,
    Queue,
    Failures,
}

impl Panel {
    const ALL: [Self; 6] = [Self::Requests, Self::Latency, Self::Breakers, Self::Health, Self::Queue, Self::Failures];

    fn title(self) -> &'static str {
        match self {
            Self::Requests => "Requests",
            Self::Latency => "Latency",
            Self::Breakers => "Breakers",
            Self::Health => "Health",
            Self::Queue => "Queue",
            Self::Failures => "Recent failures",
        }
    }

    fn number(self) -> usize {
        Self::ALL.iter().position(|p| *p == self).unwrap_or(0) + 1
    }
}

/// What the keys chose: every panel, or one filling the screen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) zoom: Option<Panel>,
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Quit,
    ReadNow,
    Show(View),
    Nothing,
}

impl View {
    pub(crate) fn on_key(self, key: KeyEvent) -> Action {
        let cycle = |step: usize| {
            let at = self.zoom.map_or(0, Panel::number);
            let next = (at + step) % (Panel::ALL.len() + 1);
            Action::Show(Self { zoom: next.checked_sub(1).map(|i| Panel::ALL[i]) })
        };
        match key.code {
            KeyCode::Char('q' | 'Q') => Action::Quit,
            // Raw mode delivers Ctrl-C as a key, not a signal.
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
            KeyCode::Char('r') => Action::ReadNow,
            KeyCode::Char('0') | KeyCode::Esc => Action::Show(Self { zoom: None }),
            KeyCode::Char(c @ '1'..='6') => Action::Show(Self { zoom: Some(Panel::ALL[usize::from(c as u8 - b'1')]) }),
            KeyCode::Tab | KeyCode::Right => cycle(1),
            KeyCode::BackTab | KeyCode::Left => cycle(Panel::ALL.len()),
            _ => Action::Nothing,
        }
    }
}

fn utc_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn clock(at: Option<OffsetDateTime>) -> String {
    at.map_or_else(|| "-".to_owned(), |t| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()))
}

fn every(interval: Duration) -> String {
    if interval.subsec_millis() == 0 {
        format!("{} s", interval.as_secs())
    } else {
        format!("{} ms", interval.as_millis())
    }
}

/// A latency bucket's bound: the percentile is at most this.
fn bound(seconds: f64) -> String {
    if seconds.is_infinite() {
        // Above the server's largest bucket (`cloud_agent::metrics::BUCKETS`).
        format!("> {} s", cloud_agent::metrics::BUCKETS.last().copied().unwrap_or(5.0))
    } else if seconds < 1.0 {
        format!("≤{} ms", (seconds * 1000.0).round())
    } else {
        format!("≤{seconds} s")
    }
}

fn status_style(status: HealthStatus) -> Style {
    Style::new().fg(match status {
        HealthStatus::Pass => Color::Green,
        HealthStatus::Warn => Color::Yellow,
        HealthStatus::Fail => Color::Red,
    })
}

fn status_word(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Pass => "pass",
        HealthStatus::Warn => "warn",
        HealthStatus::Fail => "fail",
    }
}

fn breaker_style(state: &str) -> Style {
    Style::new().fg(match state {
        "CLOSED" => Color::Green,
        "HALF_OPEN" => Color::Yellow,
        _ => Color::Red,
    })
}

const DIM: Style = Style::new().fg(Color::DarkGray);
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

/// Draws the dashboard: a header, the panel keys, then every panel or the zoomed one.
pub(crate) fn render(frame: &mut Frame, snapshot: &Snapshot, view: View) {
    let [header, keys, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Fill(1)]).areas(frame.area());
    let read = match snapshot.read_at {
        Some(at) => format!("read {} UTC", clock(Some(at))),
        None => "reading…".to_owned(),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" Cloud Agent monitor ", BOLD.fg(Color::Cyan)),
            Span::raw(format!(" {}   every {}   {read}", snapshot.url, every(snapshot.interval))),
        ])),
        header,
    );
    let mut tabs = vec![Span::raw(" ")];
    let overview = view.zoom.is_none();
    tabs.push(Span::styled(" 0 all ", if overview { BOLD.add_modifier(Modifier::REVERSED) } else { DIM }));
    for panel in Panel::ALL {
        let chosen = view.zoom == Some(panel);
        let style = if chosen { BOLD.add_modifier(Modifier::REVERSED) } else { DIM };
        tabs.push(Span::styled(format!(" {} {} ", panel.number(), panel.title().to_lowercase()), style));
    }
    tabs.push(Span::styled("   tab next  r read now  q quit", DIM));
    frame.render_widget(Paragraph::new(Line::from(tabs)), keys);

    if let Some(panel) = view.zoom {
        draw_panel(frame, body, snapshot, panel);
        return;
    }
    let rows: [Rect; 3] = Layout::vertical([Constraint::Fill(1); 3]).areas(body);
    let halves = |area: Rect, left: u16| -> [Rect; 2] {
        Layout::horizontal([Constraint::Percentage(left), Constraint::Fill(1)]).areas(area)
    };
    let [requests, latency] = halves(rows[0], 50);
    let [breakers, health] = halves(rows[1], 50);
    let [queue, failures] = halves(rows[2], 40);
    for (panel, area) in [
        (Panel::Requests, requests),
        (Panel::Latency, latency),
        (Panel::Breakers, breakers),
        (Panel::Health, health),
        (Panel::Queue, queue),
        (Panel::Failures, failures),
    ] {
        draw_panel(frame, area, snapshot, panel);
    }
}

fn draw_panel(frame: &mut Frame, area: Rect, snapshot: &Snapshot, panel: Panel) {
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(format!(" {} ", panel.number()), DIM),
        Span::styled(format!("{} ", panel.title()), BOLD),
    ]));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match panel {
        Panel::Requests => requests(frame, inner, snapshot),
        Panel::Latency => latency(frame, inner, snapshot),
        Panel::Breakers => breakers(frame, inner, snapshot),
        Panel::Health => health(frame, inner, snapshot),
        Panel::Queue => queue(frame, inner, snapshot),
        Panel::Failures => failures(frame, inner, snapshot),
    }
}

/// The panel's data, or its message drawn in its place (`None` then).
fn ready<'a, T>(frame: &mut Frame, area: Rect, reading: &'a Reading<T>) -> Option<&'a T> {
    let (text, style) = match reading {
        Reading::Ready(value) => return Some(value),
        Reading::Waiting => ("reading…".to_owned(), DIM),
        Reading::Unavailable(why) => (why.clone(), Style::new().fg(Color::Red)),
    };
    frame.render_widget(Paragraph::new(Span::styled(text, style)).wrap(Wrap { trim: true }), area);
    None
}

/// The last `width` values, scaled by `scale` to the integers a sparkline draws (absent where unknown).
fn bars(history: &VecDeque<Option<f64>>, width: u16, scale: f64) -> Vec<Option<u64>> {
    let skip = history.len().saturating_sub(usize::from(width));
    history.iter().skip(skip).map(|v| v.map(|v| (v * scale).round() as u64)).collect()
}

fn requests(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let Some(traffic) = ready(frame, area, &snapshot.traffic) else { return };
    let [rate_line, rate_chart, error_line, error_chart] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1), Constraint::Fill(1)])
            .areas(area);
    let now = traffic.rate.back().copied().flatten();
    let rate = now.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"));
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!("{rate} req/s"), BOLD),
            Span::styled(format!("  {} served (all callers, this monitor too)", traffic.requests), DIM),
        ])),
        rate_line,
    );
    frame.render_widget(
        Sparkline::default().data(bars(&traffic.rate, area.width, 10.0)).style(Style::new().fg(Color::Cyan)),
        rate_chart,
    );
    let share = traffic.errors.back().copied().flatten();
    let errors = share.map_or_else(|| "-".to_owned(), |e| format!("{:.1}", e * 100.0));
    let error_style = if share.is_some_and(|e| e > 0.0) { BOLD.fg(Color::Red) } else { BOLD };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!("{errors} % errors (5xx)"), error_style),
            Span::styled(format!("  {} since start", traffic.server_errors), DIM),
        ])),
        error_line,
    );
    frame.render_widget(
        Sparkline::default().data(bars(&traffic.errors, area.width, 1000.0)).style(Style::new().fg(Color::Red)),
        error_chart,
    );
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn latency(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    // Both sources refused for one reason (a key without metrics:read): say it once.
    if let (Reading::Unavailable(a), Reading::Unavailable(b)) = (&snapshot.traffic, &snapshot.tasks)
        && a == b
    {
        ready(frame, area, &snapshot.tasks);
        return;
    }
    let [requests, tasks] = Layout::vertical([Constraint::Length(2), Constraint::Fill(1)]).areas(area);
    if let Some(traffic) = ready(frame, requests, &snapshot.traffic) {
        let window =
            if traffic.since_start { "since start".to_owned() } else { format!("last {}", every(snapshot.interval)) };
        let line = match traffic.latency {
            Some(p) => Line::from(vec![
                Span::raw(format!("requests, {window}:  ")),
                Span::styled(format!("p50 {}", bound(p.p50)), BOLD),
                Span::raw("  "),
                Span::styled(format!("p95 {}", bound(p.p95)), BOLD),
                Span::raw("  "),
                Span::styled(format!("p99 {}", bound(p.p99)), BOLD),
            ]),
            None => Line::styled(format!("requests, {window}: none"), DIM),
        };
        frame.render_widget(Paragraph::new(line), requests);
    }
    let Some(metrics) = ready(frame, tasks, &snapshot.tasks) else { return };
    if metrics.by_type.is_empty() {
        frame.render_widget(Paragraph::new(Span::styled("no finished tasks yet", DIM)), tasks);
        return;
    }
    let rows = metrics.by_type.iter().map(|(kind, stats)| {
        Row::new(vec![
            kind.clone(),
            stats.total.to_string(),
            ms(stats.latency_ms.p50),
            ms(stats.latency_ms.p95),
            ms(stats.latency_ms.p99),
        ])
    });
    let widths = [
        Constraint::Fill(2),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    let header = Row::new(vec!["task type", "done", "p50 ms", "p95 ms", "p99 ms"]).style(DIM);
    frame.render_widget(Table::new(rows, widths).header(header), tasks);
}

fn breakers(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let Some(breakers) = ready(frame, area, &snapshot.breakers) else { return };
    if breakers.is_empty() {
        frame.render_widget(Paragraph::new(Span::styled("no breakers on this instance", DIM)), area);
        return;
    }
    let rows = breakers.iter().map(|b| {
        Row::new(vec![
            Span::raw(b.name.clone()),
            Span::styled(b.state.clone(), breaker_style(&b.state)),
            Span::raw(format!("{:.0} %", b.failure_rate * 100.0)),
            Span::raw(b.calls.to_string()),
            Span::raw(b.retry_after_secs.map_or_else(String::new, |s| format!("{s:.0} s"))),
        ])
    });
    let widths = [
        Constraint::Fill(3),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(8),
    ];
    let header = Row::new(vec!["breaker", "state", "failures", "calls", "retry in"]).style(DIM);
    frame.render_widget(Table::new(rows, widths).header(header), area);
}

/// A check's observed value to three decimals at most (a ratio of 0.13157894736842105 reads as 0.132).
fn observed(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn health(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let Some(report) = ready(frame, area, &snapshot.health) else { return };
    let [summary, checks] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(status_word(report.status), BOLD.patch(status_style(report.status))),
            Span::styled(
                format!("  version {}  release {}  {}", report.version, report.release_id, report.environment),
                DIM,
            ),
        ])),
        summary,
    );
    let mut rows: Vec<Row> = report
        .checks
        .iter()
        .flat_map(|(name, checks)| checks.iter().map(move |check| (name, check)))
        .map(|(name, check)| {
            let value = match (check.observed_value, check.observed_unit.as_deref()) {
                (Some(v), Some(unit)) => format!("{} {unit}", observed(v)),
                (Some(v), None) => observed(v),
                _ => check.output.clone().unwrap_or_default(),
            };
            Row::new(vec![
                Span::raw(name.clone()),
                Span::styled(status_word(check.status), status_style(check.status)),
                Span::raw(value),
            ])
        })
        .collect();
    rows.extend(report.alerts.iter().map(|alert| {
        Row::new(vec![
            Span::styled(format!("alert {}", alert.kind.as_str()), BOLD.fg(Color::Red)),
            Span::raw(""),
            Span::raw(alert.detail.clone()),
        ])
    }));
    let widths = [Constraint::Fill(2), Constraint::Length(5), Constraint::Fill(2)];
    frame.render_widget(Table::new(rows, widths), checks);
}

fn queue(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let Some(metrics) = ready(frame, area, &snapshot.tasks) else { return };
    let label = |text: &'static str| Span::styled(format!("{text:<10}"), DIM);
    let oldest = match metrics.queue.oldest_due_at.as_deref() {
        None => Span::raw("none waiting"),
        Some(at) => {
            let due = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok();
            let waited = due.zip(snapshot.read_at).map(|(due, now)| (now - due).whole_seconds());
            match waited {
                Some(secs) if secs > 0 => Span::raw(format!("{} UTC, due {secs} s ago", clock(due))),
                _ => Span::raw(format!("{} UTC, due now", clock(due))),
            }
        }
    };
    let success = metrics.success_rate.map_or_else(String::new, |r| format!(" ({:.1} % succeeded)", r * 100.0));
    let lines = vec![
        Line::from(vec![label("depth"), Span::styled(format!("{} queued", metrics.queue.depth), BOLD)]),
        Line::from(vec![label("oldest"), oldest]),
        Line::from(vec![label("finished"), Span::styled(metrics.total.to_string(), BOLD), Span::raw(success)]),
        Line::from(vec![
            label(""),
            Span::raw(format!(
                "{} failed, {} timed out, {} cancelled",
                metrics.failed, metrics.timed_out, metrics.cancelled
            )),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

fn failures(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let Some(failures) = ready(frame, area, &snapshot.failures) else { return };
    if failures.rows.is_empty() {
        let none =
            if failures.complete { "no failed tasks" } else { "no failed task among the latest (older not read)" };
        frame.render_widget(Paragraph::new(Span::styled(none, DIM)), area);
        return;
    }
    let rows = failures.rows.iter().map(|f| {
        Row::new(vec![
            Span::raw(f.at.clone()),
            Span::raw(f.kind.clone()),
            Span::styled(f.id.clone(), DIM),
            Span::raw(f.attempts.clone()),
            Span::styled(f.reason.clone(), Style::new().fg(Color::Red)),
        ])
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(14),
        Constraint::Length(16),
        Constraint::Length(5),
        Constraint::Fill(1),
    ];
    let header = Row::new(vec!["ended", "type", "task", "tries", "why"]).style(DIM);
    frame.render_widget(Table::new(rows, widths).header(header), area);
}

/// Puts the terminal back (cooked mode, main screen) however the dashboard ends; a panic is handled by the hook
/// `ratatui::try_init` installs.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The dashboard's loop, on a thread of its own: draws when a reading or a key changed something, and waits for
/// keys in between.
fn show(mut readings: watch::Receiver<Snapshot>, read_now: &Notify) -> anyhow::Result<()> {
    let _restore = Restore;
    let mut terminal = ratatui::try_init()?;
    let mut view = View::default();
    let mut dirty = true;
    loop {
        if dirty || readings.has_changed().unwrap_or(false) {
            let snapshot = readings.borrow_and_update().clone();
            terminal.draw(|frame| render(frame, &snapshot, view))?;
            dirty = false;
        }
        // Short, so a new reading is drawn within this long of arriving.
        if !event::poll(Duration::from_millis(100))? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind == KeyEventKind::Press => match view.on_key(key) {
                Action::Quit => return Ok(()),
                Action::ReadNow => read_now.notify_one(),
                Action::Show(next) => {
                    dirty = next != view;
                    view = next;
                }
                Action::Nothing => {}
            },
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}

pub(crate) async fn monitor(args: MonitorArgs) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "cloudagent: monitor draws a live dashboard and needs a terminal, but standard output is not one; \
             for one reading as text, run `cloudagent status`"
        );
        std::process::exit(2);
    }
    let url = args.target.url()?;
    // A stuck route shows as a timeout in its panel rather than freezing its readings for the default 30 s.
    let client = args.target.builder()?.timeout(args.interval.max(Duration::from_secs(10))).build()?;
    let (publish, readings) = watch::channel(Snapshot::new(url, args.interval));
    let read_now = Arc::new(Notify::new());
    let reading = tokio::spawn(keep_reading(client, args.interval, read_now.clone(), publish));
    let shown = tokio::task::spawn_blocking(move || show(readings, &read_now)).await;
    reading.abort();
    shown?
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn text(terminal: &Terminal<TestBackend>) -> String {
        let buffer = terminal.backend().buffer();
        let width = usize::from(buffer.area.width);
        buffer
            .content()
            .chunks(width)
            .map(|row| row.iter().map(ratatui::buffer::Cell::symbol).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    const EXPOSITION: &str = r#"# HELP cloud_agent_requests_total Requests served by this instance, by route and status.
# TYPE cloud_agent_requests_total counter
cloud_agent_requests_total{route="/health",status="200"} 90
cloud_agent_requests_total{route="/v3/tasks/{id}",status="502"} 10
cloud_agent_request_duration_seconds_bucket{route="/health",le="0.005"} 80
cloud_agent_request_duration_seconds_bucket{route="/health",le="0.05"} 90
cloud_agent_request_duration_seconds_bucket{route="/health",le="+Inf"} 90
cloud_agent_request_duration_seconds_bucket{route="/v3/tasks/{id}",le="0.005"} 0
cloud_agent_request_duration_seconds_bucket{route="/v3/tasks/{id}",le="0.05"} 0
cloud_agent_request_duration_seconds_bucket{route="/v3/tasks/{id}",le="+Inf"} 10
cloud_agent_uptime_seconds{instance="i-1"} 12.5
"#;

    #[test]
    fn the_exposition_gives_counts_and_buckets_over_every_route() {
        let scrape = parse_prometheus(EXPOSITION);
        assert_eq!((scrape.requests, scrape.server_errors), (100, 10));
        assert_eq!(scrape.instance.as_deref(), Some("i-1"));
        assert_eq!(scrape.buckets, vec![(0.005, 80), (0.05, 90), (f64::INFINITY, 100)]);
        let p = percentiles(&scrape.buckets).unwrap();
        assert_eq!((p.p50, p.p95), (0.005, f64::INFINITY));
    }

    #[test]
    fn rates_are_deltas_within_one_instance() {
        let before = parse_prometheus(EXPOSITION);
        let mut now = before.clone();
        now.requests += 50;
        now.server_errors += 5;
        now.buckets = vec![(0.005, 80), (0.05, 140), (f64::INFINITY, 150)];
        let mut traffic = Traffic::default();
        traffic.observe(None, &before, Duration::ZERO);
        assert!(traffic.rate.is_empty() && traffic.since_start);
        traffic.observe(Some(&before), &now, Duration::from_secs(2));
        assert_eq!(traffic.rate.back(), Some(&Some(25.0)));
        assert_eq!(traffic.errors.back(), Some(&Some(0.1)));
        assert_eq!(traffic.latency.map(|p| p.p50), Some(0.05), "the interval's requests only");
        let mut other = now.clone();
        other.instance = Some("i-2".into());
        traffic.observe(Some(&now), &other, Duration::from_secs(2));
        assert_eq!(traffic.rate.back(), Some(&None), "another instance's counters are not comparable");
    }

    #[test]
    fn keys_zoom_cycle_and_quit() {
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        let view = View::default();
        assert_eq!(view.on_key(key(KeyCode::Char('6'))), Action::Show(View { zoom: Some(Panel::Failures) }));
        let zoomed = View { zoom: Some(Panel::Failures) };
        assert_eq!(zoomed.on_key(key(KeyCode::Tab)), Action::Show(View::default()));
        assert_eq!(view.on_key(key(KeyCode::BackTab)), Action::Show(zoomed));
        assert_eq!(zoomed.on_key(key(KeyCode::Esc)), Action::Show(View::default()));
        assert_eq!(view.on_key(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(view.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit);
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("3"), Ok(Duration::from_secs(3)));
        assert!(parse_interval("10ms").is_err() && parse_interval("2h").is_err() && parse_interval("x").is_err());
    }

    #[test]
    fn the_panels_render_with_a_forbidden_one_saying_why() {
        let mut traffic = Traffic::default();
        traffic.observe(None, &parse_prometheus(EXPOSITION), Duration::ZERO);
        let mut snapshot = Snapshot::new("http://127.0.0.1:3000".into(), Duration::from_secs(2));
        snapshot.read_at = Some(time::macros::datetime!(2026-01-02 03:04:05 UTC));
        snapshot.traffic = Reading::Ready(traffic);
        snapshot.breakers = Reading::Unavailable("forbidden for this key's role: needs metrics:read".into());
        snapshot.tasks = Reading::Ready(TaskMetrics {
            total: 7,
            succeeded: 6,
            failed: 1,
            success_rate: Some(6.0 / 7.0),
            ..TaskMetrics::default()
        });
        snapshot.failures = Reading::Ready(Failures {
            rows: vec![Failure {
                at: "03:04:00".into(),
                kind: "echo".into(),
                id: "t_0123".into(),
                attempts: "3/3".into(),
                reason: "echo was asked to fail".into(),
            }],
            complete: true,
        });
        let mut terminal = Terminal::new(TestBackend::new(160, 40)).unwrap();
        terminal.draw(|frame| render(frame, &snapshot, View::default())).unwrap();
        let screen = text(&terminal);
        for title in ["Requests", "Latency", "Breakers", "Health", "Queue", "Recent failures"] {
            assert!(screen.contains(title), "{title} in\n{screen}");
        }
        assert!(screen.contains("forbidden for this key's role: needs metrics:read"), "{screen}");
        assert!(screen.contains("- req/s") && screen.contains("100 served"), "{screen}");
        assert!(screen.contains("p50 ≤5 ms") && screen.contains("since start"), "{screen}");
        assert!(screen.contains("finished  7 (85.7 % succeeded)"), "{screen}");
        assert!(screen.contains("1 failed, 0 timed out, 0 cancelled"), "{screen}");
        assert!(screen.contains("echo was asked to fail") && screen.contains("read 03:04:05 UTC"), "{screen}");
        assert!(screen.contains("reading…"), "the health panel waits for its first reading:\n{screen}");

        terminal.draw(|frame| render(frame, &snapshot, View { zoom: Some(Panel::Failures) })).unwrap();
        let zoomed = text(&terminal);
        assert!(zoomed.contains("Recent failures") && !zoomed.contains("Breakers "), "{zoomed}");
    }
}
