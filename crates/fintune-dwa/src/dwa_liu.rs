//! Dynamic Weight Average (Liu, Johns and Davison 2019).

use serde::{Deserialize, Serialize};

use crate::error::{config_err, obs_err, Error};
use crate::observation::{check_per_task, EpochObservation, StepObservation};
use crate::persist::{self, exact};
use crate::weights::Weights;
use crate::TaskWeighting;

#[cfg(test)]
mod tests;

const NAME: &str = "dwa-liu";
/// `ratio`: `w_k = L_k(e-1) / L_k(e-2)` behind the current weights (1 during the first two
/// epochs).
const TERMS: &[&str] = &["ratio"];

/// Constants of [`DwaLiu`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DwaLiuConfig {
    /// Softmax temperature; larger is softer (toward equal weights). The paper uses 2.
    /// Finite, > 0. Default 2.0.
    pub temperature: f64,
    /// Added to both epoch losses in the ratio, guarding a zero loss. Finite, > 0.
    /// Default 1e-12.
    pub loss_eps: f64,
}

impl Default for DwaLiuConfig {
    fn default() -> Self {
        DwaLiuConfig { temperature: 2.0, loss_eps: 1e-12 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DwaLiuState {
    /// Index of the last epoch reported to `end_epoch`.
    last_epoch: Option<u32>,
    /// Mean losses of the last two epochs reported: `[L(e-2), L(e-1)]`.
    #[serde(with = "exact::opt_vec")]
    older: Option<Vec<f64>>,
    #[serde(with = "exact::opt_vec")]
    newer: Option<Vec<f64>>,
    #[serde(with = "exact::vec")]
    ratios: Vec<f64>,
    #[serde(with = "exact::vec")]
    weights: Vec<f64>,
}

/// Dynamic Weight Average (Liu, Johns and Davison, "End-to-End Multi-Task Learning with
/// Attention", CVPR 2019, eq. 7): for epoch `e`,
///
/// `lambda_k(e) = T exp(w_k / temp) / sum_i exp(w_i / temp)`,
/// `w_k = L_k(e-1) / L_k(e-2)`,
///
/// with `L_k` the mean training loss of task `k` over an epoch's iterations and
/// `temperature = 2`. The first two epochs (before two epoch losses exist) use equal weights.
/// The weights change only in [`TaskWeighting::end_epoch`], which the trainer must call after
/// every epoch (epochs in increasing order). Weights that would underflow to 0 (ratio gaps of
/// more than about 1400 temperatures) are kept at the smallest positive double. Cost: O(T).
#[derive(Debug, Clone)]
pub struct DwaLiu {
    num_tasks: usize,
    config: DwaLiuConfig,
    state: DwaLiuState,
}

impl DwaLiu {
    /// DWA-Liu for `num_tasks` tasks (at least 1).
    pub fn new(num_tasks: usize, config: DwaLiuConfig) -> Result<Self, Error> {
        if num_tasks == 0 {
            return Err(Error::TaskCount { method: NAME, what: "tasks", expected: 1, got: 0 });
        }
        for (field, v) in [("temperature", config.temperature), ("loss_eps", config.loss_eps)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(config_err(NAME, field, format!("= {v} must be finite and > 0")));
            }
        }
        let state = DwaLiuState {
            last_epoch: None,
            older: None,
            newer: None,
            ratios: vec![1.0; num_tasks],
            weights: vec![1.0; num_tasks],
        };
        Ok(DwaLiu { num_tasks, config, state })
    }
}

impl TaskWeighting for DwaLiu {
    fn name(&self) -> &str {
        NAME
    }

    fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    fn term_names(&self) -> &'static [&'static str] {
        TERMS
    }

    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error> {
        obs.check_losses(NAME, self.num_tasks)?;
        out.reset(self.num_tasks, TERMS);
        out.values.copy_from_slice(&self.state.weights);
        out.terms.rows().next().expect("one term row").copy_from_slice(&self.state.ratios);
        Ok(())
    }

    fn end_epoch(&mut self, epoch: &EpochObservation<'_>) -> Result<(), Error> {
        let t = self.num_tasks;
        check_per_task(NAME, "mean_losses", epoch.mean_losses, t)?;
        let s = &mut self.state;
        if let Some(last) = s.last_epoch {
            if epoch.epoch <= last {
                return Err(obs_err(
                    NAME,
                    format!(
                        "epoch {} ended after epoch {last}: epochs must be reported once, in order",
                        epoch.epoch
                    ),
                ));
            }
        }
        s.last_epoch = Some(epoch.epoch);
        s.older = s.newer.take();
        s.newer = Some(epoch.mean_losses.to_vec());
        let (Some(older), Some(newer)) = (&s.older, &s.newer) else {
            return Ok(());
        };
        let eps = self.config.loss_eps;
        let mut max = f64::NEG_INFINITY;
        for i in 0..t {
            s.ratios[i] = (newer[i] + eps) / (older[i] + eps);
            max = max.max(s.ratios[i] / self.config.temperature);
        }
        let mut sum = 0.0;
        for i in 0..t {
            s.weights[i] =
                (s.ratios[i] / self.config.temperature - max).exp().max(f64::MIN_POSITIVE);
            sum += s.weights[i];
        }
        for w in s.weights.iter_mut() {
            *w *= t as f64 / sum;
        }
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        persist::save(NAME, self.num_tasks, &self.config, &self.state)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        let t = self.num_tasks;
        let s: DwaLiuState = persist::load(NAME, t, &self.config, state)?;
        let ok = s.ratios.len() == t
            && s.weights.len() == t
            && s.weights.iter().all(|w| w.is_finite() && *w > 0.0)
            && s.older.as_ref().is_none_or(|l| l.len() == t)
            && s.newer.as_ref().is_none_or(|l| l.len() == t);
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
