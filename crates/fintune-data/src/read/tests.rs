//! Reader unit tests: every bad-input kind, with the exact line or row reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Float64Builder, Int64Builder, LargeStringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::*;
use crate::problem::{Location, ProblemKind, Warning};

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// `(line or row, column, kind)` of every problem in a failed read.
fn problems(result: Result<Dataset, Error>) -> Vec<(Option<u64>, Option<String>, ProblemKind)> {
    match result {
        Ok(d) => panic!("expected a validation error, got {} rows", d.len()),
        Err(Error::Invalid(report)) => {
            report.problems.iter().map(|p| (p.line_or_row(), p.column.clone(), p.kind)).collect()
        }
        Err(other) => panic!("expected a validation error, got {other:?}"),
    }
}

fn at(n: u64, column: &str, kind: ProblemKind) -> (Option<u64>, Option<String>, ProblemKind) {
    (Some(n), Some(column.to_string()), kind)
}

fn row(n: u64, kind: ProblemKind) -> (Option<u64>, Option<String>, ProblemKind) {
    (Some(n), None, kind)
}

fn read(path: &Path) -> Result<Dataset, Error> {
    read_dataset(&[path], &ReadOptions::new())
}

fn line(id: &str, text: &str, score: &str) -> String {
    format!("{{\"id\": \"{id}\", \"text\": \"{text}\", \"score\": {score}}}\n")
}

/// Ten lines, NaN score on line 7, empty text on line 9.
fn acceptance_file(dir: &Path) -> PathBuf {
    let mut s = String::new();
    for i in 1..=10 {
        let score = if i == 7 { "NaN".to_string() } else { format!("0.{i}") };
        let text = if i == 9 { String::new() } else { format!("text {i}") };
        s.push_str(&line(&format!("r{i}"), &text, &score));
    }
    write(dir, "bad.jsonl", s)
}

#[test]
fn jsonl_nan_on_line_7_and_empty_text_on_line_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = acceptance_file(dir.path());
    let err = read(&path).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("invalid input: 2 problems in 2 rows:"), "{text}");
    assert!(text.contains("bad.jsonl:7: column \"score\": NaN is not a finite number"), "{text}");
    assert!(text.contains("bad.jsonl:9: column \"text\": text is empty"), "{text}");
    assert_eq!(
        problems(Err(err)),
        [at(7, "score", ProblemKind::NonFiniteScore), at(9, "text", ProblemKind::EmptyText)]
    );

    let data = read_dataset(&[&path], &ReadOptions::new().skip_invalid(true)).unwrap();
    assert_eq!(data.len(), 8);
    assert_eq!(data.skipped().count, 2);
    assert_eq!(data.skipped().problems.len(), 2);
    assert!(!data.ids().contains(&"r7") && !data.ids().contains(&"r9"));
    assert_eq!(data.scores().unwrap()[6], 0.8);
}

#[test]
fn jsonl_real_shape_loads_with_extras_nulls_blank_lines_bom_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let content = concat!(
        "\u{feff}{\"id\": \"a\", \"text\": \"Profit up\", \"score\": 0.5, \"target\": null, ",
        "\"aspects\": [\"x\", {\"y\": [1, null]}], \"meta\": {\"k\": null}, \"orig_id\": 7}\r\n",
        "\n",
        "   \n",
        "{\"text\": \"Lo\\u00efc \\\"quoted\\\"\", \"score\": -1, \"id\": \"b\", \"target\": \"ACME\",",
        " \"source\": \"headline\", \"group\": 17}\n",
        "{\"id\": 42, \"text\": \"int id\", \"score\": \"0.25\"}",
    );
    let path = write(dir.path(), "real.jsonl", content);
    let data = read(&path).unwrap();
    assert_eq!(data.ids(), ["a", "b", "42"]);
    assert_eq!(data.texts(), ["Profit up", "Loïc \"quoted\"", "int id"]);
    assert_eq!(data.scores().unwrap(), [0.5, -1.0, 0.25]);
    assert_eq!(data.targets(), [None, Some("ACME"), None]);
    assert_eq!(data.sources(), [None, Some("headline"), None]);
    assert_eq!(data.group_array().iter().collect::<Vec<_>>(), [None, Some("17"), None]);
    assert!(data.skipped().is_empty());
}

