//! `PUT /api/v1/admin/users/{user_id}/context` as a function: set a user's context (admin key).
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::context::ADMIN_CONTEXT])
}
