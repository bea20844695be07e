//! The embedded backend: one redb file. Chosen because redb is pure Rust (no C toolchain, builds anywhere
//! cargo does), ACID with fsync'd commits by default, keeps keys ordered (sort-key queries are range scans),
//! and serialises writers — so a conditional write is one write transaction, exactly as atomic as DynamoDB's.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase as _, ReadableTable, Table, TableDefinition};

use super::{
    CancelReason, Condition, Cursor, Index, Item, Key, Page, Position, Query, Store, StoreError, TxOp, Update, WriteOp,
    now_epoch, validate_batch, validate_transaction, validate_update,
};

/// Items by primary key; the value is the item as DynamoDB JSON.
const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
/// The gsi1 index: (gsi1pk, gsi1sk, pk, sk) → nothing; items are read from `ITEMS`.
const GSI1: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("gsi1");

/// File name inside the data directory.
pub const FILE_NAME: &str = "cloudagent.redb";

/// The embedded store. Cheap to clone; all clones share one open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`. Fails if another process holds the file.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| internal(format!("cannot open {}: {e}", path.display())))?;
        // Create both tables up front so readers never meet a missing table.
        let txn = db.begin_write().map_err(internal)?;
        txn.open_table(ITEMS).map_err(internal)?;
        txn.open_table(GSI1).map_err(internal)?;
        txn.commit().map_err(internal)?;
        Ok(Self { db: Arc::new(db), path })
    }

    /// Deletes expired items every `every`, like DynamoDB's TTL process, so the file does not grow forever.
    pub fn spawn_reaper(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "purged expired items"),
                    Err(e) => tracing::warn!(error = %e, "purging expired items failed"),
                }
            }
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes expired items, as DynamoDB's TTL process does (readers never see them either way).
    pub async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.blocking(|db| {
            let now = now_epoch();
            let txn = db.begin_write().map_err(internal)?;
            let removed = {
                let mut items = txn.open_table(ITEMS).map_err(internal)?;
                let mut gsi = txn.open_table(GSI1).map_err(internal)?;
                let mut expired = Vec::new();
                for entry in items.iter().map_err(internal)? {
                    let (_, value) = entry.map_err(internal)?;
                    let item = decode(value.value())?;
                    if item.is_expired(now) {
                        expired.push(item);
                    }
                }
                for item in &expired {
                    remove_item(&mut items, &mut gsi, item)?;
                }
                expired.len()
            };
            txn.commit().map_err(internal)?;
            Ok(removed)
        })
        .await
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(internal)?
    }

    /// Runs `work` inside one write transaction and commits (durably) only if it succeeds.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tables<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            let out = {
                let mut tables = Tables {
                    items: txn.open_table(ITEMS).map_err(internal)?,
                    gsi: txn.open_table(GSI1).map_err(internal)?,
                    now: now_epoch(),
                };
                work(&mut tables)?
            };
            txn.commit().map_err(internal)?;
            Ok(out)
        })
        .await
    }
}

fn decode(bytes: &[u8]) -> Result<Item, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| internal(format!("corrupt item: {e}")))
}

fn encode(item: &Item) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(item).map_err(internal)
}

fn remove_item(
    items: &mut Table<(&str, &str), &[u8]>,
    gsi: &mut Table<(&str, &str, &str, &str), ()>,
    item: &Item,
) -> Result<(), StoreError> {
    if let Some(key) = item.key() {
        items.remove((key.pk.as_str(), key.sk.as_str())).map_err(internal)?;
        if let Some((gpk, gsk)) = item.gsi1_key() {
            gsi.remove((gpk, gsk, key.pk.as_str(), key.sk.as_str())).map_err(internal)?;
        }
    }
    Ok(())
}

/// A gsi1 index key: (gsi1pk, gsi1sk, pk, sk).
type G<'a> = (&'a str, &'a str, &'a str, &'a str);

/// The open tables of one write transaction.
struct Tables<'txn> {
    items: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    gsi: Table<'txn, (&'static str, &'static str, &'static str, &'static str), ()>,
    now: i64,
}

