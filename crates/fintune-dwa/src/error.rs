//! The crate's error type.

use std::num::ParseFloatError;

/// Every way building, driving or restoring a task-weighting method can fail.
///
/// Messages name the method, the field or observation entry, the offending value and the reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A method name that [`WeightingSpec`](crate::WeightingSpec) does not know.
    #[error(
        "unknown task-weighting method {name:?}; expected one of: dwa, equal, \
         static:<w1>,<w2>,..., uncertainty, gradnorm, dwa-liu, dao, famo, pcgrad, dwa-main"
    )]
    UnknownMethod {
        /// The name as given.
        name: String,
    },

    /// A `static:` weight list that does not parse or holds a non-finite or non-positive weight.
    #[error("bad static weights {spec:?}: {reason}")]
    BadStaticWeights {
        /// The whole spec string as given.
        spec: String,
        /// What is wrong, naming the entry.
        reason: String,
        /// The float parse error, when that was the cause.
        #[source]
        source: Option<ParseFloatError>,
    },

    /// A per-task list whose length differs from the number of tasks.
    #[error("{method}: {what} has {got} entries but there are {expected} tasks")]
    TaskCount {
        /// Method name.
        method: &'static str,
        /// Which list (e.g. `static weights`, `losses`, `dwa.initial_weights`).
        what: &'static str,
        /// The number of tasks the method was built for.
        expected: usize,
        /// The length given.
        got: usize,
    },

    /// A configuration value out of its documented range.
    #[error("{method} config: `{field}` {reason}")]
    InvalidConfig {
        /// Method name.
        method: &'static str,
        /// Field name as written in the config file.
        field: &'static str,
        /// The value and the allowed range.
        reason: String,
    },

    /// A step or epoch observation the method cannot use (missing input, NaN, negative loss, ...).
    #[error("{method}: invalid observation: {reason}")]
    InvalidObservation {
        /// Method name.
        method: &'static str,
        /// Which entry is wrong and why.
        reason: String,
    },

    /// A saved state that does not belong to this method, task count or config, or is malformed.
    #[error("{method}: cannot restore state: {reason}")]
    InvalidState {
        /// Method name.
        method: &'static str,
        /// What did not match.
        reason: String,
        /// The JSON error, when the state did not deserialise.
        #[source]
        source: Option<serde_json::Error>,
    },
}

pub(crate) fn config_err(method: &'static str, field: &'static str, reason: String) -> Error {
    Error::InvalidConfig { method, field, reason }
}

pub(crate) fn obs_err(method: &'static str, reason: String) -> Error {
    Error::InvalidObservation { method, reason }
}
