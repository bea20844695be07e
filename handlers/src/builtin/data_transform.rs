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

use std::cmp::Ordering;

use serde_json::{Map, Number, Value, json};

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

pub fn input_schema() -> Value {
    let ops: Vec<Value> = OPS.iter().map(|(name, _)| json!({ "$ref": format!("#/$defs/op_{name}") })).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "data-transform input",
        "description": DESCRIPTION,
        "type": "object",
        "required": ["data", "operations"],
        "additionalProperties": false,
        "properties": {
            "data": {
                "type": "array",
                "maxItems": MAX_ELEMENTS,
                "description": "The values to transform; operations reading fields need every element to be an object."
            },
            "operations": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_OPERATIONS,
                "description": "Applied in order, each to the previous one's result.",
                "items": { "oneOf": ops }
            }
        },
        "$defs": {
            "field": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_FIELD_CHARS,
                "pattern": "^[^.]+(\\.[^.]+)*$",
                "description": "A dot path into nested objects, such as \"price\" or \"address.city\"."
            },
            "name": { "type": "string", "minLength": 1, "maxLength": MAX_FIELD_CHARS },
            "aggregate_spec": aggregate_schema(),
            "op_sort": sort_schema(),
            "op_filter": filter_schema(),
            "op_map": map_schema(),
            "op_group": group_schema(),
            "op_aggregate": aggregate_op_schema(),
            "op_dedupe": dedupe_schema()
        }
    })
}

fn aggregate_schema() -> Value {
    json!({
        "type": "object",
        "required": ["fn"],
        "additionalProperties": false,
        "properties": {
            "field": { "$ref": "#/$defs/field" },
            "fn": { "enum": names(FUNCTIONS) },
            "as": { "$ref": "#/$defs/name" }
        },
        "if": { "properties": { "fn": { "const": "count" } } },
        "else": { "required": ["field"] },
        "description": "Output names (as, default <fn>_<field> or count) must be unique."
    })
}

fn sort_schema() -> Value {
    json!({
        "type": "object",
        "required": ["op", "by"],
        "additionalProperties": false,
        "properties": {
            "op": { "const": "sort" },
            "by": {
                "oneOf": [
                    { "$ref": "#/$defs/field" },
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_SORT_KEYS,
                        "items": {
                            "type": "object",
                            "required": ["field"],
                            "additionalProperties": false,
                            "properties": {
                                "field": { "$ref": "#/$defs/field" },
                                "order": { "enum": names(ORDERS), "default": "asc" }
                            }
                        }
                    }
                ]
            }
        }
    })
}

fn filter_schema() -> Value {
    json!({
        "type": "object",
        "required": ["op", "field", "operator"],
        "additionalProperties": false,
        "properties": {
            "op": { "const": "filter" },
            "field": { "$ref": "#/$defs/field" },
            "operator": { "enum": names(OPERATORS) },
            "value": {}
        },
        "allOf": [
            {
                "if": { "properties": { "operator": { "enum": ["eq", "ne", "contains"] } } },
                "then": { "required": ["value"] }
            },
            {
                "if": { "properties": { "operator": { "enum": ["gt", "gte", "lt", "lte"] } } },
                "then": { "required": ["value"], "properties": { "value": { "type": ["number", "string"] } } }
            },
            {
                "if": { "properties": { "operator": { "const": "starts_with" } } },
                "then": { "required": ["value"], "properties": { "value": { "type": "string" } } }
            },
            {
                "if": { "properties": { "operator": { "const": "exists" } } },
                "then": { "properties": { "value": { "type": "boolean", "default": true } } }
            },
            {
                "if": { "properties": { "operator": { "const": "in" } } },
                "then": {
                    "required": ["value"],
                    "properties": { "value": { "type": "array", "maxItems": MAX_IN_VALUES } }
                }
            }
        ]
    })
}

fn map_schema() -> Value {
    json!({
        "type": "object",
        "required": ["op", "fields"],
        "additionalProperties": false,
        "properties": {
            "op": { "const": "map" },
            "fields": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_MAP_FIELDS,
                "propertyNames": { "minLength": 1, "maxLength": MAX_FIELD_CHARS },
                "additionalProperties": { "$ref": "#/$defs/field" },
                "description": "Output name to source field path; a missing source gives null."
            }
        }
    })
}

fn group_schema() -> Value {
    json!({
        "type": "object",
        "required": ["op", "by"],
        "additionalProperties": false,
        "properties": {
            "op": { "const": "group" },
            "by": { "$ref": "#/$defs/field" },
            "aggregate": {
                "type": "array",
                "maxItems": MAX_AGGREGATES,
                "items": {
                    "allOf": [
                        { "$ref": "#/$defs/aggregate_spec" },
                        { "properties": { "as": { "not": { "enum": ["key", "count"] } } } },
                        {
                            "if": { "properties": { "fn": { "const": "count" } }, "not": { "required": ["field"] } },
                            "then": { "required": ["as"] }
                        }
                    ]
                }
            }
        }
    })
}

fn aggregate_op_schema() -> Value {
    json!({
        "type": "object",
        "required": ["op", "aggregates"],
        "additionalProperties": false,
        "properties": {
            "op": { "const": "aggregate" },
            "aggregates": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_AGGREGATES,
                "items": { "$ref": "#/$defs/aggregate_spec" }
            }
        }
    })
}

fn dedupe_schema() -> Value {
    json!({
        "type": "object",
        "required": ["op"],
        "additionalProperties": false,
        "properties": {
            "op": { "const": "dedupe" },
            "by": {
                "oneOf": [
                    { "$ref": "#/$defs/field" },
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_DEDUPE_FIELDS,
                        "items": { "$ref": "#/$defs/field" }
                    }
                ]
            }
        }
    })
}

fn names<T>(table: &[(&str, T)]) -> Vec<String> {
    table.iter().map(|(name, _)| (*name).to_owned()).collect()
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

// --- parsing ---------------------------------------------------------------------------------------------------

/// Re-roots a refusal from one of `input`'s readers, whose pointer is relative to a nested object, at `base`.
fn at(base: &str) -> impl Fn(InputError) -> InputError + '_ {
    move |e| InputError::new(format!("{base}{}", e.pointer), e.detail)
}

fn child(base: &str, key: &str) -> String {
    format!("{base}/{key}")
}