#[test]
fn jsonl_every_bad_kind_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        /* 1 */ line("ok1", "fine", "0.1"),
        /* 2 */ "{\"id\": \"m\", \"score\": 0.1}\n".to_string(),
        /* 3 */ "{\"id\": \"n\", \"text\": null, \"score\": 0.1}\n".to_string(),
        /* 4 */ "{\"id\": \"w\", \"text\": 5, \"score\": 0.1}\n".to_string(),
        /* 5 */ line("s", "bad score text", "\"abc\""),
        /* 6 */ line("q", "string NaN", "\"NaN\""),
        /* 7 */ line("i", "infinity", "Infinity"),
        /* 8 */ line("j", "minus infinity", "-Infinity"),
        /* 9 */ line("o", "out of range", "1.5"),
        /* 10 */ "{\"id\": \"x\", \"text\": \"no score\"}\n".to_string(),
        /* 11 */ line("ok1", "duplicate id", "0.2"),
        /* 12 */ "{\"id\": \"y\", \"text\": \n".to_string(),
        /* 13 */ "[1, 2]\n".to_string(),
        /* 14 */ line("ws", "   ", "0.3"),
        /* 15 */ line("b", "bool score", "true"),
        /* 16 */ "{\"id\": [1], \"text\": \"list id\", \"score\": 0}\n".to_string(),
        /* 17 */ line("ok2", "fine too", "-0.2"),
        /* 18 */ line("z", "null score", "null"),
        /* 19 */ line("big", "overflows f32", "1e39"),
    ];
    let mut bytes: Vec<u8> = lines.concat().into_bytes();
    // Line 20: invalid UTF-8.
    bytes.extend_from_slice(b"{\"id\": \"u\", \"text\": \"caf\xe9\", \"score\": 0.1}\n");
    let path = write(dir.path(), "kinds.jsonl", bytes);
    use ProblemKind::*;
    assert_eq!(
        problems(read(&path)),
        [
            at(2, "text", MissingValue),
            at(3, "text", MissingValue),
            at(4, "text", WrongType),
            at(5, "score", WrongType),
            at(6, "score", NonFiniteScore),
            at(7, "score", NonFiniteScore),
            at(8, "score", NonFiniteScore),
            at(9, "score", ScoreOutOfRange),
            at(10, "score", MissingValue),
            at(11, "id", DuplicateId),
            row(12, Malformed),
            row(13, Malformed),
            at(14, "text", EmptyText),
            at(15, "score", WrongType),
            at(16, "id", WrongType),
            at(18, "score", MissingValue),
            at(19, "score", ScoreOutOfRange),
            row(20, NonUtf8),
        ]
    );
    let err = read(&path).unwrap_err().to_string();
    assert!(
        err.contains("kinds.jsonl:11: column \"id\": duplicate id \"ok1\" (first used at "),
        "{err}"
    );
    assert!(err.contains("kinds.jsonl:1)"), "{err}");
    assert!(
        err.contains("kinds.jsonl:7: column \"score\": Infinity is not a finite number"),
        "{err}"
    );
    assert!(
        err.contains("kinds.jsonl:9: column \"score\": 1.5 is outside the score range [-1, 1]"),
        "{err}"
    );
    assert!(err.contains("kinds.jsonl:13: malformed JSON"), "{err}");
    assert!(
        err.contains("kinds.jsonl:5: column \"score\": expected a number, found \"abc\""),
        "{err}"
    );
    assert!(
        err.contains("... and 1 more (21 problems in total)") || err.lines().count() <= 22,
        "{err}"
    );

    let data = read_dataset(&[&path], &ReadOptions::new().skip_invalid(true)).unwrap();
    assert_eq!(data.ids(), ["ok1", "ok2"]);
    assert_eq!(data.skipped().count, 18);
}

#[test]
fn report_lists_first_twenty_of_many() {
    let dir = tempfile::tempdir().unwrap();
    let content: String = (1..=30).map(|i| line(&format!("r{i}"), "", "0")).collect();
    let path = write(dir.path(), "many.jsonl", content);
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("many.jsonl:20: column \"text\""), "{err}");
    assert!(!err.contains("many.jsonl:21:"), "{err}");
    assert!(err.ends_with("... and 10 more (30 problems in total)"), "{err}");
    let skipped = read_dataset(&[&path], &ReadOptions::new().skip_invalid(true)).unwrap_err();
    assert!(matches!(skipped, Error::NoRows { .. }), "{skipped:?}");
}

