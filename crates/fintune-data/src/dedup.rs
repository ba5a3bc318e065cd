//! Cross-set de-duplication: no training text may also be an evaluation text (issue 16).
//!
//! When several data sets are trained together (e.g. FiQA with the SemEval-2017 headlines and
//! microblogs, which share annotated items; `../shared/data/README.md` lists the overlaps), a
//! training text of one set can be a validation or test text of another, and the evaluation
//! would then measure memorisation. [`dedup_across_sets`] drops every training text whose
//! normalised text ([`normalized_text_key`], the rule of the default text groups) equals any
//! validation or test text of **any** set (its own included), keeps the order of the rest,
//! and reports per set how many were dropped and kept ([`DedupReport`], serde-serialisable
//! for `metrics.json`). Validation and test texts are never dropped.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::Dataset;

#[cfg(test)]
mod tests;

/// The normalised form of a text used to compare texts across sets and to group rows: its
/// alphanumeric characters (Unicode), lowercased, everything else dropped; a text without any
/// alphanumeric character is kept as it is. So `"Tesco's profit falls!"` and
/// `"tesco s profit falls"` have the same key.
pub fn normalized_text_key(text: &str) -> String {
    let key: String =
        text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
    if key.is_empty() {
        text.to_owned()
    } else {
        key
    }
}

/// One data set's texts by split, as handed to [`dedup_across_sets`].
#[derive(Debug, Clone, Copy)]
pub struct SetSplits<'a, S> {
    /// The set's name, as it appears in the report (e.g. `"fiqa"`).
    pub name: &'a str,
    /// Training texts; the ones equal to an evaluation text are dropped.
    pub train: &'a [S],
    /// Validation texts (never dropped).
    pub val: &'a [S],
    /// Test texts (never dropped).
    pub test: &'a [S],
}

/// De-duplication counts of one set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetDedup {
    /// The set's name.
    pub name: String,
    /// Training rows before de-duplication.
    pub train_before: usize,
    /// Distinct normalised training texts before de-duplication.
    pub train_texts: usize,
    /// Training rows dropped (their text is a validation or test text of some set).
    pub dropped: usize,
    /// Distinct normalised texts among the dropped rows.
    pub dropped_texts: usize,
    /// Training rows kept (`train_before - dropped`).
    pub kept: usize,
}

/// Per-set counts of a cross-set de-duplication, for `metrics.json` and the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupReport {
    /// How texts were compared.
    pub rule: String,
    /// One entry per set, in input order.
    pub sets: Vec<SetDedup>,
    /// Training rows dropped over all sets.
    pub dropped: usize,
    /// Training rows kept over all sets.
    pub kept: usize,
}

impl DedupReport {
    /// The names of the sets left without any training row (a trainer turns these into an
    /// error naming the task).
    pub fn emptied_sets(&self) -> Vec<&str> {
        self.sets
            .iter()
            .filter(|s| s.kept == 0 && s.train_before > 0)
            .map(|s| s.name.as_str())
            .collect()
    }
}

/// The result of [`dedup_across_sets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dedup {
    /// Per set (input order), the indices of the training texts kept, increasing.
    pub keep: Vec<Vec<usize>>,
    /// The counts.
    pub report: DedupReport,
}

/// The rule recorded in [`DedupReport::rule`].
pub const DEDUP_RULE: &str =
    "a training text is dropped when its normalised text (alphanumerics, lowercased) equals a \
     validation or test text of any set";

/// Drops every training text whose [`normalized_text_key`] equals that of any validation or
/// test text of any of `sets`; see the [module docs](self). Returns the kept training indices
/// per set (in their original order) and the counts. Deterministic; O(total texts) expected
/// time. Idempotent: de-duplicating the kept texts again against the same evaluation texts
/// drops nothing.
pub fn dedup_across_sets<S: AsRef<str>>(sets: &[SetSplits<'_, S>]) -> Dedup {
    let eval: HashSet<String> = sets
        .iter()
        .flat_map(|s| s.val.iter().chain(s.test))
        .map(|t| normalized_text_key(t.as_ref()))
        .collect();
    let mut keep = Vec::with_capacity(sets.len());
    let mut per_set = Vec::with_capacity(sets.len());
    for s in sets {
        let mut kept = Vec::with_capacity(s.train.len());
        let mut texts = HashSet::new();
        let mut dropped_texts = HashSet::new();
        for (i, t) in s.train.iter().enumerate() {
            let key = normalized_text_key(t.as_ref());
            if eval.contains(&key) {
                dropped_texts.insert(key.clone());
            } else {
                kept.push(i);
            }
            texts.insert(key);
        }
        per_set.push(SetDedup {
            name: s.name.to_owned(),
            train_before: s.train.len(),
            train_texts: texts.len(),
            dropped: s.train.len() - kept.len(),
            dropped_texts: dropped_texts.len(),
            kept: kept.len(),
        });
        keep.push(kept);
    }
    let report = DedupReport {
        rule: DEDUP_RULE.to_owned(),
        dropped: per_set.iter().map(|s| s.dropped).sum(),
        kept: per_set.iter().map(|s| s.kept).sum(),
        sets: per_set,
    };
    Dedup { keep, report }
}

/// One data set's splits as [`Dataset`]s, for [`dedup_datasets`].
#[derive(Debug, Clone, Copy)]
pub struct DatasetSplits<'a> {
    /// The set's name, as it appears in the report.
    pub name: &'a str,
    /// Training rows.
    pub train: &'a Dataset,
    /// Validation rows.
    pub val: &'a Dataset,
    /// Test rows (`None` when the set has no test split).
    pub test: Option<&'a Dataset>,
}

/// [`dedup_across_sets`] on datasets: the de-duplicated training set of every input (rows in
/// their original order, via [`Dataset::take`]) and the report.
pub fn dedup_datasets(sets: &[DatasetSplits<'_>]) -> (Vec<Dataset>, DedupReport) {
    let texts: Vec<[Vec<&str>; 3]> = sets
        .iter()
        .map(|s| [s.train.texts(), s.val.texts(), s.test.map(Dataset::texts).unwrap_or_default()])
        .collect();
    let splits: Vec<SetSplits<'_, &str>> = sets
        .iter()
        .zip(&texts)
        .map(|(s, [train, val, test])| SetSplits { name: s.name, train, val, test })
        .collect();
    let Dedup { keep, report } = dedup_across_sets(&splits);
    let trains = sets.iter().zip(&keep).map(|(s, k)| s.train.take(k)).collect();
    (trains, report)
}
