//! The `data-transform` task handler: runs a pipeline of operations over an array of JSON values.
//!
//! Input: `{"data": [...], "operations": [{"op": ...}, ...]}`; the operations run in order, each on the previous
//! one's result. Output: `{"result": [...], "count": <result length>, "applied": <operations run>}`. Every
//! operation is checked before any runs, so a bad operation is refused even when `data` is empty.
//!
//! **Fields** are dot paths into nested objects (`"price"`, `"address.city"`): non-empty names joined by single
//! dots, so a key that itself contains a dot cannot be addressed. A path that meets a missing key or a non-object
//! on the way is *missing*, and a missing field reads as `null` wherever a value is compared. Every operation that
//! reads a field needs every element to be an object; the refusal points at the element (`/data/3`).
//!
//! **Comparison** (sort, group keys, dedupe, `eq`/`ne`/`in`/`contains`, min/max) is one total order:
//! null < booleans (false < true) < numbers < strings < arrays < objects. Numbers compare by exact value
//! (`1` equals `1.0`, and a 64-bit integer is never rounded through a float); strings by Unicode code point;
//! arrays element by element, then shorter first; objects as their entries sorted by key (key, then value).
//!
//! Operations:
//! - `sort` `{"by": "field"}` or `{"by": [{"field", "order": "asc"|"desc"}, ...]}` (1 to [`MAX_SORT_KEYS`] keys,
//!   `order` defaults to `asc`). Stable for both orders: elements with equal keys keep their input order.
//! - `filter` `{"field", "operator", "value"}` keeps the elements that match. `eq`/`ne`: equal under the order
//!   above (a missing field is `null`). `gt`/`gte`/`lt`/`lte`: `value` must be a number or a string, and only
//!   fields of that same kind match (`"10"` is not greater than `9`). `contains`: a string field holding the
//!   string `value`, or an array field with an element equal to `value`. `starts_with`: a string field starting
//!   with the string `value`. `exists`: the field is present, even as `null`; `value` is an optional boolean
//!   (default `true`, `false` keeps the elements *without* the field). `in`: `value` is an array of at most
//!   [`MAX_IN_VALUES`] candidates and the field equals one of them.
//! - `map` `{"fields": {"new_name": "source.path", ...}}` (1 to [`MAX_MAP_FIELDS`] entries) replaces every
//!   element by a flat object of exactly those names, each holding the value at its source path, or `null` when
//!   that is missing: one design that both picks (`{"id": "id"}`) and renames/flattens (`{"city": "addr.city"}`),
//!   and that gives every output element the same shape.
//! - `group` `{"by": "field", "aggregate"?: [...]}` returns one `{"key", "count", ...aggregates}` per distinct
//!   key (a missing key groups as `null`), ordered by key; `key` holds the group's first element's value.
//! - `aggregate` `{"aggregates": [...]}` returns a single-element array holding one object of the aggregates
//!   over the whole array (an empty array gives count 0, sum 0, and `null` for avg, min and max).
//! - `dedupe` `{"by"?: "field" | ["field", ...]}` (at most [`MAX_DEDUPE_FIELDS`] fields) keeps the first element
//!   of each set of equal keys; without `by` whole values are compared (so `1` and `1.0` are duplicates).
//!
//! Aggregates are `{"field", "fn", "as"}` (1 to [`MAX_AGGREGATES`] of them; up to as many in `group`):
//! - `fn` is `count`, `sum`, `avg`, `min` or `max`; `field` is required except for `count`, which without it
//!   counts elements and with it counts elements whose field is present and not `null`.
//! - Every other function skips missing and `null` fields. `sum` and `avg` refuse any other non-number, naming
//!   the aggregate's field. `sum` stays an integer while every input is one and the total fits in 64 bits
//!   (else a float); `avg` is always a float; a float result that overflows is refused. `min`/`max` use the
//!   total order above and return the first such element's value.
//! - `as` names the output (default `<fn>_<field>`, or `count` for a fieldless count); names must be unique, and
//!   in `group` must not be `key` or `count`.

mod order;
mod parse;
mod schema;
mod transform;

use serde_json::{Value, json};

use self::parse::{array_of, parse_operation, required};
pub use self::schema::input_schema;
use self::transform::apply;
use crate::input::{self, InputError};

pub const NAME: &str = "data-transform";
pub const DESCRIPTION: &str =
    "Runs a pipeline of sort, filter, map, group, aggregate and dedupe operations over an array of JSON values.";

