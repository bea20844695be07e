//! `GET /api/v1/agent/context` as a function: the user context, cached per instance.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::context::CONTEXT])
}
