//! The item model shared by both backends: DynamoDB's attribute types, minus the ones we do not use.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Name of the partition-key attribute of the single table.
pub const PK: &str = "pk";
/// Name of the sort-key attribute.
pub const SK: &str = "sk";
/// GSI1 key attributes (the `gsi1` index: audit by actor, agents by owner, ...).
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
/// DynamoDB's TTL attribute: epoch seconds after which an item is gone for readers.
pub const EXPIRES_AT: &str = "expires_at";

/// DynamoDB's largest item, attribute names included (400 KB).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's longest partition-key value.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// DynamoDB's longest sort-key value.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// DynamoDB's deepest nesting of lists and maps.
pub const MAX_NESTING: usize = 32;

/// An item DynamoDB would refuse. Both backends refuse it the same way (the embedded store checks these itself),
/// so a test on the embedded store predicts production.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// `size` is `None` when DynamoDB refused an update's result (it does not say by how much).
    #[error("item is {} bytes; DynamoDB stores at most {MAX_ITEM_BYTES} (400 KB)", size.map_or_else(|| "over the limit of".into(), |s| s.to_string()))]
    TooLarge { size: Option<usize> },
    #[error("attribute {attribute}: numbers must be 0 or of magnitude 1E-130 to 9.99E+125")]
    NumberOutOfRange { attribute: String },
    #[error("key attribute {attribute} must be 1-{max} bytes")]
    KeyLength { attribute: &'static str, max: usize },
    #[error("attribute {attribute} nests lists and maps deeper than {MAX_NESTING} levels")]
    TooDeep { attribute: String },
}

/// The primary key of an item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self { pk: pk.into(), sk: sk.into() }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pk, self.sk)
    }
}

/// A DynamoDB number. Integers stay exact (counters, epoch seconds); anything else is a float.
#[derive(Debug, Clone, Copy)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// Parses DynamoDB's decimal text.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(i) = text.parse::<i64>() {
            return Some(Self::Int(i));
        }
        text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Self::Float)
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }

    pub fn as_i64(self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(i),
            Self::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            Self::Float(_) => None,
        }
    }

    /// True when DynamoDB can store `value`: zero, or a magnitude from 1E-130 up to (not including) 1E+126.
    /// (Its 38 significant digits are more than an `f64` has.) NaN and infinities are not numbers to it.
    pub fn storable(value: f64) -> bool {
        value == 0.0 || (value.is_finite() && (1e-130..1e126).contains(&value.abs()))
    }

    pub(crate) fn is_storable(self) -> bool {
        match self {
            Self::Int(_) => true,
            Self::Float(f) => Self::storable(f),
        }
    }

    /// Bytes DynamoDB counts for this number: one per two significant digits, plus one (and one for a sign).
    fn stored_size(self) -> usize {
        // Significant digits: integers exactly (trailing zeros trimmed, as DynamoDB does), floats from their
        // shortest round-trip form.
        let (negative, digits) = match self {
            Self::Int(i) => (i < 0, i.unsigned_abs().to_string().trim_end_matches('0').len()),
            Self::Float(f) => {
                let text = format!("{f:e}");
                let mantissa = text.split('e').next().unwrap_or_default();
                (f < 0.0, mantissa.bytes().filter(u8::is_ascii_digit).count())
            }
        };
        digits.max(1).div_ceil(2) + 1 + usize::from(negative)
    }

    /// DynamoDB's ADD on numbers.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a.checked_add(b).map_or(Self::Float(a as f64 + b as f64), Self::Int),
            (a, b) => Self::Float(a.as_f64() + b.as_f64()),
        }
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.partial_cmp(other) == Some(Ordering::Equal)
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            // Plain decimals for everyday magnitudes; scientific notation otherwise, where `{}` would spell out
            // hundreds of digits (1e300, 5e-324). DynamoDB reads both forms.
            Self::Float(x) if *x == 0.0 || (1e-6..1e16).contains(&x.abs()) => write!(f, "{x}"),
            Self::Float(x) => write!(f, "{x:e}"),
        }
    }
}

impl Serialize for Number {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("not a number: {text}")))
    }
}

