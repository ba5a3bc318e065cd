//! Configuration of the DAS threshold optimisation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// How many classes to cut.
///
/// Parses from `"auto"` (any case) or an integer `>= 2`; displays the same way, so it round-trips
/// through a CLI flag (`--classes auto`, `--classes 5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Classes {
    /// The smallest K in `3..=max_classes` whose optimal partition explains at least
    /// `explained_variance` of the total sum of squares, else the largest feasible K
    /// (`max_classes` unless the constraints forbid it). See [`crate::Stratification::fit`].
    #[default]
    Auto,
    /// Exactly this many classes (`>= 2`).
    Fixed(usize),
}

impl FromStr for Classes {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Classes::Auto);
        }
        match t.parse::<usize>() {
            Ok(k) if k >= 2 => Ok(Classes::Fixed(k)),
            Ok(_) => Err(Error::ParseClasses { input: s.to_owned(), source: None }),
            Err(e) => Err(Error::ParseClasses { input: s.to_owned(), source: Some(e) }),
        }
    }
}

impl fmt::Display for Classes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Classes::Auto => f.write_str("auto"),
            Classes::Fixed(k) => write!(f, "{k}"),
        }
    }
}

/// Configuration for [`crate::Stratification::fit`].
///
/// Build it from [`DasConfig::default`] with the setters; each setter documents its default.
/// Values are validated by `fit`, which returns [`Error::InvalidParameter`] for out-of-range
/// ones. Serde-(de)serialisable; missing fields take their defaults.
///
/// ```
/// use fintune_das::{Classes, DasConfig};
/// let cfg = DasConfig::default().classes(Classes::Fixed(5)).balance_weight(0.5).zero_cut(true);
/// assert_eq!(cfg.get_classes(), Classes::Fixed(5));
/// assert_eq!(cfg.effective_min_count(1000), 20);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DasConfig {
    classes: Classes,
    balance_weight: f64,
    min_count: Option<usize>,
    min_width: f64,
    zero_cut: bool,
    max_classes: usize,
    explained_variance: f64,
    max_candidates: usize,
}

impl Default for DasConfig {
    fn default() -> Self {
        DasConfig {
            classes: Classes::Auto,
            balance_weight: Self::DEFAULT_BALANCE_WEIGHT,
            min_count: None,
            min_width: 0.05,
            zero_cut: false,
            max_classes: 7,
            explained_variance: 0.9,
            max_candidates: 2048,
        }
    }
}

impl DasConfig {
    /// Default weight `a` of the balance term in the objective.
    pub const DEFAULT_BALANCE_WEIGHT: f64 = 0.7;

    /// Number of classes. Default [`Classes::Auto`].
    #[must_use]
    pub fn classes(mut self, classes: Classes) -> Self {
        self.classes = classes;
        self
    }

    /// Weight `a` in `[0, 1]` of the balance term `KL(p || uniform)`; `1 - a` weighs the
    /// unexplained-variance share. Default 0.7.
    #[must_use]
    pub fn balance_weight(mut self, a: f64) -> Self {
        self.balance_weight = a;
        self
    }

    /// Minimum number of samples per class (`>= 1`). Default `None`, meaning
    /// `max(8, ceil(0.02 n))` for `n` scores (see [`DasConfig::effective_min_count`]).
    #[must_use]
    pub fn min_count(mut self, min_count: Option<usize>) -> Self {
        self.min_count = min_count;
        self
    }

    /// Minimum width, in score units, of every inner class (distance between its two
    /// thresholds; the first and last class are exempt). Default 0.05.
    #[must_use]
    pub fn min_width(mut self, min_width: f64) -> Self {
        self.min_width = min_width;
        self
    }

    /// Force 0 to be a threshold, so no class mixes negative and non-negative scores (0 itself
    /// goes to the class above). Default false.
    #[must_use]
    pub fn zero_cut(mut self, zero_cut: bool) -> Self {
        self.zero_cut = zero_cut;
        self
    }

    /// Largest K tried by [`Classes::Auto`] (`>= 2`). Default 7.
    #[must_use]
    pub fn max_classes(mut self, max_classes: usize) -> Self {
        self.max_classes = max_classes;
        self
    }

    /// Share of the total sum of squares, in `[0, 1]`, that [`Classes::Auto`] requires the
    /// optimal partition to explain. Default 0.9.
    #[must_use]
    pub fn explained_variance(mut self, share: f64) -> Self {
        self.explained_variance = share;
        self
    }

    /// Largest number of candidate thresholds searched exactly (`>= 1`). With more distinct
    /// values than this plus one, quantile-spaced candidates are used and the result says
    /// `candidates_exact: false`. Default 2048.
    #[must_use]
    pub fn max_candidates(mut self, max_candidates: usize) -> Self {
        self.max_candidates = max_candidates;
        self
    }

    /// The configured number of classes.
    pub fn get_classes(&self) -> Classes {
        self.classes
    }
    /// The configured balance weight `a`.
    pub fn get_balance_weight(&self) -> f64 {
        self.balance_weight
    }
    /// The configured minimum class size (`None` = data-dependent default).
    pub fn get_min_count(&self) -> Option<usize> {
        self.min_count
    }
    /// The configured minimum inner-class width.
    pub fn get_min_width(&self) -> f64 {
        self.min_width
    }
    /// Whether 0 is forced to be a threshold.
    pub fn get_zero_cut(&self) -> bool {
        self.zero_cut
    }
    /// The largest K tried by auto.
    pub fn get_max_classes(&self) -> usize {
        self.max_classes
    }
    /// The explained-variance target of auto.
    pub fn get_explained_variance(&self) -> f64 {
        self.explained_variance
    }
    /// The candidate budget.
    pub fn get_max_candidates(&self) -> usize {
        self.max_candidates
    }

    /// The minimum class size used for `n` scores: the configured value, or
    /// `max(8, ceil(0.02 n))`.
    pub fn effective_min_count(&self, n: usize) -> usize {
        self.min_count.unwrap_or_else(|| 8.max(n.div_ceil(50)))
    }

    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), Error> {
        fn bad(name: &'static str, value: impl fmt::Display, reason: &'static str) -> Error {
            Error::InvalidParameter { name, value: value.to_string(), reason }
        }
        if let Classes::Fixed(k) = self.classes {
            if k < 2 {
                return Err(bad("classes", k, "must be >= 2"));
            }
        }
        if !(0.0..=1.0).contains(&self.balance_weight) {
            return Err(bad("balance_weight", self.balance_weight, "must be in [0, 1]"));
        }
        if self.min_count == Some(0) {
            return Err(bad("min_count", 0, "must be >= 1"));
        }
        if !(self.min_width.is_finite() && self.min_width >= 0.0) {
            return Err(bad("min_width", self.min_width, "must be finite and >= 0"));
        }
        if self.max_classes < 2 {
            return Err(bad("max_classes", self.max_classes, "must be >= 2"));
        }
        if !(0.0..=1.0).contains(&self.explained_variance) {
            return Err(bad("explained_variance", self.explained_variance, "must be in [0, 1]"));
        }
        if self.max_candidates == 0 {
            return Err(bad("max_candidates", 0, "must be >= 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
