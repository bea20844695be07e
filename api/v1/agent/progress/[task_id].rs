//! `GET /api/v1/agent/progress/{task_id}` as a function: a task's state and history.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::progress::PROGRESS_GET])
}
