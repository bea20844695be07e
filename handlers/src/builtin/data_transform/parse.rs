//! Reading the pipeline: every operation is checked, and refused with a pointer to its field, before any runs.

use serde_json::{Map, Value};

use super::{
    Agg, AggFn, FUNCTIONS, MAX_AGGREGATES, MAX_DEDUPE_FIELDS, MAX_FIELD_CHARS, MAX_IN_VALUES, MAX_MAP_FIELDS,
    MAX_SORT_KEYS, OPERATORS, OPS, ORDERS, OpKind, Operation, Operator, Order, Path, SortKey,
};
use crate::input::{self, InputError};

/// Re-roots a refusal from one of `input`'s readers, whose pointer is relative to a nested object, at `base`.
pub(super) fn at(base: &str) -> impl Fn(InputError) -> InputError + '_ {
    move |e| InputError::new(format!("{base}{}", e.pointer), e.detail)
}

pub(super) fn child(base: &str, key: &str) -> String {
    format!("{base}/{key}")
}

/// JSON Pointer escaping of one key (RFC 6901), for pointers naming a caller's own key.
pub(super) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

pub(super) fn required<'a>(obj: &'a Map<String, Value>, key: &str, base: &str) -> Result<&'a Value, InputError> {
    obj.get(key).ok_or_else(|| InputError::new(child(base, key), format!("{key} is required")))
}

pub(super) fn object_at<'a>(value: &'a Value, pointer: &str, what: &str) -> Result<&'a Map<String, Value>, InputError> {
    value.as_object().ok_or_else(|| InputError::new(pointer, format!("{what} must be an object")))
}

pub(super) fn array_of<'a>(value: &'a Value, pointer: &str, min: usize, max: usize) -> Result<&'a [Value], InputError> {
    let name = pointer.rsplit('/').next().unwrap_or(pointer);
    match value {
        Value::Array(items) if (min..=max).contains(&items.len()) => Ok(items),
        _ if min == 0 => Err(InputError::new(pointer, format!("{name} must be an array of at most {max} items"))),
        _ => Err(InputError::new(pointer, format!("{name} must be an array of {min} to {max} items"))),
    }
}

/// The table entry whose name `value` is.
pub(super) fn choose<T: Copy>(
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

pub(super) fn parse_path(value: &Value, pointer: String) -> Result<Path, InputError> {
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

pub(super) fn check_name(name: &str, pointer: String) -> Result<String, InputError> {
    if name.is_empty() || name.chars().count() > MAX_FIELD_CHARS {
        return Err(InputError::new(pointer, format!("an output name must be 1 to {MAX_FIELD_CHARS} characters")));
    }
    Ok(name.to_owned())
}

pub(super) fn parse_operation(value: &Value, index: usize) -> Result<Operation, InputError> {
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

pub(super) fn parse_sort(obj: &Map<String, Value>, base: &str) -> Result<Operation, InputError> {
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

pub(super) fn parse_filter(obj: &Map<String, Value>, base: &str) -> Result<Operation, InputError> {
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

pub(super) fn parse_map(obj: &Map<String, Value>, base: &str) -> Result<Operation, InputError> {
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

pub(super) fn parse_aggregates(
    list: &Value,
    pointer: &str,
    min: usize,
    in_group: bool,
) -> Result<Vec<Agg>, InputError> {
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

pub(super) fn parse_dedupe(obj: &Map<String, Value>, base: &str) -> Result<Operation, InputError> {
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
