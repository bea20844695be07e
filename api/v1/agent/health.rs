//! `POST /api/v1/agent/health` as a function: an agent reports its health.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::agent_health::AGENT_HEALTH])
}
