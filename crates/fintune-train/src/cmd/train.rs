//! `fintune train` and `fintune compare`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use fintune_das::Classes;
use fintune_data::Format;
use fintune_dwa::WeightingSpec;
use fintune_model::{InputMode, Probe};
use fintune_train::compare::{self, CompareConfig};
use fintune_train::config::{DeviceSpec, Imbalance, Precision, Strata};
use fintune_train::ensemble::{self, EnsembleOutcome};
use fintune_train::trainer::{self, Outcome, RunOptions};
use fintune_train::{progress, TrainConfig};

/// Sets `$field` when the flag `$v` was given.
macro_rules! set {
    ($field:expr, $v:expr) => {
        if let Some(v) = $v.clone() {
            $field = v;
        }
    };
}

/// The options of a run that `train` and `compare` share (declared once; flags override the
/// `--config` file).
#[derive(Debug, Args)]
pub(super) struct RunOverrides {
    /// A TOML file with any options (flags override it); see `train --print-config`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Hugging Face model folder (default .fintune/models/all-MiniLM-L6-v2).
    #[arg(long)]
    backbone: Option<PathBuf>,
    /// full, frozen, top:N, lora:R.
    #[arg(long)]
    tuning: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Backbone learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Heads learning rate.
    #[arg(long)]
    head_lr: Option<f64>,
    /// Layer-wise learning-rate decay F in (0, 1]: layer i of L learns at lr * F^(L - i),
    /// the embeddings at lr * F^(L + 1) (default 1: off).
    #[arg(long, value_name = "F")]
    layer_decay: Option<f64>,
    /// Truncation length in tokens (at most the backbone's position limit).
    #[arg(long)]
    max_len: Option<usize>,
    /// cpu, cuda, cuda:N, auto.
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// libtorch threads (0: one per core; at most 4 x cores).
    #[arg(long)]
    threads: Option<usize>,
    /// f32 (fp32) or bf16 (bfloat16 backbone with float32 master weights; for CUDA).
    #[arg(long)]
    precision: Option<Precision>,
    /// Recompute layers in the backward pass (less memory).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// What the model reads: text, or text+target (the target column as a second segment).
    #[arg(long)]
    input: Option<InputMode>,
    /// Start the backbone from a saved run's model folder (RUN/model) instead of the
    /// pretrained weights; the heads start fresh.
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
}

impl RunOverrides {
    /// The `--config` file, or the defaults.
    fn base(&self) -> Result<TrainConfig> {
        Ok(match &self.config {
            Some(p) => TrainConfig::from_toml_file(p)?,
            None => TrainConfig::default(),
        })
    }

    /// Applies the flags that were given.
    fn apply(&self, c: &mut TrainConfig) {
        set!(c.model.backbone, self.backbone);
        set!(c.model.tuning, self.tuning);
        set!(c.optim.epochs, self.epochs);
        set!(c.optim.batch_size, self.batch_size);
        set!(c.optim.lr, self.lr);
        set!(c.optim.head_lr, self.head_lr);
        set!(c.optim.layer_decay, self.layer_decay);
        set!(c.model.max_len, self.max_len);
        set!(c.optim.device, self.device);
        set!(c.optim.threads, self.threads);
        set!(c.optim.precision, self.precision);
        if self.gradient_checkpointing {
            c.model.gradient_checkpointing = true;
        }
        set!(c.model.input, self.input);
        if self.init.is_some() {
            c.model.init = self.init.clone();
        }
    }
}

