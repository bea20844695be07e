//! Running the pipeline: each operation over the previous one's result (sort, filter, map, group, aggregate,
//! dedupe), and the aggregates' arithmetic.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::order::{Num, compare, exact, type_name};
use super::{Agg, AggFn, Item, NULL, Operation, Operator, Order, Path, SortKey};
use crate::input::InputError;

pub(super) fn apply(operation: &Operation, step: usize, items: Vec<Item>) -> Result<Vec<Item>, InputError> {
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
pub(super) fn lookup<'a>(item: &'a Item, path: &Path, step: usize) -> Result<Option<&'a Value>, InputError> {
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
pub(super) fn rows<'a>(items: &'a [Item], paths: &[&Path], step: usize) -> Result<Vec<Vec<&'a Value>>, InputError> {
    items.iter().map(|item| paths.iter().map(|path| Ok(lookup(item, path, step)?.unwrap_or(&NULL))).collect()).collect()
}

pub(super) fn sort(items: Vec<Item>, keys: &[SortKey], step: usize) -> Result<Vec<Item>, InputError> {
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

pub(super) fn matches(operator: Operator, found: Option<&Value>, value: &Value) -> bool {
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

pub(super) fn group(items: &[Item], by: &Path, aggregates: &[Agg], step: usize) -> Result<Vec<Item>, InputError> {
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

pub(super) fn dedupe(items: Vec<Item>, by: Option<&[Path]>, step: usize) -> Result<Vec<Item>, InputError> {
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

pub(super) fn compute(agg: &Agg, members: &[&Item], step: usize) -> Result<Value, InputError> {
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
pub(super) struct Total {
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
