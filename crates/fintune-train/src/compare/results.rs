//! The results of the matrix: typed per-metric summaries over seeds (and cross-validation
//! cells), the static grid point chosen on validation, paired tests, bootstrap intervals,
//! `results.md` and the plot per data set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{CompareConfig, Failure, MethodSpec, Protocol, Provenance, RunResult};
use crate::metrics::MetricReport;
use crate::stats::{bootstrap_rel_change, paired_t, wilcoxon, wilcoxon_auto, Interval, TestResult};

/// Resamples of the bootstrap intervals of the `cv` protocol.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
/// Seed of the bootstrap intervals of the `cv` protocol.
pub const BOOTSTRAP_SEED: u64 = 20_171_005;
/// The methods every method is compared with, when they were run.
const BASELINES: [&str; 5] = ["single", "mtl-equal", "mtl-das", "single-pooled", "seq-fpb"];

/// Mean and standard deviation (sample) over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

pub(super) fn mean_std(v: &[f64]) -> MeanStd {
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n.max(1) as f64;
    let std = if n > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    MeanStd { mean, std, n }
}

/// Aggregates of one method on one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    /// The method id.
    pub method: String,
    /// What it is.
    pub label: String,
    /// The regression weight of the static grid point used (mtl-static).
    pub chosen: Option<f64>,
    /// The seeds of its runs.
    pub seeds: Vec<u64>,
    /// Mean and standard deviation of each reported test metric.
    pub metrics: BTreeMap<Reported, MeanStd>,
    /// Relative change of the mean vs single-task, per metric (fraction).
    pub rel_vs_single: BTreeMap<Reported, f64>,
    /// Paired tests across seeds (cells) on test MSE: `vs single`, `vs mtl-equal`,
    /// `vs mtl-das`, `vs single-pooled` (those that were run).
    pub tests: BTreeMap<String, PairedTests>,
    /// `cv` protocol: paired bootstrap 95% interval of the relative test-MSE change
    /// `mean(method) / mean(baseline) - 1` over the cells, `vs single` and `vs single-pooled`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub intervals: BTreeMap<String, Interval>,
}

/// The cross-validation settings of `results.json` (`cv` protocol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvInfo {
    /// Folds per repeat.
    pub folds: usize,
    /// Repeats.
    pub repeats: usize,
    /// Share of each cell's training part held out for validation.
    pub inner_val_fraction: f64,
    /// Bootstrap resamples of the intervals.
    pub bootstrap_resamples: usize,
    /// Bootstrap seed.
    pub bootstrap_seed: u64,
}

/// Both paired tests of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedTests {
    /// The metric compared.
    pub metric: Reported,
    /// Number of pairs (seeds; cells x seeds with the `cv` protocol).
    pub n: usize,
    /// Paired t-test.
    pub t: Option<TestResult>,
    /// Wilcoxon signed-rank test: exact ([`wilcoxon`]) with the fixed protocol, scipy's
    /// defaults ([`wilcoxon_auto`]) with `cv`.
    pub wilcoxon: Option<TestResult>,
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Every finished run.
    pub runs: Vec<RunResult>,
    /// Every failed run.
    pub failures: Vec<Failure>,
    /// Per data set, per method.
    pub summaries: BTreeMap<String, Vec<MethodSummary>>,
    /// Seed of the fixed splits (and of the cross-validation folds).
    pub split_seed: u64,
    /// The cross-validation settings (none with the fixed protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<CvInfo>,
    /// The backbone folder.
    pub backbone: String,
    /// The tuning mode.
    pub tuning: String,
    /// Epochs at most.
    pub epochs: usize,
    /// Where and how the results were made.
    pub provenance: Provenance,
}

/// A metric of the result tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reported {
    /// Test MSE.
    Mse,
    /// Test MSE of the extreme region.
    MseExtreme,
    /// R².
    R2,
    /// Pearson correlation.
    Pearson,
    /// Cosine similarity (SemEval-2017 task 5).
    Cosine,
    /// Polarity accuracy.
    AccPolarity,
    /// Mean absolute error.
    Mae,
}

impl Reported {
    /// Every reported metric, in table order.
    pub const ALL: [Reported; 7] = [
        Reported::Mse,
        Reported::MseExtreme,
        Reported::R2,
        Reported::Pearson,
        Reported::Cosine,
        Reported::AccPolarity,
        Reported::Mae,
    ];

