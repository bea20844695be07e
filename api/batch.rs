//! `POST /api/batch` as a function: up to ten tasks at once (v2, deprecated; task:create).
fn main() -> std::process::ExitCode {
    cloud_agent_functions::run_creating(&[cloud_agent::features::tasks::BATCH])
}
