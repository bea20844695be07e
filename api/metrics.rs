//! `GET /api/metrics` as a function: the tenant's task statistics (metrics:read).
fn main() -> std::process::ExitCode {
    cloud_agent_functions::run_reading(&[cloud_agent::features::tasks::METRICS])
}
