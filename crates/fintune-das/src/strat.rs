//! [`Stratification`]: the fitted class thresholds, their statistics, and the baselines.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use crate::config::{Classes, DasConfig};
use crate::dp::{self, Prefix, Problem};
use crate::group::{self, Grouped};
use crate::Error;

/// Which procedure produced a [`Stratification`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    /// Data-aware stratification: the exact optimum of the DAS objective ([`Stratification::fit`]).
    #[serde(rename = "das")]
    Das,
    /// Equal-frequency classes ([`Stratification::quantile`]).
    #[serde(rename = "quantile")]
    Quantile,
    /// Equal-width classes over `[min, max]` of the scores ([`Stratification::uniform_width`]).
    #[serde(rename = "uniform")]
    UniformWidth,
    /// Caller-given thresholds ([`Stratification::from_thresholds`]).
    #[serde(rename = "manual")]
    Manual,
}

impl Method {
    /// The lowercase name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Das => "das",
            Method::Quantile => "quantile",
            Method::UniformWidth => "uniform",
            Method::Manual => "manual",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = Error;

    /// Parses `das`, `quantile`, `uniform` (also `uniform_width`) or `manual`, any case.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "das" => Ok(Method::Das),
            "quantile" => Ok(Method::Quantile),
            "uniform" | "uniform_width" | "uniform-width" => Ok(Method::UniformWidth),
            "manual" => Ok(Method::Manual),
            _ => Err(Error::InvalidParameter {
                name: "method",
                value: s.to_owned(),
                reason: "expected das, quantile, uniform or manual",
            }),
        }
    }
}

/// One class of a [`Stratification`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClassInfo {
    /// Lower bound: the class's lower threshold (inclusive), or for class 0 the smallest
    /// training score (or the first threshold if that is smaller).
    pub lo: f64,
    /// Upper bound: the class's upper threshold (exclusive), or for the last class the largest
    /// training score (or the last threshold if that is larger).
    pub hi: f64,
    /// Number of training scores in the class.
    pub count: usize,
    /// `count / n`.
    pub share: f64,
    /// Mean training score in the class (`None` if empty; only baselines can have empty classes).
    pub mean: Option<f64>,
    /// Population standard deviation of the class's training scores (`None` if empty).
    pub std: Option<f64>,
    /// Smallest training score in the class (`None` if empty).
    pub min: Option<f32>,
    /// Largest training score in the class (`None` if empty).
    pub max: Option<f32>,
}

/// Pearson's chi-square test of the class counts against the uniform distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChiSquare {
    /// `sum_k (count_k - n/K)^2 / (n/K)`.
    pub statistic: f64,
    /// Degrees of freedom, `K - 1`.
    pub dof: usize,
    /// Upper tail probability of the statistic under `chi2(K - 1)` (statrs).
    pub p_value: f64,
}

/// The constraints a DAS result satisfies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Constraints {
    /// Every class holds at least this many training scores (the effective value).
    pub min_count: usize,
    /// Every inner class is at least this wide (distance between its thresholds, up to `1e-9`).
    pub min_width: f64,
    /// Whether 0 is one of the thresholds.
    pub zero_cut: bool,
}

/// The optimum for one K, as scanned by [`Stratification::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KSummary {
    /// Number of classes.
    pub k: usize,
    /// The optimal thresholds for this K.
    pub thresholds: Vec<f64>,
    /// Entropy of the shares divided by `ln K`.
    pub normalized_entropy: f64,
    /// `1 - SSE / SST`.
    pub explained_variance: f64,
    /// The DAS objective `J`.
    pub objective: f64,
}

/// Class-weighting schemes for [`Stratification::class_weights`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ClassWeighting {
    /// `w_k ∝ 1 / count_k`.
    InverseFrequency,
    /// `w_k ∝ 1 / sqrt(count_k)`.
    InverseSqrt,
    /// Effective number of samples (Cui et al. 2019): `w_k ∝ (1 - beta) / (1 - beta^count_k)`,
    /// `beta` in `[0, 1)` (e.g. 0.999).
    EffectiveNumber {
        /// Smoothing constant in `[0, 1)`.
        beta: f64,
    },
}

