//! The dynamic weight adapter (ours).

use serde::{Deserialize, Serialize};

use crate::error::{config_err, obs_err, Error};
use crate::normalise::scale_clamped;
use crate::observation::{StepObservation, TaskKind};
use crate::persist::{self, exact};
use crate::weights::Weights;
use crate::TaskWeighting;

#[cfg(test)]
mod tests;

const NAME: &str = "dwa";
/// `g`: gradient balance; `r`: relative training rate; `c`: batch term; `u`: raw weight
/// `g r^alpha c^beta`; `target`: `u` normalised to `T` and clamped, before smoothing
/// (during warm-up: the initial weights).
const TERMS: &[&str] = &["g", "r", "c", "u", "target"];

/// Constants of the [`Dwa`]; every field has a default (`#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DwaConfig {
    /// Decay of the loss EMA `Lbar_i <- d Lbar_i + (1 - d) L_i` (initialised with the first
    /// loss). In [0, 1). Default 0.9.
    pub loss_ema: f64,
    /// Warm-up steps: the weights stay at `initial_weights`, and `L0_i` is the mean loss over
    /// these steps. At least 1. Default 10.
    pub warmup_steps: u64,
    /// Exponent of the training-rate term `r_i`. Finite, >= 0. Default 1.0.
    pub alpha: f64,
    /// Exponent of the batch term `c_i`; 0 switches the term (and the need for batch
    /// characteristics) off. Finite, >= 0. Default 0.5.
    pub beta: f64,
    /// Lower clamp of each weight. In (0, 1]. Default 0.1.
    pub w_min: f64,
    /// Upper clamp of each weight; `None` means `max(T - w_min, 1)` (1.9 for T = 2).
    /// At least 1. Default `None`.
    pub w_max: Option<f64>,
    /// Smoothing `w_t = m w_{t-1} + (1 - m) target_t`. In [0, 1). Default 0.9.
    pub momentum: f64,
    /// Weights during warm-up and the start of smoothing, normalised to sum `T`; `None` means
    /// all 1. Finite, positive, within the clamps after normalising. Default `None`.
    pub initial_weights: Option<Vec<f64>>,
    /// Gradient norms are floored at `grad_floor * max_j G_j` before inverting, so a zero norm
    /// gives a large but finite `g_i` (a relative floor keeps `g` scale-invariant). In (0, 1).
    /// Default 1e-12.
    pub grad_floor: f64,
    /// Added to `Lbar_i` and `L0_i` in the loss ratio, guarding zero losses. Finite, > 0.
    /// Default 1e-12.
    pub loss_eps: f64,
}

