//! Writers (atomic: a temporary file in the target directory, renamed into place by
//! [`BatchWriter::finish`]) and [`convert`].

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tempfile::TempPath;

use crate::arrow_util::int_at;
use crate::dataset::Dataset;
use crate::error::Error;
use crate::format::Format;
use crate::options::ReadOptions;
use crate::problem::SkipReport;
use crate::read::BatchReader;

/// How to write output files.
///
/// ```
/// use fintune_data::{Format, WriteOptions};
/// let opts = WriteOptions::new().format(Format::Parquet).zstd_level(9);
/// assert_eq!(opts.zstd_level, 9);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Output format; `None` takes it from the output file's extension.
    pub format: Option<Format>,
    /// zstd level for Parquet (1 to 22).
    pub zstd_level: i32,
    /// Most rows per Parquet row group (`None`: the parquet crate's default, 1 Mi rows). Row
    /// groups are the units a sharded reader ([`crate::BatchReader::open_units`]) splits by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_group_rows: Option<usize>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { format: None, zstd_level: 3, row_group_rows: None }
    }
}

impl WriteOptions {
    /// The defaults (same as [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `format` whatever the extension. Default: from the extension
    /// ([`Format::from_path`]).
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Sets the format override (`None`: from the extension). Default: `None`.
    pub fn format_opt(mut self, format: Option<Format>) -> Self {
        self.format = format;
        self
    }

    /// zstd compression level for Parquet. Default: `3`.
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// Most rows per Parquet row group (at least 1). Default: the parquet crate's.
    pub fn row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = Some(rows);
        self
    }
}

enum Sink {
    Jsonl { out: BufWriter<File>, line: Vec<u8> },
    JsonArray { out: BufWriter<File>, line: Vec<u8>, first: bool },
    Delimited { out: csv::Writer<BufWriter<File>>, cells: Vec<Vec<u8>> },
    Parquet(Box<ArrowWriter<BufWriter<File>>>),
    ArrowFile(arrow_ipc::writer::FileWriter<BufWriter<File>>),
    ArrowStream(arrow_ipc::writer::StreamWriter<BufWriter<File>>),
}

/// A streaming writer of record batches with any columns, in any [`Format`].
///
/// Rows go to a temporary file next to the output; [`BatchWriter::finish`] syncs it and renames
/// it over the output, so readers never see a partial file. Dropping the writer without
/// finishing removes the temporary file and leaves any existing output untouched.
///
/// Text formats (JSONL, JSON array, CSV, TSV) support strings, booleans, integers, floats,
/// lists, structs and dictionaries of these, and null columns:
/// - JSONL / JSON: one object per row with every column in schema order; nulls are written as
///   `null`; NaN and infinities become `null` (JSON has no such numbers); floats are written
///   with the shortest text that reads back to the same value; lists are JSON arrays, structs
///   JSON objects.
/// - CSV / TSV: a header row, then RFC 4180 quoting where needed; nulls are empty fields;
///   lists and structs are written as their JSON text (for example `[0.1,0.7,0.2]`), which the
///   readers of this crate do not expand back.
///
/// Parquet (zstd) and Arrow IPC store every Arrow type as it is.
pub struct BatchWriter {
    sink: Option<Sink>,
    temp: Option<TempPath>,
    path: PathBuf,
    format: Format,
    schema: SchemaRef,
    rows: u64,
}

impl fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchWriter")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

fn text_supported(dt: &DataType) -> bool {
    match dt {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => true,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            text_supported(f.data_type())
        }
        DataType::Struct(fields) => fields.iter().all(|f| text_supported(f.data_type())),
        DataType::Dictionary(_, values) => text_supported(values),
        _ => false,
    }
}