/// Class thresholds over continuous scores, with the statistics of the partition they make of
/// the training scores.
///
/// Class `k` holds the scores `s` with `thresholds[k-1] <= s < thresholds[k]` (lower bounds
/// inclusive), see [`Stratification::assign`]. Serialisable (saved as `das.json` beside a
/// trained model); deserialisation checks that the thresholds are finite and strictly
/// increasing and that the class table matches them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "raw::Raw")]
#[non_exhaustive]
pub struct Stratification {
    /// Procedure that produced the thresholds.
    pub method: Method,
    /// Number of training scores.
    pub n: usize,
    /// Number of distinct training scores.
    pub distinct_values: usize,
    /// `K - 1` strictly increasing thresholds.
    pub thresholds: Vec<f64>,
    /// Per-class table, `K` entries.
    pub classes: Vec<ClassInfo>,
    /// Entropy of the class shares divided by `ln K` (1 = perfectly balanced).
    pub normalized_entropy: f64,
    /// Share of the total sum of squares explained by the class means, `1 - SSE/SST`.
    pub explained_variance: f64,
    /// `KL(p || uniform) = sum_k p_k ln(K p_k)`, the balance term of the objective.
    pub balance_term: f64,
    /// The weight `a` used in `objective` (the config's for DAS, 0.7 by default for baselines;
    /// see [`Stratification::with_balance_weight`]).
    pub balance_weight: f64,
    /// `J = a * balance_term + (1 - a) * (1 - explained_variance)`.
    pub objective: f64,
    /// Chi-square test of the counts against uniform.
    pub chi_square: ChiSquare,
    /// Skewness of the training scores, `m3 / m2^1.5` (population moments).
    pub skewness: f64,
    /// Excess kurtosis of the training scores, `m4 / m2^2 - 3` (population moments).
    pub kurtosis: f64,
    /// Whether every midpoint between consecutive distinct scores was a candidate (DAS); false
    /// when more than `max_candidates` distinct gaps forced quantile-spaced candidates. Always
    /// true for the baselines.
    pub candidates_exact: bool,
    /// Number of candidate thresholds the DAS search considered (for baselines: the number of
    /// gaps between distinct values).
    pub num_candidates: usize,
    /// Constraints the partition satisfies (DAS only).
    pub constraints: Option<Constraints>,
    /// The optimum for every feasible K the DP solved (DAS only; ascending K).
    #[serde(default)]
    pub k_scan: Vec<KSummary>,
}

/// Chooses the threshold between two consecutive distinct values `lo < hi`: their midpoint,
/// computed on the shortest decimal forms of the two `f32`s (so `0.1` and `0.101` give
/// `0.1005`, not `0.10050000250339508`); falls back to the exact binary midpoint when that
/// would not lie strictly between them.
///
/// Guarantees `lo < t as f32 <= hi` (so [`Stratification::assign`], which compares in `f32`,
/// separates the two values): for values one or two `f32` steps apart the threshold is moved to
/// the `f32` just above `lo`.
pub(crate) fn midpoint(lo: f32, hi: f32) -> f64 {
    let (l, h) = (f64::from(lo), f64::from(hi));
    let separates = |t: f64| l < t && t < h && lo < t as f32;
    let (sl, sh) = (lo.to_string(), hi.to_string());
    let dec = |s: &str| s.find('.').map_or(0, |p| s.len() - p - 1);
    let digits = dec(&sl).max(dec(&sh)) + 1;
    if digits <= 17 {
        if let (Ok(dl), Ok(dh)) = (sl.parse::<f64>(), sh.parse::<f64>()) {
            let m = (dl + dh) / 2.0;
            if let Ok(r) = format!("{m:.digits$}").parse::<f64>() {
                if separates(r) {
                    return r;
                }
            }
        }
    }
    let exact = (l + h) / 2.0; // exact in f64 for f32 inputs
    if separates(exact) {
        exact
    } else {
        f64::from(next_up(lo))
    }
}

