//! The `smart-routing` handler: reads a plain-language task description and recommends which built-in handler
//! should run it, with a complexity score, a priority and a time estimate.
//!
//! Rule-based on purpose: every number comes from a feature that `reasons` names (a keyword, a count, the
//! deadline), so a caller can see why a task was routed where it was, and the same description always routes
//! the same way without a model.

use serde_json::{Value, json};

use crate::input::{self, InputError};

pub const NAME: &str = "smart-routing";
pub const DESCRIPTION: &str = "Recommends the handler for a plain-language task description, with a complexity \
     score, priority, time estimate and the reasons behind them.";
pub const MAX_INPUT_CHARS: usize = 10_000;

const FIELDS: &[&str] = &["description", "deadline_seconds"];

/// A deadline at or under this is short: high priority.
const SHORT_DEADLINE_SECONDS: u64 = 60;
/// A deadline at or over this leaves room: low priority (unless urgency words say otherwise).
const LONG_DEADLINE_SECONDS: u64 = 3600;
/// A number at least this large in the description signals a data volume ("50,000 rows").
const LARGE_NUMBER: u64 = 10_000;
/// The confidence given to the echo fallback: nothing in the description pointed anywhere.
const FALLBACK_CONFIDENCE: f64 = 0.1;
const FALLBACK_HANDLER: &str = "echo";
const ALTERNATIVES: usize = 3;

/// A handler and the words that point to it.
#[derive(Debug)]
struct Route {
    handler: &'static str,
    /// Typical run time at complexity 0, in ms; the estimate grows with the score.
    base_ms: u64,
    /// A cue (one or more words, each matched with its common suffixes) and its weight: a word that names
    /// the job ("checksum") weighs more than one that only hints at it ("file").
    cues: &'static [(&'static str, usize)],
}

/// In handler-name order, which is also the order ties are broken in.
const ROUTES: &[Route] = &[
    Route {
        handler: "api-tester",
        base_ms: 300,
        cues: &[
            ("api", 2),
            ("api test", 2),
            ("curl", 2),
            ("endpoint", 3),
            ("graphql", 2),
            ("latency", 1),
            ("request", 1),
            ("response", 1),
            ("rest", 1),
            ("status code", 3),
            ("test", 1),
        ],
    },
    Route {
        handler: "data-transform",
        base_ms: 20,
        cues: &[
            ("aggregate", 3),
            ("average", 1),
            ("columns", 1),
            ("convert", 1),
            ("csv", 1),
            ("dedupe", 3),
            ("deduplicate", 3),
            ("filter", 2),
            ("flatten", 2),
            ("group", 2),
            ("group by", 1),
            ("map", 1),
            ("merge", 1),
            ("pivot", 2),
            ("records", 1),
            ("rename", 1),
            ("reshape", 2),
            ("rows", 1),
            ("sort", 2),
            ("sum", 1),
            ("transform", 2),
        ],
    },
    Route {
        handler: "echo",
        base_ms: 5,
        cues: &[
            ("echo", 3),
            ("mirror", 2),
            ("noop", 3),
            ("pass through", 2),
            ("passthrough", 3),
            ("repeat back", 3),
            ("return as is", 3),
            ("round trip", 2),
        ],
    },
    Route {
        handler: "file-processing",
        base_ms: 40,
        cues: &[
            ("base64", 2),
            ("binary", 1),
            ("bytes", 1),
            ("checksum", 3),
            ("file", 1),
            ("file type", 3),
            ("hash", 3),
            ("magic bytes", 3),
            ("md5", 3),
            ("mime", 2),
            ("sha", 2),
            ("sha256", 3),
            ("upload", 1),
        ],
    },
    Route {
        handler: "health-check",
        base_ms: 100,
        cues: &[
            ("alive", 2),
            ("down", 1),
            ("health", 3),
            ("healthy", 2),
            ("heartbeat", 3),
            ("liveness", 3),
            ("monitor", 2),
            ("ping", 3),
            ("reachable", 2),
            ("readiness", 3),
            ("status", 1),
            ("up or down", 3),
            ("uptime", 3),
        ],
    },
    Route {
        handler: "image-metadata",
        base_ms: 40,
        cues: &[
            ("camera", 2),
            ("dimensions", 2),
            ("exif", 3),
            ("gif", 3),
            ("height", 1),
            ("image", 3),
            ("jpeg", 3),
            ("jpg", 3),
            ("metadata", 1),
            ("photo", 3),
            ("picture", 3),
            ("png", 3),
            ("resolution", 1),
            ("webp", 3),
            ("width", 1),
        ],
    },
    Route {
        handler: "json-validator",
        base_ms: 10,
        cues: &[
            ("conform", 2),
            ("json", 1),
            ("json schema", 3),
            ("malformed", 2),
            ("required field", 2),
            ("schema", 2),
            ("valid", 1),
            ("validate", 2),
            ("well formed", 2),
        ],
    },
    Route {
        handler: "text-analysis",
        base_ms: 30,
        cues: &[
            ("article", 2),
            ("essay", 2),
            ("flesch", 3),
            ("key phrases", 3),
            ("keywords", 2),
            ("language", 2),
            ("paragraph", 1),
            ("readability", 3),
            ("reading level", 3),
            ("sentiment", 3),
            ("syllables", 3),
            ("text", 1),
            ("tone", 2),
            ("word count", 3),
        ],
    },
    Route {
        handler: "webhook",
        base_ms: 250,
        cues: &[
            ("alert", 2),
            ("callback", 3),
            ("deliver", 1),
            ("event", 1),
            ("notify", 3),
            ("post to", 3),
            ("send to", 2),
            ("slack", 2),
            ("subscriber", 2),
            ("webhook", 3),
        ],
    },
];

