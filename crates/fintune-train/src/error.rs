//! The library's error type.

use std::path::PathBuf;

/// Everything the trainer, evaluation and prediction can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or validating data failed.
    #[error(transparent)]
    Data(#[from] fintune_data::Error),
    /// Stratification failed.
    #[error("stratification: {0}")]
    Das(#[from] fintune_das::Error),
    /// A task-weighting method failed.
    #[error("task weighting: {0}")]
    Dwa(#[from] fintune_dwa::Error),
    /// Loading, running or saving the model failed.
    #[error(transparent)]
    Model(#[from] fintune_model::Error),
    /// A libtorch operation failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A loss became NaN or infinite; training stopped.
    #[error("non-finite loss at epoch {epoch}, step {step} (regression {loss_reg}, classification {loss_cls:?}); {kept}")]
    NonFinite { epoch: usize, step: u64, loss_reg: f64, loss_cls: Option<f64>, kept: String },
    /// A run folder cannot be resumed.
    #[error("cannot resume {path}: {reason}")]
    Resume { path: PathBuf, reason: String },
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
