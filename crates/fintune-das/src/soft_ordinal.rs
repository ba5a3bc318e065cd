//! Soft ordinal targets and prediction fusion for the score-class auxiliary task (issue 16).
//!
//! # Soft targets
//! A hard class target puts all of a score's mass on its class, so a score just below a
//! threshold and one just above it get unrelated targets. The soft target spreads the score's
//! mass over neighbouring classes: the score `y` is smeared into a Gaussian `N(y, sigma^2)`
//! and each class receives the probability of its interval,
//!
//! ```text
//! q_k(y) = Phi((t_{k+1} - y) / sigma) - Phi((t_k - y) / sigma),   k = 0 .. K-1,
//! ```
//!
//! with `t_1 < ... < t_{K-1}` the class thresholds ([`Stratification::thresholds`], from DAS,
//! quantile or uniform), `t_0 = -inf`, `t_K = +inf` and `Phi` the standard normal CDF. The
//! outer classes are open, so the Gaussian mass beyond the score domain `[-1, 1]` goes to the
//! first and last class; each row sums to 1 (telescoping; renormalised against rounding).
//! `sigma` (the bandwidth, in score units) sets how far the mass spreads: about 68% of it
//! falls within `y +- sigma`, 95% within `y +- 2 sigma`. [`DEFAULT_SIGMA`] is 0.1 (the
//! rarity bandwidth; a few narrow classes of width ~0.05 to 0.1 on each side share the mass).
//! `sigma = 0` gives the hard one-hot target of [`Stratification::assign`]. The classification
//! head is trained with cross-entropy `-sum_k q_k log p_k` against these rows.
//!
//! # Prediction fusion
//! The final score mixes the regression head's prediction `r` with the classification head's
//! expected class mean:
//!
//! ```text
//! fused = (1 - mix) r + mix sum_k p_k m_k / sum_k p_k
//! ```
//!
//! with `p` the head's class probabilities, `m_k` the mean training score of class `k`
//! ([`class_means`]) and `mix` in [0, 1] picked on the validation data by [`pick_mix`] (the
//! grid value with the smallest MSE; ties go to the smaller `mix`, so pure regression wins
//! unless fusion strictly helps).

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use statrs::function::erf::erfc;

use crate::{Error, Stratification};

#[cfg(test)]
mod tests;

/// Default bandwidth `sigma` of [`soft_targets`], in score units.
pub const DEFAULT_SIGMA: f64 = 0.1;

/// The standard normal CDF, accurate in both tails (via `erfc`).
fn phi(x: f64) -> f64 {
    if x == f64::INFINITY {
        1.0
    } else if x == f64::NEG_INFINITY {
        0.0
    } else {
        0.5 * erfc(-x / std::f64::consts::SQRT_2)
    }
}

fn bad(name: &'static str, value: impl ToString, reason: &'static str) -> Error {
    Error::InvalidParameter { name, value: value.to_string(), reason }
}

fn check_sigma(sigma: f64) -> Result<(), Error> {
    if sigma.is_finite() && sigma >= 0.0 {
        Ok(())
    } else {
        Err(bad("sigma", sigma, "must be finite and >= 0"))
    }
}

/// As for [`Stratification::from_thresholds`], except that no thresholds (one class) is allowed.
fn check_thresholds(thresholds: &[f64]) -> Result<(), Error> {
    if thresholds.is_empty() {
        Ok(())
    } else {
        crate::strat::check_thresholds(thresholds)
    }
}

