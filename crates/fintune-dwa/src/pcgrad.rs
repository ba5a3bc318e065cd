//! PCGrad: gradient surgery (Yu et al. 2020).

use std::borrow::Cow;

use ndarray::{Array1, ArrayView1};
use serde::{Deserialize, Serialize};

use crate::error::{obs_err, Error};
use crate::observation::StepObservation;
use crate::persist;
use crate::rng::SplitMix64;
use crate::weights::Weights;
use crate::{GradientCombination, TaskWeighting};

#[cfg(test)]
mod tests;

const NAME: &str = "pcgrad";
const NO_TERMS: &[&str] = &[];

/// Constants of [`PcGrad`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PcGradConfig {
    /// Seed of the SplitMix64 generator that draws the projection orders (its state is saved,
    /// so a resumed run draws the same orders). Default 2020.
    pub seed: u64,
}

impl Default for PcGradConfig {
    fn default() -> Self {
        PcGradConfig { seed: 2020 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PcGradState {
    rng: u64,
}

/// PCGrad (Yu, Kumar, Gupta, Levine, Hausman and Finn, "Gradient Surgery for Multi-Task
/// Learning", NeurIPS 2020, Algorithm 1), a gradient-combination method.
///
/// For each task `i`, starting from `g_i^PC = g_i`, for every other task `j` in a random order:
/// if `g_i^PC . g_j < 0`, project the conflict away:
/// `g_i^PC <- g_i^PC - (g_i^PC . g_j / |g_j|^2) g_j`. The update is `sum_i g_i^PC`.
///
/// Since every projection is onto an original `g_j`, each `g_i^PC` is a combination of the
/// original gradients; the algorithm runs on the `T x T` Gram matrix (accumulated in f64), and
/// the result is formed in one final pass: cost O(T^2 n) for the Gram matrix plus O(T n) for
/// the output, O(T^3) for the projections, for `n`-element gradients. The reported
/// [`GradientCombination::coefficients`] are the resulting per-task multipliers.
///
/// [`TaskWeighting::weights`] returns equal weights (all 1): the trainer backpropagates
/// `sum_i L_i` for the task-specific parameters, and sets the shared probe's gradient to
/// [`TaskWeighting::combine_gradients`] of the per-task probe gradients of the unweighted
/// losses. The random orders come from a seeded SplitMix64 kept in the state (with `T = 2`
/// there is only one order and no randomness is used).
#[derive(Debug, Clone)]
pub struct PcGrad {
    num_tasks: usize,
    config: PcGradConfig,
    rng: SplitMix64,
}

impl PcGrad {
    /// PCGrad for `num_tasks` tasks (at least 1).
    pub fn new(num_tasks: usize, config: PcGradConfig) -> Result<Self, Error> {
        if num_tasks == 0 {
            return Err(Error::TaskCount { method: NAME, what: "tasks", expected: 1, got: 0 });
        }
        Ok(PcGrad { num_tasks, rng: SplitMix64::new(config.seed), config })
    }

    /// Writes the PCGrad combination of `grads` (one slice per task, equal lengths) into
    /// `out` (same length) and returns `(coefficients, projections)`. Allocation-free apart
    /// from the `T x T` matrices.
    pub fn combine_into(
        &mut self,
        grads: &[&[f32]],
        out: &mut [f32],
    ) -> Result<(Vec<f64>, usize), Error> {
        let (coefficients, projections) = self.plan(grads, out.len())?;
        if let [a, b] = grads {
            let (c0, c1) = (coefficients[0] as f32, coefficients[1] as f32);
            for ((o, &x), &y) in out.iter_mut().zip(*a).zip(*b) {
                *o = c0 * x + c1 * y;
            }
        } else {
            let c0 = coefficients[0] as f32;
            for (o, &x) in out.iter_mut().zip(grads[0]) {
                *o = c0 * x;
            }
            for (g, &c) in grads.iter().zip(&coefficients).skip(1) {
                let c = c as f32;
                for (o, &x) in out.iter_mut().zip(*g) {
                    *o += c * x;
                }
            }
        }
        Ok((coefficients, projections))
    }

    /// Checks shapes, builds the Gram matrix and runs the projections in coefficient space.
    fn plan(&mut self, grads: &[&[f32]], n: usize) -> Result<(Vec<f64>, usize), Error> {
        let t = self.num_tasks;
        if grads.len() != t {
            return Err(Error::TaskCount {
                method: NAME,
                what: "gradients",
                expected: t,
                got: grads.len(),
            });
        }
        for (i, g) in grads.iter().enumerate() {
            if g.len() != n {
                return Err(obs_err(
                    NAME,
                    format!("gradient {i} has {} elements, expected {n}", g.len()),
                ));
            }
        }
        let mut gram = vec![0.0f64; t * t];
        if let [a, b] = grads {
            // One fused pass over both gradients.
            let [aa, ab, bb] = gram2(a, b);
            gram.copy_from_slice(&[aa, ab, ab, bb]);
        } else {
            for j in 0..t {
                for k in j..t {
                    let d = dot(grads[j], grads[k]);
                    gram[j * t + k] = d;
                    gram[k * t + j] = d;
                }
            }
        }
        for j in 0..t {
            if !gram[j * t + j].is_finite() {
                return Err(obs_err(NAME, format!("gradient {j} has non-finite entries")));
            }
        }
        // a[i * t + k]: coefficient of the original g_k in g_i^PC.
        let mut a = vec![0.0f64; t * t];
        for i in 0..t {
            a[i * t + i] = 1.0;
        }
        let mut order: Vec<usize> = Vec::with_capacity(t.saturating_sub(1));
        let mut projections = 0;
        for i in 0..t {
            order.clear();
            order.extend((0..t).filter(|&j| j != i));
            self.rng.shuffle(&mut order);
            for &j in &order {
                let d: f64 = (0..t).map(|k| a[i * t + k] * gram[k * t + j]).sum();
                let norm2 = gram[j * t + j];
                if d < 0.0 && norm2 > 0.0 {
                    a[i * t + j] -= d / norm2;
                    projections += 1;
                }
            }
        }
        let coefficients = (0..t).map(|k| (0..t).map(|i| a[i * t + k]).sum()).collect();
        Ok((coefficients, projections))
    }
}

/// `(a.a, a.b, b.b)` in one pass, f64 accumulation in eight lanes.
fn gram2(a: &[f32], b: &[f32]) -> [f64; 3] {
    let (mut aa, mut ab, mut bb) = ([0.0f64; 8], [0.0f64; 8], [0.0f64; 8]);
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            let (x, y) = (f64::from(x[l]), f64::from(y[l]));
            aa[l] += x * x;
            ab[l] += x * y;
            bb[l] += y * y;
        }
    }
    let mut s = [aa.iter().sum::<f64>(), ab.iter().sum::<f64>(), bb.iter().sum::<f64>()];
    for (&x, &y) in ra.iter().zip(rb) {
        let (x, y) = (f64::from(x), f64::from(y));
        s[0] += x * x;
        s[1] += x * y;
        s[2] += y * y;
    }
    s
}

/// Dot product of two f32 slices accumulated in f64 with eight independent lanes (vectorises;
/// the summation order is fixed, so results are reproducible).
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += f64::from(x[l]) * f64::from(y[l]);
        }
    }
    let mut s: f64 = acc.iter().sum();
    for (&x, &y) in ra.iter().zip(rb) {
        s += f64::from(x) * f64::from(y);
    }
    s
}

