//! The results of the matrix: typed per-metric summaries over seeds, the static grid point
//! chosen on validation, paired tests, `results.md` and the plot per data set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{CompareConfig, Failure, MethodSpec, Provenance, RunResult};
use crate::metrics::MetricReport;
use crate::stats::{paired_t, wilcoxon, TestResult};

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

fn mean_std(v: &[f64]) -> MeanStd {
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
    /// Paired tests across seeds on test MSE: vs single, vs mtl-equal, vs mtl-das.
    pub tests: BTreeMap<String, PairedTests>,
}

/// Both paired tests of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedTests {
    /// The metric compared.
    pub metric: Reported,
    /// Number of paired seeds.
    pub n: usize,
    /// Paired t-test.
    pub t: Option<TestResult>,
    /// Exact Wilcoxon signed-rank test.
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
    /// Seed of the fixed splits.
    pub split_seed: u64,
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

fn paired(a: &[&RunResult], b: &[&RunResult], key: Reported) -> PairedTests {
    let mut xa = Vec::new();
    let mut xb = Vec::new();
    for r in b {
        if let Some(o) = a.iter().find(|o| o.seed == r.seed) {
            if let (Some(x), Some(y)) = (key.of(&o.test), key.of(&r.test)) {
                xa.push(x);
                xb.push(y);
            }
        }
    }
    PairedTests { metric: key, n: xa.len(), t: paired_t(&xa, &xb), wilcoxon: wilcoxon(&xa, &xb) }
}

pub(super) fn summarise(
    runs: &[RunResult],
    ds: &str,
    methods: &[MethodSpec],
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
        for other in ["single", "mtl-equal", "mtl-das"] {
            if other != m.id {
                let o = find(other);
                if !o.is_empty() {
                    tests.insert(format!("vs {other}"), paired(&o, &rs, Reported::Mse));
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
        &format!("{ds}: test MSE (mean ± std over seeds)"),
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
