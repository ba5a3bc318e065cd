//! File formats and their detection.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A supported file format.
///
/// Detected from the file extension by default ([`Format::from_path`]); a format given in
/// [`crate::ReadOptions::format`] or [`crate::WriteOptions::format`] overrides detection.
/// [`FromStr`] accepts the names in [`Format::NAMES`] (case-insensitive) plus a few aliases,
/// so it can back a `--format` flag. Serde uses the same table (written as the canonical name,
/// read through [`FromStr`]), so a TOML `format = "json"` means what `--format json` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON object per line (`.jsonl`, `.ndjson`, `.jsonlines`).
    Jsonl,
    /// One JSON array of objects (`.json`; a `.json` file whose first byte is `{` is read as
    /// JSONL).
    JsonArray,
    /// Comma-separated values with a header row; RFC 4180 quoting (`.csv`).
    Csv,
    /// Tab-separated values with a header row; the same quoting rules as CSV (`.tsv`, `.tab`).
    Tsv,
    /// Apache Parquet (`.parquet`, `.pq`); written with zstd compression.
    Parquet,
    /// Arrow IPC file format (`.arrow`, `.feather`, `.ipc`).
    ArrowFile,
    /// Arrow IPC stream format (`.arrows`; a `.arrow` file without the file magic is read as a
    /// stream).
    ArrowStream,
}

impl Format {
    /// Canonical names, as printed by [`fmt::Display`] and accepted by [`FromStr`].
    pub const NAMES: [&'static str; 7] =
        ["jsonl", "json", "csv", "tsv", "parquet", "arrow", "arrow-stream"];

    /// Every format.
    pub const ALL: [Format; 7] = [
        Format::Jsonl,
        Format::JsonArray,
        Format::Csv,
        Format::Tsv,
        Format::Parquet,
        Format::ArrowFile,
        Format::ArrowStream,
    ];

    /// The canonical name (one of [`Format::NAMES`]).
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::JsonArray => "json",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Parquet => "parquet",
            Format::ArrowFile => "arrow",
            Format::ArrowStream => "arrow-stream",
        }
    }

    /// The usual file extension for this format (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::JsonArray => "json",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Parquet => "parquet",
            Format::ArrowFile => "arrow",
            Format::ArrowStream => "arrows",
        }
    }

    /// The format implied by the extension of `path` (case-insensitive), without looking at the
    /// file. `None` for an unknown or missing extension.
    pub fn from_path(path: impl AsRef<Path>) -> Option<Format> {
        let ext = path.as_ref().extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "jsonl" | "ndjson" | "jsonlines" => Format::Jsonl,
            "json" => Format::JsonArray,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "parquet" | "pq" => Format::Parquet,
            "arrow" | "feather" | "ipc" => Format::ArrowFile,
            "arrows" => Format::ArrowStream,
            _ => return None,
        })
    }

    /// The format of an existing file to read: from its extension, refined by its first bytes
    /// where the extension is ambiguous (`.json` holding JSON lines, `.arrow` holding an IPC
    /// stream).
    pub fn detect(path: impl AsRef<Path>) -> Result<Format, Error> {
        let path = path.as_ref();
        let format =
            Format::from_path(path).ok_or_else(|| Error::UnknownFormat { path: path.into() })?;
        match format {
            Format::JsonArray => {
                let head = read_head(path, 4096)?;
                let first = strip_bom(&head).iter().copied().find(|b| !b.is_ascii_whitespace());
                Ok(if first == Some(b'{') { Format::Jsonl } else { Format::JsonArray })
            }
            Format::ArrowFile => {
                let head = read_head(path, 6)?;
                Ok(if head.starts_with(b"ARROW1") {
                    Format::ArrowFile
                } else {
                    Format::ArrowStream
                })
            }
            other => Ok(other),
        }
    }
}

fn read_head(path: &Path, n: u64) -> Result<Vec<u8>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::new();
    file.take(n).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    Ok(head)
}

pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "jsonlines" | "json-lines" => Format::Jsonl,
            "json" | "json-array" => Format::JsonArray,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "parquet" | "pq" => Format::Parquet,
            "arrow" | "arrow-file" | "ipc" | "feather" => Format::ArrowFile,
            "arrow-stream" | "arrows" | "ipc-stream" => Format::ArrowStream,
            _ => return Err(Error::ParseFormat { name: s.to_string() }),
        })
    }
}

impl Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