/// JSON Pointer escaping of one key (RFC 6901), for pointers naming a caller's own key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn required<'a>(obj: &'a Map<String, Value>, key: &str, base: &str) -> Result<&'a Value, InputError> {
    obj.get(key).ok_or_else(|| InputError::new(child(base, key), format!("{key} is required")))
}

fn object_at<'a>(value: &'a Value, pointer: &str, what: &str) -> Result<&'a Map<String, Value>, InputError> {
    value.as_object().ok_or_else(|| InputError::new(pointer, format!("{what} must be an object")))
}

fn array_of<'a>(value: &'a Value, pointer: &str, min: usize, max: usize) -> Result<&'a [Value], InputError> {
    let name = pointer.rsplit('/').next().unwrap_or(pointer);
    match value {
        Value::Array(items) if (min..=max).contains(&items.len()) => Ok(items),
        _ if min == 0 => Err(InputError::new(pointer, format!("{name} must be an array of at most {max} items"))),
        _ => Err(InputError::new(pointer, format!("{name} must be an array of {min} to {max} items"))),
    }
}

/// The table entry whose name `value` is.
fn choose<T: Copy>(
    value: &Value,
    pointer: String,
    table: &[(&'static str, T)],
) -> Result<(&'static str, T), InputError> {
    let name = pointer.rsplit('/').next().unwrap_or_default().to_owned();
    let expected = table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    match value.as_str() {
        Some(s) => table
            .iter()
            .find(|(n, _)| *n == s)
            .copied()
            .ok_or_else(|| InputError::new(pointer, format!("unknown {name} {s:?}; expected one of: {expected}"))),
        None => Err(InputError::new(pointer, format!("{name} must be one of: {expected}"))),
    }
}

fn parse_path(value: &Value, pointer: String) -> Result<Path, InputError> {
    let Value::String(text) = value else {
        return Err(InputError::new(pointer, "a field must be a string path such as \"price\" or \"address.city\""));
    };
    if text.chars().count() > MAX_FIELD_CHARS {
        return Err(InputError::new(pointer, format!("a field path must be at most {MAX_FIELD_CHARS} characters")));
    }
    let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        return Err(InputError::new(
            pointer,
            format!("field path {text:?} must be non-empty names joined by single dots"),
        ));
    }
    Ok(Path { text: text.clone(), segments })
}

fn check_name(name: &str, pointer: String) -> Result<String, InputError> {
    if name.is_empty() || name.chars().count() > MAX_FIELD_CHARS {
        return Err(InputError::new(pointer, format!("an output name must be 1 to {MAX_FIELD_CHARS} characters")));
    }
    Ok(name.to_owned())
}

fn parse_operation(value: &Value, index: usize) -> Result<Operation, InputError> {
    let base = format!("/operations/{index}");
    let obj = object_at(value, &base, "each operation")?;
    let (_, kind) = choose(required(obj, "op", &base)?, child(&base, "op"), OPS)?;
    let known: &[&str] = match kind {
        OpKind::Sort | OpKind::Dedupe => &["op", "by"],
        OpKind::Filter => &["op", "field", "operator", "value"],
        OpKind::Map => &["op", "fields"],
        OpKind::Group => &["op", "by", "aggregate"],
        OpKind::Aggregate => &["op", "aggregates"],
    };
    input::only_fields(obj, known).map_err(at(&base))?;
    match kind {
        OpKind::Sort => parse_sort(obj, &base),
        OpKind::Filter => parse_filter(obj, &base),
        OpKind::Map => parse_map(obj, &base),
        OpKind::Group => {
            let by = parse_path(required(obj, "by", &base)?, child(&base, "by"))?;
            let aggregates = match obj.get("aggregate") {
                None => Vec::new(),
                Some(list) => parse_aggregates(list, &child(&base, "aggregate"), 0, true)?,
            };
            Ok(Operation::Group { by, aggregates })
        }
        OpKind::Aggregate => {
            let list = required(obj, "aggregates", &base)?;
            Ok(Operation::Aggregate(parse_aggregates(list, &child(&base, "aggregates"), 1, false)?))
        }
        OpKind::Dedupe => parse_dedupe(obj, &base),
    }
}

fn parse_sort(obj: &Map<String, Value>, base: &str) -> Result<Operation, InputError> {
    let by = required(obj, "by", base)?;
    let pointer = child(base, "by");
    let keys = match by {
        Value::String(_) => vec![SortKey { path: parse_path(by, pointer)?, order: Order::Asc }],
        Value::Array(_) => array_of(by, &pointer, 1, MAX_SORT_KEYS)?
            .iter()
            .enumerate()
            .map(|(k, key)| {
                let at_key = format!("{pointer}/{k}");
                let key = object_at(key, &at_key, "each sort key {field, order}")?;
                input::only_fields(key, &["field", "order"]).map_err(at(&at_key))?;
                let path = parse_path(required(key, "field", &at_key)?, child(&at_key, "field"))?;
                let order = match key.get("order") {
                    None => Order::Asc,
                    Some(order) => choose(order, child(&at_key, "order"), ORDERS)?.1,
                };
                Ok(SortKey { path, order })
            })
            .collect::<Result<_, InputError>>()?,
        _ => {
            return Err(InputError::new(
                pointer,
                format!("by must be a field path or an array of 1 to {MAX_SORT_KEYS} {{field, order}} objects"),
            ));
        }
    };
    Ok(Operation::Sort(keys))
}

fn parse_filter(obj: &Map<String, Value>, base: &str) -> Result<Operation, InputError> {
    let path = parse_path(required(obj, "field", base)?, child(base, "field"))?;
    let (name, operator) = choose(required(obj, "operator", base)?, child(base, "operator"), OPERATORS)?;
    let pointer = child(base, "value");
    let given = obj.get("value");
    let need = |ok: fn(&Value) -> bool, kind: &str| match given {
        Some(v) if ok(v) => Ok(v.clone()),
        Some(_) => Err(InputError::new(&pointer, format!("value must be {kind} for operator {name}"))),
        None => Err(InputError::new(&pointer, format!("value is required for operator {name}"))),
    };
    let value = match operator {
        Operator::Eq | Operator::Ne | Operator::Contains => need(|_| true, "any JSON value")?,
        Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => {
            need(|v| v.is_number() || v.is_string(), "a number or a string")?
        }
        Operator::StartsWith => need(Value::is_string, "a string")?,
        Operator::In => {
            let candidates = need(Value::is_array, "an array")?;
            if candidates.as_array().is_some_and(|c| c.len() > MAX_IN_VALUES) {
                return Err(InputError::new(pointer, format!("value must list at most {MAX_IN_VALUES} candidates")));
            }
            candidates
        }
        Operator::Exists => match given {
            None => Value::Bool(true),
            Some(_) => need(Value::is_boolean, "a boolean")?,
        },
    };
    Ok(Operation::Filter { path, operator, value })
}

fn parse_map(obj: &Map<String, Value>, base: &str) -> Result<Operation, InputError> {
    let pointer = child(base, "fields");
    let fields = match required(obj, "fields", base)? {
        Value::Object(fields) if (1..=MAX_MAP_FIELDS).contains(&fields.len()) => fields,
        _ => {
            return Err(InputError::new(
                pointer,
                format!(
                    "fields must be an object of 1 to {MAX_MAP_FIELDS} entries mapping output names to field paths"
                ),
            ));
        }
    };
    let fields = fields
        .iter()
        .map(|(name, source)| {
            let at_name = format!("{pointer}/{}", escape(name));
            Ok((check_name(name, at_name.clone())?, parse_path(source, at_name)?))
        })
        .collect::<Result<_, InputError>>()?;
    Ok(Operation::Map(fields))
}

fn parse_aggregates(list: &Value, pointer: &str, min: usize, in_group: bool) -> Result<Vec<Agg>, InputError> {
    let mut aggregates: Vec<Agg> = Vec::new();
    for (j, spec) in array_of(list, pointer, min, MAX_AGGREGATES)?.iter().enumerate() {
        let base = format!("{pointer}/{j}");
        let spec = object_at(spec, &base, "each aggregate {field, fn, as}")?;
        input::only_fields(spec, &["field", "fn", "as"]).map_err(at(&base))?;
        let (fn_name, func) = choose(required(spec, "fn", &base)?, child(&base, "fn"), FUNCTIONS)?;
        let field_pointer = child(&base, "field");
        let field = match spec.get("field") {
            Some(field) => Some(parse_path(field, field_pointer.clone())?),
            None if func == AggFn::Count => None,
            None => return Err(InputError::new(field_pointer, format!("field is required for fn {fn_name}"))),
        };
        let as_pointer = child(&base, "as");
        let out = match (spec.get("as"), &field) {
            (Some(Value::String(name)), _) => check_name(name, as_pointer.clone())?,
            (Some(_), _) => return Err(InputError::new(as_pointer, "as must be a string")),
            (None, Some(path)) => format!("{fn_name}_{}", path.text),
            (None, None) => "count".to_owned(),
        };
        if in_group && (out == "key" || out == "count") {
            return Err(InputError::new(
                as_pointer,
                format!("output name {out:?} is taken: group always outputs key and count; choose another as"),
            ));
        }
        if aggregates.iter().any(|a| a.out == out) {
            return Err(InputError::new(as_pointer, format!("output name {out:?} is used twice; choose another as")));
        }
        aggregates.push(Agg { func, fn_name, field, out, field_pointer });
    }
    Ok(aggregates)
}

fn parse_dedupe(obj: &Map<String, Value>, base: &str) -> Result<Operation, InputError> {
    let pointer = child(base, "by");
    let by = match obj.get("by") {
        None => None,
        Some(by @ Value::String(_)) => Some(vec![parse_path(by, pointer)?]),
        Some(by @ Value::Array(_)) => Some(
            array_of(by, &pointer, 1, MAX_DEDUPE_FIELDS)?
                .iter()
                .enumerate()
                .map(|(k, field)| parse_path(field, format!("{pointer}/{k}")))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => {
            return Err(InputError::new(
                pointer,
                format!("by must be a field path or an array of 1 to {MAX_DEDUPE_FIELDS} field paths"),
            ));
        }
    };
    Ok(Operation::Dedupe(by))
}

// --- running ---------------------------------------------------------------------------------------------------

fn apply(operation: &Operation, step: usize, items: Vec<Item>) -> Result<Vec<Item>, InputError> {
    match operation {
        Operation::Sort(keys) => sort(items, keys, step),
        Operation::Filter { path, operator, value } => {
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                if matches(*operator, lookup(&item, path, step)?, value) {
                    kept.push(item);
                }
            }
            Ok(kept)
        }
        Operation::Map(fields) => items
            .into_iter()
            .map(|item| {
                let mut out = Map::new();
                for (name, path) in fields {
                    out.insert(name.clone(), lookup(&item, path, step)?.cloned().unwrap_or(Value::Null));
                }
                Ok(Item { origin: item.origin, value: Value::Object(out) })
            })
            .collect(),
        Operation::Group { by, aggregates } => group(&items, by, aggregates, step),
        Operation::Aggregate(aggregates) => {
            let members: Vec<&Item> = items.iter().collect();
            let mut out = Map::new();
            for agg in aggregates {
                out.insert(agg.out.clone(), compute(agg, &members, step)?);
            }
            Ok(vec![Item { origin: None, value: Value::Object(out) }])
        }
        Operation::Dedupe(by) => dedupe(items, by.as_deref(), step),
    }
}

/// The value at `path` in `item` (`None` when missing), or a refusal pointing at an element that is no object.
fn lookup<'a>(item: &'a Item, path: &Path, step: usize) -> Result<Option<&'a Value>, InputError> {
    let Value::Object(root) = &item.value else {
        let pointer = item.origin.map_or_else(|| "/data".to_owned(), |i| format!("/data/{i}"));
        return Err(InputError::new(
            pointer,
            format!(
                "operation {step} reads field {:?}, so every element must be an object, but this one is {}",
                path.text,
                type_name(&item.value)
            ),
        ));
    };
    let Some((last, parents)) = path.segments.split_last() else { return Ok(None) };
    let mut obj = root;
    for segment in parents {
        match obj.get(segment) {
            Some(Value::Object(inner)) => obj = inner,
            _ => return Ok(None),
        }
    }
    Ok(obj.get(last))
}

