//! `GET|POST /v3/tasks` as a function: list and create tasks (task:read, task:create).
fn main() -> std::process::ExitCode {
    cloud_agent_functions::run_creating(&[cloud_agent::features::tasks::TASKS])
}
