//! `POST /api/delegate` as a function: delegate one task (v2, deprecated; task:create).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::tasks::DELEGATE])
}
