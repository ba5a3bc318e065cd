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
        protocol: compare::Protocol::Fixed,
        pool: compare::known_datasets(),
        base,
        shard: None,
        run_index: None,
        command: "fintune compare (test)".into(),
        teacher: "teacher".into(),
        keep_models: false,
    }
}

/// `dir/data` with the fixture training set standing in for FiQA's shared file.
fn fiqa_data_root(dir: &std::path::Path) -> std::path::PathBuf {
    let data_root = dir.join("data");
    std::fs::create_dir_all(data_root.join("fiqa2018_task1")).unwrap();
    std::fs::copy(
        root().join("fixtures/train.jsonl"),
        data_root.join("fiqa2018_task1/train.jsonl"),
    )
    .unwrap();
    data_root
}

#[test]
fn matrix_runs_shards_reuses_and_refuses_other_configurations() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // The fixture set stands in for FiQA under the data root's layout.
    let data_root = fiqa_data_root(dir.path());
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

    // One run by its index (reused here): the fourth in list order, mtl-static at 0.3, seed 2.
    let mut one = c.clone();
    one.run_index = Some(3);
    assert_eq!(compare::total_runs(&one), 8);
    let single = compare::run(&one, &mut |_| {}).unwrap();
    assert_eq!(single.runs.len(), 1);
    assert_eq!(
        (single.runs[0].method.as_str(), single.runs[0].seed, single.runs[0].variant),
        ("mtl-static", 2, Some(0.3))
    );
    one.run_index = Some(8);
    let err = compare::run(&one, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("the matrix has 8 runs (indices 0 to 7)"), "{err}");
    // Another configuration in the same folder: every run is refused and recorded.
    c.base.optim.epochs = 2;
    let r = compare::run(&c, &mut |l| lines.push(l.to_owned())).unwrap();
    assert!(r.runs.is_empty());
    assert_eq!(r.failures.len(), 8);
    assert!(r.failures[0].error.contains("another configuration"), "{}", r.failures[0].error);
}

/// The first `n` rows of a fixture file with their ids prefixed by `prefix` (a stand-in for
/// another shared set: ids are unique across files).
fn renamed_rows(file: &str, n: usize, prefix: &str) -> String {
    let text = std::fs::read_to_string(root().join("fixtures").join(file)).unwrap();
    text.lines()
        .take(n)
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"] = format!("{prefix}-{}", v["id"].as_str().unwrap()).into();
            v.to_string() + "\n"
        })
        .collect()
}

