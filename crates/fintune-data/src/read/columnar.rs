//! Parquet and Arrow IPC (file and stream) readers, streamed batch by batch.
//!
//! Only the mapped columns are read (projection). Rows are numbered from 1 across the file.
//! Accepted column types: text as any string type (`Utf8`, `LargeUtf8`, `Utf8View`), a binary
//! type (checked for UTF-8 row by row) or a dictionary of those; id, target, source and group
//! as those or integers; score as any float or integer type or a string to parse. Another type
//! is a file-level problem.

use std::borrow::Cow;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{ArrowError, DataType, Schema};

use crate::arrow_util::int_at;
use crate::error::Error;
use crate::problem::{Location, ProblemKind};
use crate::read::Source;
use crate::validate::{field, Cell, FileCtx, RawRow, ScoreCell, Validator};

/// The batches of one file, whatever the container.
/// Batches of a columnar file; a batch may carry the number of file rows before it (when
/// only some row groups are read), which keeps row numbers and generated ids those of the
/// whole file.
pub(crate) type BatchIter =
    Box<dyn Iterator<Item = Result<(RecordBatch, Option<u64>), Error>> + Send>;

pub(crate) struct ColumnarSource {
    batches: BatchIter,
    file: FileCtx,
    /// Mapped field name in the (projected) batches, per field.
    columns: [Option<String>; 6],
    pending: Option<(RecordBatch, usize)>,
    row: u64,
}

fn is_string(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::Null => true,
        DataType::Dictionary(_, values) => is_string(values),
        _ => false,
    }
}

fn is_label(dt: &DataType) -> bool {
    is_string(dt) || dt.is_integer() || matches!(dt, DataType::Dictionary(_, v) if v.is_integer())
}

fn is_score(dt: &DataType) -> bool {
    matches!(dt, DataType::Float32 | DataType::Float64) || dt.is_integer() || is_string(dt)
}

/// Checks the file schema; returns the indexes of the mapped columns present (for projection),
/// or `None` after recording file-level problems.
pub(crate) fn check_schema(
    schema: &Schema,
    file: &FileCtx,
    v: &mut Validator,
) -> Option<Vec<usize>> {
    let mut ok = true;
    let mut projection = Vec::new();
    for f in 0..6 {
        let name = v.name(f).to_string();
        let Ok(index) = schema.index_of(&name) else {
            let required = f == field::TEXT || (f == field::SCORE && v.labelled());
            if required {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                v.file_problem(
                    file,
                    Location::File,
                    Some(&name),
                    ProblemKind::MissingColumn,
                    format!("column not found (columns: {})", names.join(", ")),
                );
                ok = false;
            }
            continue;
        };
        let dt = schema.field(index).data_type();
        let (fits, expected) = match f {
            field::TEXT => (is_string(dt), "a string column"),
            field::SCORE => (is_score(dt), "a numeric or string column"),
            _ => (is_label(dt), "a string or integer column"),
        };
        if !fits {
            v.file_problem(
                file,
                Location::File,
                Some(&name),
                ProblemKind::WrongType,
                format!("expected {expected}, found {dt}"),
            );
            ok = false;
        }
        projection.push(index);
    }
    projection.sort_unstable();
    projection.dedup();
    ok.then_some(projection)
}

impl ColumnarSource {
    pub fn new(batches: BatchIter, file: FileCtx, v: &Validator) -> Self {
        ColumnarSource {
            batches,
            file,
            columns: std::array::from_fn(|f| Some(v.name(f).to_string())),
            pending: None,
            row: 0,
        }
    }

    fn process(&mut self, v: &mut Validator, batch: &RecordBatch, offset: usize, len: usize) {
        let column = |f: usize| {
            self.columns[f]
                .as_deref()
                .and_then(|name| batch.column_by_name(name))
                .map(|c| c.as_ref())
        };
        let id = column(field::ID).map(StrView::new);
        let text = column(field::TEXT).map(StrView::new);
        let score = column(field::SCORE).map(ScoreView::new);
        let target = column(field::TARGET).map(StrView::new);
        let source = column(field::SOURCE).map(StrView::new);
        let group = column(field::GROUP).map(StrView::new);
        for i in offset..offset + len {
            self.row += 1;
            let mut row = RawRow::new(Location::Row(self.row), self.row);
            row.id = id.as_ref().map_or(Cell::Absent, |c| c.cell(i));
            row.text = text.as_ref().map_or(Cell::Absent, |c| c.cell(i));
            row.score = score.as_ref().map_or(ScoreCell::Absent, |c| c.cell(i));
            row.target = target.as_ref().map_or(Cell::Absent, |c| c.cell(i));
            row.source = source.as_ref().map_or(Cell::Absent, |c| c.cell(i));
            row.group = group.as_ref().map_or(Cell::Absent, |c| c.cell(i));
            v.push(&self.file, row);
        }
    }
}

