use proptest::prelude::*;

use super::*;
use crate::{read_dataset, ReadOptions};

fn splits<'a>(
    name: &'a str,
    train: &'a [&'a str],
    val: &'a [&'a str],
    test: &'a [&'a str],
) -> SetSplits<'a, &'a str> {
    SetSplits { name, train, val, test }
}

#[test]
fn normalised_keys() {
    assert_eq!(normalized_text_key("Tesco's profit FALLS!"), "tescosprofitfalls");
    assert_eq!(normalized_text_key("tesco s  profit falls"), "tescosprofitfalls");
    assert_eq!(normalized_text_key("Ümlaut Été"), "ümlautété");
    assert_eq!(normalized_text_key("?!"), "?!", "no alphanumerics: kept as is");
}

#[test]
fn drops_training_texts_seen_in_any_evaluation_split() {
    // a: train "Shares soar", "Profit falls", "shares SOAR!", "New CEO"; val "Deal closed".
    // b: train "Deal closed.", "Guidance cut"; test "profit falls", "Other".
    // Evaluation keys: dealclosed, profitfalls, other.
    // a drops "Profit falls" (b's test); keeps 0, 2, 3. b drops "Deal closed." (a's val).
    let a_train = ["Shares soar", "Profit falls", "shares SOAR!", "New CEO"];
    let b_train = ["Deal closed.", "Guidance cut"];
    let sets = [
        splits("a", &a_train, &["Deal closed"], &[]),
        splits("b", &b_train, &[], &["profit falls", "Other"]),
    ];
    let d = dedup_across_sets(&sets);
    assert_eq!(d.keep, vec![vec![0, 2, 3], vec![1]]);
    let a = &d.report.sets[0];
    assert_eq!(
        (a.name.as_str(), a.train_before, a.train_texts, a.dropped, a.dropped_texts, a.kept),
        ("a", 4, 3, 1, 1, 3)
    );
    let b = &d.report.sets[1];
    assert_eq!((b.train_before, b.dropped, b.kept), (2, 1, 1));
    assert_eq!((d.report.dropped, d.report.kept), (2, 4));
    assert_eq!(d.report.rule, DEDUP_RULE);
    assert!(d.report.emptied_sets().is_empty());
}

#[test]
fn own_evaluation_texts_count_too_and_emptied_sets_are_named() {
    let train = ["x one", "X-One"];
    let d = dedup_across_sets(&[splits("solo", &train, &["x  ONE"], &[])]);
    assert_eq!(d.keep, vec![Vec::<usize>::new()]);
    assert_eq!((d.report.sets[0].dropped, d.report.sets[0].dropped_texts), (2, 1));
    assert_eq!(d.report.emptied_sets(), vec!["solo"]);
    // A set with no training data at all is not "emptied".
    let d = dedup_across_sets(&[splits("eval-only", &[], &["x"], &[])]);
    assert!(d.report.emptied_sets().is_empty());
}

#[test]
fn report_serialises_for_metrics_json() {
    let d = dedup_across_sets(&[splits("fiqa", &["a", "b"], &["b"], &[])]);
    let json = serde_json::to_value(&d.report).unwrap();
    assert_eq!(json["sets"][0]["name"], "fiqa");
    assert_eq!(json["sets"][0]["dropped"], 1);
    assert_eq!(json["sets"][0]["kept"], 1);
    assert_eq!(json["dropped"], 1);
    let back: DedupReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, d.report);
}

#[test]
fn datasets_are_deduplicated_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rows: &[(&str, &str)]| {
        let path = dir.path().join(name);
        let lines: Vec<String> = rows
            .iter()
            .map(|(id, text)| format!("{{\"id\": \"{id}\", \"text\": \"{text}\", \"score\": 0.1}}"))
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        read_dataset(&[path], &ReadOptions::new()).unwrap()
    };
    let train = write("train.jsonl", &[("t1", "Alpha"), ("t2", "Beta!"), ("t3", "Gamma")]);
    let val = write("val.jsonl", &[("v1", "beta")]);
    let test = write("test.jsonl", &[("x1", "ALPHA")]);
    let other_val = write("other_val.jsonl", &[("o1", "Delta")]);
    let sets = [
        DatasetSplits { name: "a", train: &train, val: &val, test: Some(&test) },
        DatasetSplits { name: "b", train: &val, val: &other_val, test: None },
    ];
    let (trains, report) = dedup_datasets(&sets);
    assert_eq!(trains[0].ids(), ["t3"]);
    // b's training text "beta" is a's validation text: dropped.
    assert!(trains[1].is_empty());
    assert_eq!(report.emptied_sets(), vec!["b"]);
    assert_eq!(report.dropped, 3);
}

/// Texts from a small alphabet so that collisions (after normalisation) are common.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![Just("a"), Just("B"), Just("c"), Just(" "), Just("!")], 0..4)
        .prop_map(|v| v.concat())
}

fn set() -> impl Strategy<Value = (Vec<String>, Vec<String>, Vec<String>)> {
    (
        prop::collection::vec(text(), 0..12),
        prop::collection::vec(text(), 0..4),
        prop::collection::vec(text(), 0..4),
    )
}

proptest! {
    #[test]
    fn no_kept_training_text_is_an_eval_text_and_dedup_is_idempotent_and_ordered(
        raw in prop::collection::vec(set(), 1..4),
    ) {
        let names: Vec<String> = (0..raw.len()).map(|i| format!("s{i}")).collect();
        let sets: Vec<SetSplits<'_, String>> = raw
            .iter()
            .zip(&names)
            .map(|((train, val, test), name)| SetSplits { name, train, val, test })
            .collect();
        let d = dedup_across_sets(&sets);
        let eval: HashSet<String> = raw
            .iter()
            .flat_map(|(_, v, t)| v.iter().chain(t))
            .map(|t| normalized_text_key(t))
            .collect();
        for ((s, keep), counts) in sets.iter().zip(&d.keep).zip(&d.report.sets) {
            // Order-preserving: strictly increasing indices.
            prop_assert!(keep.windows(2).all(|w| w[0] < w[1]));
            // No kept text is an evaluation text; every dropped one is.
            for (i, t) in s.train.iter().enumerate() {
                let is_eval = eval.contains(&normalized_text_key(t));
                prop_assert_eq!(keep.binary_search(&i).is_ok(), !is_eval, "{:?}", t);
            }
            prop_assert_eq!(counts.dropped + counts.kept, s.train.len());
            prop_assert_eq!(counts.kept, keep.len());
        }
        // Idempotent: de-duplicating the kept texts again drops nothing.
        let kept: Vec<Vec<String>> = sets
            .iter()
            .zip(&d.keep)
            .map(|(s, k)| k.iter().map(|&i| s.train[i].clone()).collect())
            .collect();
        let again: Vec<SetSplits<'_, String>> = sets
            .iter()
            .zip(&kept)
            .map(|(s, train)| SetSplits { train, ..*s })
            .collect();
        let d2 = dedup_across_sets(&again);
        prop_assert_eq!(d2.report.dropped, 0);
        for (k2, train) in d2.keep.iter().zip(&kept) {
            prop_assert_eq!(k2, &(0..train.len()).collect::<Vec<_>>());
        }
    }
}
