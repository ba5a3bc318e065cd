//! The experiment matrix: datasets x methods x (cells x) seeds, each a normal training run,
//! then `results.json`, `results.md` and a plot per dataset.
//!
//! Two protocols ([`Protocol`]):
//! - `fixed`: every dataset gets one fixed, group-aware, stratified 80/10/10 split of its
//!   shared training file (seed [`SPLIT_SEED`], quintile strata, rows with the same normalised
//!   text kept together), written to `OUT/splits/<dataset>/`; runs are
//!   `OUT/runs/<dataset>/<method>/seed<S>`;
//! - `cv`: repeated, group-aware, stratified k-fold cross-validation ([`folds`]): cell
//!   `r<R>f<F>` tests on fold F of repeat R and trains on the rest minus an inner validation
//!   hold-out, written to `OUT/splits/<dataset>/r<R>f<F>/`; runs are
//!   `OUT/runs/<dataset>/<method>/r<R>f<F>/seed<S>` with the seed a function of the cell
//!   ([`cv_seed`]), the same for every method. Results pair methods over the cells.
//!
//! Runs select their best epoch on the validation part; the test part is evaluated once per
//! run, at the end. A re-run skips finished runs, resumes interrupted ones, and records
//! failures without stopping.
//!
//! Pooled methods ([`MethodSpec::pooled`], ids `<method>-pooled`) train on the data set's
//! training part plus the whole training files of the other pooled sets ([`CompareConfig::pool`],
//! by default [`known_datasets`]) as one regression task, de-duplicated with
//! [`fintune_data::dedup_across_sets`] against the cell's validation and test texts; the pooled
//! file (`train-pooled.jsonl`) and its counts (`pool.json`) sit beside the split files, and the
//! counts are copied into each pooled run's folder and `results.json`.
//!
//! Distillation methods ([`Further::Distill`]) train a teacher per run's data, split and seed
//! under `OUT/teachers/`, shared by the methods and shards that need it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fintune_data::{
    dedup_across_sets, read_dataset, write_dataset, BatchWriter, Dataset, DedupReport, ReadOptions,
    SetSplits, WriteOptions,
};
use fintune_dwa::WeightingSpec;
use fintune_model::InputMode;
use serde::{Deserialize, Serialize};

use crate::config::{Imbalance, Strata, TrainConfig};
use crate::metrics::MetricReport;

pub mod folds;
pub mod pair;
mod results;

pub use folds::CvSpec;

use crate::run;
use crate::run::metrics::RunMetrics;
use crate::trainer::{self, Outcome, RunOptions};
use crate::{Error, Result};
pub use results::{
    grid_dir, markdown, CvInfo, MeanStd, MethodSummary, PairedTests, Reported, Results,
    BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED,
};
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
    /// Train on the data set's training part pooled with the other sets' training files (see
    /// the [module docs](self)).
    #[serde(default)]
    pub pooled: bool,
    /// Further tasks or a pre-training stage (see [`Further`]).
    #[serde(default)]
    pub further: Further,
    /// Optimisation settings that differ from the base configuration (recipes: longer
    /// training, layer-wise learning-rate decay, learning rates).
    #[serde(default)]
    pub optim: OptimOverrides,
    /// What the model reads, when the method sets it (`model.input`; `None`: the base's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputMode>,
}

/// Optimisation settings a method sets on top of the base configuration (`None`: the base's).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OptimOverrides {
    /// `optim.epochs`.
    pub epochs: Option<usize>,
    /// `optim.patience`.
    pub patience: Option<usize>,
    /// `optim.lr` (backbone).
    pub lr: Option<f64>,
    /// `optim.layer_decay`.
    pub layer_decay: Option<f64>,
    /// `optim.ensemble`: a seed ensemble of this many members per run (seeds `seed ..
    /// seed + N - 1` on the cell's split).
    #[serde(default)]
    pub ensemble: Option<usize>,
}

impl OptimOverrides {
    /// Sets the overridden fields of `o`.
    pub fn apply(&self, o: &mut crate::config::OptimConfig) {
        if let Some(v) = self.epochs {
            o.epochs = v;
        }
        if let Some(v) = self.patience {
            o.patience = v;
        }
        if let Some(v) = self.lr {
            o.lr = v;
        }
        if let Some(v) = self.layer_decay {
            o.layer_decay = v;
        }
        if let Some(v) = self.ensemble {
            o.ensemble = v;
        }
    }
}

/// What a method adds to the data set's own training part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Further {
    /// Nothing.
    #[default]
    None,
    /// The Financial PhraseBank's polarity labels (`financial_phrasebank/all.jsonl` under the
    /// data root) as a classification task with its own head; batches give each task half
    /// their slots (`uniform` task sampling).
    Phrasebank,
    /// The sequential control of [`Further::Phrasebank`]: a first run on the PhraseBank's
    /// scores (-1, 0, 1) as single-task regression (`OUT/stage1/phrasebank`, seed 1, its own
    /// 10% validation hold-out), whose backbone initialises the method's single-task run.
    Sequential,
    /// The other sets of [`CompareConfig::pool`] (whole training files) as regression tasks
    /// with their own heads; their texts equal to a validation or test text of the evaluated
    /// set are dropped by the trainer; proportional task sampling.
    MultiSource,
    /// The score classes' cross-entropy against soft ordinal targets (fintune-das
    /// `soft_targets`, sigma 0.1) instead of one-hot classes.
    SoftOrdinal,
    /// Distillation: a teacher ([`CompareConfig::teacher`], a larger backbone) is trained as
    /// single-task regression on the run's own training data, split and seed
    /// (`OUT/teachers/<dataset>/<own|pooled>/[<cell>/]seed<S>`, shared by the methods and
    /// shards that need it); it scores the Financial PhraseBank's sentences (minus those equal
    /// to a validation or test text of the run), and the method's run trains on its training
    /// data plus those sentences with the teacher's scores (`distill.jsonl` in the teacher's
    /// folder).
    Distill,
}

