//! What the model reads (`--input text+target`) and where its backbone starts (`--init`).

use std::path::Path;

use assert_cmd::Command;
use fintune_model::weights::Checkpoint;
use fintune_model::{HeadsConfig, InputMode, ModelSpec, MultiTaskModel, TextEncoder, Tuning};
use fintune_train::config::Strata;
use fintune_train::predict::Predictor;
use fintune_train::progress::LogLines;
use fintune_train::run::metrics::RunMetrics;
use fintune_train::trainer::{self, Outcome, RunOptions};
use fintune_train::{Error, TrainConfig};
use tch::Device;

use crate::{fixture_subset, minilm, root, serial};

fn config(data: &Path, out: &Path) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.model.backbone = minilm();
    c.model.max_len = 24;
    c.data.train = vec![data.to_owned()];
    c.data.val = Some(data.to_owned());
    c.task.strata = Strata::None;
    c.optim.batch_size = 8;
    c.optim.epochs = 1;
    c.optim.seed = 7;
    c.out = Some(out.to_owned());
    c
}

fn train(cfg: &TrainConfig) -> Result<RunMetrics, Error> {
    let mut progress = LogLines::new(std::time::Duration::from_secs(3600));
    match trainer::train(cfg, cfg.out.as_ref().unwrap(), &RunOptions::default(), &mut progress)? {
        Outcome::Finished(m) => Ok(*m),
        Outcome::Worker { .. } => unreachable!("one process"),
        Outcome::Interrupted { epochs } => panic!("interrupted after {epochs}"),
    }
}

/// Every tensor of `a` equals the one of the same name in `b` (same names, bit for bit).
fn same_tensors(a: &Checkpoint, b: &Checkpoint) -> usize {
    let names: Vec<&str> = a.names().collect();
    assert_eq!(names.len(), b.names().count());
    for n in &names {
        let (x, y) = (a.tensor(n).unwrap(), b.tensor(n).unwrap());
        assert!(x.equal(&y), "tensor {n} differs");
    }
    names.len()
}

/// Training with `text+target` encodes (text, target) pairs, records the input mode in
/// config.toml and model/fintune.json, and `predict`/`eval` encode as training did: the
/// saved model reproduces the run's validation MSE only with the targets.
#[test]
fn text_target_is_trained_saved_and_predicted_alike() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "tiny.jsonl", 32);
    let mut cfg = config(&data, &dir.path().join("pair"));
    cfg.model.input = InputMode::TextTarget;
    let m = train(&cfg).unwrap();
    let run = dir.path().join("pair");
    let toml = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(toml.contains("input = \"text+target\""), "{toml}");
    let json = std::fs::read_to_string(run.join("model/fintune.json")).unwrap();
    assert!(json.contains("\"input\": \"text+target\""), "{json}");

    let p = Predictor::load(&run.join("model"), Device::Cpu).unwrap();
    assert!(p.reads_targets());
    let ds = fintune_data::read_dataset(&[&data], &Default::default()).unwrap();
    let eval = p.evaluate(&ds).unwrap();
    assert!((eval.mse - m.val.mse).abs() < 1e-6, "eval {} vs run {}", eval.mse, m.val.mse);
    let texts = ds.texts();
    let with = p.predict_with_targets(&texts, &ds.targets()).unwrap().score;
    let without = p.predict(&texts).unwrap().score;
    assert_ne!(with, without, "the targets change the encodings");

    // The pair is BERT's template: [CLS] text [SEP] target [SEP], token types 1 for the target.
    let enc = TextEncoder::from_file(&minilm(), 24).unwrap().with_input(InputMode::TextTarget);
    let e = enc.encode_with_targets(&[texts[0]], &[ds.targets()[0]]).unwrap().remove(0);
    assert_eq!(e.ids.iter().filter(|&&i| i == 102).count(), 2, "two [SEP]");
    assert!(e.type_ids.contains(&1));

    // The default configuration is unchanged: no `input` key, single-text encodings.
    let plain = config(&data, &dir.path().join("plain"));
    let toml = plain.to_toml();
    let keys = ["input =", "init =", "init_sha256 ="];
    assert!(!toml.lines().any(|l| keys.iter().any(|k| l.starts_with(k))), "{toml}");
}

