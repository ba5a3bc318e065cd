//! Ingestion of labelled sentiment text into validated Arrow record batches.
//!
//! `fintune-data` reads sentiment datasets (a text and a score in a declared range, by default
//! `[-1, 1]`) from JSONL, JSON arrays, CSV/TSV, Parquet and Arrow IPC, validates every row and
//! returns one Arrow [`RecordBatch`](arrow_array::RecordBatch) with a fixed schema
//! ([`dataset_schema`]): `id` (unique), `text` (not blank), `score` (finite, in range) and the
//! optional `target`, `source` and `group`.
//!
//! Main items:
//! - [`ReadOptions`]: format override, column mapping, score range, labelled or not,
//!   skip-invalid, batch size, class names (a score column of class labels read as class
//!   indices, [`ReadOptions::labels`]).
//! - [`read_dataset`]: several files into one validated [`Dataset`], with the
//!   [`SkipReport`] of skipped rows and [`Warning`]s (same text, different scores; a CSV field
//!   that looks like swallowed records).
//! - [`BatchReader`]: one file as a stream of validated batches (bounded memory), whole or by
//!   unit ([`BatchReader::open_units`]: chosen Parquet row groups, counted by [`read_units`],
//!   with the whole file's row numbers and ids) for sharded prediction.
//! - [`BatchWriter`], [`write_dataset`], [`convert`]: atomic writers for every format, with any
//!   columns (predictions); any-to-any conversion in bounded memory.
//! - [`dedup_across_sets`] / [`dedup_datasets`]: drop training texts that are validation or
//!   test texts of any set (normalised text), with a [`DedupReport`] for `metrics.json`.
//! - [`Summary`]: row count, score statistics, 10-bin histogram, text lengths.
//! - [`Problem`] / [`ProblemReport`]: every problem with file, 1-based line or row, column and
//!   reason; [`Error::Invalid`] displays the first 20 and the total.
//!
//! ```
//! use fintune_data::{read_dataset, ReadOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("train.jsonl");
//! std::fs::write(
//!     &path,
//!     concat!(
//!         "{\"id\": \"a\", \"text\": \"Profits soar\", \"score\": 0.8, \"extra\": [1, 2]}\n",
//!         "{\"id\": \"b\", \"text\": \"Shares slump\", \"score\": -0.6, \"target\": null}\n",
//!         "{\"id\": \"c\", \"text\": \"\", \"score\": 0.1}\n",
//!     ),
//! )?;
//!
//! // By default any problem fails the read, naming file, line, column and reason.
//! let err = read_dataset(&[&path], &ReadOptions::new()).unwrap_err();
//! assert!(err.to_string().contains("train.jsonl:3: column \"text\": text is empty"));
//!
//! // Skipping keeps the valid rows and reports the others.
//! let data = read_dataset(&[&path], &ReadOptions::new().skip_invalid(true))?;
//! assert_eq!(data.ids(), ["a", "b"]);
//! assert_eq!(data.scores(), Some(&[0.8f32, -0.6][..]));
//! assert_eq!(data.skipped().count, 1);
//! println!("{}", data.summary());
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod arrow_util;
mod dataset;
mod dedup;
mod error;
mod format;
mod options;
mod problem;
mod read;
pub mod schema;
mod summary;
mod validate;
mod write;

pub use dataset::Dataset;
pub use dedup::{
    dedup_across_sets, dedup_datasets, normalized_text_key, DatasetSplits, Dedup, DedupReport,
    SetDedup, SetSplits, DEDUP_RULE,
};
pub use error::Error;
pub use format::Format;
pub use options::{DefaultGroup, ReadOptions, ScoreRange};
pub use problem::{Location, Problem, ProblemKind, ProblemReport, SkipReport, Warning};
pub use read::{read_dataset, read_units, BatchReader};
pub use schema::dataset_schema;
pub use summary::{
    bin_edges, bin_of, LengthStats, ScoreStats, Summary, BINS, EXTREME_FROM, NEUTRAL_BELOW,
};
pub use write::{convert, write_dataset, BatchWriter, ConvertReport, WriteOptions};