/// Each item's values at `paths`, missing read as null.
fn rows<'a>(items: &'a [Item], paths: &[&Path], step: usize) -> Result<Vec<Vec<&'a Value>>, InputError> {
    items.iter().map(|item| paths.iter().map(|path| Ok(lookup(item, path, step)?.unwrap_or(&NULL))).collect()).collect()
}

fn sort(items: Vec<Item>, keys: &[SortKey], step: usize) -> Result<Vec<Item>, InputError> {
    let paths: Vec<&Path> = keys.iter().map(|key| &key.path).collect();
    let rows = rows(&items, &paths, step)?;
    let mut order: Vec<usize> = (0..items.len()).collect();
    // `sort_by` is stable, and a reversed comparison keeps equal keys in input order for `desc` too.
    order.sort_by(|&a, &b| {
        for ((x, y), key) in rows[a].iter().zip(&rows[b]).zip(keys) {
            let ordering = match key.order {
                Order::Asc => compare(x, y),
                Order::Desc => compare(y, x),
            };
            if ordering.is_ne() {
                return ordering;
            }
        }
        Ordering::Equal
    });
    drop(rows);
    let mut slots: Vec<Option<Item>> = items.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect())
}

fn matches(operator: Operator, found: Option<&Value>, value: &Value) -> bool {
    let actual = found.unwrap_or(&NULL);
    // Ordering operators compare like with like only: across kinds the total order would make "a" > 5.
    let ordered = || match (actual, value) {
        (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)) => Some(compare(actual, value)),
        _ => None,
    };
    match operator {
        Operator::Eq => compare(actual, value).is_eq(),
        Operator::Ne => compare(actual, value).is_ne(),
        Operator::Gt => ordered().is_some_and(Ordering::is_gt),
        Operator::Gte => ordered().is_some_and(Ordering::is_ge),
        Operator::Lt => ordered().is_some_and(Ordering::is_lt),
        Operator::Lte => ordered().is_some_and(Ordering::is_le),
        Operator::Contains => match (actual, value) {
            (Value::String(s), Value::String(part)) => s.contains(part.as_str()),
            (Value::Array(elements), _) => elements.iter().any(|e| compare(e, value).is_eq()),
            _ => false,
        },
        Operator::StartsWith => {
            matches!((actual, value), (Value::String(s), Value::String(prefix)) if s.starts_with(prefix.as_str()))
        }
        Operator::Exists => found.is_some() == value.as_bool().unwrap_or(true),
        Operator::In => {
            value.as_array().is_some_and(|candidates| candidates.iter().any(|c| compare(actual, c).is_eq()))
        }
    }
}