    /// Its name in `results.json` (`mse`, `mse_extreme`, `r2`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Reported::Mse => "mse",
            Reported::MseExtreme => "mse_extreme",
            Reported::R2 => "r2",
            Reported::Pearson => "pearson",
            Reported::Cosine => "cosine",
            Reported::AccPolarity => "acc_polarity",
            Reported::Mae => "mae",
        }
    }

    /// Whether lower values are better.
    pub fn lower_is_better(self) -> bool {
        matches!(self, Reported::Mse | Reported::MseExtreme | Reported::Mae)
    }

    /// The metric's value in `r`.
    pub fn of(self, r: &MetricReport) -> Option<f64> {
        match self {
            Reported::Mse => Some(r.mse),
            Reported::Mae => Some(r.mae),
            Reported::R2 => r.r2,
            Reported::Pearson => r.pearson,
            Reported::Cosine => r.cosine,
            Reported::AccPolarity => Some(r.acc_polarity),
            Reported::MseExtreme => {
                r.mse_by_region.iter().find(|e| e.region == "extreme").and_then(|e| e.mse)
            }
        }
    }
}

/// The folder name of a static grid point (its regression weight, in full: `w0.3`, `w0.33`).
pub fn grid_dir(w: f64) -> String {
    format!("w{w}")
}

/// The runs of one method on one data set, by seed (for static, the chosen grid point).
fn method_runs<'a>(
    runs: &'a [RunResult],
    ds: &str,
    m: &MethodSpec,
) -> (Vec<&'a RunResult>, Option<f64>) {
    let of = |v: Option<f64>| -> Vec<&RunResult> {
        runs.iter().filter(|r| r.dataset == ds && r.method == m.id && r.variant == v).collect()
    };
    if m.static_grid.is_empty() {
        return (of(None), None);
    }
    // Choose the grid point by mean validation MSE over seeds (never by test).
    let mut best: Option<(f64, f64)> = None;
    for &v in &m.static_grid {
        let rs = of(Some(v));
        if rs.is_empty() {
            continue;
        }
        let mean = rs.iter().map(|r| r.val_mse).sum::<f64>() / rs.len() as f64;
        if best.as_ref().is_none_or(|b| mean < b.0) {
            best = Some((mean, v));
        }
    }
    match best {
        Some((_, v)) => (of(Some(v)), Some(v)),
        None => (vec![], None),
    }
}

/// The paired values of `key` of runs `a` and `b` matched by cell and seed.
fn pairs(a: &[&RunResult], b: &[&RunResult], key: Reported) -> (Vec<f64>, Vec<f64>) {
    let mut xa = Vec::new();
    let mut xb = Vec::new();
    for r in b {
        if let Some(o) = a.iter().find(|o| o.seed == r.seed && o.cell == r.cell) {
            if let (Some(x), Some(y)) = (key.of(&o.test), key.of(&r.test)) {
                xa.push(x);
                xb.push(y);
            }
        }
    }
    (xa, xb)
}

fn paired(a: &[&RunResult], b: &[&RunResult], key: Reported, protocol: Protocol) -> PairedTests {
    let (xa, xb) = pairs(a, b, key);
    let w = match protocol {
        Protocol::Fixed => wilcoxon(&xa, &xb),
        Protocol::Cv(_) => wilcoxon_auto(&xa, &xb),
    };
    PairedTests { metric: key, n: xa.len(), t: paired_t(&xa, &xb), wilcoxon: w }
}

pub(super) fn summarise(
    runs: &[RunResult],
    ds: &str,
    methods: &[MethodSpec],
    protocol: Protocol,
) -> Vec<MethodSummary> {
    let find = |id: &str| {
        methods.iter().find(|m| m.id == id).map(|m| method_runs(runs, ds, m).0).unwrap_or_default()
    };
    let single = find("single");
    let single_means: BTreeMap<Reported, f64> = Reported::ALL
        .iter()
        .filter_map(|&k| {
            let v: Vec<f64> = single.iter().filter_map(|r| k.of(&r.test)).collect();
            (!v.is_empty()).then(|| (k, mean_std(&v).mean))
        })
        .collect();
    let mut out = Vec::new();
    for m in methods {
        let (rs, chosen) = method_runs(runs, ds, m);
        if rs.is_empty() {
            continue;
        }
        let mut metrics = BTreeMap::new();
        let mut rel = BTreeMap::new();
        for k in Reported::ALL {
            let v: Vec<f64> = rs.iter().filter_map(|r| k.of(&r.test)).collect();
            if v.is_empty() {
                continue;
            }
            let ms = mean_std(&v);
            if let Some(&base) = single_means.get(&k) {
                if base != 0.0 {
                    rel.insert(k, (ms.mean - base) / base.abs());
                }
            }
            metrics.insert(k, ms);
        }
        let mut tests = BTreeMap::new();
        let mut intervals = BTreeMap::new();
        for other in BASELINES {
            if other != m.id {
                let o = find(other);
                if !o.is_empty() {
                    tests.insert(format!("vs {other}"), paired(&o, &rs, Reported::Mse, protocol));
                    if matches!(protocol, Protocol::Cv(_))
                        && (other.starts_with("single") || other == "seq-fpb")
                    {
                        let (xa, xb) = pairs(&o, &rs, Reported::Mse);
                        if let Some(ci) = bootstrap_rel_change(
                            &xa,
                            &xb,
                            BOOTSTRAP_RESAMPLES,
                            0.95,
                            BOOTSTRAP_SEED,
                        ) {
                            intervals.insert(format!("vs {other}"), ci);
                        }
                    }
                }
            }
        }
        out.push(MethodSummary {
            method: m.id.clone(),
            label: m.label.clone(),
            chosen,
            seeds: rs.iter().map(|r| r.seed).collect(),
            metrics,
            rel_vs_single: rel,
            tests,
            intervals,
        });
    }
    out
}

