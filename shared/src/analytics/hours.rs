//! The hour as the unit of every analytics item: its key text, how long its items are kept, and the read of a
//! partition's items over a range of hours.

use crate::store::{DynStore, Item, Query, StoreError};

/// How long hour items are kept, in seconds: analytics reach back 400 days at most.
pub const RETENTION_SECS: i64 = 400 * 86_400;

/// The hour key of a time: `YYYY-MM-DDTHH` (UTC), so keys sort as time.
pub fn hour_of(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}T{:02}", at.year(), u8::from(at.month()), at.day(), at.hour())
}

/// Every item of `partition` whose sort key is `{hour}#{name}` with an hour from `from` to `to` (inclusive), in
/// key order, as (hour, name, item).
pub async fn read(
    store: &DynStore,
    partition: String,
    from: &str,
    to: &str,
) -> Result<Vec<(String, String, Item)>, StoreError> {
    let mut found = Vec::new();
    let mut cursor = None;
    loop {
        // `~` sorts after every character of a type name or route template: the last hour is wholly inside.
        let query = Query::partition(partition.clone()).between(format!("{from}#"), format!("{to}#~")).after(cursor);
        let page = store.query(query.limit(500)).await?;
        for item in page.items {
            let Some((hour, name)) =
                item.key().and_then(|k| k.sk.split_once('#').map(|(h, n)| (h.to_owned(), n.to_owned())))
            else {
                continue;
            };
            found.push((hour, name, item));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_sort_as_time() {
        let at = time::macros::datetime!(2026-12-04 09:59:59 UTC);
        assert_eq!(hour_of(at), "2026-12-04T09");
        assert!(hour_of(at) < hour_of(at + time::Duration::seconds(1)));
        assert_eq!(hour_of(time::macros::datetime!(2026-12-04 01:30 +02:00)), "2026-12-03T23");
    }
}