/// Technical terms: each distinct one adds complexity (more moving parts to get right).
#[rustfmt::skip]
const TECH_TERMS: &[&str] = &[
    "aggregate", "api", "async", "auth", "authentication", "base64", "batch", "bucket", "cache", "callback",
    "certificate", "checksum", "compress", "concurrent", "cron", "csv", "database", "decode", "decrypt", "dedupe",
    "dns", "docker", "encode", "encrypt", "endpoint", "exif", "graphql", "gzip", "hash", "http", "jpeg", "json", "jwt",
    "kubernetes", "lambda", "latency", "md5", "metadata", "mime", "oauth", "pagination", "parallel", "parse",
    "pipeline", "png", "query", "queue", "rate limit", "regex", "retry", "s3", "schema", "serialize", "sha256", "sql",
    "ssl", "stream", "thread", "timeout", "tls", "token", "unicode", "uptime", "utf8", "webhook", "xml", "yaml", "zip",
];

/// Words that order steps ("first …, then …").
const SEQUENCE_WORDS: &[&str] =
    &["first", "then", "next", "after", "afterwards", "finally", "lastly", "second", "third", "step", "steps"];

/// Words that join requirements.
const CONJUNCTIONS: &[&str] = &["and", "or", "also", "plus"];

/// Words that signal a lot of data.
const VOLUME_WORDS: &[&str] = &[
    "billion", "bulk", "dataset", "entire", "gb", "gigabyte", "huge", "large", "massive", "mb", "megabyte", "million",
    "tb", "terabyte", "thousand",
];

/// Words that make a task urgent (unless negated: "not urgent", "no rush").
const URGENCY_WORDS: &[&str] = &[
    "as soon as possible",
    "asap",
    "blocker",
    "critical",
    "emergency",
    "hurry",
    "immediately",
    "outage",
    "quickly",
    "right away",
    "right now",
    "rush",
    "urgent",
];

/// Words that say a task can wait.
const LOW_PRIORITY_WORDS: &[&str] =
    &["background", "eventually", "low priority", "nightly", "no rush", "not urgent", "someday", "whenever"];

