//! echo: answers with its message. `delay_ms` and `fail` make it the controlled handler operators (and our
//! tests) use to see a pipeline work: a known duration, a transient failure that retries, an input refusal.

use serde_json::{Value, json};

use crate::contract::Failure as HandlerFailure;
use crate::input::{self, InputError};

pub const NAME: &str = "echo";
pub const DESCRIPTION: &str =
    "Returns its message unchanged; delay_ms waits first and fail makes the attempt fail, to test a pipeline.";
/// The longest a caller may ask echo to wait.
pub const MAX_DELAY_MS: u64 = 60_000;

pub fn input_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "message": { "description": "Any JSON value; returned as is." },
            "delay_ms": { "type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS },
            "fail": { "enum": ["transient"], "description": "Fail every attempt with a retryable error." }
        },
        "additionalProperties": false
    })
}

fn parse(input: &Value) -> Result<(Value, u64, bool), InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, &["message", "delay_ms", "fail"])?;
    let delay = match obj.get("delay_ms") {
        None => 0,
        Some(v) => v
            .as_u64()
            .filter(|d| *d <= MAX_DELAY_MS)
            .ok_or_else(|| InputError::new("/delay_ms", format!("delay_ms must be an integer 0-{MAX_DELAY_MS}")))?,
    };
    let fail = match obj.get("fail") {
        None => false,
        Some(Value::String(s)) if s == "transient" => true,
        Some(_) => return Err(InputError::new("/fail", "fail must be \"transient\"")),
    };
    Ok((obj.get("message").cloned().unwrap_or(Value::Null), delay, fail))
}

pub async fn run(input: &Value) -> Result<Value, HandlerFailure> {
    let (message, delay, fail) = parse(input)?;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if fail {
        return Err(HandlerFailure::Transient("echo was asked to fail (fail: transient)".into()));
    }
    Ok(json!({ "message": message, "delayed_ms": delay }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn echoes_after_its_delay() {
        let started = tokio::time::Instant::now();
        let out = run(&json!({"message": {"a": [1, 2]}, "delay_ms": 1500})).await.unwrap();
        assert_eq!(out, json!({"message": {"a": [1, 2]}, "delayed_ms": 1500}));
        assert_eq!(started.elapsed().as_millis(), 1500);
    }

    #[tokio::test]
    async fn refuses_what_it_does_not_know() {
        assert_eq!(
            run(&json!({"delay_ms": -1})).await.unwrap_err(),
            HandlerFailure::Input(InputError::new("/delay_ms", "delay_ms must be an integer 0-60000"))
        );
        assert!(matches!(run(&json!({"mesage": 1})).await, Err(HandlerFailure::Input(e)) if e.pointer == "/mesage"));
        assert!(matches!(run(&json!({"fail": "transient"})).await, Err(HandlerFailure::Transient(_))));
        assert!(matches!(run(&json!([1])).await, Err(HandlerFailure::Input(e)) if e.pointer.is_empty()));
    }
}
