//! The experiment matrix: datasets x methods x seeds, each a normal training run, then
//! `results.json`, `results.md` and a plot per dataset.
//!
//! Every dataset gets a fixed, group-aware, stratified 80/10/10 split of its shared training
//! file (seed [`SPLIT_SEED`], quintile strata, rows with the same normalised text kept
//! together), written to `OUT/splits/<dataset>/`. Runs select their best epoch on the
//! validation part; the test part is evaluated once per run, at the end. A re-run skips
//! finished runs, resumes interrupted ones, and records failures without stopping.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fintune_data::{read_dataset, write_dataset, ReadOptions, WriteOptions};
use fintune_dwa::WeightingSpec;
use serde::{Deserialize, Serialize};

use crate::config::{Imbalance, Strata, TrainConfig};
use crate::metrics::MetricReport;
use crate::run;
use crate::stats::{paired_t, wilcoxon, TestResult};
use crate::trainer::{self, Outcome, RunMetrics, RunOptions};
use crate::{Error, Result};

/// Seed of the fixed train/validation/test splits.
pub const SPLIT_SEED: u64 = 20_171_005;

/// A data set of the matrix: a name and its file below the data root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    pub name: String,
    pub file: PathBuf,
}

/// The shared data sets with continuous scores.
pub fn known_datasets() -> Vec<DatasetSpec> {
    [
        ("fiqa", "fiqa2018_task1/train.jsonl"),
        ("semeval-headlines", "semeval2017_task5/headlines_train.jsonl"),
        ("semeval-microblogs", "semeval2017_task5/microblogs_train.jsonl"),
    ]
    .into_iter()
    .map(|(n, f)| DatasetSpec { name: n.into(), file: f.into() })
    .collect()
}

/// One method of the matrix: how it changes the base configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSpec {
    /// Short id used in folder names and tables.
    pub id: String,
    /// What it is, for the tables.
    pub label: String,
    pub strata: Strata,
    pub weighting: WeightingSpec,
    pub imbalance: Imbalance,
    /// A grid of regression weights for a static weighting chosen on validation (the run
    /// used for test is the grid point with the best mean validation MSE over seeds).
    pub static_grid: Vec<f64>,
}

fn m(
    id: &str,
    label: &str,
    strata: Strata,
    weighting: WeightingSpec,
    imbalance: Imbalance,
) -> MethodSpec {
    MethodSpec {
        id: id.into(),
        label: label.into(),
        strata,
        weighting,
        imbalance,
        static_grid: vec![],
    }
}

/// Every method, in table order. `single` is the baseline the relative changes refer to.
pub fn all_methods(grid: &[f64]) -> Vec<MethodSpec> {
    use Imbalance as I;
    use Strata as S;
    use WeightingSpec as W;
    let mut v = vec![
        m("single", "single-task regression", S::None, W::Equal, I::None),
        m("mtl-equal", "MTL, equal-width classes, equal weights", S::Uniform, W::Equal, I::None),
        MethodSpec {
            static_grid: grid.to_vec(),
            ..m(
                "mtl-static",
                "MTL + DAS, best static weight (validation grid)",
                S::Das,
                W::Equal,
                I::None,
            )
        },
        m("mtl-quantile", "MTL, quantile classes, equal weights", S::Quantile, W::Equal, I::None),
        m("mtl-das", "MTL, DAS classes, equal weights", S::Das, W::Equal, I::None),
        m("mtl-das-dwa", "MTL + DAS + DWA (ours)", S::Das, W::Dwa, I::None),
    ];
    for (id, w) in [
        ("uncertainty", W::Uncertainty),
        ("gradnorm", W::GradNorm),
        ("dwa-liu", W::DwaLiu),
        ("dao", W::Dao),
        ("famo", W::Famo),
        ("pcgrad", W::PcGrad),
    ] {
        v.push(m(&format!("mtl-das-{id}"), &format!("MTL + DAS + {id}"), S::Das, w, I::None));
    }
    v.push(m("single-lds", "single-task + LDS", S::None, W::Equal, I::Lds));
    v.push(m("single-bmse", "single-task + Balanced MSE", S::None, W::Equal, I::Bmse));
    v.push(m("mtl-das-dwa-lds", "MTL + DAS + DWA + LDS", S::Das, W::Dwa, I::Lds));
    v
}

