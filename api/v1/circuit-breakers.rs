//! `GET /api/v1/circuit-breakers` as a function: this instance's breakers.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::platform::BREAKERS])
}
