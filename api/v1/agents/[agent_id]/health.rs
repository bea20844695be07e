//! `GET /api/v1/agents/{agent_id}/health` as a function: one agent's latest report (admin key).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::agent_health::AGENT_HEALTH_ONE])
}
