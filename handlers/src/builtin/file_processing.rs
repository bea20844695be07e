//! The `file-processing` task handler: decodes a base64 file and reports its size, SHA-256 and SHA-512, its
//! type sniffed from its bytes (never from its name), and line statistics when it is text.
//!
//! Input: `{"content": <base64>, "filename"?: <name>}`. `content` is the standard alphabet (`A-Z a-z 0-9 + /`),
//! padding optional, no whitespace, decoding to at most [`MAX_DECODED_BYTES`]; the decoded size is computed from
//! the text's length, so an oversized file is refused before any decoding. `filename` (at most
//! [`MAX_FILENAME_CHARS`] characters) is only used for `extension_matches`.
//!
//! Output:
//! - `size_bytes`, `sha256`, `sha512` (lowercase hex).
//! - `mime`: magic bytes first (PNG, JPEG, GIF, WebP, PDF, ZIP, gzip, and tar by `ustar` at offset 257); otherwise,
//!   when the file is text, `application/json` (a whole valid JSON object or array), `application/xml` (starts
//!   with `<?xml`), `text/html` (starts with one of the WHATWG sniffing patterns, such as `<!DOCTYPE html`,
//!   `<html`, `<p` or `<!--`, case-insensitive, followed by whitespace or `>`), `text/csv` (the first records,
//!   up to 20 within 64 KiB, are at least two RFC 4180 records of one same number of fields, at least two), else
//!   `text/plain`; otherwise `application/octet-stream`. Leading whitespace and a UTF-8 BOM are skipped.
//! - `kind`: `text` when no magic bytes matched and the bytes are UTF-8 with none of the WHATWG "binary data
//!   bytes" (0x00-0x08, 0x0B, 0x0E-0x1A, 0x1C-0x1F), else `binary`. Other encodings (UTF-16 included) are binary.
//!   An empty file is text (`text/plain`, `ascii`, 0 lines).
//! - `encoding`: `ascii` when every byte is below 0x80, else `utf-8` (a BOM makes it `utf-8`); `null` for binary.
//! - `lines`: the number of LF bytes, plus one when the text is non-empty and does not end in LF (so `wc -l`, plus
//!   one for an unterminated last line); 0 for empty. A lone CR is not a line break (classic Mac text is one
//!   line), and a leading BOM does not count as content. `null` for binary.
//! - `longest_line`: the most characters (Unicode scalar values) on one line, excluding its LF or CRLF and a
//!   leading BOM. `null` for binary.
//! - `line_endings`: `lf`, `crlf`, `mixed` (both occur) or `none` (no LF at all). `null` for binary.
//! - `extension_matches`: `null` without a filename. Otherwise the extension is what follows the last `.` of the
//!   name's final path component (case-insensitive; a leading-dot name like `.bashrc` has none, and no extension
//!   never matches). It matches when it is one the sniffed type is known by (`png`; `jpg`/`jpeg`; `docx` and
//!   other ZIP containers for ZIP; ...). For the two catch-alls, `text/plain` and `application/octet-stream`, an
//!   extension that no sniffable type claims also matches, since nothing sniffed contradicts it (`.py` text,
//!   `.mp3` bytes). Any text file also matches `.txt`, `.text` and `.log`, which say only that it is text.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::input::{self, InputError};

pub const NAME: &str = "file-processing";
pub const DESCRIPTION: &str =
    "Decodes a base64 file and reports its size, SHA-256 and SHA-512, sniffed MIME type and text line statistics.";

/// Largest decoded file accepted: 5 MiB.
pub const MAX_DECODED_BYTES: usize = 5 * 1024 * 1024;
/// Longest base64 text that can decode to [`MAX_DECODED_BYTES`] (with padding).
pub const MAX_ENCODED_CHARS: usize = MAX_DECODED_BYTES.div_ceil(3) * 4;
/// Longest `filename`, in characters.
pub const MAX_FILENAME_CHARS: usize = 255;

/// How much of a text file the CSV heuristic reads, and how many records it needs to agree.
const CSV_SAMPLE_BYTES: usize = 64 * 1024;
const CSV_SAMPLE_RECORDS: usize = 20;

/// Standard alphabet, padding accepted but not required; trailing bits must be zero so each file has one encoding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Exactly the texts the decoder accepts, for the schema (ECMA-262 syntax).
const BASE64_PATTERN: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw](?:==?)?|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=?)?$";

