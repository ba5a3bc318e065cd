//! Decoder LLMs of the Llama family: `llama` (Llama, TinyLlama, SmolLM) and `qwen2` (q/k/v
//! biases, usually tied embeddings).
//!
//! Mirrors `transformers`' `LlamaModel`/`Qwen2Model`: pre-norm blocks with RMSNorm, rotary
//! position embeddings (theta from the config, `linear` and `llama3` rope scaling), grouped-
//! query attention, SwiGLU MLP, causal attention combined with the padding mask.
//!
//! Positions are counted over real tokens (`cumsum(mask) - 1`), so a text gets the same
//! hidden states with left padding, right padding or none (transformers does the same when
//! it is given these `position_ids`, as `generate` does).
//! Variable names equal the checkpoint keys without the `model.` prefix
//! (`embed_tokens.weight`, `layers.0.self_attn.q_proj.weight`, `norm.weight`).

use std::path::Path;

use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::backbone::{Backbone, BackboneInfo, LayerContext, Pooling};
use crate::layers::{Activation, Builder, Embedding, Linear, RmsNorm};
use crate::tokenize::{Batch, PaddingSide};
use crate::weights::Checkpoint;
use crate::{Error, Result};

/// `rope_scaling` as written in config.json.
#[derive(Debug, Clone, Deserialize)]
pub struct HfRopeScaling {
    /// `default`, `linear` or `llama3`.
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Scaling factor.
    #[serde(default)]
    pub factor: Option<f64>,
    /// Llama 3 low-frequency factor.
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    /// Llama 3 high-frequency factor.
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    /// Llama 3 original context length.
    #[serde(default)]
    pub original_max_position_embeddings: Option<f64>,
}

/// The fields of a Llama/Qwen2 `config.json` this implementation reads.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// `model_type` (the family).
    pub model_type: String,
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: i64,
    /// Number of key/value heads (grouped-query attention; default: all).
    #[serde(default)]
    pub num_key_value_heads: Option<i64>,
    /// Width of one attention head.
    #[serde(default)]
    pub head_dim: Option<i64>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base frequency.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Rotary scaling.
    #[serde(default)]
    pub rope_scaling: Option<HfRopeScaling>,
    /// Activation of the feed-forward layer.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Whether q/k/v/o projections have biases.
    #[serde(default)]
    pub attention_bias: Option<bool>,
    /// Whether the MLP projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Whether the LM head shares the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Dropout on attention probabilities.
    #[serde(default)]
    pub attention_dropout: f64,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_act() -> String {
    "silu".into()
}

/// Rotary scaling, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 {
        /// Scaling of the low frequencies.
        factor: f64,
        /// Wavelengths above `original_max_positions / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_positions / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was trained with.
        original_max_positions: f64,
    },
}

/// Validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `true` for Qwen2 (q/k/v biases).
    pub qwen2: bool,
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Number of attention heads.
    pub num_heads: i64,
    /// Number of key/value heads (grouped-query attention).
    pub num_kv_heads: i64,
    /// Width of one attention head.
    pub head_dim: i64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base frequency.
    pub rope_theta: f64,
    /// Rotary scaling.
    pub rope_scaling: RopeScaling,
    /// Activation of the feed-forward layer.
    pub act: Activation,
    /// Whether q/k/v projections have biases.
    pub qkv_bias: bool,
    /// Whether the output projection has a bias.
    pub o_bias: bool,
    /// Whether the MLP projections have biases.
    pub mlp_bias: bool,
    /// Whether the LM head shares the token embedding.
    pub tie_word_embeddings: bool,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
}

