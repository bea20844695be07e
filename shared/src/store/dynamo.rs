//! The DynamoDB backend: one table (`pk`/`sk`, GSI `gsi1`, TTL on `expires_at`), built once per process.
//!
//! DynamoDB deletes expired items lazily (often days later), so every read filters them and every condition is
//! rewritten so that an expired item behaves exactly like an absent one — the same semantics as the embedded store.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, PutRequest, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
    Update as DynUpdate, WriteRequest,
};

use super::{
    CancelReason, Condition, Cursor, EXPIRES_AT, GSI1_PK, GSI1_SK, Index, Item, Key, Number, PK, Page, Position, Query,
    SK, Store, StoreError, TxOp, Update, Value, WriteOp, now_epoch, validate_batch, validate_transaction,
    validate_update,
};

/// Name of the one global secondary index.
pub const GSI1_NAME: &str = "gsi1";

pub use crate::config::DynamoConfig;

/// The DynamoDB store. Clones share one SDK client (and its connection pool).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// The parts of a request that address one item: the table, the key (or the whole item), and the expression
/// names and values its condition and update use. (The SDK has one builder type per operation.)
macro_rules! addressed {
    ($builder:expr, $table:expr, key = $key:expr, $expr:expr) => {
        $builder
            .table_name($table)
            .set_key(Some(key_map($key)))
            .set_expression_attribute_names($expr.names())
            .set_expression_attribute_values($expr.values())
    };
    ($builder:expr, $table:expr, item = $item:expr, $expr:expr) => {
        $builder
            .table_name($table)
            .set_item(Some(to_map($item)))
            .set_expression_attribute_names($expr.names())
            .set_expression_attribute_values($expr.values())
    };
}