/// The next `f32` above a finite `x` (`f32::next_up` needs Rust 1.86).
fn next_up(x: f32) -> f32 {
    let b = x.to_bits();
    if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(b + 1)
    } else {
        f32::from_bits(b - 1)
    }
}

/// The `f64` nearest to the shortest decimal form of an `f32` (`-0.938`, not
/// `-0.9380000233650208`), for readable JSON; it rounds back to the same `f32`.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// Number of distinct values below threshold `t` under the `f32` comparison of `assign`.
fn cut_index(values: &[f32], t: f64) -> usize {
    let t32 = t as f32;
    values.partition_point(|&v| v < t32)
}

/// Picks `m` quantile-spaced gaps out of `1..d` (gap `g` separates groups `g-1` and `g`):
/// for each target rank `q n / (m + 1)` the gap whose count below is nearest (lower on ties).
fn quantile_gaps(pn: &[u64], d: usize, m: usize) -> Vec<usize> {
    let n = pn[d] as f64;
    let mut out: Vec<usize> = Vec::with_capacity(m);
    for q in 1..=m {
        let r = q as f64 * n / (m + 1) as f64;
        let g = nearest_gap(pn, r, 1, d - 1);
        if out.last() != Some(&g) {
            out.push(g);
        }
    }
    out
}

/// The gap in `lo..=hi` whose count below (`pn[g]`) is nearest to `r` (lower on ties).
fn nearest_gap(pn: &[u64], r: f64, lo: usize, hi: usize) -> usize {
    debug_assert!(1 <= lo && lo <= hi);
    let g0 = lo + pn[lo..=hi].partition_point(|&c| (c as f64) < r);
    if g0 > hi {
        return hi;
    }
    if g0 == lo {
        return lo;
    }
    let below = r - pn[g0 - 1] as f64;
    let above = pn[g0] as f64 - r;
    if below <= above {
        g0 - 1
    } else {
        g0
    }
}

