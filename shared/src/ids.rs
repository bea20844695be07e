//! Ids that cross the API and end up inside table keys, parsed at the edge.

use serde::{Deserialize, Serialize};

/// A user id: the tenant an agent works for. 1–128 visible ASCII characters without `#`, the key separator, so
/// `TASK#{user}#{task}` can never be read two ways.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

/// A malformed id; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(pub(crate) &'static str);

impl UserId {
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let ok = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if ok { Ok(Self(text.to_owned())) } else { Err(InvalidId("user id: 1-128 visible ASCII characters, no #")) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id an agent reports progress under: 1–128 of `A-Z a-z 0-9 . _ - :`. Chosen by the agent (it may be a
/// delegated [`TaskId`] it works on, or its own label); scoped to its user in the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProgressTaskId(String);

impl ProgressTaskId {
    pub const RULE: &'static str = "task_id must be 1-128 characters of A-Z a-z 0-9 . _ - :";

    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let ok = !text.is_empty()
            && text.len() <= 128
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
        if ok { Ok(Self(text.to_owned())) } else { Err(InvalidId(Self::RULE)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A delegated task's id: `t_` and a UUIDv7 in hex, so ids sort by creation time (the tenant listing relies on it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

impl TaskId {
    pub const RULE: &'static str = "a task id is t_ and 32 lowercase hex digits";

    pub fn generate() -> Self {
        Self(format!("t_{}", uuid::Uuid::now_v7().simple()))
    }

    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let ok = text.len() == 34
            && text.starts_with("t_")
            && text[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok { Ok(Self(text.to_owned())) } else { Err(InvalidId(Self::RULE)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TaskId> for String {
    fn from(value: TaskId) -> Self {
        value.0
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A batch id (the idempotency key of a progress batch): 1–128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BatchId(String);

impl BatchId {
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let ok = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
        if ok { Ok(Self(text.to_owned())) } else { Err(InvalidId("batch id: 1-128 visible ASCII characters")) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant: who owns an API key, its audit trail and what it creates. 1–64 of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub const RULE: &'static str = "tenant must be 1-64 characters of A-Z a-z 0-9 . _ -";

    /// The tenant of the bootstrap admin key, and of keys created without naming one.
    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The default tenant's id.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok { Ok(Self(text.to_owned())) } else { Err(InvalidId(Self::RULE)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `TryFrom<String>`, `Into<String>` and `Display` for the string newtypes above.
macro_rules! string_id {
    ($($id:ident),*) => {$(
        impl TryFrom<String> for $id {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$id> for String {
            fn from(value: $id) -> Self {
                value.0
            }
        }

        impl std::fmt::Display for $id {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

string_id!(UserId, ProgressTaskId, BatchId, TenantId);

/// A fresh random id (UUIDv4 without dashes): token ids, family ids, leases and generated batch ids.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_cannot_contain_the_key_separator() {
        assert!(UserId::parse("user-1").is_ok());
        assert!(UserId::parse("a#b").is_err());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("with space").is_err());
        assert!(UserId::parse(&"u".repeat(129)).is_err());
    }

    #[test]
    fn task_and_batch_ids_are_parsed_at_the_edge() {
        assert!(ProgressTaskId::parse("build-42:step.1_a").is_ok());
        for bad in ["", "a b", "a#b", "a/b"] {
            assert!(ProgressTaskId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ProgressTaskId::parse(&"t".repeat(129)).is_err());
        let parsed: Result<ProgressTaskId, _> = serde_json::from_str("\"bad id\"");
        assert!(parsed.unwrap_err().to_string().contains("task_id must be"));
        assert!(BatchId::parse("b-1").is_ok() && BatchId::parse("with space").is_err());
    }
}