impl DynamoStore {
    /// Builds the SDK client. No network I/O happens here; the first request opens the connection.
    pub async fn connect(config: &DynamoConfig) -> Self {
        // Serverless functions have seconds, not minutes: fail fast and let the caller's budget decide.
        let sdk = crate::aws::sdk_config(
            config.region.as_deref(),
            config.endpoint.as_deref(),
            Duration::from_secs(2),
            Duration::from_secs(5),
        )
        .await;
        Self { client: Client::new(&sdk), table: config.table.clone() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as template.yaml defines it (used by `cloudagent table create` and the tests).
    /// Returns false when it already existed.
    pub async fn create_table(&self) -> Result<bool, StoreError> {
        let s = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(internal)
        };
        let k = |name: &str, kind: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(internal)
        };
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(GSI1_NAME)
            .key_schema(k(GSI1_PK, KeyType::Hash)?)
            .key_schema(k(GSI1_SK, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .map_err(internal)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(s(PK)?)
            .attribute_definitions(s(SK)?)
            .attribute_definitions(s(GSI1_PK)?)
            .attribute_definitions(s(GSI1_SK)?)
            .key_schema(k(PK, KeyType::Hash)?)
            .key_schema(k(SK, KeyType::Range)?)
            .global_secondary_indexes(gsi)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => return Ok(false),
            Err(e) => return Err(map_error(&e)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(EXPIRES_AT)
                    .enabled(true)
                    .build()
                    .map_err(internal)?,
            )
            .send()
            .await
            .map_err(|e| map_error(&e))?;
        Ok(true)
    }

    /// Removes an expired item that DynamoDB's TTL process has not reaped yet, so a write can start afresh.
    async fn purge_if_expired(&self, key: &Key) -> Result<(), StoreError> {
        let mut expr = Expr::default();
        let cond = format!("{} <= {}", expr.name(EXPIRES_AT), expr.value(AttributeValue::N(now_epoch().to_string())));
        let out =
            addressed!(self.client.delete_item(), &self.table, key = key, expr).condition_expression(cond).send().await;
        match out {
            // Someone else already replaced it with a live item: our retry will see that one.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(map_error(&e)),
            Ok(_) => Ok(()),
        }
    }

    async fn update_once(&self, key: &Key, update: &Update, condition: Option<&Condition>) -> Result<Item, StoreError> {
        let mut expr = Expr::default();
        let update_expr = expr.update(update);
        let cond = expr.update_condition(condition);
        let out = addressed!(self.client.update_item(), &self.table, key = key, expr)
            .update_expression(update_expr)
            .condition_expression(cond)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => out.attributes.map(from_map).transpose()?.ok_or_else(|| internal("update returned no item")),
            Err(e) => Err(conditional_error(&e, |s| match s {
                UpdateItemError::ConditionalCheckFailedException(c) => c.item.clone(),
                _ => None,
            })?),
        }
    }

    async fn transact_once(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(ops.len());
        for op in ops {
            let mut expr = Expr::default();
            let item = match op {
                TxOp::Put { item, condition } => {
                    let cond = condition.as_ref().map(|c| expr.guarded(c));
                    TransactWriteItem::builder().put(
                        addressed!(Put::builder(), &self.table, item = item, expr)
                            .set_condition_expression(cond)
                            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                            .build()
                            .map_err(internal)?,
                    )
                }
                TxOp::Update { key, update, condition } => {
                    let update_expr = expr.update(update);
                    let cond = expr.update_condition(condition.as_ref());
                    TransactWriteItem::builder().update(
                        addressed!(DynUpdate::builder(), &self.table, key = key, expr)
                            .update_expression(update_expr)
                            .condition_expression(cond)
                            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                            .build()
                            .map_err(internal)?,
                    )
                }
                TxOp::Delete { key, condition } => {
                    let cond = condition.as_ref().map(|c| expr.guarded(c));
                    TransactWriteItem::builder().delete(
                        addressed!(Delete::builder(), &self.table, key = key, expr)
                            .set_condition_expression(cond)
                            .build()
                            .map_err(internal)?,
                    )
                }
                TxOp::Check { key, condition } => {
                    let cond = expr.guarded(condition);
                    TransactWriteItem::builder().condition_check(
                        addressed!(ConditionCheck::builder(), &self.table, key = key, expr)
                            .condition_expression(cond)
                            .build()
                            .map_err(internal)?,
                    )
                }
            };
            items.push(item.build());
        }
        let out = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        let Err(e) = out else { return Ok(()) };
        let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) = e.as_service_error() else {
            return Err(map_error(&e));
        };
        let now = now_epoch();
        let mut stale = Vec::new();
        let mut reasons = Vec::with_capacity(ops.len());
        let mut current = Vec::with_capacity(ops.len());
        for (op, reason) in ops.iter().zip(canceled.cancellation_reasons()) {
            let mut live = None;
            reasons.push(match reason.code() {
                None | Some("None") => CancelReason::None,
                Some("ConditionalCheckFailed") => {
                    let old = reason.item().cloned().map(from_map).transpose()?;
                    if old.as_ref().is_some_and(|i| i.is_expired(now)) && matches!(op, TxOp::Update { .. }) {
                        stale.extend(op.key());
                    }
                    live = old.filter(|i| !i.is_expired(now));
                    CancelReason::ConditionalCheckFailed
                }
                Some("TransactionConflict") => CancelReason::TransactionConflict,
                Some(other) => CancelReason::Other(other.to_owned()),
            });
            current.push(live);
        }
        if !stale.is_empty() {
            for key in &stale {
                self.purge_if_expired(key).await?;
            }
            return Err(StoreError::Internal(RETRY_AFTER_PURGE.into()));
        }
        Err(StoreError::TransactionCanceled { reasons, current })
    }
}

/// Marker error: an expired item was purged; the operation must run again.
const RETRY_AFTER_PURGE: &str = "retry after purging an expired item";

fn is_retry_after_purge(e: &StoreError) -> bool {
    matches!(e, StoreError::Internal(m) if m == RETRY_AFTER_PURGE)
}

