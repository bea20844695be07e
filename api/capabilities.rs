//! `GET /api/capabilities` as a function: the handlers and their input schemas (task:read).
fn main() -> std::process::ExitCode {
    cloud_agent_functions::run_reading(&[cloud_agent::features::tasks::CAPABILITIES])
}
