//! Reading options.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::format::Format;

/// The declared score range; scores outside it are invalid. Both ends are included.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreRange {
    /// Smallest valid score.
    pub min: f32,
    /// Largest valid score.
    pub max: f32,
}

impl ScoreRange {
    /// A range `[min, max]`; checked when reading ([`Error::InvalidOption`] unless both ends are
    /// finite and `min < max`).
    pub fn new(min: f32, max: f32) -> Self {
        ScoreRange { min, max }
    }

    /// Whether `score` is within the range (NaN is not).
    pub fn contains(&self, score: f32) -> bool {
        self.min <= score && score <= self.max
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.min.is_finite() && self.max.is_finite() && self.min < self.max {
            Ok(())
        } else {
            Err(Error::InvalidOption(format!("score range {self} is empty or not finite")))
        }
    }
}

impl Default for ScoreRange {
    /// `[-1, 1]`.
    fn default() -> Self {
        ScoreRange { min: -1.0, max: 1.0 }
    }
}

impl fmt::Display for ScoreRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.min, self.max)
    }
}

/// How [`crate::Dataset::groups`] fills in the group of a row that has none (no group column,
/// or a null group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultGroup {
    /// `text:` followed by the text lowercased with everything but letters and digits removed
    /// (the exact text if nothing is left). Rows with the same text (for example FiQA/SemEval
    /// (text, target) pairs, or near-duplicates differing only in case and punctuation) then
    /// stay on one side of a split.
    #[default]
    NormalizedText,
    /// `text:` followed by the exact text.
    ExactText,
    /// `id:` followed by the row's id: every row is its own group.
    Id,
}

/// How to read and validate input files. Build it with the setters, which document the
/// defaults:
///
/// ```
/// use fintune_data::{Format, ReadOptions};
/// let opts = ReadOptions::new().format(Format::Csv).text_col("sentence").skip_invalid(true);
/// assert_eq!(opts.text_col, "sentence");
/// assert_eq!(opts.score_col, "score");
/// ```
///
/// The fields can be read directly; the options are serde-serializable for configs (missing
/// fields take their defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ReadOptions {
    /// Input format; `None` detects it per file ([`Format::detect`]).
    pub format: Option<Format>,
    /// Input column (JSON key, CSV header, Parquet/Arrow field) holding the text.
    pub text_col: String,
    /// Input column holding the score.
    pub score_col: String,
    /// Input column holding the id.
    pub id_col: String,
    /// Input column holding the target.
    pub target_col: String,
    /// Input column holding the source.
    pub source_col: String,
    /// Input column holding the group.
    pub group_col: String,
    /// Valid score range.
    pub score_range: ScoreRange,
    /// Whether every row must have a score (training data) or scores are optional (prediction
    /// input).
    pub labelled: bool,
    /// Whether invalid rows are skipped and reported instead of failing the read.
    pub skip_invalid: bool,
    /// Rows per batch when streaming.
    pub batch_size: usize,
    /// How rows without a group get one in [`crate::Dataset::groups`].
    pub default_group: DefaultGroup,
    /// Class names: when not empty, the score column holds one of these names per row (e.g.
    /// `negative`, `neutral`, `positive`) and the validated score is its 0-based position in
    /// this list. Default: empty (numeric scores).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: None,
            text_col: "text".into(),
            score_col: "score".into(),
            id_col: "id".into(),
            target_col: "target".into(),
            source_col: "source".into(),
            group_col: "group".into(),
            score_range: ScoreRange::default(),
            labelled: true,
            skip_invalid: false,
            batch_size: 8192,
            default_group: DefaultGroup::default(),
            labels: Vec::new(),
        }
    }
}

impl ReadOptions {
    /// The defaults (same as [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every file as `format` instead of detecting it. Default: detect per file from the
    /// extension ([`Format::detect`]).
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Sets the format override (`None`: detect). Default: `None`.
    pub fn format_opt(mut self, format: Option<Format>) -> Self {
        self.format = format;
        self
    }