/// A type and the (offset, bytes) that must all be present for a file to be of it.
type Signature = (&'static str, &'static [(usize, &'static [u8])]);

/// Magic bytes; a type with several entries matches any one of them.
const SIGNATURES: &[Signature] = &[
    ("image/png", &[(0, b"\x89PNG\r\n\x1a\n")]),
    ("image/jpeg", &[(0, b"\xff\xd8\xff")]),
    ("image/gif", &[(0, b"GIF87a")]),
    ("image/gif", &[(0, b"GIF89a")]),
    ("image/webp", &[(0, b"RIFF"), (8, b"WEBP")]),
    ("application/pdf", &[(0, b"%PDF-")]),
    // Local file header, empty archive, spanned archive.
    ("application/zip", &[(0, b"PK\x03\x04")]),
    ("application/zip", &[(0, b"PK\x05\x06")]),
    ("application/zip", &[(0, b"PK\x07\x08")]),
    // ID1 ID2 and CM = 8 (deflate, the only method gzip defines).
    ("application/gzip", &[(0, b"\x1f\x8b\x08")]),
    // POSIX "ustar\0" and GNU "ustar  \0" both start so.
    ("application/x-tar", &[(257, b"ustar")]),
];

/// The extensions each sniffable type is known by.
const EXTENSIONS: &[(&str, &[&str])] = &[
    ("image/png", &["png"]),
    ("image/jpeg", &["jpg", "jpeg", "jpe", "jfif"]),
    ("image/gif", &["gif"]),
    ("image/webp", &["webp"]),
    ("application/pdf", &["pdf"]),
    (
        "application/zip",
        &[
            "zip", "jar", "war", "ear", "apk", "aar", "docx", "xlsx", "pptx", "odt", "ods", "odp", "epub", "whl",
            "xpi", "nupkg", "vsix", "kmz",
        ],
    ),
    ("application/gzip", &["gz", "tgz", "gzip"]),
    ("application/x-tar", &["tar"]),
    ("application/json", &["json", "geojson", "jsonld", "webmanifest"]),
    ("application/xml", &["xml", "xsd", "xsl", "xslt", "svg", "rss", "atom", "plist", "kml", "gpx", "xhtml"]),
    ("text/html", &["html", "htm", "xhtml"]),
    ("text/csv", &["csv"]),
    (
        "text/plain",
        &["txt", "text", "log", "md", "markdown", "rst", "csv", "tsv", "ini", "cfg", "conf", "toml", "yaml", "yml"],
    ),
    ("application/octet-stream", &["bin", "dat"]),
];

/// Extensions that say only "text", so they agree with every text type (a CSV export named `.txt`).
const ANY_TEXT_EXTENSIONS: &[&str] = &["txt", "text", "log"];

/// WHATWG's HTML sniffing patterns (lowercase; matched case-insensitively).
const HTML_STARTS: &[&[u8]] = &[
    b"<!doctype html",
    b"<html",
    b"<head",
    b"<script",
    b"<iframe",
    b"<h1",
    b"<div",
    b"<font",
    b"<table",
    b"<a",
    b"<style",
    b"<title",
    b"<b",
    b"<body",
    b"<br",
    b"<p",
    b"<!--",
];

pub fn input_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "file-processing input",
        "description": DESCRIPTION,
        "type": "object",
        "required": ["content"],
        "additionalProperties": false,
        "properties": {
            "content": {
                "type": "string",
                "contentEncoding": "base64",
                "maxLength": MAX_ENCODED_CHARS,
                // Only padding can take the text to the longest length: unpadded, one more character is over.
                "anyOf": [{ "maxLength": MAX_ENCODED_CHARS - 1 }, { "pattern": "=$" }],
                // Whole quads, then an optional 2- or 3-character tail (padding up to its canonical length) whose
                // unused bits are zero, as the decoder requires.
                "pattern": BASE64_PATTERN,
                "description": format!(
                    "The file, standard base64 with optional padding and no whitespace, decoding to at most \
                     {MAX_DECODED_BYTES} bytes (5 MiB)."
                )
            },
            "filename": {
                "type": "string",
                "maxLength": MAX_FILENAME_CHARS,
                "description": "Only compared with the sniffed type, for extension_matches."
            }
        }
    })
}

