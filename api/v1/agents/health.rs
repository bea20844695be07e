//! `GET /api/v1/agents/health` as a function: every agent's latest report (admin key).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::agent_health::AGENTS_HEALTH])
}