fn group(items: &[Item], by: &Path, aggregates: &[Agg], step: usize) -> Result<Vec<Item>, InputError> {
    let keys: Vec<&Value> = rows(items, &[by], step)?.into_iter().flatten().collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    // Stable, so each run of equal keys starts with the group's first element in input order.
    order.sort_by(|&a, &b| compare(keys[a], keys[b]));
    let mut groups = Vec::new();
    for run in order.chunk_by(|&a, &b| compare(keys[a], keys[b]).is_eq()) {
        let Some(&first) = run.first() else { continue };
        let members: Vec<&Item> = run.iter().map(|&i| &items[i]).collect();
        let mut out = Map::new();
        out.insert("key".to_owned(), keys[first].clone());
        out.insert("count".to_owned(), Value::from(members.len()));
        for agg in aggregates {
            out.insert(agg.out.clone(), compute(agg, &members, step)?);
        }
        groups.push(Item { origin: None, value: Value::Object(out) });
    }
    Ok(groups)
}

fn dedupe(items: Vec<Item>, by: Option<&[Path]>, step: usize) -> Result<Vec<Item>, InputError> {
    let keep = {
        let rows: Vec<Vec<&Value>> = match by {
            Some(paths) => rows(&items, &paths.iter().collect::<Vec<_>>(), step)?,
            None => items.iter().map(|item| vec![&item.value]).collect(),
        };
        let same = |a: usize, b: usize| rows[a].iter().zip(&rows[b]).all(|(x, y)| compare(x, y).is_eq());
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|&a, &b| {
            rows[a].iter().zip(&rows[b]).map(|(x, y)| compare(x, y)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
        });
        let mut keep = vec![false; items.len()];
        // The sort is stable, so the first of each run of equal keys is the earliest occurrence.
        for run in order.chunk_by(|&a, &b| same(a, b)) {
            if let Some(&first) = run.first() {
                keep[first] = true;
            }
        }
        keep
    };
    Ok(items.into_iter().zip(keep).filter_map(|(item, keep)| keep.then_some(item)).collect())
}

fn compute(agg: &Agg, members: &[&Item], step: usize) -> Result<Value, InputError> {
    let Some(path) = &agg.field else { return Ok(Value::from(members.len())) };
    let mut present: Vec<(&Item, &Value)> = Vec::with_capacity(members.len());
    for item in members {
        if let Some(value) = lookup(item, path, step)?.filter(|v| !v.is_null()) {
            present.push((item, value));
        }
    }
    let first_by = |better: Ordering| {
        present
            .iter()
            .map(|(_, v)| *v)
            .reduce(|best, v| if compare(v, best) == better { v } else { best })
            .cloned()
            .unwrap_or(Value::Null)
    };
    match agg.func {
        AggFn::Count => Ok(Value::from(present.len())),
        AggFn::Min => Ok(first_by(Ordering::Less)),
        AggFn::Max => Ok(first_by(Ordering::Greater)),
        AggFn::Sum | AggFn::Avg => {
            let mut total = Total::default();
            for (item, value) in &present {
                let Value::Number(n) = value else {
                    let element = item.origin.map_or_else(
                        || "an element made by an earlier group or aggregate".to_owned(),
                        |i| format!("element /data/{i}"),
                    );
                    return Err(InputError::new(
                        &agg.field_pointer,
                        format!(
                            "cannot {} field {:?}: {element} holds {} there, not a number",
                            agg.fn_name,
                            path.text,
                            type_name(value)
                        ),
                    ));
                };
                total.add(n);
            }
            let result = if agg.func == AggFn::Sum { total.sum() } else { total.avg() };
            result.ok_or_else(|| {
                InputError::new(
                    &agg.field_pointer,
                    format!("the {} of field {:?} overflows a 64-bit float", agg.fn_name, path.text),
                )
            })
        }
    }
}

/// A running sum: integers exactly (i128 holds any 10,000 64-bit values), floats with Neumaier compensation so
/// the order of the data costs as little precision as possible.
#[derive(Debug, Default)]
struct Total {
    ints: i128,
    floats: f64,
    compensation: f64,
    any_float: bool,
    n: usize,
}

impl Total {
    fn add(&mut self, n: &Number) {
        self.n += 1;
        match exact(n) {
            Num::Int(i) => self.ints += i,
            Num::Float(x) => {
                self.any_float = true;
                let t = self.floats + x;
                self.compensation +=
                    if self.floats.abs() >= x.abs() { (self.floats - t) + x } else { (x - t) + self.floats };
                self.floats = t;
            }
        }
    }

