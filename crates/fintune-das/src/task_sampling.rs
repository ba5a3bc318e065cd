//! Task sampling for batches that mix `T` tasks (issue 16).
//!
//! Each batch slot draws its task `i` with probability
//!
//! ```text
//! p_i = n_i^(1/tau) / sum_j n_j^(1/tau)
//! ```
//!
//! with `n_i` the size of task `i`'s training set and `tau > 0` the temperature:
//! `tau = 1` is proportional sampling (every training example equally likely, as if the sets
//! were pooled), larger `tau` flattens the shares towards uniform (`tau = inf`: every non-empty
//! task equally likely, so small tasks are seen more often than their size warrants), and
//! `tau < 1` sharpens them towards the largest task. An empty task (`n_i = 0`) is never drawn.
//! Temperature sampling is the usual multi-task recipe (e.g. Arivazhagan et al. 2019 use
//! `tau = 5` for multilingual translation); the right value is an experiment.
//!
//! [`TaskSampler`] draws tasks from a seeded ChaCha8 generator: deterministic for a seed,
//! and [`TaskSampler::state`] / [`TaskSampler::restore`] continue a sequence exactly.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::Error;

#[cfg(test)]
mod tests;

/// How batch slots are shared between tasks. Parses from and displays as `proportional`,
/// `uniform` or `temperature:<tau>` (e.g. `temperature:2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TaskSampling {
    /// `tau = 1`: shares proportional to the task sizes.
    Proportional,
    /// `tau = inf`: equal shares for every non-empty task.
    Uniform,
    /// `p_i ~ n_i^(1/tau)` with this `tau` (finite, > 0).
    Temperature(f64),
}

impl TaskSampling {
    /// The temperature `tau` (1 for proportional, infinity for uniform).
    pub fn tau(self) -> f64 {
        match self {
            TaskSampling::Proportional => 1.0,
            TaskSampling::Uniform => f64::INFINITY,
            TaskSampling::Temperature(t) => t,
        }
    }
}

impl FromStr for TaskSampling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        let bad = || Error::InvalidParameter {
            name: "task sampling",
            value: s.to_owned(),
            reason: "expected proportional, uniform or temperature:<tau> with tau finite and > 0",
        };
        match t {
            "proportional" => Ok(TaskSampling::Proportional),
            "uniform" => Ok(TaskSampling::Uniform),
            _ => {
                let tau: f64 = t
                    .strip_prefix("temperature:")
                    .and_then(|x| x.trim().parse().ok())
                    .ok_or_else(bad)?;
                if tau.is_finite() && tau > 0.0 {
                    Ok(TaskSampling::Temperature(tau))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl fmt::Display for TaskSampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskSampling::Proportional => f.write_str("proportional"),
            TaskSampling::Uniform => f.write_str("uniform"),
            TaskSampling::Temperature(t) => write!(f, "temperature:{t}"),
        }
    }
}

