//! What every handler shares: its refusal of an input (a 422 problem whose `pointer` names the field) and the
//! small readers handlers use to pull typed fields out of their JSON input with that refusal.

use serde_json::Value;

/// A handler's refusal of its input. `pointer` is a JSON Pointer into the task's input (`/text`,
/// `/operations/2/field`); the route answers 422 and prefixes it with where the input sits in the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {detail}")]
pub struct InputError {
    pub pointer: String,
    pub detail: String,
}

impl InputError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), detail: detail.into() }
    }
}

/// The input as an object, or a refusal at the root.
pub fn object(input: &Value) -> Result<&serde_json::Map<String, Value>, InputError> {
    input.as_object().ok_or_else(|| InputError::new("", "the input must be a JSON object"))
}

/// A required string field of at most `max_chars` characters.
pub fn string<'a>(
    obj: &'a serde_json::Map<String, Value>,
    field: &str,
    max_chars: usize,
) -> Result<&'a str, InputError> {
    let pointer = format!("/{field}");
    match obj.get(field) {
        None => Err(InputError::new(pointer, format!("{field} is required"))),
        Some(Value::String(s)) if s.chars().count() <= max_chars => Ok(s),
        Some(Value::String(_)) => {
            Err(InputError::new(pointer, format!("{field} must be at most {max_chars} characters")))
        }
        Some(_) => Err(InputError::new(pointer, format!("{field} must be a string"))),
    }
}

/// Refuses any field not in `known`, naming it: a misspelt option must not be silently ignored.
pub fn only_fields(obj: &serde_json::Map<String, Value>, known: &[&str]) -> Result<(), InputError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(InputError::new(
            format!("/{unknown}"),
            format!("unknown field {unknown:?}; expected one of: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}
