//! `cloudagent monitor` as a person sees it: run in tmux against `cloudagent serve` under load, its frame read with
//! `tmux capture-pane` shows every panel with live numbers, a key zooms a panel, `q` ends it with status 0 and the
//! terminal back in cooked mode on its main screen; a key without `metrics:read` gets the forbidden message in the
//! panels that need it while health and failures go on. The admin frame is kept as
//! `infra/.run/artifacts/monitor-frame.txt`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::process;

const ADMIN: &str = "admin-key-0123456789abcdef0123456789";
const FORBIDDEN: &str = "forbidden for this key's role: needs metrics:read";

/// A tmux server of this test's own (its own socket, no user configuration), killed when the test ends whatever
/// its outcome, which ends the monitors in it.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// `None` when tmux is not installed (a failure under infra/test.sh, which installs it).
    fn new() -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var("CLOUD_AGENT_REQUIRE_DYNAMODB").is_err(),
                "tmux is not installed: run the tests with infra/test.sh, which installs it"
            );
            eprintln!("skipped: no tmux to run the monitor in");
            return None;
        }
        Some(Self { socket: format!("cloudagent-monitor-{}", uuid::Uuid::new_v4().simple()) })
    }

    fn run(&self, args: &[&str]) -> Output {
        // A clean environment: the panes inherit the server's, so the monitor sees only what the test sets.
        let output = Command::new("tmux")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(output.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    /// Starts `command` in a new 160×50 session that stays after its process ends, so its screen can be read.
    fn start(&self, session: &str, env: &[(&str, &str)], command: &str) {
        let mut args = vec!["new-session", "-d", "-s", session, "-x", "160", "-y", "50"];
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for pair in &env {
            args.extend(["-e", pair]);
        }
        args.extend([command, ";", "set-option", "-t", session, "remain-on-exit", "on"]);
        self.run(&args);
    }

    fn capture(&self, session: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", session]).stdout).into_owned()
    }

    fn keys(&self, session: &str, keys: &str) {
        self.run(&["send-keys", "-t", session, keys]);
    }

    /// The first frame that satisfies `ready`, polled every 200 ms up to a generous deadline (a cold, loaded
    /// machine is slow); kept in `artifact` either way, so a failure leaves the frame it saw.
    async fn frame(&self, session: &str, artifact: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_mins(1);
        loop {
            let frame = self.capture(session);
            let done = ready(&frame);
            if done || Instant::now() > until {
                keep(artifact, &frame);
                assert!(done, "no frame with {what} within a minute; the last:\n{frame}");
                return frame;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

fn keep(artifact: &str, frame: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/.run/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(artifact), frame).unwrap();
}

/// Background traffic with the admin key until dropped: tasks that succeed, tasks that fail every attempt (so
/// there are 5xx answers and failed tasks), reads. Paced, so failures stay among the latest tasks the monitor
/// searches, as they would in a real tenant's mix.
struct Load(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Load {
    fn drop(&mut self) {
        for worker in &self.0 {
            worker.abort();
        }
    }
}

async fn post_task(http: &reqwest::Client, base: &str, body: serde_json::Value) {
    let _ = http.post(format!("{base}/v3/tasks")).header("x-api-key", ADMIN).json(&body).send().await;
}

impl Load {
    fn start(base: &str) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let mut workers = Vec::new();
        for worker in 0..3 {
            let (http, base) = (http.clone(), base.to_owned());
            workers.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let body = serde_json::json!({"type": "echo", "payload": {"message": format!("{worker}-{i}")}});
                    post_task(&http, &base, body).await;
                    let _ = http.get(format!("{base}/health")).send().await;
                    let _ = http.get(format!("{base}/v3/tasks?limit=5")).header("x-api-key", ADMIN).send().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
        // Each takes a few seconds: its attempts are retried with backoff before the answer.
        for _ in 0..2 {
            let (http, base) = (http.clone(), base.to_owned());
            workers.push(tokio::spawn(async move {
                loop {
                    let body = serde_json::json!({"type": "echo", "payload": {"fail": "transient"}});
                    post_task(&http, &base, body).await;
                }
            }));
        }
        Self(workers)
    }
}

/// The number just before `marker` (`12.5` in `│12.5 req/s`).
fn before(frame: &str, marker: &str) -> Option<f64> {
    let at = frame.find(marker)?;
    frame[..at].rsplit(|c: char| c.is_whitespace() || c == '│').next()?.parse().ok()
}

/// The number just after `label` (`30` in `depth     30 queued`, `12` in `finished  12: …`).
fn after(frame: &str, label: &str) -> Option<f64> {
    let at = frame.find(label)? + label.len();
    frame[at..].split_whitespace().next()?.trim_end_matches(':').parse().ok()
}

/// A row of a panel (the text between its borders) with `first`, then `then` after it.
fn row(frame: &str, first: &str, then: &str) -> bool {
    frame.lines().flat_map(|l| l.split('│')).any(|cell| cell.find(first).is_some_and(|at| cell[at..].contains(then)))
}

/// What the shell around the monitor records once it has ended, in `dir`: its exit status, and the terminal's mode
/// (cooked again, `icanon` and `echo`, if the monitor restored it). The status file is written last, whole.
struct Ended {
    status: PathBuf,
    stty: PathBuf,
}

impl Ended {
    fn new(dir: &Path, name: &str) -> Self {
        Self { status: dir.join(format!("{name}.status")), stty: dir.join(format!("{name}.stty")) }
    }

    /// The shell command that runs the monitor and records its end (tmux's own exit status of a pane needs tmux to
    /// reap it, which it was seen not to do in time).
    fn command(&self, binary: &Path, args: &str) -> String {
        let (status, stty) = (self.status.display(), self.stty.display());
        format!(
            "'{}' monitor {args}; code=$?; stty -a > '{stty}'; \
             echo $code > '{status}.tmp'; mv '{status}.tmp' '{status}'",
            binary.display()
        )
    }

    /// Waits until the monitor has ended; its exit status.
    async fn status(&self, tmux: &Tmux, session: &str) -> String {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(status) = std::fs::read_to_string(&self.status) {
                return status.trim().to_owned();
            }
            assert!(Instant::now() < until, "the monitor did not end after q:\n{}", tmux.capture(session));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn assert_restored(tmux: &Tmux, session: &str, ended: &Ended) {
    let modes = std::fs::read_to_string(&ended.stty).unwrap();
    let words: Vec<&str> = modes.split([' ', ';', '\n']).collect();
    assert!(words.contains(&"icanon") && words.contains(&"echo"), "raw mode was left on: {modes}");
    let after = tmux.capture(session);
    assert!(!after.contains("Recent failures"), "the alternate screen was left:\n{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shows_live_panels_zooms_and_quits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // Piped, there is no terminal to draw on: it says so and exits 2.
    let piped = process::cloudagent(dir.path())
        .args(["monitor", "--url", "http://127.0.0.1:9", "--key", ADMIN])
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(2), "{piped:?}");
    assert!(String::from_utf8_lossy(&piped.stderr).contains("needs a terminal"), "{piped:?}");
    let Some(tmux) = Tmux::new() else { return };
    let mut serve = process::cloudagent(dir.path());
    // The load makes more tasks a minute than the default delegation quota allows.
    serve
        .env("DEV_ADMIN_KEY", ADMIN)
        .env("CLOUD_AGENT_RATE_TIERS", "standard:100000/60:100000/60")
        .env("RUST_LOG", "warn");
    let (_server, _lines, base) = process::serve(serve, &["--data-dir", "data"]);
    let viewer = process::cloudagent(dir.path())
        .args(["keys", "create", "--name", "watcher", "--role", "viewer", "--url", &base, "--key", ADMIN])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(viewer.status.success(), "{}", String::from_utf8_lossy(&viewer.stderr));
    let viewer: serde_json::Value = serde_json::from_slice(&viewer.stdout).unwrap();
    let viewer = viewer["key"].as_str().unwrap().to_owned();

    // Work that waits in the queue: ten run at a time, each for 20 s, so the queue holds some for a minute.
    let http = reqwest::Client::new();
    let waiting = serde_json::json!({
        "type": "echo", "payload": {"delay_ms": 20000}, "options": {"async": true, "timeout_ms": 60000}
    });
    for _ in 0..30 {
        let queued = http.post(format!("{base}/v3/tasks")).header("x-api-key", ADMIN).json(&waiting).send().await;
        assert_eq!(queued.unwrap().status(), 202);
    }
    let _load = Load::start(&base);
    let started = Instant::now();

    let binary = PathBuf::from(env!("CARGO_BIN_EXE_cloudagent"));
    let ended = Ended::new(dir.path(), "admin");
    let env = [("CLOUD_AGENT_URL", base.as_str()), ("CLOUD_AGENT_API_KEY", ADMIN), ("XDG_CONFIG_HOME", "/nonexistent")];
    tmux.start("admin", &env, &ended.command(&binary, ""));
    let frame = tmux
        .frame("admin", "monitor-frame.txt", "every panel and live numbers", |frame| {
            ["Requests", "Latency", "Breakers", "Health", "Queue", "Recent failures"].iter().all(|t| frame.contains(t))
                // Above what the monitor's own five calls every 2 s make: the load is seen.
                && before(frame, " req/s").is_some_and(|rate| rate >= 5.0)
                && frame.contains("requests, last 2 s:  p50 ")
                && row(frame, "store ", "CLOSED")
                && row(frame, "datastore:responseTime", " pass ")
                && after(frame, "depth").is_some_and(|depth| depth > 0.0)
                && after(frame, "finished").is_some_and(|done| done > 0.0)
                && row(frame, "echo ", "gave up after")
        })
        .await;
    assert!(frame.contains(&format!("Cloud Agent monitor  {base}   every 2 s   read ")), "{frame}");
    assert!(!frame.contains("forbidden"), "{frame}");

    // 6 zooms the failures: alone on the screen, wide enough for the whole reason.
    tmux.keys("admin", "6");
    tmux.frame("admin", "monitor-frame-failures.txt", "the failures zoomed", |frame| {
        frame.contains("Recent failures") && !frame.contains("Breakers ") && frame.contains("echo was asked to fail")
    })
    .await;
    tmux.keys("admin", "q");
    assert_eq!(ended.status(&tmux, "admin").await, "0", "q ends the monitor with status 0");
    assert_restored(&tmux, "admin", &ended);

    // A viewer lacks metrics:read: the panels reading those routes say so; health and failures still show.
    let ended = Ended::new(dir.path(), "viewer");
    let env = [
        ("CLOUD_AGENT_URL", base.as_str()),
        ("CLOUD_AGENT_API_KEY", viewer.as_str()),
        ("XDG_CONFIG_HOME", "/nonexistent"),
    ];
    tmux.start("viewer", &env, &ended.command(&binary, "--interval 1s"));
    let frame = tmux
        .frame("viewer", "monitor-frame-viewer.txt", "the forbidden panels beside working ones", |frame| {
            frame.contains("every 1 s")
                && row(frame, "datastore:responseTime", " pass ")
                && row(frame, "echo ", "gave up after")
                // Requests, latency (both of its sources refused alike: said once), breakers, queue.
                && frame.matches(FORBIDDEN).count() == 4
        })
        .await;
    assert!(!frame.contains("req/s") && !frame.contains("CLOSED") && !frame.contains("queued"), "{frame}");
    tmux.keys("viewer", "q");
    assert_eq!(ended.status(&tmux, "viewer").await, "0");
    assert_restored(&tmux, "viewer", &ended);
    eprintln!("monitor test: {:.1} s from the load's start", started.elapsed().as_secs_f64());
}
