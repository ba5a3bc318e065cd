//! Regression tests of issue 15's defects in fintune-train, each named after its defect.

use std::path::Path;

use assert_cmd::Command;
use fintune_train::config::Strata;
use fintune_train::progress::LogLines;
use fintune_train::trainer::{self, Outcome, RunOptions};
use fintune_train::{Error, TrainConfig};
use predicates::prelude::*;

use crate::{fixture_subset, minilm, root, serial, untrained_model, Messages};

fn fintune() -> Command {
    let mut c = Command::cargo_bin("fintune").unwrap();
    c.current_dir(root());
    c
}

fn tiny(data: &Path, out: &Path) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.model.backbone = minilm();
    c.model.max_len = 24;
    c.data.train = vec![data.to_owned()];
    c.optim.batch_size = 8;
    c.optim.eval_batch_size = 32;
    c.optim.epochs = 2;
    c.optim.seed = 7;
    c.out = Some(out.to_owned());
    c
}

fn train(cfg: &TrainConfig, opts: &RunOptions) -> fintune_train::Result<Outcome> {
    let mut progress = LogLines::new(std::time::Duration::from_secs(3600));
    trainer::train(cfg, cfg.out.as_ref().unwrap(), opts, &mut progress)
}

// 1
#[test]
fn threads_100000_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    fintune()
        .args(["train", "--data", "fixtures/train.jsonl", "--threads", "100000", "--out"])
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("threads").and(predicate::str::contains("100000")));
    assert!(!out.exists(), "no run folder for a refused start");
}

/// A run folder `dir/run` holding only the `config.toml` of a tiny run.
fn folder_with_config(dir: &Path) -> (TrainConfig, std::path::PathBuf) {
    let data = fixture_subset(dir, "train.jsonl", 32);
    let out = dir.join("run");
    let a = tiny(&data, &out);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("config.toml"), a.to_toml()).unwrap();
    (a, out)
}

// 2
#[test]
fn out_with_different_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, out) = folder_with_config(dir.path());
    let mut b = a.clone();
    b.optim.lr = 1e-3;
    b.model.max_len = 16;
    let err = train(&b, &RunOptions::default()).unwrap_err();
    assert!(matches!(err, Error::OtherConfig { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("model.max_len") && msg.contains("optim.lr"), "{msg}");
    assert_eq!(std::fs::read_to_string(out.join("config.toml")).unwrap(), a.to_toml());
}

// 2
#[test]
fn resume_with_different_config_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 32);
    let out = dir.path().join("run");
    let a = tiny(&data, &out);
    match train(&a, &RunOptions { stop_after: Some(1), ..Default::default() }).unwrap() {
        Outcome::Worker { .. } => unreachable!("one process"),
        Outcome::Interrupted { epochs } => assert_eq!(epochs, 1),
        Outcome::Finished(_) => panic!("did not stop"),
    }
    // `--out` the same folder with another configuration: refused, the checkpoint kept.
    let mut b = a.clone();
    b.optim.head_lr = 5e-3;
    let err = train(&b, &RunOptions::default()).unwrap_err().to_string();
    assert!(err.contains("optim.head_lr"), "{err}");
    // The same configuration without --resume: refused too (the checkpoint would be lost).
    let err = train(&a, &RunOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Unfinished { .. }), "{err}");
    // The folder's config.toml edited to another configuration, then `--resume`: refused.
    std::fs::write(out.join("config.toml"), b.to_toml()).unwrap();
    let err = train(&b, &RunOptions { resume: true, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("optim.head_lr"), "{err}");
    // With its own configuration the run resumes and finishes.
    std::fs::write(out.join("config.toml"), a.to_toml()).unwrap();
    let done = train(&a, &RunOptions { resume: true, ..Default::default() }).unwrap();
    assert!(matches!(done, Outcome::Finished(_)));
}

// 2
#[test]
fn finished_run_is_not_overwritten_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (a, out) = folder_with_config(dir.path());
    std::fs::write(out.join("metrics.json"), "{\"finished\": true}\n").unwrap();
    let err = train(&a, &RunOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Finished { .. }), "{err}");
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.json")).unwrap(),
        "{\"finished\": true}\n"
    );
}

