//! `GET|POST /api/v1/keys` as a function: list and create API keys (`key:manage`).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::keys::KEYS])
}
