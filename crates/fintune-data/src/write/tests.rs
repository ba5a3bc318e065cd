use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder};
use arrow_array::{ArrayRef, BinaryArray, Float32Array, Int64Array, StringArray};
use arrow_schema::Field;

use super::*;
use crate::{read_dataset, Dataset};

fn sample(dir: &Path) -> Dataset {
    let path = dir.join("in.jsonl");
    std::fs::write(
        &path,
        concat!(
            "{\"id\": \"a\", \"text\": \"Comma, \\\"quote\\\"\\nnewline\", \"score\": 0.1, \"target\": \"T\"}\n",
            "{\"id\": \"b\", \"text\": \"ünïcödé ✓ 日本\", \"score\": -0.7, \"source\": \"s\", \"group\": \"g\"}\n",
            "{\"id\": \"c\", \"text\": \"tab\\there\", \"score\": 1}\n",
        ),
    )
    .unwrap();
    read_dataset(&[&path], &ReadOptions::new()).unwrap()
}

#[test]
fn every_format_round_trips_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample(dir.path());
    for format in Format::ALL {
        let out = dir.path().join(format!("out.{}", format.extension()));
        assert_eq!(write_dataset(&data, &out, &WriteOptions::new()).unwrap(), 3);
        let back = read_dataset(&[&out], &ReadOptions::new()).unwrap();
        assert_eq!(back.batch(), data.batch(), "{format}");
    }
}

fn predictions() -> RecordBatch {
    let mut probs = ListBuilder::new(Float32Builder::new());
    for row in [[0.1f32, 0.7, 0.2], [0.5, 0.25, 0.25]] {
        probs.values().append_slice(&row);
        probs.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a", "b"])),
        Arc::new(Float32Array::from(vec![Some(0.25), Some(f32::NAN)])),
        Arc::new(Int64Array::from(vec![Some(2), None])),
        Arc::new(probs.finish()),
    ];
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, true),
        Field::new("class", DataType::Int64, true),
        Field::new(
            "class_probs",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            true,
        ),
    ]);
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

#[test]
fn jsonl_writes_lists_as_arrays_and_non_finite_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pred.jsonl");
    let batch = predictions();
    let mut w = BatchWriter::create(&out, batch.schema(), &WriteOptions::new()).unwrap();
    w.write(&batch).unwrap();
    w.write(&batch.slice(1, 1)).unwrap();
    assert_eq!(w.rows_written(), 3);
    assert_eq!(w.finish().unwrap(), 3);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text,
        concat!(
            "{\"id\":\"a\",\"score\":0.25,\"class\":2,\"class_probs\":[0.1,0.7,0.2]}\n",
            "{\"id\":\"b\",\"score\":null,\"class\":null,\"class_probs\":[0.5,0.25,0.25]}\n",
            "{\"id\":\"b\",\"score\":null,\"class\":null,\"class_probs\":[0.5,0.25,0.25]}\n",
        )
    );
    // Every line is valid JSON.
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn csv_writes_lists_as_json_text_and_json_array_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let batch = predictions();
    let csv_out = dir.path().join("pred.csv");
    let mut w = BatchWriter::create(&csv_out, batch.schema(), &WriteOptions::new()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    assert_eq!(
        std::fs::read_to_string(&csv_out).unwrap(),
        "id,score,class,class_probs\na,0.25,2,\"[0.1,0.7,0.2]\"\nb,NaN,,\"[0.5,0.25,0.25]\"\n"
    );
    let json_out = dir.path().join("pred.json");
    let mut w = BatchWriter::create(&json_out, batch.schema(), &WriteOptions::new()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(value.as_array().unwrap().len(), 2);
    // Shortest text that reads back to the same f32.
    assert_eq!(value[0]["class_probs"][1].as_f64(), Some(0.7));
    let empty = dir.path().join("empty.json");
    BatchWriter::create(&empty, batch.schema(), &WriteOptions::new()).unwrap().finish().unwrap();
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "[]\n");
}

