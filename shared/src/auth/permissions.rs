//! Roles and permissions: the one table of who may do what. Routes declare the permission they need in their
//! [`crate::route::RouteSpec`]; the perimeter layer checks it against the caller's grants. Agent tokens carry the
//! agent-only permissions and nothing else, so no operator credential can act as an agent and no agent token can
//! reach an operator route.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One thing a route lets its caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    TaskCreate,
    TaskRead,
    AgentRead,
    AgentManage,
    KeyManage,
    AuditRead,
    MetricsRead,
    ContextWrite,
    /// Agent only: the agent's own identity (`/agent/me`).
    AgentSelf,
    /// Agent only: post progress and read its own tasks' history.
    ProgressWrite,
    /// Agent only: read the context of the user it works for.
    ContextRead,
    /// Agent only: report its own health.
    HealthReport,
}

impl Permission {
    /// Every permission, in the README table's order.
    pub const ALL: [Self; 12] = [
        Self::TaskCreate,
        Self::TaskRead,
        Self::AgentRead,
        Self::AgentManage,
        Self::KeyManage,
        Self::AuditRead,
        Self::MetricsRead,
        Self::ContextWrite,
        Self::AgentSelf,
        Self::ProgressWrite,
        Self::ContextRead,
        Self::HealthReport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskCreate => "task:create",
            Self::TaskRead => "task:read",
            Self::AgentRead => "agent:read",
            Self::AgentManage => "agent:manage",
            Self::KeyManage => "key:manage",
            Self::AuditRead => "audit:read",
            Self::MetricsRead => "metrics:read",
            Self::ContextWrite => "context:write",
            Self::AgentSelf => "agent:self",
            Self::ProgressWrite => "progress:write",
            Self::ContextRead => "context:read",
            Self::HealthReport => "health:report",
        }
    }

    /// Held only by agent tokens.
    pub fn is_agent_only(self) -> bool {
        AGENT.contains(&self)
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's role: what an API key or an identity provider's user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Analyst,
    Viewer,
}

impl Role {
    pub const ALL: [Self; 4] = [Self::Admin, Self::Operator, Self::Analyst, Self::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Analyst => "analyst",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// The role's grants: the one permission table (the README prints it from here, see `tests/api/perimeter.rs`).
    pub fn permissions(self) -> &'static [Permission] {
        use Permission as P;
        match self {
            Self::Admin => &[
                P::TaskCreate,
                P::TaskRead,
                P::AgentRead,
                P::AgentManage,
                P::KeyManage,
                P::AuditRead,
                P::MetricsRead,
                P::ContextWrite,
            ],
            Self::Operator => &[P::TaskCreate, P::TaskRead, P::AgentRead, P::MetricsRead, P::ContextWrite],
            Self::Analyst => &[P::TaskRead, P::AgentRead, P::AuditRead, P::MetricsRead],
            Self::Viewer => &[P::TaskRead, P::AgentRead],
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent token grants.
pub const AGENT: &[Permission] =
    &[Permission::AgentSelf, Permission::ProgressWrite, Permission::ContextRead, Permission::HealthReport];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_role_holds_an_agent_permission_and_admin_holds_every_operator_one() {
        for role in Role::ALL {
            assert!(role.permissions().iter().all(|p| !p.is_agent_only()), "{role}");
        }
        for p in Permission::ALL.into_iter().filter(|p| !p.is_agent_only()) {
            assert!(Role::Admin.allows(p), "{p}");
        }
    }

    #[test]
    fn roles_narrow_from_admin_to_viewer() {
        for (wider, narrower) in
            [(Role::Admin, Role::Operator), (Role::Admin, Role::Analyst), (Role::Analyst, Role::Viewer)]
        {
            assert!(narrower.permissions().iter().all(|p| wider.allows(*p)), "{wider} ⊇ {narrower}");
        }
        assert_eq!(Role::parse(" Operator "), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }
}
