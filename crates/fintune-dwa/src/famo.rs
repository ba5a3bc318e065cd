//! FAMO: Fast Adaptive Multitask Optimization (Liu et al. 2023).

use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamConfig};
use crate::error::{config_err, obs_err, Error};
use crate::observation::{check_per_task, StepObservation};
use crate::persist::{self, exact};
use crate::weights::Weights;
use crate::TaskWeighting;

#[cfg(test)]
mod tests;

const NAME: &str = "famo";
/// `logit`: task logits `xi_i` used this step; `z`: `softmax(xi)_i`; `delta`: the log-loss
/// decrease `log l_i(before) - log l_i(after)` of the last logit update (0 before the first).
const TERMS: &[&str] = &["logit", "z", "delta"];

/// Which losses measure the improvement that drives FAMO's logit update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FamoUpdate {
    /// The next step's batch losses stand in for the current batch re-evaluated after the
    /// update: no extra forward pass, but the improvement mixes in the batch-to-batch loss
    /// difference (noise that averages out over steps). The default.
    NextBatch,
    /// The paper's rule: the trainer re-evaluates the same batch after the optimiser step and
    /// calls [`TaskWeighting::after_step`] (one extra forward pass per step).
    SameBatch,
}

/// Constants of [`Famo`]; defaults are the official implementation's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FamoConfig {
    /// Adam step size of the task logits (`w_lr`, the paper's `beta`). Finite, > 0.
    /// Default 0.025.
    pub lr: f64,
    /// Regularisation (`gamma`): Adam weight decay on the logits, pulling them toward equal
    /// weights. Finite, >= 0. Default 0.01.
    pub weight_decay: f64,
    /// Adam first-moment decay. In [0, 1). Default 0.9.
    pub adam_beta1: f64,
    /// Adam second-moment decay. In [0, 1). Default 0.999.
    pub adam_beta2: f64,
    /// Adam denominator guard. Finite, > 0. Default 1e-8.
    pub adam_eps: f64,
    /// Lower bounds `l*_i` of the task losses (FAMO works with `l_i - l*_i`); `None` means 0
    /// for every task (MSE and cross-entropy). Default `None`.
    pub min_losses: Option<Vec<f64>>,
    /// Added to `l_i - l*_i` before dividing and taking logs. Finite, > 0. Default 1e-8.
    pub loss_eps: f64,
    /// Which losses drive the logit update. Default `next-batch`.
    pub update: FamoUpdate,
    /// Keep the paper's scale, weights summing to 1. Default `false`: weights scaled by `T`
    /// to sum to `T` like every other method here (a `T`-fold step size relative to the paper,
    /// which matches the equal-weighting baseline's `sum_i L_i`).
    pub sum_to_one: bool,
}

impl Default for FamoConfig {
    fn default() -> Self {
        FamoConfig {
            lr: 0.025,
            weight_decay: 0.01,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            min_losses: None,
            loss_eps: 1e-8,
            update: FamoUpdate::NextBatch,
            sum_to_one: false,
        }
    }
}

impl FamoConfig {
    fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_eps,
            weight_decay: self.weight_decay,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FamoState {
    #[serde(with = "exact::vec")]
    logits: Vec<f64>,
    adam: Adam,
    /// Losses of the last weighted step, awaiting their "after" losses.
    #[serde(with = "exact::opt_vec")]
    pending: Option<Vec<f64>>,
    #[serde(with = "exact::vec")]
    last_delta: Vec<f64>,
}

/// FAMO (Liu, Liu, Jin, Stone and Liu, "FAMO: Fast Adaptive Multitask Optimization",
/// NeurIPS 2023).
///
/// Task logits `xi` (start 0), `z = softmax(xi)`. The model descends
/// `sum_i z_i log(l_i - l*_i) / c`, `c = sum_j z_j / (l_j - l*_j)`, i.e. the task losses with
/// weights `w_i = z_i / (c (l_i - l*_i))`, which sum to 1 (here times `T`, see
/// [`FamoConfig::sum_to_one`]): a task's weight shrinks as its loss grows, so all losses fall
/// at the same *relative* rate. After the model step, the log-loss decrease
/// `delta_i = log(l_i - l*_i)(before) - log(l_i - l*_i)(after)` updates the logits with Adam
/// (step `lr`, weight decay `gamma`) along `d = J_softmax(xi)^T delta`, i.e.
/// `d_i = z_i (delta_i - sum_j z_j delta_j)`: tasks whose loss fell least gain weight.
///
/// The paper re-evaluates the same batch after the step; by default ([`FamoUpdate::NextBatch`])
/// the next step's batch losses stand in for it, so the update for step `t` happens at the
/// start of step `t + 1`, before its weights are computed. Cost: O(T), plus one forward pass
/// per step with [`FamoUpdate::SameBatch`]. The official code also clips the shared gradient
/// norm to 1 (`max_norm`); that is the trainer's gradient clipping, not part of the weighting.
#[derive(Debug, Clone)]
pub struct Famo {
    num_tasks: usize,
    config: FamoConfig,
    min_losses: Vec<f64>,
    state: FamoState,
}

impl Famo {
    /// FAMO for `num_tasks` tasks (at least 1).
    pub fn new(num_tasks: usize, config: FamoConfig) -> Result<Self, Error> {
        if num_tasks == 0 {
            return Err(Error::TaskCount { method: NAME, what: "tasks", expected: 1, got: 0 });
        }
        config.adam().validate(NAME)?;
        if !(config.loss_eps.is_finite() && config.loss_eps > 0.0) {
            return Err(config_err(
                NAME,
                "loss_eps",
                format!("= {} must be finite and > 0", config.loss_eps),
            ));
        }
        let min_losses = match &config.min_losses {
            None => vec![0.0; num_tasks],
            Some(m) => {
                if m.len() != num_tasks {
                    return Err(Error::TaskCount {
                        method: NAME,
                        what: "min_losses",
                        expected: num_tasks,
                        got: m.len(),
                    });
                }
                if let Some(x) = m.iter().find(|x| !x.is_finite()) {
                    return Err(config_err(
                        NAME,
                        "min_losses",
                        format!("holds {x}: must be finite"),
                    ));
                }
                m.clone()
            }
        };
        let state = FamoState {
            logits: vec![0.0; num_tasks],
            adam: Adam::new(num_tasks),
            pending: None,
            last_delta: vec![0.0; num_tasks],
        };
        Ok(Famo { num_tasks, config, min_losses, state })
    }

