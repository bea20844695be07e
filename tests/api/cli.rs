//! `cloudagent agent login` / `agent token` against `cloudagent serve`, as a person would try them.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::process::{self, Child, Lines};

fn cloudagent(dir: &std::path::Path) -> Command {
    let mut cmd = process::cloudagent(dir);
    cmd.env("RUST_LOG", "error");
    cmd
}

#[tokio::test]
async fn login_then_token_uses_a_working_rotating_session() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // The demo agent works for `local-user`: give that user a context before the server owns the store file.
    std::fs::write(dir.path().join("ctx.json"), r#"{"profile":{"name":"Ada"},"permissions":["repo:read"]}"#).unwrap();
    let set = cloudagent(dir.path())
        .args(["context", "set", "--user", "local-user", "--file", "ctx.json", "--data-dir", "data"])
        .env("DEV_AGENT_SECRET", "a-development-pepper")
        .output()
        .unwrap();
    assert!(set.status.success(), "context set failed: {}", String::from_utf8_lossy(&set.stderr));
    let mut serve = cloudagent(dir.path());
    serve
        .args(["serve", "--port", &port.to_string(), "--data-dir", "data"])
        .env("DEV_AGENT_SECRET", "a-development-pepper");
    let (_server, lines) = process::spawn(serve);
    // serve prints the ready-to-paste login command for its demo agent.
    let login_line = lines.wait_for(Duration::from_mins(2), |l| l.contains("agent login"));
    let args: Vec<String> = login_line.split_whitespace().skip(1).map(str::to_owned).collect();
    let login = cloudagent(dir.path()).args(&args).output().unwrap();
    assert!(login.status.success(), "login failed: {}", String::from_utf8_lossy(&login.stderr));
    let session_path = dir.path().join(".cloudagent/agent-session.json");
    let session: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&session_path).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&session_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let out = cloudagent(dir.path()).args(["agent", "token"]).output().unwrap();
        assert!(out.status.success(), "token failed: {}", String::from_utf8_lossy(&out.stderr));
        tokens.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    }
    let rotated: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&session_path).unwrap()).unwrap();
    assert_ne!(session["refresh_token"], rotated["refresh_token"], "each use rotates the saved refresh token");
    for token in tokens {
        let me = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/api/v1/agent/me"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        assert_eq!(me.json::<serde_json::Value>().await.unwrap()["agent_id"], "demo-agent");
    }
    let progress = cloudagent(dir.path())
        .args(["agent", "progress", "--task", "cli-task", "--progress", "40", "--message", "half way"])
        .output()
        .unwrap();
    assert!(progress.status.success(), "progress failed: {}", String::from_utf8_lossy(&progress.stderr));
    let simulate = cloudagent(dir.path())
        .args(["agent", "simulate", "--tasks", "3", "--steps", "4", "--step-ms", "10"])
        .output()
        .unwrap();
    assert!(simulate.status.success(), "simulate failed: {}", String::from_utf8_lossy(&simulate.stderr));
    let report = String::from_utf8_lossy(&simulate.stdout).into_owned();
    assert!(report.contains("12 updates stored, 0 not"), "{report}");
    let batches: u64 = report.split(" in ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!((1..=12).contains(&batches), "the batches really posted are counted: {report}");
    let token = String::from_utf8(cloudagent(dir.path()).args(["agent", "token"]).output().unwrap().stdout).unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let task = common::get_json(&client, &format!("{base}/api/v1/agent/progress/cli-task"), Some(token.trim())).await;
    assert_eq!(task["progress"], 40.0);
    assert_eq!(task["message"], "half way");
    let context = common::get_json(&client, &format!("{base}/api/v1/agent/context"), Some(token.trim())).await;
    assert_eq!(context["profile"]["name"], "Ada");
    let bad = cloudagent(dir.path())
        .args([
            "agent",
            "login",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--id",
            "demo-agent",
            "--secret",
            "cas_x",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("rejected"));
}

/// A running `cloudagent serve` whose stderr lines are collected as they come.
struct Running {
    _server: Child,
    lines: Lines,
    base: String,
}

impl Running {
    fn start(dir: &std::path::Path) -> Self {
        Self::start_with(dir, &[])
    }

    fn start_with(dir: &std::path::Path, envs: &[(&str, &str)]) -> Self {
        let mut command = cloudagent(dir);
        command.envs(envs.iter().copied()).env("RUST_LOG", "info");
        let (server, lines, base) = process::serve(command, &["--data-dir", "data"]);
        let running = Self { _server: server, lines, base };
        running.wait_for_line(|l| l.contains("agent login"));
        running
    }

    /// The first line matching `pred`, waiting for it (generous deadline: a cold machine is slow).
    fn wait_for_line(&self, pred: impl Fn(&str) -> bool) -> String {
        self.lines.wait_for(Duration::from_mins(1), pred)
    }

    fn demo_secret(&self) -> String {
        let line = self.wait_for_line(|l| l.contains("agent login"));
        line.split_whitespace().skip_while(|w| *w != "--secret").nth(1).unwrap().to_owned()
    }

    async fn login(&self, id: &str, secret: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/api/v1/agent/token", self.base))
            .json(&serde_json::json!({"agent_id": id, "agent_secret": secret}))
            .send()
            .await
            .unwrap()
    }
}

fn secret_from(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix("agent_secret: ")).unwrap().to_owned()
}

