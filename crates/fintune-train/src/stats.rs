//! Paired significance tests across seeds: Student's paired t-test and the exact Wilcoxon
//! signed-rank test (what scipy's `ttest_rel` and `wilcoxon(method="exact")` compute).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

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
    Some(TestResult { statistic: t, p_value: (2.0 * (1.0 - dist.cdf(t.abs()))).min(1.0) })
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
}
