//! `GET /api/v1/analytics` as a function: the caller's tenant's windowed statistics, anomalies and cost
//! (`metrics:read`).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::analytics::ANALYTICS])
}