#[test]
fn generated_ids_use_the_file_stem_and_record_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "news.jsonl",
        "{\"text\": \"a\", \"score\": 0}\n\n{\"text\": \"b\", \"score\": 0, \"id\": null}\n{\"text\": \"c\", \"score\": 0, \"id\": \"\"}\n",
    );
    assert_eq!(read(&path).unwrap().ids(), ["news-1", "news-2", "news-3"]);
}

#[test]
fn ids_must_be_unique_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.jsonl", line("x", "one", "0") + &line("y", "two", "0"));
    let b = write(dir.path(), "b.csv", "id,text,score\nz,three,0\ny,four,0\n");
    let err = read_dataset(&[&a, &b], &ReadOptions::new()).unwrap_err();
    let report = err.report().unwrap();
    assert_eq!(report.problems.len(), 1);
    let p = &report.problems[0];
    assert_eq!((p.file.as_path(), p.location), (b.as_path(), Location::Line(3)));
    assert!(p.message.contains("a.jsonl:2"), "{}", p.message);
    let both = read_dataset(&[&a, &b], &ReadOptions::new().skip_invalid(true)).unwrap();
    assert_eq!(both.ids(), ["x", "y", "z"]);
}

#[test]
fn unlabelled_input_allows_missing_scores_but_checks_present_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "pred.jsonl",
        "{\"text\": \"a\"}\n{\"text\": \"b\", \"score\": null}\n{\"text\": \"c\", \"score\": 0.5}\n",
    );
    let data = read_dataset(&[&path], &ReadOptions::new().labelled(false)).unwrap();
    assert_eq!(data.scores_opt(), [None, None, Some(0.5)]);
    assert_eq!(data.scores(), None);
    assert!(data.batch().schema().field(2).is_nullable());
    let bad =
        write(dir.path(), "bad.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\", \"score\": 2}\n");
    assert_eq!(
        problems(read_dataset(&[&bad], &ReadOptions::new().labelled(false))),
        [at(2, "score", ProblemKind::ScoreOutOfRange)]
    );
}

#[test]
fn column_mapping_and_custom_range() {
    let dir = tempfile::tempdir().unwrap();
    let path =
        write(dir.path(), "m.csv", "sentence,rating,key,company\nGood,7.5,k1,ACME\nBad,11,k2,\n");
    let opts = ReadOptions::new()
        .text_col("sentence")
        .score_col("rating")
        .id_col("key")
        .target_col("company")
        .score_range(0.0, 10.0);
    let err = read_dataset(&[&path], &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("m.csv:3: column \"rating\": 11 is outside the score range [0, 10]"),
        "{err}"
    );
    let data = read_dataset(&[&path], &opts.skip_invalid(true)).unwrap();
    assert_eq!(
        (data.ids(), data.texts(), data.targets()),
        (vec!["k1"], vec!["Good"], vec![Some("ACME")])
    );
    assert_eq!(data.scores().unwrap(), [7.5]);
}

#[test]
fn bad_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.jsonl", line("a", "x", "0"));
    for opts in [
        ReadOptions::new().score_range(1.0, -1.0),
        ReadOptions::new().score_range(0.0, f32::NAN),
        ReadOptions::new().batch_size(0),
        ReadOptions::new().id_col("text"),
        ReadOptions::new().group_col(""),
    ] {
        assert!(matches!(read_dataset(&[&path], &opts), Err(Error::InvalidOption(_))), "{opts:?}");
    }
    let none: [&Path; 0] = [];
    assert!(matches!(read_dataset(&none, &ReadOptions::new()), Err(Error::InvalidOption(_))));
}

// --- JSON arrays ---

#[test]
fn json_array_reports_the_line_where_each_element_starts() {
    let dir = tempfile::tempdir().unwrap();
    let content = "[\n  {\"id\": \"a\", \"text\": \"one\", \"score\": 0.1},\n  {\n    \"id\": \"b\",\n    \"text\": \"\",\n    \"score\": 0.2\n  },\n  {\"id\": \"c\", \"text\": \"three [x] {y}\", \"score\": NaN},\n  {\"id\": \"d\", \"text\": \"four\", \"score\": 0.4}\n]\n";
    let path = write(dir.path(), "arr.json", content);
    assert_eq!(
        problems(read(&path)),
        [at(3, "text", ProblemKind::EmptyText), at(8, "score", ProblemKind::NonFiniteScore)]
    );
    let data = read_dataset(&[&path], &ReadOptions::new().skip_invalid(true)).unwrap();
    assert_eq!(data.ids(), ["a", "d"]);
    assert_eq!(data.skipped().count, 2);
}

