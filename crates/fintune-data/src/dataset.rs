//! The validated, in-memory dataset.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, ArrayRef, Float32Array, RecordBatch, StringArray};

use crate::arrow_util::FastHash;
use crate::options::{DefaultGroup, ReadOptions, ScoreRange};
use crate::problem::{SkipReport, Warning};
use crate::schema::{dataset_schema, GROUP, ID, SCORE, SOURCE, TARGET, TEXT};
use crate::summary::Summary;

/// A validated dataset: one [`RecordBatch`] with the schema
/// [`dataset_schema`]`(labelled)` plus what was skipped and the warnings.
///
/// Row `i` of every accessor is row `i` of the batch, in input order (files in the order
/// given, then line/row order).
#[derive(Debug, Clone)]
pub struct Dataset {
    batch: RecordBatch,
    skipped: SkipReport,
    warnings: Vec<Warning>,
    score_range: ScoreRange,
    labelled: bool,
    default_group: DefaultGroup,
}

impl Dataset {
    /// `warnings` are the reader's (about the files); the dataset adds its own.
    pub(crate) fn new(
        batch: RecordBatch,
        skipped: SkipReport,
        warnings: Vec<Warning>,
        opts: &ReadOptions,
    ) -> Self {
        let mut dataset = Dataset {
            batch,
            skipped,
            warnings: Vec::new(),
            score_range: opts.score_range,
            labelled: opts.labelled,
            default_group: opts.default_group,
        };
        dataset.warnings = warnings;
        let conflicts = dataset.conflicting_scores();
        dataset.warnings.extend(conflicts);
        dataset
    }

    /// The validated batch (columns `id, text, score, target, source, group`).
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// The validated batch, by value.
    pub fn into_batch(self) -> RecordBatch {
        self.batch
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether there are no rows (never the case for a dataset from [`crate::read_dataset`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether scores were required when reading.
    pub fn is_labelled(&self) -> bool {
        self.labelled
    }

    /// The declared score range the scores were validated against.
    pub fn score_range(&self) -> ScoreRange {
        self.score_range
    }

    /// Rows skipped while reading (empty unless [`ReadOptions::skip_invalid`] was set).
    pub fn skipped(&self) -> &SkipReport {
        &self.skipped
    }

    /// Warnings about valid data: a CSV text field that looks like swallowed records (a stray
    /// quote), same text and target with different scores.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    fn strings(&self, name: &str) -> &StringArray {
        self.batch.column_by_name(name).expect("dataset schema").as_string::<i32>()
    }

    /// The id column.
    pub fn id_array(&self) -> &StringArray {
        self.strings(ID)
    }

    /// The text column.
    pub fn text_array(&self) -> &StringArray {
        self.strings(TEXT)
    }

    /// The score column (nulls only in unlabelled data).
    pub fn score_array(&self) -> &Float32Array {
        self.batch.column_by_name(SCORE).expect("dataset schema").as_primitive::<Float32Type>()
    }

    /// The target column (nullable).
    pub fn target_array(&self) -> &StringArray {
        self.strings(TARGET)
    }

    /// The source column (nullable).
    pub fn source_array(&self) -> &StringArray {
        self.strings(SOURCE)
    }

    /// The group column as read (nullable); see [`Dataset::groups`] for filled-in groups.
    pub fn group_array(&self) -> &StringArray {
        self.strings(GROUP)
    }

    /// Row `i`'s id. Panics if `i >= len()`.
    pub fn id(&self, i: usize) -> &str {
        self.id_array().value(i)
    }

    /// Row `i`'s text. Panics if `i >= len()`.
    pub fn text(&self, i: usize) -> &str {
        self.text_array().value(i)
    }

    /// Row `i`'s score (`None` only in unlabelled data). Panics if `i >= len()`.
    pub fn score(&self, i: usize) -> Option<f32> {
        let scores = self.score_array();
        scores.is_valid(i).then(|| scores.value(i))
    }

    /// All ids.
    pub fn ids(&self) -> Vec<&str> {
        self.id_array().iter().map(|s| s.expect("ids are non-null")).collect()
    }

    /// All texts.
    pub fn texts(&self) -> Vec<&str> {
        self.text_array().iter().map(|s| s.expect("texts are non-null")).collect()
    }

    /// All scores, if every row has one (always for labelled data); `None` otherwise.
    pub fn scores(&self) -> Option<&[f32]> {
        let scores = self.score_array();
        (scores.null_count() == 0).then(|| scores.values().as_ref())
    }

    /// All scores, `None` where absent (unlabelled data).
    pub fn scores_opt(&self) -> Vec<Option<f32>> {
        self.score_array().iter().collect()
    }

    /// All targets.
    pub fn targets(&self) -> Vec<Option<&str>> {
        self.target_array().iter().collect()
    }

    /// All sources.
    pub fn sources(&self) -> Vec<Option<&str>> {
        self.source_array().iter().collect()
    }

    /// The group of every row, for group-aware splitting: the row's `group` value when it has
    /// one, otherwise the default chosen by [`ReadOptions::default_group`] (by default
    /// `text:<normalized text>`, so rows sharing a text, like FiQA/SemEval (text, target)
    /// pairs, share a group; see [`DefaultGroup`]).
    pub fn groups(&self) -> Vec<String> {
        let groups = self.group_array();
        (0..self.len())
            .map(|i| {
                if groups.is_valid(i) {
                    groups.value(i).to_string()
                } else {
                    default_group(self.default_group, self.id(i), self.text(i))
                }
            })
            .collect()
    }

    /// The summary statistics of this dataset.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::compute(
            self.text_array().iter().flatten(),
            self.score_array().iter(),
            self.score_range,
        );
        summary.skipped_rows = self.skipped.count;
        summary.warnings = self.warnings.len();
        summary
    }

