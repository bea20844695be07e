//! Conditions and updates as data, so the embedded backend evaluates exactly what DynamoDB would.

use std::cmp::Ordering;

use super::item::{Item, Number, Value};

/// Comparison operators DynamoDB supports in condition expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// A condition on the item currently stored under a key. An expired item counts as absent.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A live item exists under the key.
    Exists,
    /// No live item exists under the key (none, or only an expired one).
    NotExists,
    AttrExists(String),
    AttrNotExists(String),
    Cmp(String, CmpOp, Value),
    BeginsWith(String, String),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

impl Condition {
    pub fn eq(attr: &str, value: impl Into<Value>) -> Self {
        Self::Cmp(attr.to_owned(), CmpOp::Eq, value.into())
    }
    pub fn ne(attr: &str, value: impl Into<Value>) -> Self {
        Self::Cmp(attr.to_owned(), CmpOp::Ne, value.into())
    }
    pub fn lt(attr: &str, value: impl Into<Value>) -> Self {
        Self::Cmp(attr.to_owned(), CmpOp::Lt, value.into())
    }
    pub fn le(attr: &str, value: impl Into<Value>) -> Self {
        Self::Cmp(attr.to_owned(), CmpOp::Le, value.into())
    }
    pub fn gt(attr: &str, value: impl Into<Value>) -> Self {
        Self::Cmp(attr.to_owned(), CmpOp::Gt, value.into())
    }
    pub fn ge(attr: &str, value: impl Into<Value>) -> Self {
        Self::Cmp(attr.to_owned(), CmpOp::Ge, value.into())
    }
    #[must_use]
    pub fn and(self, other: Self) -> Self {
        match self {
            Self::And(mut all) => {
                all.push(other);
                Self::And(all)
            }
            first => Self::And(vec![first, other]),
        }
    }
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        Self::Or(vec![self, other])
    }

    /// Evaluates against the live item (`None` when absent or expired), as DynamoDB does.
    pub fn evaluate(&self, item: Option<&Item>) -> bool {
        match self {
            Self::Exists => item.is_some(),
            Self::NotExists => item.is_none(),
            Self::AttrExists(a) => item.and_then(|i| i.get(a)).is_some(),
            Self::AttrNotExists(a) => item.and_then(|i| i.get(a)).is_none(),
            Self::Cmp(a, op, v) => item.and_then(|i| i.get(a)).is_some_and(|current| compare(current, *op, v)),
            Self::BeginsWith(a, prefix) => {
                item.and_then(|i| i.get_str(a)).is_some_and(|s| s.starts_with(prefix.as_str()))
            }
            Self::And(all) => all.iter().all(|c| c.evaluate(item)),
            Self::Or(any) => any.iter().any(|c| c.evaluate(item)),
            Self::Not(c) => !c.evaluate(item),
        }
    }
}

fn compare(current: &Value, op: CmpOp, wanted: &Value) -> bool {
    let ord = current.compare(wanted);
    match op {
        // DynamoDB: `<>` is true for values of different types.
        CmpOp::Eq => ord == Some(Ordering::Equal),
        CmpOp::Ne => ord != Some(Ordering::Equal),
        CmpOp::Lt => ord == Some(Ordering::Less),
        CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => ord == Some(Ordering::Greater),
        CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// An UpdateItem: SET, SET-if-absent, ADD (numbers) and REMOVE on top-level attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub set: Vec<(String, Value)>,
    pub set_if_absent: Vec<(String, Value)>,
    pub add: Vec<(String, Number)>,
    pub remove: Vec<String>,
}

impl Update {
    pub fn new() -> Self {
        Self::default()
    }
    #[must_use]
    pub fn set(mut self, attr: &str, value: impl Into<Value>) -> Self {
        self.set.push((attr.to_owned(), value.into()));
        self
    }
    #[must_use]
    pub fn set_if_absent(mut self, attr: &str, value: impl Into<Value>) -> Self {
        self.set_if_absent.push((attr.to_owned(), value.into()));
        self
    }
    #[must_use]
    pub fn add(mut self, attr: &str, by: impl Into<Number>) -> Self {
        self.add.push((attr.to_owned(), by.into()));
        self
    }
    #[must_use]
    pub fn remove(mut self, attr: &str) -> Self {
        self.remove.push(attr.to_owned());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.set_if_absent.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Every attribute the update touches, for validation (keys may not be changed).
    pub(crate) fn attributes(&self) -> impl Iterator<Item = &str> {
        self.set
            .iter()
            .map(|(a, _)| a.as_str())
            .chain(self.set_if_absent.iter().map(|(a, _)| a.as_str()))
            .chain(self.add.iter().map(|(a, _)| a.as_str()))
            .chain(self.remove.iter().map(String::as_str))
    }

    /// Applies the update to `item` in place; fails like DynamoDB when ADD meets a non-number.
    /// Checks the values this update writes against DynamoDB's number range and nesting (the resulting item's
    /// size can only be judged where the current item is known).
    pub(crate) fn check_values(&self) -> Result<(), super::LimitError> {
        for (attr, value) in self.set.iter().chain(&self.set_if_absent) {
            value.check(attr, 0)?;
        }
        for (attr, by) in &self.add {
            if !by.is_storable() {
                return Err(super::LimitError::NumberOutOfRange { attribute: attr.clone() });
            }
        }
        Ok(())
    }

    #[cfg(feature = "embedded")]
    pub(crate) fn apply(&self, item: &mut Item) -> Result<(), String> {
        for (attr, value) in &self.set {
            item.set(attr, value.clone());
        }
        for (attr, value) in &self.set_if_absent {
            if item.get(attr).is_none() {
                item.set(attr, value.clone());
            }
        }
        for (attr, by) in &self.add {
            let next = match item.get(attr) {
                None => *by,
                Some(Value::N(n)) => n.plus(*by),
                Some(_) => return Err(format!("ADD on non-number attribute {attr}")),
            };
            item.set(attr, Value::N(next));
        }
        for attr in &self.remove {
            item.0.remove(attr);
        }
        Ok(())
    }
}
