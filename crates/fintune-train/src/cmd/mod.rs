//! The subcommands of `fintune` (binary-only module): argument structs and calls into the
//! library, nothing else.
//!
//! - [`train`]: `train` and `compare`, with the run overrides declared once ([`train::RunOverrides`]);
//! - [`score`]: `eval`, `predict`, `encode`;
//! - [`data`]: `stratify`, `data check|split|convert`, `convert gguf`;
//! - [`pair`]: `pair`, two methods of `results.json` files paired;
//! - [`io`]: standard input and output, the output file checks, and the cleanup on
//!   SIGINT/SIGTERM.

mod data;
mod io;
mod pair;
mod ranks;
mod score;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use fintune_data::{Format, ReadOptions};

pub use io::Interrupted;

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
    Train(Box<train::TrainArgs>),
    /// Metrics of a saved model on labelled data.
    Eval(score::EvalArgs),
    /// Scores, classes and class probabilities for texts.
    Predict(score::PredictArgs),
    /// Sentence embeddings from a backbone (feature extraction).
    Encode(score::EncodeArgs),
    /// DAS thresholds for a file's scores, beside the quantile and uniform baselines.
    Stratify(data::StratifyArgs),
    /// Check or convert data files.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Convert model files.
    #[command(subcommand)]
    Convert(data::ConvertCommand),
    /// The experiment matrix: datasets x methods x seeds, then results.md/json.
    Compare(Box<train::CompareArgs>),
    /// Two methods of results.json files paired over their shared cells and seeds: change,
    /// bootstrap interval, paired t and Wilcoxon p-values.
    Pair(pair::PairArgs),
}

/// How input files are read (shared by the data-reading subcommands).
#[derive(Debug, Args, Clone)]
struct ReadArgs {
    /// Input format (default: from the extension): jsonl, json, csv, tsv, parquet, arrow,
    /// arrow-stream.
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
    /// Column holding the target (company, ticker; read by models trained with
    /// --input text+target).
    #[arg(long, default_value = "target")]
    target_col: String,
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
            .target_col(&self.target_col)
            .skip_invalid(self.skip_invalid)
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train(a) => train::train(&a),
        Command::Compare(a) => train::compare(&a),
        Command::Pair(a) => pair::run(&a),
        Command::Eval(a) => score::eval(&a),
        Command::Predict(a) => score::predict(&a),
        Command::Encode(a) => score::encode(&a),
        Command::Stratify(a) => data::stratify(&a),
        Command::Data(c) => data::data(c),
        Command::Convert(c) => data::convert(c),
    }
}

/// Paths given on the command line, for messages.
fn show(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
