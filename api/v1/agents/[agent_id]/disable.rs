//! `POST /api/v1/agents/{agent_id}/disable` as a function: disable an agent (`agent:manage`).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::agents::AGENT_DISABLE])
}
