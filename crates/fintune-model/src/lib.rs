//! Transformer backbones and multi-task heads for sentiment regression, on libtorch (`tch`).
//!
//! - Backbones load from Hugging Face model folders (`config.json`, safetensors,
//!   `tokenizer.json`); `model_type` picks the implementation behind the [`Backbone`] trait:
//!   [`bert`] (`bert`, `roberta`), [`mpnet`] (`mpnet`) and [`llama`] (`llama`, `qwen2`).
//!   Weight names equal the checkpoint keys, so loading is a name-for-name, memory-mapped
//!   safetensors read ([`weights::Checkpoint`]).
//! - [`gguf`] reads GGUF files and converts a `llama` GGUF (e.g. SmolLM2-135M) into such a folder.
//! - [`TextEncoder`] turns texts into typed, per-batch padded [`Batch`]es.
//! - [`MultiTaskModel`] puts a [`heads::RegressionHead`] and an optional
//!   [`heads::ClassificationHead`] (and further named heads, [`ExtraHead`]) on the pooled
//!   representation; it knows the fine-tuning
//!   modes ([`Tuning`]: full, frozen, top-N layers, LoRA), the parameter groups, the shared
//!   gradient probes ([`Probe`]), and saves/loads a run's `model/` folder.
//!
//! ```no_run
//! use fintune_model::{MultiTaskModel, ModelSpec, HeadsConfig};
//! use std::path::Path;
//!
//! # fn main() -> Result<(), fintune_model::Error> {
//! let dir = Path::new(".fintune/models/all-MiniLM-L6-v2");
//! let spec = ModelSpec { heads: HeadsConfig { num_classes: Some(5), ..Default::default() }, ..Default::default() };
//! let model = MultiTaskModel::new(dir, &spec, tch::Device::Cpu)?;
//! let enc = model.text_encoder(dir)?;
//! let batch = enc.batch(&["Shares of XYZ plunged 20% after an earnings miss"], tch::Device::Cpu)?;
//! let out = model.forward_t(&batch, false);
//! assert_eq!(out.score.size(), [1]);
//! assert_eq!(out.logits.unwrap().size(), [1, 5]);
//! # Ok(()) }
//! ```
//!
//! Architecture Invariant: this crate knows nothing of datasets, DAS or task weighting;
//! the trainer passes class counts in and stores its own data in `fintune.json`'s `extra`.

#![deny(missing_docs)]

pub mod backbone;
pub mod bert;
mod error;
pub mod gguf;
pub mod heads;
pub mod kernels;
pub mod layers;
pub mod llama;
pub mod mpnet;
pub mod multitask;
pub mod tokenize;
pub mod weights;

pub use backbone::{
    load_backbone, Backbone, BackboneInfo, Depth, LoadOptions, LoadedBackbone, Pooling,
};
pub use error::{Error, Result};
pub use heads::{ExtraHead, HeadsConfig};
pub use layers::LoraConfig;
pub use multitask::{ModelSpec, MultiTaskModel, Outputs, Param, Part, Probe, SavedModel, Tuning};
pub use tokenize::{Batch, Encoded, InputMode, PaddingSide, PairStyle, TextEncoder};

/// Picks a device from `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available).
pub fn device_from_str(s: &str) -> Result<tch::Device> {
    match s {
        "cpu" => Ok(tch::Device::Cpu),
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cuda" => cuda_device(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => cuda_device(n),
            None => {
                Err(Error::Invalid(format!("unknown device `{other}` (cpu, cuda, cuda:N, auto)")))
            }
        },
    }
}

fn cuda_device(n: usize) -> Result<tch::Device> {
    if !tch::Cuda::is_available() {
        return Err(Error::Invalid(
            "--device cuda: libtorch sees no CUDA device (no GPU, no driver, or a CPU-only setup: run `cargo xtask setup --cuda` and build with --features cuda)".into(),
        ));
    }
    if n >= tch::Cuda::device_count() as usize {
        return Err(Error::Invalid(format!(
            "--device cuda:{n}: only {} CUDA devices",
            tch::Cuda::device_count()
        )));
    }
    Ok(tch::Device::Cuda(n))
}
