//! Main-task-first DWA (`dwa-main`): one main task at weight 1, auxiliaries weighted by how
//! well their gradients agree with the main task's, decayed over training, capped by gradient
//! norm.
//!
//! Task 0 is the main task; tasks `1..T` are auxiliaries. Each step, with `g_i` the probe
//! gradient of task `i`'s unweighted loss ([`StepObservation::grads`]), `G_i = |g_i|` its L2
//! norm and `p` the training progress ([`StepObservation::progress`], 0 when the run length is
//! unknown):
//!
//! ```text
//! w_0     = 1
//! cos_i   = max(0, g_i . g_0 / (G_i G_0))            (0 when G_i = 0 or G_0 = 0)
//! a_i     = cos_i                                     on the first step,
//!           m a_i + (1 - m) cos_i                     afterwards         (agreement EMA)
//! s(p)    = e + (1 - e) d(p),  d = 1 | 1 - p | (1 + cos(pi p)) / 2    (constant | linear | cosine)
//! u_i     = w_max a_i s(p)
//! b_i     = cap G_0 / G_i                             (w_max when G_i = 0)
//! w_i     = min(u_i, b_i)                             so that w_i G_i <= cap G_0
//! ```
//!
//! So an auxiliary whose gradient points against the main task's gets weight 0, one that
//! agrees fully gets `w_max s(p)`, the auxiliaries fade out as training progresses (down to the
//! fraction `e` of their weight at the end), and no auxiliary's weighted gradient at the probe is
//! ever more than `cap` times the main task's. The weights do **not** sum to `T`: the main task
//! keeps weight 1 whatever the auxiliaries do, so its learning rate is the single-task one.
//!
//! Batch rarity does not enter the task weights (the symmetric [`Dwa`](crate::Dwa)'s batch term
//! `c_i` is a momentum-smoothed per-batch scalar); it moves to per-sample weights of the main
//! loss: [`rarity_sample_weights`](crate::rarity_sample_weights), configured by
//! [`DwaMainConfig::sample_weights`] and applied through [`DwaMain::main_sample_weights`].

use serde::{Deserialize, Serialize};

use crate::error::{config_err, obs_err, Error};
use crate::observation::StepObservation;
use crate::persist::{self, exact};
use crate::sample_weights::{check_sample_weight_config, rarity_sample_weights_into};
use crate::weights::Weights;
use crate::{SampleWeightConfig, TaskWeighting};

#[cfg(test)]
mod tests;

const NAME: &str = "dwa-main";
/// `cos`: this step's clipped cosine with the main gradient; `agree`: its EMA `a_i`;
/// `schedule`: `s(p)`; `u`: `w_max a_i s(p)`; `bound`: the norm cap `cap G_0 / G_i`
/// (`w_max` when `G_i = 0`). The main task reports 1 for every term.
const TERMS: &[&str] = &["cos", "agree", "schedule", "u", "bound"];

/// How the auxiliary weights decay with training progress `p` in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// `d(p) = 1`: no decay.
    Constant,
    /// `d(p) = 1 - p`.
    Linear,
    /// `d(p) = (1 + cos(pi p)) / 2`: slow at first and at the end.
    Cosine,
}

impl Schedule {
    /// The decay `d(p)` at progress `p` (clamped to [0, 1]); 1 at `p = 0`, 0 at `p = 1`
    /// (except [`Schedule::Constant`]).
    pub fn decay(self, p: f64) -> f64 {
        let p = p.clamp(0.0, 1.0);
        match self {
            Schedule::Constant => 1.0,
            Schedule::Linear => 1.0 - p,
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
        }
    }
}