impl Stratification {
    /// Fits DAS thresholds to training scores: the exact minimiser of
    /// `J = a * sum_k p_k ln(K p_k) + (1 - a) * SSE / SST` over the candidate thresholds,
    /// subject to the configured constraints (see the crate docs for the full rules).
    ///
    /// With [`Classes::Auto`], the DP solves every K up to `max_classes` in one pass; the
    /// result is the smallest K in `3..=max_classes` whose optimum explains at least
    /// `explained_variance` of SST, else the largest feasible K in that range. If no K >= 3 is
    /// feasible (tiny or heavily tied data) it falls back to K = 2, and errors only if K = 2 is
    /// infeasible too. With [`Classes::Fixed`] an infeasible K is an error.
    ///
    /// # Errors
    /// Empty input, a non-finite score (with its index), an invalid config, fewer distinct
    /// values than classes, `zero_cut` without scores on both sides of 0, or no feasible
    /// partition ([`Error::Infeasible`]).
    pub fn fit(scores: &[f32], config: &DasConfig) -> Result<Stratification, Error> {
        config.validate()?;
        let g = group::group(scores)?;
        let d = g.values.len();
        let (kmax, fixed) = match config.get_classes() {
            Classes::Fixed(k) => (k, Some(k)),
            Classes::Auto => (config.get_max_classes(), None),
        };
        let need = fixed.unwrap_or(2);
        if d < need {
            return Err(Error::TooFewDistinct { distinct: d, k: need });
        }
        let pre = Prefix::new(&g);
        let n = g.n as usize;
        let min_count = config.effective_min_count(n);

        let zero = if config.get_zero_cut() {
            let z = g.values.partition_point(|&v| v < 0.0);
            if z == 0 || z == d {
                let neg = pre.pn[z] as usize;
                return Err(Error::ZeroCutImpossible { negative: neg, non_negative: n - neg });
            }
            Some(z)
        } else {
            None
        };

        // Candidate gaps.
        let max_c = config.get_max_candidates();
        let exact = d - 1 <= max_c;
        let mut gaps: Vec<usize> =
            if exact { (1..d).collect() } else { quantile_gaps(&pre.pn, d, max_c) };
        if let Some(z) = zero {
            if let Err(pos) = gaps.binary_search(&z) {
                gaps.insert(pos, z);
            }
        }
        let num_candidates = gaps.len();
        let mut bounds = Vec::with_capacity(gaps.len() + 2);
        bounds.push(0);
        bounds.extend_from_slice(&gaps);
        bounds.push(d);
        let thresholds: Vec<f64> = bounds
            .iter()
            .map(|&b| {
                if b == 0 {
                    f64::NEG_INFINITY
                } else if b == d {
                    f64::INFINITY
                } else if Some(b) == zero {
                    0.0
                } else {
                    midpoint(g.values[b - 1], g.values[b])
                }
            })
            .collect();
        let forced = zero.map(|z| bounds.binary_search(&z).expect("zero gap is a candidate"));
        let problem = Problem {
            prefix: &pre,
            bounds: &bounds,
            thresholds: &thresholds,
            forced,
            balance_weight: config.get_balance_weight(),
            min_count: min_count as u64,
            min_width: config.get_min_width(),
            kmax,
        };
        let per_k = dp::solve(&problem);

        let a = config.get_balance_weight();
        let build_k = |k: usize| -> Option<Stratification> {
            let cuts = per_k.get(k)?.as_ref()?;
            let group_cuts: Vec<usize> = cuts.iter().map(|&c| bounds[c]).collect();
            let ts: Vec<f64> = cuts.iter().map(|&c| thresholds[c]).collect();
            Some(build(&g, &pre, &group_cuts, ts, Method::Das, a))
        };
        let infeasible = |k: usize| Error::Infeasible {
            k,
            n,
            distinct: d,
            candidates: num_candidates,
            min_count,
            min_width: config.get_min_width(),
            zero_cut: zero.is_some(),
        };

        let scan: Vec<Stratification> = (2..=kmax).filter_map(build_k).collect();
        let chosen_k = match fixed {
            Some(k) => {
                if per_k[k].is_none() {
                    return Err(infeasible(k));
                }
                k
            }
            None => {
                let lo = 3.min(kmax);
                let target = config.get_explained_variance();
                let in_range: Vec<&Stratification> =
                    scan.iter().filter(|s| s.num_classes() >= lo).collect();
                if let Some(s) =
                    in_range.iter().find(|s| s.explained_variance >= target - dp::TIE_TOL)
                {
                    s.num_classes()
                } else if let Some(s) = in_range.last() {
                    s.num_classes()
                } else if per_k[2].is_some() {
                    2
                } else {
                    return Err(infeasible(2));
                }
            }
        };
        let k_scan: Vec<KSummary> = scan
            .iter()
            .map(|s| KSummary {
                k: s.num_classes(),
                thresholds: s.thresholds.clone(),
                normalized_entropy: s.normalized_entropy,
                explained_variance: s.explained_variance,
                objective: s.objective,
            })
            .collect();
        let mut out =
            scan.into_iter().find(|s| s.num_classes() == chosen_k).expect("chosen K was solved");
        out.candidates_exact = exact;
        out.num_candidates = num_candidates;
        out.constraints = Some(Constraints {
            min_count,
            min_width: config.get_min_width(),
            zero_cut: zero.is_some(),
        });
        out.k_scan = k_scan;
        Ok(out)
    }

