//! Repeated, group-aware, stratified k-fold cross-validation of one labelled data set (the
//! `cv` protocol of `fintune compare`).
//!
//! Each repeat `r` partitions the groups (rows with the same normalised text, as
//! [`crate::prepare::split_groups`]) into `k` folds of equal share, stratified on score
//! quintiles, with [`fintune_das::stratified_split_by`] (seeded per repeat). Cell `(r, f)`
//! tests on fold `f` of repeat `r`; the other folds are its training part, from which an inner
//! validation hold-out of [`INNER_VAL_FRACTION`] (group-aware, stratified, seeded per cell) is
//! cut for early stopping. Everything depends on `(labels, groups, spec, seed)` only, never on
//! the method, so every method of a comparison sees the same cells.

use fintune_das::Stratification;
use fintune_data::Dataset;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Share of a cell's training part held out for validation (early stopping, model selection).
pub const INNER_VAL_FRACTION: f64 = 1.0 / 9.0;

/// How many folds and repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CvSpec {
    /// Folds per repeat (at least 2).
    pub folds: usize,
    /// Repeats (at least 1), each a new partition into folds.
    pub repeats: usize,
}

impl Default for CvSpec {
    /// 5 folds x 2 repeats: 10 cells per comparison.
    fn default() -> Self {
        CvSpec { folds: 5, repeats: 2 }
    }
}

impl CvSpec {
    /// Checks the counts; the error names the field.
    pub fn check(&self) -> Result<()> {
        if self.folds < 2 {
            return Err(Error::Config(format!("folds must be at least 2, got {}", self.folds)));
        }
        if self.repeats < 1 {
            return Err(Error::Config(format!("repeats must be at least 1, got {}", self.repeats)));
        }
        Ok(())
    }

    /// Number of cells (`folds * repeats`).
    pub fn cells(&self) -> usize {
        self.folds * self.repeats
    }
}

/// One fold-by-repeat cell: row indices (ascending) of its three parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The repeat (0-based).
    pub repeat: usize,
    /// The test fold (0-based).
    pub fold: usize,
    /// Training rows (the other folds minus the validation hold-out).
    pub train: Vec<usize>,
    /// Validation rows (early stopping).
    pub val: Vec<usize>,
    /// Test rows (fold `fold` of repeat `repeat`).
    pub test: Vec<usize>,
}

impl Cell {
    /// The cell's folder name, 1-based: `r1f1` .. `r<R>f<K>`.
    pub fn name(&self) -> String {
        cell_name(self.repeat, self.fold)
    }
}

/// The folder name of cell `(repeat, fold)` (0-based arguments, 1-based name): `r1f3`.
pub fn cell_name(repeat: usize, fold: usize) -> String {
    format!("r{}f{}", repeat + 1, fold + 1)
}

/// Score-quintile labels of `scores`, as [`crate::prepare::split_groups`] stratifies (one
/// stratum when the scores cannot be cut into quintiles).
pub fn quintile_labels(scores: &[f32]) -> Vec<usize> {
    match Stratification::quantile(scores, 5).and_then(|s| s.assign_all(scores)) {
        Ok(labels) => labels,
        Err(_) => vec![0; scores.len()],
    }
}

/// A seed derived from `seed` and a path of indices (repeat, fold), so that cells do not share
/// random streams.
fn derive(seed: u64, path: &[usize]) -> u64 {
    let mut h = seed ^ 0x243F_6A88_85A3_08D3;
    for &p in path {
        h = (h ^ (p as u64 + 1)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

/// The cells of `spec` over rows with quintile `labels` and `groups`, repeat-major
/// (`r0f0, r0f1, ..`). Errors: a bad spec, a length mismatch, or fewer groups than needed to
/// fill every fold and validation part.
pub fn cv_cells<G: std::hash::Hash + Eq>(
    labels: &[usize],
    groups: &[G],
    spec: CvSpec,
    seed: u64,
) -> Result<Vec<Cell>> {
    spec.check()?;
    let k = spec.folds;
    let mut cells = Vec::with_capacity(spec.cells());
    for r in 0..spec.repeats {
        let folds = fintune_das::stratified_split_by(
            labels,
            groups,
            &vec![1.0 / k as f64; k],
            derive(seed, &[r]),
        )?;
        if let Some(f) = folds.iter().position(Vec::is_empty) {
            return Err(Error::Config(format!(
                "cross-validation: fold {} of repeat {} is empty ({} rows, {k} folds: too few text \
                 groups)",
                f + 1,
                r + 1,
                labels.len()
            )));
        }
        for f in 0..k {
            let mut rest: Vec<usize> = folds
                .iter()
                .enumerate()
                .filter(|(g, _)| *g != f)
                .flat_map(|(_, v)| v)
                .copied()
                .collect();
            rest.sort_unstable();
            let sub_labels: Vec<usize> = rest.iter().map(|&i| labels[i]).collect();
            let sub_groups: Vec<&G> = rest.iter().map(|&i| &groups[i]).collect();
            let inner = fintune_das::stratified_split_by(
                &sub_labels,
                &sub_groups,
                &[1.0 - INNER_VAL_FRACTION, INNER_VAL_FRACTION],
                derive(seed, &[r, f]),
            )?;
            let [train, val] =
                [&inner[0], &inner[1]].map(|p| p.iter().map(|&j| rest[j]).collect::<Vec<_>>());
            if train.is_empty() || val.is_empty() {
                return Err(Error::Config(format!(
                    "cross-validation: cell {} has an empty training or validation part (too few \
                     text groups)",
                    cell_name(r, f)
                )));
            }
            cells.push(Cell { repeat: r, fold: f, train, val, test: folds[f].clone() });
        }
    }
    Ok(cells)
}

/// [`cv_cells`] of a labelled data set: quintile labels of its scores, its groups
/// ([`Dataset::groups`]: by default the normalised text).
pub fn dataset_cells(ds: &Dataset, spec: CvSpec, seed: u64) -> Result<Vec<Cell>> {
    let scores =
        ds.scores().ok_or_else(|| Error::Config("cross-validation needs labelled data".into()))?;
    cv_cells(&quintile_labels(scores), &ds.groups(), spec, seed)
}

#[cfg(test)]
mod tests;
