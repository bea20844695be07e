//! The task worker: invoked by SQS on AWS with batches of queued work (not an HTTP route; Vercel ignores files
//! under `api/_*`, and uses the cron drain instead).
fn main() -> std::process::ExitCode {
    cloud_agent_functions::run_worker()
}
