//! `DELETE /api/v1/keys/{key_id}` as a function: revoke an API key (`key:manage`).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::keys::KEY_REVOKE])
}
