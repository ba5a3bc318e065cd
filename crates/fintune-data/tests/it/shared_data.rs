//! The real data in `../shared/data` (relative to the repository) loads as it is, its summaries
//! match the data's own `stats.json`, and JSONL -> Parquet -> JSONL keeps its content.
//! Ignored by default (`#[ignore = "needs ../shared/data"]`); `cargo xtask test` runs them
//! when the folder exists (they fail, naming it, when it does not).

use std::path::PathBuf;

use fintune_data::{convert, read_dataset, Dataset, Format, ReadOptions, Warning, WriteOptions};

const FILES: [&str; 6] = [
    "fiqa2018_task1/train.jsonl",
    "semeval2017_task5/headlines_train.jsonl",
    "semeval2017_task5/headlines_trial.jsonl",
    "semeval2017_task5/microblogs_train.jsonl",
    "semeval2017_task5/microblogs_trial.jsonl",
    "financial_phrasebank/all.jsonl",
];

fn shared_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    assert!(
        dir.join(FILES[0]).is_file(),
        "shared data not found at {} (see DEVELOPERS.md)",
        dir.display()
    );
    dir
}

fn load(dir: &std::path::Path, file: &str) -> Dataset {
    read_dataset(&[dir.join(file)], &ReadOptions::new()).unwrap_or_else(|e| panic!("{file}: {e:#}"))
}

#[test]
#[ignore = "needs ../shared/data"]
fn every_shared_file_loads_and_matches_stats_json() {
    let dir = shared_dir();
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    for file in FILES {
        let data = load(&dir, file);
        let expected = &stats["splits"][file];
        let summary = data.summary();
        let scores = summary.scores.as_ref().unwrap();
        assert_eq!(summary.rows as u64, expected["n"].as_u64().unwrap(), "{file}");
        assert!(data.skipped().is_empty());
        let close =
            |a: f64, b: &serde_json::Value, tol: f64| (a - b.as_f64().unwrap()).abs() <= tol;
        assert!(close(scores.mean, &expected["mean"], 5e-5), "{file} mean {}", scores.mean);
        assert!(close(scores.std, &expected["std"], 5e-5), "{file} std {}", scores.std);
        assert!(close(f64::from(scores.min), &expected["min"], 1e-6), "{file}");
        assert!(close(f64::from(scores.max), &expected["max"], 1e-6), "{file}");
        let hist: Vec<u64> = expected["hist10_[-1,1]"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(scores.histogram, hist, "{file}");
        assert_eq!(scores.neutral, expected["n_abs_lt_0.2"].as_u64().unwrap(), "{file}");
        // Every text is non-blank, every id unique: validated. Targets are present for the
        // aspect-based sets, null for the PhraseBank.
        let with_target = data.targets().iter().filter(|t| t.is_some()).count();
        if file.starts_with("financial_phrasebank") {
            assert_eq!(with_target, 0);
        } else {
            assert_eq!(with_target, data.len(), "{file}");
        }
        // Warnings: computed independently from the raw JSON.
        let mut scores_by_key: std::collections::HashMap<(String, Option<String>), Vec<u32>> =
            std::collections::HashMap::new();
        for line in std::fs::read_to_string(dir.join(file)).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let key =
                (v["text"].as_str().unwrap().to_string(), v["target"].as_str().map(str::to_string));
            let bits = (v["score"].as_f64().unwrap() as f32).to_bits();
            let seen = scores_by_key.entry(key).or_default();
            if !seen.contains(&bits) {
                seen.push(bits);
            }
        }
        let conflicts = scores_by_key.values().filter(|s| s.len() > 1).count();
        assert_eq!(data.warnings().len(), conflicts, "{file}");
        println!("{file}: {conflicts} warnings\n{summary}");
    }
}

#[test]
#[ignore = "needs ../shared/data"]
fn fiqa_has_608_rows_and_groups_keep_shared_texts_together() {
    let dir = shared_dir();
    let data = load(&dir, FILES[0]);
    assert_eq!(data.len(), 608);
    assert_eq!(data.summary().rows, 608);
    // (text, target) pairs share texts: the default groups put them together.
    let groups = data.groups();
    let texts = data.texts();
    for i in 0..data.len() {
        for j in i + 1..data.len() {
            if texts[i] == texts[j] {
                assert_eq!(groups[i], groups[j], "{} / {}", data.id(i), data.id(j));
            }
        }
    }
    let distinct: std::collections::HashSet<&String> = groups.iter().collect();
    assert!(distinct.len() < data.len(), "some FiQA texts have several targets");
}

#[test]
#[ignore = "needs ../shared/data"]
fn all_shared_files_load_together_with_the_documented_conflicts() {
    let dir = shared_dir();
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    let all = read_dataset(&paths, &ReadOptions::new()).unwrap();
    assert_eq!(all.len(), 608 + 1038 + 14 + 1621 + 9 + 4846);

    // README: PhraseBank has two sentences with conflicting labels; SemEval headline-train
    // ids 904 and 916 are the same (title, company) with scores 0.256 and 0.292.
    let fpb = load(&dir, "financial_phrasebank/all.jsonl");
    assert_eq!(fpb.warnings().len(), 2, "{:#?}", fpb.warnings());
    let headlines = load(&dir, "semeval2017_task5/headlines_train.jsonl");
    let found = headlines.warnings().iter().any(|w| match w {
        Warning::ConflictingScores { rows, .. } => {
            let scores: Vec<f32> = rows.iter().map(|r| r.1).collect();
            scores.contains(&0.256) && scores.contains(&0.292)
        }
        _ => false,
    });
    assert!(found, "{:#?}", headlines.warnings());
}

#[test]
#[ignore = "needs ../shared/data"]
fn jsonl_to_parquet_to_jsonl_keeps_the_content() {
    let dir = shared_dir();
    let tmp = tempfile::tempdir().unwrap();
    for file in FILES {
        let input = dir.join(file);
        let parquet = tmp.path().join("mid.parquet");
        let back = tmp.path().join("back.jsonl");
        let opts = ReadOptions::new().batch_size(500);
        let r1 = convert(&input, &parquet, &opts, &WriteOptions::new()).unwrap();
        assert_eq!(r1.output_format, Format::Parquet);
        let r2 = convert(&parquet, &back, &opts, &WriteOptions::new()).unwrap();
        assert_eq!(r1.rows, r2.rows);

        let original = load(&dir, file);
        let round = read_dataset(&[&back], &ReadOptions::new()).unwrap();
        assert_eq!(round.ids(), original.ids(), "{file}");
        assert_eq!(round.texts(), original.texts(), "{file}");
        let bits =
            |d: &Dataset| d.scores().unwrap().iter().map(|s| s.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&round), bits(&original), "{file}");
        assert_eq!(round.targets(), original.targets(), "{file}");
        assert_eq!(round.sources(), original.sources(), "{file}");
        assert_eq!(round.batch(), original.batch(), "{file}");

        // The scores are the decimals of the source file, exactly (as f32).
        let first: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&input).unwrap().lines().next().unwrap())
                .unwrap();
        assert_eq!(round.score(0), Some(first["score"].as_f64().unwrap() as f32));
        assert_eq!(round.id(0), first["id"].as_str().unwrap());
    }
}
