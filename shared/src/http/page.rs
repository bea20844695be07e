//! The query parameters of a paged listing — `limit` and a sealed `cursor` — parsed once for every listing.

use serde::Deserialize;

use super::ApiError;
use crate::paging::CursorKey;
use crate::store::Cursor;

/// `?limit=&cursor=` of a listing (nothing else: an unknown parameter is a 400 naming it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

impl PageParams {
    /// The page size (default `default`, at most `max`) and the cursor, opened for `scope` — the listing and the
    /// tenant it belongs to, so a cursor cannot page into another tenant's items. 422 naming the parameter
    /// otherwise.
    pub fn open(
        &self,
        cursors: &CursorKey,
        scope: &str,
        default: u32,
        max: u32,
    ) -> Result<(u32, Option<Cursor>), ApiError> {
        let limit = self.limit.unwrap_or(default);
        if !(1..=max).contains(&limit) {
            return Err(ApiError::Unprocessable {
                detail: format!("limit must be 1-{max}"),
                pointer: Some("/limit".into()),
            });
        }
        Ok((limit, super::cursor_param(cursors, scope, self.cursor.as_deref())?))
    }
}
