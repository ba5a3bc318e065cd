//! The run folder, the one owner of every on-disk format of a run: `config.toml` (with the
//! configuration's fingerprint), `das.json`, `history.csv` ([`history`]), `metrics.json`
//! ([`metrics`]), the checkpoint for `--resume` ([`checkpoint`]), `model/`, `plots/` and
//! `report.md`; and the rules for reusing a folder:
//!
//! - a folder holding a run with another configuration is refused (the message names the
//!   differing keys), for a fresh start and for `--resume` alike;
//! - a finished run is never overwritten without `overwrite`;
//! - symlinked entries are refused and every file is written through [`files::write_atomic`]
//!   (a new file renamed into place), so nothing is written through a planted link;
//! - leftovers of an interrupted run are swept when the folder is opened, and a checkpoint left
//!   only as `.checkpoint.old` is recovered;
//! - one process at a time: a run holds the folder's lock ([`RunDir::lock`]) from its checks to
//!   its end, and a second process is refused ([`Error::Busy`]) instead of writing beside it.

pub mod checkpoint;
pub mod files;
pub mod history;
pub mod metrics;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub use files::{read_json, write_atomic, write_json};

use crate::config::TrainConfig;
use crate::{Error, Result};

/// Entries of a run folder this crate writes (checked for symlinks, removed by `overwrite`).
const ENTRIES: [&str; 9] = [
    "config.toml",
    "das.json",
    "history.csv",
    "metrics.json",
    "report.md",
    "model",
    "plots",
    "checkpoint",
    ".checkpoint.old",
];

/// Paths inside a run folder, and the checks that guard it.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder.
    pub root: PathBuf,
}

impl RunDir {
    /// The run folder `root` (nothing is created yet).
    pub fn new(root: &Path) -> Self {
        RunDir { root: root.to_owned() }
    }

    /// Creates the folder and `plots/`.
    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(self.plots()).map_err(|e| Error::io(&self.root, e))
    }

    /// `config.toml`: the resolved configuration.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `das.json`: the score classes.
    pub fn das(&self) -> PathBuf {
        self.root.join("das.json")
    }
    /// `history.csv`: one row per step.
    pub fn history(&self) -> PathBuf {
        self.root.join("history.csv")
    }
    /// `metrics.json`: written when the run finishes.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.json")
    }
    /// `model/`: the best model.
    pub fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    /// `plots/`.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }
    /// `report.md`.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.md")
    }
    /// `checkpoint/`: what `--resume` continues from.
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint")
    }

    /// Takes the folder's lock ([`files::lock_dir`]); [`Error::Busy`] while another process
    /// holds it. The folder must exist.
    pub fn lock(&self) -> Result<files::DirLock> {
        files::lock_dir(&self.root, None)
    }

    /// Whether the folder holds a finished run.
    pub fn is_finished(&self) -> bool {
        self.metrics().exists()
    }

    /// Refuses symlinked entries (and a `root` that is not a folder).
    pub fn refuse_links(&self) -> Result<()> {
        if fs::symlink_metadata(&self.root).is_ok_and(|m| !m.is_dir()) && !self.root.is_dir() {
            return Err(Error::Config(format!(
                "{} exists and is not a folder",
                self.root.display()
            )));
        }
        for e in ENTRIES {
            files::refuse_symlink(&self.root.join(e))?;
        }
        if let Ok(plots) = fs::read_dir(self.plots()) {
            for p in plots.flatten() {
                files::refuse_symlink(&p.path())?;
            }
        }
        Ok(())
    }

    /// Removes leftovers of an interrupted run in the folder and in `plots/` (see
    /// [`files::sweep`]).
    pub fn sweep(&self) -> Result<Vec<String>> {
        let mut notes = files::sweep(&self.root)?;
        notes.extend(files::sweep(&self.plots())?);
        Ok(notes)
    }

    /// Checks before a fresh start in this folder and sweeps it; returns notes for the log.
    ///
    /// Refused: a finished run, a run with another configuration (the message names the
    /// differing keys) and an interrupted run that `--resume` would continue (unless
    /// `overwrite`, for all three); symlinked entries. With `overwrite`
    /// the previous run's entries are removed.
    pub fn prepare_fresh(&self, cfg: &TrainConfig, overwrite: bool) -> Result<Vec<String>> {
        self.refuse_links()?;
        if !self.root.exists() {
            return Ok(vec![]);
        }
        if overwrite {
            for e in ENTRIES {
                let p = self.root.join(e);
                if p.is_dir() {
                    fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
                } else if p.exists() {
                    fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
            return self.sweep();
        }
        if self.is_finished() {
            return Err(Error::Finished { path: self.root.clone() });
        }
        if self.config().exists() {
            let stored = TrainConfig::from_toml_file(&self.config())?;
            let keys = differing_keys(&stored, cfg);
            if !keys.is_empty() {
                return Err(Error::OtherConfig { path: self.root.clone(), keys });
            }
        }
        let notes = self.sweep()?;
        if self.checkpoint().join("trainer.json").exists() {
            return Err(Error::Unfinished { path: self.root.clone() });
        }
        Ok(notes)
    }

    /// Checks before `--resume` and sweeps (recovering a checkpoint left as
    /// `.checkpoint.old`); returns notes for the log. Refused: no checkpoint, a finished run,
    /// a checkpoint made with a configuration other than `cfg` (the message names the keys),
    /// symlinked entries.
    pub fn prepare_resume(&self, cfg: &TrainConfig) -> Result<Vec<String>> {
        self.refuse_links()?;
        let notes = self.sweep()?;
        if self.is_finished() {
            return Err(Error::Resume {
                path: self.root.clone(),
                reason: "the run already finished (metrics.json)".into(),
            });
        }
        let ck = self.checkpoint();
        if !ck.join("trainer.json").exists() {
            return Err(Error::Resume {
                path: self.root.clone(),
                reason: format!(
                    "no checkpoint: {} is missing (and there was no .checkpoint.old to recover)",
                    ck.join("trainer.json").display()
                ),
            });
        }
        let snapshot = ck.join("config.toml");
        let stored = if snapshot.exists() { snapshot } else { self.config() };
        let stored = TrainConfig::from_toml_file(&stored)?;
        let keys = differing_keys(&stored, cfg);
        if !keys.is_empty() {
            return Err(Error::OtherConfig { path: self.root.clone(), keys });
        }
        Ok(notes)
    }
}

/// The configuration as flat `key = value` pairs (dotted keys), without the settings that do
/// not change a run's results: the folder (`out`, `name`), `optim.threads` and `optim.device`;
/// `optim.layer_decay = 1` and `optim.ensemble = 1` (options newer than some runs) are left
/// out too.
pub fn fingerprint(cfg: &TrainConfig) -> BTreeMap<String, String> {
    fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let mut c = cfg.clone();
    c.out = None;
    c.name = None;
    c.optim.threads = 0;
    c.optim.device = crate::config::DeviceSpec::Cpu;
    let value = toml::Value::try_from(&c).expect("the configuration serialises");
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out);
    out.remove("optim.threads");
    out.remove("optim.device");
    // Options added later, at their neutral value, leave the fingerprint (and the hash of
    // older runs' checkpoints) as it was.
    for (key, neutral) in [("optim.layer_decay", "1.0"), ("optim.ensemble", "1")] {
        if out.get(key).is_some_and(|v| v == neutral) {
            out.remove(key);
        }
    }
    // With [[tasks]], the task tables say what `task.strata`, `task.classes` and
    // `task.imbalance` say otherwise; those keys only hold the defaults of the build that
    // wrote the file (the default of `task.strata` changed from das to none).
    if !cfg.tasks.is_empty() {
        for key in ["task.strata", "task.classes", "task.imbalance"] {
            out.remove(key);
        }
    }
    out
}