fn jsonl_rows(p: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(p).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn read_texts(p: &std::path::Path) -> Vec<(String, String)> {
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap().to_owned();
    jsonl_rows(p).iter().map(|v| (field(v, "id"), field(v, "text"))).collect()
}

#[test]
fn cross_validation_with_pooled_runs_pairs_cells_and_deduplicates_the_pool() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data_root = fiqa_data_root(dir.path());
    std::fs::create_dir_all(data_root.join("semeval2017_task5")).unwrap();
    // "Headlines": 40 texts of the evaluated set itself (each is some cell's test text), so
    // the pool must drop them where they are evaluated; "microblogs": the fixture test set.
    std::fs::write(
        data_root.join("semeval2017_task5/headlines_train.jsonl"),
        renamed_rows("train.jsonl", 40, "hl"),
    )
    .unwrap();
    std::fs::write(
        data_root.join("semeval2017_task5/microblogs_train.jsonl"),
        renamed_rows("test.jsonl", 64, "mb"),
    )
    .unwrap();
    let out = dir.path().join("cv");
    let mut c = config(&data_root, &out);
    c.methods.retain(|m| m.id == "single");
    let pooled = c.methods[0].to_pooled();
    c.methods.push(pooled);
    c.seeds = vec![1];
    c.protocol = compare::Protocol::Cv(compare::CvSpec { folds: 2, repeats: 2 });
    let mut lines = Vec::new();

    // 4 cells x 2 methods, in two shards.
    let mut counts = vec![];
    for k in 0..2 {
        c.shard = Some((k, 2));
        let r = compare::run(&c, &mut |l| lines.push(l.to_owned())).unwrap();
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        counts.push(r.runs.len());
    }
    assert_eq!(counts, [4, 4]);
    c.shard = None;
    let r = compare::run(&c, &mut |l| lines.push(l.to_owned())).unwrap();
    assert_eq!(r.runs.len(), 8);
    assert!(r.failures.is_empty());

    // Every row is tested exactly once per repeat; no test text is a training text.
    let all = read_texts(&root().join("fixtures/train.jsonl"));
    let key = |t: &str| fintune_data::normalized_text_key(t);
    for rep in 1..=2 {
        let mut tested: Vec<String> = (1..=2)
            .flat_map(|f| read_texts(&out.join(format!("splits/fiqa/r{rep}f{f}/test.jsonl"))))
            .map(|(id, _)| id)
            .collect();
        tested.sort();
        let mut ids: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        assert_eq!(tested, ids, "repeat {rep}");
    }
    let headlines = read_texts(&data_root.join("semeval2017_task5/headlines_train.jsonl"));
    for cell in ["r1f1", "r1f2", "r2f1", "r2f2"] {
        let split = out.join("splits/fiqa").join(cell);
        let eval: std::collections::HashSet<String> = ["val", "test"]
            .iter()
            .flat_map(|p| read_texts(&split.join(format!("{p}.jsonl"))))
            .map(|(_, t)| key(&t))
            .collect();
        let pooled = read_texts(&split.join("train-pooled.jsonl"));
        assert!(pooled.iter().all(|(_, t)| !eval.contains(&key(t))), "{cell}: leak");
        let report: fintune_data::DedupReport =
            serde_json::from_str(&std::fs::read_to_string(split.join("pool.json")).unwrap())
                .unwrap();
        let names: Vec<&str> = report.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fiqa", "semeval-headlines", "semeval-microblogs"]);
        let hl_dropped = headlines.iter().filter(|(_, t)| eval.contains(&key(t))).count();
        assert!(hl_dropped > 0, "{cell}: the fixture should put a headline into evaluation");
        assert_eq!(report.sets[1].dropped, hl_dropped, "{cell}");
        assert_eq!(report.sets[0].dropped, 0, "groups keep the set's own texts apart");
        assert_eq!(report.kept, pooled.len());
        // The pooled run records the counts in its folder and in results.json.
        let run_dir = out.join("runs/fiqa/single-pooled").join(cell);
        let seed_dir = std::fs::read_dir(&run_dir).unwrap().next().unwrap().unwrap().path();
        assert!(seed_dir.join("pool.json").exists(), "{}", seed_dir.display());
        let run =
            r.runs.iter().find(|x| x.method == "single-pooled" && x.cell.as_deref() == Some(cell));
        assert_eq!(run.unwrap().pool.as_ref(), Some(&report));
    }
    // The seed is a function of the cell, the same for both methods.
    for m in ["single", "single-pooled"] {
        let mut seeds: Vec<(String, u64)> = r
            .runs
            .iter()
            .filter(|x| x.method == m)
            .map(|x| (x.cell.clone().unwrap(), x.seed))
            .collect();
        seeds.sort();
        assert_eq!(
            seeds,
            [("r1f1", 1), ("r1f2", 2), ("r2f1", 3), ("r2f2", 4)].map(|(c, s)| (c.to_owned(), s))
        );
    }
    let sums = &r.summaries["fiqa"];
    let pooled = sums.iter().find(|s| s.method == "single-pooled").unwrap();
    assert_eq!(pooled.tests["vs single"].n, 4);
    assert!(pooled.tests["vs single"].t.is_some());
    let ci = pooled.intervals["vs single"];
    assert!(ci.low <= ci.estimate && ci.estimate <= ci.high, "{ci:?}");
    assert_eq!(ci.resamples, compare::BOOTSTRAP_RESAMPLES);
    assert_eq!(r.cv.as_ref().unwrap().folds, 2);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for needle in ["cross-validation", "single-pooled", "95% CI", "bootstrap", "dropped"] {
        assert!(md.contains(needle), "results.md lacks {needle}:\n{md}");
    }

    // Other folds in the same folder are refused, naming the cells' record.
    c.protocol = compare::Protocol::Cv(compare::CvSpec { folds: 3, repeats: 2 });
    let e = compare::run(&c, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("cv.json") && e.to_string().contains("3 folds"), "{e}");
}

