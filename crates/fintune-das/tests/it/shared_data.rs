//! Acceptance on the real training files in `../shared/data`: ignored by default
//! (`#[ignore = "needs ../shared/data"]`), run by `cargo xtask test` when the folder exists.
//!
//! `cargo test -p fintune-das --test it shared_data -- --ignored --nocapture` prints the DAS
//! table and the baselines for each file (the README figures).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fintune_das::{rarity, DasConfig, Method, Stratification};

const FILES: [&str; 3] = [
    "fiqa2018_task1/train.jsonl",
    "semeval2017_task5/headlines_train.jsonl",
    "semeval2017_task5/microblogs_train.jsonl",
];

fn data_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !dir.is_dir() {
        bail!("the real data folder {} is absent", dir.display());
    }
    Ok(dir)
}

/// Reads the `score` field of every JSONL record, failing with file, line and reason.
fn read_scores(path: &Path) -> Result<Vec<f32>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
        let Some(s) = v.get("score").and_then(serde_json::Value::as_f64) else {
            bail!("{}:{}: column \"score\" missing or not a number", path.display(), i + 1);
        };
        out.push(s as f32);
    }
    Ok(out)
}

#[test]
#[ignore = "needs ../shared/data"]
fn das_defaults_meet_acceptance_on_real_training_files() -> Result<()> {
    let dir = data_dir()?;
    let expected_n = [608, 1038, 1621];
    for (file, n) in FILES.iter().zip(expected_n) {
        let scores = read_scores(&dir.join(file))?;
        assert_eq!(scores.len(), n, "{file}");
        let das = Stratification::fit(&scores, &DasConfig::default())?;
        let k = das.num_classes();
        let q = Stratification::quantile(&scores, k)?;
        let u = Stratification::uniform_width(&scores, k)?;
        println!("== {file}\n{das}\n{q}\n{u}");
        assert_eq!(das.method, Method::Das);
        assert!(das.normalized_entropy >= 0.95, "{file}: {das}");
        assert!(das.explained_variance >= 0.9, "{file}: {das}");
        assert!(das.candidates_exact, "{file}");
        // Constraints hold.
        let c = das.constraints.expect("das records its constraints");
        assert_eq!(c.min_count, 8.max(n.div_ceil(50)));
        assert!(das.classes.iter().all(|cl| cl.count >= c.min_count), "{file}");
        assert!(das.thresholds.windows(2).all(|w| w[1] - w[0] >= 0.05 - 1e-9), "{file}");
        // The optimum is at least as good as the quantile cut when that is feasible too.
        let q_feasible = q.classes.iter().all(|cl| cl.count >= c.min_count)
            && q.thresholds.windows(2).all(|w| w[1] - w[0] >= 0.05 - 1e-9);
        if q_feasible {
            assert!(
                das.objective <= q.objective + 1e-12,
                "{file}: {} > {}",
                das.objective,
                q.objective
            );
        }
        // Labels of the training scores reproduce the class counts.
        let labels = das.assign_all(&scores)?;
        let mut counts = vec![0usize; k];
        for l in labels {
            counts[l] += 1;
        }
        assert_eq!(counts, das.counts(), "{file}");
        // Rarity weights: mean 1, the extremes weigh more than the bulk.
        let w = rarity(&scores, 0.1)?;
        let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / w.len() as f64;
        assert!((mean - 1.0).abs() < 1e-5);
        let (mut lo, mut hi) = (0usize, 0usize);
        for (i, &s) in scores.iter().enumerate() {
            if s.abs() > 0.8 && w[i] > 1.0 {
                hi += 1;
            }
            if s.abs() > 0.8 {
                lo += 1;
            }
        }
        assert!(lo > 0 && hi == lo, "{file}: {hi} of {lo} extreme scores have weight > 1");
    }
    Ok(())
}

#[test]
#[ignore = "needs ../shared/data"]
fn zero_cut_on_real_data_keeps_polarities_apart() -> Result<()> {
    let dir = data_dir()?;
    for file in FILES {
        let scores = read_scores(&dir.join(file))?;
        let das = Stratification::fit(&scores, &DasConfig::default().zero_cut(true))?;
        println!("== {file} (zero_cut)\n{das}");
        let z = das.thresholds.iter().position(|&t| t == 0.0).expect("0 is a threshold");
        for (s, l) in scores.iter().zip(das.assign_all(&scores)?) {
            assert_eq!(*s < 0.0, l <= z, "{file}: score {s} in class {l}");
        }
    }
    Ok(())
}