#[test]
fn json_array_structure_errors_are_fatal_even_when_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "missing_comma.json",
            "[\n{\"text\": \"a\", \"score\": 0}\n{\"text\": \"b\", \"score\": 0}]",
            3,
        ),
        ("not_array.json", "\n\n\"text\"", 3),
        ("trailing.json", "[{\"text\": \"a\", \"score\": 0}]\n\nextra", 3),
        ("unterminated.json", "[{\"text\": \"a\", \"score\": 0},\n{\"text\": \"b", 2),
        ("empty.json", "", 1),
    ];
    for (name, content, line) in cases {
        let path = write(dir.path(), name, content);
        for skip in [false, true] {
            let result = read_dataset(&[&path], &ReadOptions::new().skip_invalid(skip));
            let found = problems(result);
            let last = found.last().unwrap();
            assert_eq!((last.0, last.2), (Some(line), ProblemKind::Malformed), "{name}: {found:?}");
        }
    }
    // Lenient: a trailing comma; an empty array is no rows.
    let trailing = write(dir.path(), "tc.json", "[{\"text\": \"a\", \"score\": 0},]");
    assert_eq!(read(&trailing).unwrap().len(), 1);
    let empty = write(dir.path(), "ea.json", " [ ] ");
    assert!(matches!(read(&empty), Err(Error::NoRows { .. })));
}

#[test]
fn json_array_element_that_is_not_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.json", "[\n1,\n\"s\",\n{\"text\": \"ok\", \"score\": 0}\n]");
    assert_eq!(
        problems(read(&path)),
        [row(2, ProblemKind::Malformed), row(3, ProblemKind::Malformed)]
    );
}

// --- CSV / TSV ---

#[test]
fn csv_quotes_newlines_bom_and_exact_lines() {
    let dir = tempfile::tempdir().unwrap();
    let content = "\u{feff}id,text,score,target\n\
        a,\"Hello, \"\"world\"\"\",0.5,ACME\n\
        b,\"two\nlines\r\nhere\",-0.5,\n\
        \n\
        c,,0.1,X\n\
        d,fine,NaN,\n";
    let path = write(dir.path(), "q.csv", content);
    assert_eq!(
        problems(read(&path)),
        [at(7, "text", ProblemKind::EmptyText), at(8, "score", ProblemKind::NonFiniteScore)]
    );
    let data = read_dataset(&[&path], &ReadOptions::new().skip_invalid(true)).unwrap();
    assert_eq!(data.ids(), ["a", "b"]);
    assert_eq!(data.texts(), ["Hello, \"world\"", "two\nlines\r\nhere"]);
    assert_eq!(data.targets(), [Some("ACME"), None]);
}

#[test]
fn csv_every_bad_kind_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut content = b"id,text,score\n\
        a,ok,0.1\n\
        b,,0.1\n\
        c,   ,0.1\n\
        d,x,abc\n\
        e,x,inf\n\
        f,x,-1.0001\n\
        g,x,\n\
        a,dup,0.2\n\
        h,too,many,fields\n\
        i,short\n"
        .to_vec();
    content.extend_from_slice(b"j,caf\xe9,0.1\nk,end,1\n");
    let path = write(dir.path(), "kinds.csv", content);
    use ProblemKind::*;
    assert_eq!(
        problems(read(&path)),
        [
            at(3, "text", EmptyText),
            at(4, "text", EmptyText),
            at(5, "score", WrongType),
            at(6, "score", NonFiniteScore),
            at(7, "score", ScoreOutOfRange),
            at(8, "score", MissingValue),
            at(9, "id", DuplicateId),
            row(10, Malformed),
            row(11, Malformed),
            at(12, "text", NonUtf8),
        ]
    );
    let data = read_dataset(&[&path], &ReadOptions::new().skip_invalid(true)).unwrap();
    assert_eq!(data.ids(), ["a", "k"]);
}

