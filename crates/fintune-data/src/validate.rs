//! Row validation shared by every reader: raw cells in, validated Arrow rows and problems out.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use arrow_array::builder::{ArrayBuilder, Float32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;

use crate::arrow_util::FastHash;
use crate::options::{ReadOptions, ScoreRange};
use crate::problem::{Location, Problem, ProblemKind, ProblemReport, SkipReport, Warning};
use crate::schema::dataset_schema;

/// A string-typed input cell.
#[derive(Debug)]
pub(crate) enum Cell<'a> {
    /// The column (or JSON key) is absent.
    Absent,
    /// The value is null (JSON `null`, an empty CSV field, an Arrow null).
    Null,
    Str(Cow<'a, str>),
    /// Unusable value: kind and reason.
    Bad(ProblemKind, String),
}

/// A score input cell.
#[derive(Debug)]
pub(crate) enum ScoreCell<'a> {
    Absent,
    Null,
    /// A number from a typed column (exact for Float32 and integers).
    Num(f64),
    /// Text to parse as `f32` (JSON number literals, JSON strings, CSV fields, Arrow strings).
    Text(Cow<'a, str>),
    Bad(ProblemKind, String),
}

/// One input record, before validation.
#[derive(Debug)]
pub(crate) struct RawRow<'a> {
    pub loc: Location,
    /// 1-based record number in its file (for generated ids).
    pub record: u64,
    pub id: Cell<'a>,
    pub text: Cell<'a>,
    pub score: ScoreCell<'a>,
    pub target: Cell<'a>,
    pub source: Cell<'a>,
    pub group: Cell<'a>,
}

impl RawRow<'_> {
    pub fn new(loc: Location, record: u64) -> Self {
        RawRow {
            loc,
            record,
            id: Cell::Absent,
            text: Cell::Absent,
            score: ScoreCell::Absent,
            target: Cell::Absent,
            source: Cell::Absent,
            group: Cell::Absent,
        }
    }
}

/// The file being read.
#[derive(Debug, Clone)]
pub(crate) struct FileCtx {
    pub index: u32,
    pub path: PathBuf,
    pub stem: String,
}

#[derive(Debug, Clone, Copy)]
struct FirstUse {
    file: u32,
    loc: Location,
}

/// The ids seen so far, without an allocation per id: their bytes in one arena, found by hash.
#[derive(Debug, Default)]
struct IdSet {
    arena: String,
    /// Hash of an id -> its entry (the head of a chain of entries with the same hash).
    by_hash: HashMap<u64, u32, PassHash>,
    entries: Vec<IdEntry>,
}

#[derive(Debug)]
struct IdEntry {
    start: usize,
    len: usize,
    /// The next entry with the same hash, or `u32::MAX`.
    next: u32,
    first: FirstUse,
}

impl IdSet {
    /// Records `id` first used at `first`; if it was already used, returns where.
    fn insert(&mut self, id: &str, first: FirstUse) -> Option<FirstUse> {
        self.insert_hashed(FastHash.hash_one(id), id, first)
    }

    fn insert_hashed(&mut self, hash: u64, id: &str, first: FirstUse) -> Option<FirstUse> {
        let head = self.by_hash.get(&hash).copied();
        let mut at = head.unwrap_or(u32::MAX);
        while at != u32::MAX {
            let e = &self.entries[at as usize];
            if &self.arena[e.start..e.start + e.len] == id {
                return Some(e.first);
            }
            at = e.next;
        }
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 ids");
        self.entries.push(IdEntry {
            start: self.arena.len(),
            len: id.len(),
            next: head.unwrap_or(u32::MAX),
            first,
        });
        self.arena.push_str(id);
        self.by_hash.insert(hash, index);
        None
    }
}

/// For keys that are already hashes.
#[derive(Debug, Default, Clone, Copy)]
struct PassHash;

impl std::hash::BuildHasher for PassHash {
    type Hasher = PassHasher;

    fn build_hasher(&self) -> PassHasher {
        PassHasher(0)
    }
}