impl Tables<'_> {
    /// The stored item, expired or not.
    fn raw(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        match self.items.get((key.pk.as_str(), key.sk.as_str())).map_err(internal)? {
            Some(guard) => decode(guard.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The item as readers and conditions see it: expired items are absent.
    fn live(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        Ok(self.raw(key)?.filter(|item| !item.is_expired(self.now)))
    }

    fn check(&self, key: &Key, condition: Option<&Condition>) -> Result<Option<Item>, StoreError> {
        let current = self.live(key)?;
        match condition {
            Some(c) if !c.evaluate(current.as_ref()) => {
                Err(StoreError::ConditionFailed { current: current.map(Box::new) })
            }
            _ => Ok(current),
        }
    }

    /// Writes an item whose limits were already checked: puts by `validate_batch`, `validate_transaction` or
    /// [`Tables::put`], updates by [`Tables::update`] on their result. Each item is checked exactly once.
    fn write_item(&mut self, item: &Item) -> Result<(), StoreError> {
        let key = item.key().ok_or_else(|| StoreError::Validation("item needs string pk and sk".into()))?;
        if let Some(old) = self.raw(&key)? {
            remove_item(&mut self.items, &mut self.gsi, &old)?;
        }
        let bytes = encode(item)?;
        self.items.insert((key.pk.as_str(), key.sk.as_str()), bytes.as_slice()).map_err(internal)?;
        if let Some((gpk, gsk)) = item.gsi1_key() {
            self.gsi.insert((gpk, gsk, key.pk.as_str(), key.sk.as_str()), ()).map_err(internal)?;
        }
        Ok(())
    }

    fn delete_key(&mut self, key: &Key) -> Result<(), StoreError> {
        if let Some(old) = self.raw(key)? {
            remove_item(&mut self.items, &mut self.gsi, &old)?;
        }
        Ok(())
    }

    fn put(&mut self, item: &Item, condition: Option<&Condition>) -> Result<(), StoreError> {
        let key = item.key().ok_or_else(|| StoreError::Validation("item needs string pk and sk".into()))?;
        // DynamoDB's own limits, before the condition (as DynamoDB refuses such an item before evaluating it).
        item.check_limits()?;
        self.check(&key, condition)?;
        self.write_item(item)
    }

    fn update(&mut self, key: &Key, update: &Update, condition: Option<&Condition>) -> Result<Item, StoreError> {
        let current = self.check(key, condition)?;
        let mut item = current.unwrap_or_else(|| Item::new(key));
        update.apply(&mut item).map_err(StoreError::Validation)?;
        // Only the result shows whether the update outgrows DynamoDB's limits.
        item.check_limits()?;
        self.write_item(&item)?;
        Ok(item)
    }

    fn delete(&mut self, key: &Key, condition: Option<&Condition>) -> Result<Option<Item>, StoreError> {
        let current = self.check(key, condition)?;
        self.delete_key(key)?;
        Ok(current)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let items = txn.open_table(ITEMS).map_err(internal)?;
            let found = items.get((key.pk.as_str(), key.sk.as_str())).map_err(internal)?;
            match found {
                Some(guard) => Ok(Some(decode(guard.value())?).filter(|i| !i.is_expired(now_epoch()))),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.write(move |t| t.put(&item, condition.as_ref())).await
    }

    async fn update(&self, key: &Key, update: Update, condition: Option<Condition>) -> Result<Item, StoreError> {
        validate_update(&update)?;
        let key = key.clone();
        self.write(move |t| t.update(&key, &update, condition.as_ref())).await
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        self.write(move |t| t.delete(&key, condition.as_ref())).await
    }

    /// One commit for all: each update is still its own (a refused one writes nothing and leaves the rest).
    async fn update_each(&self, updates: Vec<(Key, Update)>) -> Vec<Result<(), StoreError>> {
        let n = updates.len();
        let written = self
            .write(move |t| {
                Ok(updates
                    .iter()
                    .map(|(key, update)| validate_update(update).and_then(|()| t.update(key, update, None).map(drop)))
                    .collect::<Vec<_>>())
            })
            .await;
        written.unwrap_or_else(|e| (0..n).map(|_| Err(e.clone_kind())).collect())
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        query.validate()?;
        let start = query.start.as_ref().map(|c| c.position().clone());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let items = txn.open_table(ITEMS).map_err(internal)?;
            let now = now_epoch();
            let limit = query.limit as usize;
            let lowest = query.lowest_sort_key().to_owned();
            let mut page = Page::default();
            let mut examined = 0usize;
            let mut last: Option<Position> = None;
            // Bounds of the partition: (p, "") up to, not including, (p + "\0", ""), exactly one partition.
            let part = query.partition.as_str();
            let next_part = format!("{part}\0");
            match query.index {
                Index::Primary => {
                    let lower_sk = if query.forward { lowest.as_str() } else { "" };
                    let (lo, hi): (Bound<(&str, &str)>, Bound<(&str, &str)>) = match (&start, query.forward) {
                        (Some(p), true) => {
                            (Bound::Excluded((p.pk.as_str(), p.sk.as_str())), Bound::Excluded((next_part.as_str(), "")))
                        }
                        (Some(p), false) => {
                            (Bound::Included((part, lower_sk)), Bound::Excluded((p.pk.as_str(), p.sk.as_str())))
                        }
                        (None, _) => (Bound::Included((part, lower_sk)), Bound::Excluded((next_part.as_str(), ""))),
                    };
                    let range = items.range::<(&str, &str)>((lo, hi)).map_err(internal)?;
                    let iter: Box<dyn Iterator<Item = _>> =
                        if query.forward { Box::new(range) } else { Box::new(range.rev()) };
                    for entry in iter {
                        let (k, v) = entry.map_err(internal)?;
                        let (pk, sk) = k.value();
                        if !query.sort_key_matches(sk) {
                            if query.forward && query.past_the_end(sk) {
                                break;
                            }
                            continue;
                        }
                        examined += 1;
                        last = Some(Position { pk: pk.to_owned(), sk: sk.to_owned(), gsi: None });
                        let item = decode(v.value())?;
                        if !item.is_expired(now) {
                            page.items.push(item);
                        }
                        if examined == limit {
                            break;
                        }
                    }
                }
                Index::Gsi1 => {
                    let gsi = txn.open_table(GSI1).map_err(internal)?;
                    let first: G<'_> = (part, if query.forward { lowest.as_str() } else { "" }, "", "");
                    let end: G<'_> = (next_part.as_str(), "", "", "");
                    let (lo, hi): (Bound<G<'_>>, Bound<G<'_>>) = match (&start, query.forward) {
                        (Some(p), fwd) => {
                            let (gpk, gsk) = p
                                .gsi
                                .as_ref()
                                .ok_or_else(|| StoreError::Validation("cursor is not for gsi1".into()))?;
                            let at: G<'_> = (gpk.as_str(), gsk.as_str(), p.pk.as_str(), p.sk.as_str());
                            if fwd {
                                (Bound::Excluded(at), Bound::Excluded(end))
                            } else {
                                (Bound::Included(first), Bound::Excluded(at))
                            }
                        }
                        (None, _) => (Bound::Included(first), Bound::Excluded(end)),
                    };
                    let range = gsi.range::<G<'_>>((lo, hi)).map_err(internal)?;
                    let iter: Box<dyn Iterator<Item = _>> =
                        if query.forward { Box::new(range) } else { Box::new(range.rev()) };
                    for entry in iter {
                        let (k, ()) = (entry.map_err(internal)?.0, ());
                        let (gpk, gsk, pk, sk) = k.value();
                        if !query.sort_key_matches(gsk) {
                            if query.forward && query.past_the_end(gsk) {
                                break;
                            }
                            continue;
                        }
                        examined += 1;
                        last = Some(Position {
                            pk: pk.to_owned(),
                            sk: sk.to_owned(),
                            gsi: Some((gpk.to_owned(), gsk.to_owned())),
                        });
                        if let Some(guard) = items.get((pk, sk)).map_err(internal)? {
                            let item = decode(guard.value())?;
                            if !item.is_expired(now) {
                                page.items.push(item);
                            }
                        }
                        if examined == limit {
                            break;
                        }
                    }
                }
            }
            if examined == limit {
                page.next = last.map(Cursor::new);
            }
            Ok(page)
        })
        .await
    }

    async fn batch_write_once(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOp>, StoreError> {
        validate_batch(&ops)?;
        self.write(move |t| {
            for op in &ops {
                match op {
                    WriteOp::Put(item) => t.write_item(item)?,
                    WriteOp::Delete(key) => t.delete_key(key)?,
                }
            }
            // One local transaction: nothing is ever left unprocessed.
            Ok(Vec::new())
        })
        .await
    }

    async fn transact_write(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        self.write(move |t| {
            // Check every condition first, so the cancellation reasons name each failing operation,
            // then apply; the redb transaction is dropped (rolled back) on any error.
            let mut reasons = Vec::with_capacity(ops.len());
            let mut current = Vec::with_capacity(ops.len());
            for op in &ops {
                let (key, condition) = match op {
                    TxOp::Put { item, condition } => (item.key(), condition.as_ref()),
                    TxOp::Update { key, condition, .. } | TxOp::Delete { key, condition } => {
                        (Some(key.clone()), condition.as_ref())
                    }
                    TxOp::Check { key, condition } => (Some(key.clone()), Some(condition)),
                };
                let key = key.ok_or_else(|| StoreError::Validation("transaction item without key".into()))?;
                let live = t.live(&key)?;
                let holds = condition.is_none_or(|c| c.evaluate(live.as_ref()));
                reasons.push(if holds { CancelReason::None } else { CancelReason::ConditionalCheckFailed });
                // As DynamoDB with ReturnValuesOnConditionCheckFailure=ALL_OLD: puts and updates report the item.
                let reports = !holds && matches!(op, TxOp::Put { .. } | TxOp::Update { .. });
                current.push(live.filter(|_| reports));
            }
            if reasons.iter().any(|r| *r != CancelReason::None) {
                return Err(StoreError::TransactionCanceled { reasons, current });
            }
            for op in &ops {
                match op {
                    TxOp::Put { item, .. } => t.write_item(item)?,
                    TxOp::Update { key, update, .. } => {
                        t.update(key, update, None)?;
                    }
                    TxOp::Delete { key, .. } => t.delete_key(key)?,
                    TxOp::Check { .. } => {}
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_survives_reopen_and_purge_removes_only_expired() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.put(Item::new(&Key::new("A", "1")).with("v", 1i64), None).await.unwrap();
            store.put(Item::new(&Key::new("A", "2")).with("expires_at", now_epoch() - 1), None).await.unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get(&Key::new("A", "1")).await.unwrap().unwrap().get_i64("v"), Some(1));
        assert_eq!(store.purge_expired().await.unwrap(), 1);
        assert_eq!(store.purge_expired().await.unwrap(), 0);
        assert!(store.get(&Key::new("A", "1")).await.unwrap().is_some());
    }
}
