//! `history.csv`: one row per training step, written and read with the `csv` crate (RFC 4180
//! quoting, so a method such as `static:0.7,0.3` stays one field).
//!
//! Columns: `epoch, step, lr`, then per task (in the run's task order, e.g. `reg`, `cls`)
//! `loss.<task>`, then `w.<task>`, then `gnorm.<task>`, then `batch_rarity, samples_per_s,
//! step_ms, probe_ms, method`, then the weighting's own terms as `<term>.<task>`. A value that
//! is not defined (a gradient norm that was not measured) is an empty field.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{refuse_symlink, write_atomic};
use crate::{Error, Result};

/// What one task measured in one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TaskStep {
    /// The task's loss on the batch.
    pub loss: f64,
    /// Its weight in the combined loss.
    pub weight: f64,
    /// Its gradient norm on the probe (NaN when not measured).
    pub grad_norm: f64,
}

/// One row of `history.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based global step.
    pub step: u64,
    /// Learning rate of the step (the backbone's, or the heads' when it is frozen).
    pub lr: f64,
    /// Per task, in the run's task order.
    pub tasks: Vec<TaskStep>,
    /// Mean rarity weight of the batch's scores.
    pub batch_rarity: f64,
    /// Training throughput of the step.
    pub samples_per_s: f64,
    /// Wall time of the step in milliseconds.
    pub step_ms: f64,
    /// Wall time of the per-task probe gradients in the step, milliseconds.
    pub probe_ms: f64,
    /// The weighting method's per-task terms, flattened term by term, task by task.
    pub terms: Vec<f64>,
}

/// The column names of `history.csv` for `tasks` and the weighting's `terms`.
pub fn header(tasks: &[&str], terms: &[String]) -> Vec<String> {
    let mut h: Vec<String> = ["epoch", "step", "lr"].map(String::from).to_vec();
    for kind in ["loss", "w", "gnorm"] {
        h.extend(tasks.iter().map(|t| format!("{kind}.{t}")));
    }
    h.extend(["batch_rarity", "samples_per_s", "step_ms", "probe_ms", "method"].map(String::from));
    for term in terms {
        h.extend(tasks.iter().map(|t| format!("{term}.{t}")));
    }
    h
}

fn cell(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v}")
    }
}

impl StepRecord {
    /// The record's fields in [`header`] order.
    pub fn fields(&self, method: &str) -> Vec<String> {
        let mut f = vec![self.epoch.to_string(), self.step.to_string(), cell(self.lr)];
        f.extend(self.tasks.iter().map(|t| cell(t.loss)));
        f.extend(self.tasks.iter().map(|t| cell(t.weight)));
        f.extend(self.tasks.iter().map(|t| cell(t.grad_norm)));
        f.extend([self.batch_rarity, self.samples_per_s, self.step_ms, self.probe_ms].map(cell));
        f.push(method.to_owned());
        f.extend(self.terms.iter().map(|&t| cell(t)));
        f
    }
}

/// Appends [`StepRecord`]s to `history.csv`.
#[derive(Debug)]
pub struct HistoryWriter {
    out: csv::Writer<File>,
    path: PathBuf,
}

fn csv_err(path: &Path, e: csv::Error) -> Error {
    Error::Csv { path: path.to_owned(), source: e }
}

impl HistoryWriter {
    /// A new file with the header (`keep` None), or (resume) the existing file cut to its
    /// first `keep` records, which must have the same header.
    pub fn open(path: &Path, header: &[String], keep: Option<usize>) -> Result<Self> {
        refuse_symlink(path)?;
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        w.write_record(header).map_err(|e| csv_err(path, e))?;
        if let Some(keep) = keep {
            // Only the records the checkpoint counted are read: a run killed after its last
            // checkpoint may have left further steps, the last one torn mid-write, and those
            // are discarded anyway.
            let h = read_history_prefix(path, keep)?;
            if h.header != header || h.rows.len() < keep {
                return Err(Error::Resume {
                    path: path.to_owned(),
                    reason: format!(
                        "history.csv has {} records or another header; the checkpoint expects {keep}",
                        h.rows.len()
                    ),
                });
            }
            for r in &h.rows[..keep] {
                w.write_record(r).map_err(|e| csv_err(path, e))?;
            }
        }
        let bytes = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
        write_atomic(path, &bytes)?;
        let mut o = OpenOptions::new();
        o.append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.custom_flags(libc::O_NOFOLLOW);
        }
        let f = o.open(path).map_err(|e| Error::io(path, e))?;
        Ok(HistoryWriter { out: csv::Writer::from_writer(f), path: path.to_owned() })
    }

    /// Appends one record.
    pub fn push(&mut self, r: &StepRecord, method: &str) -> Result<()> {
        self.out.write_record(r.fields(method)).map_err(|e| csv_err(&self.path, e))
    }

    /// Flushes to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// `history.csv` as read back: the header and the rows (as text).
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// Column names.
    pub header: Vec<String>,
    /// Rows, each with one field per column.
    pub rows: Vec<Vec<String>>,
}

