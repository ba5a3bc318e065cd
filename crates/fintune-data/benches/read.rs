//! Rows per second to read 1e6 rows into a validated dataset, from Parquet and from JSONL.
//!
//! The input is generated in a temporary directory during setup: ids, texts of 40 to 120
//! characters, scores in [-1, 1], a target, a source and (JSONL only) ignored extra fields.
//!
//! `FINTUNE_BENCH_ROWS=N` reads N rows instead (any count):
//! `cargo xtask bench-ci` uses 1e5 for short paired rounds, the CI smoke run 1e4. The timings
//! are set on the `criterion_group!`, so criterion's command-line flags override them.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{Float32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use fintune_data::{dataset_schema, read_dataset, BatchWriter, ReadOptions, WriteOptions};

/// Rows to generate and read: `FINTUNE_BENCH_ROWS`, 1e6 by default.
fn rows() -> usize {
    std::env::var("FINTUNE_BENCH_ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000)
}
const WORDS: [&str; 16] = [
    "shares", "profit", "Tesco", "falls", "rises", "quarter", "guidance", "$AAPL", "déjà",
    "revenue", "short", "bullish", "loss", "merger", "dividend", "cuts",
];

/// A batch of rows `start..start + n`, deterministic.
fn batch(start: usize, n: usize) -> RecordBatch {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ start as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut id, mut text, mut score) =
        (StringBuilder::new(), StringBuilder::new(), Float32Builder::new());
    let (mut target, mut source, mut group) =
        (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let mut s = String::new();
    for i in start..start + n {
        id.append_value(format!("row-{i}"));
        s.clear();
        let len = 40 + (next() % 81) as usize;
        while s.len() < len {
            s.push_str(WORDS[(next() % 16) as usize]);
            s.push(' ');
        }
        text.append_value(s.trim_end());
        score.append_value(((next() % 2001) as f32 - 1000.0) / 1000.0);
        target.append_value(WORDS[(next() % 16) as usize]);
        source.append_value(if i % 2 == 0 { "headline" } else { "microblog" });
        group.append_null();
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

/// `(start, len)` of the generation batches for `rows` rows.
fn chunks(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows).step_by(50_000).map(move |start| (start, 50_000.min(rows - start)))
}

fn generate(path: &Path, rows: usize) {
    let mut w = BatchWriter::create(path, dataset_schema(true), &WriteOptions::new()).unwrap();
    for (start, n) in chunks(rows) {
        w.write(&batch(start, n)).unwrap();
    }
    w.finish().unwrap();
}

/// JSONL like the shared data: extra fields (a list, an object, a null) to skip.
fn generate_jsonl(path: &Path, rows: usize) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (start, n) in chunks(rows) {
        let b = batch(start, n);
        let col =
            |i: usize| b.column(i).as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        let scores = b.column(2).as_any().downcast_ref::<arrow_array::Float32Array>().unwrap();
        for r in 0..b.num_rows() {
            let record = serde_json::json!({
                "id": col(0).value(r),
                "text": col(1).value(r),
                "score": scores.value(r),
                "target": col(3).value(r),
                "source": col(4).value(r),
                "dataset": "bench",
                "aspects": ["Corporate/Sales", "Stock/Price"],
                "meta": {"orig_id": r, "note": null},
            });
            serde_json::to_writer(&mut out, &record).unwrap();
            out.write_all(b"\n").unwrap();
        }
    }
    out.flush().unwrap();
}

fn read(c: &mut Criterion) {
    let rows = rows();
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("bench.parquet");
    let jsonl = dir.path().join("bench.jsonl");
    generate(&parquet, rows);
    generate_jsonl(&jsonl, rows);
    for (name, path) in [("parquet", &parquet), ("jsonl", &jsonl)] {
        let size = std::fs::metadata(path).unwrap().len();
        eprintln!("{name}: {rows} rows, {:.1} MB", size as f64 / 1e6);
    }

    let mut group = c.benchmark_group("read_rows");
    // One read per sample: a read takes long enough that criterion's linear sampling (1 + 2 +
    // ... + 10 reads) would multiply the run time for nothing.
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(rows as u64));
    for (name, path) in [("parquet", &parquet), ("jsonl", &jsonl)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let data = read_dataset(&[path], &ReadOptions::new()).unwrap();
                assert_eq!(data.len(), rows);
                black_box(data)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(30));
    targets = read
}
criterion_main!(benches);