#[async_trait]
impl Store for DynamoStore {
    fn backend(&self) -> &'static str {
        "dynamodb"
    }

    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let item = self.read(key).await?;
        Ok(item.filter(|i| !i.is_expired(now_epoch())))
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        item.key().ok_or_else(|| StoreError::Validation("item needs string pk and sk".into()))?;
        // The same typed refusal as the embedded store, without a round trip (DynamoDB would refuse it too).
        item.check_limits()?;
        let mut expr = Expr::default();
        let cond = condition.as_ref().map(|c| expr.guarded(c));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_map(&item)))
            .set_condition_expression(cond)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) => Err(conditional_error(&e, |s| match s {
                PutItemError::ConditionalCheckFailedException(c) => c.item.clone(),
                _ => None,
            })?),
        }
    }

    async fn update(&self, key: &Key, update: Update, condition: Option<Condition>) -> Result<Item, StoreError> {
        validate_update(&update)?;
        match self.update_once(key, &update, condition.as_ref()).await {
            // The guard failed on an expired, unreaped item: remove it and apply the update to a fresh item.
            Err(StoreError::ConditionFailed { current: None }) if self.raw_expired(key).await? => {
                self.purge_if_expired(key).await?;
                self.update_once(key, &update, condition.as_ref()).await
            }
            other => other,
        }
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<Option<Item>, StoreError> {
        let mut expr = Expr::default();
        let cond = condition.as_ref().map(|c| expr.guarded(c));
        let out = addressed!(self.client.delete_item(), &self.table, key = key, expr)
            .set_condition_expression(cond)
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.attributes.map(from_map).transpose()?.filter(|i| !i.is_expired(now_epoch()))),
            Err(e) => Err(conditional_error(&e, |s| match s {
                DeleteItemError::ConditionalCheckFailedException(c) => c.item.clone(),
                _ => None,
            })?),
        }
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        query.validate()?;
        let (pk_name, sk_name) = query.index.key_names();
        let mut expr = Expr::default();
        let mut key_cond =
            format!("{} = {}", expr.name(pk_name), expr.value(AttributeValue::S(query.partition.clone())));
        if let Some(prefix) = query.sk_prefix.as_ref().filter(|p| !p.is_empty()) {
            key_cond = format!(
                "{key_cond} AND begins_with({}, {})",
                expr.name(sk_name),
                expr.value(AttributeValue::S(prefix.clone()))
            );
        }
        if let Some((from, to)) = &query.sk_range {
            key_cond = format!(
                "{key_cond} AND {} BETWEEN {} AND {}",
                expr.name(sk_name),
                expr.value(AttributeValue::S(from.clone())),
                expr.value(AttributeValue::S(to.clone()))
            );
        }
        let filter = expr.live();
        let start = match &query.start {
            None => None,
            Some(cursor) => {
                let p = cursor.position().clone();
                let mut key = key_map(&Key::new(p.pk, p.sk));
                if query.index == Index::Gsi1 {
                    let (gpk, gsk) = p.gsi.ok_or_else(|| StoreError::Validation("cursor is not for gsi1".into()))?;
                    key.insert(GSI1_PK.into(), AttributeValue::S(gpk));
                    key.insert(GSI1_SK.into(), AttributeValue::S(gsk));
                }
                Some(key)
            }
        };
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(key_cond)
            .filter_expression(filter)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .limit(i32::try_from(query.limit).unwrap_or(i32::MAX))
            .scan_index_forward(query.forward)
            .set_exclusive_start_key(start);
        request = match query.index {
            Index::Primary => request.consistent_read(true),
            Index::Gsi1 => request.index_name(GSI1_NAME),
        };
        let out = request.send().await.map_err(|e| map_error(&e))?;
        let items = out.items.unwrap_or_default().into_iter().map(from_map).collect::<Result<Vec<_>, _>>()?;
        let next = match out.last_evaluated_key {
            None => None,
            Some(lek) => {
                let s = |name: &str| lek.get(name).and_then(|v| v.as_s().ok()).cloned();
                let pk = s(PK).ok_or_else(|| internal("LastEvaluatedKey without pk"))?;
                let sk = s(SK).ok_or_else(|| internal("LastEvaluatedKey without sk"))?;
                let gsi = s(GSI1_PK).zip(s(GSI1_SK)).filter(|_| query.index == Index::Gsi1);
                Some(Cursor::new(Position { pk, sk, gsi }))
            }
        };
        Ok(Page { items, next })
    }

    async fn batch_write_once(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOp>, StoreError> {
        validate_batch(&ops)?;
        let requests = ops
            .iter()
            .map(|op| {
                Ok(match op {
                    WriteOp::Put(item) => WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(to_map(item))).build().map_err(internal)?)
                        .build(),
                    WriteOp::Delete(key) => WriteRequest::builder()
                        .delete_request(DeleteRequest::builder().set_key(Some(key_map(key))).build().map_err(internal)?)
                        .build(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let out = self
            .client
            .batch_write_item()
            .request_items(&self.table, requests)
            .send()
            .await
            .map_err(|e| map_error(&e))?;
        let mut unprocessed = Vec::new();
        for request in out.unprocessed_items.unwrap_or_default().remove(&self.table).unwrap_or_default() {
            if let Some(put) = request.put_request {
                unprocessed.push(WriteOp::Put(from_map(put.item)?));
            } else if let Some(delete) = request.delete_request {
                let item = from_map(delete.key)?;
                unprocessed
                    .push(WriteOp::Delete(item.key().ok_or_else(|| internal("unprocessed delete without key"))?));
            }
        }
        Ok(unprocessed)
    }

    async fn transact_write(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        match self.transact_once(&ops).await {
            Err(e) if is_retry_after_purge(&e) => self.transact_once(&ops).await,
            other => other,
        }
    }
}

impl DynamoStore {
    /// True when an item is stored under `key` but has expired (DynamoDB has not reaped it yet).
    async fn raw_expired(&self, key: &Key) -> Result<bool, StoreError> {
        Ok(self.read(key).await?.is_some_and(|i| i.is_expired(now_epoch())))
    }

    /// A strongly consistent read of whatever is stored under `key`, expired or not.
    async fn read(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_error(&e))?;
        out.item.map(from_map).transpose()
    }
}

/// Builds expression strings with `#nN` / `:vN` placeholders.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| a.as_str() == attr) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }

    /// `expires_at` absent or in the future: the item is live (true for an absent item, too).
    fn live(&mut self) -> String {
        let exp = self.name(EXPIRES_AT);
        let now = self.value(AttributeValue::N(now_epoch().to_string()));
        format!("(attribute_not_exists({exp}) OR {exp} > {now})")
    }

    /// `condition` as DynamoDB must evaluate it so that an expired item counts as absent.
    /// If the condition holds for an absent item, an expired one satisfies it too; otherwise it must be live.
    fn guarded(&mut self, condition: &Condition) -> String {
        let plain = self.condition(condition);
        if condition.evaluate(None) {
            let exp = self.name(EXPIRES_AT);
            let now = self.value(AttributeValue::N(now_epoch().to_string()));
            format!("({} OR {exp} <= {now})", paren(&plain))
        } else {
            let live = self.live();
            format!("({live} AND {})", paren(&plain))
        }
    }

    /// Updates additionally require a live (or absent) item, so they never build on an expired item's
    /// attributes; the caller purges the expired item and retries.
    fn update_condition(&mut self, condition: Option<&Condition>) -> String {
        let live = self.live();
        match condition {
            Some(c) => {
                let plain = self.condition(c);
                format!("({live} AND {})", paren(&plain))
            }
            None => live,
        }
    }

    fn condition(&mut self, condition: &Condition) -> String {
        match condition {
            Condition::Exists => format!("attribute_exists({})", self.name(PK)),
            Condition::NotExists => format!("attribute_not_exists({})", self.name(PK)),
            Condition::AttrExists(a) => format!("attribute_exists({})", self.name(a)),
            Condition::AttrNotExists(a) => format!("attribute_not_exists({})", self.name(a)),
            Condition::Cmp(a, op, v) => {
                let n = self.name(a);
                let v = self.value(to_attr(v));
                format!("{n} {} {v}", op.symbol())
            }
            Condition::BeginsWith(a, prefix) => {
                let n = self.name(a);
                let v = self.value(AttributeValue::S(prefix.clone()));
                format!("begins_with({n}, {v})")
            }
            Condition::And(all) => join(
                &all.iter().map(|c| self.condition(c)).collect::<Vec<_>>(),
                " AND ",
                "attribute_exists(pk) OR attribute_not_exists(pk)",
            ),
            Condition::Or(any) => join(
                &any.iter().map(|c| self.condition(c)).collect::<Vec<_>>(),
                " OR ",
                "attribute_exists(pk) AND attribute_not_exists(pk)",
            ),
            Condition::Not(c) => {
                let inner = self.condition(c);
                format!("(NOT {})", paren(&inner))
            }
        }
    }

    fn update(&mut self, update: &Update) -> String {
        let mut sets: Vec<String> = Vec::new();
        for (attr, value) in &update.set {
            let n = self.name(attr);
            let v = self.value(to_attr(value));
            sets.push(format!("{n} = {v}"));
        }
        for (attr, value) in &update.set_if_absent {
            let n = self.name(attr);
            let v = self.value(to_attr(value));
            sets.push(format!("{n} = if_not_exists({n}, {v})"));
        }
        let adds: Vec<String> = update
            .add
            .iter()
            .map(|(attr, by)| {
                let n = self.name(attr);
                let v = self.value(AttributeValue::N(by.to_string()));
                format!("{n} {v}")
            })
            .collect();
        let removes: Vec<String> = update.remove.iter().map(|a| self.name(a)).collect();
        let mut parts = Vec::new();
        if !sets.is_empty() {
            parts.push(format!("SET {}", sets.join(", ")));
        }
        if !adds.is_empty() {
            parts.push(format!("ADD {}", adds.join(", ")));
        }
        if !removes.is_empty() {
            parts.push(format!("REMOVE {}", removes.join(", ")));
        }
        parts.join(" ")
    }
}

/// Joins sub-conditions; an empty AND is true and an empty OR false, written as tautology/contradiction.
fn join(parts: &[String], sep: &str, empty: &str) -> String {
    if parts.is_empty() {
        return format!("({empty})");
    }
    format!("({})", parts.iter().map(|p| paren(p)).collect::<Vec<_>>().join(sep))
}

/// Wraps `expr` in parentheses unless it already is one parenthesised group: DynamoDB rejects redundant ones.
fn paren(expr: &str) -> String {
    let bytes = expr.as_bytes();
    if bytes.first() == Some(&b'(') && bytes.last() == Some(&b')') {
        // Wrapped as a whole only if the first '(' closes at the very end.
        let mut depth = 0i32;
        for (i, b) in bytes.iter().enumerate() {
            match b {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                if i == bytes.len() - 1 {
                    return expr.to_owned();
                }
                break;
            }
        }
    }
    format!("({expr})")
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// One mapping from SDK errors to store errors, by DynamoDB's error code.
fn map_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(e: &SdkError<E, R>) -> StoreError {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("{e:?}").chars().take(300).collect())
        }
        SdkError::ServiceError(_) => {
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = format!("{code}: {}", e.message().unwrap_or_default());
            match code.as_str() {
                "ProvisionedThroughputExceededException" | "RequestLimitExceeded" | "ThrottlingException" => {
                    StoreError::Throttled(message)
                }
                "InternalServerError" | "ServiceUnavailable" => StoreError::Unavailable(message),
                // A single write that met an item inside another caller's transaction: contention.
                "TransactionConflictException" | "TransactionConflict" => StoreError::Conflict(message),
                // An update whose result outgrows 400 KB can only be refused by DynamoDB itself.
                "ValidationException" if message.contains("Item size") => {
                    StoreError::Limit(super::LimitError::TooLarge { size: None })
                }
                "ValidationException" => StoreError::Validation(message),
                _ => StoreError::Internal(message),
            }
        }
        _ => StoreError::Internal(format!("{e:?}").chars().take(300).collect()),
    }
}

