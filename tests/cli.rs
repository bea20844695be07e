//! `cloudagent agent login` / `agent token` against `cloudagent serve`, as a person would try them.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cloudagent(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudagent"));
    cmd.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("RUST_LOG", "error");
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
    let mut child = cloudagent(dir.path())
        .args(["serve", "--port", &port.to_string(), "--data-dir", "data"])
        .env("DEV_AGENT_SECRET", "a-development-pepper")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _server = Server(child);
    // serve prints the ready-to-paste login command for its demo agent.
    let login_line = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("agent login"))
        .expect("serve prints the demo agent's login command");
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
    assert!(String::from_utf8_lossy(&simulate.stdout).contains("12 updates stored, 0 not"));
    let token = String::from_utf8(cloudagent(dir.path()).args(["agent", "token"]).output().unwrap().stdout).unwrap();
    let client = reqwest::Client::new();
    let task: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/agent/progress/cli-task"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(task["progress"], 40.0);
    assert_eq!(task["message"], "half way");
    let context: serde_json::Value = client
        .get(format!("http://127.0.0.1:{port}/api/v1/agent/context"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
