use super::*;
use crate::read_dataset;

fn dataset(content: &str, opts: ReadOptions) -> Dataset {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    std::fs::write(&path, content).unwrap();
    read_dataset(&[&path], &opts).unwrap()
}

const ROWS: &str = concat!(
    "{\"id\": \"a\", \"text\": \"Tesco sales fall.\", \"score\": -0.5, \"target\": \"Tesco\"}\n",
    "{\"id\": \"b\", \"text\": \"Tesco sales fall.\", \"score\": -0.3, \"target\": \"Asda\"}\n",
    "{\"id\": \"c\", \"text\": \"TESCO sales fall\", \"score\": -0.4, \"target\": \"Tesco\"}\n",
    "{\"id\": \"d\", \"text\": \"Tesco sales fall.\", \"score\": -0.2, \"target\": \"Tesco\"}\n",
    "{\"id\": \"e\", \"text\": \"Up!\", \"score\": 0.5, \"group\": \"g1\"}\n",
    "{\"id\": \"f\", \"text\": \"Up!\", \"score\": 0.5}\n",
    "{\"id\": \"g\", \"text\": \"!!!\", \"score\": 0.1}\n",
);

#[test]
fn default_groups_join_rows_with_the_same_normalized_text() {
    let d = dataset(ROWS, ReadOptions::new());
    assert_eq!(
        d.groups(),
        [
            "text:tescosalesfall",
            "text:tescosalesfall",
            "text:tescosalesfall",
            "text:tescosalesfall",
            "g1",
            "text:up",
            "text:!!!",
        ]
    );
    let by_id = dataset(ROWS, ReadOptions::new().default_group(DefaultGroup::Id));
    assert_eq!(by_id.groups()[0], "id:a");
    assert_eq!(by_id.groups()[4], "g1");
    let exact = dataset(ROWS, ReadOptions::new().default_group(DefaultGroup::ExactText));
    assert_eq!(exact.groups()[2], "text:TESCO sales fall");
}

#[test]
fn warnings_flag_same_text_and_target_with_different_scores() {
    let d = dataset(ROWS, ReadOptions::new());
    assert_eq!(
        d.warnings(),
        [Warning::ConflictingScores {
            text: "Tesco sales fall.".into(),
            target: Some("Tesco".into()),
            rows: vec![("a".into(), -0.5), ("d".into(), -0.2)],
        }]
    );
    // Kept, not merged.
    assert_eq!(d.len(), 7);
    assert_eq!(d.summary().warnings, 1);
}

#[test]
fn accessors_and_take() {
    let d = dataset(ROWS, ReadOptions::new());
    assert_eq!(d.id(1), "b");
    assert_eq!(d.text(4), "Up!");
    assert_eq!(d.score(2), Some(-0.4));
    assert!(d.is_labelled());
    let sub = d.take(&[3, 0, 5]);
    assert_eq!(sub.ids(), ["d", "a", "f"]);
    assert_eq!(sub.scores().unwrap(), [-0.2, -0.5, 0.5]);
    assert_eq!(sub.targets(), [Some("Tesco"), Some("Tesco"), None]);
    assert_eq!(sub.warnings().len(), 1);
    assert_eq!(sub.batch().schema(), d.batch().schema());
    let none = d.take(&[1, 2]);
    assert!(none.warnings().is_empty());
}

#[test]
#[should_panic(expected = "out of bounds")]
fn take_out_of_bounds_panics() {
    dataset(ROWS, ReadOptions::new()).take(&[7]);
}

#[test]
fn summary_counts_skipped_rows() {
    let d = dataset(
        "{\"text\": \"a\", \"score\": 0.1}\n{\"text\": \"\", \"score\": 0.1}\n",
        ReadOptions::new().skip_invalid(true),
    );
    let s = d.summary();
    assert_eq!((s.rows, s.skipped_rows), (1, 1));
    assert!(s.to_string().contains("rows: 1; 1 invalid rows skipped"), "{s}");
}
