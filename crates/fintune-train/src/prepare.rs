//! From files to tokenized examples: read and validate (fintune-data), split (group-aware,
//! stratified), cut score classes on the training part only (fintune-das), rarity weights,
//! tokenization.

use std::path::{Path, PathBuf};

use fintune_das::{ClassWeighting, Rarity, Stratification};
use fintune_data::{read_dataset, Dataset, ReadOptions};
use fintune_model::TextEncoder;
use serde::{Deserialize, Serialize};

use crate::batching::Example;
use crate::config::{ClassWeights, Strata, TrainConfig};
use crate::{Error, Result};

/// Rows skipped in one input (with `skip_invalid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Which input (`train`, `val`, `test`).
    pub part: String,
    /// The files.
    pub files: Vec<PathBuf>,
    /// How many rows were skipped.
    pub count: usize,
    /// The first reasons (file:line: column: reason).
    pub reasons: Vec<String>,
}

/// Where the validation set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitHow {
    /// A file given with `--val`.
    File,
    /// Held out from the training data, group-aware and stratified on score quintiles (or
    /// unstratified when the scores cannot be cut into quintiles, e.g. constant scores).
    Stratified,
}

/// How the validation set was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// `file` (given with --val) or `stratified` (held out from the training data).
    pub how: SplitHow,
    /// Held-out share for `stratified`.
    pub fraction: Option<f64>,
    /// Seed of the split.
    pub seed: u64,
    /// Number of groups kept whole.
    pub groups: usize,
}

/// The three data sets, as datasets (for ids and texts) and as examples.
#[derive(Debug)]
pub struct Prepared {
    /// The training part.
    pub train: Dataset,
    /// The validation part.
    pub val: Dataset,
    /// The test data, when given.
    pub test: Option<Dataset>,
    /// The training part, tokenized.
    pub train_ex: Vec<Example>,
    /// The validation part, tokenized.
    pub val_ex: Vec<Example>,
    /// The test data, tokenized.
    pub test_ex: Option<Vec<Example>>,
    /// Score classes fitted on the training part (None for single-task).
    pub strat: Option<Stratification>,
    /// Label density of the training scores.
    pub rarity: Rarity,
    /// Training share of each class (empty for single-task).
    pub class_freq: Vec<f64>,
    /// Cross-entropy class weights (None: unweighted).
    pub class_weights: Option<Vec<f32>>,
    /// How the validation set was obtained.
    pub split: SplitInfo,
    /// Rows skipped per input.
    pub skipped: Vec<Skipped>,
    /// Data warnings (e.g. duplicate texts with different scores).
    pub warnings: Vec<String>,
}

/// Reads one input (several files are concatenated).
pub fn read(
    part: &str,
    files: &[PathBuf],
    opts: &ReadOptions,
    skipped: &mut Vec<Skipped>,
    warnings: &mut Vec<String>,
) -> Result<Dataset> {
    let ds = read_dataset(files, opts)?;
    let rep = ds.skipped();
    if rep.count > 0 {
        skipped.push(Skipped {
            part: part.into(),
            files: files.to_vec(),
            count: rep.count,
            reasons: rep.problems.iter().take(20).map(|p| p.to_string()).collect(),
        });
    }
    warnings.extend(ds.warnings().iter().map(|w| format!("{part}: {w}")));
    Ok(ds)
}

/// The classes for `strata` fitted on `scores`.
pub fn fit_strata(cfg: &TrainConfig, scores: &[f32]) -> Result<Option<Stratification>> {
    use fintune_das::Classes;
    let k = |default: usize| match cfg.task.classes {
        Classes::Auto => default,
        Classes::Fixed(k) => k,
    };
    Ok(match cfg.task.strata {
        Strata::None => None,
        Strata::Das => {
            Some(Stratification::fit(scores, &cfg.das.clone().classes(cfg.task.classes))?)
        }
        Strata::Quantile => Some(Stratification::quantile(scores, k(5))?),
        Strata::Uniform => Some(Stratification::uniform_width(scores, k(5))?),
    })
}

fn examples(
    ds: &Dataset,
    enc: &TextEncoder,
    strat: Option<&Stratification>,
    rarity: &Rarity,
) -> Result<Vec<Example>> {
    let texts = ds.texts();
    let encoded = enc.encode_with_targets(&texts, &ds.targets())?;
    let ids = ds.ids();
    Ok(encoded
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let score = ds.score(i).unwrap_or(f32::NAN);
            Example {
                id: ids[i].to_owned(),
                enc: e,
                score,
                class: if score.is_finite() { strat.map_or(0, |s| s.assign(score)) } else { 0 },
                rarity: if score.is_finite() { rarity.weight(score) } else { 1.0 },
                src: 0,
            }
        })
        .collect())
}