/// Maps a conditional write's error, keeping the live item DynamoDB returned for a failed condition.
fn conditional_error<E, R>(
    e: &SdkError<E, R>,
    item: impl Fn(&E) -> Option<HashMap<String, AttributeValue>>,
) -> Result<StoreError, StoreError>
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    if e.code() == Some("ConditionalCheckFailedException") {
        let old = e.as_service_error().and_then(item).map(from_map).transpose()?;
        let current = old.filter(|i| !i.is_expired(now_epoch())).map(Box::new);
        return Ok(StoreError::ConditionFailed { current });
    }
    Ok(map_error(e))
}

fn key_map(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

fn to_map(item: &Item) -> HashMap<String, AttributeValue> {
    item.0.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect()
}

fn to_attr(value: &Value) -> AttributeValue {
    match value {
        Value::S(s) => AttributeValue::S(s.clone()),
        Value::N(n) => AttributeValue::N(n.to_string()),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Null => AttributeValue::Null(true),
        Value::L(list) => AttributeValue::L(list.iter().map(to_attr).collect()),
        Value::M(map) => AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect()),
    }
}

fn from_map(map: HashMap<String, AttributeValue>) -> Result<Item, StoreError> {
    Ok(Item(map.into_iter().map(|(k, v)| from_attr(v).map(|v| (k, v))).collect::<Result<_, _>>()?))
}

fn from_attr(value: AttributeValue) -> Result<Value, StoreError> {
    Ok(match value {
        AttributeValue::S(s) => Value::S(s),
        AttributeValue::N(n) => Value::N(Number::parse(&n).ok_or_else(|| internal(format!("bad number {n}")))?),
        AttributeValue::Bool(b) => Value::Bool(b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(list) => Value::L(list.into_iter().map(from_attr).collect::<Result<_, _>>()?),
        AttributeValue::M(map) => {
            Value::M(map.into_iter().map(|(k, v)| from_attr(v).map(|v| (k, v))).collect::<Result<_, _>>()?)
        }
        other => return Err(internal(format!("unsupported attribute type {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::paren;

    #[test]
    fn paren_wraps_once() {
        assert_eq!(paren("a = b"), "(a = b)");
        assert_eq!(paren("(a = b)"), "(a = b)");
        assert_eq!(paren("(a) AND (b)"), "((a) AND (b))");
        assert_eq!(paren("attribute_exists(#n0)"), "(attribute_exists(#n0))");
    }
}