impl Config {
    /// Parses and validates `config.json` text read from `path`.
    pub fn from_json(path: &Path, text: &str) -> Result<Self> {
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| Error::json(path, e))?;
        Self::resolve(path, &hf)
    }

    /// Validates an [`HfConfig`].
    pub fn resolve(path: &Path, hf: &HfConfig) -> Result<Self> {
        let qwen2 = match hf.model_type.as_str() {
            "llama" => false,
            "qwen2" => true,
            other => {
                return Err(Error::config(
                    path,
                    format!("llama.rs cannot build model_type `{other}`"),
                ))
            }
        };
        let nh = hf.num_attention_heads;
        let nkv = hf.num_key_value_heads.unwrap_or(nh);
        if nh <= 0 || nkv <= 0 || nh % nkv != 0 {
            return Err(Error::config(
                path,
                format!("num_attention_heads {nh} must be a positive multiple of num_key_value_heads {nkv}"),
            ));
        }
        let head_dim = match hf.head_dim {
            Some(d) => d,
            None if hf.hidden_size % nh == 0 => hf.hidden_size / nh,
            None => {
                return Err(Error::config(
                    path,
                    format!(
                        "hidden_size {} is not a multiple of num_attention_heads {nh}",
                        hf.hidden_size
                    ),
                ))
            }
        };
        if head_dim % 2 != 0 {
            return Err(Error::config(
                path,
                format!("head_dim {head_dim} must be even for rotary embeddings"),
            ));
        }
        let act = Activation::parse(&hf.hidden_act).ok_or_else(|| {
            Error::config(path, format!("unsupported hidden_act `{}`", hf.hidden_act))
        })?;
        let rope_scaling = match &hf.rope_scaling {
            None => RopeScaling::None,
            Some(s) => {
                let need = |v: Option<f64>, name: &str| {
                    v.ok_or_else(|| {
                        Error::config(
                            path,
                            format!("rope_scaling `{}` needs `{name}`", s.rope_type),
                        )
                    })
                };
                match s.rope_type.as_str() {
                    "default" => RopeScaling::None,
                    "linear" => RopeScaling::Linear { factor: need(s.factor, "factor")? },
                    "llama3" => RopeScaling::Llama3 {
                        factor: need(s.factor, "factor")?,
                        low_freq_factor: need(s.low_freq_factor, "low_freq_factor")?,
                        high_freq_factor: need(s.high_freq_factor, "high_freq_factor")?,
                        original_max_positions: need(s.original_max_position_embeddings, "original_max_position_embeddings")?,
                    },
                    other => {
                        return Err(Error::config(
                            path,
                            format!("rope_scaling type `{other}` is not supported (default, linear, llama3)"),
                        ))
                    }
                }
            }
        };
        let attention_bias = hf.attention_bias.unwrap_or(false);
        Ok(Config {
            qwen2,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta,
            rope_scaling,
            act,
            qkv_bias: qwen2 || attention_bias,
            o_bias: !qwen2 && attention_bias,
            mlp_bias: hf.mlp_bias,
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(qwen2),
            attention_dropout: hf.attention_dropout,
        })
    }

    /// Inverse frequencies `[head_dim / 2]` with the configured scaling.
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim as f64;
        let base: Vec<f64> = (0..self.head_dim / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / d))
            .collect();
        match self.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.into_iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            } => {
                let low_wavelen = original_max_positions / low_freq_factor;
                let high_wavelen = original_max_positions / high_freq_factor;
                base.into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (original_max_positions / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}

impl Config {
    /// Checks every size against sane bounds and against the checkpoint's tensor shapes (the
    /// safetensors headers, nothing is read), before the model allocates anything. `prefix`
    /// is the checkpoint's key prefix (`model.` or `""`).
    pub fn check_weights(&self, config: &Path, ckpt: &Checkpoint, prefix: &str) -> Result<()> {
        use crate::backbone::{bounds, check_layers, check_size};
        check_size(config, "vocab_size", self.vocab_size, bounds::VOCAB)?;
        check_size(config, "hidden_size", self.hidden_size, bounds::HIDDEN)?;
        check_size(config, "num_attention_heads", self.num_heads, bounds::HEADS)?;
        check_size(config, "num_key_value_heads", self.num_kv_heads, bounds::HEADS)?;
        check_size(config, "head_dim", self.head_dim, bounds::HIDDEN)?;
        check_size(config, "intermediate_size", self.intermediate_size, bounds::INTERMEDIATE)?;
        check_layers(config, ckpt, &format!("{prefix}layers."), self.num_layers)?;
        let (h, q, kv) =
            (self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim);
        let what = "vocab_size and hidden_size";
        ckpt.expect_shape(
            config,
            &format!("{prefix}embed_tokens.weight"),
            &[self.vocab_size, h],
            what,
        )?;
        for i in 0..self.num_layers {
            let l = format!("{prefix}layers.{i}.");
            for (name, shape, what) in [
                ("self_attn.q_proj", [q, h], "num_attention_heads, head_dim and hidden_size"),
                ("self_attn.k_proj", [kv, h], "num_key_value_heads, head_dim and hidden_size"),
                ("mlp.gate_proj", [self.intermediate_size, h], "intermediate_size and hidden_size"),
            ] {
                ckpt.expect_shape(config, &format!("{l}{name}.weight"), &shape, what)?;
            }
        }
        Ok(())
    }
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size()[x.dim() - 1] / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    Tensor::cat(&[-x2, x1], -1)
}

#[derive(Debug)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    nh: i64,
    nkv: i64,
    d: i64,
    dropout: f64,
}

