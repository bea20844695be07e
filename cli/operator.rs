//! Operator commands over HTTP: API keys and the audit trail, against a running `cloudagent serve` or a
//! deployment (`--url`), authenticated with an API key or the bootstrap admin key (`--key`).

use clap::Subcommand;
use serde_json::{Value, json};

/// Where and as whom: flags (or their environment variables) first, else a profile (`--profile`, the default
/// profile, or `local`, which `cloudagent serve` writes in development).
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The API's base URL (default: the profile's, else http://127.0.0.1:3000).
    #[arg(long, env = "CLOUD_AGENT_URL")]
    url: Option<String>,
    /// An API key with the needed permission, or the bootstrap admin key (default: the profile's).
    #[arg(long = "key", env = "CLOUD_AGENT_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The key's signing secret (`ca_sig_…`), for keys whose requests must be signed.
    #[arg(long, env = "CLOUD_AGENT_SIGNING_SECRET", hide_env_values = true)]
    signing_secret: Option<String>,
    /// A profile of `cloudagent init` (see `$XDG_CONFIG_HOME/cloudagent/config.toml`).
    #[arg(long, env = "CLOUD_AGENT_PROFILE")]
    profile: Option<String>,
    /// Built on first use, then shared by every call of the command (connections, retry budget, breakers).
    #[arg(skip)]
    client: std::sync::OnceLock<cloud_agent_sdk::client::Client>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key; its text is printed once (store it now).
    Create {
        #[arg(long)]
        name: String,
        /// admin, operator, analyst or viewer.
        #[arg(long)]
        role: String,
        /// A configured rate-limit tier (default standard).
        #[arg(long)]
        rate: Option<String>,
        /// When the key stops working (RFC 3339).
        #[arg(long)]
        expires: Option<String>,
        /// off, optional or required.
        #[arg(long)]
        signing: Option<String>,
        /// Another tenant (bootstrap admin key only).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List the tenant's keys (never their text).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Replace a key; the old one keeps working for the grace period.
    Rotate {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a key now.
    Revoke {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentsCommand {
    /// Register an agent; its secret is printed once.
    Create {
        #[arg(long)]
        id: String,
        /// The user the agent works for.
        #[arg(long)]
        owner: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the tenant's agents.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Disable an agent: its secret and refresh tokens stop working.
    Disable {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Give an agent a new secret, printed once.
    Rotate {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) async fn agents(command: AgentsCommand) -> anyhow::Result<()> {
    match command {
        AgentsCommand::Create { id, owner, target } => {
            let body = json!({"agent_id": id, "owner": owner});
            let created = call(&target, reqwest::Method::POST, "/api/v1/agents", Some(body)).await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            eprintln!("cloudagent: this is the only time the secret is shown; store it now");
        }
        AgentsCommand::List { target } => print_all(&target, "/api/v1/agents", "agents").await?,
        AgentsCommand::Disable { id, target } => {
            call(&target, reqwest::Method::POST, &format!("/api/v1/agents/{id}/disable"), None).await?;
            eprintln!("cloudagent: disabled {id}");
        }
        AgentsCommand::Rotate { id, target } => {
            let rotated = call(&target, reqwest::Method::POST, &format!("/api/v1/agents/{id}/rotate"), None).await?;
            println!("{}", serde_json::to_string_pretty(&rotated)?);
            eprintln!("cloudagent: this is the only time the new secret is shown; the old one no longer works");
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Only this actor (`key:ca_live_…`, `agent:<id>`, `admin:bootstrap`).
    #[arg(long)]
    actor: Option<String>,
    /// Only this route template, e.g. /api/v1/keys.
    #[arg(long)]
    route: Option<String>,
    /// Not before (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Not after (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// Stop after this many records.
    #[arg(long, default_value_t = 100)]
    max: usize,
    #[command(flatten)]
    target: Target,
}

/// Sends a request through the SDK's client (retries with backoff and `Retry-After`, the retry budget, the
/// breaker) and returns its JSON body, or an error quoting the problem's status, title and detail. A POST is
/// retried only when its body carries an idempotency key.
pub(crate) async fn call(
    target: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let client = target.client()?;
    let keyed =
        body.as_ref().is_some_and(|b| !b["idempotency_key"].is_null() || !b["options"]["idempotency_key"].is_null());
    match client.send_json(method, path, body.as_ref(), keyed).await {
        Ok((_, value)) => Ok(value),
        Err(e) => match e.problem() {
            Some(problem) => anyhow::bail!("{} {e}", problem.status),
            None => Err(e.into()),
        },
    }
}

impl Target {
    /// The base URL this target names (flags, else the profile, else the local server).
    pub(crate) fn url(&self) -> anyhow::Result<String> {
        crate::profile::url(self.url.as_deref(), self.profile.as_deref())
    }

    /// The SDK's client for this target, with its key and signing secret.
    pub(crate) fn client(&self) -> anyhow::Result<cloud_agent_sdk::client::Client> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let client = self.builder()?.build()?;
        Ok(self.client.get_or_init(|| client).clone())
    }

    /// A builder for a client of this target (endpoints, key, signing secret), for a command with its own
    /// policies (the benchmark measures single attempts).
    pub(crate) fn builder(&self) -> anyhow::Result<cloud_agent_sdk::client::ClientBuilder> {
        let target = crate::profile::resolve(
            self.url.as_deref(),
            self.key.as_deref(),
            self.signing_secret.as_deref(),
            self.profile.as_deref(),
        )?;
        // Every endpoint of the profile: calls are spread over them and fail over between them.
        let endpoints = target.endpoints.iter().map(cloud_agent_sdk::client::EndpointConfig::new);
        let mut client = cloud_agent_sdk::client::Client::builder_for(endpoints).api_key(&target.key);
        if let Some(secret) = &target.signing_secret {
            client = client.signing_secret(secret);
        }
        Ok(client)
    }
}

/// Prints every item of a paged listing, one JSON line each, following `next_cursor` to the end.
async fn print_all(target: &Target, listing: &str, field: &str) -> anyhow::Result<()> {
    let mut path = listing.to_owned();
    loop {
        let page = call(target, reqwest::Method::GET, &path, None).await?;
        for item in page[field].as_array().into_iter().flatten() {
            println!("{item}");
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{listing}?cursor={}", urlencoding(cursor)),
            None => return Ok(()),
        }
    }
}

pub(crate) async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, role, rate, expires, signing, tenant, target } => {
            let mut body = json!({"name": name, "role": role});
            for (field, value) in [("tier", rate), ("expires_at", expires), ("signing", signing), ("tenant", tenant)] {
                if let Some(value) = value {
                    body[field] = Value::String(value);
                }
            }
            let created = call(&target, reqwest::Method::POST, "/api/v1/keys", Some(body)).await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            eprintln!("cloudagent: this is the only time the key is shown; store it now");
        }
        KeysCommand::List { target } => print_all(&target, "/api/v1/keys", "keys").await?,
        KeysCommand::Rotate { id, target } => {
            let created = call(&target, reqwest::Method::POST, &format!("/api/v1/keys/{id}/rotate"), None).await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            eprintln!("cloudagent: this is the only time the new key is shown; the old one works for the grace period");
        }
        KeysCommand::Revoke { id, target } => {
            call(&target, reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), None).await?;
            eprintln!("cloudagent: revoked {id}");
        }
    }
    Ok(())
}

pub(crate) async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let mut query: Vec<(&str, String)> = Vec::new();
    for (name, value) in [("actor", &args.actor), ("route", &args.route), ("from", &args.from), ("to", &args.to)] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    let encode = |pairs: &[(&str, String)]| {
        pairs.iter().map(|(k, v)| format!("{k}={}", urlencoding(v))).collect::<Vec<_>>().join("&")
    };
    let mut printed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut pairs = query.clone();
        if let Some(c) = &cursor {
            pairs.push(("cursor", c.clone()));
        }
        let page = call(&args.target, reqwest::Method::GET, &format!("/api/v1/audit?{}", encode(&pairs)), None).await?;
        for record in page["records"].as_array().into_iter().flatten() {
            if printed == args.max {
                return Ok(());
            }
            println!("{record}");
            printed += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(()),
        }
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(crate) fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