    /// Equal-frequency baseline with `k` classes: threshold `j` is the midpoint of the gap
    /// between distinct values whose rank is nearest to `j n / k` (ties never straddle a
    /// threshold, so classes are only as balanced as the ties allow; every class is non-empty).
    /// The objective uses `a = 0.7`; see [`Stratification::with_balance_weight`].
    ///
    /// # Errors
    /// Empty input, a non-finite score, `k < 2`, or fewer than `k` distinct values.
    pub fn quantile(scores: &[f32], k: usize) -> Result<Stratification, Error> {
        check_k(k)?;
        let g = group::group(scores)?;
        let d = g.values.len();
        if d < k {
            return Err(Error::TooFewDistinct { distinct: d, k });
        }
        let pre = Prefix::new(&g);
        let n = pre.n as f64;
        let mut cuts = Vec::with_capacity(k - 1);
        let mut prev = 0;
        for j in 1..k {
            let r = j as f64 * n / k as f64;
            let gap = nearest_gap(&pre.pn, r, prev + 1, d - 1 - (k - 1 - j));
            cuts.push(gap);
            prev = gap;
        }
        let ts = cuts.iter().map(|&c| midpoint(g.values[c - 1], g.values[c])).collect();
        Ok(build(&g, &pre, &cuts, ts, Method::Quantile, DasConfig::DEFAULT_BALANCE_WEIGHT))
    }

    /// Equal-width baseline with `k` classes over `[min, max]` of the scores: thresholds
    /// `min + j (max - min) / k`. Classes may be empty. The objective uses `a = 0.7`.
    ///
    /// # Errors
    /// Empty input, a non-finite score, `k < 2`, or all scores equal.
    pub fn uniform_width(scores: &[f32], k: usize) -> Result<Stratification, Error> {
        check_k(k)?;
        let g = group::group(scores)?;
        let d = g.values.len();
        if d < 2 {
            return Err(Error::TooFewDistinct { distinct: d, k });
        }
        let (lo, hi) = (f64::from(g.values[0]), f64::from(g.values[d - 1]));
        let ts: Vec<f64> = (1..k).map(|j| lo + (hi - lo) * j as f64 / k as f64).collect();
        let pre = Prefix::new(&g);
        let cuts: Vec<usize> = ts.iter().map(|&t| cut_index(&g.values, t)).collect();
        Ok(build(&g, &pre, &cuts, ts, Method::UniformWidth, DasConfig::DEFAULT_BALANCE_WEIGHT))
    }

    /// The partition of `scores` made by caller-given thresholds (finite, strictly
    /// increasing, at least one), with all statistics. The objective uses `a = 0.7`.
    ///
    /// # Errors
    /// Empty input, a non-finite score, or invalid thresholds.
    pub fn from_thresholds(scores: &[f32], thresholds: &[f64]) -> Result<Stratification, Error> {
        check_thresholds(thresholds)?;
        let g = group::group(scores)?;
        let pre = Prefix::new(&g);
        let cuts: Vec<usize> = thresholds.iter().map(|&t| cut_index(&g.values, t)).collect();
        Ok(build(
            &g,
            &pre,
            &cuts,
            thresholds.to_vec(),
            Method::Manual,
            DasConfig::DEFAULT_BALANCE_WEIGHT,
        ))
    }

    /// The same partition with `objective` recomputed for another balance weight `a`
    /// (e.g. to compare baselines with a DAS fit that used `--balance-weight`).
    ///
    /// # Errors
    /// `a` outside `[0, 1]`.
    pub fn with_balance_weight(mut self, a: f64) -> Result<Stratification, Error> {
        if !(0.0..=1.0).contains(&a) {
            return Err(Error::InvalidParameter {
                name: "balance_weight",
                value: a.to_string(),
                reason: "must be in [0, 1]",
            });
        }
        self.balance_weight = a;
        self.objective = self.objective_at(a);
        Ok(self)
    }

    /// The objective `J` of this partition for balance weight `a`.
    pub fn objective_at(&self, a: f64) -> f64 {
        a * self.balance_term + (1.0 - a) * (1.0 - self.explained_variance)
    }

