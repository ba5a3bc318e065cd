//! Paired significance tests across seeds or cross-validation cells, checked against scipy
//! (`fixtures/goldens/stats.json`, made by `fixtures/goldens/make_stats_goldens.py`):
//!
//! - [`paired_t`]: Student's paired t-test (`scipy.stats.ttest_rel`);
//! - [`wilcoxon`]: the Wilcoxon signed-rank test with the exact null distribution over the
//!   (average) ranks of the non-zero differences (`scipy.stats.wilcoxon(method="exact")`
//!   without ties and zeros; its permutation distribution with them). The fixed protocol of
//!   `fintune compare` reports this one;
//! - [`wilcoxon_auto`]: what `scipy.stats.wilcoxon` computes with its defaults
//!   (`zero_method="wilcox"`, `correction=False`, `method="auto"`): exact for at most 50 pairs
//!   without ties or zero differences, the exact permutation distribution for at most 13 pairs
//!   with ties or zeros, otherwise the normal approximation with the tie correction of the
//!   variance and no continuity correction. The cross-validation protocol reports this one;
//! - [`bootstrap_rel_change`]: a paired percentile bootstrap interval of the relative change
//!   of the mean, `mean(b) / mean(a) - 1` (`scipy.stats.bootstrap(paired=True,
//!   method="percentile")` on the same resamples).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};
use statrs::function::erf::erfc;

/// A test's statistic and two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// The test statistic.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Paired t-test of `b - a` (two-sided). None for fewer than 2 pairs or zero variance of
/// the differences.
pub fn paired_t(a: &[f64], b: &[f64]) -> Option<TestResult> {
    assert_eq!(a.len(), b.len(), "paired samples differ in length");
    let n = a.len();
    if n < 2 {
        return None;
    }
    let d: Vec<f64> = b.iter().zip(a).map(|(x, y)| x - y).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    if var <= 0.0 {
        return None;
    }
    let t = mean / (var / n as f64).sqrt();
    let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?;
    Some(TestResult { statistic: t, p_value: (2.0 * dist.sf(t.abs())).min(1.0) })
}

/// Wilcoxon signed-rank test of `b - a` (two-sided, exact null distribution; zero
/// differences are dropped as in scipy's default `zero_method="wilcox"`; tied |differences|
/// get average ranks and the exact distribution is computed over those ranks). The statistic
/// is min(W+, W-). None when no non-zero difference remains.
pub fn wilcoxon(a: &[f64], b: &[f64]) -> Option<TestResult> {
    assert_eq!(a.len(), b.len(), "paired samples differ in length");
    let d: Vec<f64> = b.iter().zip(a).map(|(x, y)| x - y).filter(|x| *x != 0.0).collect();
    let n = d.len();
    if n == 0 {
        return None;
    }
    let abs: Vec<f64> = d.iter().map(|x| x.abs()).collect();
    let r = crate::metrics::ranks(&abs);
    // Ranks are multiples of 0.5: work with doubled integer ranks.
    let r2: Vec<usize> = r.iter().map(|x| (x * 2.0).round() as usize).collect();
    let w_plus2: usize = d.iter().zip(&r2).filter(|(x, _)| **x > 0.0).map(|(_, r)| r).sum();
    let total2: usize = r2.iter().sum();
    let w_minus2 = total2 - w_plus2;
    let stat2 = w_plus2.min(w_minus2);
    // counts[s] = number of sign assignments whose doubled positive-rank sum is s.
    let mut counts = vec![0f64; total2 + 1];
    counts[0] = 1.0;
    for &ri in &r2 {
        for s in (ri..=total2).rev() {
            counts[s] += counts[s - ri];
        }
    }
    let all = 2f64.powi(n as i32);
    let tail: f64 = counts[..=stat2].iter().sum::<f64>() / all;
    Some(TestResult { statistic: stat2 as f64 / 2.0, p_value: (2.0 * tail).min(1.0) })
}

