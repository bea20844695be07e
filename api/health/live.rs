//! `GET /health/live` as a function: liveness.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::health::HEALTH_LIVE])
}
