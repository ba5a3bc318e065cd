//! Data-parallel training (`fintune train --nproc 2`, Gloo on 127.0.0.1) equals one process
//! with the same global batch: per-step losses, task weights and gradient norms in
//! `history.csv`, and the final parameters and optimiser moments in `checkpoint/`, for every
//! weighting method, each imbalance loss, each probe, further tasks with mixed batches, soft
//! ordinal classes and an interrupted and resumed run. Dropout is off (a copy of MiniLM with
//! zero dropout, and heads without dropout): dropout masks are drawn per process.
//!
//! The fixture has 33 rows and batches of 8, so the last batch of every epoch has one row and
//! one rank computes none of it (the stand-in row path).

use std::path::{Path, PathBuf};
use std::process::Command;

use fintune_dwa::WeightingSpec;
use fintune_model::Probe;
use fintune_train::config::{Imbalance, Strata, TaskKind, TaskSpec};
use fintune_train::TrainConfig;

use crate::{fixture_subset, minilm};

fn fintune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fintune"))
}

/// MiniLM with its dropout probabilities set to 0 (the weights and tokenizer linked).
fn minilm_without_dropout(dir: &Path) -> PathBuf {
    let src = minilm();
    let out = dir.join("minilm-nodrop");
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "config.json" {
            std::os::unix::fs::symlink(e.path(), out.join(e.file_name())).unwrap();
        }
    }
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    c["hidden_dropout_prob"] = 0.0.into();
    c["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(out.join("config.json"), c.to_string()).unwrap();
    out
}

/// A PhraseBank-style classification file: the fixture's texts with a polarity label.
fn labelled(dir: &Path, data: &Path) -> PathBuf {
    let p = dir.join("labelled.jsonl");
    let mut out = String::new();
    for (i, line) in std::fs::read_to_string(data).unwrap().lines().enumerate().take(20) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = v["score"].as_f64().unwrap();
        let label = if s < -0.1 {
            "negative"
        } else if s > 0.1 {
            "positive"
        } else {
            "neutral"
        };
        let text = format!("{} (again)", v["text"].as_str().unwrap());
        out.push_str(
            &serde_json::json!({ "id": format!("l{i}"), "text": text, "label": label }).to_string(),
        );
        out.push('\n');
    }
    std::fs::write(&p, out).unwrap();
    p
}

fn base(backbone: &Path, data: &Path) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.model.backbone = backbone.to_owned();
    c.model.max_len = 24;
    c.model.heads.dropout = 0.0;
    c.data.train = vec![data.to_owned()];
    c.data.val = Some(data.to_owned());
    c.optim.batch_size = 8;
    c.optim.eval_batch_size = 32;
    c.optim.epochs = 2;
    c.optim.seed = 3;
    c.optim.threads = 1;
    c.optim.lr = 1e-4;
    c.task.strata = Strata::Das;
    c
}