// 4
#[test]
fn nan_weights_make_predict_and_eval_fail() {
    use fintune_model::Part;
    let poison = |m: &fintune_model::MultiTaskModel| {
        tch::no_grad(|| {
            for mut p in m.parameters().into_iter().filter(|p| p.part == Part::Head) {
                let _ = p.tensor.fill_(f64::NAN);
            }
        })
    };
    // The library's evaluation.
    let model = crate::build_untrained();
    poison(&model);
    let enc = fintune_model::TextEncoder::from_file(&minilm(), 24).unwrap();
    let texts = ["Profits collapse", "Record sales"];
    let ex: Vec<fintune_train::batching::Example> = enc
        .encode(&texts)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, e)| fintune_train::batching::Example {
            id: format!("r{i}"),
            enc: e,
            score: 0.5,
            class: 0,
            rarity: 1.0,
            src: 0,
        })
        .collect();
    let side = model.info().padding_side;
    let err =
        fintune_train::eval::evaluate(&model, &ex, 8, enc.pad_id(), side, &Default::default())
            .unwrap_err();
    assert!(matches!(err, Error::NonFinitePrediction { .. }), "{err}");
    // The predictor (`fintune predict` and `eval`).
    let p = fintune_train::predict::Predictor::load(&untrained_model(), tch::Device::Cpu).unwrap();
    poison(&p.model);
    let err = p.predict(&texts).unwrap_err();
    assert!(err.to_string().contains("non-finite"), "{err}");
    let ds = fintune_data::read_dataset(&[root().join("fixtures/test.jsonl")], &Default::default())
        .unwrap();
    assert!(matches!(p.evaluate(&ds).unwrap_err(), Error::NonFinitePrediction { .. }));
}

// 5
#[test]
fn max_len_above_the_position_limit_is_refused() {
    let mut c = TrainConfig::default();
    c.model.backbone = minilm();
    c.data.train = vec![root().join("fixtures/train.jsonl")];
    c.model.max_len = 512;
    assert!(c.validate().is_ok());
    c.model.max_len = 513;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("512"), "{err}");
    fintune()
        .args(["encode", "--input", "fixtures/test.jsonl", "--max-len", "1000", "--backbone"])
        .arg(minilm())
        .assert()
        .failure()
        .stderr(predicate::str::contains("position limit").and(predicate::str::contains("512")));
}

// 8
#[test]
fn symlinks_in_a_run_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 32);
    let out = dir.path().join("run");
    std::fs::create_dir_all(out.join("plots")).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    for entry in ["history.csv", "config.toml", "plots/losses.png"] {
        std::os::unix::fs::symlink(&victim, out.join(entry)).unwrap();
        let err = train(&tiny(&data, &out), &RunOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Symlink { .. }), "{entry}: {err}");
        assert!(err.to_string().contains(entry), "{err}");
        std::fs::remove_file(out.join(entry)).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

// 9
#[test]
fn predict_batch_size_0_is_refused() {
    fintune()
        .args(["predict", "--input", "fixtures/test.jsonl", "--batch-size", "0", "--model"])
        .arg(untrained_model())
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("batch-size").and(predicate::str::contains("panicked").not()),
        );
}

// 10
#[test]
fn failed_start_leaves_no_empty_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cfg = tiny(&dir.path().join("no-such-file.jsonl"), &out);
    assert!(train(&cfg, &RunOptions::default()).is_err());
    assert!(!out.exists(), "a failed start left {}", out.display());
}

// 10
#[test]
fn resume_recovers_a_checkpoint_left_as_checkpoint_old_and_sweeps_leftovers() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 32);
    let out = dir.path().join("run");
    let cfg = tiny(&data, &out);
    let o = train(&cfg, &RunOptions { stop_after: Some(1), ..Default::default() }).unwrap();
    assert!(matches!(o, Outcome::Interrupted { epochs: 1 }));
    // An interruption while the checkpoint was being replaced, and a model writer's leftover.
    std::fs::rename(out.join("checkpoint"), out.join(".checkpoint.old")).unwrap();
    std::fs::create_dir_all(out.join(".model.tmp-4242")).unwrap();
    std::fs::write(out.join(".model.tmp-4242/model.safetensors"), vec![0u8; 1024]).unwrap();
    let mut msgs = Messages::default();
    let o =
        trainer::train(&cfg, &out, &RunOptions { resume: true, ..Default::default() }, &mut msgs)
            .unwrap();
    assert!(matches!(o, Outcome::Finished(_)));
    assert!(
        msgs.0.iter().any(|m| m.contains("recovered") && m.contains(".checkpoint.old")),
        "{:?}",
        msgs.0
    );
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "leftovers: {left:?}");
}