#[derive(Debug, Args)]
pub(super) struct TrainArgs {
    /// Training files (JSONL, JSON, CSV/TSV, Parquet, Arrow).
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Validation file (default: a group-aware stratified 10% of the training data).
    #[arg(long)]
    val: Option<PathBuf>,
    /// Test file, evaluated once at the end with the validation-selected model.
    #[arg(long)]
    test: Option<PathBuf>,
    /// Run folder (default runs/<timestamp>-<name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run name for the default folder.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    run: RunOverrides,
    #[arg(long)]
    seed: Option<u64>,
    /// Train a seed ensemble of N members (seeds seed..seed+N-1, one validation split) in
    /// OUT/members/<k>/ and save one ensemble model folder OUT/model/ (default 1: one model).
    #[arg(long, value_name = "N")]
    ensemble: Option<usize>,
    /// dwa, equal, static:a,b, uncertainty, gradnorm, dwa-liu, dao, famo, pcgrad.
    #[arg(long)]
    weighting: Option<WeightingSpec>,
    /// das, quantile, uniform, none (single-task regression).
    #[arg(long)]
    strata: Option<Strata>,
    /// Number of classes: auto or K.
    #[arg(long)]
    classes: Option<Classes>,
    /// representation, last-layer, all.
    #[arg(long)]
    probe: Option<Probe>,
    /// none, lds, bmse.
    #[arg(long)]
    imbalance: Option<Imbalance>,
    /// Keep the valid rows of bad input and report the skipped ones.
    #[arg(long)]
    skip_invalid: bool,
    /// Input format of the data files (default: from the extension).
    #[arg(long)]
    format: Option<Format>,
    /// Column holding the text (default text).
    #[arg(long)]
    text_col: Option<String>,
    /// Column holding the score (default score).
    #[arg(long)]
    score_col: Option<String>,
    /// Column holding the id (default id).
    #[arg(long)]
    id_col: Option<String>,
    /// Column holding the group (default group).
    #[arg(long)]
    group_col: Option<String>,
    /// Column holding the target (default target; read with --input text+target).
    #[arg(long)]
    target_col: Option<String>,
    /// Continue an interrupted run folder (with its own config.toml; other flags must not
    /// change it, --device and --threads aside).
    #[arg(long, value_name = "RUN")]
    resume: Option<PathBuf>,
    /// Replace a finished run, or a run with another configuration, in --out.
    #[arg(long)]
    overwrite: bool,
    /// Plain log lines instead of progress bars.
    #[arg(long)]
    quiet: bool,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Stop after this many epochs in total (resume later with --resume).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
    /// A further classification task `class-aux` with its own examples (e.g. the Financial
    /// PhraseBank), its own head unless --aux-shared-head; needs --aux-labels. For other
    /// set-ups declare [[tasks]] in the config.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    aux_class: Vec<PathBuf>,
    /// The classes of --aux-class, in order (e.g. negative,neutral,positive).
    #[arg(long, value_delimiter = ',')]
    aux_labels: Vec<String>,
    /// The column of --aux-class holding the class (default label).
    #[arg(long, default_value = "label")]
    aux_label_col: String,
    /// --aux-class shares the head of the main task's score classes (same number of classes,
    /// e.g. --strata das with das.zero_cut and 3 classes).
    #[arg(long)]
    aux_shared_head: bool,
    /// A further regression task `reg-aux` with its own examples and its own head.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    aux_reg: Vec<PathBuf>,
    /// How batches share their slots between tasks with their own examples: proportional
    /// (default), uniform or temperature:<tau>.
    #[arg(long)]
    task_sampling: Option<fintune_das::TaskSampling>,
    /// Data-parallel training with N local ranks (processes), spawned here on 127.0.0.1;
    /// each computes its slice of every batch, and the result equals one process's. Under
    /// torchrun, srun or a PyTorchJob the ranks come from the launcher's variables instead.
    #[arg(long, value_name = "N", default_value_t = 1)]
    nproc: usize,
    /// Seconds a rank waits for the others to join (and for any collective).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    dist_timeout: u64,
}

