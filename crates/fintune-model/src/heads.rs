//! Task heads on the pooled representation: the score regressor (the main head) and the class
//! classifier, plus any further named heads ([`ExtraHead`]) of runs with more tasks.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::Tensor;

use crate::{Error, Result};

/// Shape of the heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadsConfig {
    /// Dropout before each head's layers. Default: 0.1.
    pub dropout: f64,
    /// Hidden width of a two-layer MLP regression head (GELU); `None` for a linear head.
    /// Default: `None`.
    pub regression_hidden: Option<i64>,
    /// Bound the score to `[lo, hi]` with a scaled tanh. Default: `Some([-1, 1])`.
    pub bound: Option<[f64; 2]>,
    /// Number of classes of the auxiliary classification head (from DAS); `None` for
    /// single-task regression. Default: `None`.
    pub num_classes: Option<i64>,
    /// Further heads after these two, in order (runs with more than one regression or
    /// classification task; the trainer names them after the task that owns them). The
    /// regression head above stays the main head. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<ExtraHead>,
}

/// A further head: `name` (its variables are `extra.<name>.*`) and its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraHead {
    /// Unique name: ASCII letters, digits, `_` and `-`.
    pub name: String,
    /// Number of classes; `None` for a regression head (one score, as the main head).
    pub classes: Option<i64>,
}

impl Default for HeadsConfig {
    fn default() -> Self {
        HeadsConfig {
            dropout: 0.1,
            regression_hidden: None,
            bound: Some([-1.0, 1.0]),
            num_classes: None,
            extra: vec![],
        }
    }
}

impl HeadsConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Invalid(format!(
                "head dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if let Some(h) = self.regression_hidden {
            if h < 1 {
                return Err(Error::Invalid(format!("regression_hidden must be >= 1, got {h}")));
            }
        }
        if let Some([lo, hi]) = self.bound {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(Error::Invalid(format!(
                    "bound must satisfy lo < hi, got [{lo}, {hi}]"
                )));
            }
        }
        if let Some(k) = self.num_classes {
            if k < 2 {
                return Err(Error::Invalid(format!(
                    "the classification head needs >= 2 classes, got {k}"
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for h in &self.extra {
            let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if h.name.is_empty() || !h.name.chars().all(ok) {
                return Err(Error::Invalid(format!(
                    "head name `{}` must be ASCII letters, digits, `_` or `-`",
                    h.name
                )));
            }
            if !seen.insert(h.name.as_str()) {
                return Err(Error::Invalid(format!("two heads are named `{}`", h.name)));
            }
            if let Some(k) = h.classes {
                if k < 2 {
                    return Err(Error::Invalid(format!(
                        "head `{}` needs >= 2 classes, got {k}",
                        h.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `nn.Linear`'s default initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
fn linear(p: nn::Path<'_>, in_dim: i64, out_dim: i64) -> (Tensor, Tensor) {
    let b = 1.0 / (in_dim as f64).sqrt();
    let w = p.var("weight", &[out_dim, in_dim], Init::Uniform { lo: -b, up: b });
    let bias = p.var("bias", &[out_dim], Init::Uniform { lo: -b, up: b });
    (w, bias)
}

/// dropout -> [linear -> GELU ->] linear -> score, optionally bounded by a scaled tanh.
/// Variables: `regression.dense.*` (MLP only), `regression.out.*`.
#[derive(Debug)]
pub struct RegressionHead {
    dense: Option<(Tensor, Tensor)>,
    out: (Tensor, Tensor),
    dropout: f64,
    bound: Option<[f64; 2]>,
}

impl RegressionHead {
    /// Builds the head for inputs of width `hidden`.
    pub fn new(p: nn::Path<'_>, hidden: i64, cfg: &HeadsConfig) -> Self {
        let dense = cfg.regression_hidden.map(|h| linear(&p / "dense", hidden, h));
        let width = cfg.regression_hidden.unwrap_or(hidden);
        RegressionHead {
            dense,
            out: linear(&p / "out", width, 1),
            dropout: cfg.dropout,
            bound: cfg.bound,
        }
    }

    /// Scores `[B]` from pooled `[B, H]`.
    pub fn forward_t(&self, pooled: &Tensor, train: bool) -> Tensor {
        let mut x = pooled.dropout(self.dropout, train);
        if let Some((w, b)) = &self.dense {
            x = x.linear(w, Some(b)).gelu("none").dropout(self.dropout, train);
        }
        let raw = x.linear(&self.out.0, Some(&self.out.1)).squeeze_dim(-1);
        match self.bound {
            None => raw,
            Some([lo, hi]) => (raw.tanh() + 1.0) * ((hi - lo) / 2.0) + lo,
        }
    }
}

/// dropout -> linear -> class logits. Variables: `classification.out.*`.
#[derive(Debug)]
pub struct ClassificationHead {
    out: (Tensor, Tensor),
    dropout: f64,
}

impl ClassificationHead {
    /// Builds the head for inputs of width `hidden` and `classes` outputs.
    pub fn new(p: nn::Path<'_>, hidden: i64, classes: i64, cfg: &HeadsConfig) -> Self {
        ClassificationHead { out: linear(&p / "out", hidden, classes), dropout: cfg.dropout }
    }

    /// Logits `[B, K]` from pooled `[B, H]`.
    pub fn forward_t(&self, pooled: &Tensor, train: bool) -> Tensor {
        pooled.dropout(self.dropout, train).linear(&self.out.0, Some(&self.out.1))
    }
}

/// A head of either kind.
#[derive(Debug)]
pub enum Head {
    /// One bounded score per example.
    Regression(RegressionHead),
    /// Class logits.
    Classification(ClassificationHead),
}

impl Head {
    /// Builds `spec`'s head under `p`.
    pub fn new(p: nn::Path<'_>, hidden: i64, spec: &ExtraHead, cfg: &HeadsConfig) -> Self {
        match spec.classes {
            None => Head::Regression(RegressionHead::new(p, hidden, cfg)),
            Some(k) => Head::Classification(ClassificationHead::new(p, hidden, k, cfg)),
        }
    }

    /// Scores `[B]` (regression) or logits `[B, K]` (classification) from pooled `[B, H]`.
    pub fn forward_t(&self, pooled: &Tensor, train: bool) -> Tensor {
        match self {
            Head::Regression(h) => h.forward_t(pooled, train),
            Head::Classification(h) => h.forward_t(pooled, train),
        }
    }
}