/// Wilcoxon signed-rank test of `b - a` (two-sided) with scipy's defaults; see the
/// [module docs](self) for the rule. The statistic is min(W+, W-). None when no non-zero
/// difference remains.
pub fn wilcoxon_auto(a: &[f64], b: &[f64]) -> Option<TestResult> {
    assert_eq!(a.len(), b.len(), "paired samples differ in length");
    let n_all = a.len();
    let d: Vec<f64> = b.iter().zip(a).map(|(x, y)| x - y).filter(|x| *x != 0.0).collect();
    let zeros = n_all - d.len();
    if d.is_empty() {
        return None;
    }
    let abs: Vec<f64> = d.iter().map(|x| x.abs()).collect();
    let mut sorted = abs.clone();
    sorted.sort_by(f64::total_cmp);
    // Sizes of the groups of tied |differences|.
    let mut ties = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let j = sorted[i..].iter().take_while(|x| **x == sorted[i]).count();
        ties.push(j as f64);
        i += j;
    }
    let tied = ties.iter().any(|&t| t > 1.0);
    if n_all <= 13 || (n_all <= 50 && !tied && zeros == 0) {
        // Exact (no ties, no zeros), or scipy's exhaustive permutation test (the same sums).
        return wilcoxon(a, b);
    }
    let r = crate::metrics::ranks(&abs);
    let w_plus: f64 = d.iter().zip(&r).filter(|(x, _)| **x > 0.0).map(|(_, r)| r).sum();
    let w_minus: f64 = d.iter().zip(&r).filter(|(x, _)| **x < 0.0).map(|(_, r)| r).sum();
    let n = d.len() as f64;
    let mean = n * (n + 1.0) * 0.25;
    let tie_correct: f64 = ties.iter().map(|t| t * t * t - t).sum();
    let se = ((n * (n + 1.0) * (2.0 * n + 1.0) - tie_correct / 2.0) / 24.0).sqrt();
    let z = (w_plus - mean) / se;
    // Two-sided normal tail: 2 * sf(|z|) = erfc(|z| / sqrt 2).
    let p = erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0);
    Some(TestResult { statistic: w_plus.min(w_minus), p_value: p })
}

/// A bootstrap confidence interval of a statistic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on the data as they are.
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Confidence level (e.g. 0.95).
    pub level: f64,
    /// Number of resamples.
    pub resamples: usize,
    /// Seed of the resampling.
    pub seed: u64,
}

/// Relative change of the mean, `mean(b) / mean(a) - 1` over the pairs at `idx`.
fn rel_change(a: &[f64], b: &[f64], idx: impl Iterator<Item = usize> + Clone) -> f64 {
    let sa: f64 = idx.clone().map(|i| a[i]).sum();
    let sb: f64 = idx.map(|i| b[i]).sum();
    sb / sa - 1.0
}

/// The `q`-th quantile (`0 <= q <= 1`) of ascending `sorted`, interpolated linearly between
/// order statistics (numpy's default `percentile` method).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let t = h - lo as f64;
    let (x, y) = (sorted[lo], sorted[hi]);
    // numpy's `_lerp`: symmetric in the ends for accuracy.
    if t >= 0.5 {
        y - (y - x) * (1.0 - t)
    } else {
        x + (y - x) * t
    }
}

/// The percentile interval at `level` of `mean(b) / mean(a) - 1` over the given resamples of
/// pair indices (each inner slice one resample of `a.len()` indices). None for no pairs, no
/// resamples, or a non-finite resampled statistic (a zero mean of `a`).
pub fn rel_change_interval_from(
    a: &[f64],
    b: &[f64],
    resamples: &[Vec<usize>],
    level: f64,
) -> Option<(f64, f64)> {
    assert_eq!(a.len(), b.len(), "paired samples differ in length");
    if a.is_empty() || resamples.is_empty() {
        return None;
    }
    let mut stats: Vec<f64> =
        resamples.iter().map(|idx| rel_change(a, b, idx.iter().copied())).collect();
    if stats.iter().any(|x| !x.is_finite()) {
        return None;
    }
    stats.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    Some((quantile_sorted(&stats, alpha), quantile_sorted(&stats, 1.0 - alpha)))
}