    /// A new dataset with the rows at `indices`, in that order (for splits). The subset has
    /// no skipped rows; its warnings are recomputed. Panics if an index is out of bounds.
    pub fn take(&self, indices: &[usize]) -> Dataset {
        let len = self.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
            panic!("row index {bad} out of bounds ({len} rows)");
        }
        let strings = |array: &StringArray| -> ArrayRef {
            let mut b = StringBuilder::with_capacity(indices.len(), 0);
            for &i in indices {
                b.append_option(array.is_valid(i).then(|| array.value(i)));
            }
            Arc::new(b.finish())
        };
        let scores = self.score_array();
        let mut sb = Float32Builder::with_capacity(indices.len());
        for &i in indices {
            sb.append_option(scores.is_valid(i).then(|| scores.value(i)));
        }
        let columns = vec![
            strings(self.id_array()),
            strings(self.text_array()),
            Arc::new(sb.finish()) as ArrayRef,
            strings(self.target_array()),
            strings(self.source_array()),
            strings(self.group_array()),
        ];
        let batch = RecordBatch::try_new(dataset_schema(self.labelled), columns)
            .expect("taken columns match the dataset schema");
        let mut dataset = Dataset {
            batch,
            skipped: SkipReport::default(),
            warnings: Vec::new(),
            score_range: self.score_range,
            labelled: self.labelled,
            default_group: self.default_group,
        };
        dataset.warnings = dataset.conflicting_scores();
        dataset
    }

    /// Rows with the same text and target but different scores.
    fn conflicting_scores(&self) -> Vec<Warning> {
        let texts = self.text_array();
        let targets = self.target_array();
        let scores = self.score_array();
        // First row of each (text, target); later rows with the same key are chained.
        let mut first: HashMap<(&str, Option<&str>), usize, FastHash> =
            HashMap::with_capacity_and_hasher(self.len(), FastHash);
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        for i in 0..self.len() {
            if scores.is_null(i) {
                continue;
            }
            let key = (texts.value(i), targets.is_valid(i).then(|| targets.value(i)));
            match first.entry(key) {
                Entry::Occupied(e) => repeats.push((*e.get(), i)),
                Entry::Vacant(e) => {
                    e.insert(i);
                }
            }
        }
        drop(first);
        // Group the repeats by their first row, in input order.
        repeats.sort_unstable();
        let mut warnings = Vec::new();
        for chunk in repeats.chunk_by(|a, b| a.0 == b.0) {
            let head = chunk[0].0;
            let rows: Vec<usize> = std::iter::once(head).chain(chunk.iter().map(|r| r.1)).collect();
            let score = scores.value(head).to_bits();
            if rows.iter().any(|&i| scores.value(i).to_bits() != score) {
                warnings.push(Warning::ConflictingScores {
                    text: texts.value(head).to_string(),
                    target: targets.is_valid(head).then(|| targets.value(head).to_string()),
                    rows: rows.iter().map(|&i| (self.id(i).to_string(), scores.value(i))).collect(),
                });
            }
        }
        warnings
    }
}

/// The default group of a row without one.
pub(crate) fn default_group(kind: DefaultGroup, id: &str, text: &str) -> String {
    match kind {
        DefaultGroup::Id => format!("id:{id}"),
        DefaultGroup::ExactText => format!("text:{text}"),
        DefaultGroup::NormalizedText => {
            format!("text:{}", crate::dedup::normalized_text_key(text))
        }
    }
}

#[cfg(test)]
mod tests;