#[test]
fn csv_missing_columns_are_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "nocol.csv", "id,sentence,score\na,x,0\n");
    for skip in [false, true] {
        let found = problems(read_dataset(&[&path], &ReadOptions::new().skip_invalid(skip)));
        assert_eq!(found, [(None, Some("text".into()), ProblemKind::MissingColumn)]);
    }
    let empty = write(dir.path(), "empty.csv", "");
    let err = read(&empty).unwrap_err().to_string();
    assert!(
        err.contains("empty.csv: column \"text\": column not found: the file has no header"),
        "{err}"
    );
    let no_score = write(dir.path(), "noscore.csv", "text\nhello\n");
    assert_eq!(
        problems(read(&no_score)),
        [(None, Some("score".into()), ProblemKind::MissingColumn)]
    );
    let unlabelled = read_dataset(&[&no_score], &ReadOptions::new().labelled(false)).unwrap();
    assert_eq!(unlabelled.ids(), ["noscore-1"]);
}

/// Issue 15, defect 7: a stray quote closed only lines later swallows the records between
/// into one row. It stays one row (valid CSV), with a warning naming the file and the line
/// where the field began; the streaming reader reports it too.
#[test]
fn csv_stray_quote_spanning_record_like_lines_warns() {
    let dir = tempfile::tempdir().unwrap();
    let content = "id,text,score\n\
        a,\"hello world,0.5\n\
        b,fine text,0.1\n\
        c,more text\",0.2\n\
        d,\"two\nlines\",0.3\n";
    let path = write(dir.path(), "stray.csv", content);
    let data = read(&path).unwrap();
    assert_eq!(data.ids(), ["a", "d"]);
    assert_eq!(data.texts()[0], "hello world,0.5\nb,fine text,0.1\nc,more text");
    let [warning] = data.warnings() else { panic!("{:#?}", data.warnings()) };
    assert_eq!(
        warning,
        &Warning::SuspiciousMultilineField {
            file: path.clone(),
            line: 2,
            lines: 3,
            column: "text".into()
        }
    );
    let shown = warning.to_string();
    assert!(shown.starts_with(&format!("{}:2: column \"text\":", path.display())), "{shown}");
    assert!(shown.contains("stray quote"), "{shown}");
    assert_eq!(data.summary().warnings, 1);
    let mut reader = BatchReader::open(&path, &ReadOptions::new()).unwrap();
    assert_eq!(reader.by_ref().map(|b| b.unwrap().num_rows()).sum::<usize>(), 2);
    assert_eq!(reader.warnings(), data.warnings());
}

/// An unterminated quoted field is an error naming the line where the field began, even
/// when its record happens to have the right number of fields.
#[test]
fn csv_unterminated_quote_names_the_line_where_it_began() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content, open) in [
        ("mid.csv", "id,text,score\na,fine,0.1\nb,\"open,0.5\nc,x,0.2\n", 3),
        ("last.csv", "id,score,text\na,0.1,fine\n\nb,0.5,\"open text\nmore", 4),
        ("tsv.tsv", "id\ttext\tscore\na\t\"x\ty\"\t0.1\nb\t\"open\t0.5\n", 3),
    ] {
        let path = write(dir.path(), name, content);
        for skip in [false, true] {
            let opts = ReadOptions::new().skip_invalid(skip);
            let found = problems(read_dataset(&[&path], &opts));
            assert_eq!(found, [row(open, ProblemKind::Malformed)], "{name}");
        }
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("{name}:{open}: a quoted field begins")), "{err}");
        assert!(err.contains("never closed"), "{err}");
    }
    // Quotes inside unquoted fields are ordinary characters, not openings.
    let inch = write(dir.path(), "inch.csv", "id,text,score\na,a 5\" screen,0.1\n");
    assert_eq!(read(&inch).unwrap().texts(), ["a 5\" screen"]);
}

#[test]
fn tsv_with_quotes_and_tabs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "t.tsv", "text\tscore\n\"a\tb, c\"\t0.5\nplain\t-0.25\n");
    let data = read(&path).unwrap();
    assert_eq!(data.texts(), ["a\tb, c", "plain"]);
    assert_eq!(data.ids(), ["t-1", "t-2"]);
    assert_eq!(data.scores().unwrap(), [0.5, -0.25]);
}

// --- Parquet and Arrow IPC ---