#[derive(Debug)]
struct Block {
    input_norm: RmsNorm,
    attn: Attention,
    post_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    act: Activation,
}

impl Block {
    fn new(b: &Builder<'_>, c: &Config) -> Self {
        let h = c.hidden_size;
        let a = b.pp("self_attn");
        let m = b.pp("mlp");
        Block {
            input_norm: b.rms_norm("input_layernorm", h, c.rms_norm_eps),
            attn: Attention {
                q: a.linear("q_proj", h, c.num_heads * c.head_dim, c.qkv_bias),
                k: a.linear("k_proj", h, c.num_kv_heads * c.head_dim, c.qkv_bias),
                v: a.linear("v_proj", h, c.num_kv_heads * c.head_dim, c.qkv_bias),
                o: a.linear("o_proj", c.num_heads * c.head_dim, h, c.o_bias),
                nh: c.num_heads,
                nkv: c.num_kv_heads,
                d: c.head_dim,
                dropout: c.attention_dropout,
            },
            post_norm: b.rms_norm("post_attention_layernorm", h, c.rms_norm_eps),
            gate: m.linear("gate_proj", h, c.intermediate_size, c.mlp_bias),
            up: m.linear("up_proj", h, c.intermediate_size, c.mlp_bias),
            down: m.linear("down_proj", c.intermediate_size, h, c.mlp_bias),
            act: c.act,
        }
    }

    fn forward_t(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        train: bool,
    ) -> Tensor {
        let (b, l, _) = x.size3().expect("hidden states are [B, L, H]");
        let a = &self.attn;
        let hn = self.input_norm.forward(x);
        let q = a.q.forward_t(&hn, train).view([b, l, a.nh, a.d]).transpose(1, 2);
        let k = a.k.forward_t(&hn, train).view([b, l, a.nkv, a.d]).transpose(1, 2);
        let v = a.v.forward_t(&hn, train).view([b, l, a.nkv, a.d]).transpose(1, 2);
        let q = &q * cos + rotate_half(&q) * sin;
        let k = &k * cos + rotate_half(&k) * sin;
        let (k, v) = if a.nh == a.nkv {
            (k, v)
        } else {
            let rep = a.nh / a.nkv;
            (k.repeat_interleave_self_int(rep, 1, None), v.repeat_interleave_self_int(rep, 1, None))
        };
        let p = if train { a.dropout } else { 0.0 };
        let ctx =
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), p, false, None, false);
        let ctx = ctx.transpose(1, 2).contiguous().view([b, l, a.nh * a.d]);
        let x = x + a.o.forward_t(&ctx, train);
        let hn = self.post_norm.forward(&x);
        let mlp = self.down.forward_t(
            &(self.act.forward(&self.gate.forward_t(&hn, train)) * self.up.forward_t(&hn, train)),
            train,
        );
        x + mlp
    }
}