impl TrainArgs {
    /// Applies the train-only flags that were given.
    fn apply(&self, c: &mut TrainConfig) {
        self.run.apply(c);
        if !self.data.is_empty() {
            c.data.train = self.data.clone();
        }
        if self.val.is_some() {
            c.data.val = self.val.clone();
        }
        if self.test.is_some() {
            c.data.test = self.test.clone();
        }
        if self.name.is_some() {
            c.name = self.name.clone();
        }
        set!(c.optim.seed, self.seed);
        set!(c.optim.ensemble, self.ensemble);
        set!(c.task.weighting, self.weighting);
        set!(c.task.strata, self.strata);
        set!(c.task.classes, self.classes);
        set!(c.task.probe, self.probe);
        set!(c.task.imbalance, self.imbalance);
        if self.skip_invalid {
            c.data.read.skip_invalid = true;
        }
        if self.format.is_some() {
            c.data.read.format = self.format;
        }
        set!(c.data.read.text_col, self.text_col);
        set!(c.data.read.score_col, self.score_col);
        set!(c.data.read.id_col, self.id_col);
        set!(c.data.read.group_col, self.group_col);
        set!(c.data.read.target_col, self.target_col);
        set!(c.task.sampling, self.task_sampling);
    }

    fn has_aux(&self) -> bool {
        !self.aux_class.is_empty() || !self.aux_reg.is_empty()
    }

    /// `c` with the further tasks of --aux-class / --aux-reg: its `[data]` + `[task]` become
    /// the `[[tasks]]` they stand for, and the further tasks follow.
    fn declare_aux(&self, c: &mut TrainConfig) -> Result<()> {
        use fintune_train::config::{TaskKind, TaskSpec};
        if !self.has_aux() {
            if !self.aux_labels.is_empty() || self.aux_shared_head {
                bail!("--aux-labels and --aux-shared-head describe --aux-class, which is missing");
            }
            return Ok(());
        }
        let mut tasks = vec![];
        let read = c.data.read.clone();
        if !self.aux_class.is_empty() {
            tasks.push(TaskSpec {
                name: "class-aux".into(),
                kind: TaskKind::Classification,
                train: self.aux_class.clone(),
                label_col: Some(self.aux_label_col.clone()),
                labels: self.aux_labels.clone(),
                shared: self.aux_shared_head.then(|| "cls".into()),
                read: fintune_data::ReadOptions::new().format_opt(read.format),
                ..Default::default()
            });
        } else if !self.aux_labels.is_empty() || self.aux_shared_head {
            bail!("--aux-labels and --aux-shared-head describe --aux-class, which is missing");
        }
        if !self.aux_reg.is_empty() {
            tasks.push(TaskSpec {
                name: "reg-aux".into(),
                kind: TaskKind::Regression,
                train: self.aux_reg.clone(),
                read: read.clone(),
                ..Default::default()
            });
        }
        *c = c.with_further_tasks(tasks)?;
        Ok(())
    }
}