/// A group-aware split of a labelled dataset, stratified on score quintiles (the rule of the
/// trainer's validation hold-out, `fintune data split` and the experiment splits).
pub fn split_groups(ds: &Dataset, fractions: &[f64], seed: u64) -> Result<Vec<Vec<usize>>> {
    let scores =
        ds.scores().ok_or_else(|| Error::Config("splitting needs labelled data".into()))?;
    // Scores that cannot be cut into quintiles (all equal, or too few distinct values) are
    // split without strata: one stratum, still group-aware.
    let labels = match Stratification::quantile(scores, 5).and_then(|s| s.assign_all(scores)) {
        Ok(labels) => labels,
        Err(_) => vec![0; scores.len()],
    };
    Ok(fintune_das::stratified_split(&labels, Some(&ds.groups()), fractions, seed)?)
}

/// Reads, validates, splits, stratifies and tokenizes everything `cfg` names.
pub fn prepare(cfg: &TrainConfig, enc: &TextEncoder) -> Result<Prepared> {
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    let opts = cfg.data.read.clone().labelled(true);
    let full = read("train", &cfg.data.train, &opts, &mut skipped, &mut warnings)?;
    if full.len() < 10 {
        return Err(Error::Config(format!(
            "only {} valid training rows; fintune needs at least 10",
            full.len()
        )));
    }
    let (train, val, split) = match &cfg.data.val {
        Some(v) => {
            if let Some(t) = cfg.data.train.iter().find(|t| same_file(t, v)) {
                warnings.insert(
                    0,
                    format!(
                        "the validation file {} is the training file {}: validation MSE, the best \
                         epoch and early stopping measure training fit, not generalisation",
                        v.display(),
                        t.display()
                    ),
                );
            }
            let val = read("val", std::slice::from_ref(v), &opts, &mut skipped, &mut warnings)?;
            let groups = full.groups();
            let n_groups = groups.iter().collect::<std::collections::HashSet<_>>().len();
            (
                full,
                val,
                SplitInfo {
                    how: SplitHow::File,
                    fraction: None,
                    seed: cfg.split_seed(),
                    groups: n_groups,
                },
            )
        }
        None => {
            // Stratify the hold-out on score quintiles, whatever --strata is, so every method
            // sees the same validation set for a given seed.
            let n_groups = full.groups().iter().collect::<std::collections::HashSet<_>>().len();
            let f = cfg.data.val_fraction;
            let parts = split_groups(&full, &[1.0 - f, f], cfg.split_seed())?;
            (
                full.take(&parts[0]),
                full.take(&parts[1]),
                SplitInfo {
                    how: SplitHow::Stratified,
                    fraction: Some(f),
                    seed: cfg.split_seed(),
                    groups: n_groups,
                },
            )
        }
    };
    if val.is_empty() {
        return Err(Error::Config("the validation set is empty".into()));
    }
    let test = match &cfg.data.test {
        Some(t) => Some(read("test", std::slice::from_ref(t), &opts, &mut skipped, &mut warnings)?),
        None => None,
    };
    let train_scores = train.scores().expect("labelled");
    let strat = fit_strata(cfg, train_scores)?;
    let rarity = Rarity::fit(train_scores, cfg.task.rarity_bandwidth)?;
    let (class_freq, class_weights) = match &strat {
        None => (vec![], None),
        Some(s) => {
            let w = match cfg.task.class_weights {
                ClassWeights::None => None,
                ClassWeights::Inverse => Some(s.class_weights(ClassWeighting::InverseFrequency)?),
                ClassWeights::InverseSqrt => Some(s.class_weights(ClassWeighting::InverseSqrt)?),
                ClassWeights::Effective => {
                    Some(s.class_weights(ClassWeighting::EffectiveNumber { beta: 0.999 })?)
                }
            };
            (s.shares(), w)
        }
    };
    let train_ex = examples(&train, enc, strat.as_ref(), &rarity)?;
    let val_ex = examples(&val, enc, strat.as_ref(), &rarity)?;
    let test_ex = test.as_ref().map(|t| examples(t, enc, strat.as_ref(), &rarity)).transpose()?;
    Ok(Prepared {
        train,
        val,
        test,
        train_ex,
        val_ex,
        test_ex,
        strat,
        rarity,
        class_freq,
        class_weights,
        split,
        skipped,
        warnings,
    })
}

/// Whether `a` and `b` name the same existing file (also through different paths or links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        #[cfg(unix)]
        (Ok(x), Ok(y)) => {
            use std::os::unix::fs::MetadataExt;
            x.dev() == y.dev() && x.ino() == y.ino()
        }
        #[cfg(not(unix))]
        (Ok(_), Ok(_)) => match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
        _ => false,
    }
}

/// Makes `p` absolute against the current directory (for the resolved config).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_owned())
    }
}