/// The matrix to run.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Output folder.
    pub out: PathBuf,
    /// Folder holding the shared data sets.
    pub data_root: PathBuf,
    pub datasets: Vec<DatasetSpec>,
    pub methods: Vec<MethodSpec>,
    pub seeds: Vec<u64>,
    /// Configuration shared by every run (backbone, tuning, epochs...); data, strata,
    /// weighting, imbalance and seed are set per run.
    pub base: TrainConfig,
    /// Run only the runs whose index is `k` modulo `n` (`(k, n)`), so that several processes
    /// can share the matrix; a final run without a shard collects every result.
    pub shard: Option<(usize, usize)>,
    /// The command line that made the results, written into `results.md` (may be empty).
    pub command: String,
    /// Keep each finished run's `model/` folder. Default: false (a MiniLM model is 87 MB, the
    /// full matrix 285 runs). A finished run's `checkpoint/` (only needed to resume) is always
    /// removed.
    pub keep_models: bool,
}

/// Where and how results were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The command line.
    pub command: String,
    /// Local date and time the results were written.
    pub date: String,
    /// CPU model, core count, memory, libtorch threads and CUDA devices.
    pub machine: String,
}

/// A one-line description of this machine, from `/proc` where it exists.
pub fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(String::from("?"), |kib| format!("{:.0}", kib / 1024.0 / 1024.0));
    format!(
        "{model}, {cores} cores, {mem_gib} GiB, libtorch threads {}, CUDA devices {}",
        tch::get_num_threads(),
        tch::Cuda::device_count()
    )
}

/// Test metrics of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub dataset: String,
    pub method: String,
    /// Grid point for static weighting.
    pub variant: Option<String>,
    pub seed: u64,
    pub val_mse: f64,
    pub test: MetricReport,
    pub best_epoch: usize,
    pub train_s: f64,
}

/// A run that failed (recorded, not fatal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub dataset: String,
    pub method: String,
    pub variant: Option<String>,
    pub seed: u64,
    pub error: String,
}

/// Mean and standard deviation (sample) over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
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
    pub method: String,
    pub label: String,
    /// The static grid point used (mtl-static).
    pub chosen: Option<String>,
    pub seeds: Vec<u64>,
    pub metrics: BTreeMap<String, MeanStd>,
    /// Relative change of the mean vs single-task, per metric (fraction).
    pub rel_vs_single: BTreeMap<String, f64>,
    /// Paired tests across seeds on test MSE: vs single, vs mtl-equal, vs mtl-das.
    pub tests: BTreeMap<String, PairedTests>,
}

/// Both paired tests of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedTests {
    pub metric: String,
    pub n: usize,
    pub t: Option<TestResult>,
    pub wilcoxon: Option<TestResult>,
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub runs: Vec<RunResult>,
    pub failures: Vec<Failure>,
    pub summaries: BTreeMap<String, Vec<MethodSummary>>,
    pub split_seed: u64,
    pub backbone: String,
    pub tuning: String,
    pub epochs: usize,
    pub provenance: Provenance,
}

/// The metrics reported in the tables: (key, lower is better).
pub const REPORTED: [(&str, bool); 7] = [
    ("mse", true),
    ("mse_extreme", true),
    ("r2", false),
    ("pearson", false),
    ("cosine", false),
    ("acc_polarity", false),
    ("mae", true),
];

