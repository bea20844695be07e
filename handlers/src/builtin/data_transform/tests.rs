//! The handler through its input and output, and the total order on its own.

use std::cmp::Ordering;

use serde_json::Map;

use super::order::compare_numbers;
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
    let rows =
        result(people(), json!([{ "op": "sort", "by": [{ "field": "city" }, { "field": "name", "order": "desc" }] }]));
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
    let rows = result(json!([1, "1", 1.0, { "a": [1] }, null, { "a": [1.0] }, null, 2]), json!([{ "op": "dedupe" }]));
    assert_eq!(rows, json!([1, "1", { "a": [1] }, null, 2]));
    // Missing and null are the same key.
    let rows =
        result(json!([{ "k": null, "i": 0 }, { "i": 1 }, { "k": 1, "i": 2 }]), json!([{ "op": "dedupe", "by": "k" }]));
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
    assert_eq!(refused_at(d.clone(), json!([{ "op": "map", "fields": { "a/b": 3 } }])), "/operations/0/fields/a~1b");
    assert_eq!(refused_at(d.clone(), json!([{ "op": "map", "fields": { "": "x" } }])), "/operations/0/fields/");
    assert_eq!(
        refused_at(d.clone(), json!([{ "op": "group", "by": "a", "aggregate": [{ "fn": "median", "field": "x" }] }])),
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
