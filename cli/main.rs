//! `cloudagent`: run Cloud Agent locally and manage its table.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cloud_agent::config::{Config, StoreSettings};
use cloud_agent::state::AppState;
use cloud_agent::store::dynamo::{DynamoConfig, DynamoStore};

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
    /// Manage the DynamoDB table.
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
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
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded, env = "CLOUD_AGENT_STORE")]
    store: StoreKind,
    /// Where the embedded store keeps its file.
    #[arg(long, default_value = ".cloudagent", env = "CLOUD_AGENT_DATA_DIR")]
    data_dir: PathBuf,
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
    cloud_agent::telemetry::init();
    let cli = Cli::parse();
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
        Command::Routes => {
            for route in cloud_agent::ROUTES {
                let methods: Vec<&str> = route.methods.iter().map(http_method_name).collect();
                let line = serde_json::json!({
                    "binary": route.binary, "file": route.file, "path": route.path, "methods": methods,
                });
                println!("{line}");
            }
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    // Flags win over the environment's defaults for the store.
    config.store = match args.store {
        StoreKind::Embedded => StoreSettings::Embedded { data_dir: args.data_dir },
        StoreKind::Dynamodb => match config.store {
            dynamo @ StoreSettings::DynamoDb(_) => dynamo,
            StoreSettings::Embedded { .. } => StoreSettings::DynamoDb(DynamoConfig {
                table: std::env::var("TABLE_NAME").unwrap_or_else(|_| cloud_agent::config::DEFAULT_TABLE.into()),
                endpoint: std::env::var("DYNAMODB_ENDPOINT").ok(),
                region: std::env::var("AWS_REGION").ok(),
            }),
        },
    };
    let state = AppState::from_config(config).await?;
    let addr = SocketAddr::new(args.bind, args.port);
    eprintln!("cloudagent: serving on http://{addr} (store: {})", state.store().backend());
    cloud_agent::runtime::serve(state, addr).await?;
    Ok(())
}

fn http_method_name(method: &cloud_agent::routes::Method) -> &str {
    method.as_str()
}
