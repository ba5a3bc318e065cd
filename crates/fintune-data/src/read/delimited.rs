//! CSV and TSV reader, streamed record by record.
//!
//! The first row is the header. Fields follow RFC 4180 quoting (`"` quotes, `""` escapes a
//! quote, quoted fields may hold delimiters and newlines); TSV uses the same rules with a tab
//! delimiter. A UTF-8 byte order mark is ignored and empty lines are skipped. Header names are
//! matched after trimming surrounding whitespace. Problems are reported at the line where the
//! record starts (the header is line 1). An empty field is a null, except in the text column
//! where it is an empty text. Every cell is checked for valid UTF-8 on its own, so a bad byte
//! is reported with its column.
//!
//! A quoted field left open at the end of the file is a file-level problem at the line where
//! the field began. A text field that spans several lines, each of which looks like a whole
//! record (`a,"hello,0.5` / `b,fine,0.1` / `c,more",0.2` reads as ONE row), is valid CSV
//! but almost always a stray quote in a broken export: it is kept, with a
//! [`Warning::SuspiciousMultilineField`] naming the line where the field began.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Read;

use csv::ByteRecord;

use crate::error::Error;
use crate::problem::{Location, ProblemKind, Warning};
use crate::read::Source;
use crate::validate::{field, Cell, FileCtx, RawRow, ScoreCell, Validator};

/// Wraps the input to record where line terminators are, so records get their exact start
/// line: the CSV parser's own positions point before skipped blank lines. It also follows the
/// quoting as the parser does, to tell where a quoted field left open at the end began.
pub(crate) struct Tracked<R> {
    inner: R,
    offset: u64,
    /// Offsets of `\r` and `\n` bytes not yet passed by [`Tracked::record_line`].
    terminators: VecDeque<(u64, u8)>,
    /// `\n` bytes before the last queried offset.
    newlines: u64,
    delimiter: u8,
    quote: QuoteState,
    /// `\n` bytes read so far.
    lines_read: u64,
    /// The 1-based line where the quoted field being read began.
    quote_line: u64,
    /// Whether the input is exhausted.
    eof: bool,
}

/// Where the parser is with respect to quoting (RFC 4180, as the `csv` crate reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    /// At the start of a field.
    FieldStart,
    /// Inside an unquoted field (a `"` there is an ordinary byte).
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a `"` inside a quoted field: `""` is an escaped quote, anything else ends it.
    AfterQuote,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            let end = b == b'\n' || b == b'\r';
            if end {
                self.terminators.push_back((self.offset + i as u64, b));
            }
            let boundary = end || b == self.delimiter;
            self.quote = match self.quote {
                QuoteState::FieldStart if b == b'"' => {
                    self.quote_line = self.lines_read + 1;
                    QuoteState::Quoted
                }
                QuoteState::FieldStart | QuoteState::Unquoted | QuoteState::AfterQuote
                    if boundary =>
                {
                    QuoteState::FieldStart
                }
                QuoteState::FieldStart | QuoteState::Unquoted => QuoteState::Unquoted,
                QuoteState::Quoted if b == b'"' => QuoteState::AfterQuote,
                QuoteState::Quoted => QuoteState::Quoted,
                QuoteState::AfterQuote if b == b'"' => QuoteState::Quoted,
                QuoteState::AfterQuote => QuoteState::Unquoted,
            };
            self.lines_read += u64::from(b == b'\n');
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R> Tracked<R> {
    fn new(inner: R, delimiter: u8) -> Self {
        Tracked {
            inner,
            offset: 0,
            terminators: VecDeque::new(),
            newlines: 0,
            delimiter,
            quote: QuoteState::FieldStart,
            lines_read: 0,
            quote_line: 0,
            eof: false,
        }
    }

    /// The line where a quoted field began that is still open at the end of the input.
    fn unterminated_quote(&self) -> Option<u64> {
        (self.eof && self.quote == QuoteState::Quoted).then_some(self.quote_line)
    }

    /// The 1-based line of a record whose parse started at byte `start` (possibly before blank
    /// lines, which are skipped). Queries must come in increasing order.
    fn record_line(&mut self, start: u64) -> u64 {
        while let Some(&(at, b)) = self.terminators.front() {
            if at >= start {
                break;
            }
            self.newlines += u64::from(b == b'\n');
            self.terminators.pop_front();
        }
        let mut at_next = start;
        while let Some(&(at, b)) = self.terminators.front() {
            if at != at_next {
                break;
            }
            self.newlines += u64::from(b == b'\n');
            self.terminators.pop_front();
            at_next += 1;
        }
        self.newlines + 1
    }
}

pub(crate) struct DelimitedSource<R: Read> {
    reader: csv::Reader<Tracked<R>>,
    file: FileCtx,
    delimiter: u8,
    /// Header index of each mapped field.
    index: [Option<usize>; 6],
    width: usize,
    record: u64,
    buf: ByteRecord,
}

