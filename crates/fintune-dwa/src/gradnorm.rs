//! GradNorm (Chen et al. 2018).

use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamConfig};
use crate::error::{config_err, Error};
use crate::normalise::scale_clamped;
use crate::observation::StepObservation;
use crate::persist::{self, exact};
use crate::weights::Weights;
use crate::TaskWeighting;

#[cfg(test)]
mod tests;

const NAME: &str = "gradnorm";
/// `gw`: weighted gradient norm `w_i G_i` this step; `r`: relative inverse training rate;
/// `target`: `mean_j(w_j G_j) r_i^alpha`; `grad`: `dL_grad / dw_i`.
const TERMS: &[&str] = &["gw", "r", "target", "grad"];

/// Constants of [`GradNorm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradNormConfig {
    /// Asymmetry `alpha`: strength of the restoring force toward equal training rates
    /// (0 = equal gradient norms). The paper uses 0.12 to 3; 1.5 on NYUv2. Finite, >= 0.
    /// Default 1.5.
    pub alpha: f64,
    /// Adam step size for the weights `w_i` (their own optimiser, separate from the
    /// network's). The paper leaves the optimiser of `w` open; Adam with 0.025 (as in common
    /// re-implementations) makes the step independent of the gradient-norm scale. Finite, > 0.
    /// Default 0.025.
    pub lr: f64,
    /// Adam first-moment decay. In [0, 1). Default 0.9.
    pub adam_beta1: f64,
    /// Adam second-moment decay. In [0, 1). Default 0.999.
    pub adam_beta2: f64,
    /// Adam denominator guard. Finite, > 0. Default 1e-8.
    pub adam_eps: f64,
    /// Floor of every weight, keeping them positive (the paper's `w` are unconstrained; a
    /// negative weight would ascend its task's loss). In (0, 1]. Default 1e-3.
    pub min_weight: f64,
    /// Added to `L_i(t)` and `L_i(0)` in the loss ratio, guarding zero losses. Finite, > 0.
    /// Default 1e-12.
    pub loss_eps: f64,
}

impl Default for GradNormConfig {
    fn default() -> Self {
        GradNormConfig {
            alpha: 1.5,
            lr: 0.025,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            min_weight: 1e-3,
            loss_eps: 1e-12,
        }
    }
}

impl GradNormConfig {
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
struct GradNormState {
    /// Weights for the next step.
    #[serde(with = "exact::vec")]
    weights: Vec<f64>,
    /// `L_i(0)`: the first step's losses.
    #[serde(with = "exact::opt_vec")]
    initial_losses: Option<Vec<f64>>,
    adam: Adam,
}

/// GradNorm (Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient Normalization for
/// Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018).
///
/// Learnable weights `w_i` (start 1). Each step, with `G_i` the norm of the unweighted task
/// gradient at the probe, the weighted norm is `G_i^W = w_i G_i` (analytically, no second
/// backward pass), `Lt_i = L_i(t) / L_i(0)`, `r_i = Lt_i / mean_j Lt_j`, and
///
/// `L_grad = sum_i | w_i G_i - mean_j(w_j G_j) r_i^alpha |`,
///
/// the target `mean(w G) r_i^alpha` held constant as in the paper. Its gradient is
/// `dL_grad/dw_i = sign(w_i G_i - target_i) G_i`. The step uses the current `w(t)`; then
/// `w` takes one Adam step, is floored at `min_weight` and renormalised to sum `T`
/// (proportionally, the floor holding), giving `w(t+1)`. `L_i(0)` is the first step's batch
/// loss. Cost: O(T).
#[derive(Debug, Clone)]
pub struct GradNorm {
    num_tasks: usize,
    config: GradNormConfig,
    state: GradNormState,
}

impl GradNorm {
    /// GradNorm for `num_tasks` tasks (at least 1).
    pub fn new(num_tasks: usize, config: GradNormConfig) -> Result<Self, Error> {
        if num_tasks == 0 {
            return Err(Error::TaskCount { method: NAME, what: "tasks", expected: 1, got: 0 });
        }
        config.adam().validate(NAME)?;
        if !(config.alpha.is_finite() && config.alpha >= 0.0) {
            return Err(config_err(
                NAME,
                "alpha",
                format!("= {} must be finite and >= 0", config.alpha),
            ));
        }
        if !(config.min_weight > 0.0 && config.min_weight <= 1.0) {
            return Err(config_err(
                NAME,
                "min_weight",
                format!("= {} must be in (0, 1]", config.min_weight),
            ));
        }
        if !(config.loss_eps > 0.0 && config.loss_eps.is_finite()) {
            return Err(config_err(
                NAME,
                "loss_eps",
                format!("= {} must be finite and > 0", config.loss_eps),
            ));
        }
        let state = GradNormState {
            weights: vec![1.0; num_tasks],
            initial_losses: None,
            adam: Adam::new(num_tasks),
        };
        Ok(GradNorm { num_tasks, config, state })
    }

