//! Running the `cloudagent` binary as a person would: a clean environment, a server killed when the test ends,
//! and its log lines collected as they come.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `cloudagent` in `dir` with an empty environment (only `PATH`): each test sets what it configures.
#[allow(clippy::option_env_unwrap, reason = "the benches include these helpers, and only tests get the binary")]
pub fn cloudagent(dir: &std::path::Path) -> Command {
    // option_env: the benches include these helpers too, and cargo names the binary only to integration tests.
    let binary = option_env!("CARGO_BIN_EXE_cloudagent").expect("cloudagent is built for the integration tests");
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// A child process that is killed and reaped when dropped, whatever the test's outcome.
#[derive(Debug)]
pub struct Child {
    process: std::process::Child,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Child {
    /// Stops the process and waits until every line it wrote has been collected.
    pub fn stop(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the line reader ends at the pipe's end");
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A process's stderr lines, read on their own thread as they are written.
#[derive(Debug, Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The first line matching `pred`, waiting for it up to `deadline` (generous: a cold machine is slow).
    pub fn wait_for(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + deadline;
        loop {
            if let Some(line) = self.0.lock().unwrap().iter().find(|l| pred(l)) {
                return line.clone();
            }
            assert!(Instant::now() < until, "no such line in: {:#?}", self.all());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Spawns `command` with stderr piped into [`Lines`].
pub fn spawn(mut command: Command) -> (Child, Lines) {
    let mut child = command.stderr(Stdio::piped()).spawn().expect("spawn cloudagent");
    let stderr = child.stderr.take().expect("stderr is piped");
    let lines = Lines::default();
    let sink = lines.0.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (Child { process: child, reader: Some(reader) }, lines)
}

/// `cloudagent serve <args>` on a free port with `command`'s configuration: returns once it accepts connections.
pub fn serve(mut command: Command, args: &[&str]) -> (Child, Lines, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    command.arg("serve").args(args).args(["--port", &port.to_string()]);
    let (child, lines) = spawn(command);
    lines.wait_for(Duration::from_mins(2), |l| l.contains("serving on"));
    (child, lines, format!("http://127.0.0.1:{port}"))
}
