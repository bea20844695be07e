//! `GET /api/v1/metrics` as a function: this instance's metrics (Prometheus text).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::platform::METRICS])
}
