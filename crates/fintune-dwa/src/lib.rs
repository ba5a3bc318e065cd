//! Dynamic weight adapter (DWA) and the standard multi-task loss-weighting baselines.
//!
//! Pure math on numbers and `ndarray`; no tch. Each optimisation step the trainer measures every
//! task's unweighted batch loss `L_i` and the norm `G_i` of its gradient with respect to a shared
//! probe, hands them over in a [`StepObservation`], and minimises `sum_i w_i L_i` with the
//! [`Weights`] it gets back. At the end of each epoch it reports the mean losses
//! ([`EpochObservation`]); checkpoints carry [`TaskWeighting::state`], and
//! [`TaskWeighting::restore`] makes a resumed run bit-identical.
//!
//! Main types:
//! - [`TaskWeighting`]: the trait every method implements.
//! - [`WeightingSpec`]: a method by name (`dwa`, `equal`, `static:0.7,0.3`, `uncertainty`,
//!   `gradnorm`, `dwa-liu`, `dao`, `famo`, `pcgrad`, `dwa-main`); [`WeightingSpec::build`]
//!   makes it.
//! - [`WeightingConfig`]: every constant of every method, with defaults, deserialisable from
//!   the trainer's TOML.
//! - The methods: [`Dwa`] (ours), [`Equal`], [`Static`], [`Uncertainty`], [`GradNorm`],
//!   [`DwaLiu`], [`Dao`], [`Famo`], [`PcGrad`]; and [`DwaMain`] (main-task-first DWA, for one
//!   main task with auxiliaries; its weights do not sum to `T`: the main weight is 1).
//!
//! Weights are finite, positive and sum to the number of tasks `T`, except for
//! [`Uncertainty`], whose Kendall et al. weights are used unnormalised by default.
//!
//! ```
//! use fintune_dwa::{BatchCharacteristics, StepObservation, TaskWeighting, WeightingSpec};
//!
//! let spec: WeightingSpec = "dwa".parse()?;
//! let mut dwa = spec.build(2)?; // task 0: regression, task 1: classification
//! assert!(dwa.needs_grad_norms() && dwa.needs_batch() && !dwa.needs_gradients());
//!
//! let rarity = [0.8, 1.1, 2.5, 0.9]; // per-sample score rarity, training mean 1
//! let histogram = [1, 2, 1]; // batch samples per DAS class
//! let frequencies = [0.2, 0.6, 0.2]; // training class frequencies
//! let batch = BatchCharacteristics {
//!     rarity: &rarity,
//!     class_histogram: &histogram,
//!     class_frequencies: &frequencies,
//! };
//! let mut last = None;
//! for step in 0..20u64 {
//!     // The regression gradient is 5x weaker than the classification one.
//!     let losses = [0.05, 1.1];
//!     let grad_norms = [0.2, 1.0];
//!     let obs = StepObservation::new(&losses)
//!         .with_grad_norms(&grad_norms)
//!         .with_batch(batch)
//!         .at(step, 20, 0);
//!     last = Some(dwa.weights(&obs)?);
//! }
//! let w = last.unwrap();
//! assert!((w.sum() - 2.0).abs() < 1e-12);
//! assert!(w.values[0] > w.values[1]); // the weaker-gradient task is up-weighted
//! for (name, per_task) in w.terms.iter() {
//!     println!("{name}: {per_task:?}"); // g, r, c, u, target
//! }
//! let saved = dwa.state(); // goes into the checkpoint
//! dwa.restore(&saved)?;
//! # Ok::<(), fintune_dwa::Error>(())
//! ```

#![deny(missing_docs)]
// Per-task math walks several parallel per-task arrays; indexed loops read best there.
#![allow(clippy::needless_range_loop)]

use std::fmt;

use ndarray::{Array1, ArrayView1};

mod adam;
mod dao;
mod dwa;
mod dwa_liu;
mod dwa_main;
mod error;
mod famo;
mod fixed;
mod gradnorm;
mod normalise;
mod observation;
mod pcgrad;
mod persist;
mod rng;
mod sample_weights;
mod spec;
mod uncertainty;
mod weights;

pub use dao::{Dao, DaoConfig};
pub use dwa::{Dwa, DwaConfig};
pub use dwa_liu::{DwaLiu, DwaLiuConfig};
pub use dwa_main::{DwaMain, DwaMainConfig, Schedule};
pub use error::Error;
pub use famo::{Famo, FamoConfig, FamoUpdate};
pub use fixed::{Equal, Static};
pub use gradnorm::{GradNorm, GradNormConfig};
pub use observation::{BatchCharacteristics, EpochObservation, StepObservation, TaskKind};
pub use pcgrad::{PcGrad, PcGradConfig};
pub use sample_weights::{rarity_sample_weights, SampleWeightConfig};
pub use spec::{WeightingConfig, WeightingSpec};
pub use uncertainty::{Uncertainty, UncertaintyConfig};
pub use weights::{Terms, Weights};

