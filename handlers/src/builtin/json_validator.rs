//! The `json-validator` task: validates a JSON instance against a JSON Schema (draft 2020-12 unless the schema's
//! `$schema` names another supported draft) and reports where and why it fails.
//!
//! The schema is untrusted, so validation is closed and bounded: no `$ref` is ever fetched (only references into the
//! schema itself and the bundled meta-schemas resolve), nesting depth is capped, and `pattern` uses the linear-time
//! `regex` engine rather than a backtracking one.

use std::collections::BinaryHeap;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, PatternOptions};
use serde_json::{Map, Value, json};

use crate::input::{self, InputError};

pub const NAME: &str = "json-validator";
pub const DESCRIPTION: &str = "Validates a JSON instance against a JSON Schema (draft 2020-12 by default; drafts 4, \
     6, 7 and 2019-09 when `$schema` names them) and lists each error's instance path, schema path and message.";

pub const MAX_ERRORS: u64 = 100;
pub const DEFAULT_MAX_ERRORS: u64 = 20;
/// Deepest nesting (objects and arrays) accepted in the schema: real schemas stay far below it.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Deepest nesting accepted in the instance (serde_json's own parser stops at 128).
pub const MAX_INSTANCE_DEPTH: usize = 128;
/// Longest error message reported: a message quotes the failing value, which may be large.
pub const MAX_MESSAGE_CHARS: usize = 300;
/// Compiled size allowed for each `pattern` (regex `size_limit` and `dfa_size_limit`, bytes).
pub const MAX_PATTERN_BYTES: usize = 1024 * 1024;

const FIELDS: &[&str] = &["schema", "instance", "max_errors"];

pub fn input_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "schema": {
                "type": ["object", "boolean"],
                "description": format!(
                    "The JSON Schema (draft 2020-12 unless its $schema names draft 4, 6, 7 or 2019-09); \
                     no remote $ref is fetched; at most {MAX_SCHEMA_DEPTH} levels deep"
                ),
            },
            "instance": {
                "description": format!("The JSON value to validate, of any type; at most {MAX_INSTANCE_DEPTH} levels deep"),
            },
            "max_errors": {
                "type": "integer",
                "description": "How many errors to list (error_count still counts them all)",
                "minimum": 1,
                "maximum": MAX_ERRORS,
                "default": DEFAULT_MAX_ERRORS,
            },
        },
        "required": ["schema", "instance"],
        "additionalProperties": false,
    })
}

pub fn run(input: &Value) -> Result<Value, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, FIELDS)?;
    let schema = obj.get("schema").ok_or_else(|| InputError::new("/schema", "schema is required"))?;
    let instance = obj.get("instance").ok_or_else(|| InputError::new("/instance", "instance is required"))?;
    let max_errors = integer_in(obj, "max_errors", 1, MAX_ERRORS, DEFAULT_MAX_ERRORS)? as usize;

    if !(schema.is_object() || schema.is_boolean()) {
        return Err(InputError::new("/schema", "schema must be a JSON Schema: an object or a boolean"));
    }
    if depth(schema) > MAX_SCHEMA_DEPTH {
        return Err(InputError::new("/schema", format!("schema must be at most {MAX_SCHEMA_DEPTH} levels deep")));
    }
    if depth(instance) > MAX_INSTANCE_DEPTH {
        return Err(InputError::new("/instance", format!("instance must be at most {MAX_INSTANCE_DEPTH} levels deep")));
    }

    let validator = jsonschema::options()
        .with_draft(draft_of(schema)?)
        // Refuse every reference that is not inside the schema or a bundled meta-schema: fetching would let a
        // caller make us reach arbitrary hosts and files.
        .offline()
        .with_pattern_options(PatternOptions::regex().size_limit(MAX_PATTERN_BYTES).dfa_size_limit(MAX_PATTERN_BYTES))
        .build(schema)
        .map_err(|e| {
            let at = e.instance_path().as_str();
            let detail = if at.is_empty() { e.to_string() } else { format!("{e} (at {at} in the schema)") };
            let detail = truncate(&detail);
            InputError::new(
                "/schema",
                if matches!(e.kind(), ValidationErrorKind::Referencing(_)) {
                    format!(
                        "schema has a $ref that cannot be resolved (only references within the schema are): {detail}"
                    )
                } else {
                    format!("schema is not a valid JSON Schema: {detail}")
                },
            )
        })?;

    if validator.is_valid(instance) {
        return Ok(json!({ "valid": true, "errors": [], "error_count": 0 }));
    }
    // Keep the first `max_errors` in (instance path, schema path, message) order while counting them all: the
    // listing is deterministic and memory stays bounded however many errors there are.
    let mut kept: BinaryHeap<(String, String, String)> = BinaryHeap::with_capacity(max_errors + 1);
    let mut count: u64 = 0;
    for error in validator.iter_errors(instance) {
        count += 1;
        kept.push((error.instance_path().to_string(), error.schema_path().to_string(), truncate(&error.to_string())));
        if kept.len() > max_errors {
            kept.pop();
        }
    }
    let errors: Vec<Value> = kept
        .into_sorted_vec()
        .into_iter()
        .map(|(instance_path, schema_path, message)| {
            json!({ "instance_path": instance_path, "schema_path": schema_path, "message": message })
        })
        .collect();
    Ok(json!({ "valid": count == 0, "errors": errors, "error_count": count }))
}

