//! `checkpoint/`: what `--resume` continues from: `state.safetensors` (model, optimiser moments,
//! loss parameters), `trainer.json` (where the run stands, with the configuration's hash) and
//! `config.toml` (the configuration it was made with). Replaced atomically after every epoch.

use fintune_model::weights::{self, Checkpoint};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::files::{replace_dir, write_atomic, write_json};
use super::metrics::EpochLog;
use super::{read_json, RunDir};
use crate::config::TrainConfig;
use crate::{Error, Result};

/// Where a run stands; saved in `checkpoint/trainer.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainerState {
    pub epochs_done: usize,
    pub global_step: u64,
    pub best_val_mse: f64,
    pub best_epoch: Option<usize>,
    pub bad_epochs: usize,
    pub weighting: serde_json::Value,
    pub history_rows: usize,
    pub epochs: Vec<EpochLog>,
    pub train_seconds: f64,
    pub probe_seconds: f64,
    pub samples: u64,
    pub finished: bool,
    /// [`super::config_hash`] of the run's configuration (empty in older checkpoints).
    #[serde(default)]
    pub config_hash: String,
}

impl TrainerState {
    /// The state before the first step.
    pub fn start(cfg: &TrainConfig) -> Self {
        TrainerState {
            epochs_done: 0,
            global_step: 0,
            best_val_mse: f64::INFINITY,
            best_epoch: None,
            bad_epochs: 0,
            weighting: serde_json::Value::Null,
            history_rows: 0,
            epochs: vec![],
            train_seconds: 0.0,
            probe_seconds: 0.0,
            samples: 0,
            finished: false,
            config_hash: super::config_hash(cfg),
        }
    }
}

/// Writes the checkpoint (atomically replacing the previous one).
pub(crate) fn save(
    run: &RunDir,
    cfg: &TrainConfig,
    tensors: &[(String, Tensor)],
    state: &TrainerState,
) -> Result<()> {
    replace_dir(&run.checkpoint(), |tmp| {
        weights::save(&tmp.join("state.safetensors"), tensors, None)?;
        write_json(&tmp.join("trainer.json"), state)?;
        write_atomic(&tmp.join("config.toml"), cfg.to_toml().as_bytes())
    })
}

/// Reads `trainer.json` and opens `state.safetensors` for a resume of a run with `cfg`.
pub(crate) fn load(run: &RunDir, cfg: &TrainConfig) -> Result<(TrainerState, Checkpoint)> {
    let st: TrainerState = read_json(&run.checkpoint().join("trainer.json"))?;
    if st.finished {
        return Err(Error::Resume {
            path: run.root.clone(),
            reason: "the run already finished".into(),
        });
    }
    if !st.config_hash.is_empty() && st.config_hash != super::config_hash(cfg) {
        return Err(Error::Resume {
            path: run.root.clone(),
            reason: "the checkpoint was made with another configuration (its config hash differs)"
                .into(),
        });
    }
    let ck = Checkpoint::open_files(&[run.checkpoint().join("state.safetensors")])?;
    Ok((st, ck))
}
