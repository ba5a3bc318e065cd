//! JSON Lines reader: one object per line, streamed line by line.
//!
//! Lines are numbered from 1 (physical lines). Blank lines are skipped (they still count for
//! line numbers, not as records). A UTF-8 byte order mark on the first line is ignored, and so
//! is a `\r` before the `\n`.

use std::io::BufRead;

use crate::error::Error;
use crate::format::strip_bom;
use crate::problem::{Location, ProblemKind};
use crate::read::json::handle_record;
use crate::read::Source;
use crate::validate::{FileCtx, Validator};

pub(crate) struct JsonlSource<R> {
    reader: R,
    file: FileCtx,
    names: [String; 6],
    line: u64,
    record: u64,
    buf: Vec<u8>,
}

impl<R: BufRead + Send> JsonlSource<R> {
    pub fn new(reader: R, file: FileCtx, v: &Validator) -> Self {
        let names = std::array::from_fn(|i| v.name(i).to_string());
        JsonlSource { reader, file, names, line: 0, record: 0, buf: Vec::new() }
    }
}

impl<R: BufRead + Send> Source for JsonlSource<R> {
    fn fill(&mut self, v: &mut Validator, max_rows: usize) -> Result<bool, Error> {
        let names: [&str; 6] = std::array::from_fn(|i| self.names[i].as_str());
        let mut rows = 0;
        while rows < max_rows {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::io(&self.file.path, e))?;
            if n == 0 {
                return Ok(false);
            }
            self.line += 1;
            let mut bytes = self.buf.as_slice();
            if self.line == 1 {
                bytes = strip_bom(bytes);
            }
            bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.record += 1;
            rows += 1;
            let loc = Location::Line(self.line);
            match std::str::from_utf8(bytes) {
                Ok(text) => handle_record(v, &self.file, &names, loc, self.record, text),
                Err(e) => v.malformed(
                    &self.file,
                    loc,
                    ProblemKind::NonUtf8,
                    format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1),
                ),
            }
        }
        Ok(true)
    }
}
