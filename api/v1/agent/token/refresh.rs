//! `POST /api/v1/agent/token/refresh` as a function: rotate a refresh token.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::tokens::TOKEN_REFRESH])
}