    /// The weights the next step will use.
    pub fn current_weights(&self) -> &[f64] {
        &self.state.weights
    }
}

impl TaskWeighting for GradNorm {
    fn name(&self) -> &str {
        NAME
    }

    fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    fn term_names(&self) -> &'static [&'static str] {
        TERMS
    }

    fn needs_grad_norms(&self) -> bool {
        true
    }

    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error> {
        let t = self.num_tasks;
        let tf = t as f64;
        obs.check_losses(NAME, t)?;
        let norms = obs.require_grad_norms(NAME, t)?;
        let c = &self.config;
        let s = &mut self.state;
        let l0 = s.initial_losses.get_or_insert_with(|| obs.losses.to_vec());

        out.reset(t, TERMS);
        out.values.copy_from_slice(&s.weights);
        let mut rows = out.terms.rows();
        let (gw, r, target, grad) = match (rows.next(), rows.next(), rows.next(), rows.next()) {
            (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
            _ => unreachable!("four term rows"),
        };

        let mut mean_ratio = 0.0;
        let mut mean_gw = 0.0;
        for i in 0..t {
            r[i] = (obs.losses[i] + c.loss_eps) / (l0[i] + c.loss_eps);
            mean_ratio += r[i];
            gw[i] = s.weights[i] * norms[i];
            mean_gw += gw[i];
        }
        mean_ratio /= tf;
        mean_gw /= tf;
        for i in 0..t {
            r[i] /= mean_ratio;
            target[i] = mean_gw * r[i].powf(c.alpha);
            let diff = gw[i] - target[i];
            grad[i] = if diff > 0.0 {
                norms[i]
            } else if diff < 0.0 {
                -norms[i]
            } else {
                0.0
            };
        }

        s.adam.step(&c.adam(), &mut s.weights, grad);
        for w in s.weights.iter_mut() {
            *w = w.max(0.0);
        }
        // scale_clamped reads its input before writing; copy to keep the borrow simple.
        let mut raw = [0.0f64; 16];
        if t <= raw.len() {
            raw[..t].copy_from_slice(&s.weights);
            scale_clamped(&raw[..t], tf, c.min_weight, f64::INFINITY, &mut s.weights);
        } else {
            let raw = s.weights.clone();
            scale_clamped(&raw, tf, c.min_weight, f64::INFINITY, &mut s.weights);
        }
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        persist::save(NAME, self.num_tasks, &self.config, &self.state)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        let t = self.num_tasks;
        let s: GradNormState = persist::load(NAME, t, &self.config, state)?;
        let ok = s.weights.len() == t
            && s.weights.iter().all(|w| w.is_finite() && *w > 0.0)
            && s.initial_losses.as_ref().is_none_or(|l| l.len() == t)
            && s.adam.m.len() == t
            && s.adam.v.len() == t;
        if !ok {
            return Err(Error::InvalidState {
                method: NAME,
                reason: format!(
                    "per-task vectors must have {t} entries and the weights be positive"
                ),
                source: None,
            });
        }
        self.state = s;
        Ok(())
    }
}
