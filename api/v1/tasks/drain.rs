//! `GET /api/v1/tasks/drain` as a function: the cron drain of queued work (Vercel; CRON_SECRET).
fn main() -> std::process::ExitCode {
    cloud_agent_functions::run_draining(&[cloud_agent::features::tasks::DRAIN])
}
