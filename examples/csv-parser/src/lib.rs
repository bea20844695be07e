//! An example plugin, written only against the handler contract (`cloud_agent_handlers`), as a team would write
//! its own task type:
//!
//! - `csv-parser`: CSV text (RFC 4180: quoted fields, `""` inside quotes, line breaks inside quotes, CRLF or LF)
//!   to rows with typed columns (integer, number, boolean, string; empty cells are null), within stated limits.
//! - [`PayloadLimit`]: a `before` hook that refuses an oversized input with this plugin's own problem type,
//!   before anything is stored.
//!
//! A deployment registers both with [`register`] (see `api/_registry.rs` and the README's "Writing a task
//! handler").

use cloud_agent_handlers::{
    Builder, Context, Descriptor, Failure, Handler, Hook, INPUT_FAILURE, InputError, Limits, Rejection, TaskInfo,
};
use serde_json::{Map, Value, json};

pub const NAME: &str = "csv-parser";
/// The most rows a table may have (the header not counted).
pub const MAX_ROWS: usize = 10_000;
/// The most columns a row may have.
pub const MAX_COLUMNS: usize = 100;
/// The longest CSV text accepted, in bytes.
pub const MAX_CSV_BYTES: usize = 1024 * 1024;
/// The problem type of [`PayloadLimit`]'s refusal.
pub const PAYLOAD_PROBLEM: &str = "https://cloud-agent.example/problems/csv-payload-too-large";

/// Adds the handler and its payload policy to a registry.
pub fn register(builder: Builder) -> Builder {
    builder.handler(CsvParser).hook_for(NAME, PayloadLimit { max_bytes: 32 * 1024 })
}

pub static DESCRIPTOR: Descriptor = Descriptor {
    name: NAME,
    description: "Parses CSV text (RFC 4180 quoting) into rows with typed columns: integer, number, boolean or \
        string, empty cells null. Up to 10,000 rows of 100 columns.",
    input_schema,
    limits: Limits { default_timeout_ms: 5_000, max_timeout_ms: 30_000 },
    long: false,
    failures: &[INPUT_FAILURE],
};

fn input_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "csv-parser input",
        "type": "object",
        "additionalProperties": false,
        "required": ["csv"],
        "properties": {
            "csv": {
                "type": "string",
                // Characters, which bound the bytes from below: the handler checks the UTF-8 length itself.
                "maxLength": MAX_CSV_BYTES,
                "description": "The CSV text (at most 1 MiB of UTF-8); the first record is the header unless header is false."
            },
            "delimiter": { "type": "string", "minLength": 1, "maxLength": 1, "default": "," },
            "header": { "type": "boolean", "default": true },
            "infer_types": { "type": "boolean", "default": true, "description": "false keeps every cell a string." }
        }
    })
}

/// The `csv-parser` handler.
#[derive(Debug, Clone, Copy)]
pub struct CsvParser;

#[async_trait::async_trait]
impl Handler for CsvParser {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }

    async fn run(&self, _cx: &Context, input: Value) -> Result<Value, Failure> {
        // Parsing a megabyte is CPU work: off the async threads, so the task's deadline can fire.
        cloud_agent_handlers::blocking(move || parse_input(&input).map_err(Failure::Input)).await
    }
}

/// What the input asks for.
struct Options<'a> {
    csv: &'a str,
    delimiter: char,
    header: bool,
    infer: bool,
}

fn options(input: &Value) -> Result<Options<'_>, InputError> {
    let obj = input.as_object().ok_or_else(|| InputError::new("", "the input must be a JSON object"))?;
    let csv = obj.get("csv").and_then(Value::as_str).ok_or_else(|| InputError::new("/csv", "csv must be a string"))?;
    if csv.len() > MAX_CSV_BYTES {
        return Err(InputError::new("/csv", format!("csv must be at most {MAX_CSV_BYTES} bytes")));
    }
    let delimiter = match obj.get("delimiter") {
        None => ',',
        Some(Value::String(d)) if d.chars().count() == 1 && !matches!(d.as_str(), "\"" | "\r" | "\n") => {
            d.chars().next().unwrap_or(',')
        }
        Some(_) => {
            return Err(InputError::new(
                "/delimiter",
                "delimiter must be one character other than a quote or line break",
            ));
        }
    };
    let flag = |field: &str| match obj.get(field) {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(InputError::new(format!("/{field}"), format!("{field} must be true or false"))),
    };
    Ok(Options { csv, delimiter, header: flag("header")?, infer: flag("infer_types")? })
}

