//! `fintune pair`: two methods of `results.json` files, paired over their shared cells and
//! seeds ([`fintune_train::compare::pair`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use fintune_train::compare::pair::{markdown, pair, Side};
use fintune_train::compare::Results;

/// `FILE#METHOD`: a method of a `results.json` file.
fn side(s: &str) -> Result<Side, String> {
    match s.rsplit_once('#') {
        Some((file, method)) if !file.is_empty() && !method.is_empty() => {
            Ok(Side { file: PathBuf::from(file), method: method.to_owned() })
        }
        _ => Err("expected FILE#METHOD, e.g. docs/results/mtl-fiqa-cv/results.json#single".into()),
    }
}

#[derive(Debug, Args)]
pub(super) struct PairArgs {
    /// The baseline: FILE#METHOD, a method of a `results.json` written by `fintune compare`.
    #[arg(value_parser = side)]
    base: Side,
    /// The method compared with it: FILE#METHOD (the same file or another, e.g. another
    /// backbone's matrix on the same cells).
    #[arg(value_parser = side)]
    other: Side,
    /// The data set (needed when both methods ran on several).
    #[arg(long)]
    dataset: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: &PairArgs) -> Result<ExitCode> {
    let base: Results = fintune_train::run::read_json(&a.base.file)?;
    let other: Results = if a.other.file == a.base.file {
        base.clone()
    } else {
        fintune_train::run::read_json(&a.other.file)?
    };
    let p = pair((&base, a.base.clone()), (&other, a.other.clone()), a.dataset.as_deref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", markdown(&p));
    }
    Ok(ExitCode::SUCCESS)
}
