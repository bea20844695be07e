//! Per-environment secrets. A [`Secret`] never prints; production refuses missing, shared-fallback or short ones.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

use super::{ConfigError, Environment};

/// The shortest secret accepted outside development: 256 bits, HS256's key size.
pub const MIN_SECRET_BYTES: usize = 32;

/// Secret bytes. `Debug` and `Display` print `[redacted]`, so a secret cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// 32 random bytes, for development only.
    pub fn random() -> Self {
        let mut bytes = vec![0u8; MIN_SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// HMAC-SHA256 of `message` under this secret.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// A public key id derived from the secret (it reveals nothing about it): lets verifiers pick the key
    /// during rotation without configuring ids by hand.
    pub fn key_id(&self) -> String {
        let digest = self.mac(b"cloud-agent key id");
        hex(&digest[..6])
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A secret text — an agent secret, an access or refresh token — that serialises as itself (request and response
/// bodies, the CLI's session file) but prints as `[redacted]` with `Debug` and `Display`, so a log line or a panic
/// message cannot carry it.
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The bytes of lower- or upper-case hex text; `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    text.len()
        .is_multiple_of(2)
        .then(|| (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect())
        .flatten()
}

/// Where a secret came from: the environment-specific variable, the generic fallback, or generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    Specific,
    Fallback,
    Generated,
}

/// The secrets of the running environment.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Pepper for agent credential hashes.
    pub agent: Secret,
    /// Signs new tokens.
    pub jwt: Secret,
    /// Still accepted for verification during a rotation.
    pub jwt_previous: Vec<Secret>,
    pub agent_source: SecretSource,
    pub jwt_source: SecretSource,
    /// Bearer key of the admin API; `None` disables it.
    pub admin: Option<Secret>,
}

/// Compares two byte strings in constant time (via HMAC verification).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let digest = Secret::new(b"cloud-agent compare".to_vec()).mac(b);
    let mut mac = <Hmac<Sha256>>::new_from_slice(b"cloud-agent compare").expect("HMAC takes keys of any length");
    mac.update(a);
    mac.verify_slice(&digest).is_ok()
}

/// The variables of one environment: agent secret, JWT secret, previous JWT secrets, admin key.
fn names(environment: Environment) -> [&'static str; 4] {
    match environment {
        Environment::Development => ["DEV_AGENT_SECRET", "DEV_JWT_SECRET", "DEV_JWT_SECRET_PREVIOUS", "DEV_ADMIN_KEY"],
        Environment::Staging => {
            ["STAGING_AGENT_SECRET", "STAGING_JWT_SECRET", "STAGING_JWT_SECRET_PREVIOUS", "STAGING_ADMIN_KEY"]
        }
        Environment::Production => {
            ["PROD_AGENT_SECRET", "PROD_JWT_SECRET", "PROD_JWT_SECRET_PREVIOUS", "PROD_ADMIN_KEY"]
        }
    }
}

/// Where development keeps the secrets it generated for the embedded store (inside its data directory).
pub const DEV_SECRETS_FILE: &str = "dev-secrets.json";

/// Secrets generated once for development on the embedded store and kept in its data directory (mode 0600), so
/// agents registered there, and the demo login, keep working across restarts. Never used outside development.
#[derive(serde::Serialize, serde::Deserialize)]
struct DevSecrets {
    agent_secret: String,
    jwt_secret: String,
    /// The bootstrap admin key of local development (`cloudagent serve` writes it into the `local` profile), so
    /// an operator can use the CLI at once. Absent in files written before it existed: added on first read.
    #[serde(default)]
    admin_key: Option<String>,
}

/// A fresh development admin key.
fn dev_admin_key() -> String {
    format!("ca_dev_admin_{}", hex(Secret::random().expose()))
}

/// Writes `secrets` whole under a temporary name, then moves it to `path` (mode 0600): never half a file.
fn write_dev_secrets(dir: &Path, secrets: &DevSecrets) -> std::io::Result<PathBuf> {
    let temp = dir.join(format!(".{DEV_SECRETS_FILE}.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&temp).and_then(|mut file| {
        use std::io::Write as _;
        file.write_all(serde_json::to_string_pretty(secrets).unwrap_or_default().as_bytes())?;
        file.sync_all()
    })?;
    Ok(temp)
}

fn dev_secrets(dir: &Path) -> Result<DevSecrets, ConfigError> {
    let problem = |what: String| ConfigError::Invalid { var: "CLOUD_AGENT_DATA_DIR", problem: what };
    let path = dir.join(DEV_SECRETS_FILE);
    let read = |path: &Path| -> Result<DevSecrets, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            problem(format!("{} is damaged ({e}); delete it to generate new development secrets", path.display()))
        })
    };
    if path.exists() {
        let mut kept = read(&path)?;
        if kept.admin_key.is_none() {
            // Written by an earlier version: add the admin key, replacing the file whole.
            kept.admin_key = Some(dev_admin_key());
            let temp =
                write_dev_secrets(dir, &kept).map_err(|e| problem(format!("cannot update {}: {e}", path.display())))?;
            std::fs::rename(&temp, &path).map_err(|e| problem(format!("cannot update {}: {e}", path.display())))?;
        }
        return Ok(kept);
    }
    std::fs::create_dir_all(dir).map_err(|e| problem(format!("cannot create {}: {e}", dir.display())))?;
    let fresh = DevSecrets {
        agent_secret: hex(Secret::random().expose()),
        jwt_secret: hex(Secret::random().expose()),
        admin_key: Some(dev_admin_key()),
    };
    // Written whole under a temporary name, then linked into place: a crash never leaves half a file, and if
    // another process got there first, its secrets win and we read them.
    let temp =
        write_dev_secrets(dir, &fresh).map_err(|e| problem(format!("cannot write in {}: {e}", dir.display())))?;
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            tracing::warn!(
                file = %path.display(),
                "development: generated secrets once and kept them in the data directory (set DEV_AGENT_SECRET and \
                 DEV_JWT_SECRET to choose your own)"
            );
            Ok(fresh)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(problem(format!("cannot create {}: {e}", path.display()))),
    }
}

/// One secret: the environment's own variable `specific`; in development also the shared fallback `generic`,
/// then `generated` (kept in the embedded store's directory, or else ephemeral).
fn one(
    env: &dyn Fn(&str) -> Option<String>,
    environment: Environment,
    specific: &'static str,
    generic: &'static str,
    generated: Option<&str>,
) -> Result<(Secret, SecretSource), ConfigError> {
    let (value, source, var) = match (env(specific), env(generic)) {
        (Some(v), _) => (v, SecretSource::Specific, specific),
        (None, Some(v)) => {
            // A shared fallback would let one environment's tokens and credentials pass in another.
            if environment != Environment::Development {
                return Err(ConfigError::Invalid {
                    var: specific,
                    problem: format!("{} refuses the shared fallback {generic}; set {specific}", environment.as_str()),
                });
            }
            tracing::warn!(variable = generic, wanted = specific, "using the generic fallback secret");
            (v, SecretSource::Fallback, generic)
        }
        (None, None) if environment == Environment::Development => {
            if let Some(kept) = generated {
                return Ok((Secret::new(kept.as_bytes().to_vec()), SecretSource::Generated));
            }
            tracing::warn!(
                variable = specific,
                "NO SECRET CONFIGURED: generated an ephemeral one; tokens and agent credentials die with this process"
            );
            return Ok((Secret::random(), SecretSource::Generated));
        }
        (None, None) => {
            return Err(ConfigError::Invalid {
                var: specific,
                problem: "missing (required outside development)".into(),
            });
        }
    };
    if environment != Environment::Development && value.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::Invalid {
            var,
            problem: format!("too short: {} bytes, at least {MIN_SECRET_BYTES} required", value.len()),
        });
    }
    Ok((Secret::new(value.into_bytes()), source))
}

impl Secrets {
    /// Reads the environment's secrets. `keep_dir` is the embedded store's directory in development: secrets
    /// that have to be generated are generated once and kept there.
    pub fn from_lookup(
        env: &dyn Fn(&str) -> Option<String>,
        environment: Environment,
        keep_dir: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let [agent_var, jwt_var, previous_var, admin_var] = names(environment);
        let missing = env(agent_var).or_else(|| env("AGENT_SECRET")).is_none()
            || env(jwt_var).or_else(|| env("JWT_SECRET")).is_none()
            || env(admin_var).is_none();
        let kept = match keep_dir {
            Some(dir) if environment == Environment::Development && missing => Some(dev_secrets(dir)?),
            _ => None,
        };
        let admin = env(admin_var).or_else(|| kept.as_ref().and_then(|k| k.admin_key.clone())).map(String::into_bytes);
        if environment != Environment::Development && admin.as_ref().is_some_and(|a| a.len() < MIN_SECRET_BYTES) {
            return Err(ConfigError::Invalid { var: admin_var, problem: "too short: at least 32 bytes".into() });
        }
        let admin = admin.map(Secret::new);
        let (agent, agent_source) =
            one(env, environment, agent_var, "AGENT_SECRET", kept.as_ref().map(|k| k.agent_secret.as_str()))?;
        let (jwt, jwt_source) =
            one(env, environment, jwt_var, "JWT_SECRET", kept.as_ref().map(|k| k.jwt_secret.as_str()))?;
        let mut jwt_previous = Vec::new();
        // Comma-separated: several old keys may still sign live tokens during a rotation.
        for old in env(previous_var).unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if environment != Environment::Development && old.len() < MIN_SECRET_BYTES {
                return Err(ConfigError::Invalid {
                    var: previous_var,
                    problem: "a previous secret is too short".into(),
                });
            }
            jwt_previous.push(Secret::new(old.as_bytes().to_vec()));
        }
        Ok(Self { agent, jwt, jwt_previous, agent_source, jwt_source, admin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    const LONG: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn secrets_never_print() {
        let s = Secret::new(b"hunter2hunter2".to_vec());
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
    }

    #[test]
    fn production_requires_specific_long_secrets() {
        let missing = Secrets::from_lookup(&lookup(&[]), Environment::Production, None).unwrap_err();
        assert!(missing.to_string().contains("PROD_AGENT_SECRET"), "{missing}");
        let fallback = Secrets::from_lookup(
            &lookup(&[("AGENT_SECRET", LONG), ("JWT_SECRET", LONG)]),
            Environment::Production,
            None,
        )
        .unwrap_err();
        assert!(fallback.to_string().contains("fallback"), "{fallback}");
        let short = Secrets::from_lookup(
            &lookup(&[("PROD_AGENT_SECRET", "short"), ("PROD_JWT_SECRET", LONG)]),
            Environment::Production,
            None,
        )
        .unwrap_err();
        assert!(short.to_string().contains("too short"), "{short}");
        let ok = Secrets::from_lookup(
            &lookup(&[("PROD_AGENT_SECRET", LONG), ("PROD_JWT_SECRET", LONG)]),
            Environment::Production,
            None,
        )
        .unwrap();
        assert_eq!(ok.jwt_source, SecretSource::Specific);
    }

    #[test]
    fn only_development_accepts_the_fallback_and_generates() {
        let fallback = lookup(&[("AGENT_SECRET", LONG), ("JWT_SECRET", LONG)]);
        let staging = Secrets::from_lookup(&fallback, Environment::Staging, None).unwrap_err();
        assert!(staging.to_string().contains("STAGING_AGENT_SECRET"), "{staging}");
        let dev = Secrets::from_lookup(&fallback, Environment::Development, None).unwrap();
        assert_eq!(dev.agent_source, SecretSource::Fallback);
        let dev = Secrets::from_lookup(&lookup(&[]), Environment::Development, None).unwrap();
        assert_eq!(dev.jwt_source, SecretSource::Generated);
        assert_eq!(dev.jwt.expose().len(), MIN_SECRET_BYTES);
    }

    #[test]
    fn development_keeps_generated_secrets_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = Secrets::from_lookup(&lookup(&[]), Environment::Development, Some(dir.path())).unwrap();
        let again = Secrets::from_lookup(&lookup(&[]), Environment::Development, Some(dir.path())).unwrap();
        assert_eq!((first.agent.expose(), first.jwt.expose()), (again.agent.expose(), again.jwt.expose()));
        assert_ne!(first.agent.expose(), first.jwt.expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(DEV_SECRETS_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A variable set by the developer wins over the kept file.
        let chosen =
            Secrets::from_lookup(&lookup(&[("DEV_JWT_SECRET", LONG)]), Environment::Development, Some(dir.path()))
                .unwrap();
        assert_eq!(chosen.jwt.expose(), LONG.as_bytes());
        assert_eq!(chosen.agent.expose(), first.agent.expose());
        // Never outside development.
        let staging = tempfile::tempdir().unwrap();
        assert!(Secrets::from_lookup(&lookup(&[]), Environment::Staging, Some(staging.path())).is_err());
        assert!(!staging.path().join(DEV_SECRETS_FILE).exists());
    }

    #[test]
    fn key_ids_differ_per_secret_and_are_stable() {
        let a = Secret::new(LONG.as_bytes().to_vec());
        assert_eq!(a.key_id(), Secret::new(LONG.as_bytes().to_vec()).key_id());
        assert_ne!(a.key_id(), Secret::random().key_id());
        assert_eq!(a.key_id().len(), 12);
    }
}
