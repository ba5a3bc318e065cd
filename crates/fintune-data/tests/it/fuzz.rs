//! Fuzz-style properties: arbitrary bytes never make the readers panic; they give rows or an
//! error.

use fintune_data::{read_dataset, BatchReader, Error, Format, ReadOptions};
use proptest::prelude::*;

/// Bytes that are often close to valid input: fragments of JSON, CSV and special tokens.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "\n",
        "\r\n",
        "\t",
        " ",
        "\u{feff}",
        "NaN",
        "-Infinity",
        "null",
        "true",
        "0.5",
        "-1e39",
        "\"text\"",
        "\"score\"",
        "\"id\"",
        "\"a\"",
        "text,score\n",
        "id,text,score\n",
        "\"\"",
        "é",
        "\u{0}",
        "\\u0000",
        "\\ud800",
    ]);
    prop::collection::vec(
        prop_oneof![
            pieces.prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..4),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..400), near_valid()]
}

fn check(format: Format, content: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("fuzz.{}", format.extension()));
    std::fs::write(&path, content).unwrap();
    for skip in [false, true] {
        for labelled in [true, false] {
            let opts = ReadOptions::new().skip_invalid(skip).labelled(labelled).batch_size(3);
            match read_dataset(&[&path], &opts) {
                Ok(data) => {
                    assert!(!data.is_empty());
                    let _ = data.summary().to_string();
                }
                Err(Error::Invalid(report)) => assert!(!report.problems.is_empty()),
                Err(_) => {}
            }
            if let Ok(reader) = BatchReader::open(&path, &opts) {
                // Errors are fine; batches are never empty nor larger than the batch size.
                for batch in reader.flatten() {
                    assert!(batch.num_rows() > 0 && batch.num_rows() <= 3);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn jsonl_never_panics(content in bytes()) {
        check(Format::Jsonl, &content);
    }

    #[test]
    fn csv_never_panics(content in bytes()) {
        check(Format::Csv, &content);
        check(Format::Tsv, &content);
    }

    #[test]
    fn json_array_never_panics(content in bytes()) {
        check(Format::JsonArray, &content);
    }
}
