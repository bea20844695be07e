//! `POST /api/v1/agent/token/revoke` as a function: revoke a token (RFC 7009).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::tokens::TOKEN_REVOKE])
}
