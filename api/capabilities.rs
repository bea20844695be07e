//! `GET /api/capabilities` as a function: the handlers and their input schemas (task:read).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::tasks::CAPABILITIES])
}