/// A newcomer's second start: no secrets configured, agents registered and the demo login keep working; the
/// CLI rotates and disables agents; log lines carry the agent id.
#[tokio::test]
async fn a_second_start_keeps_agents_and_the_demo_login_working() {
    let dir = tempfile::tempdir().unwrap();
    let created = cloudagent(dir.path())
        .args(["agent", "create", "--id", "worker", "--owner", "team-a", "--data-dir", "data"])
        .output()
        .unwrap();
    let secret = secret_from(&created);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let kept = dir.path().join("data").join(cloud_agent::config::secrets::DEV_SECRETS_FILE);
        assert_eq!(std::fs::metadata(kept).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let first = Running::start(dir.path());
    let demo = first.demo_secret();
    assert_eq!(first.login("worker", &secret).await.status(), 200);
    drop(first);

    let second = Running::start(dir.path());
    assert_eq!(second.demo_secret(), demo, "the same demo login after a restart");
    assert_eq!(second.login("demo-agent", &demo).await.status(), 200);
    let issued: serde_json::Value = second.login("worker", &secret).await.json().await.unwrap();
    let token = issued["access_token"].as_str().expect("the agent registered before the restart still logs in");
    let me = reqwest::Client::new().get(format!("{}/api/v1/agent/me", second.base)).bearer_auth(token).send().await;
    assert_eq!(me.unwrap().status(), 200);
    // The access log line of that request names the agent.
    let line = second.wait_for_line(|l| l.contains("request served") && l.contains("/api/v1/agent/me"));
    let logged: serde_json::Value = serde_json::from_str(&line).expect("JSON lines when stderr is not a terminal");
    assert_eq!(logged["span"]["agent"], "worker", "{line}");
    drop(second);

    let rotated = secret_from(
        &cloudagent(dir.path())
            .args(["agent", "rotate-secret", "--id", "worker", "--data-dir", "data"])
            .output()
            .unwrap(),
    );
    let third = Running::start(dir.path());
    assert_eq!(third.login("worker", &secret).await.status(), 401, "the old secret is dead");
    assert_eq!(third.login("worker", &rotated).await.status(), 200);
    drop(third);

    let disabled = cloudagent(dir.path()).args(["agent", "disable", "--id", "worker", "--data-dir", "data"]).output();
    assert!(disabled.unwrap().status.success());
    let fourth = Running::start(dir.path());
    assert_eq!(fourth.login("worker", &rotated).await.status(), 401, "a disabled agent cannot log in");
}

#[test]
fn openapi_prints_the_document_the_route_serves() {
    let dir = tempfile::tempdir().unwrap();
    let output = cloudagent(dir.path()).arg("openapi").output().unwrap();
    assert!(output.status.success(), "openapi failed: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8(output.stdout).unwrap(), cloud_agent::app::openapi_document());
}

/// Keys and the audit trail over HTTP, against a running server: `keys create` prints the key once, the key
/// works, `keys list` never prints it, `audit` reads the trail the key's requests left.
#[tokio::test]
async fn keys_and_audit_work_against_a_running_server() {
    const ADMIN: &str = "admin-key-0123456789abcdef0123456789";
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start_with(dir.path(), &[("DEV_ADMIN_KEY", ADMIN)]);
    let run = |args: &[&str], key: &str| {
        let output = cloudagent(dir.path()).args(args).args(["--url", &server.base, "--key", key]).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let created: serde_json::Value =
        serde_json::from_str(&run(&["keys", "create", "--name", "auditor", "--role", "analyst"], ADMIN)).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ca_test_"), "{created}");
    let listed = run(&["keys", "list"], ADMIN);
    assert!(listed.contains("auditor") && !listed.contains(&key), "{listed}");
    let health = reqwest::Client::new().get(format!("{}/api/v1/agents/health", server.base)).header("x-api-key", &key);
    assert_eq!(health.send().await.unwrap().status(), 200);
    // Agents over HTTP, while the server runs (the store is the server's: no second process opens it).
    let registered: serde_json::Value =
        serde_json::from_str(&run(&["agents", "create", "--id", "remote-1", "--owner", "u-1"], ADMIN)).unwrap();
    let secret = registered["agent_secret"].as_str().unwrap().to_owned();
    assert_eq!(server.login("remote-1", &secret).await.status(), 200);
    assert!(run(&["agents", "list"], ADMIN).contains("\"remote-1\""));
    let rotated: serde_json::Value = serde_json::from_str(&run(&["agents", "rotate", "remote-1"], ADMIN)).unwrap();
    assert_eq!(server.login("remote-1", &secret).await.status(), 401, "the old secret stopped working");
    let new_secret = rotated["agent_secret"].as_str().unwrap();
    assert_eq!(server.login("remote-1", new_secret).await.status(), 200);
    run(&["agents", "disable", "remote-1"], ADMIN);
    assert_eq!(server.login("remote-1", new_secret).await.status(), 401, "a disabled agent cannot log in");
    let prefix = created["prefix"].as_str().unwrap();
    let trail = run(&["audit", "--actor", &format!("key:{prefix}"), "--route", "/api/v1/agents/health"], &key);
    let records: Vec<serde_json::Value> = trail.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 1, "{trail}");
    assert_eq!(records[0]["status"], 200);
    // A viewer may not read the trail: the CLI says why and fails.
    let viewer: serde_json::Value =
        serde_json::from_str(&run(&["keys", "create", "--name", "v", "--role", "viewer"], ADMIN)).unwrap();
    let refused = cloudagent(dir.path())
        .args(["audit", "--url", &server.base, "--key", viewer["key"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("audit:read"), "{refused:?}");
}

/// `delegate`, `batch` and `tasks` against `cloudagent serve`, whose own worker runs queued tasks.
#[tokio::test]
async fn delegate_batch_and_tasks_work_against_a_running_server() {
    const ADMIN: &str = "admin-key-0123456789abcdef0123456789";
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start_with(dir.path(), &[("DEV_ADMIN_KEY", ADMIN)]);
    let run = |args: &[&str]| {
        let output = cloudagent(dir.path()).args(args).args(["--url", &server.base, "--key", ADMIN]).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let json = |text: String| -> serde_json::Value { serde_json::from_str(&text).unwrap() };

    let ran = json(run(&["delegate", "text-analysis", "--payload", r#"{"text": "The cat sat on the mat."}"#]));
    assert_eq!(ran["status"], "succeeded");
    assert_eq!(ran["result"]["words"], 6);

    // Queued: the server's in-process worker runs it; --wait polls until it has.
    let queued = json(run(&[
        "delegate",
        "echo",
        "--payload",
        r#"{"message": "later"}"#,
        "--async",
        "--wait",
        "--priority",
        "high",
    ]));
    assert_eq!(queued["status"], "succeeded", "{queued}");
    assert_eq!(queued["mode"], "async");
    assert_eq!(queued["result"]["message"], "later");

    std::fs::write(
        dir.path().join("batch.json"),
        r#"[{"task_type": "echo", "task_data": {"message": 1}}, {"task_type": "smart-routing", "task_data": {"description": "validate this JSON against its schema"}}]"#,
    )
    .unwrap();
    let batch = json(run(&["batch", "@batch.json"]));
    assert_eq!(batch["succeeded"], 2, "{batch}");
    assert_eq!(batch["results"][1]["task"]["result"]["recommended_handler"], "json-validator");

    let listed = run(&["tasks", "list", "--type", "echo"]);
    let lines: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines.iter().all(|t| t["type"] == "echo"));
    let got = json(run(&["tasks", "get", ran["id"].as_str().unwrap()]));
    assert_eq!(got["id"], ran["id"]);
    let caps = json(run(&["tasks", "capabilities"]));
    // The eleven built-ins and the example plugin this build registers, with its hook.
    let names: Vec<&str> = caps["handlers"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 12, "{names:?}");
    assert!(names.contains(&"echo") && names.contains(&"api-tester"), "{names:?}");
    let csv = caps["handlers"].as_array().unwrap().iter().find(|h| h["name"] == "csv-parser").expect("the plugin");
    assert_eq!(csv["hooks"], serde_json::json!(["payload-limit"]));
    let metrics = json(run(&["tasks", "metrics"]));
    assert_eq!(metrics["total"], 4, "{metrics}");

    // A long task queued, then cancelled before the worker gets to it finishing.
    let slow =
        json(run(&["delegate", "echo", "--payload", r#"{"delay_ms": 30000}"#, "--async", "--timeout-ms", "60000"]));
    let cancelled = json(run(&["tasks", "cancel", slow["id"].as_str().unwrap()]));
    assert_eq!(cancelled["status"], "cancelled");
    // A refused task: the CLI fails and says why.
    let refused = cloudagent(dir.path())
        .args(["delegate", "text-analysis", "--payload", r#"{"text": 5}"#, "--url", &server.base, "--key", ADMIN])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("422"), "{refused:?}");
}

/// The first five minutes: `serve` in development writes the `local` profile (the development admin key,
/// generated once into the data directory), so `delegate` and `tasks` work with no key and no flags; `init` adds
/// another profile that takes its key from an environment variable, and says what to do when it is not set.
#[test]
fn serve_writes_the_local_profile_and_operator_commands_work_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let mut command = cloudagent(dir.path());
    command.env("XDG_CONFIG_HOME", &config).env("RUST_LOG", "info");
    let (_server, lines, base) = process::serve(command, &["--data-dir", "data"]);
    let said = lines.wait_for(Duration::from_mins(1), |l| l.contains("operator profile `local`"));
    assert!(said.contains(&config.display().to_string()), "{said}");
    let text = std::fs::read_to_string(config.join("cloudagent/config.toml")).unwrap();
    assert!(
        text.contains(&base) && !text.contains("ca_dev_admin_"),
        "the file names the key's place, not the key: {text}"
    );

    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = cloudagent(dir.path()).env("XDG_CONFIG_HOME", &config).envs(env.iter().copied()).args(args).output();
        let out = out.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["delegate", "echo", "--payload", r#"{"message": "first five minutes"}"#], &[]);
    assert!(ok, "delegate with no key, through the local profile: {err}");
    let task: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(task["status"], "succeeded");
    assert_eq!(task["result"]["message"], "first five minutes");
    let (ok, out, err) = run(&["tasks", "list"], &[]);
    assert!(ok && out.contains(task["id"].as_str().unwrap()), "{out}{err}");
    let (ok, out, err) = run(&["status"], &[]);
    assert!(ok, "status of a healthy server: {out}{err}");
    assert!(out.starts_with(&format!("endpoint  {base}  pass  (version")), "{out}");
    assert!(out.contains("check     datastore:responseTime  pass"), "{out}");
    assert!(out.contains("queue     0 queued"), "{out}");
    assert!(out.contains("tasks     1 finished, 100.0 % succeeded, 0 failed"), "{out}");
    assert!(out.contains(&format!("client    {base}  HEALTHY, breaker CLOSED")), "{out}");
    assert!(out.contains("client    retry budget 500 tokens"), "{out}");

    let (ok, out, err) = run(&["export", "tasks", "--days", "1", "--format", "csv"], &[]);
    assert!(ok && err.contains("exported 1 tasks"), "{err}");
    let mut rows = out.lines();
    assert_eq!(
        rows.next(),
        Some("id,type,status,priority,mode,attempts,created_ms,started_ms,finished_ms,duration_ms,created_by")
    );
    let row = rows.next().unwrap();
    assert!(row.starts_with(&format!("{},echo,succeeded,normal,sync,1,", task["id"].as_str().unwrap())), "{row}");
    assert_eq!(rows.next(), None);
    let (ok, out, err) = run(&["export", "audit", "--days", "1"], &[]);
    assert!(ok, "{err}");
    let audit: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(audit.iter().any(|r| r["route"] == "/v3/tasks" && r["method"] == "POST" && r["status"] == 201), "{out}");

    // A second profile, from flags; its key comes from a variable.
    let (ok, _, err) = run(&["init", "--profile", "staging", "--url", &base, "--key-env", "STAGING_KEY"], &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["tasks", "list", "--profile", "staging"], &[]);
    assert!(!ok && err.contains("$STAGING_KEY") && err.contains("export it"), "says what to do: {err}");
    let key = std::fs::read_to_string(dir.path().join("data/local-admin-key")).unwrap();
    let (ok, out, err) = run(&["tasks", "list", "--profile", "staging"], &[("STAGING_KEY", key.trim())]);
    assert!(ok && out.contains(task["id"].as_str().unwrap()), "{out}{err}");
    let (ok, _, err) = run(&["tasks", "list", "--profile", "nope"], &[]);
    assert!(!ok && err.contains("cloudagent init --profile nope"), "{err}");

    // The development admin key is kept in the data directory, so a restart keeps it.
    let text = std::fs::read_to_string(dir.path().join("data/dev-secrets.json")).unwrap();
    assert!(text.contains(key.trim()));
}

/// `deploy aws` prints exactly what it would run, secrets as the variables they come from, after its checks;
/// a missing tool or secret fails the command with what to do about it.
#[test]
fn deploy_prints_exactly_what_it_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let deploy = |path: &std::path::Path, secrets: bool| {
        let mut command = cloudagent(dir.path());
        command.env("PATH", path).args(["deploy", "aws", "--stage", "prod", "--stack-name", "agents"]);
        if secrets {
            command.env("PROD_AGENT_SECRET", "a".repeat(32)).env("PROD_JWT_SECRET", "b".repeat(32));
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let plan = "would run (add --run to run it):\n  sam build\n  sam deploy --stack-name agents --capabilities \
                CAPABILITY_IAM --resolve-s3 --parameter-overrides Stage=production AgentSecret=$PROD_AGENT_SECRET \
                JwtSecret=$PROD_JWT_SECRET\n";
    let (ok, out, err) = deploy(&bin, false);
    assert!(!ok && out.ends_with(plan), "{out}");
    assert!(out.contains("missing  sam on PATH  ->  install the AWS SAM CLI"), "{out}");
    assert!(out.contains("missing  $PROD_JWT_SECRET set"), "{out}");
    assert!(err.contains("4 check(s) failed"), "{err}");

    // With the tools on PATH and the secrets set, the checks pass and nothing runs without --run.
    for tool in ["sam", "cargo-lambda"] {
        let path = bin.join(tool);
        std::fs::write(&path, "#!/bin/sh\necho ran >> ran.txt\n").unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).unwrap();
    }
    let (ok, out, _) = deploy(&bin, true);
    assert!(ok && out.ends_with(plan), "{out}");
    assert!(out.starts_with("ok       sam on PATH\nok       cargo-lambda on PATH\n"), "{out}");
    assert!(!out.contains(&"a".repeat(32)), "a secret's value is never printed");
    assert!(!dir.path().join("ran.txt").exists(), "nothing ran");
}

/// `docs` names the document's URL and lists every operation of the running server.
#[test]
fn docs_lists_the_operations_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path());
    let out = cloudagent(dir.path()).args(["docs", "--url", &server.base]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("document: {}/api/v1/openapi.json", server.base)), "{text}");
    let doc: serde_json::Value = serde_json::from_str(cloud_agent::app::openapi_document()).unwrap();
    let operations: usize = doc["paths"].as_object().unwrap().values().map(|i| i.as_object().unwrap().len()).sum();
    assert_eq!(text.lines().count(), operations + 2, "a line per operation: {text}");
    assert!(
        text.lines().any(|l| l.starts_with("POST") && l.contains("/v3/tasks") && l.contains("createTask")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("/health/live") && l.contains("(public)")), "{text}");
}

/// Acceptance of issue 21: `init` (interactive) → `status` → `test` → `benchmark` → `export` against `serve`, as
/// an operator would run them, with no flags but the ones each command is about.
#[test]
fn init_status_test_benchmark_export_against_serve() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let mut command = cloudagent(dir.path());
    command
        .env("XDG_CONFIG_HOME", &config)
        .env("RUST_LOG", "info")
        // The smoke test's webhook receiver listens on loopback; the benchmark must not meet the rate limits.
        .env("CLOUD_AGENT_OUTBOUND_ALLOW_LOOPBACK", "on")
        .env("CLOUD_AGENT_RATE_TIERS", "standard:1000000/60:1000000/60");
    let (_server, lines, base) = process::serve(command, &["--data-dir", "data"]);
    lines.wait_for(Duration::from_mins(1), |l| l.contains("operator profile `local`"));
    let key_file = dir.path().join("data/local-admin-key");

    let mut init = cloudagent(dir.path())
        .env("XDG_CONFIG_HOME", &config)
        .arg("init")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let answers = format!("ops\n{base}\n{}\ny\n", key_file.display());
    init.stdin.take().unwrap().write_all(answers.as_bytes()).unwrap();
    let out = init.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("Profile name") && err.contains("\"ops\" written"), "{err}");
    let text = std::fs::read_to_string(config.join("cloudagent/config.toml")).unwrap();
    assert!(text.contains("default_profile = \"ops\"") && text.contains("[profiles.ops]"), "{text}");

    // Every command below uses the default profile `ops`.
    let run = |args: &[&str]| {
        let out = cloudagent(dir.path()).env("XDG_CONFIG_HOME", &config).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["status"]);
    assert!(ok && out.starts_with(&format!("endpoint  {base}  pass")), "{out}{err}");

    let (ok, out, err) = run(&["test"]);
    assert!(ok, "every check passes: {out}{err}");
    let checks: Vec<&str> = out.lines().collect();
    assert_eq!(checks.len(), 5, "{out}");
    for (line, check) in checks.iter().zip(["health", "openapi", "agent token", "task", "webhook"]) {
        assert!(line.starts_with(&format!("ok    {check}")), "{line}");
    }
    assert!(!out.contains('\u{1b}'), "no colour when the output is not a terminal: {out:?}");
    assert!(checks[4].contains("signature verified"), "{out}");

    let (ok, out, err) = run(&["benchmark", "--concurrency", "4", "--requests", "200", "--type", "echo", "--json"]);
    assert!(ok, "{err}");
    let results: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((results["requests"].as_u64(), results["succeeded"].as_u64()), (Some(200), Some(200)), "{out}");
    assert_eq!(results["errors"], serde_json::json!({}));
    let latency = &results["latency_ms"];
    let order: Vec<f64> =
        ["min", "p50", "p90", "p99", "p99_9", "max"].iter().map(|q| latency[q].as_f64().unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]) && order[0] > 0.0, "percentiles in order: {latency}");
    assert!(results["throughput_rps"].as_f64().unwrap() > 0.0);
    let (ok, out, err) = run(&["benchmark", "-c", "2", "-n", "50", "--route", "/health"]);
    assert!(ok, "{err}");
    assert!(out.contains("finished   50 requests in") && out.contains("errors     none"), "{out}");
    assert!(out.contains("latency    p50 "), "{out}");
    let (ok, out, err) = run(&["benchmark", "-n", "5", "--type", "csv-parser"]);
    assert!(!ok && err.contains("needs --payload"), "says what is missing: {out}{err}");

    let (ok, out, err) = run(&["export", "tasks", "--days", "1", "--format", "json"]);
    assert!(ok, "{err}");
    let tasks: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(tasks.len() >= 200, "the benchmark's tasks are exported: {}", tasks.len());
    assert!(tasks.iter().all(|t| t["status"] == "succeeded"));
    let (ok, out, err) = run(&["export", "audit", "--days", "1"]);
    assert!(ok, "{err}");
    let revoked = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .any(|r| r["method"] == "DELETE" && r["route"] == "/api/v1/keys/{key_id}" && r["status"] == 204);
    assert!(revoked, "the smoke test revoked its throwaway key: {out}");

    // Analytics of what the benchmark ran: the route's JSON, the CSV, and the HTML report seen in a browser.
    let (ok, out, err) = run(&["analytics", "--days", "1"]);
    assert!(ok, "{err}");
    let analytics: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(analytics["buckets"].as_array().unwrap().len(), 24, "a day of hours");
    let echo = analytics["tasks"].as_array().unwrap().iter().find(|s| s["type"] == "echo").expect("echo's series");
    assert!(echo["window"]["succeeded"].as_u64().unwrap() >= 200, "{}", echo["window"]);
    assert!(echo["window"]["duration_ms"]["p99"].is_number());
    let (ok, out, err) = run(&["analytics", "--days", "1", "--format", "csv", "--type", "echo"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows[0].starts_with("bucket_start,type,total,succeeded"), "{out}");
    assert_eq!(rows.len(), 1 + 24, "one row per hour of the one type: {out}");
    let busy = rows.iter().filter(|r| !r.contains(",echo,0,")).count();
    assert!(busy >= 2, "the header and the benchmark's hour: {out}");
    let report = dir.path().join("report.html");
    let (ok, _, err) = run(&["analytics", "--days", "1", "--format", "html", "--out", report.to_str().unwrap()]);
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing fetched from a network");
    crate::common::browser::check_report(&report, "analytics-report.png");
}
