//! The experiment matrix: datasets x methods x seeds, each a normal training run, then
//! `results.json`, `results.md` and a plot per dataset.
//!
//! Every dataset gets a fixed, group-aware, stratified 80/10/10 split of its shared training
//! file (seed [`SPLIT_SEED`], quintile strata, rows with the same normalised text kept
//! together), written to `OUT/splits/<dataset>/`. Runs select their best epoch on the
//! validation part; the test part is evaluated once per run, at the end. A re-run skips
//! finished runs, resumes interrupted ones, and records failures without stopping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fintune_data::{read_dataset, write_dataset, ReadOptions, WriteOptions};
use fintune_dwa::WeightingSpec;
use serde::{Deserialize, Serialize};

use crate::config::{Imbalance, Strata, TrainConfig};
use crate::metrics::MetricReport;

pub mod folds;
mod results;

use crate::run;
use crate::run::metrics::RunMetrics;
use crate::trainer::{self, Outcome, RunOptions};
use crate::{Error, Result};
pub use results::{grid_dir, markdown, MeanStd, MethodSummary, PairedTests, Reported, Results};
use results::{plot, summarise};

/// Seed of the fixed train/validation/test splits.
pub const SPLIT_SEED: u64 = 20_171_005;

/// A data set of the matrix: a name and its file below the data root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// Short name (folder names, tables).
    pub name: String,
    /// The training file below the data root.
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
    /// Score classes.
    pub strata: Strata,
    /// Task weighting.
    pub weighting: WeightingSpec,
    /// Regression loss.
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
    /// The data sets.
    pub datasets: Vec<DatasetSpec>,
    /// The methods.
    pub methods: Vec<MethodSpec>,
    /// The seeds (one run per seed).
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
    /// The data set.
    pub dataset: String,
    /// The method id.
    pub method: String,
    /// The regression weight of a static grid point.
    pub variant: Option<f64>,
    /// The seed.
    pub seed: u64,
    /// Validation MSE of the best epoch.
    pub val_mse: f64,
    /// Test metrics of the best model.
    pub test: MetricReport,
    /// The best epoch (1-based).
    pub best_epoch: usize,
    /// Seconds in training steps.
    pub train_s: f64,
}

/// A run that failed (recorded, not fatal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The data set.
    pub dataset: String,
    /// The method id.
    pub method: String,
    /// The regression weight of a static grid point.
    pub variant: Option<f64>,
    /// The seed.
    pub seed: u64,
    /// The error with its causes.
    pub error: String,
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
    let folder = run::RunDir::new(dir);
    if folder.is_finished() {
        // A finished run is reused only when it was made with this configuration (the thread
        // count and device aside: they do not change the numbers).
        let stored = TrainConfig::from_toml_file(&folder.config())?;
        let keys = run::differing_keys(&stored, cfg);
        if !keys.is_empty() {
            return Err(Error::OtherConfig { path: dir.to_owned(), keys });
        }
        return run::read_json(&folder.metrics());
    }
    let resume = folder.checkpoint().join("trainer.json").exists()
        || run::files::old_name(&folder.checkpoint()).join("trainer.json").exists();
    let mut progress = crate::progress::Silent;
    let opts = RunOptions { resume, ..Default::default() };
    match trainer::train(cfg, dir, &opts, &mut progress)? {
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
                    let mut dir = c.out.join("runs").join(&ds.name).join(&method.id);
                    if let Some(w) = variant {
                        dir = dir.join(grid_dir(w));
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
                                variant.map(|w| format!(" {}", grid_dir(w))).unwrap_or_default(),
                                m.val.mse,
                                test.mse,
                                t0.elapsed().as_secs_f64()
                            ));
                            runs.push(RunResult {
                                dataset: ds.name.clone(),
                                method: method.id.clone(),
                                variant,
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
                                variant,
                                seed,
                                error: e.chain(),
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