/// Writes the soft target row of `score` into `out` (`thresholds.len() + 1` classes); see the
/// [module docs](self) for the formula. No allocation; `thresholds` are assumed checked.
fn row_into(thresholds: &[f64], score: f32, sigma: f64, out: &mut [f64]) {
    debug_assert_eq!(out.len(), thresholds.len() + 1);
    if sigma == 0.0 {
        out.fill(0.0);
        out[thresholds.partition_point(|&t| t as f32 <= score)] = 1.0;
        return;
    }
    let y = f64::from(score);
    let mut below = 0.0;
    let mut sum = 0.0;
    for (k, o) in out.iter_mut().enumerate() {
        let above = thresholds.get(k).map_or(1.0, |&t| phi((t - y) / sigma));
        *o = (above - below).max(0.0);
        sum += *o;
        below = above;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// The soft ordinal target of one score over the `K = thresholds.len() + 1` classes cut by
/// `thresholds` (strictly increasing, finite; none for one class), with bandwidth `sigma`
/// (finite, `>= 0`). The row sums to 1. See the [module docs](self).
///
/// ```
/// let q = fintune_das::soft_targets(&[-0.2, 0.2], 0.0, 0.1).unwrap();
/// // The score sits in the middle class, two sigmas from either threshold.
/// assert!((q[1] - 0.9545).abs() < 1e-4 && (q[0] - q[2]).abs() < 1e-15);
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for a bad `sigma`, [`Error::NonFinite`] for a non-finite score
/// (index 0), [`Error::InvalidThresholds`].
pub fn soft_targets(thresholds: &[f64], score: f32, sigma: f64) -> Result<Vec<f64>, Error> {
    check_sigma(sigma)?;
    check_thresholds(thresholds)?;
    if !score.is_finite() {
        return Err(Error::NonFinite { index: 0, value: score });
    }
    let mut out = vec![0.0; thresholds.len() + 1];
    row_into(thresholds, score, sigma, &mut out);
    Ok(out)
}

/// Soft ordinal targets of many scores, one row each, row-major in a `scores.len() x K`
/// vector (`K = strat.num_classes()`), with the thresholds of `strat`.
///
/// # Errors
/// As [`soft_targets`]; a non-finite score is named by its index.
pub fn soft_targets_all(
    strat: &Stratification,
    scores: &[f32],
    sigma: f64,
) -> Result<Vec<f64>, Error> {
    check_sigma(sigma)?;
    check_thresholds(&strat.thresholds)?;
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::NonFinite { index, value: scores[index] });
    }
    let k = strat.num_classes();
    let mut out = vec![0.0; scores.len() * k];
    for (row, &y) in out.chunks_exact_mut(k).zip(scores) {
        row_into(&strat.thresholds, y, sigma, row);
    }
    Ok(out)
}

/// The class means `m_k` used by [`fuse`]: the mean training score of each class of `strat`
/// ([`ClassInfo::mean`](crate::ClassInfo::mean)). An empty class (possible only for the
/// uniform-width baseline) gets the midpoint of its interval `[lo, hi]`.
pub fn class_means(strat: &Stratification) -> Vec<f64> {
    strat.classes.iter().map(|c| c.mean.unwrap_or(0.5 * (c.lo + c.hi))).collect()
}

fn check_mix(mix: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&mix) {
        Ok(())
    } else {
        Err(bad("mix", mix, "must be in [0, 1]"))
    }
}

/// `sum_k p_k m_k / sum_k p_k`, or a reason why the row is unusable.
fn expected_mean(probs: impl Iterator<Item = f64>, means: &[f64]) -> Result<f64, String> {
    let (mut num, mut den) = (0.0, 0.0);
    for (k, (p, &m)) in probs.zip(means).enumerate() {
        if !(p.is_finite() && p >= 0.0) {
            return Err(format!("class probability {k} = {p} is not finite and >= 0"));
        }
        num += p * m;
        den += p;
    }
    if den > 0.0 {
        Ok(num / den)
    } else {
        Err("class probabilities sum to 0".into())
    }
}

/// Prediction fusion of one example: `(1 - mix) reg_score + mix E[m]`, with
/// `E[m] = sum_k p_k m_k / sum_k p_k` the expected class mean under the classification head's
/// probabilities `class_probs` (finite, `>= 0`, not all 0; normalised here). `mix = 0` returns
/// `reg_score` exactly.
///
/// ```
/// let fused = fintune_das::fuse(0.2, &[0.0, 0.5, 0.5], &[-0.5, 0.0, 0.4], 0.5).unwrap();
/// assert!((fused - 0.2).abs() < 1e-12); // 0.5 * 0.2 + 0.5 * (0.5 * 0.0 + 0.5 * 0.4)
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for a `mix` outside [0, 1], a non-finite `reg_score`, a length
/// mismatch between probabilities and means, or unusable probabilities.
pub fn fuse(
    reg_score: f64,
    class_probs: &[f64],
    class_means: &[f64],
    mix: f64,
) -> Result<f64, Error> {
    check_mix(mix)?;
    if !reg_score.is_finite() {
        return Err(bad("reg_score", reg_score, "must be finite"));
    }
    if class_probs.len() != class_means.len() {
        return Err(Error::InvalidInput {
            what: "fusion",
            reason: format!(
                "{} class probabilities but {} class means",
                class_probs.len(),
                class_means.len()
            ),
        });
    }
    if mix == 0.0 {
        return Ok(reg_score);
    }
    let e = expected_mean(class_probs.iter().copied(), class_means)
        .map_err(|reason| Error::InvalidInput { what: "fusion", reason })?;
    Ok((1.0 - mix) * reg_score + mix * e)
}