impl<R: Read + Send> DelimitedSource<R> {
    /// Opens the reader and checks the header; `None` after a file-level problem (recorded in
    /// `v`).
    pub fn open(
        input: R,
        delimiter: u8,
        file: FileCtx,
        v: &mut Validator,
    ) -> Result<Option<Self>, Error> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(true)
            .from_reader(Tracked::new(input, delimiter));
        let header = reader
            .byte_headers()
            .map_err(|e| Error::Csv { path: file.path.clone(), source: e })?
            .clone();
        let mut names = Vec::with_capacity(header.len());
        for (i, cell) in header.iter().enumerate() {
            match std::str::from_utf8(cell) {
                Ok(name) => names.push(name.trim().to_string()),
                Err(_) => {
                    v.file_problem(
                        &file,
                        Location::Line(1),
                        None,
                        ProblemKind::NonUtf8,
                        format!("header field {} is not valid UTF-8", i + 1),
                    );
                    return Ok(None);
                }
            }
        }
        let index: [Option<usize>; 6] =
            std::array::from_fn(|f| names.iter().position(|n| n == v.name(f)));
        let mut required = vec![field::TEXT];
        if v.labelled() {
            required.push(field::SCORE);
        }
        let mut ok = true;
        for f in required {
            if index[f].is_none() {
                let column = v.name(f).to_string();
                let message = if names.iter().all(String::is_empty) {
                    "column not found: the file has no header".to_string()
                } else {
                    format!("column not found in the header (columns: {})", names.join(", "))
                };
                v.file_problem(
                    &file,
                    Location::File,
                    Some(&column),
                    ProblemKind::MissingColumn,
                    message,
                );
                ok = false;
            }
        }
        Ok(ok.then(|| DelimitedSource {
            reader,
            file,
            delimiter,
            index,
            width: header.len(),
            record: 0,
            buf: ByteRecord::new(),
        }))
    }
}

/// When field number `index` (of `width`) spans several lines and every line of it would be a
/// whole record on its own, the number of lines (the signature of a stray quote that swallowed
/// the records after it). The first line completes the fields before it, the middle lines hold
/// `width` fields each, and the last line the fields up to the field's position.
fn record_like_lines(field: &[u8], index: usize, width: usize, delimiter: u8) -> Option<u64> {
    if width < 2 || !field.contains(&b'\n') {
        return None;
    }
    let lines: Vec<&[u8]> =
        field.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
    let fields = |l: &[u8]| l.iter().filter(|&&b| b == delimiter).count() + 1;
    let last = lines.len() - 1;
    let whole = lines.iter().copied().enumerate().all(|(i, l)| {
        let (before, after) =
            (if i == 0 { index } else { 0 }, if i == last { width - index - 1 } else { 0 });
        !l.iter().all(u8::is_ascii_whitespace) && before + fields(l) + after == width
    });
    whole.then_some(lines.len() as u64)
}

fn cell<'a>(bytes: Option<&'a [u8]>, is_text: bool) -> Cell<'a> {
    let Some(bytes) = bytes else { return Cell::Absent };
    match std::str::from_utf8(bytes) {
        Ok("") if !is_text => Cell::Null,
        Ok(s) => Cell::Str(Cow::Borrowed(s)),
        Err(e) => Cell::Bad(
            ProblemKind::NonUtf8,
            format!("invalid UTF-8 at byte {} of the field", e.valid_up_to() + 1),
        ),
    }
}

impl<R: Read + Send> Source for DelimitedSource<R> {
    fn fill(&mut self, v: &mut Validator, max_rows: usize) -> Result<bool, Error> {
        for _ in 0..max_rows {
            let more = self
                .reader
                .read_byte_record(&mut self.buf)
                .map_err(|e| Error::Csv { path: self.file.path.clone(), source: e })?;
            if !more {
                return Ok(false);
            }
            self.record += 1;
            let start = self.buf.position().map_or(0, |p| p.byte());
            let line = self.reader.get_mut().record_line(start);
            let loc = Location::Line(line);
            if let Some(open) = self.reader.get_ref().unterminated_quote() {
                v.file_problem(
                    &self.file,
                    Location::Line(open),
                    None,
                    ProblemKind::Malformed,
                    "a quoted field begins on this line and is never closed (a stray `\"`?): \
                     the rest of the file would be read into it"
                        .to_string(),
                );
                return Ok(false);
            }
            if self.buf.len() != self.width {
                v.malformed(
                    &self.file,
                    loc,
                    ProblemKind::Malformed,
                    format!(
                        "expected {} fields (as in the header), found {}",
                        self.width,
                        self.buf.len()
                    ),
                );
                continue;
            }
            if let Some(i) = self.index[field::TEXT] {
                if let Some(lines) = record_like_lines(&self.buf[i], i, self.width, self.delimiter)
                {
                    let column = v.name(field::TEXT).to_string();
                    v.warn(Warning::SuspiciousMultilineField {
                        file: self.file.path.clone(),
                        line,
                        lines,
                        column,
                    });
                }
            }
            let get = |f: usize| self.index[f].map(|i| &self.buf[i]);
            let mut row = RawRow::new(loc, self.record);
            row.id = cell(get(field::ID), false);
            row.text = cell(get(field::TEXT), true);
            row.score = match cell(get(field::SCORE), false) {
                Cell::Absent => ScoreCell::Absent,
                Cell::Null => ScoreCell::Null,
                Cell::Str(s) => ScoreCell::Text(s),
                Cell::Bad(kind, message) => ScoreCell::Bad(kind, message),
            };
            row.target = cell(get(field::TARGET), false);
            row.source = cell(get(field::SOURCE), false);
            row.group = cell(get(field::GROUP), false);
            v.push(&self.file, row);
        }
        Ok(true)
    }
}