/// Most elements `data` may hold.
pub const MAX_ELEMENTS: usize = 10_000;
/// Most operations in one pipeline (at least one is required).
pub const MAX_OPERATIONS: usize = 20;
/// Most keys one `sort` orders by.
pub const MAX_SORT_KEYS: usize = 5;
/// Most fields one `dedupe` compares.
pub const MAX_DEDUPE_FIELDS: usize = 10;
/// Most output fields one `map` builds.
pub const MAX_MAP_FIELDS: usize = 100;
/// Most aggregates one `group` or `aggregate` computes.
pub const MAX_AGGREGATES: usize = 20;
/// Most candidates one `in` filter lists.
pub const MAX_IN_VALUES: usize = 1_000;
/// Longest field path or output name, in characters.
pub const MAX_FIELD_CHARS: usize = 256;

/// What a missing field reads as.
static NULL: Value = Value::Null;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Sort,
    Filter,
    Map,
    Group,
    Aggregate,
    Dedupe,
}

/// The operations by name, in the order the schema lists them.
const OPS: &[(&str, OpKind)] = &[
    ("sort", OpKind::Sort),
    ("filter", OpKind::Filter),
    ("map", OpKind::Map),
    ("group", OpKind::Group),
    ("aggregate", OpKind::Aggregate),
    ("dedupe", OpKind::Dedupe),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Asc,
    Desc,
}

const ORDERS: &[(&str, Order)] = &[("asc", Order::Asc), ("desc", Order::Desc)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
    StartsWith,
    Exists,
    In,
}

const OPERATORS: &[(&str, Operator)] = &[
    ("eq", Operator::Eq),
    ("ne", Operator::Ne),
    ("gt", Operator::Gt),
    ("gte", Operator::Gte),
    ("lt", Operator::Lt),
    ("lte", Operator::Lte),
    ("contains", Operator::Contains),
    ("starts_with", Operator::StartsWith),
    ("exists", Operator::Exists),
    ("in", Operator::In),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggFn {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

const FUNCTIONS: &[(&str, AggFn)] =
    &[("count", AggFn::Count), ("sum", AggFn::Sum), ("avg", AggFn::Avg), ("min", AggFn::Min), ("max", AggFn::Max)];

/// A checked field path: its text as written (for messages) and its segments.
#[derive(Debug)]
struct Path {
    text: String,
    segments: Vec<String>,
}

#[derive(Debug)]
struct SortKey {
    path: Path,
    order: Order,
}

#[derive(Debug)]
struct Agg {
    func: AggFn,
    fn_name: &'static str,
    field: Option<Path>,
    out: String,
    /// Where the aggregate's `field` sits in the input, for refusing a non-number in sum/avg.
    field_pointer: String,
}

#[derive(Debug)]
enum Operation {
    Sort(Vec<SortKey>),
    Filter { path: Path, operator: Operator, value: Value },
    Map(Vec<(String, Path)>),
    Group { by: Path, aggregates: Vec<Agg> },
    Aggregate(Vec<Agg>),
    Dedupe(Option<Vec<Path>>),
}

/// An element on its way through the pipeline. `origin` is its index in `data` while it is still (a map of)
/// that element, so a refusal can point at the element the caller sent; group and aggregate results have none.
#[derive(Debug)]
struct Item {
    origin: Option<usize>,
    value: Value,
}

pub fn run(input: &Value) -> Result<Value, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, &["data", "operations"])?;
    let data = match required(obj, "data", "")? {
        Value::Array(data) if data.len() <= MAX_ELEMENTS => data,
        Value::Array(data) => {
            return Err(InputError::new(
                "/data",
                format!("data has {} elements; at most {MAX_ELEMENTS} are allowed", data.len()),
            ));
        }
        _ => return Err(InputError::new("/data", "data must be an array")),
    };
    let operations = array_of(required(obj, "operations", "")?, "/operations", 1, MAX_OPERATIONS)?;
    // Parse the whole pipeline first: a bad fifth operation is refused without running the first four.
    let operations =
        operations.iter().enumerate().map(|(i, op)| parse_operation(op, i)).collect::<Result<Vec<_>, _>>()?;

    let mut items: Vec<Item> =
        data.iter().enumerate().map(|(i, value)| Item { origin: Some(i), value: value.clone() }).collect();
    for (step, operation) in operations.iter().enumerate() {
        items = apply(operation, step, items)?;
    }
    let result: Vec<Value> = items.into_iter().map(|item| item.value).collect();
    Ok(json!({ "result": result, "count": result.len(), "applied": operations.len() }))
}

#[cfg(test)]
mod tests;
