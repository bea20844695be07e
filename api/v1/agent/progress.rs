//! `POST /api/v1/agent/progress` as a function: batched progress updates.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::progress::PROGRESS])
}