fn pm(m: Option<&MeanStd>, digits: usize) -> String {
    m.map_or("n/a".into(), |m| format!("{:.*} ± {:.*}", digits, m.mean, digits, m.std))
}

fn p(t: Option<&TestResult>) -> String {
    t.map_or("n/a".into(), |t| format!("{:.3}", t.p_value))
}

/// `results.md`.
pub fn markdown(r: &Results, c: &CompareConfig) -> String {
    if let Some(cv) = &r.cv {
        return markdown_cv(r, c, cv);
    }
    let mut s = String::new();
    let _ = writeln!(s, "# fintune experiment results\n");
    let _ = writeln!(
        s,
        "Backbone `{}` (tuning {}), {} epochs at most (early stopping on validation MSE), seeds {:?}. \
         Each data set is split once, group-aware and stratified, 80/10/10 (seed {}); the best epoch and \
         the static-weight grid point are chosen on validation only; the numbers below are **test** \
         metrics, mean ± standard deviation over seeds.\n",
        r.backbone, r.tuning, r.epochs, c.seeds, r.split_seed
    );
    let prov = &r.provenance;
    if !prov.command.is_empty() {
        let _ = writeln!(s, "Command: `{}`  ", prov.command);
    }
    let compute_min: f64 = r.runs.iter().map(|x| x.train_s).sum::<f64>() / 60.0;
    let _ = writeln!(
        s,
        "Written {} on {}; {} runs ({} failed), {compute_min:.1} min of training in all.\n",
        prov.date,
        prov.machine,
        r.runs.len(),
        r.failures.len()
    );
    for (ds, sums) in &r.summaries {
        let _ = writeln!(s, "## {ds}\n");
        let _ = writeln!(s, "| method | mse | Δ mse vs single | extreme-region mse | Δ | r2 | pearson | cosine | acc_polarity | Δ acc | p (t / Wilcoxon) vs single | vs mtl-equal | vs mtl-das |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for m in sums {
            let g = |k: Reported| m.metrics.get(&k);
            let rel = |k: Reported| {
                m.rel_vs_single.get(&k).map_or("".into(), |x| format!("{:+.1}%", 100.0 * x))
            };
            let tests = |k: &str| {
                m.tests.get(k).map_or("".into(), |t| {
                    format!("{} / {}", p(t.t.as_ref()), p(t.wilcoxon.as_ref()))
                })
            };
            let name = match &m.chosen {
                Some(v) => format!("{} ({})", m.method, grid_dir(*v)),
                None => m.method.clone(),
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                pm(g(Reported::Mse), 4),
                rel(Reported::Mse),
                pm(g(Reported::MseExtreme), 4),
                rel(Reported::MseExtreme),
                pm(g(Reported::R2), 3),
                pm(g(Reported::Pearson), 3),
                pm(g(Reported::Cosine), 3),
                pm(g(Reported::AccPolarity), 3),
                rel(Reported::AccPolarity),
                tests("vs single"),
                tests("vs mtl-equal"),
                tests("vs mtl-das"),
            );
        }
        let _ = writeln!(s, "\n![{ds}](plots/{ds}.png)\n");
    }
    let _ = writeln!(s, "Methods:\n");
    for m in &c.methods {
        let _ = writeln!(s, "- `{}`: {}", m.id, m.label);
    }
    let _ = writeln!(
        s,
        "\np-values: paired t-test and exact Wilcoxon signed-rank test across seeds on test MSE \
         (two-sided). With 5 seeds the smallest possible exact Wilcoxon p-value is 0.0625."
    );
    if !r.failures.is_empty() {
        let _ = writeln!(s, "\n## Failed runs\n");
        for f in &r.failures {
            let _ = writeln!(s, "- {} {} seed {}: {}", f.dataset, f.method, f.seed, f.error);
        }
    }
    s
}