    fn as_f64(&self) -> f64 {
        self.ints as f64 + (self.floats + self.compensation)
    }

    /// `None` when a float total is not finite.
    fn sum(&self) -> Option<Value> {
        if !self.any_float {
            if let Ok(i) = i64::try_from(self.ints) {
                return Some(Value::from(i));
            }
            if let Ok(u) = u64::try_from(self.ints) {
                return Some(Value::from(u));
            }
        }
        Number::from_f64(self.as_f64()).map(Value::Number)
    }

    /// `Some(null)` for no values; `None` when the mean is not finite.
    fn avg(&self) -> Option<Value> {
        if self.n == 0 {
            return Some(Value::Null);
        }
        Number::from_f64(self.as_f64() / self.n as f64).map(Value::Number)
    }
}

// --- the total order -------------------------------------------------------------------------------------------

fn rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The total order described at the top of this file.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            x.iter().zip(y).map(|(p, q)| compare(p, q)).find(|o| o.is_ne()).unwrap_or_else(|| x.len().cmp(&y.len()))
        }
        (Value::Object(x), Value::Object(y)) => {
            let (xs, ys) = (sorted_entries(x), sorted_entries(y));
            xs.iter()
                .zip(&ys)
                .map(|((ka, va), (kb, vb))| ka.cmp(kb).then_with(|| compare(va, vb)))
                .find(|o| o.is_ne())
                .unwrap_or_else(|| xs.len().cmp(&ys.len()))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Sorted here rather than trusting the map's order, which serde_json's `preserve_order` feature would change.
fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|p, q| p.0.cmp(q.0));
    entries
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

fn exact(n: &Number) -> Num {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => Num::Int(i128::from(i)),
        (None, Some(u)) => Num::Int(i128::from(u)),
        // serde_json numbers are never NaN or infinite, so 0.0 is never used.
        (None, None) => Num::Float(n.as_f64().unwrap_or(0.0)),
    }
}

