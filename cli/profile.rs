//! Named profiles of the operator commands: where a deployment is and which key to use, in
//! `$XDG_CONFIG_HOME/cloudagent/config.toml` (`~/.config/…` without it). `cloudagent init` writes them;
//! `cloudagent serve` writes the `local` one in development. A key is never stored in the file itself: a profile
//! names an environment variable or a file (mode 0600) that holds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The profile `cloudagent serve` writes in development.
pub(crate) const LOCAL: &str = "local";

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// Used when a command names no profile (else `local`, if it exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) default_profile: Option<String>,
    #[serde(default)]
    pub(crate) profiles: BTreeMap<String, Profile>,
}

/// One deployment and a way to its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// Base URLs of the deployment (the first is used).
    pub(crate) endpoints: Vec<String>,
    /// The key comes from this environment variable...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key_env: Option<String>,
    /// ...or from this file (its first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key_file: Option<PathBuf>,
    /// The signing secret of a key that requires signed requests, from this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signing_secret_env: Option<String>,
}

/// What a command calls, resolved.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// Every endpoint the call may use: `--url` alone, or the profile's.
    pub(crate) endpoints: Vec<String>,
    pub(crate) key: String,
    pub(crate) signing_secret: Option<String>,
}

/// The configuration file's path; `None` when there is no home to keep it in.
pub(crate) fn path() -> Option<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|home| home.join(".config")))?;
    Some(base.join("cloudagent").join("config.toml"))
}

pub(crate) fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{} is not a valid profile file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the file whole (a temporary file moved into place), keeping every other profile.
pub(crate) fn save(path: &Path, file: &ConfigFile) -> anyhow::Result<()> {
    let dir = path.parent().context("the profile file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temp = dir.join(format!(".config.toml.{}", std::process::id()));
    std::fs::write(&temp, toml::to_string_pretty(file)?).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Adds or replaces one profile; the first profile written becomes the default.
pub(crate) fn upsert(path: &Path, name: &str, profile: Profile) -> anyhow::Result<()> {
    let mut file = load(path)?;
    file.profiles.insert(name.to_owned(), profile);
    if file.default_profile.is_none() {
        file.default_profile = Some(name.to_owned());
    }
    save(path, &file)
}

/// Writes `key` to `path` readable by its owner only.
pub(crate) fn write_key_file(path: &Path, key: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{key}\n").as_bytes())?;
    Ok(())
}

impl Profile {
    fn key(&self, name: &str) -> anyhow::Result<String> {
        if let Some(var) = &self.key_env {
            return std::env::var(var).ok().filter(|k| !k.is_empty()).with_context(|| {
                format!("profile {name:?} takes its key from ${var}, which is not set: export it, or pass --key")
            });
        }
        if let Some(file) = &self.key_file {
            let text = std::fs::read_to_string(file).with_context(|| {
                format!("profile {name:?} takes its key from {}, which cannot be read", file.display())
            })?;
            return text
                .lines()
                .next()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .with_context(|| format!("{} (the key of profile {name:?}) is empty", file.display()));
        }
        anyhow::bail!("profile {name:?} names no key (key_env or key_file): run `cloudagent init --profile {name}`")
    }
}

/// The profile a command uses: the named one, else the default, else `local` if it exists.
fn choose(profile: Option<&str>) -> anyhow::Result<Option<(String, Profile)>> {
    let file = match path() {
        Some(path) => load(&path)?,
        None => ConfigFile::default(),
    };
    Ok(match profile {
        Some(name) => Some((
            name.to_owned(),
            file.profiles.get(name).cloned().with_context(|| {
                format!("no profile {name:?} in {}: run `cloudagent init --profile {name}`", shown(path().as_deref()))
            })?,
        )),
        None => file
            .default_profile
            .clone()
            .or_else(|| file.profiles.contains_key(LOCAL).then(|| LOCAL.to_owned()))
            .and_then(|name| file.profiles.get(&name).cloned().map(|p| (name, p))),
    })
}

/// The base URL a command calls: `--url` first, else the profile's, else the local server's.
pub(crate) fn url(url: Option<&str>, profile: Option<&str>) -> anyhow::Result<String> {
    url_of(url, choose(profile)?.as_ref())
}

fn url_of(url: Option<&str>, chosen: Option<&(String, Profile)>) -> anyhow::Result<String> {
    Ok(match (url, chosen) {
        (Some(url), _) => url.to_owned(),
        (None, Some((_, p))) => p.endpoints.first().cloned().context("the profile lists no endpoints")?,
        (None, None) => "http://127.0.0.1:3000".to_owned(),
    })
}

/// What a command calls: flags (and their environment variables) first, then the named profile, the default
/// profile, or `local`.
pub(crate) fn resolve(
    url: Option<&str>,
    key: Option<&str>,
    signing_secret: Option<&str>,
    profile: Option<&str>,
) -> anyhow::Result<Resolved> {
    let chosen = choose(profile)?;
    let url = url_of(url, chosen.as_ref())?;
    let key = match (key, &chosen) {
        (Some(key), _) => key.to_owned(),
        (None, Some((name, p))) => p.key(name)?,
        (None, None) => anyhow::bail!(
            "no credential: pass --key, set CLOUD_AGENT_API_KEY, or create a profile with `cloudagent init` (running \
             `cloudagent serve` in development creates the `local` one)"
        ),
    };
    let signing_secret = signing_secret.map(str::to_owned).or_else(|| {
        chosen.as_ref()?.1.signing_secret_env.as_ref().and_then(|var| std::env::var(var).ok()).filter(|s| !s.is_empty())
    });
    let endpoints = match (url.as_str(), &chosen) {
        (_, Some((_, p))) if p.endpoints.first() == Some(&url) => p.endpoints.clone(),
        _ => vec![url.clone()],
    };
    Ok(Resolved { endpoints, key, signing_secret })
}

fn shown(path: Option<&Path>) -> String {
    path.map_or_else(|| "the profile file (no HOME or XDG_CONFIG_HOME)".to_owned(), |p| p.display().to_string())
}
