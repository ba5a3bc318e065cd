//! `metrics.json`: the typed summary of a finished run.

use std::fmt;
use std::str::FromStr;

use fintune_dwa::WeightingSpec;
use fintune_model::Tuning;
use serde::{Deserialize, Serialize};

use crate::config::{as_text, serde_as_text, Imbalance, Strata};
use crate::metrics::MetricReport;
use crate::prepare::{Skipped, SplitInfo};

/// What one epoch gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean regression loss over the epoch's steps.
    pub train_loss_reg: f64,
    /// Mean classification loss (multi-task runs).
    pub train_loss_cls: Option<f64>,
    /// Validation metrics after the epoch.
    pub val: MetricReport,
    /// Whether validation MSE improved (the model was saved).
    pub improved: bool,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// Timing of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall time of this invocation (setup, training, evaluation, plots).
    pub wall_s: f64,
    /// Time inside training steps, over all invocations of the run.
    pub train_s: f64,
    /// Training samples per second inside steps.
    pub samples_per_s: f64,
    /// Share of step time spent on the per-task probe gradients (the weighting's overhead).
    pub probe_overhead_share: f64,
    /// Peak resident memory of this process, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Data-parallel training: the ranks and the cost of summing gradients across them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_parallel: Option<DataParallelTiming>,
}

/// What a data-parallel run's rank 0 measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataParallelTiming {
    /// Ranks in the job.
    pub ranks: usize,
    /// Mean wall time of one step's gradient allreduce, in this invocation, ms.
    pub allreduce_ms_per_step: f64,
}

/// Summary of the data a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Training examples.
    pub train: usize,
    /// Validation examples.
    pub val: usize,
    /// Test examples, when a test file was given.
    pub test: Option<usize>,
    /// How the validation set was obtained.
    pub split: SplitInfo,
    /// Rows skipped per input (`skip_invalid`).
    pub skipped: Vec<Skipped>,
    /// Number of data warnings.
    pub warnings: usize,
    /// Further tasks with their own examples (`[[tasks]]`), with their de-duplication counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<crate::further::FurtherInfo>,
}

/// Score classes of the auxiliary task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrataInfo {
    /// How the classes were cut.
    pub method: Strata,
    /// Number of classes (0 for single-task).
    pub classes: usize,
    /// Class thresholds.
    pub thresholds: Vec<f64>,
    /// Normalised entropy of the class shares.
    pub normalized_entropy: Option<f64>,
    /// Share of the score variance the classes explain.
    pub explained_variance: Option<f64>,
}

/// The task weighting of a run: `single-task`, or a weighting method of a multi-task run.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// One task: no weighting.
    SingleTask,
    /// A multi-task run's weighting.
    Weighting(WeightingSpec),
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::SingleTask => f.write_str("single-task"),
            Method::Weighting(w) => w.fmt(f),
        }
    }
}

impl FromStr for Method {
    type Err = fintune_dwa::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "single-task" => Ok(Method::SingleTask),
            s => s.parse().map(Method::Weighting),
        }
    }
}

serde_as_text!(Method);

/// `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Best epoch (1-based), chosen on validation MSE only.
    pub best_epoch: usize,
    /// Epochs trained.
    pub epochs_run: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Validation metrics of the best epoch.
    pub val: MetricReport,
    /// Test metrics of the best model, when test data was given.
    pub test: Option<MetricReport>,
    /// Per epoch.
    pub epochs: Vec<EpochLog>,
    /// The data.
    pub data: DataInfo,
    /// The score classes.
    pub strata: StrataInfo,
    /// The task weighting.
    pub weighting: Method,
    /// The regression loss.
    pub imbalance: Imbalance,
    /// The tuning mode.
    #[serde(with = "as_text")]
    pub tuning: Tuning,
    /// Timing and memory.
    pub timing: Timing,
    /// The saved model the backbone started from (`model.init`), with its weights' SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<crate::init::InitInfo>,
    /// Soft ordinal runs: the prediction fusion picked on validation (mix 0: not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<crate::eval::Fusion>,
}