pub fn run(input: &Value) -> Result<Value, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, &["content", "filename"])?;
    let content = match obj.get("content") {
        Some(Value::String(content)) => content,
        Some(_) => return Err(content_error("content must be a string")),
        None => return Err(content_error("content is required")),
    };
    let filename = match obj.get("filename") {
        None => None,
        Some(_) => Some(input::string(obj, "filename", MAX_FILENAME_CHARS)?),
    };
    let bytes = decode(content)?;
    Ok(describe(&bytes, filename))
}

fn content_error(problem: &str) -> InputError {
    InputError::new(
        "/content",
        format!(
            "{problem}; content must be standard base64 (A-Z a-z 0-9 + /, padding optional, no whitespace) \
             decoding to at most {MAX_DECODED_BYTES} bytes (5 MiB)"
        ),
    )
}

/// The size `content` decodes to, from its length alone; `None` for a length no base64 text has.
fn decoded_len(content: &str) -> Option<usize> {
    let unpadded = content.strip_suffix("==").or_else(|| content.strip_suffix('=')).unwrap_or(content).len();
    let tail = match unpadded % 4 {
        0 => 0,
        2 => 1,
        3 => 2,
        _ => return None,
    };
    Some(unpadded / 4 * 3 + tail)
}

fn decode(content: &str) -> Result<Vec<u8>, InputError> {
    // Both checks need only the length, so a 50 MB string is refused without being decoded.
    if content.len() > MAX_ENCODED_CHARS {
        return Err(content_error(&format!(
            "content is {} bytes of text, more than the {MAX_ENCODED_CHARS} base64 characters that encode the limit",
            content.len()
        )));
    }
    if let Some(size) = decoded_len(content).filter(|&size| size > MAX_DECODED_BYTES) {
        return Err(content_error(&format!("content decodes to {size} bytes, more than the limit")));
    }
    BASE64.decode(content).map_err(|e| {
        let problem = match e {
            base64::DecodeError::InvalidByte(offset, byte) if byte.is_ascii() => {
                let hint = if matches!(byte, b'-' | b'_') { " (URL-safe base64 is not accepted)" } else { "" };
                format!("character {:?} at offset {offset} is not base64{hint}", char::from(byte))
            }
            base64::DecodeError::InvalidByte(offset, byte) => {
                format!("byte 0x{byte:02x} at offset {offset} is not base64")
            }
            base64::DecodeError::InvalidLength(length) => {
                format!("{length} base64 characters (padding aside) is not a length base64 can have")
            }
            base64::DecodeError::InvalidLastSymbol(offset, _) => {
                format!("the character at offset {offset} carries non-zero bits past the end of the data")
            }
            base64::DecodeError::InvalidPadding => "the padding is wrong".to_owned(),
        };
        content_error(&problem)
    })
}

