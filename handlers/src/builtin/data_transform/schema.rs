//! The input's JSON Schema: what the capabilities listing publishes and intake checks before the handler runs.

use serde_json::{Value, json};

use super::{
    DESCRIPTION, FUNCTIONS, MAX_AGGREGATES, MAX_DEDUPE_FIELDS, MAX_ELEMENTS, MAX_FIELD_CHARS, MAX_IN_VALUES,
    MAX_MAP_FIELDS, MAX_OPERATIONS, MAX_SORT_KEYS, OPERATORS, OPS, ORDERS,
};

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
                // Any JSON value; said explicitly because client generators refuse an array without `items`.
                "items": {},
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
        // A conditional names the properties it requires (`true`: the parent constrains them), so OpenAPI linters
        // and client generators that read one subschema at a time see them defined.
        "else": { "required": ["field"], "properties": { "field": true } },
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
                "then": { "required": ["value"], "properties": { "value": true } }
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
                            "if": { "properties": { "fn": { "const": "count" } }, "not": { "required": ["field"], "properties": { "field": true } } },
                            "then": { "required": ["as"], "properties": { "as": true } }
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
