//! Cross-set de-duplication on the real data in `../shared/data`, against the overlaps that
//! `../shared/data/README.md` documents.

use std::path::PathBuf;

use fintune_data::{dedup_datasets, read_dataset, Dataset, DatasetSplits, ReadOptions};

fn load(file: &str) -> Dataset {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let path = dir.join(file);
    assert!(path.is_file(), "{} is missing (see DEVELOPERS.md)", path.display());
    read_dataset(&[path], &ReadOptions::new()).unwrap_or_else(|e| panic!("{file}: {e:#}"))
}

/// README: "198 of the 587 distinct FiQA train texts are also SemEval headline-train/trial
/// titles" (the README's rule: lowercase, keep only alphanumerics, the crate's rule), and the
/// FiQA train file has "608 records (219 headline, 389 post)". With the SemEval headlines as
/// evaluation data, all 219 FiQA headline records (198 distinct texts) go and the 389 posts
/// stay. The PhraseBank shares no text with any SSIX set ("no overlap found").
#[test]
#[ignore = "needs ../shared/data"]
fn dedup_counts_on_shared_data_match_the_readme() {
    let fiqa = load("fiqa2018_task1/train.jsonl");
    let h_train = load("semeval2017_task5/headlines_train.jsonl");
    let h_trial = load("semeval2017_task5/headlines_trial.jsonl");
    let m_train = load("semeval2017_task5/microblogs_train.jsonl");
    let m_trial = load("semeval2017_task5/microblogs_trial.jsonl");
    let phrasebank = load("financial_phrasebank/all.jsonl");
    let empty = fiqa.take(&[]);

    let (trains, report) = dedup_datasets(&[
        DatasetSplits { name: "fiqa", train: &fiqa, val: &empty, test: None },
        DatasetSplits { name: "headlines", train: &empty, val: &h_train, test: Some(&h_trial) },
    ]);
    let f = &report.sets[0];
    assert_eq!((f.train_before, f.train_texts), (608, 587), "{f:?}");
    assert_eq!((f.dropped, f.dropped_texts, f.kept), (219, 198, 389), "{f:?}");
    assert_eq!(trains[0].len(), 389);
    // What stays are exactly the posts: every FiQA headline is a SemEval headline.
    let kept_sources: std::collections::BTreeSet<Option<&str>> =
        trains[0].sources().into_iter().collect();
    assert_eq!(kept_sources, [Some("post")].into_iter().collect(), "{report:?}");

    // The PhraseBank against every SSIX set as evaluation data: nothing is dropped.
    let (_, report) = dedup_datasets(&[
        DatasetSplits { name: "phrasebank", train: &phrasebank, val: &empty, test: None },
        DatasetSplits { name: "fiqa", train: &empty, val: &fiqa, test: None },
        DatasetSplits { name: "headlines", train: &empty, val: &h_train, test: Some(&h_trial) },
        DatasetSplits { name: "microblogs", train: &empty, val: &m_train, test: Some(&m_trial) },
    ]);
    let p = &report.sets[0];
    assert_eq!((p.train_before, p.dropped, p.kept), (4846, 0, 4846), "{p:?}");
}
