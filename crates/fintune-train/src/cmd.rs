//! The subcommands of `fintune` (binary-only module).

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use fintune_das::{Classes, DasConfig, Stratification};
use fintune_data::{read_dataset, BatchReader, BatchWriter, Format, ReadOptions, WriteOptions};
use fintune_dwa::WeightingSpec;
use fintune_model::{Pooling, Probe};
use fintune_train::config::{Imbalance, Strata};
use fintune_train::predict::Predictor;
use fintune_train::trainer::{self, Outcome, RunOptions};
use fintune_train::{progress, TrainConfig};

/// Fine-tune transformers for financial sentiment regression (multi-task, DAS, DWA).
#[derive(Debug, Parser)]
#[command(name = "fintune", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fine-tune a backbone on labelled data and write a run folder.
    Train(Box<TrainArgs>),
    /// Metrics of a saved model on labelled data.
    Eval(EvalArgs),
    /// Scores, classes and class probabilities for texts.
    Predict(PredictArgs),
    /// Sentence embeddings from a backbone (feature extraction).
    Encode(EncodeArgs),
    /// DAS thresholds for a file's scores, beside the quantile and uniform baselines.
    Stratify(StratifyArgs),
    /// Check or convert data files.
    #[command(subcommand)]
    Data(DataCommand),
    /// Convert model files.
    #[command(subcommand)]
    Convert(ConvertCommand),
    /// The experiment matrix: datasets x methods x seeds, then results.md/json.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Output folder (runs, splits, results). Default: runs/compare (runs/compare-quick with
    /// --quick). Finished runs in it are reused when their configuration matches.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Folder with the shared data sets.
    #[arg(long, default_value = "../shared/data")]
    data_root: PathBuf,
    /// Comma-separated: fiqa, semeval-headlines, semeval-microblogs (default: all three).
    #[arg(long, value_delimiter = ',')]
    datasets: Vec<String>,
    /// Comma-separated method ids (default: all; see results.md for the list).
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Number of seeds (1..=N).
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Regression weights of the static-weight grid.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.3,0.5,0.7,0.9")]
    grid: Vec<f64>,
    /// A small matrix that runs in minutes: FiQA, 3 methods, 2 seeds, 3 epochs.
    #[arg(long)]
    quick: bool,
    /// Base configuration for every run (TOML, as for train).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    backbone: Option<PathBuf>,
    /// full, frozen, top:N, lora:R.
    #[arg(long)]
    tuning: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    max_len: Option<usize>,
    #[arg(long)]
    device: Option<String>,
    /// libtorch threads per run (0: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// K/N: run every N-th run starting at K (0-based), to share the matrix between processes.
    #[arg(long)]
    shard: Option<String>,
    /// Keep every finished run's model/ folder (by default only the metrics, history, plots
    /// and report stay; checkpoints are always removed once a run has finished).
    #[arg(long)]
    keep_models: bool,
}

/// How input files are read (shared by the data-reading subcommands).
#[derive(Debug, Args, Clone)]
struct ReadArgs {
    /// Input format (default: from the extension): jsonl, json, csv, tsv, parquet, arrow, arrows.
    #[arg(long)]
    format: Option<Format>,
    /// Column holding the text.
    #[arg(long, default_value = "text")]
    text_col: String,
    /// Column holding the score.
    #[arg(long, default_value = "score")]
    score_col: String,
    /// Column holding the id (absent: ids are `<file-stem>-<row>`).
    #[arg(long, default_value = "id")]
    id_col: String,
    /// Column holding the group (rows of a group never straddle a split).
    #[arg(long, default_value = "group")]
    group_col: String,
    /// Keep the valid rows of bad input and report the skipped ones.
    #[arg(long)]
    skip_invalid: bool,
}