impl MethodSpec {
    /// The pooled variant of this method: id `<id>-pooled`, the same options, trained on the
    /// pooled training data.
    pub fn to_pooled(&self) -> MethodSpec {
        MethodSpec {
            id: format!("{}-pooled", self.id),
            label: format!("{}, pooled SSIX training data", self.label),
            pooled: true,
            ..self.clone()
        }
    }

    /// Sets what this method changes in a cell's configuration: score classes, regression
    /// loss, task weighting (`variant`: a static grid point's regression weight), the
    /// optimisation overrides and the input. Data, seed and output folder are the caller's.
    pub fn configure(&self, cfg: &mut TrainConfig, variant: Option<f64>) {
        cfg.task.strata = self.strata;
        cfg.task.imbalance = self.imbalance;
        cfg.task.weighting = match variant {
            Some(w) => WeightingSpec::Static(vec![w, 1.0 - w]),
            None => self.weighting.clone(),
        };
        self.optim.apply(&mut cfg.optim);
        if let Some(input) = self.input {
            cfg.model.input = input;
        }
    }
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
        pooled: false,
        further: Further::None,
        optim: OptimOverrides::default(),
        input: None,
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
    for (id, label, w, further) in [
        ("mtl-fpb", "MTL + PhraseBank polarity task, equal weights", W::Equal, Further::Phrasebank),
        (
            "mtl-fpb-dwa-main",
            "MTL + PhraseBank polarity task, main-task-first DWA",
            W::DwaMain,
            Further::Phrasebank,
        ),
        (
            "seq-fpb",
            "sequential control: PhraseBank regression first, then single-task",
            W::Equal,
            Further::Sequential,
        ),
        (
            "multisource",
            "MTL: the other SSIX sets as tasks with their own heads, equal weights",
            W::Equal,
            Further::MultiSource,
        ),
        (
            "multisource-dwa-main",
            "MTL: the other SSIX sets as tasks with their own heads, main-task-first DWA",
            W::DwaMain,
            Further::MultiSource,
        ),
        (
            "distill",
            "single-task, plus the PhraseBank's sentences scored by a teacher (--teacher) trained on the same data",
            W::Equal,
            Further::Distill,
        ),
    ] {
        v.push(MethodSpec { further, ..m(id, label, S::None, w, I::None) });
    }
    v.push(MethodSpec {
        further: Further::SoftOrdinal,
        ..m(
            "mtl-das-soft",
            "MTL + DAS, soft ordinal targets, equal weights",
            S::Das,
            W::Equal,
            I::None,
        )
    });
    let single = |id: &str, label: &str, optim: OptimOverrides| MethodSpec {
        optim,
        ..m(id, label, S::None, W::Equal, I::None)
    };
    let o = OptimOverrides::default();
    v.push(single(
        "single-long",
        "single-task, up to 15 epochs (patience 3)",
        OptimOverrides { epochs: Some(15), patience: Some(3), ..o },
    ));
    v.push(single(
        "single-llrd",
        "single-task, layer-wise lr decay 0.9",
        OptimOverrides { layer_decay: Some(0.9), ..o },
    ));
    v.push(single(
        "single-long-llrd",
        "single-task, up to 15 epochs (patience 3), layer-wise lr decay 0.9",
        OptimOverrides { epochs: Some(15), patience: Some(3), layer_decay: Some(0.9), ..o },
    ));
    for n in [2, 5] {
        v.push(single(
            &format!("single-ens{n}"),
            &format!("single-task, seed ensemble of {n} members"),
            OptimOverrides { ensemble: Some(n), ..o },
        ));
    }
    for (id, lr) in [("single-lr2e-5", 2e-5), ("single-lr1e-4", 1e-4)] {
        v.push(single(
            id,
            &format!("single-task, lr {lr:e}"),
            OptimOverrides { lr: Some(lr), ..o },
        ));
    }
    v.push(MethodSpec {
        input: Some(InputMode::TextTarget),
        ..m(
            "single-target",
            "single-task, the target (company or ticker) as a second input segment",
            S::None,
            W::Equal,
            I::None,
        )
    });
    v.push(m(
        "mtl-das-control",
        "control: MTL + DAS, static weights 0.999 / 0.001",
        S::Das,
        W::Static(vec![0.999, 0.001]),
        I::None,
    ));
    v
}

/// The PhraseBank file below the data root.
pub const PHRASEBANK: &str = "financial_phrasebank/all.jsonl";

