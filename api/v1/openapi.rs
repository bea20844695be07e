//! `GET /api/v1/openapi.json` as a function.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::app::OPENAPI])
}
