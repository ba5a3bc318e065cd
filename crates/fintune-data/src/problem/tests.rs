use super::*;

fn problem(line: u64, column: Option<&str>, message: &str) -> Problem {
    Problem {
        file: PathBuf::from("train.jsonl"),
        location: Location::Line(line),
        column: column.map(str::to_string),
        kind: ProblemKind::NonFiniteScore,
        message: message.to_string(),
    }
}

#[test]
fn problem_display_names_file_line_column_and_reason() {
    let p = problem(7, Some("score"), "NaN is not a finite number");
    assert_eq!(p.to_string(), "train.jsonl:7: column \"score\": NaN is not a finite number");
    assert_eq!(p.line_or_row(), Some(7));
    let row = Problem { location: Location::Row(3), column: None, ..p.clone() };
    assert_eq!(row.to_string(), "train.jsonl: row 3: NaN is not a finite number");
    let file = Problem { location: Location::File, ..p };
    assert!(file.is_file_level());
    assert_eq!(file.to_string(), "train.jsonl: column \"score\": NaN is not a finite number");
}

#[test]
fn report_shows_the_first_twenty_and_the_total() {
    let problems: Vec<Problem> =
        (1..=25).map(|i| problem(i, Some("text"), &format!("reason {i}"))).collect();
    let report = ProblemReport { problems, invalid_rows: 25 };
    let text = report.to_string();
    assert!(text.starts_with("invalid input: 25 problems in 25 rows:"), "{text}");
    assert!(text.contains("train.jsonl:20: column \"text\": reason 20"));
    assert!(!text.contains("reason 21"), "{text}");
    assert!(text.ends_with("... and 5 more (25 problems in total)"), "{text}");
    assert_eq!(text.lines().count(), 1 + 20 + 1);
}

#[test]
fn skip_report_display() {
    assert_eq!(SkipReport::default().to_string(), "no rows skipped");
    let report = SkipReport { count: 1, problems: vec![problem(9, Some("text"), "text is empty")] };
    assert_eq!(
        report.to_string(),
        "1 invalid row skipped (1 problem):\n  train.jsonl:9: column \"text\": text is empty"
    );
}

#[test]
fn warning_display_truncates_long_texts() {
    let w = Warning::ConflictingScores {
        text: "x".repeat(100),
        target: Some("ACME".into()),
        rows: vec![("a".into(), 0.25), ("b".into(), -0.5)],
    };
    let s = w.to_string();
    assert!(s.contains(&format!("\"{}…\"", "x".repeat(80))), "{s}");
    assert!(s.ends_with("(target \"ACME\"): a = 0.25, b = -0.5"), "{s}");
}
