//! Evaluation metrics, one implementation shared by training, `fintune eval` and the
//! experiment harness.
//!
//! [`RegressionMetrics`] implements the [`Metric`] seam (`update`, `compute`, `reset`) and
//! yields a [`MetricReport`]: `n, mse, rmse, mae, r2, pearson, spearman, cosine` (SemEval-2017
//! task 5's score), `acc_polarity` (negative/neutral/positive with a neutral band), DAS class
//! accuracy and macro-F1 (from the classification head and from the regression output mapped
//! through the thresholds), and the MSE per gold-score region.

use serde::{Deserialize, Serialize};

/// A streaming metric: feed batches, read the value, start over.
pub trait Metric {
    /// What `compute` returns.
    type Output;
    /// Adds one batch.
    fn update(&mut self, batch: &EvalBatch<'_>);
    /// The value over everything added since the last reset.
    fn compute(&self) -> Self::Output;
    /// Forgets everything added.
    fn reset(&mut self);
}

/// One batch of predictions.
#[derive(Debug, Clone, Copy)]
pub struct EvalBatch<'a> {
    /// Predicted scores.
    pub pred: &'a [f32],
    /// Gold scores.
    pub gold: &'a [f32],
    /// Classes predicted by the classification head, when there is one.
    pub class_pred: Option<&'a [usize]>,
}

/// Settings of the metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// |score| below this is neutral for `acc_polarity`. Default: 0.05.
    pub neutral_band: f32,
    /// Gold |score| below this is the neutral region of `mse_by_region`. Default: 0.2.
    pub neutral_region: f32,
    /// Gold |score| at or above this is the extreme region. Default: 0.6.
    pub extreme_region: f32,
    /// Class thresholds (from DAS) for the class metrics; none: no class metrics.
    pub thresholds: Option<Vec<f32>>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            neutral_band: 0.05,
            neutral_region: 0.2,
            extreme_region: 0.6,
            thresholds: None,
        }
    }
}

/// MSE over the gold scores of one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionError {
    /// `neutral`, `moderate` or `extreme`.
    pub region: String,
    /// Lower bound of |gold| (inclusive).
    pub abs_lo: f32,
    /// Upper bound of |gold| (exclusive; the extreme region has none).
    pub abs_hi: Option<f32>,
    /// Examples in the region.
    pub n: usize,
    /// Their MSE (None when `n` is 0).
    pub mse: Option<f64>,
}

/// Every metric over a set of predictions. Undefined values (a correlation of a constant
/// vector, R² of constant gold scores) are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricReport {
    /// Number of examples.
    pub n: usize,
    /// Mean squared error.
    pub mse: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination.
    pub r2: Option<f64>,
    /// Pearson correlation.
    pub pearson: Option<f64>,
    /// Spearman rank correlation.
    pub spearman: Option<f64>,
    /// Cosine similarity of the score vectors (SemEval-2017 task 5).
    pub cosine: Option<f64>,
    /// Polarity accuracy (negative / neutral / positive, neutral band).
    pub acc_polarity: f64,
    /// Class accuracy of the classification head.
    pub acc_class: Option<f64>,
    /// Macro-F1 of the classification head over the classes present in gold or prediction.
    pub macro_f1_class: Option<f64>,
    /// Class accuracy of the regression output mapped through the thresholds.
    pub acc_class_from_score: Option<f64>,
    /// Macro-F1 of the regression output mapped through the thresholds.
    pub macro_f1_class_from_score: Option<f64>,
    /// MSE per gold-score region.
    pub mse_by_region: Vec<RegionError>,
}

/// The [`Metric`] that produces a [`MetricReport`].
#[derive(Debug, Clone, Default)]
pub struct RegressionMetrics {
    cfg: MetricsConfig,
    pred: Vec<f32>,
    gold: Vec<f32>,
    class_pred: Vec<usize>,
    has_class_pred: bool,
}

impl RegressionMetrics {
    /// Empty metrics with `cfg`.
    pub fn new(cfg: MetricsConfig) -> Self {
        RegressionMetrics { cfg, ..Default::default() }
    }

    /// Metrics of whole vectors at once.
    pub fn of(
        cfg: MetricsConfig,
        pred: &[f32],
        gold: &[f32],
        class_pred: Option<&[usize]>,
    ) -> MetricReport {
        let mut m = RegressionMetrics::new(cfg);
        m.update(&EvalBatch { pred, gold, class_pred });
        m.compute()
    }
}

impl Metric for RegressionMetrics {
    type Output = MetricReport;

    fn update(&mut self, b: &EvalBatch<'_>) {
        assert_eq!(b.pred.len(), b.gold.len(), "pred and gold lengths differ");
        self.pred.extend_from_slice(b.pred);
        self.gold.extend_from_slice(b.gold);
        if let Some(c) = b.class_pred {
            assert_eq!(c.len(), b.pred.len(), "class_pred and pred lengths differ");
            self.class_pred.extend_from_slice(c);
            self.has_class_pred = true;
        }
    }