/// Exact numeric order: integers never go through a float, so 2^63 + 1 stays above 2^63.
fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    match (exact(a), exact(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Int(x), Num::Float(y)) => compare_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => compare_int_float(y, x).reverse(),
        // No NaN here; partial_cmp also makes -0.0 equal 0.0.
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

fn compare_int_float(i: i128, f: f64) -> Ordering {
    // i128::MAX rounds to exactly 2^127 and i128::MIN is exactly -2^127.
    if f >= i128::MAX as f64 {
        return Ordering::Less;
    }
    if f < i128::MIN as f64 {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // Exact: `whole` is integral and within i128's range.
    i.cmp(&(whole as i128)).then_with(|| 0.0_f64.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &Value) -> Value {
        match run(input) {
            Ok(output) => output,
            Err(e) => panic!("refused: {e}"),
        }
    }

    fn request(data: Value, operations: Value) -> Value {
        Value::Object(Map::from_iter([("data".to_owned(), data), ("operations".to_owned(), operations)]))
    }

    fn result(data: Value, operations: Value) -> Value {
        let output = ok(&request(data, operations));
        assert_eq!(output["count"], json!(output["result"].as_array().map_or(0, Vec::len)));
        output["result"].clone()
    }

    fn refused(input: &Value) -> InputError {
        match run(input) {
            Ok(output) => panic!("accepted: {output}"),
            Err(e) => e,
        }
    }

    fn refused_at(data: Value, operations: Value) -> String {
        refused(&request(data, operations)).pointer
    }

    fn people() -> Value {
        json!([
            { "name": "ann", "age": 31, "city": "oslo", "tags": ["a", "b"], "addr": { "zip": "0150" } },
            { "name": "bob", "age": 25, "city": "rome", "tags": ["b"] },
            { "name": "cy", "age": 31, "city": "oslo", "tags": [], "addr": { "zip": "0151" } },
            { "name": "dee", "age": 19.5, "city": "paris" },
            { "name": "eve", "city": "rome", "age": null }
        ])
    }

    fn names_of(rows: &Value) -> Vec<&str> {
        rows.as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect()
    }

    #[test]
    fn output_shape() {
        let output = ok(&json!({ "data": [3, 1, 2], "operations": [{ "op": "dedupe" }] }));
        assert_eq!(output, json!({ "result": [3, 1, 2], "count": 3, "applied": 1 }));
    }

    #[test]
    fn sort_by_a_field_is_numeric_and_stable() {
        let rows = result(people(), json!([{ "op": "sort", "by": "age" }]));
        // Missing/null first, 19.5 < 25 < 31 (ann before cy: stable).
        assert_eq!(names_of(&rows), ["eve", "dee", "bob", "ann", "cy"]);
        let rows = result(json!([{ "n": 10 }, { "n": 9 }, { "n": 100 }]), json!([{ "op": "sort", "by": "n" }]));
        assert_eq!(rows, json!([{ "n": 9 }, { "n": 10 }, { "n": 100 }]));
    }

    #[test]
    fn sort_desc_is_stable_and_multi_key() {
        let rows = result(people(), json!([{ "op": "sort", "by": [{ "field": "age", "order": "desc" }] }]));
        assert_eq!(names_of(&rows), ["ann", "cy", "bob", "dee", "eve"]);
        let rows = result(
            people(),
            json!([{ "op": "sort", "by": [{ "field": "city" }, { "field": "name", "order": "desc" }] }]),
        );
        assert_eq!(names_of(&rows), ["cy", "ann", "dee", "eve", "bob"]);
    }

    #[test]
    fn sort_orders_across_types() {
        let data = json!([
            { "v": { "a": 1 } }, { "v": [1] }, { "v": "a" }, { "v": 2 }, { "v": true }, { "v": null }, {},
            { "v": false },
            { "v": 1.5 }, { "v": [] }, { "v": "B" }
        ]);
        let rows = result(data, json!([{ "op": "sort", "by": "v" }]));
        assert_eq!(
            rows,
            json!([
                { "v": null }, {}, { "v": false }, { "v": true }, { "v": 1.5 }, { "v": 2 }, { "v": "B" }, { "v": "a" },
                { "v": [] }, { "v": [1] }, { "v": { "a": 1 } }
            ])
        );
    }

    #[test]
    fn numbers_compare_exactly() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => panic!("not a number"),
        };
        assert_eq!(compare_numbers(&n(json!(1)), &n(json!(1.0))), Ordering::Equal);
        assert_eq!(compare_numbers(&n(json!(-0.0)), &n(json!(0))), Ordering::Equal);
        assert_eq!(compare_numbers(&n(json!(1)), &n(json!(1.5))), Ordering::Less);
        assert_eq!(compare_numbers(&n(json!(-1)), &n(json!(-1.5))), Ordering::Greater);
        assert_eq!(compare_numbers(&n(json!(-5)), &n(json!(u64::MAX))), Ordering::Less);
        // 2^63 + 1 as an integer is above 2^63 as a float, though both round to the same f64.
        assert_eq!(
            compare_numbers(&n(json!(9_223_372_036_854_775_809_u64)), &n(json!(9.223_372_036_854_776e18))),
            Ordering::Greater
        );
        assert_eq!(compare_numbers(&n(json!(u64::MAX)), &n(json!(1e300))), Ordering::Less);
        assert_eq!(compare_numbers(&n(json!(i64::MIN)), &n(json!(-1e300))), Ordering::Greater);
    }

    #[test]
    fn filter_equality_and_membership() {
        let f = |operator: &str, field: &str, value: Value| {
            let ops = json!([{ "op": "filter", "field": field, "operator": operator, "value": value }]);
            names_of(&result(people(), ops)).join(",")
        };
        assert_eq!(f("eq", "age", json!(31.0)), "ann,cy");
        assert_eq!(f("ne", "city", json!("oslo")), "bob,dee,eve");
        assert_eq!(f("eq", "addr.zip", json!(null)), "bob,dee,eve");
        assert_eq!(f("in", "name", json!(["bob", "eve", "zed"])), "bob,eve");
        assert_eq!(f("in", "age", json!([25, null])), "bob,eve");
        assert_eq!(f("contains", "name", json!("e")), "dee,eve");
        assert_eq!(f("contains", "tags", json!("b")), "ann,bob");
        assert_eq!(f("starts_with", "city", json!("ro")), "bob,eve");
        assert_eq!(f("starts_with", "age", json!("3")), "");
    }

    #[test]
    fn filter_ordering_compares_like_with_like() {
        let f = |operator: &str, value: Value| {
            let ops = json!([{ "op": "filter", "field": "age", "operator": operator, "value": value }]);
            names_of(&result(people(), ops)).join(",")
        };
        assert_eq!(f("gt", json!(25)), "ann,cy");
        assert_eq!(f("gte", json!(25)), "ann,bob,cy");
        assert_eq!(f("lt", json!(25)), "dee");
        assert_eq!(f("lte", json!(25.0)), "bob,dee");
        // No age is a string, so a string bound matches nothing (and null never matches).
        assert_eq!(f("lt", json!("zzz")), "");
        let ops = json!([{ "op": "filter", "field": "city", "operator": "gte", "value": "paris" }]);
        assert_eq!(names_of(&result(people(), ops)), ["bob", "dee", "eve"]);
    }

    #[test]
    fn filter_exists() {
        let ops = json!([{ "op": "filter", "field": "addr.zip", "operator": "exists" }]);
        assert_eq!(names_of(&result(people(), ops)), ["ann", "cy"]);
        let ops = json!([{ "op": "filter", "field": "tags", "operator": "exists", "value": false }]);
        assert_eq!(names_of(&result(people(), ops)), ["dee", "eve"]);
        // Present as null still exists.
        let ops = json!([{ "op": "filter", "field": "age", "operator": "exists" }]);
        assert_eq!(names_of(&result(people(), ops)).len(), 5);
    }

    #[test]
    fn map_picks_renames_and_flattens() {
        let rows = result(people(), json!([{ "op": "map", "fields": { "who": "name", "zip": "addr.zip" } }]));
        assert_eq!(
            rows,
            json!([
                { "who": "ann", "zip": "0150" },
                { "who": "bob", "zip": null },
                { "who": "cy", "zip": "0151" },
                { "who": "dee", "zip": null },
                { "who": "eve", "zip": null }
            ])
        );
    }

    #[test]
    fn group_with_aggregates_ordered_by_key() {
        let ops = json!([{ "op": "group", "by": "city", "aggregate": [
            { "field": "age", "fn": "sum", "as": "total" },
            { "field": "age", "fn": "avg" },
            { "field": "name", "fn": "min" },
            { "field": "name", "fn": "max" },
            { "field": "age", "fn": "count", "as": "with_age" }
        ] }]);
        assert_eq!(
            result(people(), ops),
            json!([
                { "key": "oslo", "count": 2, "total": 62, "avg_age": 31.0,
                  "min_name": "ann", "max_name": "cy", "with_age": 2 },
                { "key": "paris", "count": 1, "total": 19.5, "avg_age": 19.5,
                  "min_name": "dee", "max_name": "dee", "with_age": 1 },
                { "key": "rome", "count": 2, "total": 25, "avg_age": 25.0,
                  "min_name": "bob", "max_name": "eve", "with_age": 1 }
            ])
        );
    }

    #[test]
    fn group_missing_key_is_null_and_keys_merge_numerically() {
        let data = json!([{ "k": 2 }, { "k": 1 }, {}, { "k": 1.0 }, { "k": null }]);
        assert_eq!(
            result(data, json!([{ "op": "group", "by": "k" }])),
            json!([{ "key": null, "count": 2 }, { "key": 1, "count": 2 }, { "key": 2, "count": 1 }])
        );
    }

    #[test]
    fn aggregate_whole_array() {
        let ops = json!([{ "op": "aggregate", "aggregates": [
            { "fn": "count" },
            { "field": "age", "fn": "sum" },
            { "field": "age", "fn": "avg", "as": "mean" },
            { "field": "age", "fn": "min" },
            { "field": "age", "fn": "max" }
        ] }]);
        assert_eq!(
            result(people(), ops.clone()),
            json!([{ "count": 5, "sum_age": 106.5, "mean": 26.625, "min_age": 19.5, "max_age": 31 }])
        );
        assert_eq!(
            result(json!([]), ops),
            json!([{ "count": 0, "sum_age": 0, "mean": null, "min_age": null, "max_age": null }])
        );
    }

    #[test]
    fn sums_stay_exact() {
        let sum = |data: Value| {
            let ops = json!([{ "op": "aggregate", "aggregates": [
                { "field": "n", "fn": "sum", "as": "s" },
                { "field": "n", "fn": "avg", "as": "a" }
            ] }]);
            result(data, ops)[0].clone()
        };
        assert_eq!(sum(json!([{ "n": 1 }, { "n": 2 }])), json!({ "s": 3, "a": 1.5 }));
        assert_eq!(sum(json!([{ "n": 2 }, { "n": 2 }])), json!({ "s": 4, "a": 2.0 }));
        assert_eq!(
            sum(json!([{ "n": -5 }, { "n": u64::MAX }])),
            json!({ "s": u64::MAX - 5, "a": 9.223_372_036_854_776e18 })
        );
        assert_eq!(
            sum(json!([{ "n": i64::MAX }, { "n": i64::MAX }, { "n": i64::MIN }])),
            json!({ "s": i64::MAX - 1, "a": 3.074_457_345_618_258_4e18 })
        );
        assert_eq!(
            sum(json!([{ "n": 0.1 }, { "n": 0.2 }, { "n": 1 }])),
            json!({ "s": 1.3, "a": 0.433_333_333_333_333_35 })
        );
        // Past u64: the integer total no longer fits, so it is reported as a float.
        assert_eq!(sum(json!([{ "n": u64::MAX }, { "n": u64::MAX }]))["s"], json!(3.689_348_814_741_910_3e19));
        let overflow = refused_at(
            json!([{ "n": 1e308 }, { "n": 1e308 }]),
            json!([{ "op": "aggregate", "aggregates": [{ "field": "n", "fn": "sum" }] }]),
        );
        assert_eq!(overflow, "/operations/0/aggregates/0/field");
    }

    #[test]
    fn dedupe_keeps_first_occurrence() {
        let rows = result(people(), json!([{ "op": "dedupe", "by": "city" }]));
        assert_eq!(names_of(&rows), ["ann", "bob", "dee"]);
        let rows = result(people(), json!([{ "op": "dedupe", "by": ["city", "age"] }]));
        assert_eq!(names_of(&rows), ["ann", "bob", "dee", "eve"]);
        let rows =
            result(json!([1, "1", 1.0, { "a": [1] }, null, { "a": [1.0] }, null, 2]), json!([{ "op": "dedupe" }]));
        assert_eq!(rows, json!([1, "1", { "a": [1] }, null, 2]));
        // Missing and null are the same key.
        let rows = result(
            json!([{ "k": null, "i": 0 }, { "i": 1 }, { "k": 1, "i": 2 }]),
            json!([{ "op": "dedupe", "by": "k" }]),
        );
        assert_eq!(rows, json!([{ "k": null, "i": 0 }, { "k": 1, "i": 2 }]));
    }

    #[test]
    fn composed_pipelines() {
        let output = ok(&json!({ "data": people(), "operations": [
            { "op": "filter", "field": "age", "operator": "gte", "value": 20 },
            { "op": "sort", "by": [{ "field": "age", "order": "desc" }, { "field": "name", "order": "desc" }] },
            { "op": "map", "fields": { "n": "name", "a": "age" } }
        ] }));
        assert_eq!(
            output,
            json!({
                "result": [{ "n": "cy", "a": 31 }, { "n": "ann", "a": 31 }, { "n": "bob", "a": 25 }],
                "count": 3,
                "applied": 3
            })
        );

        let rows = result(
            people(),
            json!([
                { "op": "group", "by": "city" },
                { "op": "sort", "by": [{ "field": "count", "order": "desc" }] },
                { "op": "filter", "field": "count", "operator": "gt", "value": 1 },
                { "op": "map", "fields": { "city": "key" } }
            ]),
        );
        assert_eq!(rows, json!([{ "city": "oslo" }, { "city": "rome" }]));

        let rows = result(
            people(),
            json!([
                { "op": "dedupe", "by": "city" },
                { "op": "aggregate", "aggregates": [{ "field": "age", "fn": "sum", "as": "s" }, { "fn": "count" }] }
            ]),
        );
        assert_eq!(rows, json!([{ "s": 75.5, "count": 3 }]));
    }

    #[test]
    fn deterministic() {
        let input = json!({ "data": people(), "operations": [
            { "op": "group", "by": "age", "aggregate": [{ "field": "name", "fn": "max", "as": "n" }] }
        ] });
        assert_eq!(ok(&input), ok(&input));
        assert_eq!(
            ok(&input)["result"],
            json!([
                { "key": null, "count": 1, "n": "eve" },
                { "key": 19.5, "count": 1, "n": "dee" },
                { "key": 25, "count": 1, "n": "bob" },
                { "key": 31, "count": 2, "n": "cy" }
            ])
        );
    }

    #[test]
    fn refuses_bad_top_level() {
        assert_eq!(refused(&json!([1])).pointer, "");
        assert_eq!(refused(&json!({ "data": [], "operations": [{ "op": "dedupe" }], "extra": 1 })).pointer, "/extra");
        assert_eq!(refused(&json!({ "operations": [{ "op": "dedupe" }] })).pointer, "/data");
        assert_eq!(refused(&json!({ "data": {}, "operations": [{ "op": "dedupe" }] })).pointer, "/data");
        assert_eq!(refused(&json!({ "data": [] })).pointer, "/operations");
        assert_eq!(refused_at(json!([]), json!([])), "/operations");
        let many: Vec<Value> = (0..=MAX_OPERATIONS).map(|_| json!({ "op": "dedupe" })).collect();
        assert_eq!(refused_at(json!([]), json!(many)), "/operations");
        let big = vec![json!(0); MAX_ELEMENTS + 1];
        let e = refused(&json!({ "data": big, "operations": [{ "op": "dedupe" }] }));
        assert_eq!((e.pointer.as_str(), e.detail.contains("10000")), ("/data", true));
        let most = vec![json!(0); MAX_ELEMENTS];
        assert_eq!(ok(&json!({ "data": most, "operations": [{ "op": "dedupe" }] }))["count"], 1);
    }

    #[test]
    fn refuses_bad_operations_with_pointers() {
        let d = json!([]);
        assert_eq!(refused_at(d.clone(), json!([{ "op": "dedupe" }, 5])), "/operations/1");
        assert_eq!(refused_at(d.clone(), json!([{ "op": "dedupe" }, { "op": "explode" }])), "/operations/1/op");
        assert_eq!(refused_at(d.clone(), json!([{ "by": "x" }])), "/operations/0/op");
        assert_eq!(refused_at(d.clone(), json!([{ "op": "sort", "by": "x", "order": "asc" }])), "/operations/0/order");
        assert_eq!(refused_at(d.clone(), json!([{ "op": "sort" }])), "/operations/0/by");
        assert_eq!(refused_at(d.clone(), json!([{ "op": "sort", "by": "a..b" }])), "/operations/0/by");
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "sort", "by": [{ "field": "a", "order": "up" }] }])),
            "/operations/0/by/0/order"
        );
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "sort", "by": [{ "field": "a", "dir": "asc" }] }])),
            "/operations/0/by/0/dir"
        );
        let six: Vec<Value> = (0..=MAX_SORT_KEYS).map(|_| json!({ "field": "a" })).collect();
        assert_eq!(refused_at(d.clone(), json!([{ "op": "sort", "by": six }])), "/operations/0/by");
        assert_eq!(
            refused_at(
                d.clone(),
                json!([
                    { "op": "dedupe" },
                    { "op": "dedupe" },
                    { "op": "filter", "field": "", "operator": "eq", "value": 1 }
                ])
            ),
            "/operations/2/field"
        );
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "filter", "field": "a", "operator": "like", "value": 1 }])),
            "/operations/0/operator"
        );
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "filter", "field": "a", "operator": "gt" }])),
            "/operations/0/value"
        );
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "filter", "field": "a", "operator": "gt", "value": [1] }])),
            "/operations/0/value"
        );
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "filter", "field": "a", "operator": "starts_with", "value": 1 }])),
            "/operations/0/value"
        );
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "filter", "field": "a", "operator": "exists", "value": "yes" }])),
            "/operations/0/value"
        );
        let in_values = vec![json!(0); MAX_IN_VALUES + 1];
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "filter", "field": "a", "operator": "in", "value": in_values }])),
            "/operations/0/value"
        );
        assert_eq!(refused_at(d.clone(), json!([{ "op": "map", "fields": {} }])), "/operations/0/fields");
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "map", "fields": { "a/b": 3 } }])),
            "/operations/0/fields/a~1b"
        );
        assert_eq!(refused_at(d.clone(), json!([{ "op": "map", "fields": { "": "x" } }])), "/operations/0/fields/");
        assert_eq!(
            refused_at(
                d.clone(),
                json!([{ "op": "group", "by": "a", "aggregate": [{ "fn": "median", "field": "x" }] }])
            ),
            "/operations/0/aggregate/0/fn"
        );
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "group", "by": "a", "aggregate": [{ "fn": "sum" }] }])),
            "/operations/0/aggregate/0/field"
        );
        assert_eq!(
            refused_at(d.clone(), json!([{ "op": "group", "by": "a", "aggregate": [{ "fn": "count" }] }])),
            "/operations/0/aggregate/0/as"
        );
        assert_eq!(
            refused_at(
                d.clone(),
                json!([{ "op": "group", "by": "a", "aggregate": [{ "fn": "max", "field": "x", "as": "key" }] }])
            ),
            "/operations/0/aggregate/0/as"
        );
        assert_eq!(
            refused_at(
                d.clone(),
                json!([{ "op": "group", "by": "a", "aggregate": [{ "fn": "max", "field": "x", "bogus": 1 }] }])
            ),
            "/operations/0/aggregate/0/bogus"
        );
        assert_eq!(
            refused_at(
                d.clone(),
                json!([{ "op": "aggregate", "aggregates": [
                    { "fn": "max", "field": "x" },
                    { "fn": "min", "field": "y", "as": "max_x" }
                ] }])
            ),
            "/operations/0/aggregates/1/as"
        );
        assert_eq!(refused_at(d.clone(), json!([{ "op": "aggregate", "aggregates": [] }])), "/operations/0/aggregates");
        assert_eq!(refused_at(d.clone(), json!([{ "op": "dedupe", "by": ["a", 2] }])), "/operations/0/by/1");
        assert_eq!(refused_at(d, json!([{ "op": "dedupe", "by": 2 }])), "/operations/0/by");
    }

    #[test]
    fn refuses_non_object_elements_and_non_numbers() {
        let data = json!([{ "a": 1 }, { "a": 2 }, { "a": 3 }, 4]);
        assert_eq!(refused_at(data.clone(), json!([{ "op": "sort", "by": "a" }])), "/data/3");
        // The pointer names the element as sent, even after a sort moved it.
        let e = refused(&json!({ "data": [{ "a": 1 }, [2], { "a": 0 }], "operations": [
            { "op": "dedupe" }, { "op": "sort", "by": [{ "field": "x", "order": "desc" }] }
        ] }));
        assert_eq!(e.pointer, "/data/1");
        assert!(e.detail.contains("operation 1"), "{}", e.detail);
        // dedupe without `by` needs no objects.
        assert_eq!(result(data, json!([{ "op": "dedupe" }])).as_array().map(Vec::len), Some(4));

        let e = refused(&json!({ "data": [{ "p": 1 }, { "p": "2" }], "operations": [
            { "op": "aggregate", "aggregates": [{ "field": "p", "fn": "avg" }] }
        ] }));
        assert_eq!(e.pointer, "/operations/0/aggregates/0/field");
        assert!(e.detail.contains("\"p\"") && e.detail.contains("/data/1"), "{}", e.detail);
        assert_eq!(
            refused_at(
                json!([{ "g": 1, "p": true }]),
                json!([{ "op": "group", "by": "g", "aggregate": [{ "field": "p", "fn": "sum" }] }])
            ),
            "/operations/0/aggregate/0/field"
        );
    }

    #[test]
    fn schema_states_the_bounds() {
        let schema = input_schema();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["data"]["maxItems"], MAX_ELEMENTS);
        assert_eq!(schema["properties"]["operations"]["maxItems"], MAX_OPERATIONS);
        let refs = schema["properties"]["operations"]["items"]["oneOf"].as_array().cloned().unwrap_or_default();
        assert_eq!(refs.len(), OPS.len());
        for r in refs {
            let target = r["$ref"].as_str().and_then(|s| s.strip_prefix("#/$defs/")).unwrap_or_default().to_owned();
            let def = &schema["$defs"][&target];
            assert_eq!(def["additionalProperties"], false, "{target}");
            assert_eq!(target.strip_prefix("op_"), def["properties"]["op"]["const"].as_str());
        }
        assert!(!NAME.is_empty() && DESCRIPTION.ends_with('.'));
    }
}
