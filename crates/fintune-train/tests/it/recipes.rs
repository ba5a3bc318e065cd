//! The quality recipes end to end. Seed ensembles: one member equals the single model, two
//! members average, resuming keeps finished members, broken manifests and `encode` fail
//! clearly. Longer training: early stopping keeps the best epoch's weights.

use std::path::Path;

use fintune_train::ensemble::{self, EnsembleMetrics, EnsembleOutcome};
use fintune_train::eval::Predictions;
use fintune_train::predict::{Encoder, Predictor};
use fintune_train::progress::LogLines;
use fintune_train::trainer::{self, Outcome, RunOptions};
use fintune_train::TrainConfig;

use crate::{fixture_subset, minilm, root, serial};

fn config(data: &Path, out: &Path, members: usize) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.model.backbone = minilm();
    c.model.max_len = 24;
    c.data.train = vec![data.to_owned()];
    c.data.test = Some(root().join("fixtures/test.jsonl"));
    c.data.val_fraction = 0.25;
    c.optim.batch_size = 8;
    c.optim.eval_batch_size = 32;
    c.optim.epochs = 1;
    c.optim.seed = 7;
    c.optim.ensemble = members;
    // Two tasks, so that the class probabilities are averaged too.
    c.task.strata = fintune_train::config::Strata::Das;
    c.out = Some(out.to_owned());
    c
}

fn train(cfg: &TrainConfig, opts: &RunOptions) -> EnsembleMetrics {
    let mut progress = LogLines::new(std::time::Duration::from_secs(3600));
    match ensemble::train_ensemble(cfg, cfg.out.as_ref().unwrap(), opts, &mut progress).unwrap() {
        EnsembleOutcome::Finished(m) => *m,
        EnsembleOutcome::Interrupted { member, .. } => panic!("member {member} interrupted"),
    }
}

fn test_texts() -> Vec<String> {
    std::fs::read_to_string(root().join("fixtures/test.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn predict(dir: &Path) -> Predictions {
    let texts = test_texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    Predictor::load(dir, tch::Device::Cpu).unwrap().predict(&texts).unwrap()
}

#[test]
fn an_ensemble_of_one_member_is_the_single_model() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 48);
    let single_cfg = config(&data, &dir.path().join("single"), 1);
    let mut progress = LogLines::new(std::time::Duration::from_secs(3600));
    let single = match trainer::train(
        &single_cfg,
        &dir.path().join("single"),
        &RunOptions::default(),
        &mut progress,
    )
    .unwrap()
    {
        Outcome::Finished(m) => *m,
        Outcome::Worker { .. } => unreachable!("one process"),
        Outcome::Interrupted { .. } => unreachable!(),
    };
    let ens = train(&config(&data, &dir.path().join("ens"), 1), &RunOptions::default());
    assert!(dir.path().join("ens/model/ensemble.json").is_file());
    assert_eq!(ens.members.len(), 1);
    assert_eq!(ens.val, single.val);
    assert_eq!(ens.test, single.test);
    assert_eq!(ens.members[0].val, single.val);
    let a = predict(&dir.path().join("single/model"));
    let b = predict(&dir.path().join("ens/model"));
    assert_eq!(a, b, "bit-identical predictions");
    assert!(a.probs.is_some());
}