pub(super) fn train(a: &TrainArgs) -> Result<ExitCode> {
    let (mut cfg, root) = match &a.resume {
        Some(run) => {
            if a.run.config.is_some() || a.out.is_some() || a.overwrite || a.print_config {
                bail!("--resume continues a run with its own config.toml: --config, --out, --overwrite and --print-config cannot be given with it");
            }
            if a.has_aux() {
                bail!("--resume continues a run with its own config.toml: --aux-class and --aux-reg cannot be given with it");
            }
            // Flags that change the configuration are refused by the run folder's check,
            // which names the differing keys.
            let mut cfg = TrainConfig::from_toml_file(&run.join("config.toml"))?;
            a.apply(&mut cfg);
            (cfg, run.clone())
        }
        None => {
            let mut cfg = a.run.base()?;
            a.apply(&mut cfg);
            a.declare_aux(&mut cfg)?;
            if a.out.is_some() {
                cfg.out = a.out.clone();
            }
            if a.print_config {
                print!("{}", cfg.to_toml());
                return Ok(ExitCode::SUCCESS);
            }
            let root = cfg.out.clone().unwrap_or_else(|| trainer::default_run_dir(&cfg));
            cfg.out = Some(root.clone());
            (cfg, root)
        }
    };
    let launch = fintune_dist::Launch::from_env()?.filter(|l| l.world_size > 1);
    if a.nproc > 1 && launch.is_none() {
        if cfg.optim.ensemble > 1 {
            bail!("--nproc trains one model; --ensemble trains its members in one process");
        }
        return super::ranks::spawn(a.nproc, cfg.optim.threads);
    }
    let dist = match &launch {
        None => None,
        Some(l) => {
            if let DeviceSpec::Cuda(_) | DeviceSpec::Auto = cfg.optim.device {
                if tch::Cuda::is_available() {
                    cfg.optim.device = DeviceSpec::Cuda(l.local_rank);
                }
            }
            let device = cfg.resolve()?.device;
            let timeout = std::time::Duration::from_secs(a.dist_timeout);
            let dp = fintune_train::dist::DataParallel::join(l, device, timeout)
                .with_context(|| format!("joining the data-parallel job as rank {}", l.rank))?;
            Some(std::rc::Rc::new(dp))
        }
    };
    let leader = dist.as_ref().is_none_or(|d| d.is_leader());
    let mut progress: Box<dyn progress::Progress> =
        if leader { progress::for_terminal(a.quiet) } else { Box::new(progress::Silent) };
    let opts = RunOptions {
        resume: a.resume.is_some(),
        stop_after: a.stop_after,
        overwrite: a.overwrite,
        dist,
    };
    if cfg.optim.ensemble > 1 {
        return train_ensemble(&cfg, &root, &opts, progress.as_mut());
    }
    match trainer::train(&cfg, &root, &opts, progress.as_mut())? {
        Outcome::Finished(m) => {
            let pearson = |p: Option<f64>| p.map_or("n/a".into(), |p| format!("{p:.4}"));
            eprintln!(
                "done: best epoch {} of {}; validation mse {:.4}, pearson {}{}",
                m.best_epoch,
                m.epochs_run,
                m.val.mse,
                pearson(m.val.pearson),
                m.test
                    .as_ref()
                    .map(|t| format!("; test mse {:.4}, pearson {}", t.mse, pearson(t.pearson)))
                    .unwrap_or_default()
            );
            eprintln!("run folder: {} (report.md, metrics.json, model/)", root.display());
        }
        Outcome::Interrupted { epochs } => {
            if leader {
                eprintln!(
                    "stopped after epoch {epochs} as asked; continue with: fintune train \
                     --resume {}",
                    root.display()
                );
            }
        }
        Outcome::Worker { rank } => {
            if let Some(mib) = fintune_train::run::peak_rss_mib() {
                eprintln!("rank {rank}: done (peak RSS {mib:.0} MiB)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn train_ensemble(
    cfg: &TrainConfig,
    root: &std::path::Path,
    opts: &RunOptions,
    progress: &mut dyn progress::Progress,
) -> Result<ExitCode> {
    match ensemble::train_ensemble(cfg, root, opts, progress)? {
        EnsembleOutcome::Finished(m) => {
            for (k, e) in m.members.iter().enumerate() {
                eprintln!(
                    "member {k} (seed {}): best epoch {}; validation mse {:.4}{}",
                    e.seed,
                    e.best_epoch,
                    e.val.mse,
                    e.test.as_ref().map(|t| format!("; test mse {:.4}", t.mse)).unwrap_or_default()
                );
            }
            eprintln!(
                "ensemble of {}: validation mse {:.4}{}",
                m.members.len(),
                m.val.mse,
                m.test.as_ref().map(|t| format!("; test mse {:.4}", t.mse)).unwrap_or_default()
            );
            eprintln!(
                "cost: {:.1} s training; prediction {:.0} ms per 1,000 texts (one member {:.0} ms)",
                m.cost.train_s, m.cost.predict_ms_per_1000, m.cost.member_predict_ms_per_1000
            );
            eprintln!("run folder: {} (report.md, metrics.json, model/)", root.display());
        }
        EnsembleOutcome::Interrupted { member, epochs } => {
            eprintln!(
                "member {member} stopped after epoch {epochs} as asked; continue with: fintune \
                 train --resume {}",
                root.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub(super) struct CompareArgs {
    /// Output folder (runs, splits, results). Default: runs/compare (runs/compare-cv with
    /// --protocol cv; `-quick` appended with --quick). Finished runs in it are reused when their configuration matches.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Folder with the shared data sets.
    #[arg(long, default_value = "../shared/data")]
    data_root: PathBuf,
    /// Comma-separated: fiqa, semeval-headlines, semeval-microblogs (default: all three).
    #[arg(long, value_delimiter = ',')]
    datasets: Vec<String>,
    /// Comma-separated method ids (default `all`: every method except the pooled and the
    /// distillation ones, which need the other sets or a teacher backbone: name those).
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Number of seeds (1..=N); with --protocol cv, per cell (default: 5 with fixed, 1 with
    /// cv).
    #[arg(long)]
    seeds: Option<u64>,
    /// How each data set is split: `cv` (repeated group-aware stratified k-fold
    /// cross-validation, --folds x --repeats cells, paired tests and bootstrap intervals over
    /// the cells; the default) or `fixed` (one group-aware stratified 80/10/10 split, for quick
    /// checks; the default with --quick).
    #[arg(long, value_enum)]
    protocol: Option<ProtocolArg>,
    /// Folds per repeat (--protocol cv).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Repeats of the k-fold partition (--protocol cv).
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Add the pooled variant `<method>-pooled` of every selected method: trained on the data
    /// set's training part plus the other SSIX sets' whole training files, de-duplicated
    /// against the evaluated validation and test texts (pooled ids can also be named in
    /// --methods).
    #[arg(long)]
    pool: bool,
    /// Regression weights of the static-weight grid.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.3,0.5,0.7,0.9")]
    grid: Vec<f64>,
    /// A small matrix that runs in minutes: FiQA, 3 methods, 2 seeds, 3 epochs.
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    run: RunOverrides,
    /// K/N: run every N-th run starting at K (0-based), to share the matrix between processes.
    /// Without it the shard comes from the scheduler when there is one (a Slurm job array's
    /// SLURM_ARRAY_TASK_ID, a Kubernetes Indexed Job's JOB_COMPLETION_INDEX with FINTUNE_SHARDS,
    /// torchrun's RANK/WORLD_SIZE); `none` runs the whole list whatever the environment says
    /// (the collecting run after an array).
    #[arg(long)]
    shard: Option<String>,
    /// Run only the run with this 0-based index in the list (e.g. `--run-index
    /// $SLURM_ARRAY_TASK_ID` with one array task per run; `--count-runs` gives the range).
    #[arg(long, conflicts_with = "shard")]
    run_index: Option<usize>,
    /// Print the number of runs in the matrix and exit.
    #[arg(long)]
    count_runs: bool,
    /// Keep every finished run's model/ folder (by default only the metrics, history, plots
    /// and report stay; checkpoints are always removed once a run has finished).
    #[arg(long)]
    keep_models: bool,
    /// The teacher backbone of the `distill` methods (trained per run on the same data, it
    /// scores the Financial PhraseBank's sentences for the student).
    #[arg(long, value_name = "DIR", default_value = ".fintune/models/all-mpnet-base-v2")]
    teacher: PathBuf,
}

/// `--protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProtocolArg {
    /// One fixed split per data set.
    Fixed,
    /// Repeated k-fold cross-validation.
    Cv,
}

/// Keeps the entries of `all` that `wanted` names (all when empty); unknown names are errors.
fn select<T>(
    all: &mut Vec<T>,
    wanted: &[String],
    what: &str,
    id: impl Fn(&T) -> &str,
) -> Result<()> {
    if wanted.is_empty() || wanted == ["all"] {
        return Ok(());
    }
    let known: Vec<&str> = all.iter().map(&id).collect();
    if let Some(w) = wanted.iter().find(|w| !known.contains(&w.as_str())) {
        bail!("unknown {what} `{w}` (known: {})", known.join(", "));
    }
    all.retain(|x| wanted.iter().any(|w| w == id(x)));
    Ok(())
}

/// `--shard K/N`, `--shard none`, or the scheduler's shard (see `fintune_train::shard`).
pub(super) fn resolve_shard(flag: Option<&str>) -> Result<Option<fintune_train::shard::Shard>> {
    use fintune_train::shard::Shard;
    Ok(match flag {
        Some("none") => None,
        Some(s) => Some(Shard::parse(s)?),
        None => Shard::from_env()?,
    })
}

pub(super) fn compare(a: &CompareArgs) -> Result<ExitCode> {
    let mut base = a.run.base()?;
    let mut datasets = compare::known_datasets();
    let mut methods = compare::all_methods(&a.grid);
    let pooled: Vec<_> = methods.iter().map(compare::MethodSpec::to_pooled).collect();
    methods.extend(pooled);
    let chosen = a.protocol.unwrap_or(if a.quick { ProtocolArg::Fixed } else { ProtocolArg::Cv });
    let protocol = match chosen {
        ProtocolArg::Fixed => compare::Protocol::Fixed,
        ProtocolArg::Cv => {
            let spec = compare::CvSpec { folds: a.folds, repeats: a.repeats };
            spec.check().context("--folds/--repeats")?;
            compare::Protocol::Cv(spec)
        }
    };
    let default_seeds = match protocol {
        compare::Protocol::Fixed => 5,
        compare::Protocol::Cv(_) => 1,
    };
    let mut seeds: Vec<u64> = (1..=a.seeds.unwrap_or(default_seeds)).collect();
    if a.methods.is_empty() || a.methods == ["all"] {
        methods.retain(|m| !m.pooled && m.further != compare::Further::Distill);
    }
    if a.quick {
        datasets.retain(|d| d.name == "fiqa");
        methods.retain(|m| ["single", "mtl-das", "mtl-das-dwa"].contains(&m.id.as_str()));
        seeds = if protocol == compare::Protocol::Fixed { vec![1, 2] } else { vec![1] };
        base.optim.epochs = 3;
        base.model.max_len = 64;
    }
    a.run.apply(&mut base);
    select(&mut datasets, &a.datasets, "dataset", |d| &d.name)?;
    select(&mut methods, &a.methods, "method", |m| &m.id)?;
    if a.pool {
        let twins: Vec<_> = methods
            .iter()
            .filter(|m| !m.pooled)
            .map(compare::MethodSpec::to_pooled)
            .filter(|t| !methods.iter().any(|m| m.id == t.id))
            .collect();
        methods.extend(twins);
    }
    if seeds.is_empty() {
        bail!("--seeds must be at least 1");
    }
    let shard = if a.run_index.is_some() { None } else { resolve_shard(a.shard.as_deref())? };
    if let Some(s) = &shard {
        eprintln!("compare: {s}");
    }
    let shard = shard.map(|s| (s.index, s.count));
    if !a.data_root.is_dir() {
        bail!(
            "{} is not a folder: pass --data-root with the shared data sets",
            a.data_root.display()
        );
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let cv = if protocol == compare::Protocol::Fixed { "" } else { "-cv" };
        PathBuf::from(format!("runs/compare{cv}{}", if a.quick { "-quick" } else { "" }))
    });
    let cfg = CompareConfig {
        out: out.clone(),
        data_root: a.data_root.clone(),
        datasets,
        methods,
        seeds,
        protocol,
        pool: compare::known_datasets(),
        base,
        shard,
        run_index: a.run_index,
        keep_models: a.keep_models,
        teacher: a.teacher.clone(),
        command: std::iter::once("fintune".to_owned())
            .chain(std::env::args().skip(1))
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" "),
    };
    if a.count_runs {
        println!("{}", compare::total_runs(&cfg));
        return Ok(ExitCode::SUCCESS);
    }
    let t0 = std::time::Instant::now();
    let r = compare::run(&cfg, &mut |line| eprintln!("{line}"))?;
    eprintln!(
        "compare: {} runs ({} failed) in {:.1} min; results in {}",
        r.runs.len(),
        r.failures.len(),
        t0.elapsed().as_secs_f64() / 60.0,
        out.join("results.md").display()
    );
    Ok(ExitCode::SUCCESS)
}
