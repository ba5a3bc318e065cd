//! The [`Backbone`] trait, pooling, and loading a backbone from a Hugging Face model folder.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::layers::{Builder, LoraConfig};
use crate::tokenize::{Batch, PaddingSide};
use crate::weights::Checkpoint;
use crate::{bert, llama, mpnet, Error, Result};

/// Static facts about a backbone that the heads, tuning modes and probes need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackboneInfo {
    /// `model_type` from config.json (`bert`, `roberta`, `mpnet`, `llama`, `qwen2`).
    pub model_type: String,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Variable-name prefix of layer `i` is `format!("{layer_prefix}{i}.")`.
    pub layer_prefix: String,
    /// Prefixes of variables after the last layer that belong with it (a final norm).
    pub final_prefixes: Vec<String>,
    /// The pooling this family uses by default (mean for encoders, last token for decoders).
    pub default_pooling: Pooling,
    /// The padding side this family uses by default.
    pub padding_side: PaddingSide,
}

/// Per-batch tensors every layer needs (attention masks, rotary tables), built by
/// [`Backbone::embed_t`] without autograd.
#[derive(Debug)]
pub struct LayerContext {
    /// The family's tensors, in its own order.
    pub tensors: Vec<Tensor>,
}

/// A transformer that maps a token batch to hidden states `[batch, seq, hidden]`, layer by
/// layer: `finish(layer_t(L-1, ... layer_t(0, embed_t(batch))))`. The layer-wise form is what
/// gradient checkpointing recomputes.
///
/// Implementations hold their weights in the [`VarStore`] they were built on, under names
/// equal to the checkpoint keys (without the `bert.`/`roberta.`/`mpnet.`/`model.` prefix).
pub trait Backbone: std::fmt::Debug + Send {
    /// Static facts about the model.
    fn info(&self) -> &BackboneInfo;
    /// Token embeddings `[B, L, H]` (the input of layer 0) and the per-batch context.
    fn embed_t(&self, batch: &Batch, train: bool) -> (Tensor, LayerContext);
    /// Transformer layer `i`.
    fn layer_t(&self, i: usize, x: &Tensor, ctx: &LayerContext, train: bool) -> Tensor;
    /// After the last layer (a final norm for decoders; nothing for encoders).
    fn finish(&self, x: &Tensor) -> Tensor {
        x.shallow_clone()
    }
    /// Last hidden states. `train` enables dropout.
    fn forward_t(&self, batch: &Batch, train: bool) -> Tensor {
        let (mut x, ctx) = self.embed_t(batch, train);
        for i in 0..self.info().num_layers {
            x = self.layer_t(i, &x, &ctx, train);
        }
        self.finish(&x)
    }
    /// Folds LoRA adapters into the base weights (no-op without adapters).
    fn merge_lora(&mut self) {}
}

/// How token states become one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over real (unmasked) tokens; sentence-transformers' choice for MiniLM.
    #[default]
    Mean,
    /// The first token (`[CLS]`/`<s>`).
    Cls,
    /// Element-wise max over real tokens.
    Max,
    /// The last real token (decoders: it has attended to the whole text).
    Last,
}

impl FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            "max" => Pooling::Max,
            "last" => Pooling::Last,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown pooling `{other}` (mean, cls, max, last)"
                )))
            }
        })
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::Last => "last",
        })
    }
}

impl Pooling {
    /// Pools `hidden [B, L, H]` with `mask [B, L]` (1 = token) into `[B, H]`.
    pub fn pool(&self, hidden: &Tensor, mask: &Tensor) -> Tensor {
        match self {
            Pooling::Mean => mean_pool(hidden, mask),
            Pooling::Cls => hidden.select(1, 0),
            Pooling::Max => {
                let m = mask.unsqueeze(-1).to_kind(Kind::Bool).logical_not();
                hidden.masked_fill(&m, -1e9).amax([1], false)
            }
            Pooling::Last => {
                // Index of the last real token per row; works for left and right padding.
                let l = mask.size()[1];
                let pos = Tensor::arange(l, (Kind::Int64, mask.device())).unsqueeze(0);
                let last = (mask.to_kind(Kind::Int64) * pos).argmax(1, false);
                let idx = last.view([-1, 1, 1]).expand([-1, 1, hidden.size()[2]], false);
                hidden.gather(1, &idx, false).squeeze_dim(1)
            }
        }
    }
}