impl Serialize for TaskSampling {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TaskSampling {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The sampling probabilities `p_i ~ n_i^(1/tau)` of tasks with `sizes` training examples
/// (computed in log space, so huge sizes and tiny `tau` do not overflow). `tau` must be > 0
/// (`f64::INFINITY` allowed: uniform over the non-empty tasks).
///
/// ```
/// let p = fintune_das::task_probabilities(&[100, 400], 2.0).unwrap();
/// // sqrt(100) : sqrt(400) = 10 : 20.
/// assert!((p[0] - 1.0 / 3.0).abs() < 1e-12 && (p[1] - 2.0 / 3.0).abs() < 1e-12);
/// ```
///
/// # Errors
/// No tasks, every task empty, or a `tau` that is NaN or `<= 0`.
pub fn task_probabilities(sizes: &[usize], tau: f64) -> Result<Vec<f64>, Error> {
    if sizes.is_empty() {
        return Err(Error::Empty { what: "tasks" });
    }
    if tau.is_nan() || tau <= 0.0 {
        return Err(Error::InvalidParameter {
            name: "tau",
            value: tau.to_string(),
            reason: "must be > 0 (infinity for uniform)",
        });
    }
    let nmax = *sizes.iter().max().expect("non-empty");
    if nmax == 0 {
        return Err(Error::InvalidInput {
            what: "task sampling",
            reason: format!("every task is empty (sizes {sizes:?})"),
        });
    }
    let lmax = (nmax as f64).ln();
    let mut p: Vec<f64> = sizes
        .iter()
        .map(|&n| if n == 0 { 0.0 } else { (((n as f64).ln() - lmax) / tau).exp() })
        .collect();
    let sum: f64 = p.iter().sum();
    for x in &mut p {
        *x /= sum;
    }
    Ok(p)
}

/// The saved position of a [`TaskSampler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSamplerState {
    /// The seed the sampler was built with.
    pub seed: u64,
    /// Number of tasks drawn so far.
    pub draws: u64,
}

/// A seeded, deterministic sampler of tasks with probabilities [`task_probabilities`].
///
/// ```
/// use fintune_das::{TaskSampler, TaskSampling};
/// let mut s = TaskSampler::new(&[600, 1000, 1600], TaskSampling::Temperature(2.0), 7).unwrap();
/// let mut counts = [0usize; 3];
/// s.fill_batch(32, &mut counts); // how many of the batch's 32 examples each task supplies
/// assert_eq!(counts.iter().sum::<usize>(), 32);
/// ```
#[derive(Debug, Clone)]
pub struct TaskSampler {
    probabilities: Vec<f64>,
    /// Cumulative probabilities; the last entry is exactly 1.
    cumulative: Vec<f64>,
    seed: u64,
    draws: u64,
    rng: ChaCha8Rng,
}

impl TaskSampler {
    /// A sampler over tasks of `sizes` training examples with the given sharing rule and seed.
    ///
    /// # Errors
    /// As [`task_probabilities`].
    pub fn new(sizes: &[usize], sampling: TaskSampling, seed: u64) -> Result<Self, Error> {
        let probabilities = task_probabilities(sizes, sampling.tau())?;
        let mut cumulative = Vec::with_capacity(probabilities.len());
        let mut acc = 0.0;
        for &p in &probabilities {
            acc += p;
            cumulative.push(acc);
        }
        // Exactly 1 from the last non-empty task on, so every draw u in [0, 1) finds a task
        // and an empty tail task is never drawn.
        let last = probabilities.iter().rposition(|&p| p > 0.0).expect("a non-empty task");
        for c in &mut cumulative[last..] {
            *c = 1.0;
        }
        Ok(TaskSampler {
            probabilities,
            cumulative,
            seed,
            draws: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The sampling probabilities, one per task.
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    /// Draws the task of the next batch slot.
    pub fn next_task(&mut self) -> usize {
        self.draws += 1;
        let u: f64 = self.rng.random();
        // First task whose cumulative probability exceeds u; empty tasks have zero-width
        // intervals and are skipped.
        self.cumulative.partition_point(|&c| c <= u)
    }

    /// Draws `batch_size` slots and writes how many fall to each task into `counts` (one entry
    /// per task, overwritten).
    ///
    /// # Panics
    /// If `counts.len()` differs from the number of tasks (a programming error).
    pub fn fill_batch(&mut self, batch_size: usize, counts: &mut [usize]) {
        assert_eq!(counts.len(), self.probabilities.len(), "one count per task");
        counts.fill(0);
        for _ in 0..batch_size {
            counts[self.next_task()] += 1;
        }
    }

    /// The position to save in a checkpoint.
    pub fn state(&self) -> TaskSamplerState {
        TaskSamplerState { seed: self.seed, draws: self.draws }
    }

    /// Continues exactly where `state` was saved (same sizes and sampling rule assumed).
    ///
    /// # Errors
    /// [`Error::InvalidSaved`] when the state was saved with another seed.
    pub fn restore(&mut self, state: TaskSamplerState) -> Result<(), Error> {
        if state.seed != self.seed {
            return Err(Error::InvalidSaved {
                what: "task sampler",
                reason: format!(
                    "saved with seed {} but this sampler uses seed {}",
                    state.seed, self.seed
                ),
            });
        }
        // Every draw consumes exactly one u64 (two 32-bit words) of the ChaCha stream.
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_word_pos(u128::from(state.draws) * 2);
        self.rng = rng;
        self.draws = state.draws;
        Ok(())
    }
}
