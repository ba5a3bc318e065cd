//! Validation problems, the reports that collect them, and warnings.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where in a file a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    /// The whole file (a missing column, a column of the wrong type, a broken file structure).
    File,
    /// A 1-based physical line: JSONL and JSON arrays (the line where the record starts),
    /// CSV/TSV (the line where the record starts, the header being line 1).
    Line(u64),
    /// A 1-based data row: Parquet and Arrow IPC.
    Row(u64),
}

/// What kind of problem a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// A required column is absent from the file (file-level, always fatal).
    MissingColumn,
    /// A value (or a whole column) has a type that cannot be read as the column's type.
    WrongType,
    /// Bytes that are not valid UTF-8.
    NonUtf8,
    /// The text is empty or only whitespace.
    EmptyText,
    /// A required value (text, or score for labelled input) is absent or null.
    MissingValue,
    /// The score is NaN or infinite.
    NonFiniteScore,
    /// The score is outside the declared range.
    ScoreOutOfRange,
    /// A class-name score column ([`crate::ReadOptions::labels`]) holds a name not declared.
    UnknownLabel,
    /// The id was already used by an earlier row (in any of the files read together).
    DuplicateId,
    /// The record cannot be parsed at all (invalid JSON, not an object, wrong number of CSV
    /// fields, broken JSON array structure).
    Malformed,
}

/// One problem found while validating input.
///
/// Displays as `FILE:LINE: column "COL": REASON` (or `FILE: row N: ...` for Parquet/Arrow, and
/// without the column part for record-level problems), for example
/// `train.jsonl:7: column "score": NaN is not a finite number`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// The file, as given by the caller.
    pub file: PathBuf,
    /// Where in the file.
    pub location: Location,
    /// The column as named in the input (after column mapping), if the problem is about one.
    pub column: Option<String>,
    /// The kind of problem.
    pub kind: ProblemKind,
    /// A human-readable reason.
    pub message: String,
}

impl Problem {
    /// The 1-based line (JSONL, JSON, CSV, TSV) or row (Parquet, Arrow), if the problem is
    /// about one record.
    pub fn line_or_row(&self) -> Option<u64> {
        match self.location {
            Location::File => None,
            Location::Line(n) | Location::Row(n) => Some(n),
        }
    }

    /// Whether this problem makes a whole file unreadable (it is fatal even with
    /// [`crate::ReadOptions::skip_invalid`]).
    pub fn is_file_level(&self) -> bool {
        self.location == Location::File || self.kind == ProblemKind::MissingColumn
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match self.location {
            Location::File => {}
            Location::Line(n) => write!(f, ":{n}")?,
            Location::Row(n) => write!(f, ": row {n}")?,
        }
        if let Some(column) = &self.column {
            write!(f, ": column {column:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn write_problems(f: &mut fmt::Formatter<'_>, problems: &[Problem]) -> fmt::Result {
    for problem in problems.iter().take(ProblemReport::SHOWN) {
        write!(f, "\n  {problem}")?;
    }
    if problems.len() > ProblemReport::SHOWN {
        write!(
            f,
            "\n  ... and {} more ({} problems in total)",
            problems.len() - ProblemReport::SHOWN,
            problems.len()
        )?;
    }
    Ok(())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Every problem found in an input that failed validation.
///
/// Its [`fmt::Display`] is the report for users: a count line, then the first
/// [`ProblemReport::SHOWN`] problems, then how many more there are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProblemReport {
    /// All problems, in input order (files in the order given).
    pub problems: Vec<Problem>,
    /// How many rows had at least one problem (file-level problems count no row).
    pub invalid_rows: usize,
}

impl ProblemReport {
    /// How many problems the report prints.
    pub const SHOWN: usize = 20;
}

impl fmt::Display for ProblemReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid input: {} in {}",
            plural(self.problems.len(), "problem", "problems"),
            plural(self.invalid_rows, "row", "rows")
        )?;
        if self.problems.iter().any(Problem::is_file_level) {
            write!(f, " (and file-level problems)")?;
        }
        write!(f, ":")?;
        write_problems(f, &self.problems)
    }
}

/// The rows left out when reading with [`crate::ReadOptions::skip_invalid`].
///
/// Its [`fmt::Display`] prints the count and the first [`ProblemReport::SHOWN`] reasons, or
/// `no rows skipped`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SkipReport {
    /// How many rows were skipped.
    pub count: usize,
    /// Why: every problem of every skipped row (a row can have several).
    pub problems: Vec<Problem>,
}

impl SkipReport {
    /// Whether no row was skipped.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl fmt::Display for SkipReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "no rows skipped");
        }
        write!(
            f,
            "{} skipped ({}):",
            plural(self.count, "invalid row", "invalid rows"),
            plural(self.problems.len(), "problem", "problems")
        )?;
        write_problems(f, &self.problems)
    }
}

/// Something suspicious in valid data, reported but never acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Warning {
    /// Rows with exactly the same text and the same target (both absent counts as the same)
    /// but different scores. Real sets have them (annotator disagreement); they are kept as
    /// they are, not merged.
    ConflictingScores {
        /// The shared text.
        text: String,
        /// The shared target, if any.
        target: Option<String>,
        /// `(id, score)` of every row with this text and target, in input order.
        rows: Vec<(String, f32)>,
    },
    /// A CSV/TSV text field spans several lines, each of which looks like a whole record: valid
    /// CSV, but almost always a stray quote that swallowed the records after it into one
    /// row (`a,"hello,0.5` / `b,fine,0.1` / `c,more",0.2` reads as one row).
    SuspiciousMultilineField {
        /// The file.
        file: PathBuf,
        /// The 1-based line where the field (and its record) began.
        line: u64,
        /// How many lines the field spans.
        lines: u64,
        /// The column, as named in the input.
        column: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::ConflictingScores { text, target, rows } => {
                const MAX: usize = 80;
                let mut shown: String = text.chars().take(MAX).collect();
                if text.chars().count() > MAX {
                    shown.push('…');
                }
                write!(f, "same text with different scores: {shown:?}")?;
                if let Some(target) = target {
                    write!(f, " (target {target:?})")?;
                }
                write!(f, ":")?;
                for (i, (id, score)) in rows.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}{id} = {score}")?;
                }
                Ok(())
            }
            Warning::SuspiciousMultilineField { file, line, lines, column } => write!(
                f,
                "{}:{line}: column {column:?}: the quoted field that begins here spans {lines} lines, each of which looks like a whole record: a stray quote? (read as one row)",
                file.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests;
