//! `cloudagent deploy aws|vercel`: the commands a deployment takes, printed in full (nothing hidden), after
//! checking that the tools and secrets they need are there; `--run` runs them. Secrets are shown as the
//! variables they come from, never their values.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Platform {
    /// AWS Lambda through SAM (`template.yaml`).
    Aws,
    /// Vercel (`vercel.json`).
    Vercel,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    platform: Platform,
    /// prod or staging: which secrets (`PROD_…`, `STAGING_…`) and, on AWS, the stack's `Stage`.
    #[arg(long, default_value = "prod", value_parser = ["prod", "staging"])]
    stage: String,
    /// The CloudFormation stack (AWS).
    #[arg(long, default_value = "cloud-agent")]
    stack_name: String,
    /// The AWS region (default: the AWS CLI's configuration).
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
    /// Run the commands (otherwise they are only printed).
    #[arg(long)]
    run: bool,
}

/// One command: the program and its arguments, where `Secret(var)` stands for the value of `$var`.
#[derive(Debug)]
enum Arg {
    Plain(String),
    /// `NAME=$VAR`: passed with the variable's value, printed with its name.
    Secret {
        name: &'static str,
        var: String,
    },
}

struct Step {
    program: &'static str,
    args: Vec<Arg>,
}

impl Step {
    fn new(program: &'static str, args: &[&str]) -> Self {
        Self { program, args: args.iter().map(|a| Arg::Plain((*a).to_owned())).collect() }
    }

    fn shown(&self) -> String {
        let mut line = self.program.to_owned();
        for arg in &self.args {
            line.push(' ');
            match arg {
                Arg::Plain(text) => line.push_str(text),
                Arg::Secret { name, var } => {
                    line.push_str(name);
                    line.push_str("=$");
                    line.push_str(var);
                }
            }
        }
        line
    }
}

/// A check before deploying: what was looked for, whether it is there, what to do if not.
struct Check {
    what: String,
    ok: bool,
    fix: String,
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    path.is_file()
}

fn tool(program: &str, fix: &str) -> Check {
    Check { what: format!("{program} on PATH"), ok: on_path(program).is_some(), fix: fix.to_owned() }
}

fn secret(var: &str) -> Check {
    let length = std::env::var(var).map_or(0, |v| v.len());
    Check {
        what: format!("${var} set (at least 32 bytes)"),
        ok: length >= 32,
        fix: format!("export {var}=$(openssl rand -hex 32)   # keep it: tokens and agent credentials depend on it"),
    }
}

fn plan(args: &DeployArgs) -> (Vec<Check>, Vec<Step>, Vec<String>) {
    let upper = args.stage.to_uppercase();
    match args.platform {
        Platform::Aws => {
            let checks = vec![
                tool("sam", "install the AWS SAM CLI: pip install aws-sam-cli"),
                tool("cargo-lambda", "install cargo-lambda: pip install cargo-lambda (or cargo install cargo-lambda)"),
                secret(&format!("{upper}_AGENT_SECRET")),
                secret(&format!("{upper}_JWT_SECRET")),
            ];
            let mut deploy = Step::new(
                "sam",
                &["deploy", "--stack-name", &args.stack_name, "--capabilities", "CAPABILITY_IAM", "--resolve-s3"],
            );
            if let Some(region) = &args.region {
                deploy.args.extend([Arg::Plain("--region".into()), Arg::Plain(region.clone())]);
            }
            deploy.args.push(Arg::Plain("--parameter-overrides".into()));
            let stage = if args.stage == "prod" { "production" } else { "staging" };
            deploy.args.push(Arg::Plain(format!("Stage={stage}")));
            deploy.args.push(Arg::Secret { name: "AgentSecret", var: format!("{upper}_AGENT_SECRET") });
            deploy.args.push(Arg::Secret { name: "JwtSecret", var: format!("{upper}_JWT_SECRET") });
            (checks, vec![Step::new("sam", &["build"]), deploy], Vec::new())
        }
        Platform::Vercel => {
            let checks = vec![tool("vercel", "install the Vercel CLI: npm install --global vercel")];
            let step = if args.stage == "prod" {
                Step::new("vercel", &["deploy", "--prod"])
            } else {
                Step::new("vercel", &["deploy"])
            };
            let notes = vec![format!(
                "the Vercel project needs {upper}_AGENT_SECRET, {upper}_JWT_SECRET, TABLE_NAME, AWS_REGION and AWS \
                 credentials limited to the table (vercel env add NAME {})",
                if args.stage == "prod" { "production" } else { "preview" }
            )];
            (checks, vec![step], notes)
        }
    }
}

pub(crate) fn deploy(args: &DeployArgs) -> anyhow::Result<()> {
    let (checks, steps, notes) = plan(args);
    let mut missing = 0;
    for check in &checks {
        if check.ok {
            println!("ok       {}", check.what);
        } else {
            missing += 1;
            println!("missing  {}  ->  {}", check.what, check.fix);
        }
    }
    for note in &notes {
        println!("note     {note}");
    }
    println!("{}:", if args.run { "running" } else { "would run (add --run to run it)" });
    for step in &steps {
        println!("  {}", step.shown());
    }
    if missing > 0 {
        anyhow::bail!("{missing} check(s) failed: fix them (see above), then run `cloudagent deploy` again");
    }
    if !args.run {
        return Ok(());
    }
    let root = workspace_root()?;
    for step in &steps {
        let mut command = std::process::Command::new(step.program);
        command.current_dir(&root);
        for arg in &step.args {
            match arg {
                Arg::Plain(text) => command.arg(text),
                Arg::Secret { name, var } => command.arg(format!("{name}={}", std::env::var(var).unwrap_or_default())),
            };
        }
        eprintln!("cloudagent: {}", step.shown());
        let status = command.status().map_err(|e| anyhow::anyhow!("cannot start {}: {e}", step.program))?;
        anyhow::ensure!(status.success(), "`{}` failed ({status}); nothing after it was run", step.shown());
    }
    Ok(())
}

/// The directory with template.yaml and vercel.json: the current one or one above it.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let start = std::env::current_dir()?;
    start
        .ancestors()
        .find(|dir| dir.join("template.yaml").is_file() && dir.join("vercel.json").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("run it in the Cloud Agent checkout (no template.yaml and vercel.json here)"))
}
