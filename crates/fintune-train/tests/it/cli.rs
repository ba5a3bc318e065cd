//! The `fintune` command line: each subcommand's happy path and its bad-input errors.

use assert_cmd::Command;
use predicates::prelude::*;

use crate::{fixture_subset, minilm, root, shared_data, untrained_model};

fn fintune() -> Command {
    let mut c = Command::cargo_bin("fintune").unwrap();
    c.current_dir(root());
    c
}

#[test]
fn data_check_prints_a_summary() {
    fintune()
        .args(["data", "check", "fixtures/train.jsonl"])
        .assert()
        .success()
        .stdout(predicate::str::contains("rows: 256"));
}

#[test]
fn data_check_names_bad_lines_and_skip_invalid_reports_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (1..=10)
        .map(|i| format!(r#"{{"id": "r{i}", "text": "row {i}", "score": 0.{i}}}"#))
        .collect();
    lines[6] = r#"{"id": "r7", "text": "row 7", "score": NaN}"#.into();
    lines[8] = r#"{"id": "r9", "text": "   ", "score": 0.5}"#.into();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    let out =
        fintune().args(["data", "check"]).arg(&p).assert().failure().get_output().stdout.clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("bad.jsonl:7"), "{out}");
    assert!(out.contains("bad.jsonl:9"), "{out}");
    fintune().args(["data", "check", "--skip-invalid"]).arg(&p).assert().success().stdout(
        predicate::str::contains("rows: 8").and(predicate::str::contains("2 invalid rows skipped")),
    );
}

#[test]
fn data_convert_round_trips_through_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("t.parquet");
    let back = dir.path().join("back.jsonl");
    fintune().args(["data", "convert", "fixtures/test.jsonl"]).arg(&pq).assert().success();
    fintune().args(["data", "convert"]).arg(&pq).arg(&back).assert().success();
    let a = fintune_data::read_dataset(&[root().join("fixtures/test.jsonl")], &Default::default())
        .unwrap();
    let b = fintune_data::read_dataset(&[&back], &Default::default()).unwrap();
    assert_eq!(a.ids(), b.ids());
    assert_eq!(a.texts(), b.texts());
    assert_eq!(a.scores(), b.scores());
    assert_eq!(a.targets(), b.targets());
}

