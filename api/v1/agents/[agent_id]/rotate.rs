//! `POST /api/v1/agents/{agent_id}/rotate` as a function: a new agent secret (`agent:manage`).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::agents::AGENT_ROTATE])
}