/// The draft named by `$schema`, or 2020-12 when there is none or it names no draft we know (a custom meta-schema
/// could only be had by fetching it, which we never do).
fn draft_of(schema: &Value) -> Result<Draft, InputError> {
    match schema.get("$schema") {
        None => Ok(Draft::Draft202012),
        Some(Value::String(uri)) => match Draft::from_schema_uri(uri) {
            Draft::Draft4 => Ok(Draft::Draft4),
            Draft::Draft6 => Ok(Draft::Draft6),
            Draft::Draft7 => Ok(Draft::Draft7),
            Draft::Draft201909 => Ok(Draft::Draft201909),
            _ => Ok(Draft::Draft202012),
        },
        Some(_) => Err(InputError::new("/schema/$schema", "$schema must be a string (a meta-schema URI)")),
    }
}

/// An optional integer field within `min..=max`; absent means `default`.
fn integer_in(obj: &Map<String, Value>, field: &str, min: u64, max: u64, default: u64) -> Result<u64, InputError> {
    match obj.get(field) {
        None => Ok(default),
        Some(v) => v.as_u64().filter(|n| (min..=max).contains(n)).ok_or_else(|| {
            InputError::new(format!("/{field}"), format!("{field} must be an integer from {min} to {max}"))
        }),
    }
}