#[derive(Debug)]
struct PassHasher(u64);

impl std::hash::Hasher for PassHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builders for the validated columns.
#[derive(Debug)]
struct BatchBuilder {
    schema: SchemaRef,
    id: StringBuilder,
    text: StringBuilder,
    score: Float32Builder,
    target: StringBuilder,
    source: StringBuilder,
    group: StringBuilder,
}

impl BatchBuilder {
    fn new(labelled: bool) -> Self {
        BatchBuilder {
            schema: dataset_schema(labelled),
            id: StringBuilder::new(),
            text: StringBuilder::new(),
            score: Float32Builder::new(),
            target: StringBuilder::new(),
            source: StringBuilder::new(),
            group: StringBuilder::new(),
        }
    }

    fn len(&self) -> usize {
        self.id.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            std::sync::Arc::new(self.id.finish()),
            std::sync::Arc::new(self.text.finish()),
            std::sync::Arc::new(self.score.finish()),
            std::sync::Arc::new(self.target.finish()),
            std::sync::Arc::new(self.source.finish()),
            std::sync::Arc::new(self.group.finish()),
        ];
        RecordBatch::try_new(self.schema.clone(), columns)
            .expect("validated columns match the dataset schema")
    }
}

/// Validates rows, accumulates the valid ones and collects problems; shared across the files
/// read together so ids are unique across all of them.
#[derive(Debug)]
pub(crate) struct Validator {
    names: [String; 6],
    range: ScoreRange,
    labels: Vec<String>,
    labelled: bool,
    files: Vec<PathBuf>,
    ids: IdSet,
    builder: BatchBuilder,
    problems: Vec<Problem>,
    warnings: Vec<Warning>,
    invalid_rows: usize,
    fatal: bool,
    /// Scratch buffer for generated ids.
    id_buf: String,
}

const ID: usize = 0;
const TEXT: usize = 1;
const SCORE: usize = 2;
const TARGET: usize = 3;
const SOURCE: usize = 4;
const GROUP: usize = 5;

impl Validator {
    pub fn new(opts: &ReadOptions) -> Self {
        Validator {
            names: opts.column_names().map(str::to_string),
            range: opts.score_range,
            labels: opts.labels.clone(),
            labelled: opts.labelled,
            files: Vec::new(),
            ids: IdSet::default(),
            builder: BatchBuilder::new(opts.labelled),
            problems: Vec::new(),
            warnings: Vec::new(),
            invalid_rows: 0,
            fatal: false,
            id_buf: String::new(),
        }
    }

