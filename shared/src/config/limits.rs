//! Rate-limit settings: tiers of quotas per route class, the agents' quota, and what each class does when the
//! store cannot count (fail open or closed).

use std::collections::BTreeMap;

use super::{ConfigError, Lookup};

/// A limit: `limit` requests per `window_secs`, windows aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub window_secs: u32,
}

impl Quota {
    /// `N/SECS`, e.g. `10/60`.
    pub fn parse(text: &str) -> Option<Self> {
        let (limit, window) = text.trim().split_once('/')?;
        let quota = Self { limit: limit.trim().parse().ok()?, window_secs: window.trim().parse().ok()? };
        (quota.limit >= 1 && (1..=86_400).contains(&quota.window_secs)).then_some(quota)
    }

    /// The largest block one lease may take: a tenth of the quota, so what a frozen instance strands is bounded
    /// and small quotas stay (nearly) exact.
    pub fn max_lease(self) -> u32 {
        (self.limit / 10).max(1)
    }
}

/// Routes are limited by class: delegation (creating work) is dearer than everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    General,
    Delegation,
}

impl RateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::General => "general",
            Self::Delegation => "delegation",
        }
    }
}

/// One tier's quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub general: Quota,
    pub delegation: Quota,
}

impl Tier {
    pub fn quota(&self, class: RateClass) -> Quota {
        match class {
            RateClass::General => self.general,
            RateClass::Delegation => self.delegation,
        }
    }
}

/// The tier a key gets when none is named.
pub const DEFAULT_TIER: &str = "standard";
/// The default: 10 delegations a minute (task creation is the expensive call); everything else 600.
const DEFAULT_TIERS: &str = "standard:600/60:10/60,premium:3000/60:100/60";

#[derive(Debug, Clone)]
pub struct RateLimits {
    pub tiers: BTreeMap<String, Tier>,
    /// Each agent's quota (all agent routes are general).
    pub agent: Quota,
    /// Each client address's quota on the unauthenticated credential routes (token issue, refresh, revoke).
    pub credential: Quota,
    /// Failed authentications (bad keys, tokens, secrets, signatures) a client address may make per window before
    /// it is refused with 429 (IPv6 addresses count by their /64).
    pub auth_failures: Quota,
    /// When the store cannot count: `true` admits (fail open), `false` answers 503 (fail closed).
    pub fail_open_general: bool,
    pub fail_open_delegation: bool,
}

impl RateLimits {
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.get(name)
    }

    pub fn fail_open(&self, class: RateClass) -> bool {
        match class {
            RateClass::General => self.fail_open_general,
            RateClass::Delegation => self.fail_open_delegation,
        }
    }

    pub(super) fn from_lookup(env: Lookup<'_>) -> Result<Self, ConfigError> {
        let var = "CLOUD_AGENT_RATE_TIERS";
        let text = env(var).unwrap_or_else(|| DEFAULT_TIERS.to_owned());
        let mut tiers = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || ConfigError::Invalid {
                var,
                problem: format!("{entry:?}: write name:general:delegation, e.g. standard:600/60:10/60"),
            };
            let mut parts = entry.split(':');
            let (Some(name), Some(general), Some(delegation), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let tier = Tier {
                general: Quota::parse(general).ok_or_else(bad)?,
                delegation: Quota::parse(delegation).ok_or_else(bad)?,
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(bad());
            }
            tiers.insert(name.to_owned(), tier);
        }
        if !tiers.contains_key(DEFAULT_TIER) {
            return Err(ConfigError::Invalid { var, problem: format!("must define the tier {DEFAULT_TIER}") });
        }
        // One quota variable: `N/SECS`, or the default when unset.
        let quota = |var: &'static str, limit: u32| match env(var) {
            None => Ok(Quota { limit, window_secs: 60 }),
            Some(text) => Quota::parse(&text)
                .ok_or_else(|| ConfigError::Invalid { var, problem: format!("{text:?}: write N/SECS") }),
        };
        let agent = quota("CLOUD_AGENT_RATE_AGENT", 1200)?;
        let credential = quota("CLOUD_AGENT_RATE_CREDENTIAL", 120)?;
        let auth_failures = quota("CLOUD_AGENT_AUTH_FAILURES", 30)?;
        let fail = |var: &'static str, default: bool| match env(var).as_deref() {
            None => Ok(default),
            Some("open") => Ok(true),
            Some("closed") => Ok(false),
            Some(other) => Err(ConfigError::Invalid { var, problem: format!("{other:?}: use open or closed") }),
        };
        Ok(Self {
            tiers,
            agent,
            credential,
            auth_failures,
            fail_open_general: fail("CLOUD_AGENT_RATE_FAIL_GENERAL", true)?,
            fail_open_delegation: fail("CLOUD_AGENT_RATE_FAIL_DELEGATION", false)?,
        })
    }
}
