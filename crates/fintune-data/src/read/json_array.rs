//! JSON array reader: `[ {...}, {...} ]`, streamed element by element.
//!
//! A small byte scanner splits the top-level array into elements (tracking strings, escapes and
//! nesting) without holding the whole file; each element is then parsed like a JSONL record.
//! Problems are reported at the line where the element starts. A broken array structure
//! (no leading `[`, a missing `,`, an unterminated element, text after the closing `]`) is a
//! file-level problem: the elements before it are validated, the rest of the file is not read.

use std::io::BufRead;

use crate::error::Error;
use crate::problem::{Location, ProblemKind};
use crate::read::json::handle_record;
use crate::read::Source;
use crate::validate::{FileCtx, Validator};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// After `[` or `,`: an element or `]` comes next (a trailing comma is tolerated).
    Element,
    /// After an element: `,` or `]`.
    Separator,
    Done,
}

pub(crate) struct JsonArraySource<R> {
    reader: R,
    file: FileCtx,
    names: [String; 6],
    line: u64,
    record: u64,
    state: State,
    elem: Vec<u8>,
}

impl<R: BufRead + Send> JsonArraySource<R> {
    pub fn new(reader: R, file: FileCtx, v: &Validator) -> Self {
        let names = std::array::from_fn(|i| v.name(i).to_string());
        JsonArraySource {
            reader,
            file,
            names,
            line: 1,
            record: 0,
            state: State::Start,
            elem: Vec::new(),
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, Error> {
        let buf = self.reader.fill_buf().map_err(|e| Error::io(&self.file.path, e))?;
        Ok(buf.first().copied())
    }

    fn bump(&mut self) -> Result<Option<u8>, Error> {
        let b = self.peek()?;
        if let Some(b) = b {
            self.reader.consume(1);
            if b == b'\n' {
                self.line += 1;
            }
        }
        Ok(b)
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, Error> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\t' | b'\n' | b'\r') => {
                    self.bump()?;
                }
                other => return Ok(other),
            }
        }
    }

    fn structure_problem(&mut self, v: &mut Validator, message: String) {
        v.file_problem(
            &self.file,
            Location::Line(self.line),
            None,
            ProblemKind::Malformed,
            format!("malformed JSON array: {message}"),
        );
        self.state = State::Done;
    }

    fn describe(b: Option<u8>) -> String {
        match b {
            None => "the end of the file".into(),
            Some(b) if b.is_ascii_graphic() => format!("{:?}", b as char),
            Some(b) => format!("byte 0x{b:02x}"),
        }
    }

    /// Reads one element's bytes into `self.elem`; `Ok(false)` at an unexpected end of file.
    fn scan_element(&mut self) -> Result<bool, Error> {
        self.elem.clear();
        let Some(first) = self.bump()? else { return Ok(false) };
        self.elem.push(first);
        match first {
            b'{' | b'[' => {
                let (mut depth, mut in_string, mut escaped) = (1usize, false, false);
                while depth > 0 {
                    let Some(b) = self.bump()? else { return Ok(false) };
                    self.elem.push(b);
                    if in_string {
                        if escaped {
                            escaped = false;
                        } else if b == b'\\' {
                            escaped = true;
                        } else if b == b'"' {
                            in_string = false;
                        }
                    } else {
                        match b {
                            b'"' => in_string = true,
                            b'{' | b'[' => depth += 1,
                            b'}' | b']' => depth -= 1,
                            _ => {}
                        }
                    }
                }
            }
            b'"' => {
                let mut escaped = false;
                loop {
                    let Some(b) = self.bump()? else { return Ok(false) };
                    self.elem.push(b);
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        break;
                    }
                }
            }
            _ => loop {
                match self.peek()? {
                    None | Some(b',' | b']' | b' ' | b'\t' | b'\n' | b'\r') => break,
                    Some(b) => {
                        self.bump()?;
                        self.elem.push(b);
                    }
                }
            },
        }
        Ok(true)
    }
}

impl<R: BufRead + Send> Source for JsonArraySource<R> {
    fn fill(&mut self, v: &mut Validator, max_rows: usize) -> Result<bool, Error> {
        let mut rows = 0;
        while rows < max_rows {
            match self.state {
                State::Done => return Ok(false),
                State::Start => {
                    if self
                        .reader
                        .fill_buf()
                        .map_err(|e| Error::io(&self.file.path, e))?
                        .starts_with(b"\xEF\xBB\xBF")
                    {
                        self.reader.consume(3);
                    }
                    match self.skip_ws()? {
                        Some(b'[') => {
                            self.bump()?;
                            self.state = State::Element;
                        }
                        other => {
                            let message = format!("expected '[', found {}", Self::describe(other));
                            self.structure_problem(v, message);
                        }
                    }
                }
                State::Element => match self.skip_ws()? {
                    Some(b']') => {
                        self.bump()?;
                        self.finish(v)?;
                    }
                    None => {
                        self.structure_problem(v, "unexpected end of file, expected ']'".into())
                    }
                    Some(_) => {
                        let start = self.line;
                        if !self.scan_element()? {
                            let message = format!(
                                "unexpected end of file inside the element that starts at line {start}"
                            );
                            self.structure_problem(v, message);
                            continue;
                        }
                        self.record += 1;
                        rows += 1;
                        let loc = Location::Line(start);
                        match std::str::from_utf8(&self.elem) {
                            Ok(text) => {
                                let names: [&str; 6] =
                                    std::array::from_fn(|i| self.names[i].as_str());
                                handle_record(v, &self.file, &names, loc, self.record, text);
                            }
                            Err(e) => v.malformed(
                                &self.file,
                                loc,
                                ProblemKind::NonUtf8,
                                format!(
                                    "invalid UTF-8 at byte {} of the element",
                                    e.valid_up_to() + 1
                                ),
                            ),
                        }
                        self.state = State::Separator;
                    }
                },
                State::Separator => match self.skip_ws()? {
                    Some(b',') => {
                        self.bump()?;
                        self.state = State::Element;
                    }
                    Some(b']') => {
                        self.bump()?;
                        self.finish(v)?;
                    }
                    other => {
                        let message =
                            format!("expected ',' or ']', found {}", Self::describe(other));
                        self.structure_problem(v, message);
                    }
                },
            }
        }
        Ok(self.state != State::Done)
    }
}

impl<R: BufRead + Send> JsonArraySource<R> {
    /// After the closing `]`: only whitespace may follow.
    fn finish(&mut self, v: &mut Validator) -> Result<(), Error> {
        match self.skip_ws()? {
            None => self.state = State::Done,
            Some(b) => {
                let message =
                    format!("unexpected {} after the closing ']'", Self::describe(Some(b)));
                self.structure_problem(v, message);
            }
        }
        Ok(())
    }
}
