//! The library's error type.
//!
//! Display texts never repeat their `#[source]`: print the chain (`{:#}` with anyhow, or
//! [`Error::chain`]) to see the causes.

use std::path::PathBuf;

/// Everything the trainer, evaluation and prediction can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or validating data failed.
    #[error(transparent)]
    Data(#[from] fintune_data::Error),
    /// Stratification failed.
    #[error("stratification")]
    Das(#[from] fintune_das::Error),
    /// A task-weighting method failed.
    #[error("task weighting")]
    Dwa(#[from] fintune_dwa::Error),
    /// Loading, running or saving the model failed.
    #[error(transparent)]
    Model(#[from] fintune_model::Error),
    /// A libtorch operation failed.
    #[error("torch")]
    Torch(#[from] tch::TchError),
    /// A collective of data-parallel training failed (a rank left, a timeout, a mismatch).
    #[error("data-parallel training")]
    Dist(#[from] fintune_dist::Error),
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A CSV file (`history.csv`) is malformed or could not be written.
    #[error("{path}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: csv::Error,
    },
    /// A TOML configuration file is malformed.
    #[error("{path}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::de::Error,
    },
    /// An output batch could not be built.
    #[error("building an output batch")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Two methods of results files cannot be paired (`fintune pair`).
    #[error("cannot pair: {0}")]
    Pair(String),
    /// A loss became NaN or infinite; training stopped.
    #[error("non-finite loss at epoch {epoch}, step {step} (regression {loss_reg}, classification {loss_cls:?}); {kept}")]
    NonFinite {
        /// 1-based epoch.
        epoch: usize,
        /// Global step.
        step: u64,
        /// The regression loss.
        loss_reg: f64,
        /// The classification loss (multi-task runs).
        loss_cls: Option<f64>,
        /// What was kept (the last checkpoint).
        kept: String,
    },
    /// The model produced a NaN or infinite prediction (broken weights).
    #[error("the model predicted a non-finite {what} ({value}) for example `{id}`: its weights are broken (NaN or infinite)")]
    NonFinitePrediction {
        /// `score` or `class probability`.
        what: &'static str,
        /// The value.
        value: f32,
        /// The example's id.
        id: String,
    },
    /// A run folder cannot be resumed.
    #[error("cannot resume {path}: {reason}")]
    Resume {
        /// The run folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A run folder holds a run made with another configuration.
    #[error("{path} holds a run made with another configuration (differing: {}); use another folder, or --overwrite to replace it", keys.join(", "))]
    OtherConfig {
        /// The run folder.
        path: PathBuf,
        /// The configuration keys that differ.
        keys: Vec<String>,
    },
    /// A run folder holds a finished run.
    #[error("{path} holds a finished run (metrics.json); use another folder, or --overwrite to replace it")]
    Finished {
        /// The run folder.
        path: PathBuf,
    },
    /// A run folder holds an interrupted run (a checkpoint).
    #[error("{path} holds an interrupted run (checkpoint/); continue it with --resume, or use --overwrite to start again")]
    Unfinished {
        /// The run folder.
        path: PathBuf,
    },
    /// Another process holds the lock of a run folder (it is training into it).
    #[error("{path} is in use by another fintune process (it holds the folder's lock); wait for it to finish, or use another folder")]
    Busy {
        /// The run folder.
        path: PathBuf,
    },
    /// An ensemble's manifest names a member model folder that is missing.
    #[error(
        "{manifest} names the member {path}, which holds no saved model (fintune.json is missing)"
    )]
    MissingMember {
        /// The manifest (`ensemble.json`).
        manifest: PathBuf,
        /// The member's model folder.
        path: PathBuf,
    },
    /// `model.init` names a folder that cannot start this run.
    #[error("model.init {dir}: {reason}")]
    Init {
        /// The init folder.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A model that reads targets (`--input text+target`) was given data without them.
    #[error("{file}: no row has a value in column `{column}`, but the model was trained with input text+target (pass the target column with --target-col, or use a model trained with --input text)")]
    MissingTargets {
        /// The input file.
        file: PathBuf,
        /// The target column's name in the input.
        column: String,
    },
    /// An entry of a run folder is a symbolic link.
    #[error("{path} is a symbolic link; fintune does not write through links in a run folder (remove it)")]
    Symlink {
        /// The entry.
        path: PathBuf,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// The message with every cause, `: `-separated (for logs that keep one line per error).
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_does_not_repeat_the_source() {
        let e = Error::io("a/b.json", std::io::Error::other("disk full"));
        assert_eq!(e.to_string(), "a/b.json");
        assert_eq!(e.chain(), "a/b.json: disk full");
    }
}