impl Default for DwaConfig {
    fn default() -> Self {
        DwaConfig {
            loss_ema: 0.9,
            warmup_steps: 10,
            alpha: 1.0,
            beta: 0.5,
            w_min: 0.1,
            w_max: None,
            momentum: 0.9,
            initial_weights: None,
            grad_floor: 1e-12,
            loss_eps: 1e-12,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DwaState {
    /// Number of `weights` calls so far.
    steps: u64,
    #[serde(with = "exact::vec")]
    loss_ema: Vec<f64>,
    /// Sum of each task's losses over the warm-up steps seen so far.
    #[serde(with = "exact::vec")]
    warmup_loss_sum: Vec<f64>,
    /// Sum of each task's batch statistic `b_i` over all steps (running mean = sum / steps).
    #[serde(with = "exact::vec")]
    batch_sum: Vec<f64>,
    /// Weights returned by the last step (`w_{t-1}`).
    #[serde(with = "exact::vec")]
    weights: Vec<f64>,
}

/// The dynamic weight adapter (ours; "Dynamic Multi-Task Weight Adaptation for Efficient
/// Sentiment Analysis Fine-Tuning on LLMs", building on the DAO module of Ding et al. 2024,
/// arXiv:2408.11856, see [`Dao`](crate::Dao)).
///
/// Each step, for task `i` of `T`:
/// - gradient balance `g_i = mean_j(G_j) / G_i`: equalises the tasks' weighted gradient norms;
/// - training rate `r_i = (Lbar_i / L0_i) / mean_j(Lbar_j / L0_j)`, `Lbar` an EMA of the batch
///   loss and `L0` the mean loss over the warm-up: a lagging task gets more weight (GradNorm's
///   relative inverse training rate);
/// - batch term `c_i = b_i / running_mean(b_i)`, where `b_i` is the batch's mean rarity of the
///   labels task `i` sees: the mean score rarity for a regression task
///   ([`BatchCharacteristics::score_rarity`](crate::BatchCharacteristics::score_rarity)), the
///   mean inverse DAS class frequency for a classification task
///   ([`BatchCharacteristics::class_rarity`](crate::BatchCharacteristics::class_rarity));
///   the running mean is over all steps so far, this one included;
/// - raw weight `u_i = g_i r_i^alpha c_i^beta`, normalised to sum `T` and clamped to
///   `[w_min, w_max]` (the normalise-clamp-renormalise fixed point, so the clamps hold
///   exactly), then smoothed: `w_t = m w_{t-1} + (1 - m) target_t`.
///
/// During the first `warmup_steps` steps the weights are `initial_weights` (the EMA, `L0` and
/// the batch running mean are being gathered). Cost: O(T + batch size) per step, no allocation
/// with [`TaskWeighting::weights_into`]. Invariant to scaling all gradient norms by a constant.
#[derive(Debug, Clone)]
pub struct Dwa {
    config: DwaConfig,
    kinds: Vec<TaskKind>,
    w_min: f64,
    w_max: f64,
    init: Vec<f64>,
    state: DwaState,
}

impl Dwa {
    /// A DWA for tasks of the given kinds (`T = kinds.len()`, at least 1).
    pub fn new(kinds: &[TaskKind], config: DwaConfig) -> Result<Self, Error> {
        let t = kinds.len();
        if t == 0 {
            return Err(config_err(NAME, "task_kinds", "is empty: need at least one task".into()));
        }
        let c = &config;
        let unit = |field: &'static str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(config_err(NAME, field, format!("= {v} must be in [0, 1)")))
            }
        };
        unit("loss_ema", c.loss_ema)?;
        unit("momentum", c.momentum)?;
        if c.warmup_steps == 0 {
            return Err(config_err(
                NAME,
                "warmup_steps",
                "= 0 must be at least 1 (L0 is the warm-up mean)".into(),
            ));
        }
        for (field, v) in [("alpha", c.alpha), ("beta", c.beta)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(config_err(NAME, field, format!("= {v} must be finite and >= 0")));
            }
        }
        if !(c.w_min > 0.0 && c.w_min <= 1.0) {
            return Err(config_err(NAME, "w_min", format!("= {} must be in (0, 1]", c.w_min)));
        }
        let w_max = c.w_max.unwrap_or((t as f64 - c.w_min).max(1.0));
        if !(w_max >= 1.0 && w_max.is_finite()) {
            return Err(config_err(NAME, "w_max", format!("= {w_max} must be finite and >= 1")));
        }
        if !(c.grad_floor > 0.0 && c.grad_floor < 1.0) {
            return Err(config_err(
                NAME,
                "grad_floor",
                format!("= {} must be in (0, 1)", c.grad_floor),
            ));
        }
        if !(c.loss_eps > 0.0 && c.loss_eps.is_finite()) {
            return Err(config_err(
                NAME,
                "loss_eps",
                format!("= {} must be finite and > 0", c.loss_eps),
            ));
        }
        let init = match &c.initial_weights {
            None => vec![1.0; t],
            Some(w) => {
                if w.len() != t {
                    return Err(Error::TaskCount {
                        method: NAME,
                        what: "initial_weights",
                        expected: t,
                        got: w.len(),
                    });
                }
                if let Some(x) = w.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                    return Err(config_err(
                        NAME,
                        "initial_weights",
                        format!("holds {x}: weights must be finite and > 0"),
                    ));
                }
                let s: f64 = w.iter().sum();
                let w: Vec<f64> = w.iter().map(|x| x * t as f64 / s).collect();
                if let Some(x) = w.iter().find(|x| **x < c.w_min || **x > w_max) {
                    return Err(config_err(
                        NAME,
                        "initial_weights",
                        format!("normalised to sum {t} holds {x}, outside [w_min, w_max] = [{}, {w_max}]", c.w_min),
                    ));
                }
                w
            }
        };
        let state = DwaState {
            steps: 0,
            loss_ema: vec![0.0; t],
            warmup_loss_sum: vec![0.0; t],
            batch_sum: vec![0.0; t],
            weights: init.clone(),
        };
        Ok(Dwa { w_min: c.w_min, w_max, init, kinds: kinds.to_vec(), config, state })
    }

    /// The configuration in use.
    pub fn config(&self) -> &DwaConfig {
        &self.config
    }

    /// The resolved clamps `[w_min, w_max]`.
    pub fn clamps(&self) -> (f64, f64) {
        (self.w_min, self.w_max)
    }

    /// Batch statistics `(b_regression, b_classification)`, validated before any state changes.
    fn batch_stats(&self, obs: &StepObservation<'_>) -> Result<(f64, f64), Error> {
        let Some(batch) = obs.batch else {
            if self.config.beta != 0.0 {
                return Err(obs_err(
                    NAME,
                    "batch characteristics are required (or set dwa.beta = 0 to drop the batch term)".into(),
                ));
            }
            return Ok((1.0, 1.0));
        };
        batch.check_consistent().map_err(|r| obs_err(NAME, r))?;
        let has = |k| self.kinds.contains(&k);
        let reg = if has(TaskKind::Regression) {
            batch.score_rarity().map_err(|r| obs_err(NAME, r))?
        } else {
            1.0
        };
        let cls = if has(TaskKind::Classification) {
            batch.class_rarity().map_err(|r| obs_err(NAME, r))?
        } else {
            1.0
        };
        Ok((reg, cls))
    }
}

impl TaskWeighting for Dwa {
    fn name(&self) -> &str {
        NAME
    }

    fn num_tasks(&self) -> usize {
        self.kinds.len()
    }