/// A hash of [`fingerprint`] (FNV-1a, 64 bits, hex): stored in the checkpoint.
pub fn config_hash(cfg: &TrainConfig) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in fingerprint(cfg) {
        for b in k.bytes().chain([b'=']).chain(v.bytes()).chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The keys whose values differ between `a` and `b` (see [`fingerprint`]).
pub fn differing_keys(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    let mut keys: Vec<String> = fa
        .iter()
        .filter(|(k, v)| fb.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(fb.keys().filter(|k| !fa.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Peak resident memory of this process in MiB (VmHWM), where /proc is available.
pub fn peak_rss_mib() -> Option<f64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_keys_name_the_changes_and_ignore_threads_and_folder() {
        let a = TrainConfig::default();
        let mut b = a.clone();
        b.optim.threads = 3;
        b.out = Some("elsewhere".into());
        assert!(differing_keys(&a, &b).is_empty());
        assert_eq!(config_hash(&a), config_hash(&b));
        b.optim.lr = 1e-3;
        b.model.max_len = 64;
        assert_eq!(differing_keys(&a, &b), ["model.max_len", "optim.lr"]);
        assert_ne!(config_hash(&a), config_hash(&b));
    }

    #[test]
    fn new_options_at_their_neutral_value_keep_old_fingerprints() {
        // A config.toml written before `layer_decay`, `ensemble` and `split_seed` existed.
        let mut old = TrainConfig::default().to_toml();
        for key in ["layer_decay", "ensemble"] {
            let line = old.lines().find(|l| l.starts_with(key)).unwrap().to_owned();
            old = old.replace(&format!("{line}\n"), "");
        }
        assert!(!old.contains("layer_decay") && !old.contains("split_seed"), "{old}");
        let old: TrainConfig = toml::from_str(&old).unwrap();
        assert_eq!(old.optim.layer_decay, 1.0);
        assert_eq!(old.optim.ensemble, 1);
        let keys = fingerprint(&old);
        assert!(keys.keys().all(|k| !k.contains("layer_decay") && !k.contains("ensemble")));
        assert_eq!(config_hash(&old), config_hash(&TrainConfig::default()));
        let mut llrd = old.clone();
        llrd.optim.layer_decay = 0.9;
        assert_eq!(differing_keys(&old, &llrd), ["optim.layer_decay"]);
    }

    #[test]
    fn declared_tasks_leave_the_superseded_task_keys_out() {
        let mut c = TrainConfig::default();
        c.data.train = vec!["a.jsonl".into()];
        let declared = c.with_further_tasks(vec![]).unwrap();
        let mut written_by_an_older_build = declared.clone();
        written_by_an_older_build.task.strata = crate::config::Strata::Das;
        assert!(differing_keys(&declared, &written_by_an_older_build).is_empty());
        // Without declarations they count.
        let mut das = c.clone();
        das.task.strata = crate::config::Strata::Das;
        assert_eq!(differing_keys(&c, &das), ["task.strata"]);
    }
}
