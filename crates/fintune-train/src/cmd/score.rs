//! `fintune eval`, `predict` and `encode`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use fintune_data::{read_dataset, BatchReader, SkipReport};
use fintune_model::Pooling;
use fintune_train::config::{DeviceSpec, ENCODE_MAX_LEN, PREDICT_BATCH_SIZE};
use fintune_train::metrics::MetricReport;
use fintune_train::predict::{batch_targets, Encoder, OutputBatch, Predictor};

use super::io::{catch_interrupts, check_interrupt, check_output, input_path, Sink};
use super::ReadArgs;

/// Rows per batch: at least 1.
fn batch_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be >= 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Args)]
pub(super) struct EvalArgs {
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
    /// Rows per batch.
    #[arg(long, default_value_t = PREDICT_BATCH_SIZE, value_parser = batch_size)]
    batch_size: usize,
    /// cpu, cuda, cuda:N, auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

#[derive(Debug, Args)]
pub(super) struct PredictArgs {
    /// A run's model folder (RUN/model).
    #[arg(long)]
    model: PathBuf,
    /// Input files (read in order, written as one output), or - for JSONL on standard input.
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// Output file (JSONL, CSV, Parquet, Arrow by extension), or - for JSONL on standard
    /// output. Never an input file. With a shard: the output dataset's folder, which receives
    /// `part-K-of-N.<ext>`.
    #[arg(long, default_value = "-")]
    output: PathBuf,
    #[command(flatten)]
    read: ReadArgs,
    /// Rows per batch.
    #[arg(long, default_value_t = PREDICT_BATCH_SIZE, value_parser = batch_size)]
    batch_size: usize,
    /// cpu, cuda, cuda:N, auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// K/N: predict every N-th unit starting at K (0-based; units are the inputs' Parquet row
    /// groups, and whole files of other formats) into OUTPUT/part-K-of-N.<ext>. Without it the
    /// shard comes from the scheduler when there is one (as for `compare`); `none` predicts
    /// everything into OUTPUT whatever the environment says.
    #[arg(long)]
    shard: Option<String>,
    /// Format of a shard's part file (default parquet).
    #[arg(long, default_value = "parquet")]
    part_format: fintune_data::Format,
    /// Write the input rows (id, text, target, source, group) with the model's scores, clipped
    /// to [-1, 1], in place of any score they had, and no classes: a labelled file another
    /// model can train on (a large model teaching a small one on texts without gold scores).
    #[arg(long)]
    as_data: bool,
}

#[derive(Debug, Args)]
pub(super) struct EncodeArgs {
    /// Hugging Face model folder.
    #[arg(long)]
    backbone: PathBuf,
    /// Input file, or - for JSONL on standard input.
    #[arg(long)]
    input: PathBuf,
    /// Output file (JSONL with `id` and `embedding`, or Parquet/Arrow with a fixed-size-list
    /// column), or - for JSONL on standard output. Never the input file.
    #[arg(long, default_value = "-")]
    output: PathBuf,
    /// mean, cls, max, last (default: the family's).
    #[arg(long)]
    pooling: Option<Pooling>,
    /// Truncation length in tokens (at most the backbone's position limit).
    #[arg(long, default_value_t = ENCODE_MAX_LEN)]
    max_len: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = PREDICT_BATCH_SIZE, value_parser = batch_size)]
    batch_size: usize,
    #[command(flatten)]
    read: ReadArgs,
    /// cpu, cuda, cuda:N, auto.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

fn load_predictor(model: &std::path::Path, device: DeviceSpec, bs: usize) -> Result<Predictor> {
    let p = Predictor::load(model, device.resolve()?)
        .with_context(|| format!("loading the model in {}", model.display()))?;
    Ok(p.with_batch_size(bs)?)
}

