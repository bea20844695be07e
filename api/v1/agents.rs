//! `GET|POST /api/v1/agents` as a function: list agents (`agent:read`), register one (`agent:manage`).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::agents::AGENTS])
}
