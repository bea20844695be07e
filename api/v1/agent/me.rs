//! `GET /api/v1/agent/me` as a function: the calling agent.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::tokens::AGENT_ME])
}