fn metric_value(r: &MetricReport, key: &str) -> Option<f64> {
    match key {
        "mse" => Some(r.mse),
        "mae" => Some(r.mae),
        "r2" => r.r2,
        "pearson" => r.pearson,
        "cosine" => r.cosine,
        "acc_polarity" => Some(r.acc_polarity),
        "mse_extreme" => r.mse_by_region.iter().find(|e| e.region == "extreme").and_then(|e| e.mse),
        _ => None,
    }
}

/// Writes the fixed split of `ds` (train/val/test JSONL) into `dir` unless it exists.
pub fn split_dataset(ds: &DatasetSpec, data_root: &Path, dir: &Path) -> Result<[PathBuf; 3]> {
    let paths = ["train", "val", "test"].map(|p| dir.join(format!("{p}.jsonl")));
    if paths.iter().all(|p| p.exists()) {
        return Ok(paths);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let src = data_root.join(&ds.file);
    let data = read_dataset(&[&src], &ReadOptions::default())?;
    let parts = crate::prepare::split_groups(&data, &[0.8, 0.1, 0.1], SPLIT_SEED)?;
    for (p, idx) in paths.iter().zip(&parts) {
        write_dataset(&data.take(idx), p, &WriteOptions::default())?;
    }
    Ok(paths)
}

fn run_one(cfg: &TrainConfig, dir: &Path, keep_models: bool) -> Result<RunMetrics> {
    if dir.join("metrics.json").exists() {
        // A finished run is reused only when it was made with this configuration (the thread
        // count aside: it does not change the numbers).
        let stored =
            TrainConfig::from_toml_file(&dir.join("config.toml")).map_err(Error::Config)?;
        let mut want = cfg.clone();
        want.optim.threads = stored.optim.threads;
        if stored != want {
            return Err(Error::Config(format!(
                "{} holds a finished run made with another configuration (see its config.toml); \
                 use another --out or remove that folder",
                dir.display()
            )));
        }
        return run::read_json(&dir.join("metrics.json"));
    }
    let resume = dir.join("checkpoint/trainer.json").exists();
    let cfg = if resume {
        TrainConfig::from_toml_file(&dir.join("config.toml")).map_err(Error::Config)?
    } else {
        cfg.clone()
    };
    let mut progress = crate::progress::Silent;
    match trainer::train(&cfg, dir, &RunOptions { resume, stop_after: None }, &mut progress)? {
        Outcome::Finished(m) => {
            let mut drop = vec![dir.join("checkpoint")];
            if !keep_models {
                drop.push(dir.join("model"));
            }
            for d in drop {
                if d.exists() {
                    std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
                }
            }
            Ok(*m)
        }
        Outcome::Interrupted { .. } => Err(Error::Config("interrupted".into())),
    }
}

/// Runs (or resumes) the matrix and writes the results. `log` receives one line per run.
pub fn run(c: &CompareConfig, log: &mut dyn FnMut(&str)) -> Result<Results> {
    std::fs::create_dir_all(&c.out).map_err(|e| Error::io(&c.out, e))?;
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    let total: usize = c.datasets.len()
        * c.seeds.len()
        * c.methods.iter().map(|m| m.static_grid.len().max(1)).sum::<usize>();
    let mut done = 0;
    for ds in &c.datasets {
        let [train, val, test] =
            split_dataset(ds, &c.data_root, &c.out.join("splits").join(&ds.name))?;
        for method in &c.methods {
            let variants: Vec<Option<f64>> = if method.static_grid.is_empty() {
                vec![None]
            } else {
                method.static_grid.iter().map(|&w| Some(w)).collect()
            };
            for variant in variants {
                for &seed in &c.seeds {
                    done += 1;
                    if c.shard.is_some_and(|(k, n)| (done - 1) % n != k) {
                        continue;
                    }
                    let vname = variant.map(|w| format!("w{w:.1}"));
                    let mut dir = c.out.join("runs").join(&ds.name).join(&method.id);
                    if let Some(v) = &vname {
                        dir = dir.join(v);
                    }
                    let dir = dir.join(format!("seed{seed}"));
                    let mut cfg = c.base.clone();
                    cfg.data.train = vec![train.clone()];
                    cfg.data.val = Some(val.clone());
                    cfg.data.test = Some(test.clone());
                    cfg.task.strata = method.strata;
                    cfg.task.imbalance = method.imbalance;
                    cfg.task.weighting = match variant {
                        Some(w) => WeightingSpec::Static(vec![w, 1.0 - w]),
                        None => method.weighting.clone(),
                    };
                    cfg.optim.seed = seed;
                    cfg.out = Some(dir.clone());
                    let t0 = std::time::Instant::now();
                    match run_one(&cfg, &dir, c.keep_models) {
                        Ok(m) => {
                            let test = m
                                .test
                                .clone()
                                .ok_or_else(|| Error::Config("run has no test metrics".into()))?;
                            log(&format!(
                                "[{done}/{total}] {} {}{} seed {seed}: val mse {:.4}, test mse {:.4} ({:.0} s)",
                                ds.name,
                                method.id,
                                vname.as_deref().map(|v| format!(" {v}")).unwrap_or_default(),
                                m.val.mse,
                                test.mse,
                                t0.elapsed().as_secs_f64()
                            ));
                            runs.push(RunResult {
                                dataset: ds.name.clone(),
                                method: method.id.clone(),
                                variant: vname,
                                seed,
                                val_mse: m.val.mse,
                                test,
                                best_epoch: m.best_epoch,
                                train_s: m.timing.train_s,
                            });
                        }
                        Err(e) => {
                            log(&format!(
                                "[{done}/{total}] {} {} seed {seed}: FAILED: {e}",
                                ds.name, method.id
                            ));
                            failures.push(Failure {
                                dataset: ds.name.clone(),
                                method: method.id.clone(),
                                variant: vname,
                                seed,
                                error: e.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
    let mut summaries = BTreeMap::new();
    for ds in &c.datasets {
        summaries.insert(ds.name.clone(), summarise(&runs, &ds.name, &c.methods));
    }
    let results = Results {
        runs,
        failures,
        summaries,
        split_seed: SPLIT_SEED,
        backbone: c.base.model.backbone.display().to_string(),
        tuning: c.base.model.tuning.clone(),
        epochs: c.base.optim.epochs,
        provenance: Provenance {
            command: c.command.clone(),
            date: chrono::Local::now().format("%Y-%m-%d %H:%M %Z").to_string(),
            machine: machine_description(),
        },
    };
    run::write_json(&c.out.join("results.json"), &results)?;
    run::write_atomic(&c.out.join("results.md"), markdown(&results, c).as_bytes())?;
    std::fs::create_dir_all(c.out.join("plots")).map_err(|e| Error::io(c.out.join("plots"), e))?;
    for ds in &c.datasets {
        if let Err(e) =
            plot(&results, &ds.name, &c.out.join("plots").join(format!("{}.png", ds.name)))
        {
            log(&format!("plot for {} not drawn: {e}", ds.name));
        }
    }
    Ok(results)
}

/// The runs of one method on one data set, by seed (for static, the chosen grid point).
fn method_runs<'a>(
    runs: &'a [RunResult],
    ds: &str,
    m: &MethodSpec,
) -> (Vec<&'a RunResult>, Option<String>) {
    let of = |v: Option<&str>| -> Vec<&RunResult> {
        runs.iter()
            .filter(|r| r.dataset == ds && r.method == m.id && r.variant.as_deref() == v)
            .collect()
    };
    if m.static_grid.is_empty() {
        return (of(None), None);
    }
    // Choose the grid point by mean validation MSE over seeds (never by test).
    let mut best: Option<(f64, String)> = None;
    for w in &m.static_grid {
        let v = format!("w{w:.1}");
        let rs = of(Some(&v));
        if rs.is_empty() {
            continue;
        }
        let mean = rs.iter().map(|r| r.val_mse).sum::<f64>() / rs.len() as f64;
        if best.as_ref().is_none_or(|b| mean < b.0) {
            best = Some((mean, v));
        }
    }
    match best {
        Some((_, v)) => (of(Some(&v)), Some(v)),
        None => (vec![], None),
    }
}

fn paired(a: &[&RunResult], b: &[&RunResult], key: &str) -> PairedTests {
    let mut xa = Vec::new();
    let mut xb = Vec::new();
    for r in b {
        if let Some(o) = a.iter().find(|o| o.seed == r.seed) {
            if let (Some(x), Some(y)) = (metric_value(&o.test, key), metric_value(&r.test, key)) {
                xa.push(x);
                xb.push(y);
            }
        }
    }
    PairedTests {
        metric: key.into(),
        n: xa.len(),
        t: paired_t(&xa, &xb),
        wilcoxon: wilcoxon(&xa, &xb),
    }
}

fn summarise(runs: &[RunResult], ds: &str, methods: &[MethodSpec]) -> Vec<MethodSummary> {
    let find = |id: &str| {
        methods.iter().find(|m| m.id == id).map(|m| method_runs(runs, ds, m).0).unwrap_or_default()
    };
    let single = find("single");
    let single_means: BTreeMap<&str, f64> = REPORTED
        .iter()
        .filter_map(|(k, _)| {
            let v: Vec<f64> = single.iter().filter_map(|r| metric_value(&r.test, k)).collect();
            (!v.is_empty()).then(|| (*k, mean_std(&v).mean))
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
        for (k, _) in REPORTED {
            let v: Vec<f64> = rs.iter().filter_map(|r| metric_value(&r.test, k)).collect();
            if v.is_empty() {
                continue;
            }
            let ms = mean_std(&v);
            if let Some(&base) = single_means.get(k) {
                if base != 0.0 {
                    rel.insert(k.to_owned(), (ms.mean - base) / base.abs());
                }
            }
            metrics.insert(k.to_owned(), ms);
        }
        let mut tests = BTreeMap::new();
        for other in ["single", "mtl-equal", "mtl-das"] {
            if other != m.id {
                let o = find(other);
                if !o.is_empty() {
                    tests.insert(format!("vs {other}"), paired(&o, &rs, "mse"));
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
            let g = |k: &str| m.metrics.get(k);
            let rel = |k: &str| {
                m.rel_vs_single.get(k).map_or("".into(), |x| format!("{:+.1}%", 100.0 * x))
            };
            let tests = |k: &str| {
                m.tests.get(k).map_or("".into(), |t| {
                    format!("{} / {}", p(t.t.as_ref()), p(t.wilcoxon.as_ref()))
                })
            };
            let name = match &m.chosen {
                Some(v) => format!("{} ({})", m.method, v),
                None => m.method.clone(),
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                pm(g("mse"), 4),
                rel("mse"),
                pm(g("mse_extreme"), 4),
                rel("mse_extreme"),
                pm(g("r2"), 3),
                pm(g("pearson"), 3),
                pm(g("cosine"), 3),
                pm(g("acc_polarity"), 3),
                rel("acc_polarity"),
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

fn plot(r: &Results, ds: &str, path: &Path) -> std::result::Result<(), String> {
    let sums = r.summaries.get(ds).ok_or("no results")?;
    let labels: Vec<String> = sums.iter().map(|m| m.method.clone()).collect();
    let series: Vec<(f64, f64)> = sums
        .iter()
        .map(|m| m.metrics.get("mse").map_or((f64::NAN, 0.0), |x| (x.mean, x.std)))
        .collect();
    let extreme: Vec<(f64, f64)> = sums
        .iter()
        .map(|m| m.metrics.get("mse_extreme").map_or((f64::NAN, 0.0), |x| (x.mean, x.std)))
        .collect();
    crate::plots::error_bars(
        path,
        &format!("{ds}: test MSE (mean ± std over seeds)"),
        &labels,
        &[("all", series), ("extreme", extreme)],
    )
}
