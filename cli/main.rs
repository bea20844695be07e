//! `cloudagent`: run Cloud Agent locally and manage its table.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cloud_agent::config::{Config, Environment, Secret, SecretString};
use cloud_agent::features::context::UserContext;
use cloud_agent::features::tokens::credentials::{self, AgentId};
use cloud_agent::ids::{ProgressTaskId, UserId};
use cloud_agent::state::AppState;
use cloud_agent::store::dynamo::{DynamoConfig, DynamoStore};

mod analytics;
mod benchmark;
mod deploy;
mod docs;
mod export;
mod monitor;
mod operator;
mod profile;
mod report;
mod smoke;
mod status;
mod style;
mod tasks;
use cloud_agent_sdk::{
    AgentSecret, ProgressReporter, ProgressUpdate, ReporterOptions, TaskStatus, TokenManager, TokenManagerOptions,
};

#[derive(Debug, Parser)]
#[command(name = "cloudagent", version, about = "Cloud Agent: the control plane for fleets of software agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every route on one port (the embedded store by default: no cloud needed).
    Serve(ServeArgs),
    /// Print every route as JSON lines: binary, file, path, methods (for scripts and benchmarks).
    Routes,
    /// Print the OpenAPI document the code describes (regenerates `shared/openapi.json`, which the route serves).
    Openapi,
    /// Agent tools: create an agent, log in, get a fresh access token (these use the SDK's token manager).
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// User contexts that agents read.
    Context {
        #[command(subcommand)]
        command: ContextCommand,
    },
    /// Agents over the admin API of a running server or deployment (no store access needed).
    Agents {
        #[command(subcommand)]
        command: operator::AgentsCommand,
    },
    /// Operators' API keys, over the admin API of a running server or deployment.
    Keys {
        #[command(subcommand)]
        command: operator::KeysCommand,
    },
    /// The audit trail, over the API (`audit:read`).
    Audit(operator::AuditArgs),
    /// Delegate one task (`POST /v3/tasks`); prints the task (with --async --wait, once it has finished).
    Delegate(tasks::DelegateArgs),
    /// Delegate up to ten tasks at once, run concurrently (`POST /api/batch`).
    Batch(tasks::BatchArgs),
    /// The tenant's tasks: list, get, wait, cancel; the handlers' capabilities; task metrics.
    Tasks {
        #[command(subcommand)]
        command: tasks::TasksCommand,
    },
    /// Write a profile (a deployment's URL and where its key comes from) for the operator commands.
    ///
    /// Example: cloudagent init --profile prod --url https://agents.example.com --key-env CLOUD_AGENT_PROD_KEY
    Init(InitArgs),
    /// One screen about a deployment: health and version, checks, breakers, queue, task outcomes; exits
    /// non-zero when it is unhealthy.
    ///
    /// Example: cloudagent status --profile prod
    Status(status::StatusArgs),
    /// Smoke-tests a deployment as a user would: health, the OpenAPI document, an agent's token round trip, a
    /// task's round trip, a webhook verified with the key's secret; one line per check, non-zero exit on a failure.
    ///
    /// Example: cloudagent test --profile staging
    Test(smoke::TestArgs),
    /// Load through the SDK: N requests from C concurrent callers; throughput, latency percentiles (HDR
    /// histogram), errors by kind.
    ///
    /// Example: cloudagent benchmark --concurrency 16 --requests 2000 --type echo
    Benchmark(benchmark::BenchmarkArgs),
    /// The last N days of the audit trail or the tenant's tasks, as JSON lines or CSV, streamed page by page.
    ///
    /// Example: cloudagent export tasks --days 30 --format csv > tasks.csv
    Export(export::ExportArgs),
    /// The tenant's analytics over the last N days: per task type outcomes, throughput and duration percentiles,
    /// anomalies and a cost estimate — as JSON, CSV, or one HTML report with charts.
    ///
    /// Example: cloudagent analytics --days 7 --format html --out report.html
    Analytics(analytics::AnalyticsArgs),
    /// A live dashboard of a deployment in the terminal, read from its routes every --interval: request and error
    /// rates, latency percentiles, breakers, health checks, the queue, recent failures. Keys: 1-6 zoom a panel,
    /// 0 all, tab next, r read now, q quit.
    ///
    /// Example: cloudagent monitor --profile prod
    Monitor(monitor::MonitorArgs),
    /// The deployment's OpenAPI document: its URL and one line per operation (`--json`: the document).
    Docs(docs::DocsArgs),
    /// Print the commands that deploy to AWS (SAM) or Vercel after checking tools and secrets; `--run` runs them.
    ///
    /// Example: cloudagent deploy aws --stage prod --stack-name cloud-agent
    Deploy(deploy::DeployArgs),
    /// Manage the DynamoDB table.
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The profile's name (operator commands take `--profile NAME`).
    #[arg(long, default_value = "default")]
    profile: String,
    /// The deployment's base URL; repeat for several endpoints of one deployment. Without it, init asks for
    /// what it needs on standard input.
    #[arg(long = "url")]
    urls: Vec<String>,
    /// Read the key from this environment variable when a command runs.
    #[arg(long, conflicts_with = "key_file")]
    key_env: Option<String>,
    /// Read the key from this file (keep it mode 0600).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Read the signing secret (`ca_sig_…`) of a key that requires signed requests from this variable.
    #[arg(long)]
    signing_secret_env: Option<String>,
    /// Make it the profile commands use when they name none.
    #[arg(long)]
    default: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StoreKind {
    Embedded,
    Dynamodb,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[arg(long, default_value_t = 3000, env = "PORT")]
    port: u16,
    /// Address to bind; loopback by default so a laptop does not expose the API.
    #[arg(long, default_value = "127.0.0.1", env = "CLOUD_AGENT_BIND")]
    bind: IpAddr,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Register an agent in the store and print its secret (shown once; only a keyed hash is stored).
    /// With the embedded store, run it while `cloudagent serve` is stopped (the file has one owner).
    Create {
        #[arg(long)]
        id: String,
        /// The user the agent works for.
        #[arg(long, default_value = "local-user")]
        owner: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable an agent: its secret stops working and so does every refresh token it holds (access tokens
    /// already issued expire within their lifetime).
    Disable {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give an agent a new secret (printed once); the old secret and every refresh token issued with it stop
    /// working.
    RotateSecret {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Log in with an agent credential and save the session (0600) for `cloudagent agent token`.
    Login {
        #[arg(long, default_value = "http://127.0.0.1:3000", env = "CLOUD_AGENT_URL")]
        url: String,
        #[arg(long, env = "CLOUD_AGENT_AGENT_ID")]
        id: String,
        #[arg(long, env = "CLOUD_AGENT_AGENT_SECRET", hide_env_values = true)]
        secret: String,
        #[arg(long, default_value = ".cloudagent/agent-session.json")]
        session: PathBuf,
    },
    /// Print an access token valid for at least the refresh margin, rotating the saved refresh token.
    Token {
        #[arg(long, default_value = ".cloudagent/agent-session.json")]
        session: PathBuf,
    },
    /// Report one progress update for a task (through the SDK's batching reporter).
    Progress {
        #[arg(long)]
        task: String,
        /// 0-100.
        #[arg(long)]
        progress: f64,
        #[arg(long, value_enum, default_value_t = StatusArg::Running)]
        status: StatusArg,
        #[arg(long)]
        message: Option<String>,
        #[arg(long, default_value = ".cloudagent/agent-session.json")]
        session: PathBuf,
    },
    /// Run a fake workload: N tasks stepping from 0 to 100%, reporting progress as a real agent would.
    Simulate {
        #[arg(long, default_value_t = 5)]
        tasks: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Pause between steps of one task, in milliseconds.
        #[arg(long, default_value_t = 200)]
        step_ms: u64,
        #[arg(long, default_value = ".cloudagent/agent-session.json")]
        session: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<StatusArg> for TaskStatus {
    fn from(value: StatusArg) -> Self {
        match value {
            StatusArg::Queued => Self::Queued,
            StatusArg::Running => Self::Running,
            StatusArg::Succeeded => Self::Succeeded,
            StatusArg::Failed => Self::Failed,
            StatusArg::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ContextCommand {
    /// Store a user's context (JSON with profile, preferences, permissions) directly in the store.
    /// With the embedded store, run it while `cloudagent serve` is stopped (the file has one owner).
    Set {
        #[arg(long)]
        user: String,
        /// JSON file; `-` reads standard input.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded, env = "CLOUD_AGENT_STORE")]
    store: StoreKind,
    #[arg(long, default_value = ".cloudagent", env = "CLOUD_AGENT_DATA_DIR")]
    data_dir: PathBuf,
}

/// What `agent login` saves. The secret and the token print as `[redacted]`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Session {
    url: String,
    agent_id: String,
    agent_secret: SecretString,
    refresh_token: SecretString,
}

#[derive(Debug, Subcommand)]
enum TableCommand {
    /// Create the table (same definition as template.yaml) and enable TTL on `expires_at`.
    Create(TableArgs),
}

#[derive(Debug, clap::Args)]
struct TableArgs {
    #[arg(long, default_value = cloud_agent::config::DEFAULT_TABLE, env = "TABLE_NAME")]
    table: String,
    /// DynamoDB endpoint, e.g. http://127.0.0.1:8000 for DynamoDB Local.
    #[arg(long, env = "DYNAMODB_ENDPOINT")]
    endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The dashboard owns the terminal: a log line on stderr would tear its frame.
    if !matches!(cli.command, Command::Monitor(_)) {
        cloud_agent::telemetry::init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloudagent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudagent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Init(args) => init(args),
        Command::Docs(args) => docs::docs(args).await,
        Command::Status(args) => status::status(args).await,
        Command::Test(args) => smoke::test(args).await,
        Command::Benchmark(args) => benchmark::benchmark(args).await,
        Command::Export(args) => export::export(args).await,
        Command::Analytics(args) => analytics::analytics(args).await,
        Command::Monitor(args) => monitor::monitor(args).await,
        Command::Deploy(args) => deploy::deploy(&args),
        Command::Routes => {
            for route in cloud_agent::ROUTES.iter() {
                let methods: Vec<&str> = route.methods.iter().map(http_method_name).collect();
                let line = serde_json::json!({
                    "binary": route.binary, "file": route.file, "path": route.path, "methods": methods,
                    "permissions": route
                        .methods
                        .iter()
                        .filter_map(|m| Some((m.as_str(), route.access.permission_for(m)?.as_str())))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                    "dynamodb_actions": route.granted_actions(),
                });
                println!("{line}");
            }
            Ok(())
        }
        Command::Openapi => {
            print!("{}", cloud_agent::app::generate_openapi_document(&cloud_agent_functions::everything()));
            Ok(())
        }
        Command::Agent { command } => Box::pin(agent(command)).await,
        Command::Agents { command } => operator::agents(command).await,
        Command::Keys { command } => operator::keys(command).await,
        Command::Audit(args) => operator::audit(args).await,
        Command::Delegate(args) => tasks::delegate(args).await,
        Command::Batch(args) => tasks::batch(args).await,
        Command::Tasks { command } => tasks::tasks(command).await,
        Command::Context { command: ContextCommand::Set { user, file, store } } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)?
            };
            let context: UserContext = serde_json::from_str(&text)?;
            let state = AppState::from_config(config_with_store(&store)?).await?;
            cloud_agent::features::context::save(state.store(), &UserId::parse(&user)?, &context).await?;
            println!("stored the context of {user}");
            Ok(())
        }
        Command::Table { command: TableCommand::Create(args) } => {
            let store = DynamoStore::connect(&DynamoConfig {
                table: args.table.clone(),
                endpoint: args.endpoint,
                region: args.region,
            })
            .await;
            if store.create_table().await? {
                println!("created table {} (TTL on expires_at)", args.table);
            } else {
                println!("table {} already exists", args.table);
            }
            Ok(())
        }
    }
}

/// Configuration from the environment, with the store chosen by flags (which clap already fills from
/// `CLOUD_AGENT_STORE` and `CLOUD_AGENT_DATA_DIR`): read once, through the same rules as every function.
fn config_with_store(args: &StoreArgs) -> anyhow::Result<Config> {
    let store = match args.store {
        StoreKind::Embedded => "embedded",
        StoreKind::Dynamodb => "dynamodb",
    };
    let data_dir = args.data_dir.to_string_lossy().into_owned();
    Ok(Config::from_lookup(&|name| match name {
        "CLOUD_AGENT_STORE" => Some(store.to_owned()),
        "CLOUD_AGENT_DATA_DIR" => Some(data_dir.clone()),
        _ => std::env::var(name).ok().filter(|v| !v.is_empty()),
    })?)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = config_with_store(&args.store)?;
    // One process runs every route and the worker: every task type, runnable.
    let types = cloud_agent::features::tasks::types::TaskTypes::new(cloud_agent_functions::everything());
    let state = AppState::from_config(config).await?.provide(types);
    let addr = SocketAddr::new(args.bind, args.port);
    // Bound before anything is printed: once a line below appears, the server accepts connections.
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    eprintln!("cloudagent: serving on http://{addr} (store: {})", state.store().backend());
    if state.config().environment == Environment::Development {
        // A ready-made agent for trying things out; never in staging or production.
        let secret = demo_secret(&state.config().secrets.agent);
        let id = AgentId::parse(DEMO_AGENT)?;
        let pepper = &state.config().secrets.agent;
        // Registered once: re-registering on every start would end the sessions it already has.
        if credentials::authenticate(state.store(), pepper, &id, &secret).await.is_err() {
            let owner = UserId::parse("local-user")?;
            credentials::register(state.store(), pepper, &id, &owner, &secret).await?;
        }
        eprintln!(
            "cloudagent: development demo agent ready:\n  cloudagent agent login --url http://{addr} --id {DEMO_AGENT} --secret {secret}"
        );
        if let Some(admin) =
            state.config().secrets.admin.as_ref().filter(|_| matches!(args.store.store, StoreKind::Embedded))
        {
            match write_local_profile(addr, &args.store.data_dir, admin) {
                Ok(said) => eprintln!("cloudagent: {said}"),
                Err(e) => eprintln!("cloudagent: the `local` profile was not written ({e:#}); pass --key instead"),
            }
        }
    }
    cloud_agent::app::serve(state, listener).await?;
    Ok(())
}

/// Asks one question on stderr and reads the answer (trimmed) from stdin; `default` when the answer is empty.
fn ask(question: &str, default: Option<&str>) -> anyhow::Result<String> {
    use std::io::{BufRead as _, Write as _};
    match default {
        Some(default) => eprint!("{question} [{default}]: "),
        None => eprint!("{question}: "),
    }
    std::io::stderr().flush()?;
    let mut answer = String::new();
    anyhow::ensure!(
        std::io::stdin().lock().read_line(&mut answer)? > 0,
        "no answer on standard input; pass the flags instead (cloudagent init --help)"
    );
    let answer = answer.trim();
    Ok(if answer.is_empty() { default.unwrap_or_default().to_owned() } else { answer.to_owned() })
}

/// Without `--url`, asks for the profile's parts: name, endpoints, where the key comes from, default or not.
fn ask_init(mut args: InitArgs) -> anyhow::Result<InitArgs> {
    args.profile = ask("Profile name", Some(&args.profile))?;
    let urls = ask("Deployment URL(s), space-separated", Some("http://127.0.0.1:3000"))?;
    args.urls = urls.split_whitespace().map(str::to_owned).collect();
    if args.key_env.is_none() && args.key_file.is_none() {
        let source =
            ask("Where the key comes from: an environment variable's name, or a file's path (with a /)", None)?;
        if source.contains('/') {
            args.key_file = Some(source.into());
        } else if !source.is_empty() {
            args.key_env = Some(source);
        }
    }
    if !args.default {
        args.default = matches!(ask("Make it the default profile? (y/n)", Some("n"))?.as_str(), "y" | "yes" | "Y");
    }
    Ok(args)
}

/// `cloudagent init`: adds or replaces one profile, keeping the others.
fn init(args: InitArgs) -> anyhow::Result<()> {
    let args = if args.urls.is_empty() { ask_init(args)? } else { args };
    anyhow::ensure!(!args.urls.is_empty(), "a profile needs at least one --url");
    for url in &args.urls {
        let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("--url {url}: {e} (an http(s) base URL)"))?;
        anyhow::ensure!(matches!(parsed.scheme(), "http" | "https"), "--url {url}: use http:// or https://");
    }
    if args.key_env.is_none() && args.key_file.is_none() {
        anyhow::bail!(
            "say where the key comes from: --key-env VAR (an environment variable) or --key-file PATH (a file, mode \
             0600); the file keeps no key itself"
        );
    }
    let key_file = match args.key_file {
        Some(file) => Some(std::path::absolute(&file)?),
        None => None,
    };
    let path = profile::path().ok_or_else(|| anyhow::anyhow!("no HOME or XDG_CONFIG_HOME to keep profiles in"))?;
    let entry = profile::Profile {
        endpoints: args.urls,
        key_env: args.key_env,
        key_file,
        signing_secret_env: args.signing_secret_env,
    };
    profile::upsert(&path, &args.profile, entry)?;
    if args.default {
        let mut file = profile::load(&path)?;
        file.default_profile = Some(args.profile.clone());
        profile::save(&path, &file)?;
    }
    eprintln!("cloudagent: profile {:?} written to {}", args.profile, path.display());
    Ok(())
}

/// In development: the `local` profile, so operator commands work against this server with no setup. The key
/// is the development admin key (`DEV_ADMIN_KEY`, or the one generated into the data directory).
fn write_local_profile(addr: SocketAddr, data_dir: &std::path::Path, admin: &Secret) -> anyhow::Result<String> {
    let Some(path) = profile::path() else {
        return Ok("no HOME or XDG_CONFIG_HOME: pass --key to operator commands".into());
    };
    let (key_env, key_file) = if std::env::var_os("DEV_ADMIN_KEY").is_some_and(|v| !v.is_empty()) {
        (Some("DEV_ADMIN_KEY".to_owned()), None)
    } else {
        let file = std::path::absolute(data_dir.join(LOCAL_ADMIN_KEY_FILE))?;
        profile::write_key_file(&file, &String::from_utf8_lossy(admin.expose()))?;
        (None, Some(file))
    };
    let local =
        profile::Profile { endpoints: vec![format!("http://{addr}")], key_env, key_file, signing_secret_env: None };
    profile::upsert(&path, profile::LOCAL, local)?;
    Ok(format!(
        "operator profile `{}` (the development admin key) written to {}; try: cloudagent tasks capabilities",
        profile::LOCAL,
        path.display()
    ))
}

const DEMO_AGENT: &str = "demo-agent";
/// The development admin key, alone in a file (mode 0600) in the data directory, for the `local` profile.
const LOCAL_ADMIN_KEY_FILE: &str = "local-admin-key";

/// Stable for a given agent pepper, so a restart with the same DEV_AGENT_SECRET keeps the demo login working.
fn demo_secret(pepper: &Secret) -> String {
    use base64::Engine as _;
    let mac = pepper.mac(b"cloud-agent demo agent");
    format!("{}{}", credentials::SECRET_PREFIX, base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac))
}

async fn agent(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Create { id, owner, store } => {
            let config = config_with_store(&store)?;
            let id = AgentId::parse(&id)?;
            let owner = UserId::parse(&owner)?;
            let state = AppState::from_config(config).await?;
            let secret = credentials::generate_secret();
            credentials::register(state.store(), &state.config().secrets.agent, &id, &owner, &secret).await?;
            println!("agent_id: {id}\nagent_secret: {secret}\n(store the secret now: only a keyed hash is kept)");
            Ok(())
        }
        AgentCommand::Disable { id, store } => {
            let id = AgentId::parse(&id)?;
            let state = AppState::from_config(config_with_store(&store)?).await?;
            if !credentials::disable(state.store(), &id).await? {
                anyhow::bail!("no agent {id}");
            }
            println!("disabled {id}: its secret and refresh tokens no longer work");
            Ok(())
        }
        AgentCommand::RotateSecret { id, store } => {
            let id = AgentId::parse(&id)?;
            let state = AppState::from_config(config_with_store(&store)?).await?;
            let Some(secret) = credentials::rotate_secret(state.store(), &state.config().secrets.agent, &id).await?
            else {
                anyhow::bail!("no agent {id}");
            };
            println!("agent_id: {id}\nagent_secret: {secret}\n(the old secret and its refresh tokens no longer work)");
            Ok(())
        }
        AgentCommand::Login { url, id, secret, session } => {
            let manager =
                TokenManager::login(&url, &id, AgentSecret::new(secret.clone()), TokenManagerOptions::default())
                    .await?;
            let saved = Session {
                url,
                agent_id: id,
                agent_secret: secret.into(),
                refresh_token: manager.refresh_token().await.into(),
            };
            save_session(&session, &saved)?;
            eprintln!("logged in as {}; session saved to {}", saved.agent_id, session.display());
            Ok(())
        }
        AgentCommand::Token { session } => {
            let (manager, saved) = resume(&session).await?;
            let token = manager.token().await?;
            save_session(&session, &Session { refresh_token: manager.refresh_token().await.into(), ..saved })?;
            println!("{token}");
            Ok(())
        }
        AgentCommand::Progress { task, progress, status, message, session } => {
            let (manager, saved) = resume(&session).await?;
            let reporter = ProgressReporter::new(&saved.url, manager.clone(), ReporterOptions::default());
            let update = ProgressUpdate {
                task_id: ProgressTaskId::parse(&task)?.to_string(),
                progress,
                status: status.into(),
                message,
                metrics: std::collections::BTreeMap::new(),
                timestamp: now_rfc3339(),
                seq: 0,
            };
            let outcome = reporter.report(update).await?;
            reporter.shutdown().await;
            save_session(&session, &Session { refresh_token: manager.refresh_token().await.into(), ..saved })?;
            match outcome.await? {
                Ok(()) => {
                    println!("stored");
                    Ok(())
                }
                Err(e) => anyhow::bail!("not stored: {e}"),
            }
        }
        AgentCommand::Simulate { tasks, steps, step_ms, session } => {
            let (manager, saved) = resume(&session).await?;
            let reporter = ProgressReporter::new(&saved.url, manager.clone(), ReporterOptions::default());
            let run = cloud_agent::ids::new_id()[..6].to_owned();
            let started = std::time::Instant::now();
            let mut outcomes = Vec::new();
            for step in 0..steps.max(1) {
                for task in 0..tasks {
                    let last = step + 1 == steps.max(1);
                    let update = ProgressUpdate {
                        task_id: format!("sim-{run}-{task}"),
                        progress: if steps <= 1 { 100.0 } else { step as f64 * 100.0 / (steps - 1) as f64 },
                        status: if last { TaskStatus::Succeeded } else { TaskStatus::Running },
                        message: Some(format!("step {}/{}", step + 1, steps)),
                        metrics: std::collections::BTreeMap::from([("step".to_owned(), step as f64)]),
                        timestamp: now_rfc3339(),
                        seq: step as u64,
                    };
                    outcomes.push(reporter.report(update).await?);
                }
                tokio::time::sleep(std::time::Duration::from_millis(step_ms)).await;
            }
            // Read after shutdown: the last batches are only posted by the shutdown flush.
            let stats = reporter.stats();
            reporter.shutdown().await;
            let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
            let (mut stored, mut lost) = (0, 0);
            for outcome in outcomes {
                if matches!(outcome.await, Ok(Ok(()))) { stored += 1 } else { lost += 1 }
            }
            save_session(&session, &Session { refresh_token: manager.refresh_token().await.into(), ..saved })?;
            println!(
                "simulated {tasks} tasks x {steps} steps: {stored} updates stored, {lost} not, in {batches} batches, {:.1} s (tasks sim-{run}-*)",
                started.elapsed().as_secs_f64()
            );
            if lost > 0 {
                anyhow::bail!("{lost} updates were not stored");
            }
            Ok(())
        }
    }
}

/// Loads the saved session and resumes it with the SDK.
async fn resume(path: &std::path::Path) -> anyhow::Result<(TokenManager, Session)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run `cloudagent agent login` first)", path.display()))?;
    let saved: Session = serde_json::from_str(&text)?;
    let manager = TokenManager::resume(
        &saved.url,
        &saved.agent_id,
        AgentSecret::new(saved.agent_secret.expose()),
        saved.refresh_token.expose(),
        TokenManagerOptions::default(),
    )
    .await?;
    Ok((manager, saved))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Writes the session readable by its owner only: it holds the agent secret and a refresh token. It is written
/// to a fresh 0600 file and renamed over the old one, so the mode holds even when an older file was more open,
/// and a crash never leaves half a session.
fn save_session(path: &std::path::Path, session: &Session) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("session");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    #[cfg(unix)]
    std::fs::set_permissions(&temp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(serde_json::to_string_pretty(session)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

fn http_method_name(method: &cloud_agent::route::Method) -> &str {
    method.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_never_prints_its_secrets() {
        let session = Session {
            url: "http://127.0.0.1:3000".into(),
            agent_id: "a".into(),
            agent_secret: SecretString::new("cas_TOPSECRET"),
            refresh_token: SecretString::new("eyJ.REFRESH.TOKEN"),
        };
        let printed = format!("{session:?}");
        assert!(!printed.contains("TOPSECRET") && !printed.contains("REFRESH"), "{printed}");
        let saved = serde_json::to_string(&session).unwrap();
        assert!(saved.contains("cas_TOPSECRET"), "but the file keeps them");
    }

    #[cfg(unix)]
    #[test]
    fn saving_over_a_readable_session_file_makes_it_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-session.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let session = Session {
            url: "u".into(),
            agent_id: "a".into(),
            agent_secret: SecretString::new("s"),
            refresh_token: SecretString::new("r"),
        };
        save_session(&path, &session).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back: Session = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.refresh_token.expose(), "r");
    }
}
