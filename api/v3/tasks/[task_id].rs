//! `GET|DELETE /v3/tasks/{task_id}` as a function: read or cancel a task.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::tasks::TASK])
}
