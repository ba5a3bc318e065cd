//! DAO: inverse gradient-norm weights.

use serde::{Deserialize, Serialize};

use crate::error::{config_err, Error};
use crate::observation::StepObservation;
use crate::persist;
use crate::weights::Weights;
use crate::TaskWeighting;

#[cfg(test)]
mod tests;

const NAME: &str = "dao";
/// `g`: `mean_j(G_j) / G_i`, the same gradient-balance term as the DWA's.
const TERMS: &[&str] = &["g"];

/// Constants of [`Dao`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaoConfig {
    /// Gradient norms are floored at `grad_floor * max_j G_j` before inverting (a zero norm
    /// then gives a large finite weight; relative, so scale-invariant). In (0, 1). Default 1e-12.
    pub grad_floor: f64,
}

impl Default for DaoConfig {
    fn default() -> Self {
        DaoConfig { grad_floor: 1e-12 }
    }
}

/// Inverse gradient-norm weighting, the dynamic adaptive loss of the DAO module (Ding et al.,
/// "Dynamic Adaptive Optimization for Effective Sentiment Analysis Fine-Tuning on Large
/// Language Models", arXiv:2408.11856, 2024): for two tasks
/// `lambda_r = G_c / (G_r + G_c)`, `lambda_c = G_r / (G_r + G_c)`, here times `T` so the
/// weights sum to `T`. For `T` tasks: `w_i = T (1 / G_i) / sum_j (1 / G_j)`, which makes every
/// weighted gradient norm `w_i G_i` equal. Stateless; the DWA without its training-rate, batch,
/// clamp and smoothing terms. Cost: O(T).
#[derive(Debug, Clone)]
pub struct Dao {
    num_tasks: usize,
    config: DaoConfig,
}

impl Dao {
    /// DAO weighting for `num_tasks` tasks (at least 1).
    pub fn new(num_tasks: usize, config: DaoConfig) -> Result<Self, Error> {
        if num_tasks == 0 {
            return Err(Error::TaskCount { method: NAME, what: "tasks", expected: 1, got: 0 });
        }
        if !(config.grad_floor > 0.0 && config.grad_floor < 1.0) {
            return Err(config_err(
                NAME,
                "grad_floor",
                format!("= {} must be in (0, 1)", config.grad_floor),
            ));
        }
        Ok(Dao { num_tasks, config })
    }
}

impl TaskWeighting for Dao {
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
        obs.check_losses(NAME, t)?;
        let norms = obs.require_grad_norms(NAME, t)?;
        out.reset(t, TERMS);
        let g = out.terms.rows().next().expect("one term row");
        let gmax = norms.iter().copied().fold(0.0, f64::max);
        if gmax == 0.0 {
            g.fill(1.0);
            out.values.fill(1.0);
            return Ok(());
        }
        let floor = self.config.grad_floor * gmax;
        let mean = norms.iter().sum::<f64>() / t as f64;
        let mut inv_sum = 0.0;
        for i in 0..t {
            // Scale by 1 / gmax first so the inverses stay within [1, 1 / grad_floor].
            let inv = gmax / norms[i].max(floor);
            out.values[i] = inv;
            inv_sum += inv;
            g[i] = mean / norms[i].max(floor);
        }
        for w in out.values.iter_mut() {
            *w *= t as f64 / inv_sum;
        }
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        persist::save(NAME, self.num_tasks, &self.config, &())
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        persist::load::<_, ()>(NAME, self.num_tasks, &self.config, state)
    }
}
