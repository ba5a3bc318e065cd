//! Benchmarks that compare fintune with the PyTorch reference in one invocation.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::util::{capture, cargo, project_root, tail};

/// A number field of a one-line JSON object (the benchmark programs print flat objects).
pub fn json_num(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = line[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn last_json_line(out: &str) -> Result<String> {
    out.lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .map(str::to_owned)
        .context("no JSON result line in the output")
}

/// The `--backbone minilm|mpnet|DIR` option (default minilm), taken out of `args`: the setup
/// that provides it and its folder below `.fintune/models` (or the folder given).
pub fn backbone_option(args: &[String]) -> Result<(setup::Options, String, Vec<String>)> {
    let mut rest = Vec::new();
    let mut name = "minilm".to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--backbone" {
            name = it.next().context("--backbone needs minilm, mpnet or a model folder")?.clone();
        } else {
            rest.push(a.clone());
        }
    }
    let mut opts = setup::Options { full: true, ..Default::default() };
    let dir = match name.as_str() {
        "minilm" => "all-MiniLM-L6-v2".to_owned(),
        "mpnet" => {
            opts.backbones.push("mpnet".into());
            "all-mpnet-base-v2".to_owned()
        }
        other => std::path::absolute(other)?.to_string_lossy().into_owned(),
    };
    Ok((opts, dir, rest))
}

fn threads() -> usize {
    std::env::var("FINTUNE_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `cargo xtask bench-model [--backbone minilm|mpnet|DIR] [BATCH SEQ ITERS]`: forward and
/// forward+backward per batch (MiniLM by default), fintune against PyTorch eager +
/// transformers, same threads.
pub fn model(args: &[String]) -> Result<()> {
    let (opts, backbone, args) = backbone_option(args)?;
    let args = &args;
    let lay = setup::run(&opts)?;
    let b = args.first().cloned().unwrap_or_else(|| "32".into());
    let l = args.get(1).cloned().unwrap_or_else(|| "64".into());
    let iters = args.get(2).cloned().unwrap_or_else(|| "20".into());
    let t = threads().to_string();
    let dir = lay.home.join("models").join(&backbone);
    println!("bench-model: {backbone}, batch {b} x {l} tokens, {iters} timed iterations (median), {t} threads");
    let rust = match capture(
        cargo()
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "fintune-model",
                "--example",
                "bench_forward",
                "--",
            ])
            .arg(&dir)
            .args([&b, &l, &iters, &t]),
    ) {
        Ok(out) => last_json_line(&out)?,
        Err((what, out)) => bail!("{what}\n{}", tail(&out, 20)),
    };
    let py = match capture(
        Command::new(&lay.venv_python)
            .arg(project_root().join("xtask/python/bench_forward.py"))
            .arg(&dir)
            .args([&b, &l, &iters, &t]),
    ) {
        Ok(out) => last_json_line(&out)?,
        Err((what, out)) => bail!("{what}\n{}", tail(&out, 20)),
    };
    println!("  fintune: {rust}\n  pytorch: {py}");
    println!("\n| | fintune (tch) | PyTorch eager | fintune speed-up |\n|---|---|---|---|");
    for (key, name) in
        [("forward_ms", "forward ms/batch"), ("forward_backward_ms", "forward+backward ms/batch")]
    {
        let (r, p) =
            (json_num(&rust, key).unwrap_or(f64::NAN), json_num(&py, key).unwrap_or(f64::NAN));
        println!("| {name} | {r:.1} | {p:.1} | {:.2}x |", p / r);
    }
    let (r, p) = (
        json_num(&rust, "peak_rss_mib").unwrap_or(f64::NAN),
        json_num(&py, "peak_rss_mib").unwrap_or(f64::NAN),
    );
    println!("| peak RSS MiB | {r:.0} | {p:.0} | {:.2}x less |", p / r);
    Ok(())
}

