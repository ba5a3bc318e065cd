//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while building, loading, running or saving a model.
///
/// Display never repeats the `#[source]`: print the chain (`{err:#}` with anyhow) to see it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: cannot read or write the file")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config.json, fintune.json, an index) is malformed or misses a field.
    #[error("{path}: invalid JSON")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("{path}: {reason}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `model_type` names an architecture this crate does not implement.
    #[error("{path}: unsupported model_type `{model_type}` (supported: {supported})")]
    UnsupportedModel {
        /// The config.json.
        path: PathBuf,
        /// The `model_type` it names.
        model_type: String,
        /// The supported ones.
        supported: &'static str,
    },
    /// A safetensors file is truncated, corrupted or otherwise unreadable.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A safetensors file could not be written.
    #[error("{path}: cannot write the safetensors file")]
    SafetensorsWrite {
        /// The file.
        path: PathBuf,
        /// The safetensors error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// The checkpoint lacks a tensor the model needs.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The checkpoint file (or its index).
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// A checkpoint tensor has the wrong shape.
    #[error("{path}: tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The shape the model needs.
        expected: Vec<i64>,
        /// The shape in the file.
        found: Vec<i64>,
    },
    /// A checkpoint tensor holds NaN or infinite values (a diverged or corrupted model).
    #[error("{path}: tensor `{name}` holds NaN or infinite values: the weights are unusable")]
    NonFinite {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer: {context}")]
    Tokenizer {
        /// What was being done (the file, or the input).
        context: String,
        /// The tokenizers error.
        #[source]
        source: tokenizers::Error,
    },
    /// A GGUF file is malformed or uses something this reader does not support.
    #[error("{path}: GGUF: {reason}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A libtorch operation failed.
    #[error("a libtorch operation failed")]
    Torch(#[from] tch::TchError),
    /// Invalid arguments to a model function.
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Error::Json { path: path.into(), source }
    }
    pub(crate) fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Config { path: path.into(), reason: reason.into() }
    }
    pub(crate) fn tokenizer(context: impl Into<String>, source: tokenizers::Error) -> Self {
        Error::Tokenizer { context: context.into(), source }
    }
}
