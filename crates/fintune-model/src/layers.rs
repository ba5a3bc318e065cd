//! Building blocks shared by the model families: a LoRA-aware [`Linear`], layer and RMS
//! norms, embeddings, and the [`Builder`] that names their variables after checkpoint keys.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::Tensor;

use crate::{Error, Result};

/// LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): a frozen base
/// weight `W` plus a trainable low-rank update `(alpha / r) * B A`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r of the update. Default: 8.
    pub rank: i64,
    /// Scaling numerator alpha; the update is scaled by alpha / r. Default: 16.
    pub alpha: f64,
    /// Dropout on the adapter's input during training. Default: 0.05.
    pub dropout: f64,
    /// Names of the linear modules that get adapters (the last component of the module path,
    /// e.g. `q_proj`, or `query` for BERT) or a dotted suffix of its path (e.g.
    /// `attention.output.dense`). Default: the attention projections q/k/v/o of every
    /// supported family (`q_proj`, `k_proj`, `v_proj`, `o_proj`; BERT's `query`, `key`,
    /// `value`, `attention.output.dense`; MPNet's `attn.q`, `attn.k`, `attn.v`, `attn.o`).
    /// Add `gate_proj`, `up_proj`, `down_proj` for the MLP.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "query",
                "key",
                "value",
                "attention.output.dense",
                "attn.q",
                "attn.k",
                "attn.v",
                "attn.o",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl LoraConfig {
    /// A config with rank `r` and the other fields at their defaults (alpha = 2r).
    pub fn with_rank(rank: i64) -> Self {
        LoraConfig { rank, alpha: 2.0 * rank as f64, ..Default::default() }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.rank < 1 {
            return Err(Error::Invalid(format!("LoRA rank must be >= 1, got {}", self.rank)));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::Invalid(format!("LoRA alpha must be > 0, got {}", self.alpha)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Invalid(format!(
                "LoRA dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(Error::Invalid("LoRA needs at least one target module".into()));
        }
        Ok(())
    }
}

/// Creates variables under matching names in the base (checkpoint) store and, for LoRA, in
/// a separate adapter store.
#[derive(Debug, Clone)]
pub struct Builder<'a> {
    base: nn::Path<'a>,
    adapters: Option<(nn::Path<'a>, &'a LoraConfig)>,
}

impl<'a> Builder<'a> {
    /// A builder over `base`; with `lora`, linear layers whose name is a target also get
    /// adapters in `lora.0` under the same path.
    pub fn new(base: nn::Path<'a>, lora: Option<(nn::Path<'a>, &'a LoraConfig)>) -> Self {
        Builder { base, adapters: lora }
    }

    /// The builder for a sub-module.
    pub fn pp(&self, name: impl std::fmt::Display) -> Builder<'a> {
        let name = name.to_string();
        Builder {
            base: self.base.sub(&name),
            adapters: self.adapters.as_ref().map(|(p, c)| (p.sub(&name), *c)),
        }
    }

    /// A variable (initialised to zeros: model weights always come from a checkpoint).
    pub fn weight(&self, name: &str, dims: &[i64]) -> Tensor {
        self.base.zeros(name, dims)
    }

    /// A variable with an explicit initialisation (heads trained from scratch).
    pub fn init(&self, name: &str, dims: &[i64], init: Init) -> Tensor {
        self.base.var(name, dims, init)
    }

    /// `nn::Linear`-style layer with `weight [out, in]` and optional `bias [out]`; gets LoRA
    /// adapters when its name is a LoRA target.
    pub fn linear(&self, name: &str, in_dim: i64, out_dim: i64, bias: bool) -> Linear {
        let p = self.pp(name);
        let weight = p.weight("weight", &[out_dim, in_dim]);
        let bias = bias.then(|| p.weight("bias", &[out_dim]));
        let lora = match &self.adapters {
            Some((ap, cfg)) if cfg.targets.iter().any(|t| self.module_matches(name, t)) => {
                let ap = ap.sub(name);
                let bound = 1.0 / (in_dim as f64).sqrt();
                let a = ap.sub("lora_A").var(
                    "weight",
                    &[cfg.rank, in_dim],
                    Init::Uniform { lo: -bound, up: bound },
                );
                let b = ap.sub("lora_B").var("weight", &[out_dim, cfg.rank], Init::Const(0.0));
                Some(LoraAdapter { a, b, scale: cfg.alpha / cfg.rank as f64, dropout: cfg.dropout })
            }
            _ => None,
        };
        Linear { weight, bias, lora }
    }

    /// Whether the module `name` below this builder is named by LoRA target `target`: the
    /// target equals the module's last path component or a dotted suffix of its full path
    /// (e.g. `attention.output.dense` picks BERT's attention output projection only).
    fn module_matches(&self, name: &str, target: &str) -> bool {
        if target == name {
            return true;
        }
        let mut full: Vec<&str> = self.base.components().collect();
        full.push(name);
        let full = full.join(".");
        full.ends_with(&format!(".{target}")) || full == target
    }

    /// Layer norm with `weight` and `bias` (BERT's `LayerNorm`).
    pub fn layer_norm(&self, name: &str, dim: i64, eps: f64) -> LayerNorm {
        let p = self.pp(name);
        LayerNorm { weight: p.weight("weight", &[dim]), bias: p.weight("bias", &[dim]), dim, eps }
    }

    /// RMS norm with a `weight` (Llama's `RMSNorm`).
    pub fn rms_norm(&self, name: &str, dim: i64, eps: f64) -> RmsNorm {
        RmsNorm { weight: self.pp(name).weight("weight", &[dim]), eps }
    }

    /// Embedding table `weight [num, dim]`.
    pub fn embedding(&self, name: &str, num: i64, dim: i64) -> Embedding {
        Embedding { weight: self.pp(name).weight("weight", &[num, dim]) }
    }
}

/// A LoRA adapter's two factors.
#[derive(Debug)]
pub struct LoraAdapter {
    /// `lora_A.weight [r, in]`.
    pub a: Tensor,
    /// `lora_B.weight [out, r]`.
    pub b: Tensor,
    /// alpha / r.
    pub scale: f64,
    /// Dropout on the adapter input.
    pub dropout: f64,
}

/// A linear layer `y = x W^T + b`, plus `scale * B A x` when it carries a LoRA adapter.
#[derive(Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// The adapter, when LoRA targets this layer.
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    /// Applies the layer; `train` enables the adapter's dropout.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            None => y,
            Some(l) => {
                // Adapters stay in f32 when the base runs in bf16.
                let h = x
                    .dropout(l.dropout, train)
                    .to_kind(l.a.kind())
                    .linear::<&Tensor>(&l.a, None)
                    .linear::<&Tensor>(&l.b, None);
                let kind = y.kind();
                y + (h * l.scale).to_kind(kind)
            }
        }
    }

    /// Folds the adapter into the base weight (`W += scale * B A`) and drops it: same outputs in
    /// evaluation, no adapter cost at inference.
    pub fn merge(&mut self) {
        if let Some(l) = self.lora.take() {
            tch::no_grad(|| {
                let delta = l.b.matmul(&l.a) * l.scale;
                let _ = self.weight.g_add_(&delta.to_kind(self.weight.kind()));
            });
        }
    }
}