/// Constants of [`DwaMain`]; every field has a default (`#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DwaMainConfig {
    /// Largest auxiliary weight (reached by a fully agreeing auxiliary at the start).
    /// Finite, > 0. Default 1.0.
    pub w_max: f64,
    /// Cap on the auxiliary's weighted gradient-norm ratio: `w_i G_i <= cap G_0`. Finite, > 0.
    /// Default 1.0.
    pub cap: f64,
    /// Decay of the agreement EMA `a_i <- m a_i + (1 - m) cos_i` (initialised with the first
    /// cosine). In [0, 1); 0 uses each step's cosine as is. Default 0.9.
    pub momentum: f64,
    /// Progress schedule `d(p)` of the auxiliary weights. Default [`Schedule::Cosine`].
    pub schedule: Schedule,
    /// Fraction `e` of the auxiliary weight left at the end of training:
    /// `s(p) = e + (1 - e) d(p)`. In [0, 1]. Default 0.0.
    pub schedule_end: f64,
    /// Per-sample rarity weights of the main loss
    /// ([`rarity_sample_weights`](crate::rarity_sample_weights)).
    pub sample_weights: SampleWeightConfig,
}

impl Default for DwaMainConfig {
    fn default() -> Self {
        DwaMainConfig {
            w_max: 1.0,
            cap: 1.0,
            momentum: 0.9,
            schedule: Schedule::Cosine,
            schedule_end: 0.0,
            sample_weights: SampleWeightConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DwaMainState {
    /// Number of `weights` calls so far.
    steps: u64,
    /// Agreement EMA `a_i` per task (entry 0, the main task, stays 1).
    #[serde(with = "exact::vec")]
    agree: Vec<f64>,
}

/// Main-task-first dynamic weight adapter; the formula is in the [module docs](self).
///
/// Needs the flattened probe gradients ([`TaskWeighting::needs_gradients`]; their norms are
/// computed from them, so `grad_norms` are not read) and no batch characteristics. Cost:
/// O(T n) per step for `n`-element gradients (one pass per auxiliary, accumulated in f64), no
/// allocation with [`TaskWeighting::weights_into`]. Invariant to scaling all gradients by one
/// positive constant.
#[derive(Debug, Clone)]
pub struct DwaMain {
    num_tasks: usize,
    config: DwaMainConfig,
    state: DwaMainState,
}

impl DwaMain {
    /// A main-task-first DWA for `num_tasks` tasks (at least 1; task 0 is the main task).
    pub fn new(num_tasks: usize, config: DwaMainConfig) -> Result<Self, Error> {
        if num_tasks == 0 {
            return Err(Error::TaskCount { method: NAME, what: "tasks", expected: 1, got: 0 });
        }
        let c = &config;
        for (field, v) in [("w_max", c.w_max), ("cap", c.cap)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(config_err(NAME, field, format!("= {v} must be finite and > 0")));
            }
        }
        if !(0.0..1.0).contains(&c.momentum) {
            return Err(config_err(
                NAME,
                "momentum",
                format!("= {} must be in [0, 1)", c.momentum),
            ));
        }
        if !(0.0..=1.0).contains(&c.schedule_end) {
            return Err(config_err(
                NAME,
                "schedule_end",
                format!("= {} must be in [0, 1]", c.schedule_end),
            ));
        }
        check_sample_weight_config(NAME, &c.sample_weights)?;
        let state = DwaMainState { steps: 0, agree: vec![1.0; num_tasks] };
        Ok(DwaMain { num_tasks, config, state })
    }

    /// The configuration in use.
    pub fn config(&self) -> &DwaMainConfig {
        &self.config
    }

    /// The schedule factor `s(p) = e + (1 - e) d(p)` at progress `p`.
    pub fn schedule_factor(&self, p: f64) -> f64 {
        let e = self.config.schedule_end;
        e + (1.0 - e) * self.config.schedule.decay(p)
    }

    /// Per-sample weights of the main task's loss for one batch, from the samples' score
    /// rarities (fintune-das), with this method's [`DwaMainConfig::sample_weights`]: the trainer
    /// minimises `mean_j(out_j l_j)` as the main loss `L_0` instead of `mean_j(l_j)`. See
    /// [`rarity_sample_weights`](crate::rarity_sample_weights).
    pub fn main_sample_weights(&self, rarity: &[f64], out: &mut [f64]) -> Result<(), Error> {
        rarity_sample_weights_into(NAME, rarity, &self.config.sample_weights, out)
    }
}

/// Dot product and squared norms of two f32 vectors, accumulated in f64.
fn dot_norms(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (ab, aa, bb)
}

impl TaskWeighting for DwaMain {
    fn name(&self) -> &str {
        NAME
    }

    fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    fn term_names(&self) -> &'static [&'static str] {
        TERMS
    }

    fn needs_gradients(&self) -> bool {
        self.num_tasks > 1
    }

    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error> {
        let t = self.num_tasks;
        obs.check_losses(NAME, t)?;
        out.reset(t, TERMS);
        let mut rows = out.terms.rows();
        let (cos, agree, sched, u, bound) =
            match (rows.next(), rows.next(), rows.next(), rows.next(), rows.next()) {
                (Some(a), Some(b), Some(c), Some(d), Some(e)) => (a, b, c, d, e),
                _ => unreachable!("five term rows"),
            };
        for row in [&mut *cos, &mut *agree, &mut *sched, &mut *u, &mut *bound] {
            row[0] = 1.0;
        }
        out.values[0] = 1.0;
        if t == 1 {
            self.state.steps += 1;
            return Ok(());
        }

        // Validate the gradients before any state changes.
        let grads = obs.grads.ok_or_else(|| {
            obs_err(NAME, "grads (flattened probe gradients) are required but absent".into())
        })?;
        if grads.len() != t {
            return Err(Error::TaskCount {
                method: NAME,
                what: "grads",
                expected: t,
                got: grads.len(),
            });
        }
        let n = grads[0].len();
        for (i, g) in grads.iter().enumerate() {
            if g.len() != n {
                return Err(obs_err(
                    NAME,
                    format!("grads[{i}] has {} elements but grads[0] has {n}", g.len()),
                ));
            }
            if let Some(j) = g.iter().position(|x| !x.is_finite()) {
                return Err(obs_err(NAME, format!("grads[{i}][{j}] = {} is not finite", g[j])));
            }
        }
        let main = grads[0].as_slice();
        let main_owned;
        let main: &[f32] = match main {
            Some(s) => s,
            None => {
                main_owned = grads[0].to_vec();
                &main_owned
            }
        };

        let c = &self.config;
        let s = &mut self.state;
        let first = s.steps == 0;
        s.steps += 1;
        let factor = c.schedule_end + (1.0 - c.schedule_end) * c.schedule.decay(obs.progress());
        for i in 1..t {
            let gi = &grads[i];
            let (ab, aa, bb) = match gi.as_slice() {
                Some(sl) => dot_norms(sl, main),
                None => dot_norms(&gi.to_vec(), main),
            };
            let (norm_i, norm_0) = (aa.sqrt(), bb.sqrt());
            cos[i] = if norm_i > 0.0 && norm_0 > 0.0 {
                (ab / (norm_i * norm_0)).clamp(0.0, 1.0)
            } else {
                0.0
            };
            s.agree[i] =
                if first { cos[i] } else { c.momentum * s.agree[i] + (1.0 - c.momentum) * cos[i] };
            agree[i] = s.agree[i];
            sched[i] = factor;
            u[i] = c.w_max * s.agree[i] * factor;
            bound[i] = if norm_i > 0.0 { c.cap * norm_0 / norm_i } else { c.w_max };
            out.values[i] = u[i].min(bound[i]);
        }
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        persist::save(NAME, self.num_tasks, &self.config, &self.state)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        let t = self.num_tasks;
        let s: DwaMainState = persist::load(NAME, t, &self.config, state)?;
        if s.agree.len() != t || s.agree.iter().any(|x| !(x.is_finite() && (0.0..=1.0).contains(x)))
        {
            return Err(Error::InvalidState {
                method: NAME,
                reason: format!("`agree` must hold {t} values in [0, 1], got {:?}", s.agree),
                source: None,
            });
        }
        self.state = s;
        Ok(())
    }
}
