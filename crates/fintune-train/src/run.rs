//! The run folder: resolved config, `das.json`, `history.csv`, checkpoints for `--resume`,
//! `metrics.json`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Paths inside a run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    /// Uses (and creates) `root`.
    pub fn create(root: &Path) -> Result<Self> {
        fs::create_dir_all(root.join("plots")).map_err(|e| Error::io(root, e))?;
        Ok(RunDir { root: root.to_owned() })
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn das(&self) -> PathBuf {
        self.root.join("das.json")
    }
    pub fn history(&self) -> PathBuf {
        self.root.join("history.csv")
    }
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.json")
    }
    pub fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }
    pub fn report(&self) -> PathBuf {
        self.root.join("report.md")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Serialises `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Json { path: path.to_owned(), source: e })?;
    write_atomic(path, (text + "\n").as_bytes())
}

/// Reads JSON from `path`.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json { path: path.to_owned(), source: e })
}

/// One row of `history.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub epoch: usize,
    pub step: u64,
    pub lr: f64,
    pub loss_reg: f64,
    /// NaN for single-task runs.
    pub loss_cls: f64,
    pub w_reg: f64,
    pub w_cls: f64,
    pub gnorm_reg: f64,
    pub gnorm_cls: f64,
    /// Mean rarity weight of the batch's scores.
    pub batch_rarity: f64,
    pub samples_per_s: f64,
    /// Wall time of the step in milliseconds, and of the per-task probe gradients in it.
    pub step_ms: f64,
    pub probe_ms: f64,
    /// The weighting method's per-task terms, flattened as `name_task` in `term_names` order.
    pub terms: Vec<f64>,
}

/// Appends [`StepRecord`]s to `history.csv`, writing the header first.
#[derive(Debug)]
pub struct HistoryWriter {
    out: BufWriter<File>,
}

const FIXED: [&str; 14] = [
    "epoch",
    "step",
    "lr",
    "loss_reg",
    "loss_cls",
    "w_reg",
    "w_cls",
    "gnorm_reg",
    "gnorm_cls",
    "batch_rarity",
    "samples_per_s",
    "step_ms",
    "probe_ms",
    "method",
];

impl HistoryWriter {
    /// A new file with the header, or (resume) the existing file cut to its first `keep`
    /// records.
    pub fn open(path: &Path, term_columns: &[String], keep: Option<usize>) -> Result<Self> {
        let header = FIXED
            .iter()
            .map(|s| s.to_string())
            .chain(term_columns.iter().cloned())
            .collect::<Vec<_>>()
            .join(",");
        match keep {
            None => {
                let mut out = BufWriter::new(File::create(path).map_err(|e| Error::io(path, e))?);
                writeln!(out, "{header}").map_err(|e| Error::io(path, e))?;
                out.flush().map_err(|e| Error::io(path, e))?;
                Ok(HistoryWriter { out })
            }
            Some(keep) => {
                let f = File::open(path).map_err(|e| Error::io(path, e))?;
                let lines: Vec<String> = BufReader::new(f)
                    .lines()
                    .take(keep + 1)
                    .collect::<std::io::Result<_>>()
                    .map_err(|e| Error::io(path, e))?;
                if lines.len() != keep + 1 || lines[0] != header {
                    return Err(Error::Resume {
                        path: path.to_owned(),
                        reason: format!("history.csv has {} records or another header; the checkpoint expects {keep}", lines.len().saturating_sub(1)),
                    });
                }
                let mut text = lines.join("\n");
                text.push('\n');
                write_atomic(path, text.as_bytes())?;
                let f =
                    OpenOptions::new().append(true).open(path).map_err(|e| Error::io(path, e))?;
                Ok(HistoryWriter { out: BufWriter::new(f) })
            }
        }
    }

    /// Appends one record.
    pub fn push(&mut self, r: &StepRecord, method: &str) -> Result<()> {
        let fmt = |v: f64| if v.is_nan() { String::new() } else { format!("{v}") };
        let mut line = format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.epoch,
            r.step,
            fmt(r.lr),
            fmt(r.loss_reg),
            fmt(r.loss_cls),
            fmt(r.w_reg),
            fmt(r.w_cls),
            fmt(r.gnorm_reg),
            fmt(r.gnorm_cls),
            fmt(r.batch_rarity),
            fmt(r.samples_per_s),
            fmt(r.step_ms),
            fmt(r.probe_ms),
            method
        );
        for t in &r.terms {
            line.push(',');
            line.push_str(&fmt(*t));
        }
        writeln!(self.out, "{line}").map_err(|e| Error::io("history.csv", e))
    }

    /// Flushes to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io("history.csv", e))
    }
}

/// Peak resident memory of this process in MiB (VmHWM), where /proc is available.
pub fn peak_rss_mib() -> Option<f64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