#[test]
fn parquet_and_arrow_keep_extra_columns() {
    let dir = tempfile::tempdir().unwrap();
    let batch = predictions();
    for name in ["pred.parquet", "pred.arrow", "pred.arrows"] {
        let out = dir.path().join(name);
        let mut w = BatchWriter::create(&out, batch.schema(), &WriteOptions::new()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let back: Vec<RecordBatch> = match name {
            "pred.parquet" => {
                let f = File::open(&out).unwrap();
                let meta =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                        .unwrap();
                let compression = meta.metadata().row_group(0).column(0).compression();
                assert!(matches!(compression, Compression::ZSTD(_)), "{compression:?}");
                meta.build().unwrap().map(|b| b.unwrap()).collect()
            }
            "pred.arrow" => arrow_ipc::reader::FileReader::try_new(File::open(&out).unwrap(), None)
                .unwrap()
                .map(|b| b.unwrap())
                .collect(),
            _ => arrow_ipc::reader::StreamReader::try_new(File::open(&out).unwrap(), None)
                .unwrap()
                .map(|b| b.unwrap())
                .collect(),
        };
        assert_eq!(back.len(), 1);
        // NaN != NaN: compare through the JSON form.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for row in 0..2 {
            json_row(&mut a, &batch, row);
            json_row(&mut b, &back[0], row);
        }
        assert_eq!(a, b, "{name}");
        let score = back[0].column(1).as_primitive::<Float32Type>();
        assert!(score.value(1).is_nan());
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn unfinished_writers_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.parquet");
    std::fs::write(&out, b"old").unwrap();
    let batch = predictions();
    let mut w = BatchWriter::create(&out, batch.schema(), &WriteOptions::new()).unwrap();
    w.write(&batch).unwrap();
    assert_eq!(leftovers(dir.path()).len(), 1, "writes go to a temporary file");
    drop(w);
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn convert_is_atomic_when_validation_fails_late() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut content: String = (1..=50)
        .map(|i| format!("{{\"id\": \"r{i}\", \"text\": \"t{i}\", \"score\": 0.5}}\n"))
        .collect();
    content.push_str("{\"id\": \"last\", \"text\": \"t\", \"score\": 9}\n");
    std::fs::write(&input, &content).unwrap();
    let out = dir.path().join("out.parquet");
    let read = ReadOptions::new().batch_size(8);
    let err = convert(&input, &out, &read, &WriteOptions::new()).unwrap_err();
    assert!(err.to_string().contains("in.jsonl:51: column \"score\": 9 is outside"), "{err}");
    assert!(!out.exists());
    assert!(leftovers(dir.path()).is_empty());

    let report = convert(&input, &out, &read.skip_invalid(true), &WriteOptions::new()).unwrap();
    assert_eq!(report.rows, 50);
    assert_eq!(report.skipped.count, 1);
    assert_eq!((report.input_format, report.output_format), (Format::Jsonl, Format::Parquet));
    let shown = report.to_string();
    assert!(shown.starts_with("wrote 50 rows from "), "{shown}");
    assert!(shown.contains("1 invalid row skipped"), "{shown}");
    assert_eq!(read_dataset(&[&out], &ReadOptions::new()).unwrap().len(), 50);
}

#[test]
fn schema_mismatch_unsupported_types_and_unknown_extension() {
    let dir = tempfile::tempdir().unwrap();
    let batch = predictions();
    let mut w =
        BatchWriter::create(dir.path().join("a.jsonl"), batch.schema(), &WriteOptions::new())
            .unwrap();
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["x"])) as ArrayRef],
    )
    .unwrap();
    assert!(matches!(w.write(&other), Err(Error::SchemaMismatch { .. })));

    let binary = Schema::new(vec![Field::new("b", DataType::Binary, false)]);
    let err = BatchWriter::create(
        dir.path().join("b.csv"),
        Arc::new(binary.clone()),
        &WriteOptions::new(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Unsupported { ref column, .. } if column == "b"), "{err:?}");
    // Parquet stores binary fine.
    let mut w = BatchWriter::create(
        dir.path().join("b.parquet"),
        Arc::new(binary.clone()),
        &WriteOptions::new(),
    )
    .unwrap();
    let rb = RecordBatch::try_new(
        Arc::new(binary),
        vec![Arc::new(BinaryArray::from(vec![&b"\xff"[..]])) as ArrayRef],
    )
    .unwrap();
    w.write(&rb).unwrap();
    w.finish().unwrap();

    assert!(matches!(
        BatchWriter::create(dir.path().join("c.xyz"), batch.schema(), &WriteOptions::new()),
        Err(Error::UnknownFormat { .. })
    ));
    let forced = dir.path().join("c.xyz");
    let mut w =
        BatchWriter::create(&forced, batch.schema(), &WriteOptions::new().format(Format::Tsv))
            .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    assert!(std::fs::read_to_string(&forced)
        .unwrap()
        .starts_with("id\tscore\tclass\tclass_probs\n"));
    assert!(matches!(
        BatchWriter::create(
            dir.path().join("d.parquet"),
            batch.schema(),
            &WriteOptions::new().zstd_level(99)
        ),
        Err(Error::InvalidOption(_))
    ));
}