fn describe(bytes: &[u8], filename: Option<&str>) -> Value {
    let (mime, text) = match magic(bytes) {
        Some(mime) => (mime, None),
        None => match as_text(bytes) {
            Some(text) => {
                let body = text.strip_prefix('\u{feff}').unwrap_or(text);
                (text_mime(body), Some((text.is_ascii(), LineStats::of(body))))
            }
            None => ("application/octet-stream", None),
        },
    };
    let extension_matches = filename.map(|name| extension_matches(name, mime, text.is_some()));
    let (kind, encoding, lines, longest_line, line_endings) = match text {
        Some((ascii, stats)) => (
            "text",
            json!(if ascii { "ascii" } else { "utf-8" }),
            json!(stats.lines),
            json!(stats.longest),
            json!(stats.endings()),
        ),
        None => ("binary", Value::Null, Value::Null, Value::Null, Value::Null),
    };
    json!({
        "size_bytes": bytes.len(),
        "sha256": hex(&Sha256::digest(bytes)),
        "sha512": hex(&Sha512::digest(bytes)),
        "mime": mime,
        "kind": kind,
        "encoding": encoding,
        "lines": lines,
        "longest_line": longest_line,
        "line_endings": line_endings,
        "extension_matches": extension_matches,
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn magic(bytes: &[u8]) -> Option<&'static str> {
    SIGNATURES
        .iter()
        .find(|(_, parts)| {
            parts.iter().all(|&(offset, expected)| bytes.get(offset..offset + expected.len()) == Some(expected))
        })
        .map(|&(mime, _)| mime)
}

/// The bytes as text: UTF-8 without any of WHATWG's binary data bytes.
fn as_text(bytes: &[u8]) -> Option<&str> {
    let binary = |b: &u8| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f);
    if bytes.iter().any(binary) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// The type of a text file (BOM already removed).
fn text_mime(body: &str) -> &'static str {
    let start = body.trim_start_matches([' ', '\t', '\n', '\r', '\x0c']).as_bytes();
    if is_json_document(body.as_bytes()) {
        "application/json"
    } else if start.starts_with(b"<?xml") {
        "application/xml"
    } else if looks_like_html(start) {
        "text/html"
    } else if looks_like_csv(body.as_bytes()) {
        "text/csv"
    } else {
        "text/plain"
    }
}

fn looks_like_html(start: &[u8]) -> bool {
    HTML_STARTS.iter().any(|pattern| {
        start.get(..pattern.len()).is_some_and(|head| head.eq_ignore_ascii_case(pattern))
            && matches!(start.get(pattern.len()), Some(b' ' | b'>' | b'\t' | b'\n' | b'\r' | b'\x0c'))
    })
}

/// The CSV heuristic: read up to [`CSV_SAMPLE_RECORDS`] records from the first [`CSV_SAMPLE_BYTES`] (RFC 4180:
/// comma-separated, fields optionally double-quoted with `""` escapes, quoted line breaks allowed, blank lines
/// skipped); it is CSV when there are at least two records, all with the same number of fields, at least two.
/// A quote inside an unquoted field, or an unclosed quote at the end of the file, means it is not.
fn looks_like_csv(text: &[u8]) -> bool {
    let sample = &text[..text.len().min(CSV_SAMPLE_BYTES)];
    let mut counts: Vec<usize> = Vec::new();
    let (mut fields, mut field_start, mut in_quotes, mut empty_record) = (1, true, false, true);
    let mut i = 0;
    while i < sample.len() && counts.len() < CSV_SAMPLE_RECORDS {
        let b = sample[i];
        i += 1;
        if in_quotes {
            if b == b'"' {
                if sample.get(i) == Some(&b'"') {
                    i += 1;
                } else {
                    in_quotes = false;
                }
            }
            continue;
        }
        match b {
            b'"' if field_start => (in_quotes, field_start, empty_record) = (true, false, false),
            b'"' => return false,
            b',' => (fields, field_start, empty_record) = (fields + 1, true, false),
            b'\n' => {
                if !empty_record {
                    counts.push(fields);
                }
                (fields, field_start, empty_record) = (1, true, true);
            }
            // The CR of a CRLF ends nothing by itself.
            b'\r' if sample.get(i) == Some(&b'\n') => {}
            _ => (field_start, empty_record) = (false, false),
        }
    }
    // The last record counts only when it ended the file, not where the sample was cut.
    if i == text.len() && counts.len() < CSV_SAMPLE_RECORDS {
        if in_quotes {
            return false;
        }
        if !empty_record {
            counts.push(fields);
        }
    }
    counts.len() >= 2 && counts[0] >= 2 && counts.iter().all(|&n| n == counts[0])
}

/// Whether `text` is one complete JSON object or array (RFC 8259), checked without building it: a 5 MiB array
/// of numbers would take far more memory as a `Value`. Nesting uses an explicit stack, so depth cannot overflow.
fn is_json_document(text: &[u8]) -> bool {
    let mut p = JsonScan { b: text, i: 0 };
    p.skip_ws();
    if !matches!(p.peek(), Some(b'{' | b'[')) {
        return false;
    }
    let mut open: Vec<u8> = Vec::new();
    loop {
        // A value is expected here.
        p.skip_ws();
        match p.peek() {
            Some(bracket @ (b'{' | b'[')) => {
                p.i += 1;
                p.skip_ws();
                let close = if bracket == b'{' { b'}' } else { b']' };
                if p.peek() == Some(close) {
                    p.i += 1;
                } else {
                    open.push(bracket);
                    if bracket == b'{' && !p.key() {
                        return false;
                    }
                    continue;
                }
            }
            Some(b'"') => {
                if !p.string() {
                    return false;
                }
            }
            Some(b't') if p.literal(b"true") => {}
            Some(b'f') if p.literal(b"false") => {}
            Some(b'n') if p.literal(b"null") => {}
            Some(b'-' | b'0'..=b'9') => {
                if !p.number() {
                    return false;
                }
            }
            _ => return false,
        }
        // A value just ended: close containers until one continues with a comma, or the document ends.
        loop {
            p.skip_ws();
            match (open.last(), p.peek()) {
                (None, _) => return p.i == p.b.len(),
                (Some(&bracket), Some(b',')) => {
                    p.i += 1;
                    if bracket == b'{' && !p.key() {
                        return false;
                    }
                    break;
                }
                (Some(b'['), Some(b']')) | (Some(b'{'), Some(b'}')) => {
                    p.i += 1;
                    open.pop();
                }
                _ => return false,
            }
        }
    }
}

#[derive(Debug)]
struct JsonScan<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonScan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.i += 1;
        }
        found
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.b.get(self.i..self.i + word.len()) == Some(word);
        if found {
            self.i += word.len();
        }
        found
    }

    /// An object member's `"name" :`, leaving the value to come.
    fn key(&mut self) -> bool {
        self.skip_ws();
        if self.peek() != Some(b'"') || !self.string() {
            return false;
        }
        self.skip_ws();
        self.eat(b':')
    }

    /// A string starting at the opening quote (the text is already known to be UTF-8).
    fn string(&mut self) -> bool {
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => return true,
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                    Some(b'u')
                        if self.b.get(self.i + 1..self.i + 5).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        self.i += 5;
                    }
                    _ => return false,
                },
                0x00..=0x1f => return false,
                _ => {}
            }
        }
        false
    }

    fn digits(&mut self) -> bool {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i > start
    }

    fn number(&mut self) -> bool {
        self.eat(b'-');
        let integer = self.eat(b'0') || (matches!(self.peek(), Some(b'1'..=b'9')) && self.digits());
        if !integer {
            return false;
        }
        if self.eat(b'.') && !self.digits() {
            return false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            return self.digits();
        }
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineStats {
    lines: usize,
    longest: usize,
    lf: usize,
    crlf: usize,
}

impl LineStats {
    /// Line statistics of `body` (text with any BOM removed), as documented at the top of this file.
    fn of(body: &str) -> Self {
        let bytes = body.as_bytes();
        let mut stats = LineStats { lines: 0, longest: 0, lf: 0, crlf: 0 };
        for (i, _) in bytes.iter().enumerate().filter(|&(_, &b)| b == b'\n') {
            if i > 0 && bytes[i - 1] == b'\r' {
                stats.crlf += 1;
            } else {
                stats.lf += 1;
            }
        }
        stats.lines = stats.lf + stats.crlf + usize::from(!body.is_empty() && !body.ends_with('\n'));
        let mut pieces = body.split('\n').peekable();
        while let Some(piece) = pieces.next() {
            // Only a CR before an LF belongs to the line ending; the final piece has no LF after it.
            let line = if pieces.peek().is_some() { piece.strip_suffix('\r').unwrap_or(piece) } else { piece };
            stats.longest = stats.longest.max(line.chars().count());
        }
        stats
    }

    fn endings(self) -> &'static str {
        match (self.lf > 0, self.crlf > 0) {
            (false, false) => "none",
            (true, false) => "lf",
            (false, true) => "crlf",
            (true, true) => "mixed",
        }
    }
}

