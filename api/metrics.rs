//! `GET /api/metrics` as a function: the tenant's task statistics (metrics:read).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::tasks::METRICS])
}
