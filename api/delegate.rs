//! `POST /api/delegate` as a function: delegate one task (v2, deprecated; task:create).
fn main() -> std::process::ExitCode {
    cloud_agent_functions::run_creating(&[cloud_agent::features::tasks::DELEGATE])
}
