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
    assert!(sdk.contains("cloud_agent_wire"), "the SDK reads the server's own wire types");
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
    // The server crate knows handlers only through the contract: no built-in's heavy dependencies (the image
    // decoders) come with it; the functions' registry (api/_registry.rs) decides which binary links them.
    let server = dependency_tree(&["--package", "cloud_agent"]);
    assert!(server.contains("cloud_agent_handlers"), "{server:?}");
    for heavy in ["image", "png", "zune-jpeg", "image-webp"] {
        assert!(!server.contains(heavy), "the server crate compiles {heavy}");
    }
}

/// One package builds every function, so no per-function dependency tree exists to check; what a function links is
/// what its `main` reaches. Only the task feature's functions are built with a task registry (`api/_registry.rs`,
/// the one place that names the built-ins and plugins); every other function starts with `run_function` and names
/// no handler, so fat LTO drops the handlers' dependencies (jsonschema, reqwest, image) from it.
/// `benches/function_sizes.py` reports which of those crates each built binary carries.
#[test]
fn only_the_task_functions_are_built_with_handlers() {
    use cloud_agent::features::tasks;
    let api = Path::new(ROOT).join("api");
    let task_files: BTreeSet<String> =
        tasks::FEATURE.routes.iter().map(|r| r.file.to_owned()).chain([tasks::WORKER.file.to_owned()]).collect();
    let mut seen = BTreeSet::new();
    for path in rust_files(&api) {
        let relative = path.strip_prefix(ROOT).unwrap().to_string_lossy().replace('\\', "/");
        if relative == "api/_registry.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let registry = text.contains("cloud_agent_functions::");
        assert!(!text.contains("cloud_agent_handlers"), "{relative} names the handlers crate directly");
        if task_files.contains(&relative) {
            assert!(registry, "{relative} runs or describes tasks without the functions' registry");
            seen.insert(relative);
        } else {
            assert!(
                !registry && text.contains("cloud_agent::runtime::run_function("),
                "{relative} is not a task function: it must start with run_function and link no handler"
            );
        }
    }
    assert_eq!(seen, task_files, "every task function was found under api/");
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

/// The module a file defines, as a path of names (`http/mod.rs` → `["http"]`, `lib.rs` → `[]`).
fn module_of(relative: &str) -> Vec<String> {
    let trimmed = relative.trim_end_matches(".rs");
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file that defines the deepest existing module along `path` (`crate::store::keys::due` → `store/keys.rs`).
fn file_of(path: &[String], files: &BTreeSet<String>) -> String {
    for n in (1..=path.len()).rev() {
        let base = path[..n].join("/");
        for candidate in [format!("{base}.rs"), format!("{base}/mod.rs")] {
            if files.contains(&candidate) {
                return candidate;
            }
        }
    }
    "lib.rs".to_owned()
}

/// Every path of a `use` tree (`a::{b, c::{d as e}}` → `a::b`, `a::c::d`), as segments.
fn use_paths(tree: &str) -> Vec<Vec<String>> {
    fn walk(prefix: &[String], text: &str, out: &mut Vec<Vec<String>>) {
        let (mut depth, mut start) = (0, 0);
        let mut items = Vec::new();
        for (i, c) in text.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&text[start..]);
        for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
            if let Some((head, rest)) = item.split_once('{') {
                let mut path = prefix.to_vec();
                path.extend(head.split("::").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
                walk(&path, rest.trim_end().trim_end_matches('}'), out);
            } else {
                let item = item.split(" as ").next().unwrap_or(item);
                let mut path = prefix.to_vec();
                path.extend(item.split("::").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&[], tree, &mut out);
    out
}

/// The module files each file of a source tree imports (`use crate::…`, `use super::…`, and such paths written
/// inline), tests and comments excluded. A module declaring its children (`mod x;`) and naming them (`x::f`) is
/// structure, not an import: the edges are what a file reaches for elsewhere in the crate.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files: BTreeSet<String> =
        rust_files(src).iter().map(|f| f.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/")).collect();
    let mut graph = BTreeMap::new();
    for relative in &files {
        let text = std::fs::read_to_string(src.join(relative)).unwrap();
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let code: String = text.lines().map(|l| l.find("//").map_or(l, |at| &l[..at])).collect::<Vec<_>>().join("\n");
        let me = module_of(relative);
        let resolve = |segments: &[String]| -> Option<Vec<String>> {
            let (first, rest) = segments.split_first()?;
            match first.as_str() {
                "crate" => Some(rest.to_vec()),
                "self" => Some(me.iter().cloned().chain(rest.iter().cloned()).collect()),
                "super" => {
                    let mut base = me.clone();
                    base.pop();
                    let mut rest = rest;
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    Some(base.into_iter().chain(rest.iter().cloned()).collect())
                }
                _ => None,
            }
        };
        let mut deps = BTreeSet::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("use ") {
            let before = rest[..at].chars().last();
            let tail = &rest[at + 4..];
            rest = tail;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let Some(end) = tail.find(';') else { break };
            for path in use_paths(&tail[..end]) {
                if let Some(module) = resolve(&path) {
                    deps.insert(file_of(&module, &files));
                }
            }
        }
        for prefix in ["crate::", "super::"] {
            let mut rest = code.as_str();
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                let tail = &rest[at..];
                let path: String = tail.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let segments: Vec<String> = path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
                if let Some(module) = resolve(&segments) {
                    deps.insert(file_of(&module, &files));
                }
            }
        }
        deps.remove(relative);
        graph.insert(relative.clone(), deps);
    }
    graph
}

/// One import cycle of `graph`, as the files around it, if there is any.
fn a_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_module_of_the_library_imports_itself_through_others() {
    let graph = import_graph(&Path::new(ROOT).join("shared/src"));
    assert!(graph.len() > 50, "read the library's files: {}", graph.len());
    assert!(graph["perimeter/authenticate.rs"].contains("perimeter/mod.rs"), "the graph sees `super::` imports");
    assert!(graph["perimeter/mod.rs"].contains("problem.rs"), "the graph sees `crate::` imports");
    if let Some(cycle) = a_cycle(&graph) {
        panic!("modules of shared/src import each other in a circle: {}", cycle.join(" → "));
    }
}

/// The check above, shown to catch what it is for: a small tree with a circle through a parent module and a
/// nested `use` group, and the same tree with the circle broken.
#[test]
fn the_cycle_check_finds_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    };
    write("lib.rs", "pub mod http;\npub mod store;\n");
    write("http/mod.rs", "pub mod problem;\nuse crate::store::{Store, keys::{self, Key}};\n");
    write("http/problem.rs", "pub struct Problem;\n// use crate::store; (a comment, not an import)\n");
    write("store/mod.rs", "pub mod keys;\npub struct Store;\n");
    write("store/keys.rs", "use super::super::http::problem::Problem;\npub struct Key;\n");
    let graph = import_graph(dir.path());
    assert_eq!(a_cycle(&graph), None, "{graph:?}");
    // The key layout now reaches back for something defined in http's own module file.
    write("store/keys.rs", "pub struct Key(crate::http::Thing);\n");
    write("http/mod.rs", "pub mod problem;\npub struct Thing;\nuse crate::store::{Store, keys::{self, Key}};\n");
    let cycle = a_cycle(&import_graph(dir.path())).expect("the circle is found");
    assert!(cycle.contains(&"http/mod.rs".to_owned()) && cycle.contains(&"store/keys.rs".to_owned()), "{cycle:?}");
}