    /// Number of classes `K`.
    pub fn num_classes(&self) -> usize {
        self.thresholds.len() + 1
    }

    /// The class of one score: the number of thresholds `t` with `t as f32 <= score`.
    ///
    /// The comparison is made in `f32`, the precision of the scores, so a score equal to a
    /// threshold written in decimal (a manual `-0.2`, or DAS's zero cut) goes to the class
    /// above, as a reader of the thresholds expects. DAS and quantile thresholds lie strictly
    /// between distinct training values in `f32` too. Scores outside the training range go to
    /// the first or last class. A NaN score maps to class 0; validate scores first (or use
    /// [`Stratification::assign_all`], which rejects them).
    pub fn assign(&self, score: f32) -> usize {
        self.thresholds.partition_point(|&t| t as f32 <= score)
    }

    /// Classes of many scores.
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming the first non-finite score.
    pub fn assign_all(&self, scores: &[f32]) -> Result<Vec<usize>, Error> {
        if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
            return Err(Error::NonFinite { index, value: scores[index] });
        }
        Ok(scores.iter().map(|&s| self.assign(s)).collect())
    }

    /// Training counts per class.
    pub fn counts(&self) -> Vec<usize> {
        self.classes.iter().map(|c| c.count).collect()
    }

    /// Training shares per class (sum 1).
    pub fn shares(&self) -> Vec<f64> {
        self.classes.iter().map(|c| c.share).collect()
    }

    /// Per-class loss weights, normalised to mean 1 over the non-empty classes (the
    /// class-balanced-loss convention: they sum to the number of non-empty classes). Empty
    /// classes (possible for the uniform-width baseline) get weight 0.
    ///
    /// # Errors
    /// `beta` outside `[0, 1)` for [`ClassWeighting::EffectiveNumber`].
    pub fn class_weights(&self, kind: ClassWeighting) -> Result<Vec<f32>, Error> {
        if let ClassWeighting::EffectiveNumber { beta } = kind {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::InvalidParameter {
                    name: "beta",
                    value: beta.to_string(),
                    reason: "must be in [0, 1)",
                });
            }
        }
        let raw: Vec<f64> = self
            .classes
            .iter()
            .map(|c| {
                if c.count == 0 {
                    return 0.0;
                }
                let m = c.count as f64;
                match kind {
                    ClassWeighting::InverseFrequency => 1.0 / m,
                    ClassWeighting::InverseSqrt => 1.0 / m.sqrt(),
                    ClassWeighting::EffectiveNumber { beta } => {
                        // (1 - beta) / (1 - beta^m), computed stably.
                        if beta == 0.0 {
                            1.0
                        } else {
                            (1.0 - beta) / -(m * beta.ln()).exp_m1()
                        }
                    }
                }
            })
            .collect();
        let nonempty = self.classes.iter().filter(|c| c.count > 0).count().max(1);
        let mean = raw.iter().sum::<f64>() / nonempty as f64;
        Ok(raw.iter().map(|&w| (w / mean) as f32).collect())
    }
}

fn check_k(k: usize) -> Result<(), Error> {
    if k < 2 {
        return Err(Error::InvalidParameter {
            name: "classes",
            value: k.to_string(),
            reason: "must be >= 2",
        });
    }
    Ok(())
}

pub(crate) fn check_thresholds(ts: &[f64]) -> Result<(), Error> {
    if ts.is_empty() {
        return Err(Error::InvalidThresholds { reason: "at least one threshold is needed".into() });
    }
    if let Some(i) = ts.iter().position(|t| !t.is_finite()) {
        return Err(Error::InvalidThresholds {
            reason: format!("threshold {i} is not finite ({})", ts[i]),
        });
    }
    if let Some(i) = ts.windows(2).position(|w| w[0] >= w[1]) {
        return Err(Error::InvalidThresholds {
            reason: format!(
                "thresholds must be strictly increasing: threshold {} ({}) >= threshold {} ({})",
                i,
                ts[i],
                i + 1,
                ts[i + 1]
            ),
        });
    }
    Ok(())
}

