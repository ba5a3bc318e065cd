//! The crate's error type.

use std::path::PathBuf;

use arrow_schema::{ArrowError, DataType};

use crate::format::Format;
use crate::problem::ProblemReport;

/// Everything that can go wrong while reading, validating or writing a dataset.
///
/// Variants that wrap a lower-level error keep it as [`std::error::Error::source`]; their own
/// message does not repeat it, so print the whole chain (for example `anyhow`'s `{:#}`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input did not validate. The message is the report: the first
    /// [`ProblemReport::SHOWN`] problems (file, line or row, column, reason) and the total count.
    #[error("{0}")]
    Invalid(Box<ProblemReport>),
    /// Reading or writing a file failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The format could not be told from the file name (or its first bytes).
    #[error(
        "{}: cannot tell the file format from its name; name it explicitly (one of: {})",
        path.display(),
        Format::NAMES.join(", ")
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A format name (for example a `--format` flag) is not one of [`Format::NAMES`].
    #[error("unknown format {name:?}; expected one of: {}", Format::NAMES.join(", "))]
    ParseFormat {
        /// The name given.
        name: String,
    },
    /// The Parquet library failed on this file.
    #[error("{}: Parquet", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The Arrow library failed on this file (IPC decoding or encoding, building a batch).
    #[error("{}: Arrow", path.display())]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ArrowError,
    },
    /// The CSV library failed on this file.
    #[error("{}: CSV", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: csv::Error,
    },
    /// A reading or writing option is inconsistent (for example an empty score range).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The input held no valid row at all (after skipping invalid rows, if that was asked for).
    #[error("no valid rows in {}", display_paths(paths))]
    NoRows {
        /// The files read.
        paths: Vec<PathBuf>,
    },
    /// A column type that this output format cannot represent.
    #[error("{}: cannot write column {column:?} of type {data_type} as {format}", path.display())]
    Unsupported {
        /// The output file.
        path: PathBuf,
        /// The column.
        column: String,
        /// Its type.
        data_type: DataType,
        /// The output format.
        format: Format,
    },
    /// A batch given to a [`crate::BatchWriter`] does not have the writer's schema.
    #[error("{}: batch does not match the output schema: {reason}", path.display())]
    SchemaMismatch {
        /// The output file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// The validation report, when this error is [`Error::Invalid`].
    pub fn report(&self) -> Option<&ProblemReport> {
        match self {
            Error::Invalid(report) => Some(report),
            _ => None,
        }
    }
}