impl ReadArgs {
    fn options(&self) -> ReadOptions {
        ReadOptions::new()
            .format_opt(self.format)
            .text_col(&self.text_col)
            .score_col(&self.score_col)
            .id_col(&self.id_col)
            .group_col(&self.group_col)
            .skip_invalid(self.skip_invalid)
    }
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Training files (JSONL, JSON, CSV/TSV, Parquet, Arrow).
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Validation file (default: a group-aware stratified 10% of the training data).
    #[arg(long)]
    val: Option<PathBuf>,
    /// Test file, evaluated once at the end with the validation-selected model.
    #[arg(long)]
    test: Option<PathBuf>,
    /// A TOML file with any options (flags override it); see --print-config.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Hugging Face model folder (default .fintune/models/all-MiniLM-L6-v2).
    #[arg(long)]
    backbone: Option<PathBuf>,
    /// Run folder (default runs/<timestamp>-<name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run name for the default folder.
    #[arg(long)]
    name: Option<String>,
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
    #[arg(long)]
    max_len: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
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
    probe: Option<String>,
    /// full, frozen, top:N, lora:R.
    #[arg(long)]
    tuning: Option<String>,
    /// none, lds, bmse.
    #[arg(long)]
    imbalance: Option<Imbalance>,
    /// cpu, cuda, cuda:N, auto.
    #[arg(long)]
    device: Option<String>,
    /// libtorch threads (0: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Recompute layers in the backward pass (less memory).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// f32 or bf16 (bfloat16 backbone with float32 master weights; for CUDA).
    #[arg(long)]
    precision: Option<fintune_train::config::Precision>,
    /// Continue an interrupted run folder.
    #[arg(long, value_name = "RUN")]
    resume: Option<PathBuf>,
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
    /// Plain log lines instead of progress bars.
    #[arg(long)]
    quiet: bool,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Stop after this many epochs in total (resume later with --resume).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(p) => TrainConfig::from_toml_file(p).map_err(anyhow::Error::msg)?,
            None => TrainConfig::default(),
        };
        if !self.data.is_empty() {
            c.data.train = self.data.clone();
        }
        macro_rules! set {
            ($field:expr, $v:expr) => {
                if let Some(v) = $v.clone() {
                    $field = v;
                }
            };
        }
        if self.val.is_some() {
            c.data.val = self.val.clone();
        }
        if self.test.is_some() {
            c.data.test = self.test.clone();
        }
        set!(c.model.backbone, self.backbone);
        if self.out.is_some() {
            c.out = self.out.clone();
        }
        if self.name.is_some() {
            c.name = self.name.clone();
        }
        set!(c.optim.epochs, self.epochs);
        set!(c.optim.batch_size, self.batch_size);
        set!(c.optim.lr, self.lr);
        set!(c.optim.head_lr, self.head_lr);
        set!(c.model.max_len, self.max_len);
        set!(c.optim.seed, self.seed);
        set!(c.task.weighting, self.weighting);
        set!(c.task.strata, self.strata);
        set!(c.task.classes, self.classes);
        if let Some(p) = &self.probe {
            c.task.probe = p.parse::<Probe>()?;
        }
        set!(c.model.tuning, self.tuning);
        set!(c.task.imbalance, self.imbalance);
        set!(c.optim.device, self.device);
        set!(c.optim.threads, self.threads);
        set!(c.optim.precision, self.precision);
        if self.gradient_checkpointing {
            c.model.gradient_checkpointing = true;
        }
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
        Ok(c)
    }

    /// Flags that change a run (not allowed with --resume).
    fn changes_run(&self) -> bool {
        !self.data.is_empty()
            || self.val.is_some()
            || self.test.is_some()
            || self.config.is_some()
            || self.backbone.is_some()
            || self.out.is_some()
            || self.epochs.is_some()
            || self.batch_size.is_some()
            || self.lr.is_some()
            || self.head_lr.is_some()
            || self.max_len.is_some()
            || self.seed.is_some()
            || self.weighting.is_some()
            || self.strata.is_some()
            || self.classes.is_some()
            || self.probe.is_some()
            || self.tuning.is_some()
            || self.imbalance.is_some()
            || self.skip_invalid
            || self.gradient_checkpointing
            || self.precision.is_some()
            || self.format.is_some()
            || self.text_col.is_some()
            || self.score_col.is_some()
            || self.id_col.is_some()
            || self.group_col.is_some()
    }
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// A run's model folder (RUN/model).
    #[arg(long)]
    model: PathBuf,
    /// Labelled data.
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Debug, Args)]
struct PredictArgs {
    /// A run's model folder (RUN/model).
    #[arg(long)]
    model: PathBuf,
    /// Input file, or - for JSONL on standard input.
    #[arg(long)]
    input: PathBuf,
    /// Output file (JSONL, CSV, Parquet, Arrow by extension), or - for JSONL on standard output.
    #[arg(long, default_value = "-")]
    output: PathBuf,
    #[command(flatten)]
    read: ReadArgs,
    /// Rows per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Debug, Args)]
struct EncodeArgs {
    /// Hugging Face model folder.
    #[arg(long)]
    backbone: PathBuf,
    /// Input file, or - for JSONL on standard input.
    #[arg(long)]
    input: PathBuf,
    /// Output file (JSONL with `id` and `embedding`, or Parquet/Arrow with a fixed-size-list
    /// column), or - for JSONL on standard output.
    #[arg(long, default_value = "-")]
    output: PathBuf,
    /// mean, cls, max, last (default: the family's).
    #[arg(long)]
    pooling: Option<Pooling>,
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[command(flatten)]
    read: ReadArgs,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Debug, Args)]
