//! Input and output of `predict` and `encode`: standard input copied to a temporary file
//! (`tempfile`), output to a file (any format, written atomically by fintune-data) or JSON
//! lines on standard output, the checks on the output file, and SIGINT/SIGTERM handling so
//! that an interrupted command removes its temporary files.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use arrow_schema::SchemaRef;
use fintune_data::{BatchWriter, WriteOptions};
use fintune_train::predict::OutputBatch;
use fintune_train::prepare::same_file;

/// The error of a command stopped by SIGINT or SIGTERM (exit status 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted (temporary files removed)")]
pub struct Interrupted;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // A second signal: leave at once.
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// From now on SIGINT and SIGTERM stop the command at the next batch (through
/// [`check_interrupt`]), so that the temporary files are removed; a second signal exits at once.
pub fn catch_interrupts() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls `_exit`.
        unsafe {
            libc::signal(sig, handler);
        }
    }
}

/// Fails with [`Interrupted`] once SIGINT or SIGTERM arrived.
pub fn check_interrupt() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        return Err(Interrupted.into());
    }
    Ok(())
}

fn is_std(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// The input to read: `-` means JSONL on standard input, copied into `tmp` (removed on drop,
/// also when the command is interrupted).
pub fn input_path(input: &Path, tmp: &mut Option<tempfile::TempDir>) -> Result<PathBuf> {
    if !is_std(input) {
        return Ok(input.to_owned());
    }
    let dir = tempfile::Builder::new().prefix("fintune-stdin-").tempdir()?;
    let p = dir.path().join("stdin.jsonl");
    *tmp = Some(dir);
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).context("reading standard input")?;
    std::fs::write(&p, buf).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
}

/// Refuses an output that is the input file (also through another path or a link).
pub fn check_output(input: &Path, output: &Path) -> Result<()> {
    if !is_std(output) && !is_std(input) && same_file(input, output) {
        bail!(
            "--output {} is the input file {}: writing would replace the input; choose another output",
            output.display(),
            input.display()
        );
    }
    Ok(())
}

/// Writes output batches either to a file (any format, atomically; an existing file's
/// permissions are kept) or as JSON lines to standard output.
pub enum Sink {
    /// A file.
    File {
        /// The writer.
        writer: Box<BatchWriter>,
        /// The schema of the batches.
        schema: SchemaRef,
        /// The permissions of the file it replaces.
        keep: Option<std::fs::Permissions>,
    },
    /// Standard output.
    Stdout(BufWriter<std::io::Stdout>),
}

impl Sink {
    /// Opens `output` (`-`: standard output).
    pub fn open(output: &Path, schema: SchemaRef) -> Result<Sink> {
        if is_std(output) {
            return Ok(Sink::Stdout(BufWriter::new(std::io::stdout())));
        }
        let keep = std::fs::metadata(output).ok().filter(|m| m.is_file()).map(|m| m.permissions());
        let writer = Box::new(BatchWriter::create(output, schema.clone(), &WriteOptions::new())?);
        Ok(Sink::File { writer, schema, keep })
    }

    /// Writes one batch.
    pub fn write(&mut self, batch: &dyn OutputBatch) -> Result<()> {
        match self {
            Sink::File { writer, schema, .. } => {
                writer.write(&batch.record_batch(schema.clone())?)?;
            }
            Sink::Stdout(out) => {
                for row in batch.json_rows() {
                    serde_json::to_writer(&mut *out, &row)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }

    /// Completes the output.
    pub fn finish(self) -> Result<()> {
        match self {
            Sink::File { writer, keep, .. } => {
                let path = writer.path().to_owned();
                writer.finish()?;
                if let Some(p) = keep {
                    std::fs::set_permissions(&path, p).with_context(|| {
                        format!("restoring the permissions of {}", path.display())
                    })?;
                }
            }
            Sink::Stdout(mut out) => out.flush()?,
        }
        Ok(())
    }
}
