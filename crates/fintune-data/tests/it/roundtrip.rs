//! Property: any valid table written to Parquet, JSONL or CSV (and the other formats) and read
//! back is identical: ids, texts with quotes, commas, newlines and unicode, bit-exact scores.

use std::sync::Arc;

use arrow_array::builder::{Float32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use fintune_data::{dataset_schema, read_dataset, BatchWriter, Format, ReadOptions, WriteOptions};
use proptest::prelude::*;

/// Nasty but valid texts: at least one non-whitespace character.
fn text() -> impl Strategy<Value = String> {
    let nasty = prop::sample::select(vec![
        "\"", "\"\"", ",", ";", "\t", "\n", "\r\n", "\r", " ", "\\", "'", "{", "}", "[", "]", "é",
        "日本", "🙂", "\u{feff}", "\u{2028}", "\u{0}", "NaN", "null", "#", "=", "a",
    ]);
    let parts =
        prop::collection::vec(prop_oneof![nasty.prop_map(str::to_string), "\\PC{0,6}"], 0..5);
    (parts.clone(), "[a-zA-Z0-9é日]{1,3}", parts)
        .prop_map(|(before, anchor, after)| before.concat() + &anchor + &after.concat())
}

fn label() -> impl Strategy<Value = Option<String>> {
    // Non-empty: CSV reads an empty field as null.
    prop::option::of("(?s).{1,12}")
}

#[derive(Debug, Clone)]
struct Row {
    id: String,
    text: String,
    score: f32,
    target: Option<String>,
    source: Option<String>,
    group: Option<String>,
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (text(), -1.0f32..=1.0, any::<bool>(), label(), label(), label(), "[ -~é]{0,8}"),
        1..25,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (text, score, negative_zero, target, source, group, id_tail))| Row {
                // Unique, non-empty ids with odd characters: the index ends at the first
                // ':', so "1" + "7x" and "17" + "x" cannot collide.
                id: format!("{i}:{id_tail}"),
                text,
                score: if negative_zero && score == 0.0 { -0.0 } else { score },
                target,
                source,
                group,
            })
            .collect()
    })
}

fn batch(rows: &[Row]) -> RecordBatch {
    let mut id = StringBuilder::new();
    let mut text = StringBuilder::new();
    let mut score = Float32Builder::new();
    let mut target = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut group = StringBuilder::new();
    for r in rows {
        id.append_value(&r.id);
        text.append_value(&r.text);
        score.append_value(r.score);
        target.append_option(r.target.as_deref());
        source.append_option(r.source.as_deref());
        group.append_option(r.group.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(text.finish()),
        Arc::new(score.finish()),
        Arc::new(target.finish()),
        Arc::new(source.finish()),
        Arc::new(group.finish()),
    ];
    RecordBatch::try_new(dataset_schema(true), columns).unwrap()
}

fn round_trip(rows: &[Row], format: Format) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("t.{}", format.extension()));
    let expected = batch(rows);
    let mut w = BatchWriter::create(&path, expected.schema(), &WriteOptions::new()).unwrap();
    // Two batches, to exercise appends.
    let half = rows.len() / 2;
    w.write(&expected.slice(0, half)).unwrap();
    w.write(&expected.slice(half, rows.len() - half)).unwrap();
    w.finish().unwrap();
    let back = read_dataset(&[&path], &ReadOptions::new().batch_size(4))
        .map_err(|e| TestCaseError::fail(format!("{format}: {e:#}")))?;
    prop_assert_eq!(back.ids(), rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>());
    prop_assert_eq!(back.texts(), rows.iter().map(|r| r.text.as_str()).collect::<Vec<_>>());
    let bits: Vec<u32> = back.scores().unwrap().iter().map(|s| s.to_bits()).collect();
    prop_assert_eq!(bits, rows.iter().map(|r| r.score.to_bits()).collect::<Vec<_>>());
    prop_assert_eq!(back.targets(), rows.iter().map(|r| r.target.as_deref()).collect::<Vec<_>>());
    prop_assert_eq!(back.sources(), rows.iter().map(|r| r.source.as_deref()).collect::<Vec<_>>());
    prop_assert_eq!(back.batch(), &expected, "{}", format);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn parquet_round_trip(rows in rows()) {
        round_trip(&rows, Format::Parquet)?;
    }

    #[test]
    fn jsonl_round_trip(rows in rows()) {
        round_trip(&rows, Format::Jsonl)?;
    }

    #[test]
    fn csv_round_trip(rows in rows()) {
        round_trip(&rows, Format::Csv)?;
    }

    #[test]
    fn other_formats_round_trip(rows in rows()) {
        for format in [Format::Tsv, Format::JsonArray, Format::ArrowFile, Format::ArrowStream] {
            round_trip(&rows, format)?;
        }
    }
}
