//! The crate's single error type.

use std::num::ParseIntError;

/// Everything that can go wrong in `fintune-das`.
///
/// Indices (`index`) are 0-based positions in the slice the caller passed, so a caller that
/// read the scores from a file can map them back to a row.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input slice was empty.
    #[error("no {what} given")]
    Empty {
        /// What was expected (e.g. "scores", "labels").
        what: &'static str,
    },
    /// A score is NaN or infinite.
    #[error("score at index {index} is not finite ({value})")]
    NonFinite {
        /// Position in the input slice.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A score lies outside the domain [-1, 1] (rarity weights only).
    #[error("score at index {index} is {value}, outside the score domain [-1, 1]")]
    OutOfRange {
        /// Position in the input slice.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A configuration value or argument is out of its valid range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name as in the builder / CLI.
        name: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// What the valid range is.
        reason: &'static str,
    },
    /// `classes` could not be parsed from a string.
    #[error("invalid classes {input:?}: expected \"auto\" or an integer >= 2")]
    ParseClasses {
        /// The rejected text.
        input: String,
        /// The integer parse error, when the text looked numeric.
        #[source]
        source: Option<ParseIntError>,
    },
    /// There are fewer distinct scores than requested classes.
    #[error("cannot cut {distinct} distinct score value(s) into {k} classes (need at least {k} distinct values)")]
    TooFewDistinct {
        /// Number of distinct score values.
        distinct: usize,
        /// Requested number of classes.
        k: usize,
    },
    /// No partition into `k` classes satisfies the constraints.
    #[error(
        "no partition of {n} scores ({distinct} distinct values, {candidates} candidate thresholds) \
         into {k} classes satisfies the constraints: every class >= {min_count} samples, \
         inner classes >= {min_width} wide, zero_cut = {zero_cut}"
    )]
    Infeasible {
        /// Requested (or, for auto, smallest tried) number of classes.
        k: usize,
        /// Number of scores.
        n: usize,
        /// Number of distinct score values.
        distinct: usize,
        /// Number of candidate thresholds searched.
        candidates: usize,
        /// Effective minimum class size.
        min_count: usize,
        /// Minimum width of inner classes.
        min_width: f64,
        /// Whether 0 was forced to be a threshold.
        zero_cut: bool,
    },
    /// `zero_cut` was requested but the scores do not have both signs.
    #[error(
        "zero_cut needs scores on both sides of 0 (some < 0 and some >= 0); \
         got {negative} negative and {non_negative} non-negative"
    )]
    ZeroCutImpossible {
        /// Number of scores < 0.
        negative: usize,
        /// Number of scores >= 0.
        non_negative: usize,
    },
    /// User-given thresholds are not finite and strictly increasing.
    #[error("invalid thresholds: {reason}")]
    InvalidThresholds {
        /// What is wrong.
        reason: String,
    },
    /// Two slices that must be parallel have different lengths.
    #[error("{what}: {left} labels but {right} groups")]
    LengthMismatch {
        /// Context.
        what: &'static str,
        /// Length of the labels slice.
        left: usize,
        /// Length of the groups slice.
        right: usize,
    },
    /// Split fractions are not positive or do not sum to 1.
    #[error("invalid split fractions {fractions:?}: {reason}")]
    InvalidFractions {
        /// The rejected fractions.
        fractions: Vec<f64>,
        /// What is wrong.
        reason: &'static str,
    },
    /// A deserialised model (`das.json`) is internally inconsistent.
    #[error("invalid saved {what}: {reason}")]
    InvalidSaved {
        /// "stratification" or "rarity".
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Inputs of a computation that do not fit together (lengths, shapes, unusable rows).
    #[error("invalid {what} input: {reason}")]
    InvalidInput {
        /// The computation (e.g. "fusion", "mix selection", "task sampling").
        what: &'static str,
        /// What is wrong, naming the row or entry.
        reason: String,
    },
}
