//! `fintune stratify`, `data check|split|convert` and `convert gguf`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fintune_das::{Classes, DasConfig, Stratification};
use fintune_data::{read_dataset, Format, WriteOptions};

use super::{show, ReadArgs};

#[derive(Debug, Args)]
pub(super) struct StratifyArgs {
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
pub(super) enum DataCommand {
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
        /// Parquet output: most rows per row group (the units of a sharded `predict`).
        #[arg(long)]
        row_group_rows: Option<usize>,
        #[command(flatten)]
        read: ReadArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ConvertCommand {
    /// A GGUF file (llama architecture; F32/F16/Q8_0/Q4_0/Q4_1) to a Hugging Face folder.
    Gguf { input: PathBuf, output: PathBuf },
}

pub(super) fn data(c: DataCommand) -> Result<ExitCode> {
    match c {
        DataCommand::Check { paths, unlabelled, read } => data_check(&paths, unlabelled, &read),
        DataCommand::Split { input, out, fractions, seed, read } => {
            data_split(&input, &out, &fractions, seed, &read)
        }
        DataCommand::Convert { input, output, to, unlabelled, row_group_rows, read } => {
            let mut w = WriteOptions::new().format_opt(to);
            if let Some(n) = row_group_rows {
                w = w.row_group_rows(n);
            }
            let r =
                fintune_data::convert(&input, &output, &read.options().labelled(!unlabelled), &w)?;
            println!("{r}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(super) fn convert(c: ConvertCommand) -> Result<ExitCode> {
    match c {
        ConvertCommand::Gguf { input, output } => {
            let r = fintune_model::gguf::convert(&input, &output)?;
            println!("{r}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(super) fn stratify(a: &StratifyArgs) -> Result<ExitCode> {
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
    println!("{} scores from {}\n", scores.len(), show(&a.paths));
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