/// Paired percentile bootstrap interval at `level` of the relative change of the mean,
/// `mean(b) / mean(a) - 1`: `resamples` resamples of the pairs with replacement (ChaCha8,
/// `seed`). None as [`rel_change_interval_from`].
pub fn bootstrap_rel_change(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<Interval> {
    assert_eq!(a.len(), b.len(), "paired samples differ in length");
    let n = a.len();
    if n == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let idx: Vec<Vec<usize>> =
        (0..resamples).map(|_| (0..n).map(|_| rng.random_range(0..n)).collect()).collect();
    let (low, high) = rel_change_interval_from(a, b, &idx, level)?;
    let estimate = rel_change(a, b, 0..n);
    estimate.is_finite().then_some(Interval { estimate, low, high, level, resamples, seed })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn golden() -> serde_json::Value {
        let p =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/goldens/metrics.json");
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(p).unwrap()).unwrap()
            ["paired"]
            .clone()
    }

    fn v(x: &serde_json::Value) -> Vec<f64> {
        x.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    }

    #[test]
    fn match_scipy() {
        let g = golden();
        let (a, b) = (v(&g["a"]), v(&g["b"]));
        let t = paired_t(&a, &b).unwrap();
        assert!((t.statistic - g["t_statistic"].as_f64().unwrap()).abs() < 1e-9);
        assert!((t.p_value - g["t_pvalue"].as_f64().unwrap()).abs() < 1e-9);
        let w = wilcoxon(&a, &b).unwrap();
        assert_eq!(w.statistic, g["wilcoxon_statistic"].as_f64().unwrap());
        assert!((w.p_value - g["wilcoxon_pvalue"].as_f64().unwrap()).abs() < 1e-12);
    }

    #[test]
    fn five_seeds_all_better_give_the_smallest_exact_p() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [1.5, 2.1, 3.7, 4.2, 5.9];
        let w = wilcoxon(&a, &b).unwrap();
        assert_eq!(w.statistic, 0.0);
        assert!((w.p_value - 2.0 / 32.0).abs() < 1e-12);
        assert!(paired_t(&a, &a).is_none());
        assert!(wilcoxon(&a, &a).is_none());
    }

    fn stats_golden() -> serde_json::Value {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/goldens/stats.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn close(x: f64, want: f64, rel: f64, what: &str) {
        assert!(
            (x - want).abs() <= rel * want.abs(),
            "{what}: {x} vs scipy {want} (relative error {:e})",
            ((x - want) / want).abs()
        );
    }

    #[test]
    fn t_test_and_wilcoxon_defaults_match_scipy_to_1e_10() {
        let g = stats_golden();
        let cases = g["paired"].as_array().unwrap();
        assert_eq!(cases.len(), 6);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let (a, b) = (v(&c["a"]), v(&c["b"]));
            let t = paired_t(&a, &b).unwrap();
            close(t.statistic, c["t_statistic"].as_f64().unwrap(), 1e-10, name);
            close(t.p_value, c["t_pvalue"].as_f64().unwrap(), 1e-10, name);
            let w = wilcoxon_auto(&a, &b).unwrap();
            assert_eq!(w.statistic, c["wilcoxon_statistic"].as_f64().unwrap(), "{name}");
            close(w.p_value, c["wilcoxon_pvalue"].as_f64().unwrap(), 1e-10, name);
        }
    }

    #[test]
    fn bootstrap_matches_numpy_on_given_resamples_and_scipy_in_distribution() {
        let g = stats_golden()["bootstrap"].clone();
        let (a, b) = (v(&g["a"]), v(&g["b"]));
        let idx: Vec<Vec<usize>> = g["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect())
            .collect();
        let (low, high) = rel_change_interval_from(&a, &b, &idx, 0.95).unwrap();
        close(low, g["low"].as_f64().unwrap(), 1e-12, "low");
        close(high, g["high"].as_f64().unwrap(), 1e-12, "high");
        // Our own resamples against scipy.stats.bootstrap's (both 10,000): Monte Carlo
        // agreement within a tenth of the interval's width.
        let ci = bootstrap_rel_change(&a, &b, 10_000, 0.95, 1).unwrap();
        close(ci.estimate, g["estimate"].as_f64().unwrap(), 1e-12, "estimate");
        let (sl, sh) = (g["scipy_low"].as_f64().unwrap(), g["scipy_high"].as_f64().unwrap());
        let tol = 0.1 * (sh - sl);
        assert!(
            (ci.low - sl).abs() < tol && (ci.high - sh).abs() < tol,
            "{ci:?} vs scipy ({sl}, {sh})"
        );
        assert!(ci.low < ci.estimate && ci.estimate < ci.high);
        assert_eq!(bootstrap_rel_change(&a, &b, 10_000, 0.95, 1), Some(ci), "seeded");
        assert!(bootstrap_rel_change(&[0.0, 0.0], &[1.0, 2.0], 100, 0.95, 1).is_none());
    }
}