/// The cross-validation cells and pooled training files of the three shared SSIX sets (no
/// training): every text tested once per repeat, no pooled text equal to an evaluated one.
/// `cargo test -p fintune-train --test it shared_data_cv -- --ignored --nocapture` prints the
/// pool counts.
#[test]
#[ignore = "needs ../shared/data"]
fn cv_cells_and_pools_of_the_shared_sets_shared_data() {
    let data_root = crate::shared_data();
    let dir = tempfile::tempdir().unwrap();
    let spec = compare::CvSpec::default();
    let key = |t: &str| fintune_data::normalized_text_key(t);
    for ds in compare::known_datasets() {
        let split_dir = dir.path().join(&ds.name);
        let cells = compare::split_cv(&ds, &data_root, &split_dir, spec).unwrap();
        assert_eq!(cells.len(), 10);
        let rows = read_texts(&data_root.join(&ds.file)).len();
        for rep in 0..2 {
            let tested: usize =
                cells[rep * 5..rep * 5 + 5].iter().map(|c| read_texts(&c[2]).len()).sum();
            assert_eq!(tested, rows, "{} repeat {rep}", ds.name);
        }
        let cell = &cells[0];
        let (pooled, report) = compare::pool_split(
            &ds.name,
            cell,
            &compare::known_datasets(),
            &data_root,
            cell[0].parent().unwrap(),
        )
        .unwrap();
        let eval: std::collections::HashSet<String> =
            cell[1..].iter().flat_map(|p| read_texts(p)).map(|(_, t)| key(&t)).collect();
        let texts = read_texts(&pooled);
        assert!(texts.iter().all(|(_, t)| !eval.contains(&key(t))), "{}", ds.name);
        assert_eq!(texts.len(), report.kept);
        println!(
            "{} r1f1: test {} rows, val {}, train {}; pooled {} rows ({} dropped: {:?})",
            ds.name,
            read_texts(&cell[2]).len(),
            read_texts(&cell[1]).len(),
            read_texts(&cell[0]).len(),
            report.kept,
            report.dropped,
            report.sets.iter().map(|s| (s.name.as_str(), s.dropped)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn compare_command_line_checks_folds_and_knows_pooled_methods() {
    let fintune = || {
        let mut c = assert_cmd::Command::cargo_bin("fintune").unwrap();
        c.current_dir(root());
        c
    };
    let out = fintune()
        .args(["compare", "--protocol", "cv", "--folds", "1", "--data-root", "fixtures"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("--folds") && out.contains("folds must be at least 2"), "{out}");
    let out = fintune()
        .args(["compare", "--methods", "single-pooled,nope", "--data-root", "fixtures"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("unknown method `nope`") && out.contains("single-pooled"), "{out}");
    assert!(out.contains("distill") && out.contains("distill-pooled"), "{out}");
    // The distillation methods run when named, and not in the default `all`.
    let count = |methods: &[&str]| -> usize {
        let mut args = vec!["compare", "--count-runs", "--protocol", "fixed", "--seeds", "1"];
        args.extend(["--datasets", "fiqa", "--data-root", "fixtures"]);
        args.extend(methods);
        let out = fintune().args(&args).assert().success().get_output().stdout.clone();
        String::from_utf8(out).unwrap().trim().parse().unwrap()
    };
    assert_eq!(count(&["--methods", "distill,distill-pooled"]), 2);
    let ids: Vec<String> =
        compare::all_methods(&[]).into_iter().filter(|m| !m.pooled).map(|m| m.id).collect();
    assert!(ids.iter().any(|m| m == "distill"));
    let others: Vec<&str> = ids.iter().map(String::as_str).filter(|m| *m != "distill").collect();
    let listed = others.join(",");
    let all = count(&[]);
    assert_eq!(count(&["--methods", "all"]), all);
    assert_eq!(all, count(&["--methods", &listed]), "the default is every method but distill");
}

#[test]
fn compare_takes_its_shard_from_the_scheduler_and_refuses_a_bad_one() {
    let fintune = || {
        let mut c = assert_cmd::Command::cargo_bin("fintune").unwrap();
        c.current_dir(root());
        for v in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "RANK", "WORLD_SIZE"] {
            c.env_remove(v);
        }
        c
    };
    let stderr = |c: &mut assert_cmd::Command| {
        String::from_utf8(c.assert().failure().get_output().stderr.clone()).unwrap()
    };
    // A Slurm array task past the array's count: refused before anything runs.
    let out = stderr(
        fintune()
            .args(["compare", "--data-root", "fixtures", "--out", "/nonexistent/never-written"])
            .env("SLURM_ARRAY_TASK_ID", "4")
            .env("SLURM_ARRAY_TASK_COUNT", "4"),
    );
    assert!(out.contains("SLURM_ARRAY_TASK_ID") && out.contains("index 4 of 4"), "{out}");
    // A Kubernetes index without the completion count.
    let out = stderr(
        fintune()
            .args(["compare", "--data-root", "fixtures"])
            .env("JOB_COMPLETION_INDEX", "1")
            .env_remove("FINTUNE_SHARDS"),
    );
    assert!(out.contains("FINTUNE_SHARDS") && out.contains("not set"), "{out}");
    // The flag wins over the environment, and is checked.
    let out = stderr(
        fintune().args(["compare", "--shard", "2/2", "--data-root", "fixtures"]).env("RANK", "0"),
    );
    assert!(out.contains("--shard") && out.contains("0 <= K < N"), "{out}");
}

#[test]
fn a_seed_ensemble_method_runs_in_the_matrix_and_is_reused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data_root = fiqa_data_root(dir.path());
    let mut c = config(&data_root, &dir.path().join("cmp"));
    let mut ens = compare::all_methods(&[]).into_iter().find(|m| m.id == "single-ens5").unwrap();
    assert_eq!(ens.optim.ensemble, Some(5));
    ens.id = "single-ens2".into();
    ens.optim.ensemble = Some(2);
    c.methods = vec![ens];
    c.seeds = vec![1];
    let r = compare::run(&c, &mut |_| {}).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.runs.len(), 1);
    let run = dir.path().join("cmp/runs/fiqa/single-ens2/seed1");
    let m: fintune_train::ensemble::EnsembleMetrics =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m.members.len(), 2);
    assert_eq!(r.runs[0].test.mse, m.test.as_ref().unwrap().mse);
    assert!(!run.join("model").exists() && !run.join("members/1/model").exists());
    assert!(!run.join("members/0/checkpoint").exists());
    // A second pass reuses the finished ensemble.
    let again = compare::run(&c, &mut |_| {}).unwrap();
    assert_eq!(again.runs[0].test.mse, r.runs[0].test.mse);
}

/// Shards of one matrix share the sequential control's stage-1 run: a shard that finds another
/// process holding `stage1/` waits for it (and says so) instead of training the same run into
/// the same folder beside it.
#[test]
fn a_shard_waits_for_the_stage_one_run_another_process_holds() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // The fixture set stands in for FiQA and for the PhraseBank (a regression on its scores).
    let data_root = dir.path().join("data");
    for (sub, file) in [("fiqa2018_task1", "train.jsonl"), ("financial_phrasebank", "all.jsonl")] {
        std::fs::create_dir_all(data_root.join(sub)).unwrap();
        std::fs::copy(root().join("fixtures/train.jsonl"), data_root.join(sub).join(file)).unwrap();
    }
    let out = dir.path().join("cmp");
    let mut c = config(&data_root, &out);
    c.methods = compare::all_methods(&[]).into_iter().filter(|m| m.id == "seq-fpb").collect();
    c.seeds = vec![1];
    let stage1 = out.join("stage1");
    std::fs::create_dir_all(&stage1).unwrap();
    let held = fintune_train::run::files::lock_dir(&stage1, None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let shard = std::thread::spawn(move || {
        compare::run(&c, &mut |l| {
            let _ = tx.send(l.to_owned());
        })
    });
    let waiting = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(600))
            .expect("compare neither waited nor said so");
        if line.contains("waiting for another process") {
            break line;
        }
    };
    assert!(waiting.contains("stage1"), "{waiting}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!stage1.join("phrasebank").exists(), "nothing is written while the lock is held");
    drop(held);
    let r = shard.join().unwrap().unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.runs.len(), 1);
    assert!(stage1.join("phrasebank/metrics.json").exists(), "stage 1 ran once the lock was free");
}