    /// Registers a new input file.
    pub fn begin_file(&mut self, path: &Path) -> FileCtx {
        let index = u32::try_from(self.files.len()).expect("fewer than 2^32 files");
        self.files.push(path.to_path_buf());
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "row".to_string());
        FileCtx { index, path: path.to_path_buf(), stem }
    }

    pub fn labelled(&self) -> bool {
        self.labelled
    }

    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    pub fn buffered_rows(&self) -> usize {
        self.builder.len()
    }

    /// Takes the valid rows accumulated so far as one batch.
    pub fn take_batch(&mut self) -> RecordBatch {
        self.builder.finish()
    }

    /// Drops the valid rows accumulated so far.
    pub fn discard_rows(&mut self) {
        let _ = self.builder.finish();
    }

    pub fn report(&self) -> ProblemReport {
        ProblemReport { problems: self.problems.clone(), invalid_rows: self.invalid_rows }
    }

    pub fn into_report(self) -> ProblemReport {
        ProblemReport { problems: self.problems, invalid_rows: self.invalid_rows }
    }

    pub fn skip_report(&self) -> SkipReport {
        SkipReport { count: self.invalid_rows, problems: self.problems.clone() }
    }

    fn problem(
        &mut self,
        file: &FileCtx,
        loc: Location,
        column: Option<usize>,
        kind: ProblemKind,
        message: String,
    ) {
        self.problems.push(Problem {
            file: file.path.clone(),
            location: loc,
            column: column.map(|c| self.names[c].clone()),
            kind,
            message,
        });
    }

    /// A problem that makes the whole file unreadable (fatal even when skipping invalid rows).
    pub fn file_problem(
        &mut self,
        file: &FileCtx,
        loc: Location,
        column: Option<&str>,
        kind: ProblemKind,
        message: String,
    ) {
        self.fatal = true;
        self.problems.push(Problem {
            file: file.path.clone(),
            location: loc,
            column: column.map(str::to_string),
            kind,
            message,
        });
    }

    /// Records a warning about valid input (the row is kept).
    pub fn warn(&mut self, warning: Warning) {
        self.warnings.push(warning);
    }

    /// The warnings recorded so far.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The input column name of field `field` (0 id .. 5 group).
    pub fn name(&self, field: usize) -> &str {
        &self.names[field]
    }

    /// A record that could not be parsed into cells at all.
    pub fn malformed(&mut self, file: &FileCtx, loc: Location, kind: ProblemKind, message: String) {
        self.problem(file, loc, None, kind, message);
        self.invalid_rows += 1;
    }

    /// Validates one row: appends it if valid, records its problems otherwise.
    pub fn push(&mut self, file: &FileCtx, row: RawRow<'_>) {
        let before = self.problems.len();
        let loc = row.loc;

        let mut generated = false;
        let id: Option<Cow<'_, str>> = match row.id {
            Cell::Str(s) if !s.is_empty() => Some(s),
            Cell::Absent | Cell::Null | Cell::Str(_) => {
                generated = true;
                None
            }
            Cell::Bad(kind, message) => {
                self.problem(file, loc, Some(ID), kind, message);
                None
            }
        };
        if generated {
            use std::fmt::Write;
            self.id_buf.clear();
            let _ = write!(self.id_buf, "{}-{}", file.stem, row.record);
        }

        let text = match row.text {
            Cell::Str(s) => {
                if s.trim().is_empty() {
                    let message =
                        if s.is_empty() { "text is empty" } else { "text is only whitespace" };
                    self.problem(file, loc, Some(TEXT), ProblemKind::EmptyText, message.into());
                    None
                } else {
                    Some(s)
                }
            }
            Cell::Absent => {
                self.problem(file, loc, Some(TEXT), ProblemKind::MissingValue, "missing".into());
                None
            }
            Cell::Null => {
                self.problem(file, loc, Some(TEXT), ProblemKind::MissingValue, "null".into());
                None
            }
            Cell::Bad(kind, message) => {
                self.problem(file, loc, Some(TEXT), kind, message);
                None
            }
        };

        let score = match self.check_score(row.score) {
            Ok(score) => score,
            Err((kind, message)) => {
                self.problem(file, loc, Some(SCORE), kind, message);
                None
            }
        };

        let target = self.optional(file, loc, row.target, TARGET);
        let source = self.optional(file, loc, row.source, SOURCE);
        let group = self.optional(file, loc, row.group, GROUP);

        let id_buf = std::mem::take(&mut self.id_buf);
        let id_str: Option<&str> = if generated { Some(id_buf.as_str()) } else { id.as_deref() };
        if let Some(id_str) = id_str {
            if let Some(first) = self.ids.insert(id_str, FirstUse { file: file.index, loc }) {
                let message = format!(
                    "duplicate id {id_str:?} (first used at {})",
                    describe(&self.files[first.file as usize], first.loc)
                );
                self.problem(file, loc, Some(ID), ProblemKind::DuplicateId, message);
            }
        }

        if self.problems.len() > before {
            self.invalid_rows += 1;
            self.id_buf = id_buf;
            return;
        }
        let b = &mut self.builder;
        b.id.append_value(id_str.expect("valid rows have an id"));
        b.text.append_value(text.as_deref().expect("valid rows have a text"));
        b.score.append_option(score);
        b.target.append_option(target);
        b.source.append_option(source);
        b.group.append_option(group);
        self.id_buf = id_buf;
    }

    fn optional<'a>(
        &mut self,
        file: &FileCtx,
        loc: Location,
        cell: Cell<'a>,
        field: usize,
    ) -> Option<Cow<'a, str>> {
        match cell {
            Cell::Absent | Cell::Null => None,
            Cell::Str(s) => Some(s),
            Cell::Bad(kind, message) => {
                self.problem(file, loc, Some(field), kind, message);
                None
            }
        }
    }
    fn check_score(&self, cell: ScoreCell<'_>) -> Result<Option<f32>, (ProblemKind, String)> {
        let missing = |what: &str| {
            if self.labelled {
                Err((ProblemKind::MissingValue, what.to_string()))
            } else {
                Ok(None)
            }
        };
        if !self.labels.is_empty() {
            return match cell {
                ScoreCell::Absent => missing("missing"),
                ScoreCell::Null => missing("null"),
                ScoreCell::Bad(kind, message) => Err((kind, message)),
                ScoreCell::Text(s) if s.trim().is_empty() => missing("empty"),
                ScoreCell::Text(s) => match self.labels.iter().position(|l| l == s.trim()) {
                    Some(i) => Ok(Some(i as f32)),
                    None => Err((
                        ProblemKind::UnknownLabel,
                        format!(
                            "{} is not a declared class (expected one of {})",
                            quote_short(s.trim()),
                            self.labels.join(", ")
                        ),
                    )),
                },
                ScoreCell::Num(v) => Err((
                    ProblemKind::WrongType,
                    format!(
                        "expected a class name (one of {}), found the number {v}",
                        self.labels.join(", ")
                    ),
                )),
            };
        }
        let value = match cell {
            ScoreCell::Absent => return missing("missing"),
            ScoreCell::Null => return missing("null"),
            ScoreCell::Bad(kind, message) => return Err((kind, message)),
            ScoreCell::Num(v) => {
                if !v.is_finite() {
                    return Err((
                        ProblemKind::NonFiniteScore,
                        format!("{v} is not a finite number"),
                    ));
                }
                let v32 = v as f32;
                if !self.range.contains(v32) {
                    return Err(out_of_range(&v.to_string(), self.range));
                }
                v32
            }
            ScoreCell::Text(s) => {
                let t = s.trim();
                if t.is_empty() {
                    return missing("empty");
                }
                let v = match t.parse::<f32>() {
                    Ok(v) => v,
                    Err(_) => {
                        return Err((
                            ProblemKind::WrongType,
                            format!("expected a number, found {}", quote_short(t)),
                        ))
                    }
                };
                if v.is_nan() || (v.is_infinite() && t.to_ascii_lowercase().contains("inf")) {
                    return Err((
                        ProblemKind::NonFiniteScore,
                        format!("{t} is not a finite number"),
                    ));
                }
                if !self.range.contains(v) {
                    return Err(out_of_range(t, self.range));
                }
                v
            }
        };
        Ok(Some(value))
    }
}

fn out_of_range(shown: &str, range: ScoreRange) -> (ProblemKind, String) {
    (ProblemKind::ScoreOutOfRange, format!("{shown} is outside the score range {range}"))
}

/// A string for messages: quoted, cut to 40 characters.
pub(crate) fn quote_short(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

fn describe(file: &Path, loc: Location) -> String {
    match loc {
        Location::File => file.display().to_string(),
        Location::Line(n) => format!("{}:{n}", file.display()),
        Location::Row(n) => format!("{}: row {n}", file.display()),
    }
}

/// Field indexes in [`ReadOptions::column_names`] order.
pub(crate) mod field {
    pub const ID: usize = super::ID;
    pub const TEXT: usize = super::TEXT;
    pub const SCORE: usize = super::SCORE;
    pub const TARGET: usize = super::TARGET;
    pub const SOURCE: usize = super::SOURCE;
    pub const GROUP: usize = super::GROUP;
}

#[cfg(test)]
mod tests;
