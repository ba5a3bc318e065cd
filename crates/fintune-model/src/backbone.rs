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
    /// Prefixes of the embedding variables (below layer 0). Empty in `fintune.json` files
    /// written before layer-wise learning rates existed.
    #[serde(default)]
    pub embedding_prefixes: Vec<String>,
    /// The pooling this family uses by default (mean for encoders, last token for decoders).
    pub default_pooling: Pooling,
    /// The padding side this family uses by default.
    pub padding_side: PaddingSide,
}

/// Where a backbone variable sits in the stack (for layer-wise learning rates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The embeddings, below layer 0.
    Embeddings,
    /// Transformer layer `i` (0-based, bottom to top), LoRA adapters of the layer included.
    Layer(usize),
    /// Anything else: a final norm, a pooler, shared tables, the heads.
    Other,
}

impl BackboneInfo {
    /// The depth of the variable `name` (a key of the backbone's or the adapters' store,
    /// without a `backbone.`/`adapters.` prefix).
    pub fn depth_of(&self, name: &str) -> Depth {
        if let Some(rest) = name.strip_prefix(self.layer_prefix.as_str()) {
            let index = rest.split('.').next().and_then(|i| i.parse::<usize>().ok());
            if let Some(i) = index.filter(|&i| i < self.num_layers) {
                return Depth::Layer(i);
            }
        }
        if self.embedding_prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            return Depth::Embeddings;
        }
        Depth::Other
    }
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
    // Only the safetensors headers are read here; config.json is checked against them (and
    // against sane bounds) before any tensor is created.
    let ckpt = Checkpoint::open_dir(dir)?;
    let base = VarStore::new(opts.device);
    // LoRA adapters are initialised on the CPU and then moved, so a run draws the same initial
    // adapters on every device (a GPU's generator differs from the CPU's).
    let adapters = VarStore::new(Device::Cpu);
    let lora = opts.lora.as_ref().map(|l| (adapters.root(), l));
    let b = Builder::new(base.root(), lora);
    let (net, prefix): (Box<dyn Backbone>, &str) = match model_type.as_str() {
        "bert" | "roberta" => {
            let cfg = bert::Config::from_json(&cfg_path, &text)?;
            let prefixes: &[&str] =
                if model_type == "bert" { &["", "bert."] } else { &["", "roberta."] };
            let prefix = find_prefix(&ckpt, dir, "embeddings.word_embeddings.weight", prefixes)?;
            cfg.check_weights(&cfg_path, &ckpt, prefix)?;
            (Box::new(bert::BertModel::new(b, &cfg)?), prefix)
        }
        "mpnet" => {
            let prefixes: &[&str] = &["", "mpnet."];
            let prefix = find_prefix(&ckpt, dir, "embeddings.word_embeddings.weight", prefixes)?;
            // Sizes are checked against the weights before anything is allocated.
            let cfg = mpnet::Config::from_checkpoint(&cfg_path, &text, &ckpt, prefix)?;
            (Box::new(mpnet::MpnetModel::new(b, &cfg)?), prefix)
        }
        "llama" | "qwen2" => {
            let cfg = llama::Config::from_json(&cfg_path, &text)?;
            let prefix = find_prefix(&ckpt, dir, "embed_tokens.weight", &["model.", ""])?;
            cfg.check_weights(&cfg_path, &ckpt, prefix)?;
            (Box::new(llama::LlamaModel::new(b, &cfg)?), prefix)
        }
        _ => unreachable!("model_type was checked against SUPPORTED above"),
    };
    let mut adapters = adapters;
    adapters.set_device(opts.device);
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

/// The first of `prefixes` under which the checkpoint holds `probe` (e.g. `bert.` for a
/// checkpoint saved with its task head); a [`Error::MissingTensor`] otherwise.
pub fn find_prefix<'a>(
    ckpt: &Checkpoint,
    dir: &Path,
    probe: &str,
    prefixes: &[&'a str],
) -> Result<&'a str> {
    ckpt.detect_prefix(probe, prefixes).ok_or_else(|| Error::MissingTensor {
        path: dir.join("model.safetensors"),
        name: format!("{}{probe}", prefixes.first().copied().unwrap_or_default()),
    })
}

/// Upper bounds on config.json sizes, far above any model this crate can train on one
/// machine: a value beyond them is a broken or hostile file, refused before allocation.
pub mod bounds {
    /// Vocabulary size.
    pub const VOCAB: i64 = 1 << 22;
    /// Hidden size.
    pub const HIDDEN: i64 = 1 << 16;
    /// Feed-forward (intermediate) size.
    pub const INTERMEDIATE: i64 = 1 << 18;
    /// Number of layers.
    pub const LAYERS: usize = 1024;
    /// Number of attention heads.
    pub const HEADS: i64 = 1 << 12;
    /// Number of positions (learned position embeddings).
    pub const POSITIONS: i64 = 1 << 20;
}

/// Checks that a config.json size `field = value` lies in `1..=max`.
pub fn check_size(config: &Path, field: &str, value: i64, max: i64) -> Result<()> {
    if !(1..=max).contains(&value) {
        return Err(Error::config(config, format!("{field} = {value} is outside 1..={max}")));
    }
    Ok(())
}

/// Checks that `num_hidden_layers` is sane and equals the number of layers the weights hold:
/// the indices `i` of the tensors named `{layer_prefix}{i}.…` are exactly `0..layers`.
pub fn check_layers(
    config: &Path,
    ckpt: &Checkpoint,
    layer_prefix: &str,
    layers: usize,
) -> Result<()> {
    if layers > bounds::LAYERS {
        return Err(Error::config(
            config,
            format!("num_hidden_layers = {layers} is above {}", bounds::LAYERS),
        ));
    }
    let found = ckpt.layer_indices(layer_prefix);
    if found.len() != layers || found.iter().copied().ne(0..layers) {
        let held = match (found.first(), found.last()) {
            (Some(a), Some(b)) => {
                format!("{} layers ({layer_prefix}{a} to {layer_prefix}{b})", found.len())
            }
            _ => format!("no tensor named {layer_prefix}N.*"),
        };
        return Err(Error::config(
            config,
            format!("num_hidden_layers = {layers}, but the weights hold {held}"),
        ));
    }
    Ok(())
}

/// The most tokens a backbone takes, from its config.json: `max_position_embeddings`, less
/// `pad_token_id + 1` for the families that count positions from the pad id (RoBERTa,
/// MPNet, ...); `None` for rotary families (Llama, Qwen2), whose positions are computed, and
/// for configs without the field.
pub fn position_limit(config: &serde_json::Value) -> Option<usize> {
    let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or_default();
    if ["llama", "qwen2", "mistral", "qwen3", "gemma", "gemma2", "phi3"].contains(&model_type) {
        return None;
    }
    let max = config.get("max_position_embeddings")?.as_u64()?;
    let offset = if ["roberta", "xlm-roberta", "camembert", "mpnet"].contains(&model_type) {
        config.get("pad_token_id").and_then(|v| v.as_u64()).unwrap_or(1) + 1
    } else {
        0
    };
    usize::try_from(max.saturating_sub(offset)).ok()
}