struct StratifyArgs {
    /// Labelled data files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// auto or K.
    #[arg(long, default_value = "auto")]
    classes: Classes,
    /// Weight a of the balance term.
    #[arg(long)]
    balance_weight: Option<f64>,
    /// Force 0 to be a threshold.
    #[arg(long)]
    zero_cut: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    read: ReadArgs,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Validate files and print a summary (exit 1 on invalid input).
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Score optional (prediction input).
        #[arg(long)]
        unlabelled: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Split a labelled file into train/val(/test) JSONL files: group-aware (rows with the same
    /// normalised text, or the same `group`, stay together) and stratified on score quintiles.
    Split {
        input: PathBuf,
        /// Output folder (train.jsonl, val.jsonl, and test.jsonl with three fractions).
        #[arg(long)]
        out: PathBuf,
        /// Shares of the parts, summing to 1.
        #[arg(long, value_delimiter = ',', default_value = "0.8,0.1,0.1")]
        fractions: Vec<f64>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Convert between formats (by extension), validating on the way.
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// Output format (default: from the extension).
        #[arg(long)]
        to: Option<Format>,
        /// Score optional (prediction input).
        #[arg(long)]
        unlabelled: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ConvertCommand {
    /// A GGUF file (llama architecture; F32/F16/Q8_0/Q4_0/Q4_1) to a Hugging Face folder.
    Gguf { input: PathBuf, output: PathBuf },
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train(a) => train(&a),
        Command::Eval(a) => eval(&a),
        Command::Predict(a) => predict(&a),
        Command::Encode(a) => encode(&a),
        Command::Stratify(a) => stratify(&a),
        Command::Compare(a) => compare(&a),
        Command::Data(DataCommand::Check { paths, unlabelled, read }) => {
            data_check(&paths, unlabelled, &read)
        }
        Command::Data(DataCommand::Split { input, out, fractions, seed, read }) => {
            data_split(&input, &out, &fractions, seed, &read)
        }
        Command::Data(DataCommand::Convert { input, output, to, unlabelled, read }) => {
            let r = fintune_data::convert(
                &input,
                &output,
                &read.options().labelled(!unlabelled),
                &WriteOptions::new().format_opt(to),
            )?;
            println!("{r}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert(ConvertCommand::Gguf { input, output }) => {
            let r = fintune_model::gguf::convert(&input, &output)?;
            println!("{r}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn train(a: &TrainArgs) -> Result<ExitCode> {
    let (cfg, root, resume) = match &a.resume {
        Some(run) => {
            if a.changes_run() {
                bail!("--resume continues a run with its own config.toml; only --quiet, --device and --threads may be given with it");
            }
            let mut cfg = TrainConfig::from_toml_file(&run.join("config.toml"))
                .map_err(anyhow::Error::msg)?;
            if let Some(d) = &a.device {
                cfg.optim.device = d.clone();
            }
            if let Some(t) = a.threads {
                cfg.optim.threads = t;
            }
            (cfg, run.clone(), true)
        }
        None => {
            let mut cfg = a.config()?;
            if a.print_config {
                print!("{}", cfg.to_toml());
                return Ok(ExitCode::SUCCESS);
            }
            cfg.validate().map_err(anyhow::Error::msg)?;
            let root = cfg.out.clone().unwrap_or_else(|| trainer::default_run_dir(&cfg));
            cfg.out = Some(root.clone());
            (cfg, root, false)
        }
    };
    let mut progress = progress::for_terminal(a.quiet);
    let opts = RunOptions { resume, stop_after: a.stop_after };
    match trainer::train(&cfg, &root, &opts, progress.as_mut())? {
        Outcome::Finished(m) => {
            eprintln!(
                "done: best epoch {} of {}; validation mse {:.4}, pearson {}{}",
                m.best_epoch,
                m.epochs_run,
                m.val.mse,
                m.val.pearson.map_or("n/a".into(), |p| format!("{p:.4}")),
                m.test
                    .as_ref()
                    .map(|t| format!(
                        "; test mse {:.4}, pearson {}",
                        t.mse,
                        t.pearson.map_or("n/a".into(), |p| format!("{p:.4}"))
                    ))
                    .unwrap_or_default()
            );
            eprintln!("run folder: {} (report.md, metrics.json, model/)", root.display());
        }
        Outcome::Interrupted { epochs } => {
            eprintln!(
                "stopped after epoch {epochs} as asked; continue with: fintune train --resume {}",
                root.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &fintune_train::metrics::MetricReport) {
    let f = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{x:.4}"));
    println!("n              {}", r.n);
    println!("mse            {:.4}", r.mse);
    println!("rmse           {:.4}", r.rmse);
    println!("mae            {:.4}", r.mae);
    println!("r2             {}", f(r.r2));
    println!("pearson        {}", f(r.pearson));
    println!("spearman       {}", f(r.spearman));
    println!("cosine         {}", f(r.cosine));
    println!("acc_polarity   {:.4}", r.acc_polarity);
    println!("acc_class      {} (head), {} (score)", f(r.acc_class), f(r.acc_class_from_score));
    println!(
        "macro_f1_class {} (head), {} (score)",
        f(r.macro_f1_class),
        f(r.macro_f1_class_from_score)
    );
    for e in &r.mse_by_region {
        println!("mse {:<10} {} (n = {})", e.region, f(e.mse), e.n);
    }
}

fn eval(a: &EvalArgs) -> Result<ExitCode> {
    if a.data.is_empty() {
        bail!("--data PATH is required");
    }
    let device = fintune_model::device_from_str(&a.device)?;
    let p = Predictor::load(&a.model, device)
        .with_context(|| format!("loading the model in {}", a.model.display()))?;
    let ds = read_dataset(&a.data, &a.read.options())?;
    if !ds.skipped().is_empty() {
        eprintln!("{}", ds.skipped());
    }
    let r = p.evaluate(&ds)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&r);
    }
    Ok(ExitCode::SUCCESS)
}

/// `-` means JSONL on standard input: copy it to a temporary file the readers can open.
fn input_path(input: &Path, tmp: &tempfile_like::TempDir) -> Result<PathBuf> {
    if input.as_os_str() != "-" {
        return Ok(input.to_owned());
    }
    let p = tmp.path().join("stdin.jsonl");
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).context("reading standard input")?;
    std::fs::write(&p, buf)?;
    Ok(p)
}

/// A minimal temporary folder (removed on drop).
mod tempfile_like {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> std::io::Result<Self> {
            let p = std::env::temp_dir().join(format!(
                "fintune-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            std::fs::create_dir_all(&p)?;
            Ok(TempDir(p))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Writes batches either to a file (any format, atomically) or as JSONL to standard output.
enum Sink {
    File(Box<BatchWriter>),
    Stdout(BufWriter<std::io::Stdout>),
}

impl Sink {
    fn open(output: &Path, schema: arrow_schema::SchemaRef) -> Result<Sink> {
        if output.as_os_str() == "-" {
            Ok(Sink::Stdout(BufWriter::new(std::io::stdout())))
        } else {
            Ok(Sink::File(Box::new(BatchWriter::create(output, schema, &WriteOptions::new())?)))
        }
    }

    fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        match self {
            Sink::File(w) => Ok(w.write(batch)?),
            Sink::Stdout(out) => {
                for row in batch_rows_json(batch) {
                    writeln!(out, "{row}")?;
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<u64> {
        match self {
            Sink::File(w) => Ok(w.finish()?),
            Sink::Stdout(mut out) => {
                out.flush()?;
                Ok(0)
            }
        }
    }
}

/// Rows of a prediction/embedding batch as JSON objects.
fn batch_rows_json(batch: &arrow_array::RecordBatch) -> Vec<serde_json::Value> {
    use arrow_array::{Array, FixedSizeListArray, Float32Array, StringArray, UInt32Array};
    let schema = batch.schema();
    let mut rows = vec![serde_json::Map::new(); batch.num_rows()];
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        let any = col.as_any();
        for (i, row) in rows.iter_mut().enumerate() {
            let v = if let Some(a) = any.downcast_ref::<StringArray>() {
                serde_json::json!(a.value(i))
            } else if let Some(a) = any.downcast_ref::<Float32Array>() {
                serde_json::json!(a.value(i))
            } else if let Some(a) = any.downcast_ref::<UInt32Array>() {
                serde_json::json!(a.value(i))
            } else if let Some(a) = any.downcast_ref::<FixedSizeListArray>() {
                let vals = a.value(i);
                let f = vals.as_any().downcast_ref::<Float32Array>().expect("float lists");
                serde_json::json!(f.values().to_vec())
            } else {
                serde_json::Value::Null
            };
            row.insert(name.clone(), v);
        }
    }
    rows.into_iter().map(serde_json::Value::Object).collect()
}

fn predict(a: &PredictArgs) -> Result<ExitCode> {
    let device = fintune_model::device_from_str(&a.device)?;
    let mut p = Predictor::load(&a.model, device)
        .with_context(|| format!("loading the model in {}", a.model.display()))?;
    p.batch_size = a.batch_size;
    let tmp = tempfile_like::TempDir::new()?;
    let input = input_path(&a.input, &tmp)?;
    let opts = a.read.options().labelled(false).batch_size(a.batch_size.max(1) * 16);
    let mut reader = BatchReader::open(&input, &opts)?;
    let mut sink = Sink::open(&a.output, p.output_schema())?;
    let bar = if a.output.as_os_str() != "-" && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut rows = 0usize;
    for batch in reader.by_ref() {
        let batch = batch?;
        rows += batch.num_rows();
        sink.write(&p.predict_batch(&batch)?)?;
        bar.set_message(format!("{rows} rows"));
        bar.tick();
    }
    bar.finish_and_clear();
    let skipped = reader.skipped();
    sink.finish()?;
    if !skipped.is_empty() {
        eprintln!("{skipped}");
    }
    if a.output.as_os_str() != "-" {
        eprintln!("predicted {rows} rows into {}", a.output.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn encode(a: &EncodeArgs) -> Result<ExitCode> {
    use std::sync::Arc;

    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
    use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    let device = fintune_model::device_from_str(&a.device)?;
    let bb = fintune_model::load_backbone(
        &a.backbone,
        &fintune_model::LoadOptions { device, ..Default::default() },
    )?;
    let info = bb.net.info().clone();
    let pooling = a.pooling.unwrap_or(info.default_pooling);
    let enc = fintune_model::TextEncoder::from_file(&a.backbone, a.max_len)?
        .with_padding_side(info.padding_side);
    let h = info.hidden_size as i32;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), h),
            false,
        ),
    ]));
    let tmp = tempfile_like::TempDir::new()?;
    let input = input_path(&a.input, &tmp)?;
    let opts = a.read.options().labelled(false).batch_size(a.batch_size.max(1));
    let mut reader = BatchReader::open(&input, &opts)?;
    let mut sink = Sink::open(&a.output, schema.clone())?;
    let mut rows = 0usize;
    for batch in reader.by_ref() {
        let batch = batch?;
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .cloned()
                .context("validated batches have id and text")
        };
        let ids = col("id")?;
        let texts = col("text")?;
        let t: Vec<&str> = (0..texts.len()).map(|i| texts.value(i)).collect();
        let b = enc.batch(&t, device)?;
        let emb = tch::no_grad(|| pooling.pool(&bb.net.forward_t(&b, false), &b.attention_mask));
        let flat = Vec::<f32>::try_from(
            emb.to_kind(tch::Kind::Float).to_device(tch::Device::Cpu).reshape([-1]),
        )?;
        let mut lb = FixedSizeListBuilder::new(Float32Builder::new(), h);
        for row in flat.chunks(h as usize) {
            lb.values().append_slice(row);
            lb.append(true);
        }
        let cols: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(lb.finish())];
        sink.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
        rows += t.len();
    }
    let skipped = reader.skipped();
    sink.finish()?;
    if !skipped.is_empty() {
        eprintln!("{skipped}");
    }
    if a.output.as_os_str() != "-" {
        eprintln!(
            "encoded {rows} rows ({pooling} pooling, {h} dimensions) into {}",
            a.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stratify(a: &StratifyArgs) -> Result<ExitCode> {
    let ds = read_dataset(&a.paths, &a.read.options())?;
    if !ds.skipped().is_empty() {
        eprintln!("{}", ds.skipped());
    }
    let scores = ds.scores().context("stratify needs labelled data (a score column)")?;
    let mut cfg = DasConfig::default().classes(a.classes).zero_cut(a.zero_cut);
    if let Some(w) = a.balance_weight {
        cfg = cfg.balance_weight(w);
    }
    let das = Stratification::fit(scores, &cfg)?;
    let k = das.num_classes();
    let quantile = Stratification::quantile(scores, k)?;
    let uniform = Stratification::uniform_width(scores, k)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"das": das, "quantile": quantile, "uniform": uniform})
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} scores from {}\n",
        scores.len(),
        a.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    println!(
        "{:<10} {:>3} {:>10} {:>10} {:>10}  thresholds",
        "method", "K", "entropy", "expl.var", "objective"
    );
    for s in [&das, &quantile, &uniform] {
        println!(
            "{:<10} {:>3} {:>10.4} {:>10.4} {:>10.4}  [{}]",
            s.method.as_str(),
            s.num_classes(),
            s.normalized_entropy,
            s.explained_variance,
            s.objective_at(das.balance_weight),
            s.thresholds.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(", ")
        );
    }
    println!();
    for s in [&das, &quantile, &uniform] {
        println!("{s}");
    }
    Ok(ExitCode::SUCCESS)
}

fn data_check(paths: &[PathBuf], unlabelled: bool, read: &ReadArgs) -> Result<ExitCode> {
    match read_dataset(paths, &read.options().labelled(!unlabelled)) {
        Ok(ds) => {
            println!("{}", ds.summary());
            for w in ds.warnings() {
                println!("warning: {w}");
            }
            if !ds.skipped().is_empty() {
                println!("{}", ds.skipped());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.report().is_some() => {
            println!("{e}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn compare(a: &CompareArgs) -> Result<ExitCode> {
    use fintune_train::compare::{self, CompareConfig};
    let mut base = match &a.config {
        Some(p) => TrainConfig::from_toml_file(p).map_err(anyhow::Error::msg)?,
        None => TrainConfig::default(),
    };
    let mut datasets = compare::known_datasets();
    let mut methods = compare::all_methods(&a.grid);
    let mut seeds: Vec<u64> = (1..=a.seeds).collect();
    if a.quick {
        datasets.retain(|d| d.name == "fiqa");
        methods.retain(|m| ["single", "mtl-das", "mtl-das-dwa"].contains(&m.id.as_str()));
        seeds = vec![1, 2];
        base.optim.epochs = 3;
        base.model.max_len = 64;
    }
    if !a.datasets.is_empty() {
        let known: Vec<String> = datasets.iter().map(|d| d.name.clone()).collect();
        for d in &a.datasets {
            if !known.contains(d) {
                bail!("unknown dataset `{d}` (known: {})", known.join(", "));
            }
        }
        datasets.retain(|d| a.datasets.contains(&d.name));
    }
    if !a.methods.is_empty() && a.methods != ["all"] {
        let known: Vec<String> = methods.iter().map(|m| m.id.clone()).collect();
        for m in &a.methods {
            if !known.contains(m) {
                bail!("unknown method `{m}` (known: {})", known.join(", "));
            }
        }
        methods.retain(|m| a.methods.contains(&m.id));
    }
    if let Some(b) = &a.backbone {
        base.model.backbone = b.clone();
    }
    if let Some(t) = &a.tuning {
        base.model.tuning = t.clone();
    }
    if let Some(e) = a.epochs {
        base.optim.epochs = e;
    }
    if let Some(b) = a.batch_size {
        base.optim.batch_size = b;
    }
    if let Some(lr) = a.lr {
        base.optim.lr = lr;
    }
    if let Some(l) = a.max_len {
        base.model.max_len = l;
    }
    if let Some(d) = &a.device {
        base.optim.device = d.clone();
    }
    if let Some(t) = a.threads {
        base.optim.threads = t;
    }
    let shard = match &a.shard {
        None => None,
        Some(s) => {
            let (k, n) = s.split_once('/').context("--shard takes K/N, e.g. 0/2")?;
            let (k, n): (usize, usize) = (k.parse()?, n.parse()?);
            if n == 0 || k >= n {
                bail!("--shard K/N needs 0 <= K < N, got {s}");
            }
            Some((k, n))
        }
    };
    if !a.data_root.is_dir() {
        bail!(
            "{} is not a folder: pass --data-root with the shared data sets",
            a.data_root.display()
        );
    }
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(if a.quick { "runs/compare-quick" } else { "runs/compare" })
    });
    let cfg = CompareConfig {
        out: out.clone(),
        data_root: a.data_root.clone(),
        datasets,
        methods,
        seeds,
        base,
        shard,
        keep_models: a.keep_models,
        command: std::iter::once("fintune".to_owned())
            .chain(std::env::args().skip(1))
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" "),
    };
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

fn data_split(
    input: &Path,
    out: &Path,
    fractions: &[f64],
    seed: u64,
    read: &ReadArgs,
) -> Result<ExitCode> {
    let names: &[&str] = match fractions.len() {
        2 => &["train", "val"],
        3 => &["train", "val", "test"],
        n => bail!("--fractions needs 2 or 3 shares, got {n}"),
    };
    let ds = read_dataset(&[input], &read.options())?;
    let parts = fintune_train::prepare::split_groups(&ds, fractions, seed)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, idx) in names.iter().zip(&parts) {
        let p = out.join(format!("{name}.jsonl"));
        let n = fintune_data::write_dataset(&ds.take(idx), &p, &WriteOptions::new())?;
        println!("{name}: {n} rows -> {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