impl BatchWriter {
    /// Starts writing batches with `schema` to `path` (format from `opts` or the extension).
    pub fn create(
        path: impl AsRef<Path>,
        schema: SchemaRef,
        opts: &WriteOptions,
    ) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let format = match opts.format {
            Some(format) => format,
            None => Format::from_path(&path)
                .ok_or_else(|| Error::UnknownFormat { path: path.clone() })?,
        };
        let text = matches!(format, Format::Jsonl | Format::JsonArray | Format::Csv | Format::Tsv);
        if text {
            if let Some(field) = schema.fields().iter().find(|f| !text_supported(f.data_type())) {
                return Err(Error::Unsupported {
                    path,
                    column: field.name().clone(),
                    data_type: field.data_type().clone(),
                    format,
                });
            }
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name =
            path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&path, e))?;
        let (file, temp) = temp.into_parts();
        let buffered = move || BufWriter::with_capacity(1 << 16, file);
        let arrow_err = |source| Error::Arrow { path: path.clone(), source };
        let sink = match format {
            Format::Jsonl => Sink::Jsonl { out: buffered(), line: Vec::new() },
            Format::JsonArray => Sink::JsonArray { out: buffered(), line: Vec::new(), first: true },
            Format::Csv | Format::Tsv => {
                let mut out = csv::WriterBuilder::new()
                    .delimiter(if format == Format::Csv { b',' } else { b'\t' })
                    .quote_style(csv::QuoteStyle::Necessary)
                    .from_writer(buffered());
                out.write_record(schema.fields().iter().map(|f| f.name().as_bytes()))
                    .map_err(|source| Error::Csv { path: path.clone(), source })?;
                Sink::Delimited { out, cells: vec![Vec::new(); schema.fields().len()] }
            }
            Format::Parquet => {
                let level = ZstdLevel::try_new(opts.zstd_level).map_err(|e| {
                    Error::InvalidOption(format!("zstd level {}: {e}", opts.zstd_level))
                })?;
                let mut props =
                    WriterProperties::builder().set_compression(Compression::ZSTD(level));
                if let Some(rows) = opts.row_group_rows {
                    if rows == 0 {
                        return Err(Error::InvalidOption("row groups need at least 1 row".into()));
                    }
                    props = props.set_max_row_group_row_count(Some(rows));
                }
                let props = props.build();
                let writer = ArrowWriter::try_new(buffered(), schema.clone(), Some(props))
                    .map_err(|source| Error::Parquet { path: path.clone(), source })?;
                Sink::Parquet(Box::new(writer))
            }
            Format::ArrowFile => Sink::ArrowFile(
                arrow_ipc::writer::FileWriter::try_new(buffered(), &schema).map_err(arrow_err)?,
            ),
            Format::ArrowStream => Sink::ArrowStream(
                arrow_ipc::writer::StreamWriter::try_new(buffered(), &schema).map_err(arrow_err)?,
            ),
        };
        Ok(BatchWriter { sink: Some(sink), temp: Some(temp), path, format, schema, rows: 0 })
    }

    /// The output format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The output path (written by [`BatchWriter::finish`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), Error> {
        let expected = self.schema.fields();
        let got = schema.fields();
        let same = expected.len() == got.len()
            && expected
                .iter()
                .zip(got.iter())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if same {
            Ok(())
        } else {
            let show = |s: &Schema| {
                s.fields()
                    .iter()
                    .map(|f| format!("{}: {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(Error::SchemaMismatch {
                path: self.path.clone(),
                reason: format!("expected ({}), got ({})", show(&self.schema), show(schema)),
            })
        }
    }

    /// Appends the rows of `batch`, which must have the writer's column names and types.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.check_schema(&batch.schema())?;
        let path = &self.path;
        let io = |e| Error::io(path, e);
        let sink = self.sink.as_mut().expect("writer not finished");
        match sink {
            Sink::Jsonl { out, line } => {
                for row in 0..batch.num_rows() {
                    line.clear();
                    json_row(line, batch, row);
                    line.push(b'\n');
                    out.write_all(line).map_err(io)?;
                }
            }
            Sink::JsonArray { out, line, first } => {
                for row in 0..batch.num_rows() {
                    line.clear();
                    line.extend_from_slice(if *first { b"[\n" } else { b",\n" });
                    *first = false;
                    json_row(line, batch, row);
                    out.write_all(line).map_err(io)?;
                }
            }
            Sink::Delimited { out, cells } => {
                for row in 0..batch.num_rows() {
                    for (cell, column) in cells.iter_mut().zip(batch.columns()) {
                        cell.clear();
                        text_cell(cell, column.as_ref(), row);
                    }
                    out.write_record(cells.iter())
                        .map_err(|source| Error::Csv { path: path.clone(), source })?;
                }
            }
            Sink::Parquet(w) => {
                w.write(batch).map_err(|source| Error::Parquet { path: path.clone(), source })?
            }
            Sink::ArrowFile(w) => {
                w.write(batch).map_err(|source| Error::Arrow { path: path.clone(), source })?
            }
            Sink::ArrowStream(w) => {
                w.write(batch).map_err(|source| Error::Arrow { path: path.clone(), source })?
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Completes the file, syncs it and renames it over the output path. Returns the number of
    /// rows written.
    pub fn finish(mut self) -> Result<u64, Error> {
        let path = self.path.clone();
        let io = |e| Error::io(&path, e);
        let arrow = |source| Error::Arrow { path: path.clone(), source };
        let file: File = match self.sink.take().expect("writer not finished") {
            Sink::Jsonl { out, .. } => out.into_inner().map_err(|e| io(e.into_error()))?,
            Sink::JsonArray { mut out, first, .. } => {
                out.write_all(if first { b"[]\n" } else { b"\n]\n" }).map_err(io)?;
                out.into_inner().map_err(|e| io(e.into_error()))?
            }
            Sink::Delimited { out, .. } => out
                .into_inner()
                .map_err(|e| io(std::io::Error::other(e.to_string())))?
                .into_inner()
                .map_err(|e| io(e.into_error()))?,
            Sink::Parquet(w) => w
                .into_inner()
                .map_err(|source| Error::Parquet { path: path.clone(), source })?
                .into_inner()
                .map_err(|e| io(e.into_error()))?,
            Sink::ArrowFile(w) => {
                w.into_inner().map_err(arrow)?.into_inner().map_err(|e| io(e.into_error()))?
            }
            Sink::ArrowStream(w) => {
                w.into_inner().map_err(arrow)?.into_inner().map_err(|e| io(e.into_error()))?
            }
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        drop(file);
        let temp = self.temp.take().expect("temporary file");
        temp.persist(&self.path).map_err(|e| io(e.error))?;
        Ok(self.rows)
    }
}

/// Writes one row as a JSON object.
fn json_row(out: &mut Vec<u8>, batch: &RecordBatch, row: usize) {
    out.push(b'{');
    for (i, (field, column)) in batch.schema().fields().iter().zip(batch.columns()).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_string(out, field.name());
        out.push(b':');
        json_value(out, column.as_ref(), row);
    }
    out.push(b'}');
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn json_number<T: Serialize>(out: &mut Vec<u8>, v: T) {
    serde_json::to_writer(&mut *out, &v).expect("writing to a Vec cannot fail");
}

/// Writes one cell as JSON. Types are checked by [`text_supported`] beforehand.
fn json_value(out: &mut Vec<u8>, array: &dyn Array, i: usize) {
    if array.data_type() == &DataType::Null || array.is_null(i) {
        out.extend_from_slice(b"null");
        return;
    }
    match array.data_type() {
        DataType::Boolean => {
            out.extend_from_slice(if array.as_boolean().value(i) { b"true" } else { b"false" })
        }
        DataType::Int8 => json_number(out, array.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => json_number(out, array.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => json_number(out, array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => json_number(out, array.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => json_number(out, array.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => json_number(out, array.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => json_number(out, array.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => json_number(out, array.as_primitive::<UInt64Type>().value(i)),
        // serde_json writes the shortest round-trip form, and `null` for NaN and infinities.
        DataType::Float32 => json_number(out, array.as_primitive::<Float32Type>().value(i)),
        DataType::Float64 => json_number(out, array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => json_string(out, array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => json_string(out, array.as_string::<i64>().value(i)),
        DataType::Utf8View => json_string(out, array.as_string_view().value(i)),
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let (start, end) =
                (list.value_offsets()[i] as usize, list.value_offsets()[i + 1] as usize);
            json_seq(out, list.values().as_ref(), start..end);
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            let (start, end) =
                (list.value_offsets()[i] as usize, list.value_offsets()[i + 1] as usize);
            json_seq(out, list.values().as_ref(), start..end);
        }
        DataType::FixedSizeList(_, n) => {
            let list = array.as_fixed_size_list();
            let n = *n as usize;
            let start = list.value_offset_at(i);
            json_seq(out, list.values().as_ref(), start..start + n);
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            out.push(b'{');
            for (k, (field, column)) in fields.iter().zip(s.columns()).enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                json_string(out, field.name());
                out.push(b':');
                json_value(out, column.as_ref(), i);
            }
            out.push(b'}');
        }
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let key = int_at(dict.keys(), i).and_then(|k| usize::try_from(k).ok()).unwrap_or(0);
            json_value(out, dict.values().as_ref(), key);
        }
        other => unreachable!("type {other} was checked to be supported"),
    }
}

fn json_seq(out: &mut Vec<u8>, values: &dyn Array, range: std::ops::Range<usize>) {
    out.push(b'[');
    for (k, j) in range.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        json_value(out, values, j);
    }
    out.push(b']');
}

/// Writes one cell as CSV text: strings as they are, null as nothing, the rest as JSON.
fn text_cell(out: &mut Vec<u8>, array: &dyn Array, i: usize) {
    if array.data_type() == &DataType::Null || array.is_null(i) {
        return;
    }
    match array.data_type() {
        DataType::Utf8 => out.extend_from_slice(array.as_string::<i32>().value(i).as_bytes()),
        DataType::LargeUtf8 => out.extend_from_slice(array.as_string::<i64>().value(i).as_bytes()),
        DataType::Utf8View => out.extend_from_slice(array.as_string_view().value(i).as_bytes()),
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let key = int_at(dict.keys(), i).and_then(|k| usize::try_from(k).ok()).unwrap_or(0);
            text_cell(out, dict.values().as_ref(), key);
        }
        DataType::Float32 | DataType::Float64 => {
            let start = out.len();
            json_value(out, array, i);
            if &out[start..] == b"null" {
                // Non-finite: keep it readable (the readers reject it as a score).
                out.truncate(start);
                let v = match array.data_type() {
                    DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(i)),
                    _ => array.as_primitive::<Float64Type>().value(i),
                };
                out.extend_from_slice(v.to_string().as_bytes());
            }
        }
        _ => json_value(out, array, i),
    }
}

/// Writes a dataset's batch to `path` (format from `opts` or the extension), atomically.
/// Returns the number of rows written.
pub fn write_dataset(
    dataset: &Dataset,
    path: impl AsRef<Path>,
    opts: &WriteOptions,
) -> Result<u64, Error> {
    let mut writer = BatchWriter::create(path, dataset.batch().schema(), opts)?;
    writer.write(dataset.batch())?;
    writer.finish()
}

/// What [`convert`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvertReport {
    /// The input file.
    pub input: PathBuf,
    /// Its format.
    pub input_format: Format,
    /// The output file.
    pub output: PathBuf,
    /// Its format.
    pub output_format: Format,
    /// Rows written.
    pub rows: u64,
    /// Rows skipped (with [`ReadOptions::skip_invalid`]).
    pub skipped: SkipReport,
}

impl fmt::Display for ConvertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {} rows from {} ({}) to {} ({})",
            self.rows,
            self.input.display(),
            self.input_format,
            self.output.display(),
            self.output_format
        )?;
        if !self.skipped.is_empty() {
            write!(f, "\n{}", self.skipped)?;
        }
        Ok(())
    }
}

/// Converts `input` to `output` in any supported formats, validating on the way.
///
/// Streams batch by batch: memory is bounded by [`ReadOptions::batch_size`] (plus the set of
/// ids). The output holds the validated columns `id, text, score, target, source, group`
/// (other input fields are dropped). The output is written atomically: on any error, including
/// a validation error found late in the input, no output file is created (and an existing one
/// is left as it was).
pub fn convert(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    read: &ReadOptions,
    write: &WriteOptions,
) -> Result<ConvertReport, Error> {
    let mut reader = BatchReader::open(input.as_ref(), read)?;
    let mut writer = BatchWriter::create(output.as_ref(), reader.schema(), write)?;
    for batch in reader.by_ref() {
        writer.write(&batch?)?;
    }
    let output_format = writer.format();
    let rows = writer.finish()?;
    Ok(ConvertReport {
        input: input.as_ref().to_path_buf(),
        input_format: reader.format(),
        output: output.as_ref().to_path_buf(),
        output_format,
        rows,
        skipped: reader.skipped(),
    })
}

#[cfg(test)]
mod tests;