/// Three batches of 3 rows with a problem in several of them; types other than the plain ones.
fn typed_batches() -> (Arc<Schema>, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("text", DataType::LargeUtf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("raw", DataType::Binary, true),
        Field::new("target", DataType::Utf8, true),
    ]));
    type Row<'a> = (Option<i64>, Option<&'a str>, Option<f64>, Option<&'a [u8]>, Option<&'a str>);
    let rows: Vec<Row<'_>> = vec![
        (Some(1), Some("one"), Some(0.5), Some(b"x"), Some("T")),
        (Some(2), None, Some(0.5), None, None),
        (Some(3), Some("three"), Some(f64::NAN), None, None),
        (Some(4), Some("four"), Some(-2.0), None, None),
        (Some(5), Some(" "), Some(0.0), None, None),
        (Some(1), Some("dup"), Some(0.0), None, None),
        (None, Some("seven"), None, None, None),
        (Some(8), Some("eight"), Some(1e300), None, None),
        (Some(9), Some("nine"), Some(-1.0), None, None),
    ];
    let batches = rows
        .chunks(3)
        .map(|chunk| {
            let mut id = Int64Builder::new();
            let mut text = LargeStringBuilder::new();
            let mut score = Float64Builder::new();
            let mut raw = BinaryBuilder::new();
            let mut target = arrow_array::builder::StringBuilder::new();
            for (i, t, s, r, g) in chunk {
                id.append_option(*i);
                text.append_option(*t);
                score.append_option(*s);
                raw.append_option(*r);
                target.append_option(*g);
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(id.finish()),
                Arc::new(text.finish()),
                Arc::new(score.finish()),
                Arc::new(raw.finish()),
                Arc::new(target.finish()),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect();
    (schema, batches)
}

fn expected_typed_problems() -> Vec<(Option<u64>, Option<String>, ProblemKind)> {
    use ProblemKind::*;
    vec![
        at(2, "text", MissingValue),
        at(3, "score", NonFiniteScore),
        at(4, "score", ScoreOutOfRange),
        at(5, "text", EmptyText),
        at(6, "id", DuplicateId),
        at(7, "score", MissingValue),
        at(8, "score", ScoreOutOfRange),
    ]
}

fn write_parquet(path: &Path, schema: Arc<Schema>, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(4))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

#[test]
fn parquet_rows_are_numbered_across_batches_and_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, batches) = typed_batches();
    let path = dir.path().join("typed.parquet");
    write_parquet(&path, schema, &batches);
    for batch_size in [2, 1000] {
        let opts = ReadOptions::new().batch_size(batch_size);
        assert_eq!(problems(read_dataset(&[&path], &opts)), expected_typed_problems());
        let data = read_dataset(&[&path], &opts.skip_invalid(true)).unwrap();
        assert_eq!(data.ids(), ["1", "9"]);
        assert_eq!(data.texts(), ["one", "nine"]);
        assert_eq!(data.targets(), [Some("T"), None]);
        assert_eq!(data.skipped().count, 7);
    }
    let err = read(&path).unwrap_err().to_string();
    assert!(
        err.contains("typed.parquet: row 3: column \"score\": NaN is not a finite number"),
        "{err}"
    );
}

#[test]
fn arrow_ipc_file_and_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (schema, batches) = typed_batches();
    let file_path = dir.path().join("typed.arrow");
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(std::fs::File::create(&file_path).unwrap(), &schema)
            .unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let stream_path = dir.path().join("typed.arrows");
    let mut w = arrow_ipc::writer::StreamWriter::try_new(
        std::fs::File::create(&stream_path).unwrap(),
        &schema,
    )
    .unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    // A stream under the `.arrow` extension is detected by its first bytes.
    let disguised = dir.path().join("stream.arrow");
    std::fs::copy(&stream_path, &disguised).unwrap();
    for path in [&file_path, &stream_path, &disguised] {
        assert_eq!(problems(read(path)), expected_typed_problems(), "{}", path.display());
        let data = read_dataset(&[path], &ReadOptions::new().skip_invalid(true)).unwrap();
        assert_eq!(data.ids(), ["1", "9"]);
    }
}

