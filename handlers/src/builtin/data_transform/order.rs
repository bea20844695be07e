//! The one total order every comparison uses (see the module's documentation): across JSON types, and exact
//! between numbers.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

pub(super) fn rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

pub(super) fn type_name(value: &Value) -> &'static str {
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
pub(super) fn compare(a: &Value, b: &Value) -> Ordering {
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
pub(super) fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|p, q| p.0.cmp(q.0));
    entries
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Num {
    Int(i128),
    Float(f64),
}

pub(super) fn exact(n: &Number) -> Num {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => Num::Int(i128::from(i)),
        (None, Some(u)) => Num::Int(i128::from(u)),
        // serde_json numbers are never NaN or infinite, so 0.0 is never used.
        (None, None) => Num::Float(n.as_f64().unwrap_or(0.0)),
    }
}

/// Exact numeric order: integers never go through a float, so 2^63 + 1 stays above 2^63.
pub(super) fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    match (exact(a), exact(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Int(x), Num::Float(y)) => compare_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => compare_int_float(y, x).reverse(),
        // No NaN here; partial_cmp also makes -0.0 equal 0.0.
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

pub(super) fn compare_int_float(i: i128, f: f64) -> Ordering {
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