fn parse_input(input: &Value) -> Result<Value, InputError> {
    let options = options(input)?;
    let mut records = records(options.csv, options.delimiter)?;
    let names: Vec<String> = if options.header {
        if records.is_empty() {
            return Err(InputError::new("/csv", "the CSV has no header record"));
        }
        let header = records.remove(0);
        let mut seen = std::collections::HashSet::new();
        for (i, name) in header.iter().enumerate() {
            if name.is_empty() || !seen.insert(name.as_str()) {
                return Err(InputError::new("/csv", format!("header column {} is empty or repeated: {name:?}", i + 1)));
            }
        }
        header
    } else {
        let width = records.first().map_or(0, Vec::len);
        (1..=width).map(|i| format!("column_{i}")).collect()
    };
    if records.len() > MAX_ROWS {
        return Err(InputError::new("/csv", format!("at most {MAX_ROWS} rows (got {})", records.len())));
    }
    let first_data_line = usize::from(options.header) + 1;
    for (i, record) in records.iter().enumerate() {
        if record.len() != names.len() {
            return Err(InputError::new(
                "/csv",
                format!(
                    "record {} has {} fields; the table has {} columns",
                    i + first_data_line,
                    record.len(),
                    names.len()
                ),
            ));
        }
    }
    let types: Vec<ColumnType> = (0..names.len())
        .map(|c| if options.infer { ColumnType::of(records.iter().map(|r| r[c].as_str())) } else { ColumnType::String })
        .collect();
    let rows: Vec<Value> = records
        .iter()
        .map(|record| {
            let mut row = Map::new();
            for ((name, cell), kind) in names.iter().zip(record).zip(&types) {
                row.insert(name.clone(), kind.value(cell));
            }
            Value::Object(row)
        })
        .collect();
    let columns: Vec<Value> =
        names.iter().zip(&types).map(|(name, kind)| json!({ "name": name, "type": kind.as_str() })).collect();
    Ok(json!({ "columns": columns, "rows": rows, "row_count": rows.len() }))
}

/// RFC 4180 records. A quote opens a quoted field only at the start of a field; inside one, `""` is a quote and
/// line breaks are data. A final line break does not start an empty record.
fn records(text: &str, delimiter: char) -> Result<Vec<Vec<String>>, InputError> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    let mut quoted = false;
    let mut field_started = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    quoted = false;
                    if let Some(&next) = chars.peek()
                        && next != delimiter
                        && next != '\n'
                        && next != '\r'
                    {
                        return Err(InputError::new(
                            "/csv",
                            format!("line {line}: a closing quote must end its field (found {next:?} after it)"),
                        ));
                    }
                }
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !field_started => {
                quoted = true;
                field_started = true;
            }
            '"' => {
                return Err(InputError::new("/csv", format!("line {line}: a quote inside an unquoted field")));
            }
            c if c == delimiter => {
                record.push(std::mem::take(&mut field));
                field_started = false;
                if record.len() >= MAX_COLUMNS {
                    return Err(InputError::new("/csv", format!("line {line}: more than {MAX_COLUMNS} columns")));
                }
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                field_started = false;
                line += 1;
                if records.len() > MAX_ROWS + 1 {
                    return Err(InputError::new("/csv", format!("at most {MAX_ROWS} rows")));
                }
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if quoted {
        return Err(InputError::new("/csv", format!("line {line}: a quoted field is never closed")));
    }
    if field_started || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

/// A column's type: the narrowest that every non-empty cell fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    Integer,
    Number,
    Boolean,
    String,
}