fn interval(i: Option<&Interval>) -> String {
    i.map_or("".into(), |i| {
        format!("{:+.1}% [{:+.1}, {:+.1}]", 100.0 * i.estimate, 100.0 * i.low, 100.0 * i.high)
    })
}

/// `results.md` of the `cv` protocol.
fn markdown_cv(r: &Results, c: &CompareConfig, cv: &CvInfo) -> String {
    let mut s = String::new();
    let cells = cv.folds * cv.repeats;
    let _ = writeln!(s, "# fintune experiment results (cross-validation)\n");
    let _ = writeln!(
        s,
        "Backbone `{}` (tuning {}), {} epochs at most (early stopping on validation MSE). \
         Protocol: repeated, group-aware, stratified k-fold cross-validation, {} folds x {} repeats \
         = {cells} cells per data set (seed {}; texts with the same normalised text stay together; \
         strata are score quintiles). Each cell tests on its fold and trains on the other folds \
         minus a validation hold-out of {:.3} of them (best epoch, static grid point); every method \
         sees the same cells with the same seed per cell ({} seed(s) per cell). The numbers below \
         are **test** metrics, mean ± standard deviation over cells.\n",
        r.backbone,
        r.tuning,
        r.epochs,
        cv.folds,
        cv.repeats,
        r.split_seed,
        cv.inner_val_fraction,
        c.seeds.len()
    );
    let prov = &r.provenance;
    if !prov.command.is_empty() {
        let _ = writeln!(s, "Command: `{}`  ", prov.command);
    }
    let compute_min: f64 = r.runs.iter().map(|x| x.train_s).sum::<f64>() / 60.0;
    let _ = writeln!(
        s,
        "Written {} on {}; {} runs ({} failed), {compute_min:.1} min of training in all.\n",
        prov.date,
        prov.machine,
        r.runs.len(),
        r.failures.len()
    );
    for (ds, sums) in &r.summaries {
        let _ = writeln!(s, "## {ds}\n");
        let _ = writeln!(s, "| method | n | mse | Δ mse vs single [95% CI] | p (t / Wilcoxon) vs single | Δ mse vs single-pooled [95% CI] | p vs single-pooled | extreme-region mse | r2 | pearson | cosine | acc_polarity |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for m in sums {
            let g = |k: Reported| m.metrics.get(&k);
            let tests = |k: &str| {
                m.tests.get(k).map_or("".into(), |t| {
                    format!("{} / {}", p(t.t.as_ref()), p(t.wilcoxon.as_ref()))
                })
            };
            let name = match &m.chosen {
                Some(v) => format!("{} ({})", m.method, grid_dir(*v)),
                None => m.method.clone(),
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                g(Reported::Mse).map_or(0, |x| x.n),
                pm(g(Reported::Mse), 4),
                interval(m.intervals.get("vs single")),
                tests("vs single"),
                interval(m.intervals.get("vs single-pooled")),
                tests("vs single-pooled"),
                pm(g(Reported::MseExtreme), 4),
                pm(g(Reported::R2), 3),
                pm(g(Reported::Pearson), 3),
                pm(g(Reported::Cosine), 3),
                pm(g(Reported::AccPolarity), 3),
            );
        }
        let against_seq: Vec<&MethodSummary> =
            sums.iter().filter(|m| m.tests.contains_key("vs seq-fpb")).collect();
        if !against_seq.is_empty() {
            let _ = writeln!(
                s,
                "\nAgainst the sequential control `seq-fpb` (PhraseBank first, then the data set):\n"
            );
            let _ = writeln!(s, "| method | Δ mse vs seq-fpb [95% CI] | p (t / Wilcoxon) |");
            let _ = writeln!(s, "|---|---|---|");
            for m in against_seq {
                let t = &m.tests["vs seq-fpb"];
                let _ = writeln!(
                    s,
                    "| {} | {} | {} / {} |",
                    m.method,
                    interval(m.intervals.get("vs seq-fpb")),
                    p(t.t.as_ref()),
                    p(t.wilcoxon.as_ref())
                );
            }
        }
        for m in c.methods.iter().filter(|m| m.pooled) {
            let pools: Vec<_> = r
                .runs
                .iter()
                .filter(|x| x.dataset == *ds && x.method == m.id)
                .filter_map(|x| x.pool.as_ref())
                .collect();
            if let Some(first) = pools.first() {
                let n = pools.len() as f64;
                let kept = pools.iter().map(|p| p.kept as f64).sum::<f64>() / n;
                let dropped = pools.iter().map(|p| p.dropped as f64).sum::<f64>() / n;
                let sets: Vec<&str> = first.sets.iter().map(|x| x.name.as_str()).collect();
                let _ = writeln!(
                    s,
                    "\n`{}` trains on {} ({ds}: the cell's training part; the others: their whole \
                     training files): {kept:.0} rows per run on average, {dropped:.0} dropped as equal \
                     (normalised text) to a validation or test text of the cell.",
                    m.id,
                    sets.join(" + ")
                );
            }
        }
        let _ = writeln!(s, "\n![{ds}](plots/{ds}.png)\n");
    }
    let _ = writeln!(s, "Methods:\n");
    for m in &c.methods {
        let _ = writeln!(s, "- `{}`: {}", m.id, m.label);
    }
    let min_p = 2.0 / 2f64.powi(cells as i32);
    let _ = writeln!(
        s,
        "\nn: paired cells x seeds. p-values: paired t-test and Wilcoxon signed-rank test on test MSE \
         over the cells (two-sided; Wilcoxon as scipy.stats.wilcoxon's defaults: exact for at most \
         50 pairs without ties or zero differences, the exact permutation distribution for at most \
         13 pairs with them, otherwise the normal approximation with tie correction and no \
         continuity correction; with {cells} cells the smallest exact p-value is {min_p:.4}). Intervals: paired percentile bootstrap over the cells ({} resamples, seed {}) \
         of mean(method MSE) / mean(baseline MSE) - 1.",
        cv.bootstrap_resamples, cv.bootstrap_seed
    );
    if !r.failures.is_empty() {
        let _ = writeln!(s, "\n## Failed runs\n");
        for f in &r.failures {
            let _ = writeln!(
                s,
                "- {} {} {} seed {}: {}",
                f.dataset,
                f.method,
                f.cell.as_deref().unwrap_or(""),
                f.seed,
                f.error
            );
        }
    }
    s
}

