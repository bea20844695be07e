//! `GET /health/ready` as a function: readiness.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::health::HEALTH_READY])
}
