//! JSON record parsing shared by the JSONL and JSON-array readers.
//!
//! A record is scanned once; only the mapped keys are kept (as raw JSON text), every other key
//! is skipped whatever its value (lists, objects, nulls). Scores are parsed from their exact
//! decimal text, so they are bit-exact `f32`.
//!
//! JSON has no NaN or infinity. Python's `json` module nevertheless writes the bare tokens
//! `NaN`, `Infinity` and `-Infinity`; a record that fails to parse is retried with those tokens
//! (outside strings) replaced by marked strings, so such a score is reported as
//! `column "score": NaN is not a finite number` instead of a malformed line. String scores
//! (`"0.5"`, `"NaN"`) are parsed like CSV fields: numeric strings are accepted, `"NaN"`/`"inf"`
//! are non-finite scores, anything else is a wrong type.

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::problem::{Location, ProblemKind};
use crate::validate::{field, Cell, FileCtx, RawRow, ScoreCell, Validator};

/// Marks a non-finite token replaced by [`sanitize_non_finite`].
const NON_FINITE_MARK: &str = "\u{0}fintune-non-finite:";

type Fields<'a> = [Option<&'a RawValue>; 6];

struct KeySeed<'n>(&'n [&'n str; 6]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| *name == v))
    }
}

struct RecordVisitor<'n>(&'n [&'n str; 6]);

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Fields<'de> = [None; 6];
        while let Some(slot) = map.next_key_seed(KeySeed(self.0))? {
            match slot {
                Some(i) => fields[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

fn parse_fields<'a>(text: &'a str, names: &[&str; 6]) -> Result<Fields<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = (&mut de).deserialize_map(RecordVisitor(names))?;
    de.end()?;
    Ok(fields)
}

/// A JSON value, classified.
enum Json<'a> {
    Null,
    Str(Cow<'a, str>),
    /// A number literal, as written.
    Num(&'a str),
    Bool(bool),
    Array,
    Object,
    /// `NaN`, `Infinity` or `-Infinity` (see the module docs).
    NonFinite(String),
}

fn classify(raw: &RawValue) -> Json<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => {
            let s: Cow<'_, str> = match serde_json::from_str::<&str>(text) {
                Ok(s) => Cow::Borrowed(s),
                // Escapes: needs an owned string. RawValue guarantees valid JSON.
                Err(_) => Cow::Owned(serde_json::from_str::<String>(text).unwrap_or_default()),
            };
            match s.strip_prefix(NON_FINITE_MARK) {
                Some(token) => Json::NonFinite(token.to_string()),
                None => Json::Str(s),
            }
        }
        Some(b'n') => Json::Null,
        Some(b't') => Json::Bool(true),
        Some(b'f') => Json::Bool(false),
        Some(b'[') => Json::Array,
        Some(b'{') => Json::Object,
        _ => Json::Num(text),
    }
}

fn found(json: &Json<'_>) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Str(s) => format!("string {}", crate::validate::quote_short(s)),
        Json::Num(n) => format!("number {n}"),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Array => "an array".into(),
        Json::Object => "an object".into(),
        Json::NonFinite(t) => t.clone(),
    }
}

fn absent_or<'a>(raw: Option<&'a RawValue>, f: impl FnOnce(Json<'a>) -> Cell<'a>) -> Cell<'a> {
    match raw {
        None => Cell::Absent,
        Some(raw) => match classify(raw) {
            Json::Null => Cell::Null,
            json => f(json),
        },
    }
}

fn wrong(expected: &str, json: &Json<'_>) -> (ProblemKind, String) {
    (ProblemKind::WrongType, format!("expected {expected}, found {}", found(json)))
}

fn text_cell(raw: Option<&RawValue>) -> Cell<'_> {
    absent_or(raw, |json| match json {
        Json::Str(s) => Cell::Str(s),
        other => {
            let (kind, message) = wrong("a string", &other);
            Cell::Bad(kind, message)
        }
    })
}