#[test]
fn stratify_prints_das_beside_the_baselines() {
    fintune().args(["stratify", "fixtures/train.jsonl"]).assert().success().stdout(
        predicate::str::contains("das")
            .and(predicate::str::contains("quantile"))
            .and(predicate::str::contains("uniform")),
    );
    let out = fintune()
        .args(["stratify", "fixtures/train.jsonl", "--classes", "4", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["das"]["thresholds"].as_array().unwrap().len(), 3);
    assert_eq!(v["quantile"]["thresholds"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_input_gives_clear_errors() {
    fintune()
        .args(["data", "check", "no/such/file.jsonl"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no/such/file.jsonl"));
    fintune()
        .args(["data", "check", "fixtures/train.jsonl", "--text-col", "sentence"])
        .assert()
        .failure()
        .stdout(predicate::str::contains("sentence"));
    fintune()
        .args(["train", "--data", "fixtures/train.jsonl", "--weighting", "magic"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("magic"));
    fintune()
        .args(["train", "--data", "fixtures/train.jsonl", "--weighting", "static:0.7,-1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("static"));
    fintune().args(["train"]).assert().failure().stderr(predicate::str::contains("--data"));
    fintune()
        .args(["train", "--data", "fixtures/train.jsonl", "--tuning", "half"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("half"));
    fintune()
        .args(["eval", "--model", "no/such/run/model", "--data", "fixtures/test.jsonl"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no/such/run/model"));
}

#[test]
fn train_then_predict_eval_and_encode() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 40);
    let run = dir.path().join("run");
    fintune()
        .args([
            "train",
            "--quiet",
            "--epochs",
            "1",
            "--max-len",
            "24",
            "--batch-size",
            "8",
            "--strata",
            "das",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .arg("--backbone")
        .arg(minilm())
        .assert()
        .success()
        .stderr(predicate::str::contains("run folder"));
    let model = run.join("model");

    // Predict on unlabelled input (no score column), JSONL out.
    let input = dir.path().join("new.jsonl");
    std::fs::write(&input, "{\"id\": \"a\", \"text\": \"Profits collapse at the bank\"}\n{\"id\": \"b\", \"text\": \"Record sales lift shares\"}\n").unwrap();
    let out = dir.path().join("pred.jsonl");
    fintune()
        .args(["predict", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .assert()
        .success();
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "a");
    let probs: Vec<f64> =
        rows[0]["class_probs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    assert!(rows[0]["score"].as_f64().unwrap().abs() <= 1.0);
    // Standard input and output.
    let stdout = fintune()
        .args(["predict", "--model"])
        .arg(&model)
        .args(["--input", "-"])
        .write_stdin("{\"text\": \"Guidance cut again\"}\n")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8(stdout).unwrap().trim()).unwrap();
    assert!(row["score"].is_number());
    // Parquet output.
    let pq = dir.path().join("pred.parquet");
    fintune()
        .args(["predict", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&pq)
        .assert()
        .success();
    assert!(pq.exists());

    // Eval on labelled data.
    let out = fintune()
        .args(["eval", "--json", "--model"])
        .arg(&model)
        .args(["--data", "fixtures/test.jsonl"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let m: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(m["n"], 64);
    assert!(m["mse"].as_f64().unwrap() >= 0.0);
    // Eval needs scores.
    fintune().args(["eval", "--model"]).arg(&model).arg("--data").arg(&input).assert().failure();

    // Encode: one embedding per row.
    let emb = dir.path().join("emb.jsonl");
    fintune()
        .args(["encode", "--backbone"])
        .arg(minilm())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&emb)
        .assert()
        .success();
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&emb)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["id"], "b");
    let e = rows[1]["embedding"].as_array().unwrap();
    assert_eq!(e.len(), 384);
    // MiniLM's modules.json ends in Normalize: unit-length embeddings, as sentence-transformers.
    let norm = e.iter().map(|v| v.as_f64().unwrap().powi(2)).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "embedding norm {norm}");
}

#[test]
#[ignore = "needs ../shared/data"]
fn shared_data_fiqa_file_checks_with_608_rows() {
    let data = shared_data();
    fintune()
        .args(["data", "check"])
        .arg(data.join("fiqa2018_task1/train.jsonl"))
        .assert()
        .success()
        .stdout(predicate::str::contains("rows: 608"));
}

#[test]
fn aux_flags_declare_the_further_tasks() {
    let out = fintune()
        .args(["train", "--data", "fixtures/train.jsonl", "--strata", "none"])
        .args(["--aux-class", "fixtures/test.jsonl", "--aux-labels", "neg,neu,pos"])
        .args(["--aux-reg", "fixtures/test.jsonl", "--task-sampling", "temperature:2"])
        .arg("--print-config")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let cfg: fintune_train::TrainConfig = toml::from_str(&String::from_utf8(out).unwrap()).unwrap();
    let names: Vec<&str> = cfg.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["reg", "class-aux", "reg-aux"]);
    assert_eq!(cfg.tasks[1].labels, ["neg", "neu", "pos"]);
    assert_eq!(cfg.tasks[1].label_col.as_deref(), Some("label"));
    assert_eq!(cfg.task.sampling, fintune_das::TaskSampling::Temperature(2.0));
    assert!(cfg.data.train.is_empty());
    fintune()
        .args(["train", "--data", "fixtures/train.jsonl", "--aux-labels", "a,b"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--aux-class, which is missing"));
}

/// `id -> score` of a JSONL prediction file.
fn scores_of(path: &std::path::Path) -> std::collections::BTreeMap<String, f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_owned(), v["score"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn sharded_predict_by_row_group_equals_the_whole_predict() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 40);
    let run = dir.path().join("run");
    fintune()
        .args(["train", "--quiet", "--epochs", "1", "--max-len", "24", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .arg("--backbone")
        .arg(minilm())
        .assert()
        .success();
    let model = run.join("model");
    let pq = dir.path().join("test.parquet");
    fintune()
        .args(["data", "convert", "fixtures/test.jsonl"])
        .arg(&pq)
        .args(["--row-group-rows", "10"])
        .assert()
        .success();
    let whole = dir.path().join("whole.jsonl");
    fintune()
        .args(["predict", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&pq)
        .arg("--output")
        .arg(&whole)
        .assert()
        .success();
    let parts = dir.path().join("parts");
    for k in 0..2 {
        fintune()
            .args(["predict", "--part-format", "jsonl", "--model"])
            .arg(&model)
            .arg("--input")
            .arg(&pq)
            .arg("--output")
            .arg(&parts)
            .args(["--shard", &format!("{k}/2")])
            .assert()
            .success()
            .stderr(predicate::str::contains(format!("shard {k}/2 (from --shard)")));
    }
    let want = scores_of(&whole);
    let mut got = scores_of(&parts.join("part-0-of-2.jsonl"));
    let second = scores_of(&parts.join("part-1-of-2.jsonl"));
    assert!(!got.is_empty() && !second.is_empty(), "both shards have row groups");
    assert!(second.keys().all(|k| !got.contains_key(k)), "no row in both parts");
    got.extend(second);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (id, s) in &want {
        assert!((got[id] - s).abs() < 1e-5, "{id}: {} against {s}", got[id]);
    }
    // Several inputs without a shard: one output, in order.
    let both = dir.path().join("both.jsonl");
    fintune()
        .args(["predict", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&pq)
        .arg(&data)
        .arg("--output")
        .arg(&both)
        .assert()
        .success();
    assert_eq!(scores_of(&both).len(), want.len() + 40);
}

/// JSON lines, parsed, with null fields dropped (files write them, standard output omits them).
fn json_lines(text: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    text.lines()
        .map(|l| {
            let mut row: serde_json::Map<_, _> = serde_json::from_str(l).unwrap();
            row.retain(|_, v| !v.is_null());
            row
        })
        .collect()
}

/// `predict --as-data` writes the input rows with the model's scores (clipped to [-1, 1]) in
/// place of the gold ones: the same scores as a plain `predict`, every other column kept, the
/// same rows on standard output, and a labelled file that `data check` accepts.
#[test]
fn predict_as_data_writes_the_input_rows_with_the_model_scores() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"id": "a", "text": "Profits collapse at the bank", "score": 0.9, "target": "BNK"}"#,
            "\n",
            r#"{"id": "b", "text": "Record sales lift shares", "source": "wire"}"#,
            "\n",
            r#"{"id": "c", "text": "Guidance cut again", "score": -0.2, "group": "g1"}"#,
            "\n",
        ),
    )
    .unwrap();
    let plain = dir.path().join("plain.jsonl");
    fintune()
        .args(["predict", "--model"])
        .arg(untrained_model())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&plain)
        .assert()
        .success();
    let plain = json_lines(&std::fs::read_to_string(&plain).unwrap());
    let scored = dir.path().join("scored.jsonl");
    fintune()
        .args(["predict", "--as-data", "--model"])
        .arg(untrained_model())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&scored)
        .assert()
        .success();
    let rows = json_lines(&std::fs::read_to_string(&scored).unwrap());
    let given = json_lines(&std::fs::read_to_string(&input).unwrap());
    assert_eq!(rows.len(), 3);
    for ((row, input), plain) in rows.iter().zip(&given).zip(&plain) {
        let want = plain["score"].as_f64().unwrap().clamp(-1.0, 1.0);
        let got = row["score"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-6, "{}: {got} against {want}", row["id"]);
        let mut rest = row.clone();
        rest.remove("score");
        let mut want_rest = input.clone();
        want_rest.remove("score");
        assert_eq!(rest, want_rest, "the input's other columns, and nothing else");
    }
    let stdout = fintune()
        .args(["predict", "--as-data", "--input", "-", "--model"])
        .arg(untrained_model())
        .write_stdin(std::fs::read_to_string(&input).unwrap())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let streamed = json_lines(&String::from_utf8(stdout).unwrap());
    assert_eq!(streamed.len(), 3);
    for (a, b) in streamed.iter().zip(&rows) {
        assert_eq!(a["id"], b["id"]);
        assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-6);
    }
    fintune()
        .args(["data", "check"])
        .arg(&scored)
        .assert()
        .success()
        .stdout(predicate::str::contains("rows: 3"));
}

/// `fintune pair FILE#METHOD FILE#METHOD --json`, parsed.
fn pair_json(base: &str, other: &str) -> serde_json::Value {
    let out = fintune()
        .args(["pair", base, other, "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn pair_reproduces_the_committed_scipy_pairings_matching_runs_by_cell() {
    let single = "docs/results/mpnet-fiqa-cv/results.json#single";
    let seq = "docs/results/mpnet-fiqa-cv/seqfpb/results.json#seq-fpb";
    let v = pair_json(single, seq);
    assert_eq!(v["dataset"], "fiqa");
    assert_eq!(v["pairs"].as_array().unwrap().len(), 10);
    let mse = &v["metrics"][0];
    assert_eq!(mse["metric"], "mse");
    assert_eq!(mse["n"], 10);
    // As docs/results/mpnet-fiqa-cv/README.md reports them (scipy's ttest_rel and wilcoxon,
    // rounded there): +1.2%, p = 0.80 / 0.92, lower in 5 of 10.
    let f = |x: &serde_json::Value| x.as_f64().unwrap();
    assert!((f(&mse["change"]["estimate"]) - 0.012).abs() < 0.0006, "{mse}");
    assert!((f(&mse["t"]["p_value"]) - 0.80).abs() < 0.005, "{mse}");
    assert!((f(&mse["wilcoxon"]["p_value"]) - 0.92).abs() < 0.005, "{mse}");
    assert_eq!(mse["better_in"], 5);
    // And the ensemble: -7.3%, p = 0.0048 / 0.0020, lower in 10 of 10.
    let e = pair_json(single, "docs/results/mpnet-fiqa-cv/ens5/results.json#single-ens5");
    let m = &e["metrics"][0];
    assert!((f(&m["change"]["estimate"]) + 0.073).abs() < 0.0006, "{m}");
    assert!((f(&m["t"]["p_value"]) - 0.0048).abs() < 0.00005, "{m}");
    assert!((f(&m["wilcoxon"]["p_value"]) - 0.0020).abs() < 0.00005, "{m}");
    assert_eq!(m["better_in"], 10);
    // Runs are matched by cell and seed, not by their order in the file.
    let dir = tempfile::tempdir().unwrap();
    let mut r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/results/mpnet-fiqa-cv/seqfpb/results.json"))
            .unwrap(),
    )
    .unwrap();
    r["runs"].as_array_mut().unwrap().reverse();
    let reversed = dir.path().join("results.json");
    std::fs::write(&reversed, serde_json::to_string(&r).unwrap()).unwrap();
    let again = pair_json(single, &format!("{}#seq-fpb", reversed.display()));
    assert_eq!(again["metrics"], v["metrics"]);
    // The table names both sides.
    fintune()
        .args(["pair", single, seq])
        .assert()
        .success()
        .stdout(predicate::str::contains("| mse | 10 |").and(predicate::str::contains("5 of 10")));
}

#[test]
fn pair_refuses_what_it_cannot_pair() {
    let single = "docs/results/mpnet-fiqa-cv/results.json#single";
    fintune()
        .args(["pair", single, "docs/results/mpnet-fiqa-cv/seqfpb/results.json#nope"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("has no runs of method `nope` (it has: seq-fpb)"));
    fintune()
        .args(["pair", single, "docs/results/mpnet-fiqa-cv/results.json"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("expected FILE#METHOD"));
    // A fixed-split matrix and a cross-validated one have no pairs to match.
    fintune()
        .args(["pair", single, "docs/results/mpnet-fiqa/results.json#single"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("different protocols"));
}
