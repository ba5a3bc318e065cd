//! fintune's trainer: multi-task fine-tuning of a pretrained transformer for sentiment-score
//! regression, with data-aware score classes (fintune-das) and dynamic task weights
//! (fintune-dwa), plus evaluation, prediction and the experiment harness.
//!
//! Main pieces:
//! - [`TrainConfig`] (every option and default, TOML), resolved once into a validated
//!   [`config::Resolved`], and [`trainer::train`], which leaves a run folder ([`run`], the one
//!   owner of its formats): `config.toml`, `das.json`, `history.csv`, `metrics.json`, `model/`,
//!   `plots/`, `report.md`, `checkpoint/`. The run's tasks are declared as `[[tasks]]`
//!   ([`config::TaskSpec`]) or implied by `[data]` + `[task]`.
//! - [`step::MultiTaskStep`], one training step with typed per-task output, and [`eval`],
//!   prediction and evaluation over tokenized examples.
//! - [`metrics::RegressionMetrics`], the one implementation of the metrics (the
//!   [`metrics::Metric`] seam).
//! - [`ensemble`]: seed ensembles (`--ensemble N`): members, the ensemble model folder.
//! - [`predict::Predictor`]: a saved model (or seed ensemble) that scores texts, batch by batch;
//!   [`predict::Encoder`]: a backbone's sentence embeddings.
//! - [`progress::Progress`]: progress rendering kept apart from the loop.
//! - [`init`]: the warm start of a run's backbone from a saved model (`model.init`).
//!
//! ```no_run
//! use fintune_train::{trainer, progress, TrainConfig};
//! # fn main() -> Result<(), fintune_train::Error> {
//! let mut cfg = TrainConfig::default();
//! cfg.data.train = vec!["fixtures/train.jsonl".into()];
//! cfg.optim.epochs = 1;
//! let mut bars = progress::for_terminal(true);
//! match trainer::train(&cfg, "runs/example".as_ref(), &Default::default(), bars.as_mut())? {
//!     trainer::Outcome::Finished(m) => println!("validation MSE {:.4}", m.val.mse),
//!     trainer::Outcome::Interrupted { .. } => unreachable!("no --stop-after"),
//!     trainer::Outcome::Worker { .. } => unreachable!("one process, not a data-parallel rank"),
//! }
//! # Ok(()) }
//! ```
//!
//! Architecture Invariant: this is the only crate that depends on the other fintune crates;
//! the binary `fintune` is a thin layer over this library.

#![deny(missing_docs)]

pub mod batching;
pub mod compare;
pub mod config;
pub mod dist;
pub mod ensemble;
mod error;
pub mod eval;
pub mod further;
pub mod init;
pub mod metrics;
pub mod optim;
pub mod plots;
pub mod predict;
pub mod prepare;
pub mod progress;
pub mod report;
pub mod run;
pub mod shard;
pub mod stats;
pub mod step;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Error, Result};