fn scored_rows(p: &std::path::Path) -> Vec<(String, f32)> {
    let row = |v: &serde_json::Value| {
        (v["text"].as_str().unwrap().to_owned(), v["score"].as_f64().unwrap() as f32)
    };
    jsonl_rows(p).iter().map(row).collect()
}

/// A distillation method trains one teacher per data, split and seed (shared by the methods
/// that need it and reused by a second pass), scores the PhraseBank's sentences that are not
/// validation or test texts of the run with it, and trains the student on its data plus those.
#[test]
fn a_distillation_method_shares_one_teacher_whose_scores_the_student_trains_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data_root = fiqa_data_root(dir.path());
    std::fs::create_dir_all(data_root.join("financial_phrasebank")).unwrap();
    // The "PhraseBank": the FiQA stand-in's own texts (so some are validation and test texts
    // of the split and must be dropped) and the test fixture's.
    let sentences =
        renamed_rows("train.jsonl", 1000, "pb") + &renamed_rows("test.jsonl", 1000, "pt");
    std::fs::write(data_root.join("financial_phrasebank/all.jsonl"), &sentences).unwrap();
    let out = dir.path().join("cmp");
    let mut c = config(&data_root, &out);
    c.teacher = minilm();
    let distill = compare::all_methods(&[]).into_iter().find(|m| m.id == "distill").unwrap();
    let mut twin = distill.clone();
    twin.id = "distill-lr".into();
    twin.optim.lr = Some(1e-4);
    c.methods = vec![distill, twin];
    c.seeds = vec![1];
    let mut lines = Vec::new();
    let r = compare::run(&c, &mut |l| lines.push(l.to_owned())).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert_eq!(r.runs.len(), 2);
    let trained = lines.iter().filter(|l| l.starts_with("teacher (")).count();
    assert_eq!(trained, 1, "one teacher for both methods: {lines:#?}");
    let teacher = out.join("teachers/fiqa/own/seed1");
    let file = teacher.join("distill.jsonl");
    let rows = scored_rows(&file);
    let held_out: std::collections::HashSet<String> = ["val.jsonl", "test.jsonl"]
        .iter()
        .flat_map(|f| read_texts(&out.join("splits/fiqa").join(f)))
        .map(|(_, t)| t)
        .collect();
    let all = scored_rows(&data_root.join("financial_phrasebank/all.jsonl"));
    let expected: Vec<&String> =
        all.iter().map(|(t, _)| t).filter(|t| !held_out.contains(*t)).collect();
    assert!(expected.len() < all.len(), "the split's held-out texts are among the sentences");
    assert_eq!(rows.iter().map(|(t, _)| t).collect::<Vec<_>>(), expected);
    // The scores are the teacher's predictions.
    let p =
        fintune_train::predict::Predictor::load(&teacher.join("model"), tch::Device::Cpu).unwrap();
    let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    let predicted = p.predict(&texts).unwrap();
    for ((t, s), q) in rows.iter().zip(&predicted.score) {
        assert!((s - q.clamp(-1.0, 1.0)).abs() < 1e-5, "{t}: file {s}, teacher {q}");
    }
    // The student trained on its data and the teacher's scores.
    let student =
        TrainConfig::from_toml_file(&out.join("runs/fiqa/distill/seed1/config.toml")).unwrap();
    assert_eq!(student.data.train.len(), 2);
    assert_eq!(student.data.train[1], file);
    assert_eq!(student.model.backbone, minilm());
    // A second pass reuses the teacher, its scores and both runs.
    let mut again_lines = Vec::new();
    let again = compare::run(&c, &mut |l| again_lines.push(l.to_owned())).unwrap();
    assert!(!again_lines.iter().any(|l| l.starts_with("teacher")), "{again_lines:#?}");
    assert_eq!(again.runs[0].test.mse, r.runs[0].test.mse);
    // Finished students need nothing of their teacher: restored without it (as from committed
    // `metrics.json` and `config.toml`), they are reused and no teacher is trained.
    std::fs::remove_dir_all(out.join("teachers")).unwrap();
    let mut restored_lines = Vec::new();
    let restored = compare::run(&c, &mut |l| restored_lines.push(l.to_owned())).unwrap();
    assert!(restored.failures.is_empty(), "{:?}", restored.failures);
    assert!(!restored_lines.iter().any(|l| l.starts_with("teacher")), "{restored_lines:#?}");
    assert!(!out.join("teachers").exists());
    assert_eq!(restored.runs[1].test.mse, r.runs[1].test.mse);
}