impl History {
    /// `(step, value)` of a numeric column; rows with an empty value are left out.
    pub fn series(&self, column: &str) -> Vec<(f64, f64)> {
        let (Some(si), Some(ci)) = (self.index("step"), self.index(column)) else {
            return vec![];
        };
        self.rows
            .iter()
            .filter_map(|r| Some((r.get(si)?.parse().ok()?, r.get(ci)?.parse().ok()?)))
            .collect()
    }

    /// The position of `column`.
    pub fn index(&self, column: &str) -> Option<usize> {
        self.header.iter().position(|c| c == column)
    }
}

/// Reads `history.csv`; every row must have as many fields as the header.
pub fn read_history(path: &Path) -> Result<History> {
    read_history_prefix(path, usize::MAX)
}

/// The header and the first `n` rows of `history.csv` (fewer if it has fewer); rows after
/// them are not read.
fn read_history_prefix(path: &Path, n: usize) -> Result<History> {
    let mut r = csv::ReaderBuilder::new().from_path(path).map_err(|e| csv_err(path, e))?;
    let header: Vec<String> =
        r.headers().map_err(|e| csv_err(path, e))?.iter().map(String::from).collect();
    let rows = r
        .records()
        .take(n)
        .map(|rec| rec.map(|rec| rec.iter().map(String::from).collect()))
        .collect::<std::result::Result<Vec<Vec<String>>, _>>()
        .map_err(|e| csv_err(path, e))?;
    Ok(History { header, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64) -> StepRecord {
        let t = |l| TaskStep { loss: l, weight: 0.5, grad_norm: f64::NAN };
        StepRecord {
            epoch: 1,
            step,
            lr: 1e-4,
            tasks: vec![t(0.25), t(1.5)],
            batch_rarity: 1.0,
            samples_per_s: 10.0,
            step_ms: 3.0,
            probe_ms: 0.5,
            terms: vec![0.1, 0.2],
        }
    }

    #[test]
    fn history_csv_quotes_a_static_weighting_method() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("history.csv");
        let header = header(&["reg", "cls"], &["static".into()]);
        assert_eq!(header.len(), 3 + 6 + 5 + 2);
        let mut w = HistoryWriter::open(&p, &header, None).unwrap();
        w.push(&record(1), "static:0.7,0.3").unwrap();
        w.push(&record(2), "static:0.7,0.3").unwrap();
        w.flush().unwrap();
        let h = read_history(&p).unwrap();
        assert_eq!(h.header, header);
        assert_eq!(h.rows.len(), 2);
        assert!(h.rows.iter().all(|r| r.len() == header.len()));
        assert_eq!(h.rows[0][h.index("method").unwrap()], "static:0.7,0.3");
        assert_eq!(h.series("loss.cls"), vec![(1.0, 1.5), (2.0, 1.5)]);
        assert!(h.series("gnorm.reg").is_empty(), "NaN is an empty field");
        // Resume keeps the first record only.
        let mut w = HistoryWriter::open(&p, &header, Some(1)).unwrap();
        w.push(&record(2), "dwa").unwrap();
        w.flush().unwrap();
        let h = read_history(&p).unwrap();
        assert_eq!(h.rows.len(), 2);
        assert_eq!(h.rows[1][h.index("method").unwrap()], "dwa");
        assert!(HistoryWriter::open(&p, &header, Some(3)).is_err());
    }

    #[test]
    fn resume_discards_a_row_torn_after_the_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("history.csv");
        let header = header(&["reg"], &[]);
        let mut w = HistoryWriter::open(&p, &header, None).unwrap();
        for step in 1..=3 {
            w.push(&record1(step), "equal").unwrap();
        }
        w.flush().unwrap();
        drop(w);
        // A kill mid-write: the fourth row stops after its step_ms field, no newline.
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("1,4,0.0001,0.25,1,0.1,1,10,3.5,");
        std::fs::write(&p, &text).unwrap();
        let torn = read_history(&p).unwrap_err();
        assert!(matches!(torn, Error::Csv { .. }), "{torn}");
        // The checkpoint counted 2 rows: the third and the torn fourth go.
        let mut w = HistoryWriter::open(&p, &header, Some(2)).unwrap();
        w.push(&record1(3), "equal").unwrap();
        w.flush().unwrap();
        let h = read_history(&p).unwrap();
        assert_eq!(h.rows.len(), 3);
        assert_eq!(h.series("step"), vec![(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]);
        // A torn row among the kept ones is still an error that names the file.
        std::fs::write(&p, &text).unwrap();
        let e = HistoryWriter::open(&p, &header, Some(4)).unwrap_err();
        assert!(e.chain().contains("history.csv"), "{}", e.chain());
    }

    fn record1(step: u64) -> StepRecord {
        StepRecord {
            epoch: 1,
            step,
            lr: 1e-4,
            tasks: vec![TaskStep { loss: 0.25, weight: 1.0, grad_norm: 0.1 }],
            batch_rarity: 1.0,
            samples_per_s: 10.0,
            step_ms: 3.5,
            probe_ms: 0.5,
            terms: vec![],
        }
    }
}
