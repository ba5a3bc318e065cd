//! Reading: format dispatch, the streaming [`BatchReader`] and [`read_dataset`].

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::dataset::Dataset;
use crate::error::Error;
use crate::format::Format;
use crate::options::ReadOptions;
use crate::problem::{SkipReport, Warning};
use crate::schema::dataset_schema;
use crate::validate::Validator;

mod columnar;
mod delimited;
mod json;
mod json_array;
mod jsonl;

use columnar::{arrow_error, check_schema, BatchIter, ColumnarSource};

/// A reader of one file's records into a [`Validator`].
pub(crate) trait Source: Send {
    /// Reads up to `max_rows` more records into `v`; `Ok(false)` once the input is exhausted
    /// (or a file-level problem stopped it).
    fn fill(&mut self, v: &mut Validator, max_rows: usize) -> Result<bool, Error>;
}

const IO_BUFFER: usize = 1 << 16;

/// Opens `path` as `format`; `None` after a file-level problem (recorded in `v`).
fn open_source(
    path: &Path,
    format: Format,
    opts: &ReadOptions,
    v: &mut Validator,
    units: Option<&[usize]>,
) -> Result<Option<Box<dyn Source>>, Error> {
    if let Some(u) = units {
        if format != Format::Parquet && u != [0] {
            return Err(Error::InvalidOption(format!(
                "{}: a {format} file is one unit (0); asked for units {u:?}",
                path.display()
            )));
        }
    }
    let file_ctx = v.begin_file(path);
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(match format {
        Format::Jsonl => Some(Box::new(jsonl::JsonlSource::new(
            BufReader::with_capacity(IO_BUFFER, file),
            file_ctx,
            v,
        ))),
        Format::JsonArray => Some(Box::new(json_array::JsonArraySource::new(
            BufReader::with_capacity(IO_BUFFER, file),
            file_ctx,
            v,
        ))),
        Format::Csv | Format::Tsv => {
            let delimiter = if format == Format::Csv { b',' } else { b'\t' };
            delimited::DelimitedSource::open(file, delimiter, file_ctx, v)?
                .map(|s| Box::new(s) as Box<dyn Source>)
        }
        Format::Parquet => {
            let parquet_error = |source| Error::Parquet { path: path.into(), source };
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_error)?;
            let Some(projection) = check_schema(builder.schema(), &file_ctx, v) else {
                return Ok(None);
            };
            let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
            let batches: BatchIter = match units {
                None => {
                    let reader = builder
                        .with_projection(mask)
                        .with_batch_size(opts.batch_size)
                        .build()
                        .map_err(parquet_error)?;
                    let owned = path.to_path_buf();
                    Box::new(reader.map(move |batch| {
                        batch
                            .map(|b| (b, None))
                            .map_err(|source| Error::Arrow { path: owned.clone(), source })
                    }))
                }
                Some(u) => parquet_units(path, &builder, &mask, opts, u)?,
            };
            Some(Box::new(ColumnarSource::new(batches, file_ctx, v)))
        }
        Format::ArrowFile => {
            let schema = arrow_ipc::reader::FileReader::try_new_buffered(file, None)
                .map_err(arrow_error(&file_ctx))?
                .schema();
            let Some(projection) = check_schema(&schema, &file_ctx, v) else {
                return Ok(None);
            };
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let reader = arrow_ipc::reader::FileReader::try_new_buffered(file, Some(projection))
                .map_err(arrow_error(&file_ctx))?;
            let owned = path.to_path_buf();
            let batches: BatchIter = Box::new(reader.map(move |batch| {
                batch
                    .map(|b| (b, None))
                    .map_err(|source| Error::Arrow { path: owned.clone(), source })
            }));
            Some(Box::new(ColumnarSource::new(batches, file_ctx, v)))
        }
        Format::ArrowStream => {
            let schema = arrow_ipc::reader::StreamReader::try_new_buffered(file, None)
                .map_err(arrow_error(&file_ctx))?
                .schema();
            let Some(projection) = check_schema(&schema, &file_ctx, v) else {
                return Ok(None);
            };
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let reader = arrow_ipc::reader::StreamReader::try_new_buffered(file, Some(projection))
                .map_err(arrow_error(&file_ctx))?;
            let owned = path.to_path_buf();
            let batches: BatchIter = Box::new(reader.map(move |batch| {
                batch
                    .map(|b| (b, None))
                    .map_err(|source| Error::Arrow { path: owned.clone(), source })
            }));
            Some(Box::new(ColumnarSource::new(batches, file_ctx, v)))
        }
    })
}