/// Builds the result for a partition given by group cut indices (non-decreasing; equal
/// neighbours make an empty class) and the thresholds that produce it.
fn build(
    g: &Grouped,
    pre: &Prefix,
    cuts: &[usize],
    thresholds: Vec<f64>,
    method: Method,
    balance_weight: f64,
) -> Stratification {
    let d = g.values.len();
    let k = cuts.len() + 1;
    let n = g.n as f64;
    let mut edges = Vec::with_capacity(k + 1);
    edges.push(0);
    edges.extend_from_slice(cuts);
    edges.push(d);
    let kf = k as f64;

    let mut classes = Vec::with_capacity(k);
    let (mut sse, mut kl, mut ent, mut chi) = (0.0, 0.0, 0.0, 0.0);
    let expected = n / kf;
    for c in 0..k {
        let (a, b) = (edges[c], edges[c + 1]);
        let count = pre.count(a, b);
        let p = count as f64 / n;
        let class_sse = pre.sse(a, b);
        sse += class_sse;
        if count > 0 {
            kl += p * (kf * p).ln();
            ent -= p * p.ln();
        }
        chi += (count as f64 - expected).powi(2) / expected;
        let lo = if c == 0 { decimal(g.values[0]).min(thresholds[0]) } else { thresholds[c - 1] };
        let hi = if c == k - 1 {
            decimal(g.values[d - 1]).max(thresholds[k - 2])
        } else {
            thresholds[c]
        };
        classes.push(ClassInfo {
            lo,
            hi,
            count: count as usize,
            share: p,
            mean: pre.mean_of(a, b),
            std: (count > 0).then(|| (class_sse / count as f64).sqrt()),
            min: (count > 0).then(|| g.values[a]),
            max: (count > 0).then(|| g.values[b - 1]),
        });
    }
    let explained_variance = if pre.sst > 0.0 { 1.0 - sse / pre.sst } else { 1.0 };
    let p_value = ChiSquared::new((k - 1) as f64).map(|dist| dist.sf(chi)).unwrap_or(f64::NAN);
    let (skewness, kurtosis) = shape(g, pre);
    let mut s = Stratification {
        method,
        n: g.n as usize,
        distinct_values: d,
        thresholds,
        classes,
        normalized_entropy: ent / kf.ln(),
        explained_variance,
        balance_term: kl,
        balance_weight,
        objective: 0.0,
        chi_square: ChiSquare { statistic: chi, dof: k - 1, p_value },
        skewness,
        kurtosis,
        candidates_exact: true,
        num_candidates: d - 1,
        constraints: None,
        k_scan: Vec::new(),
    };
    s.objective = s.objective_at(balance_weight);
    s
}

/// Skewness and excess kurtosis from population moments (0 for constant data).
fn shape(g: &Grouped, pre: &Prefix) -> (f64, f64) {
    let n = g.n as f64;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for (&v, &c) in g.values.iter().zip(&g.counts) {
        let d = f64::from(v) - pre.mean;
        let d2 = d * d;
        let c = c as f64;
        m2 += c * d2;
        m3 += c * d2 * d;
        m4 += c * d2 * d2;
    }
    m2 /= n;
    m3 /= n;
    m4 /= n;
    if m2 <= 0.0 {
        return (0.0, 0.0);
    }
    (m3 / m2.powf(1.5), m4 / (m2 * m2) - 3.0)
}

/// Formats a threshold compactly: its shortest representation when short, else 4 decimals.
fn short(x: f64) -> String {
    let s = x.to_string();
    if s.len() <= 8 {
        s
    } else {
        format!("{x:.4}")
    }
}

