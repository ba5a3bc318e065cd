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

fn threads() -> usize {
    std::env::var("FINTUNE_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `cargo xtask bench-model [BATCH SEQ ITERS]`: MiniLM forward and forward+backward per
/// batch, fintune against PyTorch eager + transformers, same threads.
pub fn model(args: &[String]) -> Result<()> {
    let lay = setup::run(&setup::Options { full: true, ..Default::default() })?;
    let b = args.first().cloned().unwrap_or_else(|| "32".into());
    let l = args.get(1).cloned().unwrap_or_else(|| "64".into());
    let iters = args.get(2).cloned().unwrap_or_else(|| "20".into());
    let t = threads().to_string();
    let dir = lay.home.join("models/all-MiniLM-L6-v2");
    println!("bench-model: MiniLM, batch {b} x {l} tokens, {iters} timed iterations (median), {t} threads");
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

#[cfg(test)]
mod tests {
    use super::json_num;

    #[test]
    fn reads_numbers_from_flat_json() {
        let l = r#"{"impl": "x", "forward_ms": 12.5, "peak_rss_mib": 300}"#;
        assert_eq!(json_num(l, "forward_ms"), Some(12.5));
        assert_eq!(json_num(l, "peak_rss_mib"), Some(300.0));
        assert_eq!(json_num(l, "missing"), None);
    }
}
