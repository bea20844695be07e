//! Paging cursors as clients see them. A cursor is the store's position sealed with HMAC-SHA256 under a server
//! key, and bound to a *scope*: the route and the owner's partition that issued it. Anything a client changes —
//! one byte of the position, the scope it is replayed against, a cursor made up from scratch — fails the seal
//! and is refused as 422 before the store is asked. So nothing a client sends back can move a query into
//! another tenant's data.
//!
//! Format: `base64url(position) "." base64url(first 16 bytes of HMAC(key, "v1" 0 scope 0 position))`. The
//! position is not secret (it is a key the client's own query reached); the MAC makes it unforgeable.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::secrets::{Secret, constant_time_eq};
use crate::store::Cursor;

/// Bytes of MAC kept in a cursor: 128 bits, beyond guessing.
const TAG_BYTES: usize = 16;
/// Longest cursor text accepted: positions are two keys (≤ 3 KiB), so anything longer is not ours. (The
/// routes declare it as the `cursor` parameter's maxLength.)
const MAX_CURSOR_CHARS: usize = 8 * 1024;

/// Why a cursor was refused. One answer for every case, so the refusal tells a forger nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: pass back the next_cursor of the previous page of the same request, unchanged")]
pub struct CursorError;

/// Seals and opens cursors with this environment's cursor key.
#[derive(Clone)]
pub struct CursorKey(Secret);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey([redacted])")
    }
}

impl CursorKey {
    /// Derives the cursor key from a server secret (a separate key per purpose: a cursor is never a token).
    pub fn derive(secret: &Secret) -> Self {
        Self(Secret::new(secret.mac(b"cloud-agent paging cursor key v1").to_vec()))
    }

    fn tag(&self, scope: &str, position: &[u8]) -> [u8; 32] {
        let mut message = Vec::with_capacity(4 + scope.len() + position.len());
        message.extend_from_slice(b"v1\0");
        message.extend_from_slice(scope.as_bytes());
        message.push(0);
        message.extend_from_slice(position);
        self.0.mac(&message)
    }

    /// The text a client gets as `next_cursor`.
    pub fn seal(&self, scope: &str, cursor: &Cursor) -> String {
        let position = cursor.to_bytes();
        let tag = self.tag(scope, &position);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&position), URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES]))
    }

    /// The cursor a client sent back, if this key sealed it for this very scope.
    pub fn open(&self, scope: &str, text: &str) -> Result<Cursor, CursorError> {
        if text.len() > MAX_CURSOR_CHARS {
            return Err(CursorError);
        }
        let (position, tag) = text.split_once('.').ok_or(CursorError)?;
        let position = URL_SAFE_NO_PAD.decode(position).map_err(|_| CursorError)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| CursorError)?;
        if !constant_time_eq(&tag, &self.tag(scope, &position)[..TAG_BYTES]) {
            return Err(CursorError);
        }
        Cursor::from_bytes(&position).ok_or(CursorError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Item, Key, Query, Store as _};

    async fn a_cursor() -> Cursor {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
        for sk in ["E#1", "E#2"] {
            store.put(Item::new(&Key::new("P", sk)), None).await.unwrap();
        }
        store.query(Query::partition("P").limit(1)).await.unwrap().next.unwrap()
    }

    #[tokio::test]
    async fn a_sealed_cursor_opens_only_unchanged_and_in_its_scope() {
        let key = CursorKey::derive(&Secret::new(b"0123456789abcdef0123456789abcdef".to_vec()));
        let cursor = a_cursor().await;
        let text = key.seal("progress:user-1:t1", &cursor);
        assert_eq!(key.open("progress:user-1:t1", &text), Ok(cursor.clone()));
        assert_eq!(key.open("progress:user-2:t1", &text), Err(CursorError), "bound to its scope");
        let other = CursorKey::derive(&Secret::new(b"another key, another environment!".to_vec()));
        assert_eq!(other.open("progress:user-1:t1", &text), Err(CursorError), "bound to its key");
        // Flip each character of the text in turn: none of the variants opens.
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != text {
                assert_eq!(key.open("progress:user-1:t1", &tampered), Err(CursorError), "byte {i}");
            }
        }
        assert_eq!(key.open("progress:user-1:t1", ""), Err(CursorError));
        assert_eq!(key.open("progress:user-1:t1", &"A".repeat(10_000)), Err(CursorError));
    }
}
