//! `GET /api/status` as a function: a task's status (v2, deprecated; task:read).
fn main() -> std::process::ExitCode {
    cloud_agent_functions::run_reading(&[cloud_agent::features::tasks::STATUS])
}
