//! What the trainer hands to a weighting method each step and each epoch.

use ndarray::ArrayView1;
use serde::{Deserialize, Serialize};

use crate::error::{obs_err, Error};

/// The kind of label a task learns from; decides the DWA batch term and the uncertainty
/// weighting convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Regression on the sentiment score (fintune task 0).
    Regression,
    /// Classification over DAS score classes (fintune task 1).
    Classification,
}

impl TaskKind {
    /// The fintune convention: task 0 is the regression head, every other task a classification
    /// head. For `num_tasks = 2` this is `[Regression, Classification]`.
    pub fn fintune_default(num_tasks: usize) -> Vec<TaskKind> {
        (0..num_tasks)
            .map(|i| if i == 0 { TaskKind::Regression } else { TaskKind::Classification })
            .collect()
    }
}

/// Label statistics of the current batch, used by the DWA batch term.
///
/// All slices describe the same batch: `rarity.len()` must equal the sum of `class_histogram`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchCharacteristics<'a> {
    /// Per-sample rarity weight of each batch sample's score (from fintune-das), normalised so
    /// the mean over the *training set* is 1. Finite, non-negative.
    pub rarity: &'a [f64],
    /// Number of batch samples in each DAS class.
    pub class_histogram: &'a [u64],
    /// Training-set frequency of each DAS class (counts or proportions; normalised here).
    pub class_frequencies: &'a [f64],
}

impl BatchCharacteristics<'_> {
    /// Mean rarity of the batch's scores: the regression task's batch statistic. Equals 1 in
    /// expectation for batches drawn uniformly from the training set.
    pub fn score_rarity(&self) -> Result<f64, String> {
        if self.rarity.is_empty() {
            return Err("batch.rarity is empty".into());
        }
        let mut sum = 0.0;
        for (i, &r) in self.rarity.iter().enumerate() {
            if !(r.is_finite() && r >= 0.0) {
                return Err(format!("batch.rarity[{i}] = {r} is not finite and >= 0"));
            }
            sum += r;
        }
        Ok(sum / self.rarity.len() as f64)
    }

    /// Mean inverse class frequency of the batch's DAS classes: the classification task's batch
    /// statistic. Each sample of class `k` counts `1 / (K p_k)`, with `p_k` the training class
    /// frequency and `K` the number of classes with `p_k > 0`, so the training-set mean is 1.
    pub fn class_rarity(&self) -> Result<f64, String> {
        let (h, p) = (self.class_histogram, self.class_frequencies);
        if h.len() != p.len() {
            return Err(format!(
                "batch.class_histogram has {} classes but batch.class_frequencies has {}",
                h.len(),
                p.len()
            ));
        }
        let mut total_p = 0.0;
        let mut classes = 0usize;
        for (k, &pk) in p.iter().enumerate() {
            if !(pk.is_finite() && pk >= 0.0) {
                return Err(format!("batch.class_frequencies[{k}] = {pk} is not finite and >= 0"));
            }
            if pk > 0.0 {
                total_p += pk;
                classes += 1;
            }
        }
        if classes == 0 {
            return Err("batch.class_frequencies are all zero".into());
        }
        let mut n = 0u64;
        let mut acc = 0.0;
        for (k, (&hk, &pk)) in h.iter().zip(p).enumerate() {
            if hk == 0 {
                continue;
            }
            if pk == 0.0 {
                return Err(format!(
                    "batch.class_histogram[{k}] = {hk} but class {k} has training frequency 0"
                ));
            }
            n += hk;
            acc += hk as f64 * total_p / (classes as f64 * pk);
        }
        if n == 0 {
            return Err("batch.class_histogram is all zero (empty batch)".into());
        }
        Ok(acc / n as f64)
    }

    /// Checks that the rarity list and the class histogram describe the same batch.
    pub(crate) fn check_consistent(&self) -> Result<(), String> {
        let n: u64 = self.class_histogram.iter().sum();
        if n != self.rarity.len() as u64 {
            return Err(format!(
                "batch.rarity has {} samples but batch.class_histogram counts {n}",
                self.rarity.len()
            ));
        }
        Ok(())
    }
}