// 10
#[test]
fn predict_sigterm_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    let rows: String = (0..20_000)
        .map(|i| {
            format!(
                "{{\"id\": \"r{i}\", \"text\": \"Shares of company {i} rose after results\"}}\n"
            )
        })
        .collect();
    std::fs::write(&input, rows).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("fintune"))
        .args(["predict", "--batch-size", "8", "--model"])
        .arg(untrained_model())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(out_dir.join("pred.jsonl"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&out_dir).unwrap().count() == 0 {
        assert!(t0.elapsed().as_secs() < 120, "no temporary output appeared");
        assert!(child.try_wait().unwrap().is_none(), "predict ended before the signal");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    let left: Vec<_> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `fintune predict` with the untrained model.
fn predict(input: &Path, output: &Path) -> Command {
    let mut c = fintune();
    c.args(["predict", "--model"]).arg(untrained_model());
    c.arg("--input").arg(input).arg("--output").arg(output);
    c
}

// 11
#[test]
fn predict_output_equal_to_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let text = "{\"id\": \"a\", \"text\": \"Profits collapse\"}\n";
    std::fs::write(&input, text).unwrap();
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    for output in [input.clone(), dir.path().join("sub/../in.jsonl")] {
        predict(&input, &output)
            .assert()
            .failure()
            .stderr(predicate::str::contains("is the input file"));
        assert_eq!(std::fs::read_to_string(&input).unwrap(), text);
    }
}

// 11
#[test]
fn predict_overwrite_keeps_file_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\": \"a\", \"text\": \"Profits collapse\"}\n").unwrap();
    let output = dir.path().join("pred.jsonl");
    std::fs::write(&output, "old\n").unwrap();
    std::fs::set_permissions(&output, std::fs::Permissions::from_mode(0o640)).unwrap();
    predict(&input, &output).assert().success();
    assert!(std::fs::read_to_string(&output).unwrap().contains("\"id\":\"a\""));
    assert_eq!(std::fs::metadata(&output).unwrap().permissions().mode() & 0o777, 0o640);
}

// 11
#[test]
fn constant_scores_train_with_strata_none() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("constant.jsonl");
    let rows: String = (0..20)
        .map(|i| {
            format!("{{\"id\": \"r{i}\", \"text\": \"headline number {i}\", \"score\": 0.25}}\n")
        })
        .collect();
    std::fs::write(&data, rows).unwrap();
    let mut cfg = tiny(&data, &dir.path().join("run"));
    cfg.task.strata = Strata::None;
    cfg.optim.epochs = 1;
    match train(&cfg, &RunOptions::default()).unwrap() {
        Outcome::Finished(m) => assert_eq!(m.data.train + m.data.val, 20),
        Outcome::Worker { .. } => unreachable!("one process"),
        Outcome::Interrupted { .. } => panic!("interrupted"),
    }
}

// 11
#[test]
fn val_identical_to_train_warns() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 32);
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    let mut cfg = tiny(&data, &dir.path().join("run"));
    cfg.data.val = Some(dir.path().join("sub/../train.jsonl"));
    let enc = fintune_model::TextEncoder::from_file(&minilm(), 24).unwrap();
    let prep = fintune_train::prepare::prepare(&cfg, &enc).unwrap();
    assert!(
        prep.warnings.first().is_some_and(|w| w.contains("is the training file")),
        "{:?}",
        prep.warnings
    );
}

// A run folder written by two processes at once (two `train` with one `--out`, or two shards
// of a matrix reaching one shared stage-1 run): the second is refused while the first holds
// the folder's lock, and writes nothing.
#[test]
fn a_run_folder_in_use_by_another_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, out) = folder_with_config(dir.path());
    let before = std::fs::read_dir(&out).unwrap().count();
    let held = fintune_train::run::RunDir::new(&out).lock().unwrap();
    // Another process (the binary), then this one (the library), a single model and an ensemble.
    fintune()
        .args(["train", "--data"])
        .arg(&a.data.train[0])
        .args(["--max-len", "24", "--epochs", "1", "--out"])
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("in use by another fintune process"));
    let err = train(&a, &RunOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::Busy { path } if *path == out), "{err}");
    let mut ens = a.clone();
    ens.optim.ensemble = 2;
    let mut progress = LogLines::new(std::time::Duration::from_secs(3600));
    let err =
        fintune_train::ensemble::train_ensemble(&ens, &out, &RunOptions::default(), &mut progress)
            .unwrap_err();
    assert!(matches!(&err, Error::Busy { .. }), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), before, "nothing was written");
    // Released: the run starts.
    drop(held);
    assert!(matches!(train(&a, &RunOptions::default()).unwrap(), Outcome::Finished(_)));
}