    /// Input column with the text. Default: `"text"`.
    pub fn text_col(mut self, name: impl Into<String>) -> Self {
        self.text_col = name.into();
        self
    }

    /// Input column with the score. Default: `"score"`.
    pub fn score_col(mut self, name: impl Into<String>) -> Self {
        self.score_col = name.into();
        self
    }

    /// Input column with the id. Default: `"id"`. Rows without an id (column absent, null or
    /// empty) get the stable id `<file-stem>-<record>` (1-based record number in the file).
    pub fn id_col(mut self, name: impl Into<String>) -> Self {
        self.id_col = name.into();
        self
    }

    /// Input column with the target. Default: `"target"`.
    pub fn target_col(mut self, name: impl Into<String>) -> Self {
        self.target_col = name.into();
        self
    }

    /// Input column with the source. Default: `"source"`.
    pub fn source_col(mut self, name: impl Into<String>) -> Self {
        self.source_col = name.into();
        self
    }

    /// Input column with the group. Default: `"group"`.
    pub fn group_col(mut self, name: impl Into<String>) -> Self {
        self.group_col = name.into();
        self
    }

    /// Valid score range, both ends included. Default: `[-1, 1]`.
    pub fn score_range(mut self, min: f32, max: f32) -> Self {
        self.score_range = ScoreRange::new(min, max);
        self
    }

    /// Whether every row needs a score. Default: `true`. With `false` (prediction input) the
    /// score column may be absent and scores may be null; scores that are present are still
    /// validated.
    pub fn labelled(mut self, labelled: bool) -> Self {
        self.labelled = labelled;
        self
    }

    /// Whether to skip invalid rows (and report them in [`crate::Dataset::skipped`]) instead of
    /// failing. Default: `false`. File-level problems (missing column, column of the wrong
    /// type, broken JSON array structure) fail the read either way.
    pub fn skip_invalid(mut self, skip: bool) -> Self {
        self.skip_invalid = skip;
        self
    }

    /// Rows per streamed batch; bounds the memory of [`crate::BatchReader`] and
    /// [`crate::convert`]. Default: `8192`.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }

    /// Group given to rows without one. Default: [`DefaultGroup::NormalizedText`].
    pub fn default_group(mut self, default: DefaultGroup) -> Self {
        self.default_group = default;
        self
    }

    /// Reads the score column as class names: the score of a row is the position of its name
    /// in `names`; any other value is an [`crate::ProblemKind::UnknownLabel`] problem. The
    /// score range becomes `[0, names.len() - 1]`.
    pub fn labels<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.labels = names.into_iter().map(Into::into).collect();
        if !self.labels.is_empty() {
            self.score_range = ScoreRange::new(0.0, (self.labels.len() - 1) as f32);
        }
        self
    }

    /// The mapped input column names in the order id, text, score, target, source, group.
    pub(crate) fn column_names(&self) -> [&str; 6] {
        [
            &self.id_col,
            &self.text_col,
            &self.score_col,
            &self.target_col,
            &self.source_col,
            &self.group_col,
        ]
    }

    /// Checks that the options are consistent.
    pub fn validate(&self) -> Result<(), Error> {
        self.score_range.check()?;
        if self.batch_size == 0 {
            return Err(Error::InvalidOption("batch size must be at least 1".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for l in &self.labels {
            if l.trim().is_empty() || l.trim() != l {
                return Err(Error::InvalidOption(format!(
                    "class name {l:?} is empty or has surrounding spaces"
                )));
            }
            if !seen.insert(l.as_str()) {
                return Err(Error::InvalidOption(format!("class name {l:?} is listed twice")));
            }
        }
        let names = self.column_names();
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(Error::InvalidOption("column names must not be empty".into()));
            }
            if names[..i].contains(name) {
                return Err(Error::InvalidOption(format!(
                    "column {name:?} is mapped to two fields; map each field to its own column"
                )));
            }
        }
        Ok(())
    }
}
