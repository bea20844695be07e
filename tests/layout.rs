//! The dependency direction, checked: the kernel never imports a feature or the root, features never import the
//! root and never import each other in a cycle, the SDK and the deployed functions carry none of what they must
//! not, and the README's layout section names what is in the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The module paths a file names (`crate::features::tokens`, `crate::app`, ...), comments excluded.
fn references(path: &Path, prefix: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut found = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find(prefix) {
            let tail = &rest[at + prefix.len()..];
            let name: String = tail.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.insert(name);
            rest = tail;
        }
    }
    found
}

#[test]
fn the_kernel_imports_no_feature_and_features_no_root() {
    let src = Path::new(ROOT).join("shared/src");
    let root_modules = ["app.rs", "lib.rs"];
    let mut feature_graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if root_modules.contains(&relative.as_str()) {
            continue;
        }
        let features = references(&file, "crate::features::");
        let root = references(&file, "crate::app");
        assert!(root.is_empty(), "{relative} imports the root (crate::app)");
        if let Some(feature) = relative.strip_prefix("features/").and_then(|r| r.split('/').next()) {
            if Path::new(feature).extension().is_some() {
                continue; // features/mod.rs
            }
            let others = features.into_iter().filter(|f| f != feature);
            feature_graph.entry(feature.to_owned()).or_default().extend(others);
        } else {
            assert!(features.is_empty(), "kernel module {relative} imports features {features:?}");
        }
    }
    // No cycle between features: repeatedly remove features that import no remaining feature.
    let mut remaining = feature_graph.clone();
    while !remaining.is_empty() {
        let free: Vec<String> = remaining
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !remaining.contains_key(d)))
            .map(|(f, _)| f.clone())
            .collect();
        assert!(!free.is_empty(), "features import each other in a cycle: {remaining:?}");
        for f in free {
            remaining.remove(&f);
        }
    }
    assert!(feature_graph.len() >= 6, "found the feature folders: {feature_graph:?}");
}

/// Direct and indirect normal dependencies of a package, by crate name.
fn dependency_tree(args: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["tree", "--edges", "normal,no-proc-macro", "--prefix", "none", "--locked", "--offline"])
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_sdk_and_the_functions_carry_only_what_they_need() {
    let sdk = dependency_tree(&["--package", "cloud_agent_sdk"]);
    assert!(sdk.contains("reqwest"), "the tree was read: {sdk:?}");
    for server_only in ["cloud_agent", "aws-sdk-dynamodb", "redb", "lambda_http", "vercel_runtime", "utoipa"] {
        assert!(!sdk.contains(server_only), "the agent SDK depends on {server_only}");
    }
    // What `cargo build --bin <function>` (Vercel, cargo-lambda) compiles: the package without the cli feature.
    let functions = dependency_tree(&["--package", "cloud-agent-functions"]);
    assert!(functions.contains("lambda_http") && functions.contains("vercel_runtime"), "{functions:?}");
    // reqwest is the SSRF-safe outbound client of the task handlers and webhooks (on the rustls and ring the store
    // already links); only the functions that run tasks link its code.
    for cli_only in ["redb", "clap", "cloud_agent_sdk", "aws-lc-rs", "native-tls", "openssl"] {
        assert!(!functions.contains(cli_only), "deployed functions compile {cli_only}");
    }
}

#[test]
fn the_readme_layout_names_what_is_in_the_tree() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let start = readme.find("## Layout").expect("a layout section");
    let block = &readme[start..];
    let block = &block[block.find("```").unwrap() + 3..];
    let block = &block[..block.find("```").unwrap()];
    // Every entry is `path  description`, indented under its folder.
    let mut named = BTreeSet::new();
    let mut parents: Vec<(usize, String)> = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let indent = line.len() - line.trim_start().len();
        let entry = line.split_whitespace().next().unwrap();
        if !(entry.ends_with('/') || entry.contains('.')) {
            continue; // a description's continuation line
        }
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let full = format!("{}{entry}", parents.last().map_or("", |(_, p)| p.as_str()));
        assert!(Path::new(ROOT).join(&full).exists(), "the README's layout names {full}, which does not exist");
        if entry.ends_with('/') {
            parents.push((indent, full.clone()));
        }
        named.insert(full.trim_end_matches('/').to_owned());
    }
    // ...and every library module, feature folder and top-level folder is named.
    let mut expected: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(Path::new(ROOT).join("shared/src")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "lib.rs" {
            expected.push(format!("shared/src/{name}"));
        }
    }
    for entry in std::fs::read_dir(Path::new(ROOT).join("shared/src/features")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "mod.rs" {
            expected.push(format!("shared/src/features/{name}"));
        }
    }
    for top in ["api", "cli", "sdk", "shared", "infra", "tests", "benches", "public", "template.yaml", "vercel.json"] {
        expected.push(top.to_owned());
    }
    let missing: Vec<&String> = expected.iter().filter(|e| !named.contains(e.as_str())).collect();
    assert!(missing.is_empty(), "the README's layout does not name {missing:?}");
}