/// The grid `0, 0.1, ..., 1` for [`pick_mix`].
pub fn default_mix_grid() -> Vec<f64> {
    (0..=10).map(|i| f64::from(i) / 10.0).collect()
}

/// The `mix` chosen on validation data and the MSE of every grid value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixChoice {
    /// The grid value with the smallest validation MSE (the smallest such value on ties).
    pub mix: f64,
    /// Its validation MSE.
    pub mse: f64,
    /// `(mix, mse)` for every grid value, in grid order.
    pub grid: Vec<(f64, f64)>,
}

/// Picks the fusion `mix` from `grid` (values in [0, 1], non-empty; e.g.
/// [`default_mix_grid`]) by the MSE of the fused predictions against `targets` on validation
/// data. `reg` are the regression head's predictions, `probs` the classification head's class
/// probabilities (one row per example, one column per class), `class_means` from
/// [`class_means`]. Ties (within 1e-12 relative) go to the smaller `mix`. Cost
/// O(n K + n |grid|).
///
/// # Errors
/// Empty data or grid, mismatched lengths, a grid value outside [0, 1], non-finite
/// predictions or targets, or unusable probability rows (each named by its row).
pub fn pick_mix(
    reg: &[f64],
    probs: ArrayView2<'_, f64>,
    class_means: &[f64],
    targets: &[f64],
    grid: &[f64],
) -> Result<MixChoice, Error> {
    let n = reg.len();
    if n == 0 {
        return Err(Error::Empty { what: "validation predictions" });
    }
    if grid.is_empty() {
        return Err(Error::Empty { what: "mix grid" });
    }
    for &m in grid {
        check_mix(m)?;
    }
    let shape = |reason: String| Error::InvalidInput { what: "mix selection", reason };
    if probs.nrows() != n || targets.len() != n {
        return Err(shape(format!(
            "{n} regression predictions, {} probability rows and {} targets",
            probs.nrows(),
            targets.len()
        )));
    }
    if probs.ncols() != class_means.len() {
        return Err(shape(format!(
            "{} probability columns but {} class means",
            probs.ncols(),
            class_means.len()
        )));
    }
    let mut expected = Vec::with_capacity(n);
    for (i, row) in probs.rows().into_iter().enumerate() {
        if !reg[i].is_finite() || !targets[i].is_finite() {
            return Err(shape(format!(
                "row {i}: prediction {} or target {} is not finite",
                reg[i], targets[i]
            )));
        }
        let e = expected_mean(row.iter().copied(), class_means)
            .map_err(|r| shape(format!("row {i}: {r}")))?;
        expected.push(e);
    }
    let mut results = Vec::with_capacity(grid.len());
    for &m in grid {
        let mut sse = 0.0;
        for i in 0..n {
            let f = if m == 0.0 { reg[i] } else { (1.0 - m) * reg[i] + m * expected[i] };
            sse += (f - targets[i]).powi(2);
        }
        results.push((m, sse / n as f64));
    }
    let mut best = results[0];
    for &(m, mse) in &results[1..] {
        let tol = 1e-12 * best.1.abs().max(f64::MIN_POSITIVE);
        if mse < best.1 - tol || ((mse - best.1).abs() <= tol && m < best.0) {
            best = (m, mse);
        }
    }
    Ok(MixChoice { mix: best.0, mse: best.1, grid: results })
}
