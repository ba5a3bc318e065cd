//! Warm start from a previous run (`model.init = "RUN/model"`, `--init DIR`): the backbone
//! starts from the fine-tuned weights of a saved model folder (LoRA adapters merged into the
//! base weights) instead of the pretrained ones; the heads start fresh, seeded as usual. This
//! is the *sequential* control of multi-task learning: train on one data set, then fine-tune
//! on the main task.
//!
//! The folder must have been trained from the same base model as `model.backbone` (the
//! SHA-256 of the base weights recorded in its `fintune.json` equals that of
//! `model.backbone`'s weights, and the architecture facts agree). The SHA-256 of the init
//! folder's own weights goes into the resolved configuration (`model.init_sha256`, written
//! to `config.toml`) and `metrics.json`, so a run resumed or reused with other init weights
//! is refused like any other configuration change.

use std::path::{Path, PathBuf};

use fintune_model::multitask::base_hash;
use fintune_model::{MultiTaskModel, SavedModel, Tuning};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::config::ModelConfig;
use crate::{Error, Result};

/// Where a run's backbone started (`metrics.json`'s `init`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitInfo {
    /// The saved model folder.
    pub dir: PathBuf,
    /// SHA-256 of its weights.
    pub sha256: String,
}

fn init_error(dir: &Path, reason: impl Into<String>) -> Error {
    Error::Init { dir: dir.to_owned(), reason: reason.into() }
}

/// Reads the `fintune.json` of a saved model folder.
fn saved_model(dir: &Path) -> Result<SavedModel> {
    let path = dir.join("fintune.json");
    if !path.is_file() {
        return Err(init_error(
            dir,
            "not a saved fintune model folder (no fintune.json; pass a run's model/ folder)",
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
}

/// Checks `model.init` and returns the SHA-256 of its weights (None without `init`): the
/// folder is a saved model trained from the same base weights as `model.backbone`, and
/// matches `model.init_sha256` when that is given.
pub fn resolve(model: &ModelConfig) -> Result<Option<String>> {
    let Some(dir) = &model.init else {
        if model.init_sha256.is_some() {
            return Err(Error::Config("model.init_sha256 is set but model.init is not".into()));
        }
        return Ok(None);
    };
    let saved = saved_model(dir)?;
    let base = base_hash(&model.backbone)?;
    if saved.base_sha256 != base {
        return Err(init_error(
            dir,
            format!(
                "it was trained from another base model ({}, sha256 {}) than model.backbone {} (sha256 {base})",
                saved.base_dir.display(),
                saved.base_sha256,
                model.backbone.display()
            ),
        ));
    }
    let sha = base_hash(dir)?;
    if let Some(want) = &model.init_sha256 {
        if *want != sha {
            return Err(init_error(
                dir,
                format!("its weights have sha256 {sha}, the configuration's model.init_sha256 is {want}"),
            ));
        }
    }
    Ok(Some(sha))
}

/// Loads the init folder's model on `device`, LoRA adapters merged into the base weights.
pub fn load(dir: &Path, device: Device) -> Result<MultiTaskModel> {
    let (mut model, saved) = MultiTaskModel::load(dir, device)?;
    if matches!(saved.spec.tuning, Tuning::Lora(_)) {
        model.merge_lora();
    }
    Ok(model)
}

/// Copies `from`'s backbone weights into `model`'s backbone (heads untouched). `dir` names the
/// init folder in errors. Returns the number of tensors copied.
pub fn apply(model: &MultiTaskModel, from: &MultiTaskModel, dir: &Path) -> Result<usize> {
    let (a, b) = (model.info(), from.info());
    if (&a.model_type, a.hidden_size, a.num_layers) != (&b.model_type, b.hidden_size, b.num_layers)
    {
        return Err(init_error(
            dir,
            format!(
                "its backbone is {} ({} layers, hidden size {}), model.backbone is {} ({} layers, hidden size {})",
                b.model_type, b.num_layers, b.hidden_size, a.model_type, a.num_layers, a.hidden_size
            ),
        ));
    }
    model.copy_backbone_from(from).map_err(|e| init_error(dir, e.to_string()))
}