fn print_report(r: &MetricReport) {
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

pub(super) fn eval(a: &EvalArgs) -> Result<ExitCode> {
    if a.data.is_empty() {
        bail!("--data PATH is required");
    }
    let p = load_predictor(&a.model, a.device, a.batch_size)?;
    let ds = read_dataset(&a.data, &a.read.options())?;
    if !ds.skipped().is_empty() {
        eprintln!("{}", ds.skipped());
    }
    let files = super::show(&a.data);
    p.check_targets(&ds.targets(), std::path::Path::new(&files), &a.read.target_col)?;
    let r = p.evaluate(&ds)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&r);
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `input` batch by batch, writes `f`'s output for each to `output`; stops cleanly
/// (temporary files removed) on SIGINT/SIGTERM. Returns the rows and the skipped-row report.
fn stream<B: OutputBatch>(
    input: &std::path::Path,
    output: &std::path::Path,
    opts: &fintune_data::ReadOptions,
    schema: arrow_schema::SchemaRef,
    mut f: impl FnMut(&arrow_array::RecordBatch) -> Result<B>,
) -> Result<(usize, SkipReport)> {
    let pieces = [(input.to_path_buf(), None)];
    stream_pieces(&pieces, output, opts, schema, &mut |b, _| f(b))
}

/// [`stream`] over several inputs in order, each whole (`None`) or some of its units
/// (`fintune_data::BatchReader::open_units`), into one output. An empty list writes an empty
/// output.
fn stream_pieces<B: OutputBatch>(
    pieces: &[(PathBuf, Option<Vec<usize>>)],
    output: &std::path::Path,
    opts: &fintune_data::ReadOptions,
    schema: arrow_schema::SchemaRef,
    f: &mut dyn FnMut(&arrow_array::RecordBatch, &std::path::Path) -> Result<B>,
) -> Result<(usize, SkipReport)> {
    for (input, _) in pieces {
        check_output(input, output)?;
    }
    catch_interrupts();
    let mut sink = Sink::open(output, schema)?;
    let bar = if output.as_os_str() != "-" && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut rows = 0usize;
    let mut skipped = SkipReport::default();
    for (input, units) in pieces {
        let mut stdin_copy = None;
        let input = input_path(input, &mut stdin_copy)?;
        let mut reader = match units {
            None => BatchReader::open(&input, opts)?,
            Some(u) => BatchReader::open_units(&input, opts, u)?,
        };
        for batch in reader.by_ref() {
            check_interrupt()?;
            let batch = batch?;
            rows += batch.num_rows();
            sink.write(&f(&batch, &input)?)?;
            bar.set_message(format!("{rows} rows"));
            bar.tick();
        }
        check_interrupt()?;
        let s = reader.skipped();
        if !s.is_empty() {
            eprintln!("{}: {s}", input.display());
        }
        skipped.count += s.count;
        skipped.problems.extend(s.problems);
    }
    bar.finish_and_clear();
    sink.finish()?;
    Ok((rows, skipped))
}

pub(super) fn predict(a: &PredictArgs) -> Result<ExitCode> {
    if a.input.len() > 1 && a.input.iter().any(|i| i.as_os_str() == "-") {
        bail!("--input -: standard input cannot be read beside files");
    }
    for i in &a.input {
        check_output(i, &a.output)?;
    }
    let shard = super::train::resolve_shard(a.shard.as_deref())?;
    let p = load_predictor(&a.model, a.device, a.batch_size)?;
    let opts = a.read.options().labelled(false).batch_size(a.batch_size * 16);
    let mut first = true;
    let mut check = |b: &arrow_array::RecordBatch, input: &std::path::Path| -> Result<()> {
        if std::mem::take(&mut first) {
            // The first batch decides (predict streams: it cannot look at the whole input).
            p.check_targets(&batch_targets(b), input, &a.read.target_col)?;
        }
        Ok(())
    };
    let (pieces, output) = match &shard {
        None => (a.input.iter().map(|i| (i.clone(), None)).collect::<Vec<_>>(), a.output.clone()),
        Some(sh) => {
            if a.output.as_os_str() == "-" || a.input.iter().any(|i| i.as_os_str() == "-") {
                bail!("a sharded predict reads files and writes a folder: --input FILE... --output DIR");
            }
            let mut units = vec![];
            for i in &a.input {
                let n = fintune_data::read_units(i, &opts)?;
                units.extend((0..n).map(|u| (i.clone(), u)));
            }
            let mut pieces: Vec<(PathBuf, Option<Vec<usize>>)> = vec![];
            for (k, (file, u)) in units.iter().enumerate() {
                if k % sh.count != sh.index {
                    continue;
                }
                match pieces.last_mut() {
                    Some((f, Some(list))) if f == file => list.push(*u),
                    _ => pieces.push((file.clone(), Some(vec![*u]))),
                }
            }
            std::fs::create_dir_all(&a.output)
                .with_context(|| format!("creating the output folder {}", a.output.display()))?;
            let part = a.output.join(format!(
                "part-{}-of-{}.{}",
                sh.index,
                sh.count,
                a.part_format.extension()
            ));
            eprintln!(
                "predict: {sh}: {} of {} units ({} files) into {}",
                pieces.iter().map(|x| x.1.as_ref().map_or(1, Vec::len)).sum::<usize>(),
                units.len(),
                a.input.len(),
                part.display()
            );
            (pieces, part)
        }
    };
    let (rows, _) = if a.as_data {
        let schema = fintune_data::schema::dataset_schema(true);
        stream_pieces(&pieces, &output, &opts, schema, &mut |b, input| {
            check(b, input)?;
            Ok(p.score_rows(b)?)
        })?
    } else {
        stream_pieces(&pieces, &output, &opts, p.output_schema(), &mut |b, input| {
            check(b, input)?;
            Ok(p.predict_batch(b)?)
        })?
    };
    if output.as_os_str() != "-" {
        eprintln!("predicted {rows} rows into {}", output.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn encode(a: &EncodeArgs) -> Result<ExitCode> {
    check_output(&a.input, &a.output)?;
    let e = Encoder::load(&a.backbone, a.pooling, a.max_len, a.device.resolve()?)?;
    let opts = a.read.options().labelled(false).batch_size(a.batch_size);
    let (rows, _) =
        stream(&a.input, &a.output, &opts, e.output_schema(), |b| Ok(e.encode_batch(b)?))?;
    if a.output.as_os_str() != "-" {
        eprintln!(
            "encoded {rows} rows ({} pooling, {} dimensions) into {}",
            e.pooling,
            e.dimensions(),
            a.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