pub(super) fn plot(r: &Results, ds: &str, path: &Path) -> std::result::Result<(), String> {
    let sums = r.summaries.get(ds).ok_or("no results")?;
    let labels: Vec<String> = sums.iter().map(|m| m.method.clone()).collect();
    let series: Vec<(f64, f64)> = sums
        .iter()
        .map(|m| m.metrics.get(&Reported::Mse).map_or((f64::NAN, 0.0), |x| (x.mean, x.std)))
        .collect();
    let extreme: Vec<(f64, f64)> = sums
        .iter()
        .map(|m| m.metrics.get(&Reported::MseExtreme).map_or((f64::NAN, 0.0), |x| (x.mean, x.std)))
        .collect();
    crate::plots::error_bars(
        path,
        &format!(
            "{ds}: test MSE (mean ± std over {})",
            if r.cv.is_some() { "cells" } else { "seeds" }
        ),
        &labels,
        &[("all", series), ("extreme", extreme)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::all_methods;
    use crate::metrics::{MetricsConfig, RegressionMetrics};

    #[test]
    fn static_grid_points_0_3_and_0_33_do_not_collide() {
        assert_ne!(grid_dir(0.3), grid_dir(0.33));
        assert_eq!(grid_dir(0.3), "w0.3", "the default grid keeps its folder names");
        let test = RegressionMetrics::of(MetricsConfig::default(), &[0.1, 0.2], &[0.1, 0.3], None);
        let run = |w: f64, val_mse: f64, seed: u64| RunResult {
            dataset: "fiqa".into(),
            method: "mtl-static".into(),
            variant: Some(w),
            seed,
            cell: None,
            pool: None,
            val_mse,
            test: test.clone(),
            best_epoch: 1,
            train_s: 1.0,
        };
        let runs = vec![run(0.3, 0.5, 1), run(0.33, 0.1, 1), run(0.3, 0.5, 2), run(0.33, 0.2, 2)];
        let method = all_methods(&[0.3, 0.33]).into_iter().find(|m| m.id == "mtl-static").unwrap();
        let (chosen_runs, chosen) = method_runs(&runs, "fiqa", &method);
        assert_eq!(chosen, Some(0.33));
        assert_eq!(chosen_runs.len(), 2);
        assert!(chosen_runs.iter().all(|r| r.variant == Some(0.33)));
    }
}