/// `cfg` with `method`'s further tasks or pre-training stage (see [`Further`]).
fn apply_further(
    c: &CompareConfig,
    ds: &DatasetSpec,
    method: &MethodSpec,
    cfg: TrainConfig,
    log: &mut dyn FnMut(&str),
) -> Result<TrainConfig> {
    use crate::config::{TaskKind, TaskSpec};
    let need = |rel: &Path| -> Result<PathBuf> {
        let p = c.data_root.join(rel);
        if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Config(format!(
                "method {} needs {} under the data root {}",
                method.id,
                rel.display(),
                c.data_root.display()
            )))
        }
    };
    Ok(match method.further {
        Further::None => cfg,
        Further::Phrasebank => {
            let mut cfg = cfg.with_further_tasks(vec![TaskSpec {
                name: "phrasebank".into(),
                kind: TaskKind::Classification,
                train: vec![need(Path::new(PHRASEBANK))?],
                label_col: Some("label".into()),
                labels: ["negative", "neutral", "positive"].map(String::from).to_vec(),
                ..Default::default()
            }])?;
            cfg.task.sampling = fintune_das::TaskSampling::Uniform;
            cfg
        }
        Further::SoftOrdinal => {
            let mut cfg = cfg.with_further_tasks(vec![])?;
            cfg.tasks[1].loss = Some(crate::config::TaskLoss::SoftOrdinal);
            cfg.tasks[1].sigma = Some(fintune_das::DEFAULT_SIGMA);
            cfg
        }
        Further::MultiSource => {
            let further: Vec<TaskSpec> = c
                .pool
                .iter()
                .filter(|p| p.name != ds.name)
                .map(|p| {
                    Ok(TaskSpec {
                        name: p.name.clone(),
                        train: vec![need(&p.file)?],
                        ..Default::default()
                    })
                })
                .collect::<Result<_>>()?;
            cfg.with_further_tasks(further)?
        }
        Further::Sequential => {
            let dir = c.out.join("stage1").join("phrasebank");
            let mut first = c.base.clone();
            first.data.train = vec![need(Path::new(PHRASEBANK))?];
            first.data.val = None;
            first.data.test = None;
            first.task.strata = Strata::None;
            first.task.weighting = WeightingSpec::Equal;
            first.optim.seed = 1;
            first.out = Some(dir.clone());
            // Shards of one matrix share stage 1: the first trains it, the others wait for it
            // (the lock of `stage1/`) and reuse it.
            shared_run(&first, &dir, "stage 1 (PhraseBank regression)", log)?;
            let mut cfg = cfg;
            cfg.model.init = Some(dir.join("model"));
            cfg.model.init_sha256 = crate::init::resolve(&cfg.model)?;
            cfg
        }
        Further::Distill => {
            let sentences = need(Path::new(PHRASEBANK))?;
            distill(c, ds, method, cfg, &sentences, log)?
        }
    })
}

/// Trains (or reuses) a run that several methods or processes share, into `dir` with its model
/// kept. A process finding another one holding `dir`'s parent folder waits for it, saying so
/// once ("waiting for another process to finish {what} in ..."), then reuses its run;
/// training logs "{what}: val mse ..., in ...".
fn shared_run(cfg: &TrainConfig, dir: &Path, what: &str, log: &mut dyn FnMut(&str)) -> Result<()> {
    let parent = dir.parent().unwrap_or(dir).to_owned();
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let _wait = run::files::lock_dir(
        &parent,
        Some(&mut || {
            log(&format!("waiting for another process to finish {what} in {}", dir.display()))
        }),
    )?;
    let fresh = !run::RunDir::new(dir).is_finished();
    let m = run_one(cfg, dir, true)?;
    if fresh {
        log(&format!("{what}: val mse {:.4}, in {}", m.val.mse, dir.display()));
    }
    Ok(())
}

/// The teacher's folder of the run `cfg` ([`Further::Distill`]): the run's folder below
/// `OUT/runs/<dataset>/<method>/` moved to `OUT/teachers/<dataset>/<own|pooled>/`, so every
/// method on the same data, cell and seed shares one teacher.
fn teacher_dir(c: &CompareConfig, ds: &DatasetSpec, method: &MethodSpec, run: &Path) -> PathBuf {
    let runs = c.out.join("runs").join(&ds.name).join(&method.id);
    let rest = run.strip_prefix(&runs).unwrap_or(run);
    let data = if method.pooled { "pooled" } else { "own" };
    c.out.join("teachers").join(&ds.name).join(data).join(rest)
}