/// Layer normalisation over the last dimension.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    /// Applies the norm.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.dim], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// Root-mean-square normalisation (Zhang & Sennrich 2019), computed in f32.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Applies the norm.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(tch::Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, tch::Kind::Float);
        let normed = xf * (var + self.eps).rsqrt();
        &self.weight * normed.to_kind(kind)
    }
}

/// An embedding table.
#[derive(Debug)]
pub struct Embedding {
    /// `[num, dim]`.
    pub weight: Tensor,
}

impl Embedding {
    /// Looks up `ids`.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, ids, -1, false, false)
    }
}

/// Activation functions named as in Hugging Face configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (`gelu`).
    Gelu,
    /// Tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// ReLU.
    Relu,
    /// SiLU / swish (`silu`, `swish`).
    Silu,
}

impl Activation {
    /// Parses a config's `hidden_act`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            _ => return None,
        })
    }

    /// Applies the activation.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Activation::Gelu => x.gelu("none"),
            Activation::GeluTanh => x.gelu("tanh"),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }
}

/// The most negative finite value of a floating kind (`torch.finfo(kind).min`): the additive
/// attention mask value, as transformers uses it.
pub fn mask_min(kind: tch::Kind) -> f64 {
    match kind {
        tch::Kind::BFloat16 => -3.389_531_389_251_535_5e38,
        tch::Kind::Half => -65504.0,
        tch::Kind::Double => f64::MIN,
        _ => f64::from(f32::MIN),
    }
}
