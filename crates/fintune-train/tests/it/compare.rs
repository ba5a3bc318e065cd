//! The experiment matrix on a small self-made data root: results files, paired tests, the
//! static grid chosen on validation, sharing the matrix between processes, reuse of finished
//! runs and refusal of runs made with another configuration.

use fintune_train::compare::{self, CompareConfig};
use fintune_train::TrainConfig;

use crate::{minilm, root, serial};

fn config(data_root: &std::path::Path, out: &std::path::Path) -> CompareConfig {
    let mut base = TrainConfig::default();
    base.model.backbone = minilm();
    base.model.max_len = 24;
    base.optim.epochs = 1;
    base.optim.batch_size = 16;
    base.optim.eval_batch_size = 64;
    let methods = compare::all_methods(&[0.3, 0.7])
        .into_iter()
        .filter(|m| ["single", "mtl-static", "mtl-das-dwa"].contains(&m.id.as_str()))
        .collect::<Vec<_>>();
    assert_eq!(methods.len(), 3);
    CompareConfig {
        out: out.to_owned(),
        data_root: data_root.to_owned(),
        datasets: compare::known_datasets().into_iter().filter(|d| d.name == "fiqa").collect(),
        methods,
        seeds: vec![1, 2],
        base,
        shard: None,
        command: "fintune compare (test)".into(),
        keep_models: false,
    }
}

#[test]
fn matrix_runs_shards_reuses_and_refuses_other_configurations() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // The fixture set stands in for FiQA under the data root's layout.
    let data_root = dir.path().join("data");
    std::fs::create_dir_all(data_root.join("fiqa2018_task1")).unwrap();
    std::fs::copy(
        root().join("fixtures/train.jsonl"),
        data_root.join("fiqa2018_task1/train.jsonl"),
    )
    .unwrap();
    let out = dir.path().join("cmp");
    let mut lines = Vec::new();

    // Two shards: each runs every other run of the 8 (single x 2 seeds, static x 2 grid
    // points x 2 seeds, ours x 2 seeds).
    let mut c = config(&data_root, &out);
    let mut counts = vec![];
    for k in 0..2 {
        c.shard = Some((k, 2));
        let r = compare::run(&c, &mut |l| lines.push(l.to_owned())).unwrap();
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        counts.push(r.runs.len());
    }
    assert_eq!(counts, [4, 4]);
    // Finished runs keep their results but not the checkpoint or (by default) the model.
    let one = out.join("runs/fiqa/single/seed1");
    assert!(one.join("metrics.json").exists() && one.join("history.csv").exists());
    assert!(!one.join("checkpoint").exists() && !one.join("model").exists());

    // The unsharded pass reuses all 8 finished runs and writes the results.
    c.shard = None;
    let t0 = std::time::Instant::now();
    let r = compare::run(&c, &mut |l| lines.push(l.to_owned())).unwrap();
    let reuse_s = t0.elapsed().as_secs_f64();
    assert_eq!(r.runs.len(), 8);
    assert!(r.failures.is_empty());
    let fiqa = &r.summaries["fiqa"];
    let ids: Vec<&str> = fiqa.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(ids, ["single", "mtl-static", "mtl-das-dwa"]);
    // The static weight is the grid point with the lower mean validation MSE.
    let val = |v: f64| {
        let rs: Vec<_> =
            r.runs.iter().filter(|x| x.variant == Some(v)).map(|x| x.val_mse).collect();
        assert_eq!(rs.len(), 2);
        rs.iter().sum::<f64>() / 2.0
    };
    let best = if val(0.3) <= val(0.7) { 0.3 } else { 0.7 };
    assert_eq!(fiqa[1].chosen, Some(best));
    assert!(fiqa[2].tests.contains_key("vs single"), "ours is tested against single-task");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for needle in [
        "single",
        "mtl-das-dwa",
        "mse",
        "acc_polarity",
        "Wilcoxon",
        "fintune compare (test)",
        "cores",
    ] {
        assert!(md.contains(needle), "results.md lacks {needle}:\n{md}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 8);
    assert!(out.join("plots/fiqa.png").exists());
    assert!(reuse_s < 60.0, "reusing finished runs took {reuse_s:.1} s");

    // Another configuration in the same folder: every run is refused and recorded.
    c.base.optim.epochs = 2;
    let r = compare::run(&c, &mut |l| lines.push(l.to_owned())).unwrap();
    assert!(r.runs.is_empty());
    assert_eq!(r.failures.len(), 8);
    assert!(r.failures[0].error.contains("another configuration"), "{}", r.failures[0].error);
}