impl ColumnType {
    fn of<'a>(cells: impl Iterator<Item = &'a str>) -> Self {
        let mut kind: Option<Self> = None;
        for cell in cells.filter(|c| !c.is_empty()) {
            let this = if cell.parse::<i64>().is_ok() {
                Self::Integer
            } else if cell.parse::<f64>().is_ok_and(f64::is_finite) {
                Self::Number
            } else if matches!(cell, "true" | "false") {
                Self::Boolean
            } else {
                Self::String
            };
            kind = Some(match (kind, this) {
                (None, t) => t,
                (Some(a), b) if a == b => a,
                (Some(Self::Integer | Self::Number), Self::Integer | Self::Number) => Self::Number,
                _ => Self::String,
            });
        }
        kind.unwrap_or(Self::String)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::String => "string",
        }
    }

    fn value(self, cell: &str) -> Value {
        if cell.is_empty() {
            return Value::Null;
        }
        match self {
            Self::Integer => cell.parse::<i64>().map_or_else(|_| json!(cell), |n| json!(n)),
            Self::Number => cell.parse::<f64>().map_or_else(|_| json!(cell), |n| json!(n)),
            Self::Boolean => json!(cell == "true"),
            Self::String => json!(cell),
        }
    }
}

/// A `before` hook: refuses a task whose input, as JSON, is over `max_bytes`, with this plugin's own problem type
/// (413), before the task is stored.
#[derive(Debug, Clone, Copy)]
pub struct PayloadLimit {
    pub max_bytes: usize,
}

impl Hook for PayloadLimit {
    fn name(&self) -> &'static str {
        "payload-limit"
    }

    fn before(&self, task: &TaskInfo, input: &Value) -> Result<(), Rejection> {
        let size = input.to_string().len();
        if size <= self.max_bytes {
            return Ok(());
        }
        Err(Rejection::new(
            413,
            PAYLOAD_PROBLEM,
            "Payload over policy",
            format!(
                "a {} task's input may be at most {} bytes as JSON; this one is {size}. Split the table into \
                 several tasks",
                task.kind, self.max_bytes
            ),
        )
        .at(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_fields_and_types_columns() {
        let csv =
            "name,age,score,active,note\r\n\"Smith, J\",42,3.5,true,\"said \"\"hi\"\"\nthen left\"\r\nLee,7,,false,\n";
        let out = parse_input(&json!({ "csv": csv })).unwrap();
        assert_eq!(
            out["columns"],
            json!([
                {"name": "name", "type": "string"}, {"name": "age", "type": "integer"},
                {"name": "score", "type": "number"}, {"name": "active", "type": "boolean"},
                {"name": "note", "type": "string"}
            ])
        );
        assert_eq!(
            out["rows"][0],
            json!({"name": "Smith, J", "age": 42, "score": 3.5, "active": true, "note": "said \"hi\"\nthen left"})
        );
        assert_eq!(out["rows"][1], json!({"name": "Lee", "age": 7, "score": null, "active": false, "note": null}));
        assert_eq!(out["row_count"], 2);
    }

    #[test]
    fn refuses_broken_csv_naming_the_line() {
        let err = |csv: &str| parse_input(&json!({ "csv": csv })).unwrap_err().detail;
        assert!(err("a,b\n1,\"open").contains("never closed"));
        assert!(err("a,b\n1,2,3\n").contains("record 2 has 3 fields"));
        assert!(err("a,b\n1,x\"y\n").contains("line 2: a quote inside"));
        assert!(err("a,a\n1,2\n").contains("repeated"));
        let many = format!("n\n{}", "1\n".repeat(MAX_ROWS + 1));
        assert!(err(&many).contains("at most 10000 rows"));
    }

    #[test]
    fn options_change_the_reading() {
        let out = parse_input(&json!({ "csv": "1;2\n3;4", "delimiter": ";", "header": false, "infer_types": false }))
            .unwrap();
        assert_eq!(out["rows"], json!([{"column_1": "1", "column_2": "2"}, {"column_1": "3", "column_2": "4"}]));
        assert_eq!(parse_input(&json!({ "csv": "a", "delimiter": "\"" })).unwrap_err().pointer, "/delimiter");
    }

    #[test]
    fn the_payload_policy_refuses_with_its_own_problem() {
        let info = TaskInfo { id: "t_1".into(), tenant: "acme".into(), kind: NAME.into(), attempt: 1 };
        let limit = PayloadLimit { max_bytes: 20 };
        assert!(limit.before(&info, &json!({"csv": "a\n1"})).is_ok());
        let refused = limit.before(&info, &json!({"csv": "a\n".repeat(20)})).unwrap_err();
        assert_eq!((refused.status, refused.kind.as_str()), (413, PAYLOAD_PROBLEM));
    }
}