fn train(cfg_file: &Path, out: &Path, extra: &[&str]) {
    let o = fintune()
        .args(["train", "--quiet", "--config"])
        .arg(cfg_file)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "fintune train {extra:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The per-step numbers of `history.csv` (losses, weights, gradient norms, weighting terms),
/// by column.
fn history(run: &Path) -> Vec<(String, Vec<f64>)> {
    let mut r = csv::Reader::from_path(run.join("history.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    header
        .iter()
        .enumerate()
        .filter(|(_, h)| !matches!(h.as_str(), "samples_per_s" | "step_ms" | "probe_ms" | "method"))
        .map(|(i, h)| (h.clone(), rows.iter().map(|row| row[i].parse().unwrap()).collect()))
        .collect()
}

/// Float32 arithmetic on other batch shapes (a rank's slice has its own padded length and
/// row count, which changes the kernels' blocking) and another summation order leave noise
/// of about 1e-7 per value; a column is equal when `‖x - y‖ / ‖x‖` over its steps is within
/// the tolerance (and, for losses, weights and norms, no single value is off by more than 1e-5
/// relative, with a floor of 1e-3).
fn column_distance(x: &[f64], y: &[f64]) -> (f64, f64) {
    let (mut num, mut den, mut worst) = (0.0, 0.0, 0.0f64);
    for (&u, &v) in x.iter().zip(y) {
        if u.is_nan() && v.is_nan() {
            continue;
        }
        num += (u - v) * (u - v);
        den += u * u;
        worst = worst.max((u - v).abs() / u.abs().max(v.abs()).max(1e-3));
    }
    ((num / den.max(1e-300)).sqrt(), worst)
}

/// `‖a - b‖ / ‖a‖` over every tensor of the two checkpoints (model, optimiser moments).
fn checkpoint_distance(a: &Path, b: &Path) -> f64 {
    let read = |p: &Path| {
        let mut v = tch::Tensor::read_safetensors(p.join("checkpoint/state.safetensors")).unwrap();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (ta, tb) = (read(a), read(b));
    assert_eq!(ta.len(), tb.len());
    let (mut num, mut den) = (0.0, 0.0);
    for ((na, x), (nb, y)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        let (x, y) = (x.to_kind(tch::Kind::Double), y.to_kind(tch::Kind::Double));
        num += (&x - &y).square().sum(tch::Kind::Double).double_value(&[]);
        den += x.square().sum(tch::Kind::Double).double_value(&[]);
    }
    (num / den.max(1e-300)).sqrt()
}

fn assert_equal_runs(name: &str, single: &Path, dual: &Path) {
    let (a, b) = (history(single), history(dual));
    assert_eq!(a.len(), b.len(), "{name}: columns");
    assert!(a[0].1.len() >= 10, "{name}: {} steps", a[0].1.len());
    for ((col, x), (_, y)) in a.iter().zip(&b) {
        let (rel, worst) = column_distance(x, y);
        // Losses, weights and gradient norms to 1e-6; the weighting's own terms, some of
        // which are differences of nearly equal numbers (FAMO's change of log-losses), to
        // 1e-5.
        let strict =
            ["loss.", "w.", "gnorm.", "batch_rarity", "lr"].iter().any(|p| col.starts_with(p));
        let tol = if strict { 1e-6 } else { 1e-5 };
        assert!(
            (rel <= tol || x.iter().all(|v| v.abs() < 1e-9)) && (!strict || worst <= 1e-5),
            "{name}: {col} differs between one process and 2 ranks by {rel:e} (norm) / \
             {worst:e} (worst step)\n{x:?}\n{y:?}"
        );
    }
    let d = checkpoint_distance(single, dual);
    println!("{name}: parameters and moments differ by {d:.2e} (relative)");
    assert!(d <= 1e-6, "{name}: the final state differs by {d:e} (relative)");
}

#[test]
fn two_ranks_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "tiny.jsonl", 33);
    let backbone = minilm_without_dropout(dir.path());
    let aux = labelled(dir.path(), &data);
    let mut cases: Vec<(String, TrainConfig)> = vec![];
    let mut single = base(&backbone, &data);
    single.task.strata = Strata::None;
    cases.push(("single-task".into(), single));
    for m in WeightingSpec::all_defaults() {
        let mut c = base(&backbone, &data);
        c.task.weighting = m.clone();
        cases.push((m.to_string(), c));
    }
    for imb in [Imbalance::Lds, Imbalance::Bmse] {
        let mut c = base(&backbone, &data);
        c.task.imbalance = imb;
        cases.push((format!("imbalance {imb}"), c));
    }
    for probe in [Probe::LastLayer, Probe::All] {
        for m in [WeightingSpec::Dwa, WeightingSpec::PcGrad] {
            let mut c = base(&backbone, &data);
            c.task.probe = probe;
            c.task.weighting = m.clone();
            cases.push((format!("probe {probe:?} {m}"), c));
        }
    }
    let further = base(&backbone, &data)
        .with_further_tasks(vec![TaskSpec {
            name: "polarity".into(),
            kind: TaskKind::Classification,
            train: vec![aux.clone()],
            label_col: Some("label".into()),
            labels: ["negative", "neutral", "positive"].map(String::from).to_vec(),
            ..Default::default()
        }])
        .unwrap();
    for m in [WeightingSpec::Dwa, WeightingSpec::DwaMain] {
        let mut c = further.clone();
        c.task.weighting = m.clone();
        cases.push((format!("further task {m}"), c));
    }
    let mut soft = base(&backbone, &data).with_further_tasks(vec![]).unwrap();
    soft.tasks[1].loss = Some(fintune_train::config::TaskLoss::SoftOrdinal);
    soft.tasks[1].sigma = Some(fintune_das::DEFAULT_SIGMA);
    cases.push(("soft ordinal".into(), soft));

    for (k, (name, cfg)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case{k}.toml"));
        std::fs::write(&file, cfg.to_toml()).unwrap();
        let (a, b) = (dir.path().join(format!("one{k}")), dir.path().join(format!("two{k}")));
        train(&file, &a, &[]);
        train(&file, &b, &["--nproc", "2"]);
        assert_equal_runs(name, &a, &b);
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(b.join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(m["timing"]["data_parallel"]["ranks"], 2, "{name}");
        // Each run folder holds the model and a checkpoint (about 0.4 GB); keep only the
        // single-task one, which the resumed run below is compared with.
        if k > 0 {
            std::fs::remove_dir_all(&a).unwrap();
        }
        std::fs::remove_dir_all(&b).unwrap();
    }

    // Interrupted after one epoch and resumed, on 2 ranks: the same as one process.
    let file = dir.path().join("case0.toml");
    let r = dir.path().join("resumed");
    train(&file, &r, &["--nproc", "2", "--stop-after", "1"]);
    assert!(!r.join("metrics.json").exists());
    let o =
        fintune().args(["train", "--quiet", "--nproc", "2", "--resume"]).arg(&r).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_equal_runs("resumed", &dir.path().join("one0"), &r);
}

/// A rank whose peers never come fails within its timeout with a clear message, and the
/// folder is left untouched.
#[test]
fn a_missing_peer_fails_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "tiny.jsonl", 8);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = std::time::Instant::now();
    let o = fintune()
        .args(["train", "--quiet", "--dist-timeout", "3", "--data"])
        .arg(&data)
        .arg("--backbone")
        .arg(minilm())
        .arg("--out")
        .arg(dir.path().join("run"))
        .env("RANK", "0")
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(t.elapsed().as_secs() < 20, "took {:?}", t.elapsed());
    assert!(err.contains("joining the data-parallel job as rank 0"), "{err}");
    assert!(err.contains("1/2 clients joined"), "{err}");
    assert!(!dir.path().join("run").exists());
}