#[test]
fn a_two_member_ensemble_averages_its_members_and_resumes_at_the_unfinished_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 48);
    let out = dir.path().join("ens");
    let cfg = config(&data, &out, 2);
    let straight = train(&cfg, &RunOptions::default());
    assert_eq!(straight.members.iter().map(|m| m.seed).collect::<Vec<_>>(), [7, 8]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("**ensemble**") && report.contains("per 1,000 texts"), "{report}");
    assert!(straight.cost.predict_ms_per_1000 > 0.0 && straight.cost.train_s > 0.0);

    // The ensemble's predictions are the mean of its members'.
    let m0 = predict(&out.join("members/0/model"));
    let m1 = predict(&out.join("members/1/model"));
    let e = predict(&out.join("model"));
    assert_ne!(m0.score, m1.score, "different seeds give different members");
    for i in 0..e.score.len() {
        let mean = (f64::from(m0.score[i]) + f64::from(m1.score[i])) / 2.0;
        assert!((f64::from(e.score[i]) - mean).abs() < 1e-6, "row {i}");
        let (p0, p1, pe) = (
            &m0.probs.as_ref().unwrap()[i],
            &m1.probs.as_ref().unwrap()[i],
            &e.probs.as_ref().unwrap()[i],
        );
        for c in 0..pe.len() {
            assert!((f64::from(pe[c]) - (f64::from(p0[c]) + f64::from(p1[c])) / 2.0).abs() < 1e-6);
        }
    }
    // Both members saw the same validation split.
    let split = |k: usize| {
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("members/{k}/metrics.json"))).unwrap(),
        )
        .unwrap();
        m["data"]["split"].clone()
    };
    assert_eq!(split(0), split(1));

    // `encode` refuses an ensemble folder.
    let err =
        Encoder::load(&out.join("model"), None, 16, tch::Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("seed ensemble"), "{err}");

    // Interrupted while member 1 trained: member 0 is kept, member 1 retrained identically.
    let kept = std::fs::metadata(out.join("members/0/metrics.json")).unwrap().modified().unwrap();
    std::fs::remove_dir_all(out.join("members/1")).unwrap();
    std::fs::remove_dir_all(out.join("model")).unwrap();
    std::fs::remove_file(out.join("metrics.json")).unwrap();
    let mut progress = LogLines::new(std::time::Duration::from_secs(3600));
    let err = ensemble::train_ensemble(&cfg, &out, &RunOptions::default(), &mut progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    let resumed = train(&cfg, &RunOptions { resume: true, ..Default::default() });
    let again = std::fs::metadata(out.join("members/0/metrics.json")).unwrap().modified().unwrap();
    assert_eq!(kept, again, "the finished member was kept");
    assert_eq!(resumed.val, straight.val);
    assert_eq!(resumed.test, straight.test);
    assert_eq!(predict(&out.join("model")), e);

    // A member kept as finished without its model (restored from its metrics alone) fails
    // before anything trains, naming the member and what to remove.
    std::fs::remove_dir_all(out.join("members/1/model")).unwrap();
    std::fs::remove_file(out.join("metrics.json")).unwrap();
    let kept = std::fs::metadata(out.join("members/0/metrics.json")).unwrap().modified().unwrap();
    let mut progress = LogLines::new(std::time::Duration::from_secs(3600));
    let err = ensemble::train_ensemble(
        &cfg,
        &out,
        &RunOptions { resume: true, ..Default::default() },
        &mut progress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("member 1") && err.contains("model folder"), "{err}");
    assert!(err.contains(&out.join("members/1").display().to_string()), "{err}");
    let again = std::fs::metadata(out.join("members/0/metrics.json")).unwrap().modified().unwrap();
    assert_eq!(kept, again, "nothing was trained");
    assert!(!out.join("metrics.json").exists());
    let resumed = {
        std::fs::remove_dir_all(out.join("members/1")).unwrap();
        train(&cfg, &RunOptions { resume: true, ..Default::default() })
    };
    assert_eq!(resumed.test, straight.test, "member 1 retrained identically");

    // A manifest naming a missing member fails, naming the path.
    std::fs::remove_dir_all(out.join("model/members/1")).unwrap();
    let err = Predictor::load(&out.join("model"), tch::Device::Cpu).unwrap_err().to_string();
    assert!(err.contains(&out.join("model/members/1").display().to_string()), "{err}");
}

#[test]
fn early_stopping_evaluates_the_best_epochs_weights() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 48);
    let mut cfg = config(&data, &dir.path().join("long"), 1);
    cfg.optim.epochs = 8;
    cfg.optim.patience = 2;
    // A rate high enough that validation MSE stops improving well before the cap.
    cfg.optim.lr = 1e-3;
    cfg.optim.head_lr = 1e-2;
    let mut progress = LogLines::new(std::time::Duration::from_secs(3600));
    let m =
        match trainer::train(&cfg, &dir.path().join("long"), &RunOptions::default(), &mut progress)
            .unwrap()
        {
            Outcome::Finished(m) => *m,
            Outcome::Worker { .. } => unreachable!("one process"),
            Outcome::Interrupted { .. } => unreachable!(),
        };
    assert!(m.stopped_early, "best epoch {} of {}", m.best_epoch, m.epochs_run);
    assert_eq!(m.epochs_run, m.best_epoch + cfg.optim.patience);
    assert!(m.epochs_run < cfg.optim.epochs);
    // The final validation pass uses the saved best model: its numbers are the best epoch's.
    assert_eq!(m.val, m.epochs[m.best_epoch - 1].val);
    let last = &m.epochs[m.epochs_run - 1].val;
    assert!(last.mse > m.val.mse, "the last epoch is worse than the best one");
}