/// A word right before an urgency word that cancels it; "t" is what "isn't" leaves after splitting.
const NEGATORS: &[&str] = &["no", "not", "non", "never", "t", "without"];

/// Endings a cue word may take and still match ("sort" → "sorts", "sorted", "sorting").
const SUFFIXES: &[&str] = &["s", "es", "d", "ed", "ing", "er", "ers", "ion", "ions", "ly"];
/// Endings after a dropped final "e" ("validate" → "validating", "validation", "validator").
const E_DROP_SUFFIXES: &[&str] = &["ing", "ion", "ions", "ation", "ations", "or", "ors"];
/// Endings after a final "y" becomes "i" ("notify" → "notifies", "notified", "notification").
const Y_SUFFIXES: &[&str] = &["ies", "ied", "ication", "ications"];
/// Endings after a doubled final consonant ("map" → "mapping", "sum" → "summed").
const DOUBLED_SUFFIXES: &[&str] = &["ed", "ing", "er", "ers"];

pub fn input_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "smart-routing input",
        "type": "object",
        "properties": {
            "description": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_INPUT_CHARS,
                "description": "What the task should do, in plain language (counted in Unicode characters)."
            },
            "deadline_seconds": {
                "type": "integer",
                "minimum": 1,
                "description": "How soon the result is needed; a short deadline raises the priority."
            }
        },
        "required": ["description"],
        "additionalProperties": false
    })
}

pub fn run(input: &Value) -> Result<Value, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, FIELDS)?;
    let description = input::string(obj, "description", MAX_INPUT_CHARS)?;
    if description.is_empty() {
        return Err(InputError::new("/description", "description must not be empty"));
    }
    let deadline = match obj.get("deadline_seconds") {
        None => None,
        Some(v) => Some(v.as_u64().filter(|&n| n >= 1).ok_or_else(|| {
            InputError::new("/deadline_seconds", "deadline_seconds must be an integer of at least 1")
        })?),
    };
    Ok(route(description, deadline))
}