impl fmt::Display for Stratification {
    /// A human-readable summary and per-class table (what `fintune stratify` prints).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.num_classes();
        let ts: Vec<String> = self.thresholds.iter().map(|&t| short(t)).collect();
        writeln!(f, "{}: K = {}, n = {}, thresholds [{}]", self.method, k, self.n, ts.join(", "))?;
        writeln!(
            f,
            "  normalized entropy {:.4}   explained variance {:.4}   objective {:.4} (a = {})",
            self.normalized_entropy, self.explained_variance, self.objective, self.balance_weight
        )?;
        writeln!(
            f,
            "  chi-square {:.2} (df {}, p = {:.4})   skewness {:.3}   excess kurtosis {:.3}",
            self.chi_square.statistic,
            self.chi_square.dof,
            self.chi_square.p_value,
            self.skewness,
            self.kurtosis
        )?;
        if let Some(c) = &self.constraints {
            writeln!(
                f,
                "  candidates {} ({}) of {} distinct values; min_count {}, min_width {}, zero_cut {}",
                self.num_candidates,
                if self.candidates_exact { "exact" } else { "quantile-spaced" },
                self.distinct_values,
                c.min_count,
                c.min_width,
                c.zero_cut
            )?;
        }
        writeln!(
            f,
            "  {:>5}  {:<20}  {:>7}  {:>6}  {:>8}  {:>7}",
            "class", "interval", "count", "share", "mean", "std"
        )?;
        for (i, c) in self.classes.iter().enumerate() {
            let close = if i + 1 == k { ']' } else { ')' };
            let interval = format!("[{:.4}, {:.4}{}", c.lo, c.hi, close);
            let opt = |x: Option<f64>, w: usize| match x {
                Some(v) => format!("{v:>w$.4}"),
                None => format!("{:>w$}", "-"),
            };
            writeln!(
                f,
                "  {:>5}  {:<20}  {:>7}  {:>6.3}  {}  {}",
                i,
                interval,
                c.count,
                c.share,
                opt(c.mean, 8),
                opt(c.std, 7)
            )?;
        }
        Ok(())
    }
}

/// Serde mirror used to validate deserialised results.
mod raw {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Raw {
        method: Method,
        n: usize,
        distinct_values: usize,
        thresholds: Vec<f64>,
        classes: Vec<ClassInfo>,
        normalized_entropy: f64,
        explained_variance: f64,
        balance_term: f64,
        balance_weight: f64,
        objective: f64,
        chi_square: ChiSquare,
        skewness: f64,
        kurtosis: f64,
        candidates_exact: bool,
        num_candidates: usize,
        constraints: Option<Constraints>,
        #[serde(default)]
        k_scan: Vec<KSummary>,
    }

    impl TryFrom<Raw> for Stratification {
        type Error = Error;

        fn try_from(r: Raw) -> Result<Self, Error> {
            let bad = |reason: String| Error::InvalidSaved { what: "stratification", reason };
            check_thresholds(&r.thresholds).map_err(|e| bad(e.to_string()))?;
            if r.classes.len() != r.thresholds.len() + 1 {
                return Err(bad(format!(
                    "{} classes for {} thresholds (expected {})",
                    r.classes.len(),
                    r.thresholds.len(),
                    r.thresholds.len() + 1
                )));
            }
            let total: usize = r.classes.iter().map(|c| c.count).sum();
            if total != r.n {
                return Err(bad(format!("class counts sum to {total}, but n = {}", r.n)));
            }
            Ok(Stratification {
                method: r.method,
                n: r.n,
                distinct_values: r.distinct_values,
                thresholds: r.thresholds,
                classes: r.classes,
                normalized_entropy: r.normalized_entropy,
                explained_variance: r.explained_variance,
                balance_term: r.balance_term,
                balance_weight: r.balance_weight,
                objective: r.objective,
                chi_square: r.chi_square,
                skewness: r.skewness,
                kurtosis: r.kurtosis,
                candidates_exact: r.candidates_exact,
                num_candidates: r.num_candidates,
                constraints: r.constraints,
                k_scan: r.k_scan,
            })
        }
    }
}

#[cfg(test)]
mod tests;
