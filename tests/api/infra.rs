//! The deployment files agree with the code: every binary in api/ is a route the library knows, is declared in
//! Cargo.toml, deployed by template.yaml (with exactly the DynamoDB actions it needs) and by vercel.json; and no
//! file names a route that does not exist. The checker is tested on broken inputs too, so it can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cloud_agent::ROUTES;
use cloud_agent::app::EVENT_FUNCTIONS;
use cloud_agent::features::health::ALERT_SENDERS;
use cloud_agent::features::tasks::QUEUE_SENDERS;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// A SAM function, reduced to what is compared.
#[derive(Debug, Clone, Default)]
struct SamFunction {
    /// (METHOD, path), or (event type, "") for a non-HTTP trigger.
    events: BTreeSet<(String, String)>,
    /// DynamoDB actions granted.
    actions: BTreeSet<String>,
    /// May send to the task queue.
    sends: bool,
    /// May publish to the alert topic.
    alerts: bool,
    logical_id: String,
}

/// What the deployment files say, reduced to what we compare.
#[derive(Debug, Clone, Default)]
struct Deployment {
    /// Files under api/ (relative paths).
    api_files: BTreeSet<String>,
    /// Cargo.toml [[bin]] name → path.
    cargo_bins: BTreeMap<String, String>,
    /// template.yaml: binary → (events as (METHOD, path), DynamoDB actions granted).
    sam_functions: BTreeMap<String, SamFunction>,
    /// vercel.json function keys.
    vercel_functions: BTreeSet<String>,
    /// vercel.json rewrites: source → destination.
    vercel_rewrites: BTreeMap<String, String>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn api_files(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            api_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.insert(path.strip_prefix(root()).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// `[[bin]]` tables of Cargo.toml: a small reader is enough for `name = "..."` / `path = "..."` lines.
fn cargo_bins(manifest: &str) -> BTreeMap<String, String> {
    let mut bins = BTreeMap::new();
    let (mut in_bin, mut name, mut path) = (false, None::<String>, None::<String>);
    let mut flush = |name: &mut Option<String>, path: &mut Option<String>| {
        if let (Some(n), Some(p)) = (name.take(), path.take()) {
            bins.insert(n, p);
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&mut name, &mut path);
            in_bin = line == "[[bin]]";
            continue;
        }
        if !in_bin {
            continue;
        }
        let value = |l: &str| l.split_once('=').map(|(_, v)| v.trim().trim_matches('"').to_owned());
        if line.starts_with("name") {
            name = value(line);
        } else if line.starts_with("path") {
            path = value(line);
        }
    }
    flush(&mut name, &mut path);
    bins
}

fn sam_functions(template: &Yaml) -> BTreeMap<String, SamFunction> {
    let mut out = BTreeMap::new();
    let resources = template["Resources"].as_mapping().expect("Resources");
    for (logical_id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary =
            resource["Metadata"]["BuildProperties"]["Binary"].as_str().expect("BuildProperties.Binary").to_owned();
        assert_eq!(resource["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{binary}: BuildMethod");
        let mut events = BTreeSet::new();
        for (_, event) in resource["Properties"]["Events"].as_mapping().into_iter().flatten() {
            let kind = event["Type"].as_str().unwrap();
            if kind == "Schedule" {
                let schedule = event["Properties"]["Schedule"].as_str().unwrap_or_default();
                assert!(schedule.starts_with("rate(") || schedule.starts_with("cron("), "{binary}: {schedule}");
                events.insert((kind.to_owned(), String::new()));
                continue;
            }
            if kind != "HttpApi" {
                assert_eq!(kind, "SQS", "{binary}: events are HttpApi, or SQS and Schedule for the worker");
                let queue = serde_yaml::to_string(&event["Properties"]["Queue"]).unwrap();
                assert!(queue.contains("TaskQueue"), "{binary}: the worker reads the task queue: {queue}");
                let types = serde_yaml::to_string(&event["Properties"]["FunctionResponseTypes"]).unwrap();
                assert!(types.contains("ReportBatchItemFailures"), "{binary}: partial batch responses are on");
                events.insert((kind.to_owned(), String::new()));
                continue;
            }
            let p = &event["Properties"];
            events.insert((p["Method"].as_str().unwrap().to_uppercase(), p["Path"].as_str().unwrap().to_owned()));
        }
        let mut actions = BTreeSet::new();
        let mut sends = false;
        let mut alerts = false;
        let mut reads_dead_letters = false;
        for policy in resource["Properties"]["Policies"].as_sequence().into_iter().flatten() {
            if let Some(sqs) = policy.get("SQSSendMessagePolicy") {
                assert!(serde_yaml::to_string(sqs).unwrap().contains("TaskQueue"), "{binary}: only the task queue");
                sends = true;
                continue;
            }
            if let Some(sns) = policy.get("SNSPublishMessagePolicy") {
                assert!(serde_yaml::to_string(sns).unwrap().contains("AlertTopic"), "{binary}: only the alert topic");
                alerts = true;
                continue;
            }
            for statement in policy["Statement"].as_sequence().into_iter().flatten() {
                let resource = serde_yaml::to_string(&statement["Resource"]).unwrap();
                let listed: Vec<&str> =
                    statement["Action"].as_sequence().into_iter().flatten().filter_map(Yaml::as_str).collect();
                if listed == ["sqs:GetQueueAttributes"] {
                    assert!(resource.contains("TaskDeadLetterQueue"), "{binary}: reads only the DLQ's depth");
                    reads_dead_letters = true;
                    continue;
                }
                for action in statement["Action"].as_sequence().into_iter().flatten() {
                    actions.insert(action.as_str().unwrap().to_owned());
                }
                // Policies name our own table, never `*`.
                assert!(resource.contains("Table"), "{binary}: policy resource must be the table: {resource}");
            }
        }
        assert_eq!(alerts, reads_dead_letters, "{binary}: the functions that alert read the DLQ depth, and only they");
        out.insert(
            binary,
            SamFunction { events, actions, sends, alerts, logical_id: logical_id.as_str().unwrap().to_owned() },
        );
    }
    out
}

/// The functions' shared library (`[lib] path` in Cargo.toml): in api/ beside the functions, but not one.
fn library_file(cargo: &str) -> Option<String> {
    let lib = cargo.split("\n[lib]\n").nth(1)?;
    let line = lib.lines().take_while(|l| !l.starts_with('[')).find(|l| l.starts_with("path = "))?;
    Some(line.trim_start_matches("path = ").trim_matches('"').to_owned())
}

fn load() -> Deployment {
    let mut files = BTreeSet::new();
    api_files(&root().join("api"), &mut files);
    let library = library_file(&read("Cargo.toml")).expect("Cargo.toml names the functions' library");
    assert!(library.starts_with("api/_"), "{library}: Vercel serves every api/ file not starting with _");
    files.remove(&library);
    let template: Yaml = serde_yaml::from_str(&read("template.yaml")).expect("template.yaml parses");
    let vercel: Json = serde_json::from_str(&read("vercel.json")).expect("vercel.json parses");
    Deployment {
        api_files: files,
        cargo_bins: cargo_bins(&read("Cargo.toml")),
        sam_functions: sam_functions(&template),
        vercel_functions: vercel["functions"].as_object().unwrap().keys().cloned().collect(),
        vercel_rewrites: vercel["rewrites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["source"].as_str().unwrap().to_owned(), r["destination"].as_str().unwrap().to_owned()))
            .collect(),
    }
}

/// `/api/v1/progress/{task_id}` → `/api/v1/progress/:task_id` (Vercel's path syntax).
fn vercel_syntax(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') && s.ends_with('}') { format!(":{}", &s[1..s.len() - 1]) } else { s.to_owned() })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every disagreement between the deployment files and `ROUTES`.
fn problems(d: &Deployment) -> Vec<String> {
    let mut out = Vec::new();
    let route_files: BTreeSet<String> = ROUTES.iter().map(|r| r.file.to_owned()).collect();
    let function_files: BTreeSet<String> =
        route_files.iter().cloned().chain(EVENT_FUNCTIONS.iter().map(|f| f.file.to_owned())).collect();
    for file in d.api_files.symmetric_difference(&function_files) {
        out.push(format!("{file}: api/ and the library's ROUTES disagree"));
    }
    for route in ROUTES.iter() {
        match d.cargo_bins.get(route.binary) {
            Some(path) if path == route.file => {}
            other => out
                .push(format!("Cargo.toml: [[bin]] {} should have path {} (has {other:?})", route.binary, route.file)),
        }
        let wanted: BTreeSet<(String, String)> =
            route.methods.iter().map(|m| (m.as_str().to_owned(), route.path.to_owned())).collect();
        let actions: BTreeSet<String> = route.granted_actions().into_iter().map(str::to_owned).collect();
        match d.sam_functions.get(route.binary) {
            None => out.push(format!("template.yaml: no function builds binary {}", route.binary)),
            Some(SamFunction { events, actions: granted, .. }) => {
                if *events != wanted {
                    out.push(format!("template.yaml: {} events {events:?}, routes say {wanted:?}", route.binary));
                }
                if *granted != actions {
                    out.push(format!(
                        "template.yaml: {} is granted {granted:?}, needs exactly {actions:?}",
                        route.binary
                    ));
                }
            }
        }
        if !d.vercel_functions.contains(route.file) {
            out.push(format!("vercel.json: functions has no entry for {}", route.file));
        }
        let public = vercel_syntax(route.path);
        if public != route.function_path() && d.vercel_rewrites.get(&public) != Some(&route.function_path()) {
            out.push(format!("vercel.json: no rewrite {public} -> {}", route.function_path()));
        }
    }
    for event_function in EVENT_FUNCTIONS {
        match d.cargo_bins.get(event_function.binary) {
            Some(path) if path == event_function.file => {}
            other => out.push(format!(
                "Cargo.toml: [[bin]] {} should have path {} (has {other:?})",
                event_function.binary, event_function.file
            )),
        }
        let actions: BTreeSet<String> = event_function.dynamodb_actions.iter().map(|a| (*a).to_owned()).collect();
        match d.sam_functions.get(event_function.binary) {
            None => out.push(format!("template.yaml: no function builds binary {}", event_function.binary)),
            Some(SamFunction { events, actions: granted, .. }) => {
                let wanted: BTreeSet<(String, String)> =
                    event_function.triggers.iter().map(|t| ((*t).to_owned(), String::new())).collect();
                if *events != wanted {
                    out.push(format!("template.yaml: {} events {events:?}, wanted {wanted:?}", event_function.binary));
                }
                if *granted != actions {
                    out.push(format!(
                        "template.yaml: {} is granted {granted:?}, needs exactly {actions:?}",
                        event_function.binary
                    ));
                }
            }
        }
    }
    for (binary, SamFunction { sends, alerts, .. }) in &d.sam_functions {
        if *alerts != ALERT_SENDERS.contains(&binary.as_str()) {
            out.push(format!("template.yaml: {binary} may publish alerts: {alerts}; the code says {}", !alerts));
        }
        if !ROUTES.iter().any(|r| r.binary == binary) && !EVENT_FUNCTIONS.iter().any(|f| f.binary == binary) {
            out.push(format!("template.yaml: function for binary {binary}, which is no route"));
        }
        if *sends != QUEUE_SENDERS.contains(&binary.as_str()) {
            out.push(format!("template.yaml: {binary} may send to the task queue: {sends}; the code says {}", !sends));
        }
    }
    for key in &d.vercel_functions {
        if !route_files.contains(key) {
            out.push(format!("vercel.json: function {key} is no route"));
        }
    }
    for (source, destination) in &d.vercel_rewrites {
        if !ROUTES.iter().any(|r| vercel_syntax(r.path) == *source && r.function_path() == *destination) {
            out.push(format!("vercel.json: rewrite {source} -> {destination} names no route"));
        }
    }
    for (name, path) in &d.cargo_bins {
        if path.starts_with("api/")
            && !ROUTES.iter().any(|r| r.binary == name)
            && !EVENT_FUNCTIONS.iter().any(|f| f.binary == name)
        {
            out.push(format!("Cargo.toml: [[bin]] {name} ({path}) is no route"));
        }
    }
    out
}

#[test]
fn deployment_files_match_the_routes() {
    let problems = problems(&load());
    assert!(problems.is_empty(), "deployment files disagree with the code:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_catches_a_missing_or_extra_function() {
    let good = load();
    let mut missing_sam = good.clone();
    missing_sam.sam_functions.remove("health");
    assert!(problems(&missing_sam).iter().any(|p| p.contains("no function builds binary health")));

    let mut missing_vercel = good.clone();
    missing_vercel.vercel_functions.remove("api/health.rs");
    assert!(problems(&missing_vercel).iter().any(|p| p.contains("no entry for api/health.rs")));

    let mut extra_file = good.clone();
    extra_file.api_files.insert("api/v1/ghost.rs".into());
    assert!(problems(&extra_file).iter().any(|p| p.contains("ghost")));

    let mut ghost_rewrite = good.clone();
    ghost_rewrite.vercel_rewrites.insert("/api/v1/ghost".into(), "/api/v1/ghost".into());
    assert!(problems(&ghost_rewrite).iter().any(|p| p.contains("names no route")));

    let mut wrong_event = good.clone();
    wrong_event.sam_functions.get_mut("health").unwrap().events = [("GET".to_owned(), "/healthz".to_owned())].into();
    assert!(problems(&wrong_event).iter().any(|p| p.contains("events")));

    let mut sends_without_need = good.clone();
    sends_without_need.sam_functions.get_mut("health").unwrap().sends = true;
    assert!(problems(&sends_without_need).iter().any(|p| p.contains("task queue")));

    let mut worker_over_http = good.clone();
    worker_over_http.sam_functions.get_mut("task-worker").unwrap().events =
        [("GET".to_owned(), "/w".to_owned())].into();
    assert!(problems(&worker_over_http).iter().any(|p| p.contains("task-worker events")));

    let mut too_much_access = good;
    too_much_access.sam_functions.get_mut("health").unwrap().actions.insert("dynamodb:Scan".into());
    assert!(problems(&too_much_access).iter().any(|p| p.contains("granted")));
}

#[test]
fn template_table_matches_the_code_and_functions_share_the_runtime_settings() {
    let template: Yaml = serde_yaml::from_str(&read("template.yaml")).unwrap();
    let table = &template["Resources"]["Table"]["Properties"];
    assert_eq!(table["TimeToLiveSpecification"]["AttributeName"].as_str(), Some(cloud_agent::store::EXPIRES_AT));
    assert_eq!(table["TimeToLiveSpecification"]["Enabled"].as_bool(), Some(true));
    let keys: Vec<&str> =
        table["KeySchema"].as_sequence().unwrap().iter().map(|k| k["AttributeName"].as_str().unwrap()).collect();
    assert_eq!(keys, [cloud_agent::store::PK, cloud_agent::store::SK]);
    let gsi = &table["GlobalSecondaryIndexes"][0];
    assert_eq!(gsi["IndexName"].as_str(), Some(cloud_agent::store::dynamo::GSI1_NAME));
    let gsi_keys: Vec<&str> =
        gsi["KeySchema"].as_sequence().unwrap().iter().map(|k| k["AttributeName"].as_str().unwrap()).collect();
    assert_eq!(gsi_keys, [cloud_agent::store::GSI1_PK, cloud_agent::store::GSI1_SK]);
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
    assert_eq!(globals["Environment"]["Variables"]["AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH"].as_str(), Some("true"));
    assert!(globals["Environment"]["Variables"]["TABLE_NAME"].is_tagged(), "TABLE_NAME comes from !Ref Table");
    let ignore = read(".vercelignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), ".vercelignore keeps target/ out of uploads");
}

trait Tagged {
    fn is_tagged(&self) -> bool;
}

impl Tagged for Yaml {
    fn is_tagged(&self) -> bool {
        matches!(self, Yaml::Tagged(t) if t.tag == "!Ref" && t.value.as_str() == Some("Table"))
    }
}

// ---------------------------------------------------------------- what Vercel publishes as static files

/// Files that must never be served: source, manifests, lock files, scripts, infrastructure.
fn is_source(path: &str) -> bool {
    let ext = Path::new(path).extension().and_then(|e| e.to_str()).unwrap_or_default();
    let dirs = ["api/", "shared/", "cli/", "tests/", "benches/", "infra/", ".ci/"];
    ["rs", "toml", "lock", "yaml", "yml", "sh", "java", "ts", "py", "json"].contains(&ext)
        || dirs.iter().any(|d| path.starts_with(d))
}

/// `.vercelignore` lines: `dir/` prefixes, `*.ext` suffixes, exact paths.
fn ignored(path: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match (p.strip_suffix('/'), p.strip_prefix('*')) {
        (Some(dir), _) => path == dir || path.starts_with(&format!("{dir}/")),
        (None, Some(suffix)) => path.ends_with(suffix),
        _ => path == p,
    })
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
        if [".git", "target", "node_modules", ".venv", ".run"].iter().any(|skip| path.ends_with(skip)) {
            continue;
        }
        if path.is_dir() { walk(base, &path, out) } else { out.push(rel) }
    }
}

/// What Vercel would serve as static files from a checkout at `root`, by its documented rule: with an output
/// directory (`outputDirectory` in vercel.json, else a `public/` folder) only the files in it; without one,
/// every uploaded file outside `api/`.
fn vercel_static_files(root: &Path) -> Vec<String> {
    let config: Json = serde_json::from_str(&std::fs::read_to_string(root.join("vercel.json")).unwrap()).unwrap();
    let output = config["outputDirectory"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| root.join("public").is_dir().then(|| "public".to_owned()));
    let mut files = Vec::new();
    if let Some(dir) = output {
        walk(&root.join(&dir), &root.join(&dir), &mut files);
    } else {
        let patterns: Vec<String> = std::fs::read_to_string(root.join(".vercelignore"))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        walk(root, root, &mut files);
        files.retain(|f| !f.starts_with("api/") && !ignored(f, &patterns));
    }
    files.sort();
    files
}

#[test]
fn vercel_publishes_no_source() {
    let published = vercel_static_files(root());
    let leaked: Vec<&String> = published.iter().filter(|f| is_source(f)).collect();
    assert!(leaked.is_empty(), "Vercel would serve these as static files: {leaked:?}");
    assert_eq!(published, ["robots.txt"], "public/ holds only what is meant to be public");
}

#[test]
fn the_static_output_check_catches_a_published_source_tree() {
    // The layout main had: no public/ folder and no outputDirectory.
    let dir = tempfile::tempdir().unwrap();
    for file in ["Cargo.toml", "Cargo.lock", "shared/src/lib.rs", "api/health.rs", "template.yaml", ".ci/run"] {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }
    std::fs::write(dir.path().join("vercel.json"), "{}").unwrap();
    std::fs::write(dir.path().join(".vercelignore"), "target/\n").unwrap();
    let published = vercel_static_files(dir.path());
    assert!(published.contains(&"shared/src/lib.rs".to_owned()), "{published:?}");
    assert!(published.iter().any(|f| is_source(f)));
    assert!(!published.contains(&"api/health.rs".to_owned()), "api/ is functions, not static files");
}

// ---------------------------------------------------------------- Vercel crons on any plan

/// Why a cron schedule would make a Hobby deployment fail ("Hobby accounts are limited to daily cron jobs"):
/// it may fire more than once a day unless its minute and hour are each one fixed number.
fn hobby_refuses(schedule: &str) -> Option<String> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!("{schedule:?} is not a five-field cron expression"));
    }
    let fixed = |field: &str, max: u32| field.parse::<u32>().is_ok_and(|n| n <= max);
    if !fixed(fields[0], 59) || !fixed(fields[1], 23) {
        return Some(format!("{schedule:?} runs more than once a day, which Hobby plans refuse"));
    }
    None
}

#[test]
fn vercel_crons_deploy_on_a_hobby_plan() {
    let vercel: Json = serde_json::from_str(&read("vercel.json")).unwrap();
    let crons = vercel["crons"].as_array().cloned().unwrap_or_default();
    assert!(!crons.is_empty(), "the daily drain is the safety net for queued work");
    for cron in crons {
        let schedule = cron["schedule"].as_str().unwrap();
        assert_eq!(hobby_refuses(schedule), None, "{cron}");
    }
    // The check itself refuses what Vercel refuses.
    for refused in ["* * * * *", "*/5 * * * *", "0 * * * *", "0 */6 * * *", "0,30 4 * * *", "0 4-5 * * *"] {
        assert!(hobby_refuses(refused).is_some(), "{refused}");
    }
    assert_eq!(hobby_refuses("0 0 * * 1"), None);
}

/// Every function's errors, the API's 5xx answers and the dead-letter queue's depth are alarmed, and every alarm
/// tells the alert topic, which the health monitor's own alerts also reach.
#[test]
fn alarms_watch_every_function_and_the_dead_letter_queue() {
    let template: Yaml = serde_yaml::from_str(&read("template.yaml")).unwrap();
    let resources = template["Resources"].as_mapping().unwrap();
    let alarms: Vec<&Yaml> =
        resources.values().filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")).collect();
    let tells_topic =
        |alarm: &Yaml| serde_yaml::to_string(&alarm["Properties"]["AlarmActions"]).unwrap().contains("AlertTopic");
    let dimension = |alarm: &Yaml| serde_yaml::to_string(&alarm["Properties"]["Dimensions"]).unwrap();
    for function in sam_functions(&template).values() {
        let watched = alarms.iter().any(|a| {
            a["Properties"]["Namespace"].as_str() == Some("AWS/Lambda")
                && a["Properties"]["MetricName"].as_str() == Some("Errors")
                && dimension(a).contains(&format!("!Ref {}", function.logical_id))
                && dimension(a).contains("FunctionName")
                && tells_topic(a)
        });
        assert!(watched, "{}: no Errors alarm telling the alert topic", function.logical_id);
    }
    assert!(
        alarms.iter().any(|a| a["Properties"]["Namespace"].as_str() == Some("AWS/SQS")
            && dimension(a).contains("TaskDeadLetterQueue")
            && tells_topic(a)),
        "the dead-letter queue's depth is alarmed"
    );
    assert!(
        alarms.iter().any(|a| a["Properties"]["Namespace"].as_str() == Some("AWS/ApiGateway") && tells_topic(a)),
        "the API's 5xx answers are alarmed"
    );
    assert_eq!(resources["AlertTopic"]["Type"].as_str(), Some("AWS::SNS::Topic"));
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert!(
        matches!(&globals["CLOUD_AGENT_TASK_DLQ_URL"], Yaml::Tagged(t) if t.value.as_str() == Some("TaskDeadLetterQueue")),
        "the health monitor knows the dead-letter queue"
    );
    assert!(
        matches!(&globals["CLOUD_AGENT_ALERT_TOPIC_ARN"], Yaml::Tagged(t) if t.tag == "!Ref" && t.value.as_str() == Some("AlertTopic")),
        "the functions know the topic (!Ref AlertTopic)"
    );
}