    /// Current task logits `xi`.
    pub fn logits(&self) -> &[f64] {
        &self.state.logits
    }

    fn shifted(&self, losses: &[f64], i: usize) -> Result<f64, Error> {
        let d = losses[i] - self.min_losses[i] + self.config.loss_eps;
        if d > 0.0 {
            Ok(d)
        } else {
            Err(obs_err(
                NAME,
                format!(
                    "loss[{i}] = {} is below famo.min_losses[{i}] = {}",
                    losses[i], self.min_losses[i]
                ),
            ))
        }
    }

    /// One logit update from the losses before and after a model step.
    fn update(&mut self, before: &[f64], after: &[f64]) -> Result<(), Error> {
        let t = self.num_tasks;
        let mut delta = [0.0f64; 16];
        let mut delta_vec;
        let delta: &mut [f64] = if t <= delta.len() {
            &mut delta[..t]
        } else {
            delta_vec = vec![0.0; t];
            &mut delta_vec
        };
        for i in 0..t {
            delta[i] = self.shifted(before, i)?.ln() - self.shifted(after, i)?.ln();
        }
        let s = &mut self.state;
        softmax(&s.logits, &mut s.last_delta); // last_delta temporarily holds z
        let zd: f64 = s.last_delta.iter().zip(delta.iter()).map(|(z, d)| z * d).sum();
        for i in 0..t {
            let z = s.last_delta[i];
            s.last_delta[i] = delta[i];
            delta[i] = z * (delta[i] - zd); // the gradient d_i
        }
        s.adam.step(&self.config.adam(), &mut s.logits, delta);
        Ok(())
    }
}

fn softmax(x: &[f64], out: &mut [f64]) {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - max).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

impl TaskWeighting for Famo {
    fn name(&self) -> &str {
        NAME
    }

    fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    fn term_names(&self) -> &'static [&'static str] {
        TERMS
    }

    fn needs_post_step_losses(&self) -> bool {
        self.config.update == FamoUpdate::SameBatch
    }

    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error> {
        let t = self.num_tasks;
        obs.check_losses(NAME, t)?;
        for i in 0..t {
            self.shifted(obs.losses, i)?;
        }
        let mut buffer = None;
        match (self.config.update, self.state.pending.take()) {
            (FamoUpdate::NextBatch, Some(before)) => {
                self.update(&before, obs.losses)?;
                buffer = Some(before);
            }
            (FamoUpdate::SameBatch, Some(before)) => {
                self.state.pending = Some(before);
                return Err(obs_err(
                    NAME,
                    "famo.update = same-batch needs after_step(losses) after every weights() call"
                        .into(),
                ));
            }
            (_, None) => {}
        }
        out.reset(t, TERMS);
        let mut rows = out.terms.rows();
        let (logit, z, delta) = match (rows.next(), rows.next(), rows.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => unreachable!("three term rows"),
        };
        logit.copy_from_slice(&self.state.logits);
        delta.copy_from_slice(&self.state.last_delta);
        softmax(&self.state.logits, z);
        let mut c = 0.0;
        for i in 0..t {
            let q = z[i] / self.shifted(obs.losses, i)?;
            out.values[i] = q;
            c += q;
        }
        let scale = if self.config.sum_to_one { 1.0 } else { t as f64 };
        for w in out.values.iter_mut() {
            *w *= scale / c;
        }
        // Reuse the previous step's buffer: no allocation in steady state.
        let mut pending = buffer.unwrap_or_default();
        pending.clear();
        pending.extend_from_slice(obs.losses);
        self.state.pending = Some(pending);
        Ok(())
    }

    fn after_step(&mut self, losses_after: &[f64]) -> Result<(), Error> {
        if self.config.update != FamoUpdate::SameBatch {
            return Ok(());
        }
        check_per_task(NAME, "losses_after", losses_after, self.num_tasks)?;
        let Some(before) = self.state.pending.take() else {
            return Err(obs_err(
                NAME,
                "after_step called without a preceding weights() call".into(),
            ));
        };
        if let Err(e) = self.update(&before, losses_after) {
            self.state.pending = Some(before);
            return Err(e);
        }
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        persist::save(NAME, self.num_tasks, &self.config, &self.state)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        let t = self.num_tasks;
        let s: FamoState = persist::load(NAME, t, &self.config, state)?;
        let ok = s.logits.len() == t
            && s.logits.iter().all(|x| x.is_finite())
            && s.last_delta.len() == t
            && s.pending.as_ref().is_none_or(|l| l.len() == t)
            && s.adam.m.len() == t
            && s.adam.v.len() == t;
        if !ok {
            return Err(Error::InvalidState {
                method: NAME,
                reason: format!("per-task vectors must have {t} finite entries"),
                source: None,
            });
        }
        self.state = s;
        Ok(())
    }
}