/// The result of a gradient-combination method ([`PcGrad`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GradientCombination {
    /// The combined probe gradient; the trainer sets the probe's gradient to it.
    pub gradient: Array1<f32>,
    /// `c_j` with `gradient = sum_j c_j g_j` over the task gradients as given: the effective
    /// per-task weights of this step (all 1 when no gradients conflict). For logging.
    pub coefficients: Vec<f64>,
    /// Number of projections made (conflicting pairs met).
    pub projections: usize,
}

/// A multi-task loss-weighting method.
///
/// One step, as the trainer drives it:
/// 1. compute each task's unweighted batch loss, and, if [`needs_grad_norms`], the L2 norm of
///    its gradient with respect to the shared probe; if [`needs_gradients`], the flattened
///    probe gradients; if [`needs_batch`], the batch's [`BatchCharacteristics`];
/// 2. `weights(&obs)` and minimise `sum_i w_i L_i`;
/// 3. if [`combine_gradients`] returns `Some`, set the probe's gradient to the combination
///    (the other parameters keep the gradient of `sum_i w_i L_i`);
/// 4. after the optimiser step, if [`needs_post_step_losses`], recompute the losses on the same
///    batch and call [`after_step`];
/// 5. at the end of each epoch, [`end_epoch`] with the epoch's mean losses.
///
/// Save [`state`] in checkpoints; [`restore`] it into a method built from the same spec, task
/// count and config, and the following steps give bit-identical weights.
///
/// Every method returns the same [`term_names`] on every step, so history columns are stable.
///
/// [`needs_grad_norms`]: TaskWeighting::needs_grad_norms
/// [`needs_gradients`]: TaskWeighting::needs_gradients
/// [`needs_batch`]: TaskWeighting::needs_batch
/// [`combine_gradients`]: TaskWeighting::combine_gradients
/// [`needs_post_step_losses`]: TaskWeighting::needs_post_step_losses
/// [`after_step`]: TaskWeighting::after_step
/// [`end_epoch`]: TaskWeighting::end_epoch
/// [`state`]: TaskWeighting::state
/// [`restore`]: TaskWeighting::restore
/// [`term_names`]: TaskWeighting::term_names
pub trait TaskWeighting: fmt::Debug {
    /// The method's spec string; parses back to the [`WeightingSpec`] that built it
    /// (e.g. `"dwa"`, `"static:0.7,0.3"`).
    fn name(&self) -> &str;

    /// Number of tasks `T`.
    fn num_tasks(&self) -> usize;

    /// Names of the per-task diagnostic terms every [`Weights`] of this method carries, in order.
    fn term_names(&self) -> &'static [&'static str];

    /// Whether [`StepObservation::grad_norms`] is required (one backward pass per task).
    fn needs_grad_norms(&self) -> bool {
        false
    }

    /// Whether the trainer must extract the flattened per-task probe gradients (expensive) and
    /// hand them to [`combine_gradients`](TaskWeighting::combine_gradients). (A method that
    /// weights by gradient directions would read them from [`StepObservation::grads`]; no
    /// built-in method does, pcgrad only needs `combine_gradients`.)
    fn needs_gradients(&self) -> bool {
        false
    }

    /// Whether [`StepObservation::batch`] is required.
    fn needs_batch(&self) -> bool {
        false
    }

    /// Whether the trainer must call [`after_step`](TaskWeighting::after_step) with the losses
    /// of the same batch recomputed after the optimiser step (an extra forward pass).
    fn needs_post_step_losses(&self) -> bool {
        false
    }

    /// Computes this step's weights into `out`, reusing its allocations (no allocation once
    /// `out` has been used for this method).
    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error>;

    /// Computes this step's weights. Advances the method's state by one step.
    fn weights(&mut self, obs: &StepObservation<'_>) -> Result<Weights, Error> {
        let mut out = Weights::new();
        self.weights_into(obs, &mut out)?;
        Ok(out)
    }

    /// Combines the per-task probe gradients (of the unweighted losses, in task order) into
    /// one, for gradient-surgery methods; `Ok(None)` for loss-weighting methods (the default).
    fn combine_gradients(
        &mut self,
        grads: &[ArrayView1<'_, f32>],
    ) -> Result<Option<GradientCombination>, Error> {
        let _ = grads;
        Ok(None)
    }

    /// Receives the losses of the step's batch recomputed after the optimiser step. Only
    /// methods with [`needs_post_step_losses`](TaskWeighting::needs_post_step_losses) use it.
    fn after_step(&mut self, losses_after: &[f64]) -> Result<(), Error> {
        let _ = losses_after;
        Ok(())
    }

    /// Receives the mean per-task training losses of the epoch that just ended.
    fn end_epoch(&mut self, epoch: &EpochObservation<'_>) -> Result<(), Error> {
        let _ = epoch;
        Ok(())
    }

    /// Everything needed to continue exactly, as JSON (floats stored exactly).
    fn state(&self) -> serde_json::Value;

    /// Restores a [`state`](TaskWeighting::state) saved by the same method, task count and
    /// config. On error nothing changes.
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error>;
}