/// The batches of row groups `units` (strictly increasing) of a Parquet file, one reader per
/// group, each group's first batch carrying the number of file rows before it.
fn parquet_units(
    path: &Path,
    builder: &ParquetRecordBatchReaderBuilder<File>,
    mask: &ProjectionMask,
    opts: &ReadOptions,
    units: &[usize],
) -> Result<BatchIter, Error> {
    let meta = builder.metadata().clone();
    let n = meta.num_row_groups();
    if let Some(w) = units.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::InvalidOption(format!(
            "{}: row groups must be listed in increasing order, got {} before {}",
            path.display(),
            w[0],
            w[1]
        )));
    }
    if let Some(&u) = units.iter().find(|&&u| u >= n) {
        return Err(Error::InvalidOption(format!(
            "{}: row group {u} asked for; the file has {n}",
            path.display()
        )));
    }
    let mut before = vec![0u64; n];
    for i in 1..n {
        before[i] = before[i - 1] + meta.row_group(i - 1).num_rows() as u64;
    }
    let mut readers: Vec<BatchIter> = Vec::with_capacity(units.len());
    for &u in units {
        let parquet_error = |source| Error::Parquet { path: path.into(), source };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(parquet_error)?
            .with_projection(mask.clone())
            .with_batch_size(opts.batch_size)
            .with_row_groups(vec![u])
            .build()
            .map_err(parquet_error)?;
        let owned = path.to_path_buf();
        let mut start = Some(before[u]);
        readers.push(Box::new(reader.map(move |batch| {
            batch
                .map(|b| (b, start.take()))
                .map_err(|source| Error::Arrow { path: owned.clone(), source })
        })));
    }
    Ok(Box::new(readers.into_iter().flatten()))
}

