//! `GET /api/v1/audit` as a function: the caller's tenant's audit trail (`audit:read`).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::audit::AUDIT])
}