/// Nesting depth of objects and arrays (a scalar is 0), without recursion so a deep value cannot overflow the stack.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(schema: Value, instance: Value) -> Value {
        let input = Map::from_iter([("schema".to_owned(), schema), ("instance".to_owned(), instance)]);
        run(&Value::Object(input)).expect("a valid input")
    }

    fn refusal(input: &Value) -> InputError {
        run(input).expect_err("must be refused")
    }

    /// Cases from the official JSON-Schema-Test-Suite (tests/draft2020-12; see the fixture folder's README.md).
    const SUITE: &[(&str, &str)] = &[
        ("anyOf", include_str!("../../../tests/fixtures/json-schema-suite/anyOf.json")),
        ("dependentRequired", include_str!("../../../tests/fixtures/json-schema-suite/dependentRequired.json")),
        ("enum", include_str!("../../../tests/fixtures/json-schema-suite/enum.json")),
        ("if-then-else", include_str!("../../../tests/fixtures/json-schema-suite/if-then-else.json")),
        ("minimum", include_str!("../../../tests/fixtures/json-schema-suite/minimum.json")),
        ("oneOf", include_str!("../../../tests/fixtures/json-schema-suite/oneOf.json")),
        ("prefixItems", include_str!("../../../tests/fixtures/json-schema-suite/prefixItems.json")),
        ("required", include_str!("../../../tests/fixtures/json-schema-suite/required.json")),
        ("type", include_str!("../../../tests/fixtures/json-schema-suite/type.json")),
        ("unevaluatedProperties", include_str!("../../../tests/fixtures/json-schema-suite/unevaluatedProperties.json")),
    ];

    #[test]
    fn the_official_test_suite_cases_pass() {
        let mut cases = 0;
        let mut failures = Vec::new();
        for (file, text) in SUITE {
            let groups: Vec<Value> = serde_json::from_str(text).expect("suite file is JSON");
            for group in &groups {
                for test in group["tests"].as_array().expect("tests") {
                    cases += 1;
                    let input = json!({ "schema": group["schema"], "instance": test["data"], "max_errors": 100 });
                    let out = run(&input).unwrap_or_else(|e| panic!("{file}: {}: {e}", group["description"]));
                    let expected = &test["valid"];
                    if &out["valid"] != expected {
                        failures.push(format!("{file}: {} / {}", group["description"], test["description"]));
                    }
                    // A valid answer lists no errors; an invalid one at least one.
                    assert_eq!(out["error_count"] == 0, out["valid"] == true, "{file}: {out}");
                }
            }
        }
        assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
        assert!(cases > 250, "only {cases} cases were read");
    }

    #[test]
    fn errors_name_the_instance_and_schema_paths() {
        let out = validate(json!({ "properties": { "a": { "type": "integer" } } }), json!({ "a": "x" }));
        assert_eq!(out["valid"], false);
        assert_eq!(out["error_count"], 1);
        let error = &out["errors"][0];
        assert_eq!(error["instance_path"], "/a");
        assert_eq!(error["schema_path"], "/properties/a/type");
        assert!(error["message"].as_str().unwrap().contains("integer"), "{error}");

        let out = validate(
            json!({ "type": "object", "properties": { "items": { "type": "array", "items": { "minimum": 0 } } },
                    "required": ["id"] }),
            json!({ "items": [1, -1, 2, -2] }),
        );
        assert_eq!(out["error_count"], 3);
        let paths: Vec<&str> =
            out["errors"].as_array().unwrap().iter().map(|e| e["instance_path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["", "/items/1", "/items/3"]);
        assert_eq!(out["errors"][1]["schema_path"], "/properties/items/items/minimum");
    }

    #[test]
    fn valid_instances_report_no_errors() {
        assert_eq!(validate(json!(true), json!(42)), json!({ "valid": true, "errors": [], "error_count": 0 }));
        assert_eq!(validate(json!({ "type": "null" }), Value::Null)["valid"], true);
        let out = validate(json!(false), json!(42));
        assert_eq!((out["valid"].as_bool(), out["error_count"].as_u64()), (Some(false), Some(1)));
    }

    #[test]
    fn max_errors_caps_the_list_but_not_the_count() {
        let schema = json!({ "items": { "type": "string" } });
        let instance: Vec<u32> = (0..50).collect();
        let out = run(&json!({ "schema": schema, "instance": instance, "max_errors": 5 })).unwrap();
        assert_eq!(out["error_count"], 50);
        let errors = out["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 5);
        // Sorted by path as text; the same input always lists the same five.
        assert_eq!(errors[0]["instance_path"], "/0");
        assert_eq!(run(&json!({ "schema": schema, "instance": instance, "max_errors": 5 })).unwrap(), out);
        let default = validate(schema, json!(instance));
        assert_eq!(default["errors"].as_array().unwrap().len(), DEFAULT_MAX_ERRORS as usize);
    }

    #[test]
    fn the_draft_follows_schema_and_defaults_to_2020_12() {
        // 2020-12: prefixItems applies, and items after it are checked by items.
        let schema = json!({ "prefixItems": [{ "type": "integer" }], "items": false });
        assert_eq!(validate(schema, json!([1, 2]))["valid"], false);
        // Draft 7: items as an array is the tuple form, and prefixItems means nothing.
        let draft7 = json!({ "$schema": "http://json-schema.org/draft-07/schema#", "items": [{ "type": "integer" }],
                             "prefixItems": [{ "type": "string" }] });
        assert_eq!(validate(draft7.clone(), json!([1, "x"]))["valid"], true);
        assert_eq!(validate(draft7, json!(["x"]))["valid"], false);
        // Draft 4: exclusiveMaximum is a boolean modifier.
        let draft4 =
            json!({ "$schema": "http://json-schema.org/draft-04/schema#", "maximum": 3, "exclusiveMaximum": true });
        assert_eq!(validate(draft4, json!(3))["valid"], false);
        // An unknown meta-schema is read as 2020-12 rather than fetched.
        let custom = json!({ "$schema": "https://example.com/my-meta", "dependentRequired": { "a": ["b"] } });
        assert_eq!(validate(custom, json!({ "a": 1 }))["valid"], false);
    }

    #[test]
    fn local_references_resolve_and_remote_ones_are_refused() {
        let schema = json!({ "$defs": { "pos": { "type": "integer", "minimum": 1 } },
                             "properties": { "n": { "$ref": "#/$defs/pos" } } });
        let out = validate(schema, json!({ "n": 0 }));
        assert_eq!(out["errors"][0]["instance_path"], "/n");
        // The bundled meta-schema is no remote fetch.
        let meta = json!({ "$ref": "https://json-schema.org/draft/2020-12/schema" });
        assert_eq!(validate(meta.clone(), json!({ "type": "string" }))["valid"], true);
        assert_eq!(validate(meta, json!({ "type": 12 }))["valid"], false);

        for remote in ["https://example.com/schema.json", "file:///etc/passwd", "other.json#/x"] {
            let e = refusal(&json!({ "schema": { "$ref": remote }, "instance": 1 }));
            assert_eq!(e.pointer, "/schema", "{remote}");
            assert!(e.detail.contains("$ref") && e.detail.contains(remote.split('#').next().unwrap()), "{}", e.detail);
        }
        // A reference cycle is evaluated without looping or overflowing the stack.
        let cycle = json!({ "$defs": { "a": { "$ref": "#/$defs/a" } }, "$ref": "#/$defs/a" });
        assert_eq!(run(&json!({ "schema": cycle, "instance": 1 })).unwrap()["valid"], true);
        let recursive = json!({ "type": "array", "items": { "$ref": "#" } });
        assert_eq!(validate(recursive.clone(), json!([[[], [[]]]]))["valid"], true);
        assert_eq!(validate(recursive, json!([[[1]]]))["errors"][0]["instance_path"], "/0/0/0");
    }

    #[test]
    fn invalid_schemas_are_refused_at_schema() {
        let e = refusal(&json!({ "schema": { "type": "integr" }, "instance": 1 }));
        assert_eq!(e.pointer, "/schema");
        assert!(e.detail.contains("integr"), "{}", e.detail);
        let e = refusal(&json!({ "schema": { "properties": { "a": { "minimum": "1" } } }, "instance": 1 }));
        assert_eq!(e.pointer, "/schema");
        assert!(e.detail.contains("/properties/a/minimum"), "{}", e.detail);
        assert_eq!(refusal(&json!({ "schema": [1], "instance": 1 })).pointer, "/schema");
        assert_eq!(refusal(&json!({ "schema": "string", "instance": 1 })).pointer, "/schema");
        assert_eq!(refusal(&json!({ "schema": { "$schema": 7 }, "instance": 1 })).pointer, "/schema/$schema");
        // Look-around needs a backtracking engine, which we do not run on untrusted patterns.
        let e = refusal(&json!({ "schema": { "pattern": "^(?!a)" }, "instance": "b" }));
        assert_eq!(e.pointer, "/schema");
        // Linear-time patterns (translated from ECMA 262) work.
        let digits = json!({ "pattern": "^\\d{3}$" });
        assert_eq!(validate(digits.clone(), json!("123"))["valid"], true);
        assert_eq!(validate(digits, json!("12a"))["valid"], false);
    }

    #[test]
    fn bad_input_is_refused_naming_the_field() {
        let mut deep = json!({ "type": "object" });
        for _ in 0..MAX_SCHEMA_DEPTH {
            deep = json!({ "properties": { "a": deep } });
        }
        let e = refusal(&json!({ "schema": deep, "instance": {} }));
        assert_eq!(e.pointer, "/schema");
        assert!(e.detail.contains(&MAX_SCHEMA_DEPTH.to_string()), "{}", e.detail);

        let mut deep_instance = json!(1);
        for _ in 0..=MAX_INSTANCE_DEPTH {
            deep_instance = json!([deep_instance]);
        }
        assert_eq!(refusal(&json!({ "schema": true, "instance": deep_instance })).pointer, "/instance");

        assert_eq!(refusal(&json!({ "instance": 1 })).pointer, "/schema");
        assert_eq!(refusal(&json!({ "schema": true })).pointer, "/instance");
        assert_eq!(refusal(&json!({ "schema": true, "instance": 1, "max_errors": 0 })).pointer, "/max_errors");
        assert_eq!(refusal(&json!({ "schema": true, "instance": 1, "max_errors": 101 })).pointer, "/max_errors");
        assert_eq!(refusal(&json!({ "schema": true, "instance": 1, "extra": 1 })).pointer, "/extra");
        assert_eq!(refusal(&json!("schema")).pointer, "");
        // null is an instance like any other.
        assert_eq!(validate(json!({ "type": "string" }), Value::Null)["valid"], false);
    }

    #[test]
    fn long_messages_are_truncated() {
        let big: Vec<String> = (0..200).map(|i| format!("value number {i}")).collect();
        let out = validate(json!({ "type": "object" }), json!(big));
        let message = out["errors"][0]["message"].as_str().unwrap();
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn depth_counts_nesting() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({ "a": [1, { "b": [] }] })), 4);
    }

    #[test]
    fn the_schema_matches_the_limits() {
        let schema = input_schema();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["max_errors"]["maximum"], MAX_ERRORS);
        assert_eq!(schema["required"], json!(["schema", "instance"]));
        // The input schema is itself a valid schema, and accepts a valid input.
        let out = validate(schema, json!({ "schema": { "type": "string" }, "instance": "x" }));
        assert_eq!(out["valid"], true);
    }
}
