//! `POST /api/v1/agent/token` as a function: exchange an agent credential for tokens.
fn main() -> std::process::ExitCode {
    cloud_agent::runtime::run_function(&[cloud_agent::features::tokens::TOKEN])
}
