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
pub struct InvalidId(&'static str);

impl UserId {
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let ok = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if ok { Ok(Self(text.to_owned())) } else { Err(InvalidId("user id: 1-128 visible ASCII characters, no #")) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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
}