fn route(description: &str, deadline: Option<u64>) -> Value {
    let lowered = description.to_lowercase();
    let tokens: Vec<&str> = lowered.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).collect();
    let mut reasons = Vec::new();

    // Which handler: the one whose cues weigh most; a tie goes to the first name alphabetically.
    let mut scored: Vec<(&Route, usize, Vec<&str>)> = ROUTES
        .iter()
        .map(|r| {
            let cues: Vec<&str> = r.cues.iter().map(|&(cue, _)| cue).collect();
            let found = matched(&tokens, &cues, false);
            let score = r.cues.iter().filter(|(cue, _)| found.contains(cue)).map(|&(_, w)| w).sum();
            (r, score, found)
        })
        .collect();
    scored.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.handler.cmp(b.0.handler)));
    let (best, best_score, best_cues) = match scored.first() {
        Some((r, s, c)) if *s > 0 => (*r, *s, c.clone()),
        _ => (fallback_route(), 0, Vec::new()),
    };
    let runner_up = scored.iter().find(|(r, _, _)| r.handler != best.handler).map_or(0, |&(_, s, _)| s);
    let confidence = if best_score == 0 {
        reasons.push(format!("no handler keywords found → {FALLBACK_HANDLER} (fallback)"));
        FALLBACK_CONFIDENCE
    } else {
        reasons.push(format!("mentions {} → {} (score {best_score})", quoted_list(&best_cues), best.handler));
        // Clear evidence and no rival near it → close to 1; a tie → under one half.
        hundredths(best_score, best_score + runner_up + 1)
    };

    let complexity = complexity(description, &tokens, &mut reasons);

    let urgent = matched(&tokens, URGENCY_WORDS, true);
    let relaxed = matched(&tokens, LOW_PRIORITY_WORDS, false);
    let priority = if !urgent.is_empty() {
        reasons.push(format!("urgency {} → high priority", quoted_list(&urgent)));
        "high"
    } else if let Some(d) = deadline.filter(|&d| d <= SHORT_DEADLINE_SECONDS) {
        reasons.push(format!("deadline {d} s (≤ {SHORT_DEADLINE_SECONDS} s) → high priority"));
        "high"
    } else if !relaxed.is_empty() {
        reasons.push(format!("{} → low priority", quoted_list(&relaxed)));
        "low"
    } else if let Some(d) = deadline.filter(|&d| d >= LONG_DEADLINE_SECONDS) {
        reasons.push(format!("deadline {d} s (≥ {LONG_DEADLINE_SECONDS} s) → low priority"));
        "low"
    } else {
        reasons.push("no urgency words or short deadline → normal priority".to_owned());
        "normal"
    };

    // Each 25 points of complexity adds the handler's base time once more: 0 → ×1, 100 → ×5.
    let estimated_ms = best.base_ms * (25 + complexity as u64) / 25;
    reasons.push(format!(
        "estimate: {} ms typical for {} × (1 + {complexity}/25) = {estimated_ms} ms",
        best.base_ms, best.handler
    ));
    if let Some(d) = deadline
        && estimated_ms > d.saturating_mul(1000)
    {
        reasons.push(format!("the estimate exceeds the {d} s deadline"));
    }

    let alternatives: Vec<Value> = scored
        .iter()
        .filter(|(r, s, _)| *s > 0 && r.handler != best.handler)
        .take(ALTERNATIVES)
        .map(|(r, s, _)| json!({ "handler": r.handler, "score": s }))
        .collect();

    json!({
        "complexity_score": complexity,
        "recommended_handler": best.handler,
        "priority": priority,
        "estimated_ms": estimated_ms,
        "confidence": confidence,
        "reasons": reasons,
        "alternatives": alternatives,
    })
}

fn fallback_route() -> &'static Route {
    // ROUTES holds the fallback handler; the literal below only keeps this total without an unwrap.
    const ECHO: Route = Route { handler: FALLBACK_HANDLER, base_ms: 5, cues: &[] };
    ROUTES.iter().find(|r| r.handler == FALLBACK_HANDLER).unwrap_or(&ECHO)
}

/// Complexity 0..=100, the sum of capped features (caps add up to 100), each named in `reasons`:
/// length (1 per 4 words, ≤ 25), distinct technical terms (5 each, ≤ 30), steps (4 per list item, 3 per
/// sequencing word, 1 per conjunction, ≤ 25), data volume (5 per volume word or number ≥ 10,000, ≤ 10) and
/// urgency (5 per urgency word, ≤ 10).
fn complexity(description: &str, tokens: &[&str], reasons: &mut Vec<String>) -> usize {
    let mut total = 0;
    let mut add = |points: usize, cap: usize, why: String| {
        let points = points.min(cap);
        if points > 0 {
            reasons.push(format!("{why} → +{points} complexity"));
            total += points;
        }
    };

    add(tokens.len() / 4, 25, format!("length {} words", tokens.len()));

    let tech = matched(tokens, TECH_TERMS, false);
    add(5 * tech.len(), 30, format!("technical terms {}", quoted_list(&tech)));

    let items = description.lines().filter(|l| is_list_item(l)).count();
    let sequence = tokens.iter().filter(|t| SEQUENCE_WORDS.contains(t)).count();
    let joins = tokens.iter().filter(|t| CONJUNCTIONS.contains(t)).count();
    let parts: Vec<String> = [(items, "list item"), (sequence, "sequencing word"), (joins, "conjunction")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|&(n, what)| format!("{n} {what}{}", if n == 1 { "" } else { "s" }))
        .collect();
    add(4 * items + 3 * sequence + joins, 25, format!("steps: {}", parts.join(", ")));

    let mut volume: Vec<String> = matched(tokens, VOLUME_WORDS, false).iter().map(|w| format!("'{w}'")).collect();
    if let Some(n) = largest_number(description).filter(|&n| n >= LARGE_NUMBER) {
        volume.push(format!("the number {n}"));
    }
    add(5 * volume.len(), 10, format!("data volume {}", volume.join(", ")));

    let urgent = matched(tokens, URGENCY_WORDS, true);
    add(5 * urgent.len(), 10, format!("urgency {}", quoted_list(&urgent)));

    total
}