    fn term_names(&self) -> &'static [&'static str] {
        TERMS
    }

    fn needs_grad_norms(&self) -> bool {
        true
    }

    fn needs_batch(&self) -> bool {
        self.config.beta != 0.0
    }

    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error> {
        let t = self.kinds.len();
        let tf = t as f64;
        obs.check_losses(NAME, t)?;
        let norms = obs.require_grad_norms(NAME, t)?;
        let (b_reg, b_cls) = self.batch_stats(obs)?;

        let c = &self.config;
        let s = &mut self.state;
        let n = s.steps;
        s.steps += 1;
        let warming = n < c.warmup_steps;

        out.reset(t, TERMS);
        let mut rows = out.terms.rows();
        let (g, r, cb, u, target) =
            match (rows.next(), rows.next(), rows.next(), rows.next(), rows.next()) {
                (Some(g), Some(r), Some(cb), Some(u), Some(target)) => (g, r, cb, u, target),
                _ => unreachable!("five term rows"),
            };

        // Loss EMA and warm-up sums.
        for i in 0..t {
            let l = obs.losses[i];
            s.loss_ema[i] =
                if n == 0 { l } else { c.loss_ema * s.loss_ema[i] + (1.0 - c.loss_ema) * l };
            if warming {
                s.warmup_loss_sum[i] += l;
            }
        }

        // Batch term: this batch's statistic over its running mean (this batch included).
        let count = (n + 1) as f64;
        for i in 0..t {
            let b = match self.kinds[i] {
                TaskKind::Regression => b_reg,
                TaskKind::Classification => b_cls,
            };
            s.batch_sum[i] += b;
            let mean = s.batch_sum[i] / count;
            cb[i] = if mean > 0.0 { b / mean } else { 1.0 };
        }

        // Gradient balance.
        let gmax = norms.iter().copied().fold(0.0, f64::max);
        if gmax > 0.0 {
            let floor = c.grad_floor * gmax;
            let mean = norms.iter().sum::<f64>() / tf;
            for i in 0..t {
                g[i] = mean / norms[i].max(floor);
            }
        } else {
            g.fill(1.0);
        }

        // Relative training rate (defined once L0 is known).
        if warming {
            r.fill(1.0);
        } else {
            let w = c.warmup_steps as f64;
            let mut mean = 0.0;
            for i in 0..t {
                r[i] = (s.loss_ema[i] + c.loss_eps) / (s.warmup_loss_sum[i] / w + c.loss_eps);
                mean += r[i];
            }
            mean /= tf;
            for ri in r.iter_mut() {
                *ri /= mean;
            }
        }

        // Raw weights u_i = g_i r_i^alpha c_i^beta. Directly when that is safe (the usual
        // case, with the default exponents no transcendental call); in log space, shifted by
        // the maximum, when a product overflows or all underflow. `target` receives u (or
        // u / max u), which the normalisation below rescales anyway.
        let mut sum = 0.0;
        for i in 0..t {
            u[i] = g[i] * pow(r[i], c.alpha) * pow(cb[i], c.beta);
            target[i] = u[i];
            sum += u[i];
        }
        if !(sum.is_finite() && sum > 0.0) {
            let mut lmax = f64::NEG_INFINITY;
            for i in 0..t {
                let mut lu = g[i].ln() + c.alpha * r[i].ln();
                if c.beta != 0.0 {
                    lu += c.beta * cb[i].ln();
                }
                target[i] = lu;
                lmax = lmax.max(lu);
            }
            for x in target.iter_mut() {
                *x = if lmax == f64::NEG_INFINITY { 1.0 } else { (*x - lmax).exp() };
            }
        }

        let values = &mut out.values;
        if warming {
            values.copy_from_slice(&self.init);
            target.copy_from_slice(&self.init);
        } else {
            scale_clamped(target, tf, self.w_min, self.w_max, values);
            target.copy_from_slice(values);
            let m = c.momentum;
            for i in 0..t {
                values[i] = m * s.weights[i] + (1.0 - m) * target[i];
            }
        }
        s.weights.copy_from_slice(values);
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        persist::save(NAME, self.kinds.len(), &(&self.config, &self.kinds), &self.state)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        let t = self.kinds.len();
        let s: DwaState = persist::load(NAME, t, &(&self.config, &self.kinds), state)?;
        for (what, v) in [
            ("loss_ema", &s.loss_ema),
            ("warmup_loss_sum", &s.warmup_loss_sum),
            ("batch_sum", &s.batch_sum),
            ("weights", &s.weights),
        ] {
            if v.len() != t || v.iter().any(|x| !x.is_finite()) {
                return Err(Error::InvalidState {
                    method: NAME,
                    reason: format!("`{what}` must hold {t} finite values, got {v:?}"),
                    source: None,
                });
            }
        }
        self.state = s;
        Ok(())
    }
}

/// `x^a` with the common exponents (0, 1/2, 1) special-cased; `x^0 = 1` even for `x = 0`.
#[inline]
fn pow(x: f64, a: f64) -> f64 {
    if a == 1.0 {
        x
    } else if a == 0.5 {
        x.sqrt()
    } else if a == 0.0 {
        1.0
    } else {
        x.powf(a)
    }
}