/// Mean over the mask, as sentence-transformers computes it (the count is clamped at 1e-9).
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.unsqueeze(-1).to_kind(hidden.kind());
    let summed = (hidden * &m).sum_dim_intlist([1].as_slice(), false, hidden.kind());
    let count = m.sum_dim_intlist([1].as_slice(), false, hidden.kind()).clamp_min(1e-9);
    summed / count
}

/// Options for [`load_backbone`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where the weights live. Default: CPU.
    pub device: Device,
    /// Floating-point kind of the weights. Default: `Float` (f32).
    pub kind: Kind,
    /// LoRA adapters to add. Default: none.
    pub lora: Option<LoraConfig>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { device: Device::Cpu, kind: Kind::Float, lora: None }
    }
}

/// A backbone with its weights: the base store (checkpoint names) and the adapter store.
#[derive(Debug)]
pub struct LoadedBackbone {
    /// The network.
    pub net: Box<dyn Backbone>,
    /// Base weights, named as in the checkpoint (without its prefix).
    pub base: VarStore,
    /// LoRA adapter weights (empty without LoRA).
    pub adapters: VarStore,
    /// The folder it came from.
    pub dir: PathBuf,
    /// config.json as read.
    pub config_json: serde_json::Value,
    /// The LoRA config, when adapters were added.
    pub lora: Option<LoraConfig>,
}

/// The `model_type`s this crate implements.
pub const SUPPORTED: &str = "bert, roberta, mpnet, llama, qwen2";

/// Loads a backbone from a Hugging Face model folder (`config.json`, `model.safetensors` or
/// sharded safetensors with their index). `model_type` picks the implementation.
pub fn load_backbone(dir: &Path, opts: &LoadOptions) -> Result<LoadedBackbone> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let config_json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::json(&cfg_path, e))?;
    let model_type = config_json
        .get("model_type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::config(&cfg_path, "missing string field `model_type`"))?
        .to_owned();
    if !["bert", "roberta", "mpnet", "llama", "qwen2"].contains(&model_type.as_str()) {
        return Err(Error::UnsupportedModel { path: cfg_path, model_type, supported: SUPPORTED });
    }
    if let Some(l) = &opts.lora {
        l.validate()?;
    }
    let ckpt = Checkpoint::open_dir(dir)?;
    let base = VarStore::new(opts.device);
    let adapters = VarStore::new(opts.device);
    let lora = opts.lora.as_ref().map(|l| (adapters.root(), l));
    let b = Builder::new(base.root(), lora);
    let (net, prefixes, probe): (Box<dyn Backbone>, &[&str], &str) = match model_type.as_str() {
        "bert" | "roberta" => {
            let cfg = bert::Config::from_json(&cfg_path, &text)?;
            let net = bert::BertModel::new(b, &cfg)?;
            let prefixes: &[&str] =
                if model_type == "bert" { &["", "bert."] } else { &["", "roberta."] };
            (Box::new(net), prefixes, "embeddings.word_embeddings.weight")
        }
        "mpnet" => {
            let probe = "embeddings.word_embeddings.weight";
            let prefixes: &[&str] = &["", "mpnet."];
            // Sizes are checked against the weights before anything is allocated.
            let prefix = ckpt.detect_prefix(probe, prefixes).unwrap_or("");
            let cfg = mpnet::Config::from_checkpoint(&cfg_path, &text, &ckpt, prefix)?;
            (Box::new(mpnet::MpnetModel::new(b, &cfg)?), prefixes, probe)
        }
        "llama" | "qwen2" => {
            let cfg = llama::Config::from_json(&cfg_path, &text)?;
            let net = llama::LlamaModel::new(b, &cfg)?;
            (Box::new(net), &["model.", ""], "embed_tokens.weight")
        }
        _ => unreachable!("model_type was checked against SUPPORTED above"),
    };
    let prefix = ckpt.detect_prefix(probe, prefixes).ok_or_else(|| Error::MissingTensor {
        path: dir.join("model.safetensors"),
        name: format!("{}{probe}", prefixes[0]),
    })?;
    let mut base = base;
    if opts.kind != Kind::Float {
        base.set_kind(opts.kind);
    }
    ckpt.load_into(&base, prefix)?;
    if opts.lora.is_some() {
        base.freeze();
    }
    Ok(LoadedBackbone {
        net,
        base,
        adapters,
        dir: dir.to_owned(),
        config_json,
        lora: opts.lora.clone(),
    })
}