/// Ids, targets, sources and groups: strings, or integers taken as written.
fn label_cell(raw: Option<&RawValue>) -> Cell<'_> {
    absent_or(raw, |json| match json {
        Json::Str(s) => Cell::Str(s),
        Json::Num(n) if n.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
            Cell::Str(Cow::Borrowed(n))
        }
        other => {
            let (kind, message) = wrong("a string or an integer", &other);
            Cell::Bad(kind, message)
        }
    })
}

fn score_cell(raw: Option<&RawValue>) -> ScoreCell<'_> {
    let Some(raw) = raw else { return ScoreCell::Absent };
    match classify(raw) {
        Json::Null => ScoreCell::Null,
        Json::Num(n) => ScoreCell::Text(Cow::Borrowed(n)),
        Json::Str(s) => ScoreCell::Text(s),
        Json::NonFinite(t) => ScoreCell::Text(Cow::Owned(t)),
        other => {
            let (kind, message) = wrong("a number", &other);
            ScoreCell::Bad(kind, message)
        }
    }
}

fn push_fields(v: &mut Validator, file: &FileCtx, loc: Location, record: u64, f: &Fields<'_>) {
    let mut row = RawRow::new(loc, record);
    row.id = label_cell(f[field::ID]);
    row.text = text_cell(f[field::TEXT]);
    row.score = score_cell(f[field::SCORE]);
    row.target = label_cell(f[field::TARGET]);
    row.source = label_cell(f[field::SOURCE]);
    row.group = label_cell(f[field::GROUP]);
    v.push(file, row);
}

/// Parses one JSON record and validates it; `names` are the mapped input column names.
pub(crate) fn handle_record(
    v: &mut Validator,
    file: &FileCtx,
    names: &[&str; 6],
    loc: Location,
    record: u64,
    text: &str,
) {
    match parse_fields(text, names) {
        Ok(fields) => push_fields(v, file, loc, record, &fields),
        Err(err) => {
            if let Some(sanitized) = sanitize_non_finite(text) {
                if let Ok(fields) = parse_fields(&sanitized, names) {
                    push_fields(v, file, loc, record, &fields);
                    return;
                }
            }
            v.malformed(file, loc, ProblemKind::Malformed, json_message(&err));
        }
    }
}

/// `malformed JSON (line 2, column 5 of the record): expected value`, without serde_json's
/// position suffix, with the position relative to the record.
fn json_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let reason = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    let reason = reason.replace("invalid type: map", "invalid type: object");
    let reason = reason.replace("invalid type: sequence", "invalid type: array");
    if err.line() > 1 {
        format!(
            "malformed JSON (line {} of the record, column {}): {reason}",
            err.line(),
            err.column()
        )
    } else if err.column() > 0 {
        format!("malformed JSON (column {}): {reason}", err.column())
    } else {
        format!("malformed JSON: {reason}")
    }
}

/// Replaces the bare tokens `NaN`, `Infinity` and `-Infinity` outside JSON strings with marked
/// strings. `None` if there is no such token.
pub(crate) fn sanitize_non_finite(text: &str) -> Option<String> {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let boundary_before = i == 0 || !is_word(bytes[i - 1]);
        let token = TOKENS.iter().find(|t| {
            boundary_before
                && bytes[i..].starts_with(t.as_bytes())
                && bytes.get(i + t.len()).is_none_or(|&next| !is_word(next))
        });
        if let Some(token) = token {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
            out.push_str(&text[copied..i]);
            out.push('"');
            out.push_str("\\u0000fintune-non-finite:");
            out.push_str(token);
            out.push('"');
            i += token.len();
            copied = i;
            continue;
        }
        i += 1;
    }
    out.map(|mut out| {
        out.push_str(&text[copied..]);
        out
    })
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-' || b == b'+'
}

#[cfg(test)]
mod tests;