impl TaskWeighting for PcGrad {
    fn name(&self) -> &str {
        NAME
    }

    fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    fn term_names(&self) -> &'static [&'static str] {
        NO_TERMS
    }

    fn needs_gradients(&self) -> bool {
        true
    }

    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error> {
        obs.check_losses(NAME, self.num_tasks)?;
        out.reset(self.num_tasks, NO_TERMS);
        out.values.fill(1.0);
        Ok(())
    }

    fn combine_gradients(
        &mut self,
        grads: &[ArrayView1<'_, f32>],
    ) -> Result<Option<GradientCombination>, Error> {
        let slices: Vec<Cow<'_, [f32]>> = grads
            .iter()
            .map(|g| match g.as_slice() {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(g.to_vec()),
            })
            .collect();
        let refs: Vec<&[f32]> = slices.iter().map(|s| s.as_ref()).collect();
        let n = refs.first().map_or(0, |g| g.len());
        if let [a, b] = refs.as_slice() {
            // Built in one pass, no zero-fill.
            let (coefficients, projections) = self.plan(&refs, n)?;
            let (c0, c1) = (coefficients[0] as f32, coefficients[1] as f32);
            let gradient: Array1<f32> = a.iter().zip(*b).map(|(&x, &y)| c0 * x + c1 * y).collect();
            return Ok(Some(GradientCombination { gradient, coefficients, projections }));
        }
        let mut gradient = Array1::<f32>::zeros(n);
        let out = gradient.as_slice_mut().expect("a fresh array is contiguous");
        let (coefficients, projections) = self.combine_into(&refs, out)?;
        Ok(Some(GradientCombination { gradient, coefficients, projections }))
    }

    fn state(&self) -> serde_json::Value {
        persist::save(NAME, self.num_tasks, &self.config, &PcGradState { rng: self.rng.state })
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        let s: PcGradState = persist::load(NAME, self.num_tasks, &self.config, state)?;
        self.rng = SplitMix64::new(s.rng);
        Ok(())
    }
}