/// Everything a weighting method may look at in one optimisation step.
///
/// Per-task slices are indexed by task (fintune: 0 = regression, 1 = classification).
#[derive(Debug, Clone, Copy)]
pub struct StepObservation<'a> {
    /// 0-based index of this optimisation step over the whole run.
    pub global_step: u64,
    /// Planned number of optimisation steps in the run (0 when unknown).
    pub total_steps: u64,
    /// 0-based epoch index.
    pub epoch: u32,
    /// Each task's unweighted batch loss (finite, >= 0).
    pub losses: &'a [f64],
    /// L2 norm of the gradient of each task's unweighted loss with respect to the shared probe.
    /// Required when [`TaskWeighting::needs_grad_norms`](crate::TaskWeighting::needs_grad_norms).
    pub grad_norms: Option<&'a [f64]>,
    /// Flattened probe gradient of each task's unweighted loss. Filled only when
    /// [`TaskWeighting::needs_gradients`](crate::TaskWeighting::needs_gradients); none of the
    /// built-in methods reads it in `weights` (pcgrad receives gradients through
    /// [`TaskWeighting::combine_gradients`](crate::TaskWeighting::combine_gradients)).
    pub grads: Option<&'a [ArrayView1<'a, f32>]>,
    /// Label statistics of the batch. Required when
    /// [`TaskWeighting::needs_batch`](crate::TaskWeighting::needs_batch).
    pub batch: Option<BatchCharacteristics<'a>>,
}

impl<'a> StepObservation<'a> {
    /// An observation with only the losses; step counters 0 and every optional input absent.
    pub fn new(losses: &'a [f64]) -> Self {
        StepObservation {
            global_step: 0,
            total_steps: 0,
            epoch: 0,
            losses,
            grad_norms: None,
            grads: None,
            batch: None,
        }
    }

    /// Sets `grad_norms` (default: absent).
    pub fn with_grad_norms(mut self, grad_norms: &'a [f64]) -> Self {
        self.grad_norms = Some(grad_norms);
        self
    }

    /// Sets `batch` (default: absent).
    pub fn with_batch(mut self, batch: BatchCharacteristics<'a>) -> Self {
        self.batch = Some(batch);
        self
    }

    /// Sets `global_step`, `total_steps` and `epoch` (defaults: 0, 0, 0).
    pub fn at(mut self, global_step: u64, total_steps: u64, epoch: u32) -> Self {
        self.global_step = global_step;
        self.total_steps = total_steps;
        self.epoch = epoch;
        self
    }

    /// Fraction of the run done before this step, in [0, 1]; 0 when `total_steps` is unknown.
    pub fn progress(&self) -> f64 {
        if self.total_steps == 0 {
            0.0
        } else {
            (self.global_step as f64 / self.total_steps as f64).min(1.0)
        }
    }

    /// Checks `losses` (length `num_tasks`, finite, >= 0).
    pub(crate) fn check_losses(&self, method: &'static str, num_tasks: usize) -> Result<(), Error> {
        check_per_task(method, "losses", self.losses, num_tasks)
    }

    /// Checks and returns `grad_norms` (present, length `num_tasks`, finite, >= 0).
    pub(crate) fn require_grad_norms(
        &self,
        method: &'static str,
        num_tasks: usize,
    ) -> Result<&'a [f64], Error> {
        let g = self.grad_norms.ok_or_else(|| {
            obs_err(method, "grad_norms are required by this method but absent".into())
        })?;
        check_per_task(method, "grad_norms", g, num_tasks)?;
        Ok(g)
    }
}

/// What a method may look at when an epoch ends.
#[derive(Debug, Clone, Copy)]
pub struct EpochObservation<'a> {
    /// 0-based index of the epoch that just ended.
    pub epoch: u32,
    /// Each task's mean unweighted training loss over the epoch's steps (finite, >= 0).
    pub mean_losses: &'a [f64],
}

pub(crate) fn check_per_task(
    method: &'static str,
    what: &'static str,
    values: &[f64],
    num_tasks: usize,
) -> Result<(), Error> {
    if values.len() != num_tasks {
        return Err(Error::TaskCount { method, what, expected: num_tasks, got: values.len() });
    }
    for (i, &v) in values.iter().enumerate() {
        if !(v.is_finite() && v >= 0.0) {
            return Err(obs_err(method, format!("{what}[{i}] = {v} is not finite and >= 0")));
        }
    }
    Ok(())
}
