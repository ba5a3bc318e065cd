//! Acceptance scenario of issue 3: a NaN score on line 7 and an empty text on line 9.

use fintune_data::{convert, read_dataset, Error, Format, ProblemKind, ReadOptions, WriteOptions};

fn bad_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut s = String::new();
    for i in 1..=10 {
        let (text, score) = match i {
            7 => ("seventh".to_string(), "NaN".to_string()),
            9 => (String::new(), "0.9".to_string()),
            _ => (format!("row {i}"), format!("-0.{i}")),
        };
        s.push_str(&format!("{{\"id\": \"r{i}\", \"text\": \"{text}\", \"score\": {score}}}\n"));
    }
    let path = dir.join("scenario.jsonl");
    std::fs::write(&path, s).unwrap();
    path
}

#[test]
fn fails_naming_both_lines_then_loads_the_rest_when_skipping() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = bad_file(dir.path());
    let err = read_dataset(&[&path], &ReadOptions::new()).unwrap_err();
    let Error::Invalid(report) = &err else { panic!("{err:?}") };
    let found: Vec<_> =
        report.problems.iter().map(|p| (p.line_or_row(), p.column.as_deref(), p.kind)).collect();
    assert_eq!(
        found,
        [
            (Some(7), Some("score"), ProblemKind::NonFiniteScore),
            (Some(9), Some("text"), ProblemKind::EmptyText)
        ]
    );
    let shown = err.to_string();
    assert!(shown.contains("scenario.jsonl:7: column \"score\": NaN is not a finite number"));
    assert!(shown.contains("scenario.jsonl:9: column \"text\": text is empty"));

    let data = read_dataset(&[&path], &ReadOptions::new().skip_invalid(true))?;
    assert_eq!(data.len(), 8);
    assert_eq!(data.skipped().count, 2);
    assert!(data.skipped().to_string().starts_with("2 invalid rows skipped (2 problems):"));
    assert_eq!(data.summary().skipped_rows, 2);

    // The same through the streaming converter.
    let out = dir.path().join("scenario.parquet");
    assert!(convert(&path, &out, &ReadOptions::new(), &WriteOptions::new()).is_err());
    assert!(!out.exists());
    let report =
        convert(&path, &out, &ReadOptions::new().skip_invalid(true), &WriteOptions::new())?;
    assert_eq!((report.rows, report.skipped.count), (8, 2));
    assert_eq!(report.output_format, Format::Parquet);
    Ok(())
}