impl Source for ColumnarSource {
    fn fill(&mut self, v: &mut Validator, max_rows: usize) -> Result<bool, Error> {
        let mut rows = 0;
        while rows < max_rows {
            let (batch, offset) = match self.pending.take() {
                Some(pending) => pending,
                None => match self.batches.next() {
                    None => return Ok(false),
                    Some(item) => {
                        let (batch, rows_before) = item?;
                        if let Some(r) = rows_before {
                            self.row = r;
                        }
                        (batch, 0)
                    }
                },
            };
            let len = (batch.num_rows() - offset).min(max_rows - rows);
            self.process(v, &batch, offset, len);
            rows += len;
            if offset + len < batch.num_rows() {
                self.pending = Some((batch, offset + len));
            }
        }
        Ok(true)
    }
}

/// A string-like column.
enum StrView<'a> {
    Str(&'a dyn Array),
    Dict { keys: Vec<usize>, key_nulls: &'a dyn Array, values: Box<StrView<'a>> },
}

impl<'a> StrView<'a> {
    fn new(array: &'a dyn Array) -> Self {
        match array.as_any_dictionary_opt() {
            Some(dict) => StrView::Dict {
                keys: dict.normalized_keys(),
                key_nulls: dict.keys(),
                values: Box::new(StrView::new(dict.values().as_ref())),
            },
            None => StrView::Str(array),
        }
    }

    fn cell(&self, i: usize) -> Cell<'a> {
        match self {
            StrView::Dict { keys, key_nulls, values } => {
                if key_nulls.is_null(i) {
                    Cell::Null
                } else {
                    values.cell(keys[i])
                }
            }
            StrView::Str(array) => {
                let array: &'a dyn Array = *array;
                if array.data_type() == &DataType::Null || array.is_null(i) {
                    return Cell::Null;
                }
                let bytes: &'a [u8] = match array.data_type() {
                    DataType::Utf8 => {
                        return Cell::Str(Cow::Borrowed(array.as_string::<i32>().value(i)))
                    }
                    DataType::LargeUtf8 => {
                        return Cell::Str(Cow::Borrowed(array.as_string::<i64>().value(i)))
                    }
                    DataType::Utf8View => {
                        return Cell::Str(Cow::Borrowed(array.as_string_view().value(i)))
                    }
                    DataType::Binary => array.as_binary::<i32>().value(i),
                    DataType::LargeBinary => array.as_binary::<i64>().value(i),
                    DataType::BinaryView => array.as_binary_view().value(i),
                    _ => match int_at(array, i) {
                        Some(n) => return Cell::Str(Cow::Owned(n.to_string())),
                        None => {
                            return Cell::Bad(
                                ProblemKind::WrongType,
                                format!("unsupported type {}", array.data_type()),
                            )
                        }
                    },
                };
                match std::str::from_utf8(bytes) {
                    Ok(s) => Cell::Str(Cow::Borrowed(s)),
                    Err(e) => Cell::Bad(
                        ProblemKind::NonUtf8,
                        format!("invalid UTF-8 at byte {} of the value", e.valid_up_to() + 1),
                    ),
                }
            }
        }
    }
}

/// A score column.
enum ScoreView<'a> {
    Num(&'a dyn Array),
    Str(StrView<'a>),
}

impl<'a> ScoreView<'a> {
    fn new(array: &'a dyn Array) -> Self {
        if is_string(array.data_type()) {
            ScoreView::Str(StrView::new(array))
        } else {
            ScoreView::Num(array)
        }
    }

    fn cell(&self, i: usize) -> ScoreCell<'a> {
        match self {
            ScoreView::Str(view) => match view.cell(i) {
                Cell::Absent => ScoreCell::Absent,
                Cell::Null => ScoreCell::Null,
                Cell::Str(s) => ScoreCell::Text(s),
                Cell::Bad(kind, message) => ScoreCell::Bad(kind, message),
            },
            ScoreView::Num(array) => {
                if array.is_null(i) {
                    return ScoreCell::Null;
                }
                match array.data_type() {
                    DataType::Float32 => {
                        ScoreCell::Num(array.as_primitive::<Float32Type>().value(i).into())
                    }
                    DataType::Float64 => {
                        ScoreCell::Num(array.as_primitive::<Float64Type>().value(i))
                    }
                    _ => match int_at(*array, i) {
                        Some(n) => ScoreCell::Num(n as f64),
                        None => ScoreCell::Bad(
                            ProblemKind::WrongType,
                            format!("unsupported type {}", array.data_type()),
                        ),
                    },
                }
            }
        }
    }
}

pub(crate) fn arrow_error(file: &FileCtx) -> impl Fn(ArrowError) -> Error + '_ {
    move |source| Error::Arrow { path: file.path.clone(), source }
}
