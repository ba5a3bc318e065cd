//! Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla 2018).

use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamConfig};
use crate::error::{config_err, Error};
use crate::observation::{StepObservation, TaskKind};
use crate::persist::{self, exact};
use crate::weights::Weights;
use crate::TaskWeighting;

#[cfg(test)]
mod tests;

const NAME: &str = "uncertainty";
/// `s`: log variance `log sigma_i^2` used this step; `precision`: `c_i exp(-s_i)`, the weight
/// before any normalisation; `grad`: `d/ds_i` of the task's objective, fed to Adam.
const TERMS: &[&str] = &["s", "precision", "grad"];

/// Constants of [`Uncertainty`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UncertaintyConfig {
    /// Adam step size for the log variances. The paper trains them with the network's
    /// optimiser and gives no separate value; 1e-2 lets `s` travel the ~2 units between
    /// `s = 0` and the optimum `s* = log(2 c L)` for fine-tuning losses within a few hundred
    /// steps. Finite, > 0. Default 1e-2.
    pub lr: f64,
    /// Adam first-moment decay. In [0, 1). Default 0.9.
    pub adam_beta1: f64,
    /// Adam second-moment decay. In [0, 1). Default 0.999.
    pub adam_beta2: f64,
    /// Adam denominator guard. Finite, > 0. Default 1e-8.
    pub adam_eps: f64,
    /// Starting log variance of every task (`sigma^2 = 1`). Finite. Default 0.
    pub initial_log_variance: f64,
    /// Rescale the weights to sum `T` (keeps their ratio, drops the paper's overall scale).
    /// Default `false`: the paper's weights as they are.
    pub normalise: bool,
}

impl Default for UncertaintyConfig {
    fn default() -> Self {
        UncertaintyConfig {
            lr: 1e-2,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            initial_log_variance: 0.0,
            normalise: false,
        }
    }
}

impl UncertaintyConfig {
    fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_eps,
            weight_decay: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UncertaintyState {
    #[serde(with = "exact::vec")]
    log_variances: Vec<f64>,
    adam: Adam,
}

/// Uncertainty weighting (Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to
/// Weigh Losses for Scene Geometry and Semantics", CVPR 2018).
///
/// Each task has a learnable log variance `s_i = log sigma_i^2`. The paper's joint objective
/// (eqs. 7 and 10) is `sum_i c_i exp(-s_i) L_i + log sigma_i` with `log sigma_i = s_i / 2`:
/// - regression (Gaussian likelihood): `c = 1/2`, the term `1 / (2 sigma^2) L`;
/// - classification (scaled softmax, eq. 10's approximation): `c = 1`, the term
///   `1 / sigma^2 L`.
///
/// The weight handed to the trainer is `w_i = c_i exp(-s_i)`. After each step `s_i` takes one
/// Adam step along the analytic gradient `d/ds_i = 1/2 - c_i exp(-s_i) L_i` (the network's
/// gradient of `w_i L_i` is the trainer's). At the optimum `exp(-s_i) = 1 / (2 c_i L_i)`, i.e.
/// `w_i = 1 / (2 L_i)` for both kinds. The widely used simplification `exp(-s) L + s` is twice
/// the regression objective (identical under Adam, which is invariant to gradient scale) and
/// differs for classification by the 1/2 on the regulariser; this implementation follows the
/// paper.
///
/// The weights do **not** sum to `T` (they follow the uncertainties), unless
/// [`UncertaintyConfig::normalise`] is set. Cost: O(T).
#[derive(Debug, Clone)]
pub struct Uncertainty {
    config: UncertaintyConfig,
    kinds: Vec<TaskKind>,
    state: UncertaintyState,
}

impl Uncertainty {
    /// Uncertainty weighting for tasks of the given kinds (`T = kinds.len()`, at least 1).
    pub fn new(kinds: &[TaskKind], config: UncertaintyConfig) -> Result<Self, Error> {
        if kinds.is_empty() {
            return Err(config_err(NAME, "task_kinds", "is empty: need at least one task".into()));
        }
        config.adam().validate(NAME)?;
        if !config.initial_log_variance.is_finite() {
            return Err(config_err(
                NAME,
                "initial_log_variance",
                format!("= {} must be finite", config.initial_log_variance),
            ));
        }
        let t = kinds.len();
        let state = UncertaintyState {
            log_variances: vec![config.initial_log_variance; t],
            adam: Adam::new(t),
        };
        Ok(Uncertainty { config, kinds: kinds.to_vec(), state })
    }

    /// Current log variances `s_i` (used by the next step).
    pub fn log_variances(&self) -> &[f64] {
        &self.state.log_variances
    }
}

fn coefficient(kind: TaskKind) -> f64 {
    match kind {
        TaskKind::Regression => 0.5,
        TaskKind::Classification => 1.0,
    }
}

impl TaskWeighting for Uncertainty {
    fn name(&self) -> &str {
        NAME
    }

    fn num_tasks(&self) -> usize {
        self.kinds.len()
    }

    fn term_names(&self) -> &'static [&'static str] {
        TERMS
    }

    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error> {
        let t = self.kinds.len();
        obs.check_losses(NAME, t)?;
        out.reset(t, TERMS);
        let mut rows = out.terms.rows();
        let (s_row, precision, grad) = match (rows.next(), rows.next(), rows.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => unreachable!("three term rows"),
        };
        let s = &mut self.state.log_variances;
        for i in 0..t {
            let w = coefficient(self.kinds[i]) * (-s[i]).exp();
            s_row[i] = s[i];
            precision[i] = w;
            grad[i] = 0.5 - w * obs.losses[i];
            out.values[i] = w;
        }
        if self.config.normalise {
            let total: f64 = out.values.iter().sum();
            for w in out.values.iter_mut() {
                *w *= t as f64 / total;
            }
        }
        self.state.adam.step(&self.config.adam(), s, grad);
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        persist::save(NAME, self.kinds.len(), &(&self.config, &self.kinds), &self.state)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        let t = self.kinds.len();
        let s: UncertaintyState = persist::load(NAME, t, &(&self.config, &self.kinds), state)?;
        if s.log_variances.len() != t || s.adam.m.len() != t || s.adam.v.len() != t {
            return Err(Error::InvalidState {
                method: NAME,
                reason: format!("per-task vectors must have {t} entries"),
                source: None,
            });
        }
        self.state = s;
        Ok(())
    }
}