/// Whether `token` is `cue` or `cue` with a common English ending.
fn word_matches(token: &str, cue: &str) -> bool {
    if let Some(rest) = token.strip_prefix(cue) {
        if rest.is_empty() || SUFFIXES.contains(&rest) {
            return true;
        }
        if let Some(last) = cue.chars().last()
            && let Some(rest) = rest.strip_prefix(last)
            && DOUBLED_SUFFIXES.contains(&rest)
        {
            return true;
        }
    }
    let respelt = |end: char, endings: &[&str]| {
        cue.strip_suffix(end).and_then(|stem| token.strip_prefix(stem)).is_some_and(|rest| endings.contains(&rest))
    };
    respelt('e', E_DROP_SUFFIXES) || respelt('y', Y_SUFFIXES)
}

/// The cues found in `tokens` (each once), in the order they first occur, ties by cue. A cue of several words
/// must occur as consecutive words. With `unless_negated`, an occurrence right after a negator does not count.
fn matched<'c>(tokens: &[&str], cues: &[&'c str], unless_negated: bool) -> Vec<&'c str> {
    let mut found: Vec<(usize, &str)> = cues
        .iter()
        .filter_map(|&cue| {
            let words: Vec<&str> = cue.split(' ').collect();
            tokens
                .windows(words.len())
                .enumerate()
                .find(|&(i, window)| {
                    let negated = unless_negated
                        && i.checked_sub(1).and_then(|j| tokens.get(j)).is_some_and(|t| NEGATORS.contains(t));
                    !negated && window.iter().zip(&words).all(|(t, c)| word_matches(t, c))
                })
                .map(|(i, _)| (i, cue))
        })
        .collect();
    found.sort_unstable();
    found.into_iter().map(|(_, cue)| cue).collect()
}

/// A line that starts a bulleted ("- ", "* ", "• ") or numbered ("1. ", "2) ") list item.
fn is_list_item(line: &str) -> bool {
    let line = line.trim_start();
    let rest = if let Some(rest) = line.strip_prefix(['-', '*', '+', '\u{2022}']) {
        Some(rest)
    } else {
        let after_digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
        if after_digits.len() == line.len() { None } else { after_digits.strip_prefix(['.', ')']) }
    };
    rest.is_some_and(|rest| rest.starts_with(char::is_whitespace))
}

/// The largest number written in the text, reading thousands separators ("2,000,000", "10_000").
fn largest_number(text: &str) -> Option<u64> {
    text.split(|c: char| !(c.is_ascii_digit() || c == ',' || c == '_'))
        .map(|run| run.trim_matches([',', '_']))
        .filter(|run| !run.is_empty())
        // Only digits are left, so parsing fails only on overflow: such a number is huge.
        .map(|run| run.chars().filter(char::is_ascii_digit).collect::<String>().parse::<u64>().unwrap_or(u64::MAX))
        .max()
}