/// `fintune predict` with a text+target model on a file without targets names the file and
/// the column; with the targets it predicts.
#[test]
fn predicting_without_the_target_column_is_a_clear_error() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "tiny.jsonl", 16);
    let mut cfg = config(&data, &dir.path().join("run"));
    cfg.model.input = InputMode::TextTarget;
    train(&cfg).unwrap();
    let model = dir.path().join("run/model");
    let bare = dir.path().join("bare.jsonl");
    std::fs::write(&bare, "{\"id\": \"a\", \"text\": \"Shares rose\"}\n").unwrap();
    let out = Command::cargo_bin("fintune")
        .unwrap()
        .current_dir(root())
        .args(["predict", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&bare)
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(err.contains("bare.jsonl") && err.contains("column `target`"), "{err}");
    assert!(err.contains("text+target"), "{err}");
    let out = Command::cargo_bin("fintune")
        .unwrap()
        .args(["predict", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&data)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 16);
    let err = Command::cargo_bin("fintune")
        .unwrap()
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .args(["--target-col", "ticker"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(err).unwrap();
    assert!(err.contains("tiny.jsonl") && err.contains("column `ticker`"), "{err}");
}

/// `model.init`: the backbone starts from a previous run's model (a frozen backbone keeps it
/// to the end, so the saved weights show where it started), the init folder and its hash are
/// in config.toml and metrics.json, a run with other init weights is another configuration,
/// and a folder trained from another base model is refused.
#[test]
fn a_run_initialised_from_a_previous_run_starts_from_its_backbone() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "tiny.jsonl", 16);
    let mut first = config(&data, &dir.path().join("first"));
    first.optim.lr = 1e-3;
    train(&first).unwrap();
    let first_model = dir.path().join("first/model");

    let mut second = config(&data, &dir.path().join("second"));
    second.model.tuning = "frozen".into();
    second.model.init = Some(first_model.clone());
    let m = train(&second).unwrap();
    let open = |run: &str, f: &str| {
        Checkpoint::open_files(&[dir.path().join(run).join("model").join(f)]).unwrap()
    };
    let n = same_tensors(&open("first", "model.safetensors"), &open("second", "model.safetensors"));
    assert!(n > 50, "{n} tensors");
    let init = m.init.expect("metrics.json names the init folder");
    assert_eq!(init.dir, first_model);
    assert_eq!(init.sha256.len(), 64);
    let toml = std::fs::read_to_string(dir.path().join("second/config.toml")).unwrap();
    assert!(toml.contains(&format!("init_sha256 = \"{}\"", init.sha256)), "{toml}");

    // A pinned hash that the folder does not match is refused.
    let mut pinned = second.clone();
    pinned.out = Some(dir.path().join("pinned"));
    pinned.model.init_sha256 = Some("0".repeat(64));
    let err = train(&pinned).unwrap_err().to_string();
    assert!(err.contains("model.init_sha256 is") && err.contains(&init.sha256), "{err}");

    // Resuming with other init weights is another configuration.
    let mut third = config(&data, &dir.path().join("third"));
    third.optim.epochs = 2;
    third.model.init = Some(first_model.clone());
    let mut progress = LogLines::new(std::time::Duration::from_secs(3600));
    let stop = RunOptions { stop_after: Some(1), ..Default::default() };
    let out = trainer::train(&third, &dir.path().join("third"), &stop, &mut progress).unwrap();
    assert!(matches!(out, Outcome::Interrupted { epochs: 1 }));
    third.model.init = Some(dir.path().join("third/model"));
    let resume = RunOptions { resume: true, ..Default::default() };
    let err = trainer::train(&third, &dir.path().join("third"), &resume, &mut progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.init") && err.contains("model.init_sha256"), "{err}");

    // A model trained from another base: refused before anything is written.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["model.safetensors", "heads.safetensors", "config.json", "tokenizer.json"] {
        std::fs::copy(first_model.join(f), other.join(f)).unwrap();
    }
    let meta = std::fs::read_to_string(first_model.join("fintune.json")).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    meta["base_sha256"] = "f".repeat(64).into();
    std::fs::write(other.join("fintune.json"), meta.to_string()).unwrap();
    let mut wrong = config(&data, &dir.path().join("wrong"));
    wrong.model.init = Some(other.clone());
    let err = train(&wrong).unwrap_err().to_string();
    assert!(err.contains("model.init") && err.contains("another base model"), "{err}");
    assert!(!dir.path().join("wrong").exists());
    wrong.model.init = Some(dir.path().to_owned());
    let err = train(&wrong).unwrap_err().to_string();
    assert!(err.contains("no fintune.json"), "{err}");
}

/// The trainer's order: the init model is loaded, then libtorch is seeded and the model built,
/// then the backbone copied. The result has exactly the init model's backbone and exactly the
/// heads of a model built without init (fresh, seeded as usual).
#[test]
fn init_copies_the_backbone_and_leaves_fresh_heads() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "tiny.jsonl", 16);
    let mut first = config(&data, &dir.path().join("first"));
    first.optim.lr = 1e-3;
    train(&first).unwrap();
    let first_model = dir.path().join("first/model");
    let spec = ModelSpec {
        heads: HeadsConfig { num_classes: Some(3), ..Default::default() },
        tuning: Tuning::Full,
        max_len: 24,
        ..Default::default()
    };
    let from = fintune_train::init::load(&first_model, Device::Cpu).unwrap();
    tch::manual_seed(11);
    let model = MultiTaskModel::new(&minilm(), &spec, Device::Cpu).unwrap();
    fintune_train::init::apply(&model, &from, &first_model).unwrap();
    tch::manual_seed(11);
    let fresh = MultiTaskModel::new(&minilm(), &spec, Device::Cpu).unwrap();

    let saved = Checkpoint::open_files(&[first_model.join("model.safetensors")]).unwrap();
    let (mut backbone, mut changed, mut heads) = (0, 0, 0);
    let fresh_state: std::collections::BTreeMap<String, tch::Tensor> =
        fresh.state().into_iter().collect();
    for (name, t) in model.state() {
        if let Some(n) = name.strip_prefix("backbone.") {
            assert!(t.equal(&saved.tensor(n).unwrap()), "{n} is not the init model's");
            changed += usize::from(!t.equal(&fresh_state[&name]));
            backbone += 1;
        } else if name.starts_with("heads.") {
            assert!(t.equal(&fresh_state[&name]), "{name} is not the fresh seeded head");
            heads += 1;
        }
    }
    assert!(backbone > 50 && heads >= 2, "{backbone} backbone, {heads} head tensors");
    assert!(changed * 2 > backbone, "only {changed} of {backbone} differ from the pretrained");
}