/// `cargo xtask bench-peer [--backbone minilm|mpnet|DIR] [--quick] [EPOCHS]`: fine-tunes
/// MiniLM (or the backbone given) on FiQA (a 90/10 split of the shared training file) with
/// fintune and with a PyTorch + transformers script using the same hyperparameters, in one
/// invocation; prints samples/s, peak RSS and validation MSE of both.
///
/// `--quick` (CI): the first [`QUICK_TEXTS`] texts, 1 epoch, the dev build, the length-bucketed
/// peer only (fintune's batching, so like for like); fails when fintune's samples/s is below
/// `FINTUNE_PEER_FLOOR` (default [`PEER_FLOOR`]) times the peer's.
pub fn peer(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let args: Vec<String> = args.iter().filter(|a| *a != "--quick").cloned().collect();
    let (opts, backbone, args) = backbone_option(&args)?;
    let lay = setup::run(&opts)?;
    let dir = lay.home.join("models").join(&backbone);
    let epochs = args.first().cloned().unwrap_or_else(|| if quick { "1" } else { "3" }.into());
    let t = threads().to_string();
    let root = project_root();
    let work = root.join("target/bench-peer");
    std::fs::create_dir_all(&work)?;
    let fiqa = root.join("../shared/data/fiqa2018_task1/train.jsonl");
    let mut source = if fiqa.exists() { fiqa } else { root.join("fixtures/train.jsonl") };
    if quick {
        let text = std::fs::read_to_string(&source)?;
        let first: Vec<&str> =
            text.lines().filter(|l| !l.trim().is_empty()).take(QUICK_TEXTS).collect();
        let subset = work.join("quick.jsonl");
        std::fs::write(&subset, first.join("\n") + "\n")?;
        source = subset;
    }
    println!("bench-peer: {backbone}, {t} threads, {epochs} epochs, data {}", source.display());
    let fintune = |argv: &[&str]| -> Result<String> {
        let mut cmd = cargo();
        cmd.args(["run", "--quiet", "-p", "fintune-train", "--bin", "fintune"]);
        if !quick {
            cmd.arg("--release");
        }
        cmd.arg("--").args(argv);
        capture(&mut cmd).map_err(|(what, out)| anyhow::anyhow!("{what}\n{}", tail(&out, 20)))
    };
    let data = work.join("data");
    fintune(&[
        "data",
        "split",
        &source.to_string_lossy(),
        "--out",
        &data.to_string_lossy(),
        "--fractions",
        "0.9,0.1",
        "--seed",
        "42",
    ])?;
    let (train, val) = (data.join("train.jsonl"), data.join("val.jsonl"));
    let run = work.join("fintune-run");
    let _ = std::fs::remove_dir_all(&run);
    let cfg = work.join("fintune.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\ntrain = [{:?}]\nval = {:?}\n[model]\nbackbone = {:?}\n[optim]\nepochs = {epochs}\npatience = 1000\nthreads = {t}\n[task]\nstrata = \"none\"\n",
            train.to_string_lossy(),
            val.to_string_lossy(),
            dir.to_string_lossy()
        ),
    )?;
    fintune(&[
        "train",
        "--config",
        &cfg.to_string_lossy(),
        "--out",
        &run.to_string_lossy(),
        "--quiet",
    ])?;
    let metrics = std::fs::read_to_string(run.join("metrics.json"))?;
    let sps = json_field(&metrics, "samples_per_s").context("samples_per_s in metrics.json")?;
    let rss = json_field(&metrics, "peak_rss_mib").unwrap_or(f64::NAN);
    // The last epoch's validation MSE (epochs[] lists them in order; take the last "mse").
    let last_epoch = metrics.rfind("\"epoch\":").context("epochs in metrics.json")?;
    let val_mse = json_field(&metrics[last_epoch..], "mse").unwrap_or(f64::NAN);
    let py = |extra: &[&str]| -> Result<String> {
        let mut cmd = Command::new(&lay.venv_python);
        cmd.arg(root.join("xtask/python/peer_finetune.py"))
            .arg(&dir)
            .arg(&train)
            .arg(&val)
            .args(["--epochs", &epochs, "--threads", &t])
            .args(extra);
        match capture(&mut cmd) {
            Ok(out) => last_json_line(&out),
            Err((what, out)) => bail!("{what}\n{}", tail(&out, 20)),
        }
    };
    let plain = if quick { None } else { Some(py(&[])?) };
    let bucketed = py(&["--bucket"])?;
    println!("\n| | samples/s (training steps) | peak RSS MiB | validation MSE (last epoch) |\n|---|---|---|---|");
    println!("| fintune | {sps:.1} | {rss:.0} | {val_mse:.4} |");
    let peers = plain.iter().map(|l| ("PyTorch + transformers (shuffled batches)", l));
    for (name, line) in peers.chain([("PyTorch + transformers (length-bucketed)", &bucketed)]) {
        let (s, r, v) = (
            json_num(line, "samples_per_s").unwrap_or(f64::NAN),
            json_num(line, "peak_rss_mib").unwrap_or(f64::NAN),
            json_num(line, "val_mse").unwrap_or(f64::NAN),
        );
        println!("| {name} | {s:.1} | {r:.0} | {v:.4} |");
        println!(
            "| fintune / {name} | {:.2}x | {:.2}x less | {:+.4} |",
            sps / s,
            r / rss,
            val_mse - v
        );
    }
    if quick {
        let floor = std::env::var("FINTUNE_PEER_FLOOR")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(PEER_FLOOR);
        let ratio = sps / json_num(&bucketed, "samples_per_s").unwrap_or(f64::NAN);
        println!("\nbench-peer --quick: fintune / length-bucketed PyTorch samples/s = {ratio:.2}x (floor {floor:.2}x)");
        if ratio.is_nan() || ratio < floor {
            bail!("bench-peer --quick: fintune's samples/s ratio {ratio:.2}x is below the floor {floor:.2}x");
        }
    }
    Ok(())
}