/// A Llama/Qwen2 decoder without its LM head.
#[derive(Debug)]
pub struct LlamaModel {
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    inv_freq: Vec<f64>,
    config: Config,
    info: BackboneInfo,
}

impl LlamaModel {
    /// Builds the decoder; weights are named as the checkpoint keys below `b`.
    pub fn new(b: Builder<'_>, c: &Config) -> Result<Self> {
        let layers = b.pp("layers");
        Ok(LlamaModel {
            embed: b.embedding("embed_tokens", c.vocab_size, c.hidden_size),
            blocks: (0..c.num_layers).map(|i| Block::new(&layers.pp(i), c)).collect(),
            norm: b.rms_norm("norm", c.hidden_size, c.rms_norm_eps),
            inv_freq: c.inv_freq(),
            config: c.clone(),
            info: BackboneInfo {
                model_type: if c.qwen2 { "qwen2" } else { "llama" }.into(),
                hidden_size: c.hidden_size,
                num_layers: c.num_layers,
                layer_prefix: "layers.".into(),
                final_prefixes: vec!["norm.".into()],
                embedding_prefixes: vec!["embed_tokens.".into()],
                default_pooling: Pooling::Last,
                padding_side: PaddingSide::Left,
            },
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The token embedding table (the LM head when embeddings are tied).
    pub fn embed_weight(&self) -> &Tensor {
        &self.embed.weight
    }

    /// cos/sin tables `[B, 1, L, head_dim]` for positions counted over real tokens.
    fn rotary(&self, mask: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let dev = mask.device();
        let pos = (mask.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1)
            .clamp_min(0)
            .to_kind(Kind::Float);
        let inv = Tensor::from_slice(&self.inv_freq).to_kind(Kind::Float).to_device(dev);
        let freqs = pos.unsqueeze(-1) * inv.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }
}

impl Backbone for LlamaModel {
    fn info(&self) -> &BackboneInfo {
        &self.info
    }

    fn embed_t(&self, batch: &Batch, _train: bool) -> (Tensor, LayerContext) {
        let x = self.embed.forward(&batch.input_ids);
        let kind = x.kind();
        let (b, l) = (batch.len(), batch.input_ids.size()[1]);
        let dev = x.device();
        let (cos, sin) = self.rotary(&batch.attention_mask, kind);
        // Additive mask [B, 1, L, L]: key j visible from query i when j <= i and j is a token.
        let causal = Tensor::ones([l, l], (Kind::Bool, dev)).tril(0);
        let keys = batch.attention_mask.to_kind(Kind::Bool).view([b, 1, 1, l]);
        let allowed = causal.view([1, 1, l, l]).logical_and(&keys);
        let mask = Tensor::zeros([b, 1, l, l], (kind, dev))
            .masked_fill(&allowed.logical_not(), crate::layers::mask_min(kind));
        (x, LayerContext { tensors: vec![cos, sin, mask] })
    }

    fn layer_t(&self, i: usize, x: &Tensor, ctx: &LayerContext, train: bool) -> Tensor {
        let t = &ctx.tensors;
        self.blocks[i].forward_t(x, &t[0], &t[1], &t[2], train)
    }

    fn finish(&self, x: &Tensor) -> Tensor {
        self.norm.forward(x)
    }

    fn merge_lora(&mut self) {
        for bl in &mut self.blocks {
            for lin in [
                &mut bl.attn.q,
                &mut bl.attn.k,
                &mut bl.attn.v,
                &mut bl.attn.o,
                &mut bl.gate,
                &mut bl.up,
                &mut bl.down,
            ] {
                lin.merge();
            }
        }
    }
}

/// The LM head of a decoder checkpoint: `lm_head.weight`, or the tied embeddings.
pub fn lm_head(ckpt: &Checkpoint, model: &LlamaModel) -> Result<Tensor> {
    if ckpt.contains("lm_head.weight") && !model.config.tie_word_embeddings {
        Ok(ckpt
            .tensor("lm_head.weight")?
            .to_kind(model.embed.weight.kind())
            .to_device(model.embed.weight.device()))
    } else {
        Ok(model.embed.weight.shallow_clone())
    }
}