/// The number of units `path` splits into for sharded reading
/// ([`BatchReader::open_units`]): a Parquet file's row groups; 1 for any other format.
pub fn read_units(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<usize, Error> {
    let path = path.as_ref();
    let format = resolve_format(path, opts)?;
    if format != Format::Parquet {
        return Ok(1);
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|source| Error::Parquet { path: path.into(), source })?;
    Ok(builder.metadata().num_row_groups())
}

fn resolve_format(path: &Path, opts: &ReadOptions) -> Result<Format, Error> {
    match opts.format {
        Some(format) => Ok(format),
        None => Format::detect(path),
    }
}

/// Reads and validates one or more files into one [`Dataset`].
///
/// Files are read in the order given and concatenated; ids must be unique across all of them.
/// Every problem in every file is collected. Without [`ReadOptions::skip_invalid`] any problem
/// fails the read with [`Error::Invalid`], whose message is the report (first 20 problems and
/// the total). With it, invalid rows are left out and listed in [`Dataset::skipped`];
/// file-level problems (missing or mistyped column, broken JSON array) still fail. Fails with
/// [`Error::NoRows`] if no valid row is left.
///
/// Memory: the validated columns plus the set of ids; Parquet, Arrow and CSV inputs are read
/// batch by batch, never as one string.
pub fn read_dataset(paths: &[impl AsRef<Path>], opts: &ReadOptions) -> Result<Dataset, Error> {
    opts.validate()?;
    if paths.is_empty() {
        return Err(Error::InvalidOption("no input files given".into()));
    }
    let mut v = Validator::new(opts);
    for path in paths {
        let path = path.as_ref();
        let format = resolve_format(path, opts)?;
        if let Some(mut source) = open_source(path, format, opts, &mut v, None)? {
            while source.fill(&mut v, opts.batch_size)? {}
        }
    }
    if v.is_fatal() || (v.has_problems() && !opts.skip_invalid) {
        return Err(Error::Invalid(Box::new(v.into_report())));
    }
    let skipped = v.skip_report();
    let warnings = v.warnings().to_vec();
    let batch = v.take_batch();
    if batch.num_rows() == 0 {
        return Err(Error::NoRows {
            paths: paths.iter().map(|p| p.as_ref().to_path_buf()).collect(),
        });
    }
    Ok(Dataset::new(batch, skipped, warnings, opts))
}

/// A streaming reader of one file: an iterator of validated batches with the schema
/// [`dataset_schema`]`(opts.labelled)`, at most [`ReadOptions::batch_size`] rows each.
///
/// Memory is bounded by the batch size (plus the set of ids seen, to keep them unique).
///
/// Without [`ReadOptions::skip_invalid`], once a batch has a problem no further batch is
/// yielded: the rest of the file is still scanned (rows discarded) so that the final item is
/// one [`Error::Invalid`] listing every problem of the file. With it, invalid rows are left
/// out and accumulate in [`BatchReader::skipped`]. Batches are never empty. Unlike
/// [`read_dataset`], there are no duplicate-text warnings (that needs the whole file).
///
/// ```no_run
/// # fn main() -> Result<(), fintune_data::Error> {
/// use fintune_data::{BatchReader, ReadOptions};
/// let reader = BatchReader::open("huge.jsonl", &ReadOptions::new().labelled(false))?;
/// for batch in reader {
///     let batch = batch?;
///     println!("{} rows", batch.num_rows());
/// }
/// # Ok(()) }
/// ```
pub struct BatchReader {
    source: Option<Box<dyn Source>>,
    validator: Validator,
    path: PathBuf,
    format: Format,
    skip_invalid: bool,
    batch_size: usize,
    labelled: bool,
    done: bool,
}

impl std::fmt::Debug for BatchReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchReader")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("batch_size", &self.batch_size)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl BatchReader {
    /// Opens `path` (format from [`ReadOptions::format`] or detected). Fails right away on I/O
    /// errors and bad options; a file-level problem (for example a missing text column) is the
    /// first item of the iterator.
    pub fn open(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<Self, Error> {
        Self::open_inner(path.as_ref(), opts, None)
    }

    /// Opens only the units `units` (strictly increasing, non-empty) of `path`: row groups of
    /// a Parquet file ([`read_units`] counts them), `[0]` (the whole file) for any other
    /// format. Row numbers in problems and generated ids are those of the whole file, so the
    /// rows of all units equal the rows of [`BatchReader::open`].
    pub fn open_units(
        path: impl AsRef<Path>,
        opts: &ReadOptions,
        units: &[usize],
    ) -> Result<Self, Error> {
        if units.is_empty() {
            return Err(Error::InvalidOption("no unit to read".into()));
        }
        Self::open_inner(path.as_ref(), opts, Some(units))
    }

    fn open_inner(path: &Path, opts: &ReadOptions, units: Option<&[usize]>) -> Result<Self, Error> {
        opts.validate()?;
        let format = resolve_format(path, opts)?;
        let mut validator = Validator::new(opts);
        let source = open_source(path, format, opts, &mut validator, units)?;
        Ok(BatchReader {
            source,
            validator,
            path: path.to_path_buf(),
            format,
            skip_invalid: opts.skip_invalid,
            batch_size: opts.batch_size,
            labelled: opts.labelled,
            done: false,
        })
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        dataset_schema(self.labelled)
    }

    /// Warnings about valid rows read so far (a CSV field that looks like swallowed records);
    /// complete once the iterator is exhausted.
    pub fn warnings(&self) -> &[Warning] {
        self.validator.warnings()
    }

    /// The rows skipped so far (with [`ReadOptions::skip_invalid`]); complete once the iterator
    /// is exhausted.
    pub fn skipped(&self) -> SkipReport {
        self.validator.skip_report()
    }

    fn failed(&self) -> bool {
        self.validator.is_fatal() || (!self.skip_invalid && self.validator.has_problems())
    }

    /// Reads the rest of the file only to collect its problems, then reports them all.
    fn fail(&mut self) -> Result<RecordBatch, Error> {
        self.done = true;
        if !self.validator.is_fatal() {
            if let Some(source) = self.source.as_mut() {
                while source.fill(&mut self.validator, self.batch_size)? {
                    self.validator.discard_rows();
                    if self.validator.is_fatal() {
                        break;
                    }
                }
            }
        }
        self.validator.discard_rows();
        Err(Error::Invalid(Box::new(self.validator.report())))
    }

    fn next_batch(&mut self) -> Option<Result<RecordBatch, Error>> {
        loop {
            if self.done {
                return None;
            }
            if self.failed() {
                return Some(self.fail());
            }
            let Some(source) = self.source.as_mut() else {
                self.done = true;
                return None;
            };
            let more = match source.fill(&mut self.validator, self.batch_size) {
                Ok(more) => more,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if self.failed() {
                return Some(self.fail());
            }
            if !more {
                self.done = true;
            }
            if self.validator.buffered_rows() > 0 {
                return Some(Ok(self.validator.take_batch()));
            }
        }
    }
}

impl Iterator for BatchReader {
    type Item = Result<RecordBatch, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

#[cfg(test)]
mod tests;
