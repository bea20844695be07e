//! `GET /health` as a function (Vercel: /health is rewritten here; Lambda: the HealthFunction).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::health::HEALTH])
}
