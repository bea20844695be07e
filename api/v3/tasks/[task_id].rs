//! `GET|DELETE /v3/tasks/{task_id}` as a function: read or cancel a task.
fn main() -> std::process::ExitCode {
    cloud_agent_functions::run_reading(&[cloud_agent::features::tasks::TASK])
}
