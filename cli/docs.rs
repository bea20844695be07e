//! `cloudagent docs`: where a deployment's OpenAPI document is and what it offers, one line per operation (or
//! the document itself with `--json`), read from the deployment (the document route is public).

use serde_json::Value;

#[derive(Debug, clap::Args)]
pub(crate) struct DocsArgs {
    /// The API's base URL (default: the profile's, else http://127.0.0.1:3000).
    #[arg(long, env = "CLOUD_AGENT_URL")]
    url: Option<String>,
    /// A profile of `cloudagent init`.
    #[arg(long, env = "CLOUD_AGENT_PROFILE")]
    profile: Option<String>,
    /// Print the whole document (JSON) instead of the summary.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn docs(args: DocsArgs) -> anyhow::Result<()> {
    let base = crate::profile::url(args.url.as_deref(), args.profile.as_deref())?;
    let url = format!("{}/api/v1/openapi.json", base.trim_end_matches('/'));
    let response = reqwest::get(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e} (is the server running? `cloudagent serve`)"))?;
    anyhow::ensure!(response.status().is_success(), "{url} answered {}", response.status());
    let text = response.text().await?;
    if args.json {
        println!("{text}");
        return Ok(());
    }
    let doc: Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{url} is not JSON: {e}"))?;
    println!(
        "{} {} — OpenAPI {}",
        doc["info"]["title"].as_str().unwrap_or("API"),
        doc["info"]["version"].as_str().unwrap_or(""),
        doc["openapi"].as_str().unwrap_or("?")
    );
    println!("document: {url}");
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let summary = operation["summary"].as_str().or_else(|| operation["description"].as_str()).unwrap_or("");
            let first = summary.lines().next().unwrap_or("");
            let open = operation["security"].as_array().is_some_and(Vec::is_empty);
            println!(
                "{:<7} {:<42} {:<24} {}{}",
                method.to_uppercase(),
                path,
                operation["operationId"].as_str().unwrap_or(""),
                if open { "(public) " } else { "" },
                first
            );
        }
    }
    Ok(())
}