#[test]
fn columnar_non_utf8_binary_text_dictionary_and_wrong_types() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("text", DataType::Binary, false),
        Field::new("score", DataType::Float32, false),
        Field::new(
            "source",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
    ]));
    let mut text = BinaryBuilder::new();
    text.append_value(b"good");
    text.append_value(b"bad \xff byte");
    text.append_value(b"fine");
    let source: DictionaryArray<Int32Type> =
        vec![Some("news"), Some("news"), None].into_iter().collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(text.finish()),
            Arc::new(Float32Array::from(vec![0.1f32, 0.2, 0.3])),
            Arc::new(source),
        ],
    )
    .unwrap();
    let path = dir.path().join("bin.parquet");
    write_parquet(&path, schema, &[batch]);
    assert_eq!(problems(read(&path)), [at(2, "text", ProblemKind::NonUtf8)]);
    let data = read_dataset(&[&path], &ReadOptions::new().skip_invalid(true)).unwrap();
    assert_eq!(data.texts(), ["good", "fine"]);
    assert_eq!(data.sources(), [Some("news"), None]);
    assert_eq!(data.scores().unwrap(), [0.1f32, 0.3]);

    let schema = Arc::new(Schema::new(vec![
        Field::new("text", DataType::Int32, false),
        Field::new("id", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int32Array::from(vec![1])), Arc::new(StringArray::from(vec!["a"]))],
    )
    .unwrap();
    let path = dir.path().join("wrong.parquet");
    write_parquet(&path, schema, &[batch]);
    for skip in [false, true] {
        let found = problems(read_dataset(&[&path], &ReadOptions::new().skip_invalid(skip)));
        assert_eq!(
            found,
            [
                (None, Some("text".into()), ProblemKind::WrongType),
                (None, Some("score".into()), ProblemKind::MissingColumn),
            ]
        );
    }
}

#[test]
fn corrupt_parquet_is_a_parquet_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "junk.parquet", b"not parquet at all");
    assert!(matches!(read(&path), Err(Error::Parquet { .. })));
    let missing = dir.path().join("missing.jsonl");
    assert!(matches!(read(&missing), Err(Error::Io { .. })));
}

// --- Streaming ---

#[test]
fn batch_reader_streams_bounded_batches_equal_to_read_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let content: String =
        (1..=25).map(|i| line(&format!("r{i}"), &format!("t{i}"), "0.5")).collect();
    let path = write(dir.path(), "s.jsonl", content);
    let opts = ReadOptions::new().batch_size(7);
    let reader = BatchReader::open(&path, &opts).unwrap();
    assert_eq!(reader.format(), Format::Jsonl);
    assert_eq!(reader.schema(), dataset_schema(true));
    let sizes: Vec<usize> = reader.map(|b| b.unwrap().num_rows()).collect();
    assert_eq!(sizes, [7, 7, 7, 4]);
    let mut ids = Vec::new();
    for batch in BatchReader::open(&path, &opts).unwrap() {
        let batch = batch.unwrap();
        let col = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        ids.extend(col.iter().map(|s| s.unwrap().to_string()));
    }
    assert_eq!(ids, read(&path).unwrap().ids());
}

#[test]
fn batch_reader_fails_with_every_problem_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut content = String::new();
    for i in 1..=30 {
        let text = if i == 12 || i == 29 { "" } else { "t" };
        content.push_str(&line(&format!("r{i}"), text, "0"));
    }
    let path = write(dir.path(), "s.jsonl", content);
    let items: Vec<_> =
        BatchReader::open(&path, &ReadOptions::new().batch_size(10)).unwrap().collect();
    assert_eq!(items.len(), 2, "one good batch, then the error");
    assert_eq!(items[0].as_ref().unwrap().num_rows(), 10);
    let Err(Error::Invalid(report)) = &items[1] else { panic!("{:?}", items[1]) };
    let lines: Vec<_> = report.problems.iter().map(|p| p.line_or_row()).collect();
    assert_eq!(lines, [Some(12), Some(29)]);

    let mut reader =
        BatchReader::open(&path, &ReadOptions::new().batch_size(10).skip_invalid(true)).unwrap();
    let sizes: Vec<usize> = reader.by_ref().map(|b| b.unwrap().num_rows()).collect();
    assert_eq!(sizes, [10, 9, 9]);
    assert_eq!(reader.skipped().count, 2);
}

#[test]
fn batch_reader_reports_file_level_problems_as_first_item() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.csv", "a,b\n1,2\n");
    let mut reader = BatchReader::open(&path, &ReadOptions::new().skip_invalid(true)).unwrap();
    let first = reader.next().unwrap();
    assert!(matches!(first, Err(Error::Invalid(_))));
    assert!(reader.next().is_none());
}

#[test]
fn format_override_and_unknown_extension() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "data.txt", line("a", "x", "0"));
    assert!(matches!(read(&path), Err(Error::UnknownFormat { .. })));
    let data = read_dataset(&[&path], &ReadOptions::new().format(Format::Jsonl)).unwrap();
    assert_eq!(data.ids(), ["a"]);
}

