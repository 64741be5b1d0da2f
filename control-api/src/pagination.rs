//! Cursor pagination: `?limit=&cursor=` in, `{"items": [...], "next_cursor": ...}` out.
//!
//! A cursor is opaque to clients (hex of a resource-specific position such as the last id),
//! so the position format can change without breaking them. Lists are newest first.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// Items per page when the client does not say.
pub const DEFAULT_LIMIT: u32 = 50;
/// Most items per page.
pub const MAX_LIMIT: u32 = 100;

/// Query parameters of every list endpoint.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 50). Read as text so that a bad value is
    /// reported against this field rather than as an unreadable query string.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The validated page size.
    pub fn limit(&self) -> Result<u32, ApiError> {
        let Some(raw) = self.limit.as_deref() else {
            return Ok(DEFAULT_LIMIT);
        };
        match raw.parse::<u32>() {
            Ok(n @ 1..=MAX_LIMIT) => Ok(n),
            _ => Err(ApiError::invalid(
                "limit",
                format!("must be an integer between 1 and {MAX_LIMIT}"),
            )),
        }
    }

    /// The decoded cursor position, if any.
    pub fn position(&self) -> Result<Option<String>, ApiError> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }

    /// The SQL `LIMIT` fetching one extra row, which tells whether another page exists.
    pub fn fetch_limit(&self) -> Result<i64, ApiError> {
        Ok(i64::from(self.limit()?) + 1)
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched items; `position` gives the cursor of the
    /// last item returned.
    pub fn from_fetched(mut items: Vec<T>, limit: u32, position: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| encode_cursor(&position(last)))
        } else {
            None
        };
        Self { items, next_cursor }
    }
}

/// Makes a position opaque.
pub fn encode_cursor(position: &str) -> String {
    tollgate_core::hex::encode(position.as_bytes())
}

/// The 400 for a cursor this API did not hand out.
pub fn invalid_cursor() -> ApiError {
    ApiError::BadRequest {
        code: "invalid_cursor",
        field: Some("cursor".to_owned()),
        message: "is not a cursor returned by this API".to_owned(),
    }
}

/// Reads a cursor back; anything malformed is a 400 naming `cursor`.
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let invalid = invalid_cursor;
    if cursor.is_empty() || !cursor.len().is_multiple_of(2) || cursor.len() > 512 {
        return Err(invalid());
    }
    let bytes = tollgate_core::hex::decode(cursor).ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// Reads a position that a resource encoded; a mismatch is an invalid cursor.
pub fn parse_position<T: std::str::FromStr>(position: &str) -> Result<T, ApiError> {
    position.parse().map_err(|_| invalid_cursor())
}

/// The position of an item in a list ordered newest first by `(created_at, id)`:
/// `<created_at unix nanos>_<id>`.
pub fn created_position(created_at: time::OffsetDateTime, id: impl std::fmt::Display) -> String {
    format!("{}_{id}", created_at.unix_timestamp_nanos())
}

/// Where a page of a newest-first `(created_at, id)` list starts: `(None, None)` for the first
/// page, otherwise the `(created_at, id)` of the last item already seen.
pub fn after_created<T: std::str::FromStr>(
    query: &PageQuery,
) -> Result<(Option<time::OffsetDateTime>, Option<T>), ApiError> {
    let Some(position) = query.position()? else {
        return Ok((None, None));
    };
    let (nanos, id) = position.split_once('_').ok_or_else(invalid_cursor)?;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(parse_position(nanos)?)
        .map_err(|_| invalid_cursor())?;
    Ok((Some(at), Some(parse_position(id)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = encode_cursor("0190-abc_1");
        assert_eq!(decode_cursor(&cursor).unwrap(), "0190-abc_1");
        for bad in ["", "abc", "zz", "ff"] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().code(),
                "invalid_cursor",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_items_exist() {
        let page = Page::from_fetched(vec![5, 4, 3], 2, |n: &i32| n.to_string());
        assert_eq!(page.items, [5, 4]);
        assert_eq!(decode_cursor(&page.next_cursor.unwrap()).unwrap(), "4");
        let last = Page::from_fetched(vec![2], 2, |n: &i32| n.to_string());
        assert!(last.next_cursor.is_none());
    }

    #[test]
    fn limits_are_bounded() {
        let query = |limit: &str| PageQuery {
            limit: Some(limit.to_owned()),
            cursor: None,
        };
        assert_eq!(query("100").limit().unwrap(), 100);
        for bad in ["0", "101", "-1", "ten", "1.5"] {
            assert_eq!(
                query(bad).limit().unwrap_err().code(),
                "invalid_field",
                "{bad}"
            );
        }
    }
}