    fn compute(&self) -> MetricReport {
        let p: Vec<f64> = self.pred.iter().map(|&v| f64::from(v)).collect();
        let y: Vec<f64> = self.gold.iter().map(|&v| f64::from(v)).collect();
        let n = p.len();
        let nf = n.max(1) as f64;
        let mse = p.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / nf;
        let mae = p.iter().zip(&y).map(|(a, b)| (a - b).abs()).sum::<f64>() / nf;
        let ybar = y.iter().sum::<f64>() / nf;
        let sst: f64 = y.iter().map(|v| (v - ybar).powi(2)).sum();
        let r2 = (n > 0 && sst > 0.0).then(|| 1.0 - mse * n as f64 / sst);
        let band = f64::from(self.cfg.neutral_band);
        let pol = |v: f64| {
            if v.abs() < band {
                0
            } else if v > 0.0 {
                1
            } else {
                -1
            }
        };
        let acc_polarity =
            p.iter().zip(&y).filter(|(a, b)| pol(**a) == pol(**b)).count() as f64 / nf;

        let (mut acc_class, mut f1_class, mut acc_score, mut f1_score) = (None, None, None, None);
        if let Some(th) = &self.cfg.thresholds {
            let assign = |v: f32| th.iter().filter(|&&t| v >= t).count();
            let gold_c: Vec<usize> = self.gold.iter().map(|&v| assign(v)).collect();
            let from_score: Vec<usize> = self.pred.iter().map(|&v| assign(v)).collect();
            acc_score = Some(accuracy(&gold_c, &from_score));
            f1_score = Some(macro_f1(&gold_c, &from_score));
            if self.has_class_pred {
                acc_class = Some(accuracy(&gold_c, &self.class_pred));
                f1_class = Some(macro_f1(&gold_c, &self.class_pred));
            }
        }

        let (lo, hi) = (f64::from(self.cfg.neutral_region), f64::from(self.cfg.extreme_region));
        let region = |name: &str, a: f64, b: Option<f64>| {
            let idx: Vec<usize> =
                (0..n).filter(|&i| y[i].abs() >= a && b.is_none_or(|b| y[i].abs() < b)).collect();
            RegionError {
                region: name.into(),
                abs_lo: a as f32,
                abs_hi: b.map(|b| b as f32),
                n: idx.len(),
                mse: (!idx.is_empty()).then(|| {
                    idx.iter().map(|&i| (p[i] - y[i]).powi(2)).sum::<f64>() / idx.len() as f64
                }),
            }
        };
        MetricReport {
            n,
            mse,
            rmse: mse.sqrt(),
            mae,
            r2,
            pearson: pearson(&p, &y),
            spearman: pearson(&ranks(&p), &ranks(&y)),
            cosine: cosine(&p, &y),
            acc_polarity,
            acc_class,
            macro_f1_class: f1_class,
            acc_class_from_score: acc_score,
            macro_f1_class_from_score: f1_score,
            mse_by_region: vec![
                region("neutral", 0.0, Some(lo)),
                region("moderate", lo, Some(hi)),
                region("extreme", hi, None),
            ],
        }
    }

    fn reset(&mut self) {
        self.pred.clear();
        self.gold.clear();
        self.class_pred.clear();
        self.has_class_pred = false;
    }
}

/// Pearson correlation; None for fewer than 2 values or a constant vector.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len();
    if n < 2 {
        return None;
    }
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    (saa > 0.0 && sbb > 0.0).then(|| (sab / (saa * sbb).sqrt()).clamp(-1.0, 1.0))
}

/// Cosine similarity of the two vectors (SemEval-2017 task 5); None if either is zero.
pub fn cosine(a: &[f64], b: &[f64]) -> Option<f64> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    (na > 0.0 && nb > 0.0).then(|| dot / (na * nb))
}

/// 1-based ranks with ties averaged (scipy's `rankdata(method="average")`).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            out[k] = r;
        }
        i = j + 1;
    }
    out
}

fn accuracy(gold: &[usize], pred: &[usize]) -> f64 {
    gold.iter().zip(pred).filter(|(a, b)| a == b).count() as f64 / gold.len().max(1) as f64
}

/// Macro-F1 over the labels present in `gold` or `pred` (scikit-learn's default).
pub fn macro_f1(gold: &[usize], pred: &[usize]) -> f64 {
    let k = gold.iter().chain(pred).copied().max().map_or(0, |m| m + 1);
    let mut tp = vec![0usize; k];
    let mut fp = vec![0usize; k];
    let mut fneg = vec![0usize; k];
    for (&g, &p) in gold.iter().zip(pred) {
        if g == p {
            tp[g] += 1;
        } else {
            fp[p] += 1;
            fneg[g] += 1;
        }
    }
    let present: Vec<usize> = (0..k).filter(|&c| tp[c] + fp[c] + fneg[c] > 0).collect();
    if present.is_empty() {
        return 0.0;
    }
    present
        .iter()
        .map(|&c| {
            let d = 2 * tp[c] + fp[c] + fneg[c];
            if d == 0 {
                0.0
            } else {
                2.0 * tp[c] as f64 / d as f64
            }
        })
        .sum::<f64>()
        / present.len() as f64
}

#[cfg(test)]
mod tests;