/// [`Further::Distill`]: trains (or reuses) the teacher of the run `cfg`, writes (or reuses)
/// its scores of `sentences` minus the run's validation and test texts, and returns `cfg`
/// with that file added to its training data.
fn distill(
    c: &CompareConfig,
    ds: &DatasetSpec,
    method: &MethodSpec,
    cfg: TrainConfig,
    sentences: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<TrainConfig> {
    let run_dir = cfg.out.clone().ok_or_else(|| Error::Config("a run needs its folder".into()))?;
    let dir = teacher_dir(c, ds, method, &run_dir);
    let file = dir.join("distill.jsonl");
    if run::RunDir::new(&run_dir).is_finished() {
        // A finished student needs nothing more of its teacher: its folder may have been
        // restored from committed results (`metrics.json`, `config.toml`) without the teacher.
        let mut cfg = cfg;
        cfg.data.train.push(file);
        return Ok(cfg);
    }
    // The teacher is the plain single-task fine-tune of its backbone on the run's data, split
    // and seed, whatever else the method changes (so the methods can share it).
    let mut teacher = c.base.clone();
    teacher.model.backbone = c.teacher.clone();
    teacher.data = cfg.data.clone();
    teacher.task.strata = Strata::None;
    teacher.task.weighting = WeightingSpec::Equal;
    teacher.task.imbalance = Imbalance::default();
    teacher.optim.seed = cfg.optim.seed;
    teacher.out = Some(dir.clone());
    // Methods and shards share the teacher: the first trains it, the others wait and reuse it.
    shared_run(&teacher, &dir, &format!("teacher ({})", c.teacher.display()), log)?;
    if !file.exists() {
        let n = write_teacher_scores(&teacher, &dir.join("model"), sentences, &file)?;
        log(&format!("teacher scored {n} sentences of {}", sentences.display()));
    }
    let mut cfg = cfg;
    cfg.data.train.push(file);
    Ok(cfg)
}

/// Writes `out` (JSONL): the rows of `sentences` whose text equals (normalised) no validation or
/// test text of `cfg`, with the scores the model in `model` predicts for them (clipped to
/// [-1, 1]). Returns the number of rows written. The file appears whole or not at all.
fn write_teacher_scores(
    cfg: &TrainConfig,
    model: &Path,
    sentences: &Path,
    out: &Path,
) -> Result<usize> {
    let opts = ReadOptions::default();
    let eval: Vec<Dataset> = [&cfg.data.val, &cfg.data.test]
        .into_iter()
        .flatten()
        .map(|p| read_dataset(&[p], &opts))
        .collect::<std::result::Result<_, _>>()?;
    let all = read_dataset(&[sentences], &opts)?;
    let texts = all.texts();
    let empty: [&str; 0] = [];
    let (val, test) = match eval.as_slice() {
        [v, t] => (v.texts(), t.texts()),
        [v] => (v.texts(), empty.to_vec()),
        _ => (empty.to_vec(), empty.to_vec()),
    };
    let dedup = dedup_across_sets(&[SetSplits {
        name: "sentences",
        train: &texts,
        val: &val,
        test: &test,
    }]);
    let kept = all.take(&dedup.keep[0]);
    let predictor = crate::predict::Predictor::load(model, cfg.optim.device.resolve()?)?;
    let scored = predictor.score_rows(kept.batch())?.batch;
    let tmp = out.with_extension("partial.jsonl");
    let mut w = BatchWriter::create(&tmp, scored.schema(), &WriteOptions::default())?;
    w.write(&scored)?;
    w.finish()?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    Ok(kept.len())
}

/// How each data set is split into training, validation and test parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// One fixed 80/10/10 split per data set (seed [`SPLIT_SEED`]).
    #[default]
    Fixed,
    /// Repeated stratified k-fold cross-validation (seed [`SPLIT_SEED`]).
    Cv(CvSpec),
}