impl From<i64> for Number {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

/// An attribute value. Serialised like DynamoDB JSON (`{"S": "..."}`), which is also the embedded store's format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    S(String),
    N(Number),
    #[serde(rename = "BOOL")]
    Bool(bool),
    #[serde(rename = "NULL")]
    Null,
    L(Vec<Value>),
    M(BTreeMap<String, Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::S(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<Number> {
        match self {
            Self::N(n) => Some(*n),
            _ => None,
        }
    }

    /// Bytes DynamoDB counts for this value (without the attribute name), per its documented item-size rules.
    pub fn stored_size(&self) -> usize {
        match self {
            Self::S(s) => s.len(),
            Self::N(n) => n.stored_size(),
            Self::Bool(_) | Self::Null => 1,
            // 3 bytes per list or map, 1 per element, plus the elements (and, in a map, their names).
            Self::L(list) => 3 + list.iter().map(|v| 1 + v.stored_size()).sum::<usize>(),
            Self::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + v.stored_size()).sum::<usize>(),
        }
    }

    /// Checks the numbers and nesting of this value; `attribute` names it in the error.
    pub(crate) fn check(&self, attribute: &str, depth: usize) -> Result<(), LimitError> {
        match self {
            Self::N(n) if !n.is_storable() => Err(LimitError::NumberOutOfRange { attribute: attribute.to_owned() }),
            Self::L(_) | Self::M(_) if depth >= MAX_NESTING => {
                Err(LimitError::TooDeep { attribute: attribute.to_owned() })
            }
            Self::L(list) => list.iter().try_for_each(|v| v.check(attribute, depth + 1)),
            Self::M(map) => map.values().try_for_each(|v| v.check(attribute, depth + 1)),
            _ => Ok(()),
        }
    }

    /// Ordering used by condition comparisons: only same-typed scalars compare, as in DynamoDB.
    pub fn compare(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Self::S(a), Self::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Self::N(a), Self::N(b)) => a.partial_cmp(b),
            (Self::Bool(a), Self::Bool(b)) if a == b => Some(Ordering::Equal),
            (Self::Null, Self::Null) => Some(Ordering::Equal),
            (a, b) if a == b => Some(Ordering::Equal),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::S(value.to_owned())
    }
}
impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::S(value)
    }
}
impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::N(Number::Int(value))
    }
}
impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Self::N(Number::Float(value))
    }
}
impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

/// One item: its key attributes plus any others.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Item(pub BTreeMap<String, Value>);

impl Item {
    /// A new item with its key set.
    pub fn new(key: &Key) -> Self {
        let mut item = Self::default();
        item.set(PK, key.pk.clone());
        item.set(SK, key.sk.clone());
        item
    }

    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        self.0.insert(name.to_owned(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_number).and_then(Number::as_i64)
    }

    /// The item's key, if both key attributes are strings.
    pub fn key(&self) -> Option<Key> {
        Some(Key::new(self.get_str(PK)?, self.get_str(SK)?))
    }

    /// The GSI1 key, when the item is projected into that index.
    pub fn gsi1_key(&self) -> Option<(&str, &str)> {
        Some((self.get_str(GSI1_PK)?, self.get_str(GSI1_SK)?))
    }

    pub fn expires_at(&self) -> Option<i64> {
        self.get_i64(EXPIRES_AT)
    }

    /// The item's size as DynamoDB counts it: attribute names plus values.
    pub fn stored_size(&self) -> usize {
        self.0.iter().map(|(name, value)| name.len() + value.stored_size()).sum()
    }

    /// Checks the item against DynamoDB's limits: 400 KB, number range, key lengths, nesting. Routes call it at
    /// the edge to answer 413/422; the embedded store calls it on every write, as DynamoDB does.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        for (attribute, max) in [(PK, MAX_PARTITION_KEY_BYTES), (SK, MAX_SORT_KEY_BYTES)] {
            if let Some(Value::S(key)) = self.get(attribute)
                && (key.is_empty() || key.len() > max)
            {
                return Err(LimitError::KeyLength { attribute, max });
            }
        }
        for (name, value) in &self.0 {
            value.check(name, 0)?;
        }
        let size = self.stored_size();
        if size > MAX_ITEM_BYTES {
            return Err(LimitError::TooLarge { size: Some(size) });
        }
        Ok(())
    }

    /// True when the item's TTL has passed: readers must not see it, whether or not the reaper has run.
    pub fn is_expired(&self, now_epoch: i64) -> bool {
        self.expires_at().is_some_and(|t| t <= now_epoch)
    }
}