/// `'a'`, `'a' and 'b'`, `'a', 'b' and 'c'`.
fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// `n / d` rounded to two decimals (half up), for `d > 0`.
fn hundredths(n: usize, d: usize) -> f64 {
    ((200 * n + d) / (2 * d)) as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(description: &str) -> Value {
        run(&json!({ "description": description })).expect("valid input")
    }

    fn reasons(out: &Value) -> Vec<&str> {
        out["reasons"].as_array().expect("array").iter().map(|r| r.as_str().expect("string")).collect()
    }

    #[test]
    fn sort_and_group_routes_to_data_transform() {
        // data-transform cues: sort 2 + records 1 + group 2 + sum 1 = 6; nothing else scores.
        // Complexity: 14 words → 3; steps: "then" 3 + "and" 1 → 4; total 7.
        // Estimate 20 × (25 + 7) / 25 = 25 ms; confidence 6 / (6 + 0 + 1) = 0.86.
        let out = route_of("Sort the records by date, then group them by customer and sum the totals.");
        assert_eq!(out["recommended_handler"], "data-transform");
        assert_eq!(out["complexity_score"], 7);
        assert_eq!(out["priority"], "normal");
        assert_eq!(out["estimated_ms"], 25);
        assert_eq!(out["confidence"], 0.86);
        assert_eq!(out["alternatives"], json!([]));
        assert_eq!(
            reasons(&out),
            [
                "mentions 'sort', 'records', 'group' and 'sum' → data-transform (score 6)",
                "length 14 words → +3 complexity",
                "steps: 1 sequencing word, 1 conjunction → +4 complexity",
                "no urgency words or short deadline → normal priority",
                "estimate: 20 ms typical for data-transform × (1 + 7/25) = 25 ms",
            ]
        );
    }

    #[test]
    fn urgent_schema_validation_routes_to_json_validator() {
        // json-validator: validate 2 + json 1 + json schema 3 + schema 2 = 8.
        // Complexity: 10 words → 2; tech 'json', 'schema' → 10; urgency 'urgent', 'asap' → 10; total 22.
        // Estimate 10 × 47 / 25 = 18 ms; confidence 8 / 9 = 0.89.
        let out = route_of("URGENT: validate this JSON payload against the JSON schema asap");
        assert_eq!(out["recommended_handler"], "json-validator");
        assert_eq!(out["complexity_score"], 22);
        assert_eq!(out["priority"], "high");
        assert_eq!(out["estimated_ms"], 18);
        assert_eq!(out["confidence"], 0.89);
        assert!(reasons(&out).contains(&"urgency 'urgent' and 'asap' → high priority"));
        assert!(
            reasons(&out)
                .contains(&"mentions 'validate', 'json', 'json schema' and 'schema' → json-validator (score 8)")
        );
    }

    #[test]
    fn uptime_with_short_deadline_ties_break_alphabetically() {
        // health-check: uptime 3 + down 1 = 4; webhook: alert 2 + slack 2 = 4 → tie → health-check.
        // Complexity: 18 words → 4; tech 'https', 'uptime' → 10; 'and' → 1; total 15. Estimate 100 × 40 / 25.
        let out = run(&json!({
            "description": "Check the uptime of https://example.com every minute and alert us on Slack if it is down",
            "deadline_seconds": 30
        }))
        .expect("valid");
        assert_eq!(out["recommended_handler"], "health-check");
        assert_eq!(out["complexity_score"], 15);
        assert_eq!(out["priority"], "high");
        assert_eq!(out["estimated_ms"], 160);
        assert_eq!(out["confidence"], 0.44);
        assert_eq!(out["alternatives"], json!([{ "handler": "webhook", "score": 4 }]));
        assert!(reasons(&out).contains(&"deadline 30 s (≤ 60 s) → high priority"));
    }

    #[test]
    fn endpoint_test_routes_to_api_tester_with_alternatives() {
        // api-tester: endpoint 3 + test 1 + status code 3 = 7; webhook: post to 3; health-check: status 1.
        // Complexity: 15 words → 3; tech 'endpoint' → 5; 'and' → 1; total 9. Estimate 300 × 34 / 25 = 408.
        let out = route_of("Send a POST to the /orders endpoint and test that the status code is 201");
        assert_eq!(out["recommended_handler"], "api-tester");
        assert_eq!(out["complexity_score"], 9);
        assert_eq!(out["estimated_ms"], 408);
        assert_eq!(out["confidence"], 0.64);
        assert_eq!(
            out["alternatives"],
            json!([{ "handler": "webhook", "score": 3 }, { "handler": "health-check", "score": 1 }])
        );
    }

    #[test]
    fn numbered_steps_and_volume_raise_complexity_and_no_rush_lowers_priority() {
        // data-transform: deduplicate 3 + rows 1 + aggregate 3 + convert 1 + csv 1 = 9.
        // Complexity: 23 words → 5; tech 'aggregate', 'csv' → 10; 3 list items + 'finally' → 15;
        // 2,000,000 → 5; "rush" follows "no", so no urgency; total 35. Estimate 20 × 60 / 25 = 48.
        let out = route_of(
            "No rush. Process the nightly export:\n1. Deduplicate the 2,000,000 rows\n\
             2. Aggregate sales by region\n3. Finally, convert to CSV",
        );
        assert_eq!(out["recommended_handler"], "data-transform");
        assert_eq!(out["complexity_score"], 35);
        assert_eq!(out["priority"], "low");
        assert_eq!(out["estimated_ms"], 48);
        assert_eq!(out["confidence"], 0.9);
        let why = reasons(&out);
        assert!(why.contains(&"steps: 3 list items, 1 sequencing word → +15 complexity"), "{why:?}");
        assert!(why.contains(&"data volume the number 2000000 → +5 complexity"), "{why:?}");
        assert!(why.contains(&"'no rush' and 'nightly' → low priority"), "{why:?}");
    }

    #[test]
    fn other_handlers_by_keyword() {
        let cases = [
            ("Read the EXIF data and dimensions of this photo.jpeg", "image-metadata"),
            ("Compute the SHA256 checksum and detect the file type", "file-processing"),
            ("Score the readability and sentiment of this article", "text-analysis"),
            ("Notify our callback URL when the job finishes", "webhook"),
            ("Ping the service to see whether it is healthy", "health-check"),
            ("Just echo the payload back", "echo"),
            ("Filter out inactive users and dedupe by email", "data-transform"),
        ];
        for (description, handler) in cases {
            assert_eq!(route_of(description)["recommended_handler"], handler, "{description}");
        }
    }

    #[test]
    fn no_evidence_falls_back_to_echo() {
        let out = route_of("Hello there");
        assert_eq!(out["recommended_handler"], "echo");
        assert_eq!(out["complexity_score"], 0);
        assert_eq!(out["confidence"], FALLBACK_CONFIDENCE);
        assert_eq!(out["estimated_ms"], 5);
        assert_eq!(out["priority"], "normal");
        assert_eq!(out["alternatives"], json!([]));
        assert_eq!(reasons(&out)[0], "no handler keywords found → echo (fallback)");
    }

    #[test]
    fn long_deadline_is_low_priority_and_short_estimate_overrun_is_reported() {
        let out = run(&json!({ "description": "Ping the database", "deadline_seconds": 7200 })).expect("valid");
        assert_eq!(out["priority"], "low");
        assert!(reasons(&out).contains(&"deadline 7200 s (≥ 3600 s) → low priority"));

        let description = "- Test the API endpoint with oauth token, retry on timeout and parse the JSON and XML\n\
                           - then check latency, cache headers, pagination and the rate limit\n\
                           - finally load test it with a huge batch asap";
        let out = run(&json!({ "description": description, "deadline_seconds": 1 })).expect("valid");
        assert_eq!(out["recommended_handler"], "api-tester");
        let estimate = out["estimated_ms"].as_u64().expect("number");
        assert!(estimate > 1000, "{estimate}");
        assert!(reasons(&out).contains(&"the estimate exceeds the 1 s deadline"));
    }

    #[test]
    fn complexity_is_capped_at_100() {
        let mut description = String::from("URGENT asap emergency: a huge dataset of 5,000,000 rows, millions more\n");
        for term in TECH_TERMS {
            description.push_str("- first ");
            description.push_str(term);
            description.push_str(" and then\n");
        }
        let out = route_of(&description);
        assert_eq!(out["complexity_score"], 100);
    }

    #[test]
    fn word_matching_takes_common_endings() {
        for (token, cue) in [
            ("sorting", "sort"),
            ("sorted", "sort"),
            ("validation", "validate"),
            ("validating", "validate"),
            ("validated", "validate"),
            ("notification", "notify"),
            ("notifies", "notify"),
            ("mapping", "map"),
            ("summed", "sum"),
            ("images", "image"),
            ("hashes", "hash"),
        ] {
            assert!(word_matches(token, cue), "{token} ~ {cue}");
        }
        for (token, cue) in [("sortie", "sort"), ("summary", "sum"), ("download", "down"), ("restore", "rest")] {
            assert!(!word_matches(token, cue), "{token} !~ {cue}");
        }
    }

    #[test]
    fn list_items_and_numbers() {
        assert!(is_list_item("  - item"));
        assert!(is_list_item("12) item"));
        assert!(is_list_item("\u{2022} item"));
        assert!(!is_list_item("-5 degrees"));
        assert!(!is_list_item("2024 was a year"));
        assert_eq!(largest_number("from 1,500 to 10_000 rows, 3.5 each"), Some(10_000));
        assert_eq!(largest_number("99999999999999999999999 rows"), Some(u64::MAX));
        assert_eq!(largest_number("no digits"), None);
    }

    #[test]
    fn output_is_deterministic() {
        let d = "Validate the JSON, then sort and group the rows, and notify the webhook";
        assert_eq!(route_of(d), route_of(d));
    }

    #[test]
    fn invalid_input_is_refused_at_the_field() {
        let too_long = "a".repeat(MAX_INPUT_CHARS + 1);
        for (input, pointer) in [
            (json!({ "description": too_long }), "/description"),
            (json!({ "description": 7 }), "/description"),
            (json!({ "description": "" }), "/description"),
            (json!({}), "/description"),
            (json!({ "description": "x", "deadline_seconds": 0 }), "/deadline_seconds"),
            (json!({ "description": "x", "deadline_seconds": -5 }), "/deadline_seconds"),
            (json!({ "description": "x", "deadline_seconds": 1.5 }), "/deadline_seconds"),
            (json!({ "description": "x", "deadline_seconds": "10" }), "/deadline_seconds"),
            (json!({ "description": "x", "handler": "echo" }), "/handler"),
            (json!(["x"]), ""),
        ] {
            assert_eq!(run(&input).expect_err("invalid").pointer, pointer, "{input}");
        }
        assert!(run(&json!({ "description": "é".repeat(MAX_INPUT_CHARS) })).is_ok());
    }

    #[test]
    fn schema_matches_limits() {
        let schema = input_schema();
        assert_eq!(schema["properties"]["description"]["maxLength"], MAX_INPUT_CHARS);
        assert_eq!(schema["properties"]["deadline_seconds"]["minimum"], 1);
        assert_eq!(schema["additionalProperties"], false);
        let mut fields: Vec<&str> =
            schema["properties"].as_object().expect("object").keys().map(String::as_str).collect();
        fields.sort_unstable();
        let mut expected = FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(fields, expected);
    }

    #[test]
    fn tables_are_sound() {
        let mut names: Vec<&str> = ROUTES.iter().map(|r| r.handler).collect();
        assert!(names.is_sorted(), "ROUTES in name order, which ties rely on");
        names.dedup();
        assert_eq!(names.len(), 9);
        assert!(names.contains(&FALLBACK_HANDLER));
        for route in ROUTES {
            for &(cue, weight) in route.cues {
                assert!(weight > 0 && !cue.is_empty() && cue == cue.to_lowercase(), "{cue}");
            }
        }
    }
}