/// Texts of `bench-peer --quick` (before its 90/10 split).
const QUICK_TEXTS: usize = 256;
/// The lowest fintune / PyTorch samples/s ratio `bench-peer --quick` accepts (like for like).
const PEER_FLOOR: f64 = 1.0;

/// A number field anywhere in a (pretty-printed) JSON text: the first `"key": number`.
pub fn json_field(text: &str, key: &str) -> Option<f64> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = text[at..].trim_start();
    let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// `cargo xtask gpu-check`: on a GPU machine, builds with `--features cuda`, runs the GPU
/// tests (kernels against fallbacks) and the GPU benchmarks, and writes
/// `target/gpu-report.md`.
pub fn gpu_check() -> Result<()> {
    let t0 = std::time::Instant::now();
    let lay = setup::run(&setup::Options {
        cuda: true,
        llm: vec!["smollm2".into()],
        ..Default::default()
    })?;
    let root = project_root();
    let models = lay.home.join("models");
    let (minilm, smol) = (models.join("all-MiniLM-L6-v2"), models.join("SmolLM2-135M-Instruct"));
    let mut report = String::from("# fintune GPU check\n\n");
    let run_cargo = |args: &[&str]| -> Result<String> {
        let mut cmd = cargo();
        cmd.args(args);
        let out = capture(&mut cmd)
            .map_err(|(what, out)| anyhow::anyhow!("{what}\n{}", tail(&out, 40)))?;
        Ok(out)
    };
    println!("gpu-check: GPU tests (kernels against fallbacks, CUDA training paths)");
    let tests = run_cargo(&[
        "test",
        "--release",
        "--features",
        "cuda",
        "-p",
        "fintune-model",
        "--",
        "--nocapture",
        "--include-ignored",
        "kernels",
        "cuda",
    ])?;
    if tests.contains("skipped: no CUDA device") {
        bail!("libtorch sees no CUDA device: gpu-check needs a GPU machine (the tests skipped)");
    }
    report += "## Tests\n\n```\n";
    report += &tests
        .lines()
        .filter(|l| l.contains("CUDA kernels") || l.starts_with("test result"))
        .collect::<Vec<_>>()
        .join("\n");
    report += "\n```\n\n## Kernels against libtorch fallbacks\n\n```\n";
    println!("gpu-check: kernel benchmarks");
    let k = run_cargo(&[
        "run",
        "--release",
        "--quiet",
        "--features",
        "cuda",
        "-p",
        "fintune-model",
        "--example",
        "bench_kernels",
        "--",
        &minilm.to_string_lossy(),
        &smol.to_string_lossy(),
    ])?;
    report += k.trim();
    report += "\n```\n\n## Training steps on the GPU\n\n```\n";
    println!("gpu-check: training-step benchmarks");
    for (dir, tuning, b, l, prec) in [
        (&minilm, "full", "32", "128", "f32"),
        (&minilm, "full", "32", "128", "bf16"),
        (&smol, "lora:8", "16", "64", "f32"),
        (&smol, "lora:8", "16", "64", "bf16"),
    ] {
        let mut cmd = cargo();
        cmd.env("FINTUNE_PRECISION", prec).args([
            "run",
            "--release",
            "--quiet",
            "--features",
            "cuda",
            "-p",
            "fintune-train",
            "--example",
            "bench_step",
            "--",
        ]);
        cmd.arg(dir).args([tuning, b, l, "20", "cuda"]);
        let out = capture(&mut cmd)
            .map_err(|(what, out)| anyhow::anyhow!("{what}\n{}", tail(&out, 40)))?;
        report += &format!("{prec}: {}\n", last_json_line(&out)?);
    }
    report += &format!("```\n\nTotal {:.0} s.\n", t0.elapsed().as_secs_f64());
    let path = root.join("target/gpu-report.md");
    std::fs::write(&path, &report)?;
    println!("{report}\ngpu-check: report written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{backbone_option, json_num};

    #[test]
    fn backbone_option_picks_the_folder_and_its_setup() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (opts, dir, rest) =
            backbone_option(&args(&["16", "--backbone", "mpnet", "64"])).unwrap();
        assert_eq!((dir.as_str(), rest), ("all-mpnet-base-v2", args(&["16", "64"])));
        assert_eq!(opts.backbones, ["mpnet"]);
        let (opts, dir, _) = backbone_option(&args(&["3"])).unwrap();
        assert_eq!((dir.as_str(), opts.backbones.len()), ("all-MiniLM-L6-v2", 0));
        assert!(backbone_option(&args(&["--backbone"])).is_err());
    }

    #[test]
    fn reads_numbers_from_flat_json() {
        let l = r#"{"impl": "x", "forward_ms": 12.5, "peak_rss_mib": 300}"#;
        assert_eq!(json_num(l, "forward_ms"), Some(12.5));
        assert_eq!(json_num(l, "peak_rss_mib"), Some(300.0));
        assert_eq!(json_num(l, "missing"), None);
    }
}