/// Whether `filename`'s extension agrees with `mime` (see the top of this file); `text` says the file is text.
fn extension_matches(filename: &str, mime: &str, text: bool) -> bool {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let extension = match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => ext.to_ascii_lowercase(),
        _ => return false,
    };
    let known = |entry: &&(&str, &[&str])| entry.1.contains(&extension.as_str());
    if (text && ANY_TEXT_EXTENSIONS.contains(&extension.as_str()))
        || EXTENSIONS.iter().filter(known).any(|(m, _)| *m == mime)
    {
        return true;
    }
    matches!(mime, "text/plain" | "application/octet-stream") && !EXTENSIONS.iter().any(|e| known(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn process(bytes: &[u8], filename: Option<&str>) -> Value {
        let mut input = json!({ "content": STANDARD.encode(bytes) });
        if let Some(name) = filename {
            input["filename"] = json!(name);
        }
        match run(&input) {
            Ok(output) => output,
            Err(e) => panic!("refused: {e}"),
        }
    }

    fn mime(bytes: &[u8]) -> String {
        process(bytes, None)["mime"].as_str().unwrap_or_default().to_owned()
    }

    fn refused(input: &Value) -> InputError {
        match run(input) {
            Ok(output) => panic!("accepted: {output}"),
            Err(e) => e,
        }
    }

    #[test]
    fn hashes_of_abc() {
        let output = process(b"abc", None);
        assert_eq!(output["sha256"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            output["sha512"],
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            output,
            json!({
                "size_bytes": 3,
                "sha256": output["sha256"],
                "sha512": output["sha512"],
                "mime": "text/plain",
                "kind": "text",
                "encoding": "ascii",
                "lines": 1,
                "longest_line": 3,
                "line_endings": "none",
                "extension_matches": null
            })
        );
    }

    #[test]
    fn empty_file() {
        let output = process(b"", Some("empty.txt"));
        assert_eq!(output["size_bytes"], 0);
        assert_eq!(output["sha256"], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(
            (&output["mime"], &output["kind"], &output["lines"], &output["longest_line"], &output["line_endings"]),
            (&json!("text/plain"), &json!("text"), &json!(0), &json!(0), &json!("none"))
        );
        assert_eq!(output["extension_matches"], true);
    }

    #[test]
    fn magic_bytes() {
        let mut tar = vec![0_u8; 512];
        tar[..8].copy_from_slice(b"file.txt");
        tar[257..263].copy_from_slice(b"ustar\0");
        let cases: &[(&[u8], &str)] = &[
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image/png"),
            (b"\xff\xd8\xff\xe0\0\x10JFIF\0", "image/jpeg"),
            (b"GIF87a\x01\0\x01\0", "image/gif"),
            (b"GIF89a\x01\0\x01\0", "image/gif"),
            (b"RIFF\x24\0\0\0WEBPVP8 ", "image/webp"),
            (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
            (b"%PDF-1.4\n1 0 obj\n", "application/pdf"),
            (b"PK\x03\x04\x14\0\0\0\x08\0", "application/zip"),
            (b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", "application/zip"),
            (b"\x1f\x8b\x08\0\0\0\0\0\0\x03", "application/gzip"),
            (&tar, "application/x-tar"),
            (b"RIFF\x24\0\0\0WAVEfmt ", "application/octet-stream"),
            (b"\0\x01\x02\x03", "application/octet-stream"),
            (b"\xff\xfeh\0i\0", "application/octet-stream"),
        ];
        for (bytes, expected) in cases {
            let output = process(bytes, None);
            assert_eq!(output["mime"], *expected, "{bytes:?}");
            assert_eq!(output["kind"], "binary", "{bytes:?}");
            assert_eq!(
                (&output["encoding"], &output["lines"], &output["line_endings"]),
                (&Value::Null, &Value::Null, &Value::Null)
            );
        }
    }

    #[test]
    fn text_types() {
        assert_eq!(mime(b"{\"a\": [1, -2.5e+3, true, null, \"x\\u00e9\\n\"]}\n"), "application/json");
        assert_eq!(mime(b"\xef\xbb\xbf  [ ]"), "application/json");
        assert_eq!(mime(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"), "application/json");
        assert_eq!(mime(b"{\"a\": 1,}"), "text/plain");
        assert_eq!(mime(b"{\"a\": 01}"), "text/plain");
        assert_eq!(mime(b"[1] [2]"), "text/plain");
        assert_eq!(mime(b"[\"tab\there\"]"), "text/plain");
        assert_eq!(mime(b"42"), "text/plain");
        assert_eq!(mime(b"[[[[["), "text/plain");
        assert_eq!(mime(b"<?xml version=\"1.0\"?>\n<root/>"), "application/xml");
        assert_eq!(mime(b"\n<!DOCTYPE html>\n<html><body></body></html>"), "text/html");
        assert_eq!(mime(b"<HTML lang=en>"), "text/html");
        assert_eq!(mime(b"<p>hello</p>"), "text/html");
        assert_eq!(mime(b"<!-- note -->"), "text/html");
        assert_eq!(mime(b"<pre>"), "text/plain");
        assert_eq!(mime(b"name,age\nann,31\nbob,25\n"), "text/csv");
        assert_eq!(mime(b"a,\"b,\"\"quoted\"\"\nline\"\r\n1,2\r\n\r\n3,4"), "text/csv");
        assert_eq!(mime(b"a,b\n1,2,3\n"), "text/plain");
        assert_eq!(mime(b"just,one line\n"), "text/plain");
        assert_eq!(mime(b"a,b\n\"open,2\n"), "text/plain");
        assert_eq!(mime(b"5\" screen,x\n1,2\n"), "text/plain");
        assert_eq!(mime("héllo wörld\n".as_bytes()), "text/plain");
    }

    #[test]
    fn encodings() {
        assert_eq!(process(b"plain\n", None)["encoding"], "ascii");
        assert_eq!(process("naïve\n".as_bytes(), None)["encoding"], "utf-8");
        assert_eq!(process(b"\xef\xbb\xbfplain", None)["encoding"], "utf-8");
        // Invalid UTF-8 and control bytes are binary.
        assert_eq!(process(b"caf\xe9", None)["kind"], "binary");
        assert_eq!(process(b"a\x00b", None)["kind"], "binary");
        assert_eq!(process(b"a\tb\x0c\x1b[0m\r\n", None)["kind"], "text");
    }

    #[test]
    fn line_counting() {
        let stats = |text: &str| {
            let o = process(text.as_bytes(), None);
            (
                o["lines"].as_u64().unwrap_or(99),
                o["longest_line"].as_u64().unwrap_or(99),
                o["line_endings"].as_str().unwrap_or("?").to_owned(),
            )
        };
        assert_eq!(stats(""), (0, 0, "none".into()));
        assert_eq!(stats("a"), (1, 1, "none".into()));
        assert_eq!(stats("a\n"), (1, 1, "lf".into()));
        assert_eq!(stats("a\nbc"), (2, 2, "lf".into()));
        assert_eq!(stats("\n"), (1, 0, "lf".into()));
        assert_eq!(stats("\n\n\n"), (3, 0, "lf".into()));
        assert_eq!(stats("ab\r\nc\r\n"), (2, 2, "crlf".into()));
        assert_eq!(stats("ab\r\nc\nxyz"), (3, 3, "mixed".into()));
        // A lone CR is content, not a break.
        assert_eq!(stats("a\rb\rc"), (1, 5, "none".into()));
        assert_eq!(stats("a\r"), (1, 2, "none".into()));
        // Characters, not bytes; the BOM is not content.
        assert_eq!(stats("\u{feff}héllo\n€\n"), (2, 5, "lf".into()));
        assert_eq!(stats("\u{feff}"), (0, 0, "none".into()));
    }

    #[test]
    fn extensions() {
        let matches = |bytes: &[u8], name: &str| process(bytes, Some(name))["extension_matches"].clone();
        let png = b"\x89PNG\r\n\x1a\n";
        assert_eq!(matches(png, "photo.PNG"), true);
        assert_eq!(matches(png, "dir/sub.d/photo.png"), true);
        assert_eq!(matches(png, "photo.jpg"), false);
        assert_eq!(matches(png, "photo"), false);
        assert_eq!(matches(png, ".png"), false);
        assert_eq!(matches(b"PK\x03\x04", "report.docx"), true);
        assert_eq!(matches(b"\x1f\x8b\x08\0", "backup.tar.gz"), true);
        assert_eq!(matches(b"{}", "data.json"), true);
        assert_eq!(matches(b"not json", "data.json"), false);
        assert_eq!(matches(b"print(1)\n", "script.py"), true);
        assert_eq!(matches(b"a,b\n1,2\n", "table.csv"), true);
        assert_eq!(matches(b"a\n1\n", "table.csv"), true);
        assert_eq!(matches(b"a,b\n1,2\n", "export.txt"), true);
        assert_eq!(matches(b"{\"a\": 1}", "response.LOG"), true);
        assert_eq!(matches(b"a,b\n1,2\n", "data.json"), false);
        assert_eq!(matches(b"[1, 2]", "data.csv"), false);
        assert_eq!(matches(b"[1, 2]", "notes.md"), false);
        assert_eq!(matches(b"{\"a\": 1}\n{\"b\": 2}\n", "events.jsonl"), true);
        assert_eq!(matches(b"plain", "image.png"), false);
        assert_eq!(matches(b"\0\x01", "song.mp3"), true);
        assert_eq!(matches(b"\0\x01", "blob.bin"), true);
        assert_eq!(matches(b"\0\x01", "notes.txt"), false);
        assert_eq!(matches(b"\0\x01", "fake.pdf"), false);
        assert_eq!(process(png, None)["extension_matches"], Value::Null);
    }

    #[test]
    fn padding_is_optional() {
        for content in ["YWI=", "YWI", "YQ==", "YQ", "YWJj", ""] {
            assert!(run(&json!({ "content": content })).is_ok(), "{content}");
        }
        let unpadded = run(&json!({ "content": "YWI" })).ok();
        assert_eq!(unpadded, run(&json!({ "content": "YWI=" })).ok());
        assert_eq!(unpadded.map(|o| o["size_bytes"].clone()), Some(json!(2)));
    }

    #[test]
    fn refuses_bad_base64() {
        for content in ["YW J", "YWJj\n", "YQ-_", "Y", "YQ===", "YR==", "=YWJ", "YW\u{e9}j", "YWJj=="] {
            let e = refused(&json!({ "content": content }));
            assert_eq!(e.pointer, "/content", "{content}");
            assert!(e.detail.contains("5242880 bytes"), "{content}: {}", e.detail);
        }
        assert!(refused(&json!({ "content": "ab-c" })).detail.contains("URL-safe"));
        assert_eq!(refused(&json!({ "content": 5 })).pointer, "/content");
        assert_eq!(refused(&json!({})).pointer, "/content");
    }

    #[test]
    fn refuses_oversize_from_the_length() {
        assert_eq!(decoded_len(""), Some(0));
        assert_eq!(decoded_len("YQ"), Some(1));
        assert_eq!(decoded_len("YQ=="), Some(1));
        assert_eq!(decoded_len("YWI="), Some(2));
        assert_eq!(decoded_len("YWJj"), Some(3));
        assert_eq!(decoded_len("Y"), None);
        assert_eq!(MAX_ENCODED_CHARS, 6_990_508);
        // 6_990_507 unpadded characters is exactly the limit; one more character is over.
        assert_eq!(decoded_len(&"A".repeat(MAX_ENCODED_CHARS - 1)), Some(MAX_DECODED_BYTES));
        assert_eq!(decoded_len(&"A".repeat(MAX_ENCODED_CHARS)), Some(MAX_DECODED_BYTES + 1));
        // Invalid characters throughout, yet refused for size: nothing was decoded.
        let e = refused(&json!({ "content": "!".repeat(MAX_ENCODED_CHARS) }));
        assert_eq!(e.pointer, "/content");
        assert!(e.detail.contains("decodes to 5242881 bytes"), "{}", e.detail);
        let e = refused(&json!({ "content": "!".repeat(MAX_ENCODED_CHARS + 1) }));
        assert!(e.detail.contains("6990509 bytes of text"), "{}", e.detail);
    }

    #[test]
    fn accepts_exactly_the_limit() {
        let output = process(&vec![b'x'; MAX_DECODED_BYTES], None);
        assert_eq!(output["size_bytes"], MAX_DECODED_BYTES);
        assert_eq!((&output["lines"], &output["longest_line"]), (&json!(1), &json!(MAX_DECODED_BYTES)));
    }

    #[test]
    fn refuses_bad_fields() {
        assert_eq!(refused(&json!("YWJj")).pointer, "");
        assert_eq!(refused(&json!({ "content": "YWJj", "name": "a" })).pointer, "/name");
        assert_eq!(refused(&json!({ "content": "YWJj", "filename": 3 })).pointer, "/filename");
        let long = "a".repeat(MAX_FILENAME_CHARS + 1);
        assert_eq!(refused(&json!({ "content": "YWJj", "filename": long })).pointer, "/filename");
        let most = "é".repeat(MAX_FILENAME_CHARS);
        assert!(run(&json!({ "content": "YWJj", "filename": most })).is_ok());
    }

    #[test]
    fn schema_states_the_bounds() {
        let schema = input_schema();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["content"]["maxLength"], MAX_ENCODED_CHARS);
        assert_eq!(schema["properties"]["filename"]["maxLength"], MAX_FILENAME_CHARS);
        assert!(!NAME.is_empty() && DESCRIPTION.ends_with('.'));
    }

    #[test]
    fn hex_encoding() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