/// The seed of the run with seed number `seed` (1-based, from [`CompareConfig::seeds`]) on
/// cell `cell` (0-based, repeat-major) of `cells`: `(seed - 1) * cells + cell + 1`, so seed 1
/// gives the cells the seeds `1..=cells`, and every method gets the same seed on a cell.
pub fn cv_seed(seed: u64, cell: usize, cells: usize) -> u64 {
    seed.saturating_sub(1) * cells as u64 + cell as u64 + 1
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
    /// The seeds (one run per seed; with the `cv` protocol, per cell, mapped by [`cv_seed`]).
    pub seeds: Vec<u64>,
    /// How data sets are split.
    pub protocol: Protocol,
    /// The sets pooled by pooled methods (the evaluated set itself is skipped by name).
    pub pool: Vec<DatasetSpec>,
    /// Configuration shared by every run (backbone, tuning, epochs...); data, strata,
    /// weighting, imbalance and seed are set per run.
    pub base: TrainConfig,
    /// Run only the runs whose index is `k` modulo `n` (`(k, n)`), so that several processes
    /// can share the matrix; a final run without a shard collects every result.
    pub shard: Option<(usize, usize)>,
    /// Run only the run with this 0-based index in the list (`--run-index`, e.g. a job
    /// array's task id: one run per array task balances runs of unequal length).
    pub run_index: Option<usize>,
    /// The command line that made the results, written into `results.md` (may be empty).
    pub command: String,
    /// The backbone of the teacher of distillation methods ([`Further::Distill`]).
    pub teacher: PathBuf,
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

/// A one-line description of this machine, from `/proc` where it exists. `threads` is the
/// runs' libtorch thread count (`--threads`; 0 means libtorch's default, reported as the
/// number it resolves to here): a collecting run that trains nothing never sets it, so
/// this process's own count would describe the collector, not the runs.
pub fn machine_description(threads: usize) -> String {
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
        if threads > 0 { threads } else { tch::get_num_threads().max(0) as usize },
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
    /// The cross-validation cell (`r1f1`; none with the fixed protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    /// The pooled training data's de-duplication counts (pooled methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<DedupReport>,
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
    /// The cross-validation cell (`r1f1`; none with the fixed protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
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

/// `OUT/splits/<dataset>/cv.json`: what the cells of a data set were made with, so that a
/// folder made with other folds or another seed is refused instead of mixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CvSplits {
    folds: usize,
    repeats: usize,
    seed: u64,
    inner_val_fraction: f64,
    rows: usize,
    /// Per cell: name and row counts of train, val, test.
    cells: Vec<(String, [usize; 3])>,
}

/// Writes the cross-validation cells of `ds` (`dir/r<R>f<F>/{train,val,test}.jsonl`, and
/// `dir/cv.json`) unless they exist; returns the three paths per cell, repeat-major. A `dir`
/// made with other folds or another seed is an error naming `cv.json`.
pub fn split_cv(
    ds: &DatasetSpec,
    data_root: &Path,
    dir: &Path,
    spec: CvSpec,
) -> Result<Vec<[PathBuf; 3]>> {
    spec.check()?;
    let paths: Vec<[PathBuf; 3]> = (0..spec.repeats)
        .flat_map(|r| (0..spec.folds).map(move |f| (r, f)))
        .map(|(r, f)| {
            let cell = dir.join(folds::cell_name(r, f));
            ["train", "val", "test"].map(|p| cell.join(format!("{p}.jsonl")))
        })
        .collect();
    let meta = dir.join("cv.json");
    if meta.exists() {
        let old: CvSplits = run::read_json(&meta)?;
        if (old.folds, old.seed, old.inner_val_fraction)
            != (spec.folds, SPLIT_SEED, folds::INNER_VAL_FRACTION)
        {
            return Err(Error::Config(format!(
                "{} was made with {} folds (seed {}); this comparison asks for {} folds (seed {}): \
                 use another --out",
                meta.display(),
                old.folds,
                old.seed,
                spec.folds,
                SPLIT_SEED
            )));
        }
        if old.repeats >= spec.repeats && paths.iter().flatten().all(|p| p.exists()) {
            return Ok(paths);
        }
    }
    let src = data_root.join(&ds.file);
    let data = read_dataset(&[&src], &ReadOptions::default())?;
    let cells = folds::dataset_cells(&data, spec, SPLIT_SEED)?;
    for (cell, files) in cells.iter().zip(&paths) {
        let cell_dir = files[0].parent().unwrap_or(dir);
        std::fs::create_dir_all(cell_dir).map_err(|e| Error::io(cell_dir, e))?;
        for (p, idx) in files.iter().zip([&cell.train, &cell.val, &cell.test]) {
            if !p.exists() {
                write_dataset(&data.take(idx), p, &WriteOptions::default())?;
            }
        }
    }
    let info = CvSplits {
        folds: spec.folds,
        repeats: spec.repeats,
        seed: SPLIT_SEED,
        inner_val_fraction: folds::INNER_VAL_FRACTION,
        rows: data.len(),
        cells: cells
            .iter()
            .map(|c| (c.name(), [c.train.len(), c.val.len(), c.test.len()]))
            .collect(),
    };
    run::write_json(&meta, &info)?;
    Ok(paths)
}

/// Writes the pooled training file of one split of `name` (`dir/train-pooled.jsonl`, and its
/// counts `dir/pool.json`) unless both exist: the split's training part, then the whole
/// training file of every set of `pool` except `name`, each without the texts equal to a
/// validation or test text of the split ([`dedup_across_sets`]). Returns the file and counts.
pub fn pool_split(
    name: &str,
    [train, val, test]: &[PathBuf; 3],
    pool: &[DatasetSpec],
    data_root: &Path,
    dir: &Path,
) -> Result<(PathBuf, DedupReport)> {
    let out = dir.join("train-pooled.jsonl");
    let counts = dir.join("pool.json");
    if out.exists() && counts.exists() {
        return Ok((out, run::read_json(&counts)?));
    }
    let opts = ReadOptions::default();
    let own = [train, val, test].map(|p| read_dataset(&[p], &opts)).into_iter();
    let [own_train, own_val, own_test]: [Dataset; 3] = own
        .collect::<std::result::Result<Vec<_>, _>>()?
        .try_into()
        .map_err(|_| Error::Config("three split files".into()))?;
    let mut names = vec![name.to_owned()];
    let mut trains = vec![own_train];
    for other in pool.iter().filter(|o| o.name != name) {
        let file = data_root.join(&other.file);
        if !file.exists() {
            return Err(Error::Config(format!(
                "the pooled set-up needs {} ({}) under the data root",
                file.display(),
                other.name
            )));
        }
        names.push(other.name.clone());
        trains.push(read_dataset(&[&file], &opts)?);
    }
    let texts: Vec<Vec<&str>> = trains.iter().map(Dataset::texts).collect();
    let (val_texts, test_texts) = (own_val.texts(), own_test.texts());
    let empty: [&str; 0] = [];
    let sets: Vec<SetSplits<'_, &str>> = names
        .iter()
        .zip(&texts)
        .enumerate()
        .map(|(i, (n, t))| SetSplits {
            name: n,
            train: t,
            val: if i == 0 { &val_texts } else { &empty },
            test: if i == 0 { &test_texts } else { &empty },
        })
        .collect();
    let dedup = dedup_across_sets(&sets);
    let kept: Vec<Dataset> = trains.iter().zip(&dedup.keep).map(|(d, k)| d.take(k)).collect();
    let mut w = BatchWriter::create(&out, kept[0].batch().schema(), &WriteOptions::default())?;
    for d in &kept {
        w.write(d.batch())?;
    }
    w.finish()?;
    run::write_json(&counts, &dedup.report)?;
    Ok((out, dedup.report))
}

/// One split that runs train and test on: the fixed split, or a cross-validation cell.
struct Unit {
    cell: Option<String>,
    dir: PathBuf,
    files: [PathBuf; 3],
    seeds: Vec<u64>,
}

fn units(c: &CompareConfig, ds: &DatasetSpec) -> Result<Vec<Unit>> {
    let dir = c.out.join("splits").join(&ds.name);
    Ok(match c.protocol {
        Protocol::Fixed => vec![Unit {
            cell: None,
            files: split_dataset(ds, &c.data_root, &dir)?,
            dir,
            seeds: c.seeds.clone(),
        }],
        Protocol::Cv(spec) => split_cv(ds, &c.data_root, &dir, spec)?
            .into_iter()
            .enumerate()
            .map(|(i, files)| {
                let cell = folds::cell_name(i / spec.folds, i % spec.folds);
                Unit {
                    dir: dir.join(&cell),
                    cell: Some(cell),
                    files,
                    seeds: c.seeds.iter().map(|&s| cv_seed(s, i, spec.cells())).collect(),
                }
            })
            .collect(),
    })
}

/// What the matrix keeps of a finished run: a single model's or a seed ensemble's.
#[derive(Debug)]
struct Finished {
    val: crate::metrics::MetricReport,
    test: Option<crate::metrics::MetricReport>,
    best_epoch: usize,
    train_s: f64,
}

impl From<RunMetrics> for Finished {
    fn from(m: RunMetrics) -> Self {
        Finished { val: m.val, test: m.test, best_epoch: m.best_epoch, train_s: m.timing.train_s }
    }
}

impl From<crate::ensemble::EnsembleMetrics> for Finished {
    fn from(m: crate::ensemble::EnsembleMetrics) -> Self {
        Finished {
            best_epoch: m.members.first().map_or(0, |x| x.best_epoch),
            train_s: m.cost.train_s,
            val: m.val,
            test: m.test,
        }
    }
}

fn remove_dirs(dirs: impl IntoIterator<Item = PathBuf>) -> Result<()> {
    for d in dirs {
        if d.exists() {
            std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
    }
    Ok(())
}

fn run_one(cfg: &TrainConfig, dir: &Path, keep_models: bool) -> Result<Finished> {
    let folder = run::RunDir::new(dir);
    let ensemble = cfg.optim.ensemble > 1;
    if folder.is_finished() {
        // A finished run is reused only when it was made with this configuration (the thread
        // count and device aside: they do not change the numbers).
        let stored = TrainConfig::from_toml_file(&folder.config())?;
        let keys = run::differing_keys(&stored, cfg);
        if !keys.is_empty() {
            return Err(Error::OtherConfig { path: dir.to_owned(), keys });
        }
        return Ok(if ensemble {
            run::read_json::<crate::ensemble::EnsembleMetrics>(&folder.metrics())?.into()
        } else {
            run::read_json::<RunMetrics>(&folder.metrics())?.into()
        });
    }
    let mut progress = crate::progress::Silent;
    if ensemble {
        let members = crate::ensemble::members_dir(dir);
        let resume = members.is_dir() && folder.config().exists();
        let opts = RunOptions { resume, ..Default::default() };
        return match crate::ensemble::train_ensemble(cfg, dir, &opts, &mut progress)? {
            crate::ensemble::EnsembleOutcome::Finished(m) => {
                let mut drop = vec![];
                for k in 0..cfg.optim.ensemble {
                    drop.push(members.join(k.to_string()).join("checkpoint"));
                    if !keep_models {
                        drop.push(members.join(k.to_string()).join("model"));
                    }
                }
                if !keep_models {
                    drop.push(dir.join("model"));
                }
                remove_dirs(drop)?;
                Ok((*m).into())
            }
            crate::ensemble::EnsembleOutcome::Interrupted { .. } => {
                Err(Error::Config("interrupted".into()))
            }
        };
    }
    let resume = folder.checkpoint().join("trainer.json").exists()
        || run::files::old_name(&folder.checkpoint()).join("trainer.json").exists();
    let opts = RunOptions { resume, ..Default::default() };
    match trainer::train(cfg, dir, &opts, &mut progress)? {
        Outcome::Finished(m) => {
            let mut drop = vec![dir.join("checkpoint")];
            if !keep_models {
                drop.push(dir.join("model"));
            }
            remove_dirs(drop)?;
            Ok((*m).into())
        }
        Outcome::Interrupted { .. } => Err(Error::Config("interrupted".into())),
        Outcome::Worker { .. } => unreachable!("compare trains in one process"),
    }
}

/// The number of runs in the matrix (data sets x cells x seeds x methods, a static grid
/// counting each of its points): the range of `--run-index`.
pub fn total_runs(c: &CompareConfig) -> usize {
    let units_per_ds = match c.protocol {
        Protocol::Fixed => 1,
        Protocol::Cv(spec) => spec.cells(),
    };
    c.datasets.len()
        * units_per_ds
        * c.seeds.len()
        * c.methods.iter().map(|m| m.static_grid.len().max(1)).sum::<usize>()
}

/// Runs (or resumes) the matrix and writes the results. `log` receives one line per run.
pub fn run(c: &CompareConfig, log: &mut dyn FnMut(&str)) -> Result<Results> {
    std::fs::create_dir_all(&c.out).map_err(|e| Error::io(&c.out, e))?;
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    let total = total_runs(c);
    if let Some(i) = c.run_index.filter(|&i| i >= total) {
        return Err(Error::Config(format!(
            "--run-index {i}: the matrix has {total} runs (indices 0 to {})",
            total.saturating_sub(1)
        )));
    }
    let mut done = 0;
    let any_pooled = c.methods.iter().any(|m| m.pooled);
    for ds in &c.datasets {
        let units = units(c, ds)?;
        let pools: Vec<Option<(PathBuf, DedupReport)>> = units
            .iter()
            .map(|u| {
                any_pooled
                    .then(|| pool_split(&ds.name, &u.files, &c.pool, &c.data_root, &u.dir))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        for method in &c.methods {
            let variants: Vec<Option<f64>> = if method.static_grid.is_empty() {
                vec![None]
            } else {
                method.static_grid.iter().map(|&w| Some(w)).collect()
            };
            for variant in variants {
                for (unit, pool) in units.iter().zip(&pools) {
                    let pool = if method.pooled { pool.as_ref() } else { None };
                    for &seed in &unit.seeds {
                        done += 1;
                        if c.shard.is_some_and(|(k, n)| (done - 1) % n != k)
                            || c.run_index.is_some_and(|i| done - 1 != i)
                        {
                            continue;
                        }
                        let mut dir = c.out.join("runs").join(&ds.name).join(&method.id);
                        if let Some(w) = variant {
                            dir = dir.join(grid_dir(w));
                        }
                        if let Some(cell) = &unit.cell {
                            dir = dir.join(cell);
                        }
                        let dir = dir.join(format!("seed{seed}"));
                        let [train, val, test] = &unit.files;
                        let mut cfg = c.base.clone();
                        cfg.data.train = vec![pool.map_or(train, |p| &p.0).clone()];
                        cfg.data.val = Some(val.clone());
                        cfg.data.test = Some(test.clone());
                        cfg.optim.seed = seed;
                        method.configure(&mut cfg, variant);
                        cfg.out = Some(dir.clone());
                        let cfg = apply_further(c, ds, method, cfg, log)?;
                        let t0 = std::time::Instant::now();
                        let cell_note =
                            unit.cell.as_ref().map(|c| format!(" {c}")).unwrap_or_default();
                        let result = run_one(&cfg, &dir, c.keep_models).and_then(|m| {
                            if let Some((_, counts)) = pool {
                                let p = dir.join("pool.json");
                                if !p.exists() {
                                    run::write_json(&p, counts)?;
                                }
                            }
                            Ok(m)
                        });
                        match result {
                            Ok(m) => {
                                let test = m.test.clone().ok_or_else(|| {
                                    Error::Config("run has no test metrics".into())
                                })?;
                                log(&format!(
                                    "[{done}/{total}] {} {}{}{cell_note} seed {seed}: val mse {:.4}, test mse {:.4} ({:.0} s)",
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
                                    cell: unit.cell.clone(),
                                    pool: pool.map(|p| p.1.clone()),
                                    val_mse: m.val.mse,
                                    test,
                                    best_epoch: m.best_epoch,
                                    train_s: m.train_s,
                                });
                            }
                            Err(e) => {
                                log(&format!(
                                    "[{done}/{total}] {} {}{cell_note} seed {seed}: FAILED: {}",
                                    ds.name,
                                    method.id,
                                    e.chain()
                                ));
                                failures.push(Failure {
                                    dataset: ds.name.clone(),
                                    method: method.id.clone(),
                                    variant,
                                    seed,
                                    cell: unit.cell.clone(),
                                    error: e.chain(),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    let mut summaries = BTreeMap::new();
    for ds in &c.datasets {
        summaries.insert(ds.name.clone(), summarise(&runs, &ds.name, &c.methods, c.protocol));
    }
    let results = Results {
        runs,
        failures,
        summaries,
        split_seed: SPLIT_SEED,
        cv: match c.protocol {
            Protocol::Fixed => None,
            Protocol::Cv(spec) => Some(CvInfo {
                folds: spec.folds,
                repeats: spec.repeats,
                inner_val_fraction: folds::INNER_VAL_FRACTION,
                bootstrap_resamples: BOOTSTRAP_RESAMPLES,
                bootstrap_seed: BOOTSTRAP_SEED,
            }),
        },
        backbone: c.base.model.backbone.display().to_string(),
        tuning: c.base.model.tuning.clone(),
        epochs: c.base.optim.epochs,
        provenance: Provenance {
            command: c.command.clone(),
            date: chrono::Local::now().format("%Y-%m-%d %H:%M %Z").to_string(),
            machine: machine_description(c.base.optim.threads),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TaskKind, TaskLoss};

    #[test]
    fn machine_line_reports_the_runs_threads_not_the_collectors() {
        // The collecting process never trains, so its own libtorch count must not be used.
        let own = tch::get_num_threads();
        let runs = if own == 3 { 5 } else { 3 };
        let line = machine_description(runs);
        assert!(line.contains(&format!("libtorch threads {runs},")), "{line}");
        assert!(machine_description(0).contains(&format!("libtorch threads {own},")));
    }

    fn config(root: &Path) -> CompareConfig {
        CompareConfig {
            out: root.join("out"),
            data_root: root.to_owned(),
            datasets: known_datasets(),
            methods: all_methods(&[]),
            seeds: vec![1],
            protocol: Protocol::Fixed,
            pool: known_datasets(),
            base: TrainConfig::default(),
            shard: None,
            run_index: None,
            command: String::new(),
            teacher: "teacher".into(),
            keep_models: false,
        }
    }

    fn method(id: &str) -> MethodSpec {
        all_methods(&[]).into_iter().find(|m| m.id == id).unwrap()
    }

    fn cell_config(m: &MethodSpec) -> TrainConfig {
        let mut cfg = TrainConfig::default();
        cfg.data.train = vec!["train.jsonl".into()];
        cfg.data.val = Some("val.jsonl".into());
        m.configure(&mut cfg, None);
        cfg
    }

    #[test]
    fn further_methods_declare_their_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let fiqa = &c.datasets[0];
        let mut log = |_: &str| {};
        // Missing files are named.
        let m = method("mtl-fpb");
        let err = apply_further(&c, fiqa, &m, cell_config(&m), &mut log).unwrap_err().to_string();
        assert!(err.contains("mtl-fpb needs financial_phrasebank/all.jsonl"), "{err}");
        for f in [
            PHRASEBANK,
            "semeval2017_task5/headlines_train.jsonl",
            "semeval2017_task5/microblogs_train.jsonl",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
        }
        let cfg = apply_further(&c, fiqa, &m, cell_config(&m), &mut log).unwrap();
        let names: Vec<(&str, TaskKind)> =
            cfg.tasks.iter().map(|t| (t.name.as_str(), t.kind)).collect();
        assert_eq!(
            names,
            [("reg", TaskKind::Regression), ("phrasebank", TaskKind::Classification)]
        );
        assert_eq!(cfg.tasks[1].labels, ["negative", "neutral", "positive"]);
        assert_eq!(cfg.task.sampling, fintune_das::TaskSampling::Uniform);
        assert_eq!(cfg.tasks[0].val, Some("val.jsonl".into()));
        let plan = cfg.plan().unwrap();
        assert_eq!(plan.names, ["reg", "phrasebank"]);
        // Multi-source: the other two SSIX sets, own heads.
        let m = method("multisource-dwa-main");
        let cfg = apply_further(&c, fiqa, &m, cell_config(&m), &mut log).unwrap();
        let names: Vec<&str> = cfg.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["reg", "semeval-headlines", "semeval-microblogs"]);
        assert!(cfg.tasks[1..]
            .iter()
            .all(|t| t.shared.is_none() && t.kind == TaskKind::Regression));
        assert_eq!(cfg.task.weighting, WeightingSpec::DwaMain);
        // Soft ordinal: the DAS classes with soft targets.
        let m = method("mtl-das-soft");
        let cfg = apply_further(&c, fiqa, &m, cell_config(&m), &mut log).unwrap();
        assert_eq!(cfg.tasks[1].kind, TaskKind::Derived);
        assert_eq!(cfg.tasks[1].loss, Some(TaskLoss::SoftOrdinal));
        assert_eq!(cfg.plan().unwrap().cls_loss, TaskLoss::SoftOrdinal);
        // The control is today's two-task set-up with static weights.
        let m = method("mtl-das-control");
        assert_eq!(m.weighting, WeightingSpec::Static(vec![0.999, 0.001]));
        let cfg = apply_further(&c, fiqa, &m, cell_config(&m), &mut log).unwrap();
        assert!(cfg.tasks.is_empty());
        // Recipes override the optimisation settings only.
        let mut o = crate::config::OptimConfig::default();
        method("single-long-llrd").optim.apply(&mut o);
        assert_eq!((o.epochs, o.patience, o.layer_decay, o.lr), (15, 3, 0.9, 5e-5));
        let mut o = crate::config::OptimConfig::default();
        method("single-lr1e-4").optim.apply(&mut o);
        assert_eq!((o.epochs, o.lr), (5, 1e-4));
        // The target-aware method changes the input and nothing else; its pooled variant too.
        let plain = cell_config(&method("single"));
        assert_eq!(plain.model.input, InputMode::Text);
        for m in [method("single-target"), method("single-target").to_pooled()] {
            let mut cfg = cell_config(&m);
            assert_eq!(cfg.model.input, InputMode::TextTarget, "{}", m.id);
            cfg.model.input = InputMode::Text;
            assert_eq!(
                toml::to_string(&cfg).unwrap(),
                toml::to_string(&plain).unwrap(),
                "{}",
                m.id
            );
        }
        // A method without an input of its own keeps the base's.
        let mut cfg = TrainConfig::default();
        cfg.model.input = InputMode::TextTarget;
        method("single").configure(&mut cfg, None);
        assert_eq!(cfg.model.input, InputMode::TextTarget);
    }
}