#[test]
fn csv_lines_with_crlf_blank_lines_and_multiline_fields() {
    let dir = tempfile::tempdir().unwrap();
    let content = "id,text,score\r\na,x,0\r\n\r\n\r\nb,,0\r\nc,\"multi\r\nline\r\n\",0\r\n\r\nd,,0";
    let path = write(dir.path(), "crlf.csv", content);
    assert_eq!(
        problems(read(&path)),
        [at(5, "text", ProblemKind::EmptyText), at(10, "text", ProblemKind::EmptyText)]
    );
}

#[test]
fn class_names_become_class_indices_and_unknown_names_are_row_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "fpb.jsonl",
        "{\"text\": \"a\", \"label\": \"negative\"}\n{\"text\": \"b\", \"label\": \" positive \"}\n\
         {\"text\": \"c\", \"label\": \"neutral\"}\n",
    );
    let opts = ReadOptions::new().score_col("label").labels(["negative", "neutral", "positive"]);
    let data = read_dataset(&[&good], &opts).unwrap();
    assert_eq!(data.scores().unwrap(), [0.0, 2.0, 1.0]);
    let csv = write(dir.path(), "fpb.csv", "text,label\na,neutral\nb,Positive\nc,1\nd,\n");
    assert_eq!(
        problems(read_dataset(&[&csv], &opts)),
        [
            at(3, "label", ProblemKind::UnknownLabel),
            at(4, "label", ProblemKind::UnknownLabel),
            at(5, "label", ProblemKind::MissingValue)
        ]
    );
    let num = write(dir.path(), "num.jsonl", "{\"text\": \"a\", \"label\": 1}\n");
    let err = read_dataset(&[&num], &opts).unwrap_err().to_string();
    assert!(err.contains("num.jsonl:1") && err.contains("label"), "{err}");
    let twice = ReadOptions::new().labels(["a", "a"]);
    assert!(read_dataset(&[&good], &twice).is_err());
}

#[test]
fn parquet_row_groups_are_units_with_the_whole_files_row_numbers_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ten.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("text", DataType::Utf8, true),
        Field::new("score", DataType::Float32, true),
    ]));
    let texts: Vec<Option<String>> =
        (1..=10).map(|i| if i == 8 { Some(" ".into()) } else { Some(format!("t{i}")) }).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(texts)) as ArrayRef,
            Arc::new(Float32Array::from((1..=10).map(|i| i as f32 / 20.0).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let mut w =
        crate::BatchWriter::create(&path, schema, &crate::WriteOptions::new().row_group_rows(3))
            .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    let opts = ReadOptions::new().skip_invalid(true);
    assert_eq!(read_units(&path, &opts).unwrap(), 4);
    let ids = |units: Option<&[usize]>| -> Vec<String> {
        let reader = match units {
            Some(u) => BatchReader::open_units(&path, &opts, u).unwrap(),
            None => BatchReader::open(&path, &opts).unwrap(),
        };
        let mut out = vec![];
        for b in reader {
            let b = b.unwrap();
            let col = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            out.extend(col.iter().map(|v| v.unwrap().to_owned()));
        }
        out
    };
    let all = ids(None);
    assert_eq!(all.len(), 9, "row 8 is skipped");
    let mut parts = ids(Some(&[0, 2]));
    parts.extend(ids(Some(&[1, 3])));
    parts.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(parts, sorted, "the units together are the file");
    assert_eq!(ids(Some(&[3])), [all[8].clone()], "row 10's generated id");
    // The empty text of row 8 is reported with its row in the whole file.
    let strict = ReadOptions::new();
    let err = BatchReader::open_units(&path, &strict, &[2])
        .unwrap()
        .find_map(|b| b.err())
        .unwrap()
        .to_string();
    assert!(err.contains("row 8"), "{err}");
    // Bad unit lists are refused.
    for bad in [&[4][..], &[1, 1], &[2, 1], &[]] {
        assert!(BatchReader::open_units(&path, &opts, bad).is_err(), "{bad:?}");
    }
    let jsonl = write(dir.path(), "a.jsonl", line("a", "x", "0.1"));
    assert_eq!(read_units(&jsonl, &opts).unwrap(), 1);
    assert!(BatchReader::open_units(&jsonl, &opts, &[1]).is_err());
    assert_eq!(BatchReader::open_units(&jsonl, &opts, &[0]).unwrap().count(), 1);
}
