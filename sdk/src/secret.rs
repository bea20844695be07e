//! The agent's credential secret.

use std::fmt;

/// The secret an agent logs in with. `Debug` prints `[redacted]`, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentSecret(String);

impl AgentSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AgentSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::AgentSecret;

    #[test]
    fn debug_never_shows_the_secret() {
        assert_eq!(format!("{:?}", AgentSecret::new("cas_TOPSECRET")), "AgentSecret([redacted])");
    }
}
