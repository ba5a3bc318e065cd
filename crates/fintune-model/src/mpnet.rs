//! MPNet encoders (`model_type: "mpnet"`, e.g. all-mpnet-base-v2).
//!
//! Mirrors `transformers`' `MPNetModel`: post-norm BERT-style layers, RoBERTa-style position
//! ids (counted from `padding_idx + 1` over non-pad tokens; transformers fixes `padding_idx`
//! at 1), no token types, and a T5-style relative position bias: the bucket of every
//! (query, key) offset is computed once per forward pass and shared by all layers, which add
//! `encoder.relative_attention_bias[bucket]` (one value per head) to their attention scores.
//! Variable names equal the checkpoint keys (`embeddings.word_embeddings.weight`,
//! `encoder.layer.0.attention.attn.q.weight`, `encoder.relative_attention_bias.weight`, ...).
//!
//! The buckets, not the bias values, travel in the [`LayerContext`]: each layer looks the
//! bias up itself, so gradient checkpointing (which builds the context without autograd)
//! still trains the bias table.

use std::path::Path;

use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::backbone::{Backbone, BackboneInfo, LayerContext, Pooling};
use crate::bert::Layer;
use crate::layers::{Activation, Builder, Embedding, LayerNorm};
use crate::tokenize::{Batch, PaddingSide};
use crate::weights::Checkpoint;
use crate::{Error, Result};

/// `MPNetEmbeddings.padding_idx`: transformers uses 1 whatever `pad_token_id` says.
pub const PADDING_IDX: i64 = 1;
/// The bucket count `MPNetEncoder.compute_position_bias` uses (its default argument; the
/// config's `relative_attention_num_buckets` only sizes the table).
pub const BUCKETS: i64 = 32;
/// `relative_position_bucket`'s `max_distance`.
const MAX_DISTANCE: i64 = 128;

/// Upper bounds on config sizes, checked before anything is allocated.
const MAX_HIDDEN: i64 = 1 << 14;
const MAX_INTERMEDIATE: i64 = 1 << 16;
const MAX_VOCAB: i64 = 1 << 20;
const MAX_LAYERS: usize = 256;
const MAX_POSITIONS: i64 = 1 << 16;
const MAX_BUCKET_TABLE: i64 = 1 << 12;

/// The fields of an MPNet `config.json` this implementation reads.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// `"mpnet"`.
    pub model_type: String,
    /// Rows of the word embedding.
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (divides `hidden_size`).
    pub num_attention_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Feed-forward activation (default `gelu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Dropout on hidden states (default 0.1).
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (default 0.1).
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Rows of the position embedding (default 514; the first `pad_token_id + 1` are never used).
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Rows of the relative position bias table (default 32).
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: i64,
    /// Padding token id; transformers fixes the position padding index at 1.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_positions() -> i64 {
    514
}
fn default_eps() -> f64 {
    1e-12
}
fn default_buckets() -> i64 {
    BUCKETS
}

/// Validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Rows of the word embedding.
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Attention heads per layer.
    pub num_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Feed-forward activation.
    pub act: Activation,
    /// Dropout on hidden states.
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Rows of the position embedding.
    pub max_positions: i64,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Rows of `encoder.relative_attention_bias` (at least [`BUCKETS`]).
    pub num_buckets: i64,
}

impl Config {
    /// Parses and validates `config.json` text read from `path` (sizes and their bounds only;
    /// see [`Config::check_checkpoint`] for the weights).
    pub fn from_json(path: &Path, text: &str) -> Result<Self> {
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| Error::json(path, e))?;
        Self::resolve(path, &hf)
    }

    /// Parses `config.json`, validates it, and checks its sizes against the tensor shapes of
    /// `ckpt` (whose keys start with `prefix`), so that nothing is allocated from a config
    /// that the weights do not back.
    pub fn from_checkpoint(
        path: &Path,
        text: &str,
        ckpt: &Checkpoint,
        prefix: &str,
    ) -> Result<Self> {
        let c = Self::from_json(path, text)?;
        c.check_checkpoint(path, ckpt, prefix)?;
        Ok(c)
    }

    /// Validates an [`HfConfig`].
    pub fn resolve(path: &Path, hf: &HfConfig) -> Result<Self> {
        if hf.model_type != "mpnet" {
            return Err(Error::config(
                path,
                format!("mpnet.rs cannot build model_type `{}`", hf.model_type),
            ));
        }
        let bounded = |name: &str, v: i64, lo: i64, hi: i64| -> Result<()> {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(Error::config(path, format!("{name} must be in [{lo}, {hi}], got {v}")))
            }
        };
        bounded("hidden_size", hf.hidden_size, 1, MAX_HIDDEN)?;
        bounded("num_attention_heads", hf.num_attention_heads, 1, hf.hidden_size)?;
        if hf.hidden_size % hf.num_attention_heads != 0 {
            return Err(Error::config(
                path,
                format!(
                    "hidden_size {} must be a multiple of num_attention_heads {}",
                    hf.hidden_size, hf.num_attention_heads
                ),
            ));
        }
        bounded("intermediate_size", hf.intermediate_size, 1, MAX_INTERMEDIATE)?;
        bounded("vocab_size", hf.vocab_size, PADDING_IDX + 1, MAX_VOCAB)?;
        bounded("num_hidden_layers", hf.num_hidden_layers as i64, 1, MAX_LAYERS as i64)?;
        // Position ids run from PADDING_IDX + 1 on: at least one token must fit.
        bounded(
            "max_position_embeddings",
            hf.max_position_embeddings,
            PADDING_IDX + 2,
            MAX_POSITIONS,
        )?;
        bounded(
            "relative_attention_num_buckets",
            hf.relative_attention_num_buckets,
            BUCKETS,
            MAX_BUCKET_TABLE,
        )?;
        if !(hf.layer_norm_eps.is_finite() && hf.layer_norm_eps > 0.0) {
            return Err(Error::config(
                path,
                format!("layer_norm_eps must be > 0, got {}", hf.layer_norm_eps),
            ));
        }
        if let Some(p) = hf.pad_token_id {
            if p != PADDING_IDX {
                return Err(Error::config(
                    path,
                    format!(
                        "pad_token_id {p} is not supported: MPNet's position ids assume the pad \
                         token is {PADDING_IDX}"
                    ),
                ));
            }
        }
        let act = Activation::parse(&hf.hidden_act).ok_or_else(|| {
            Error::config(path, format!("unsupported hidden_act `{}`", hf.hidden_act))
        })?;
        for (name, p) in [
            ("hidden_dropout_prob", hf.hidden_dropout_prob),
            ("attention_probs_dropout_prob", hf.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(path, format!("{name} must be in [0, 1), got {p}")));
            }
        }
        Ok(Config {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            intermediate_size: hf.intermediate_size,
            act,
            hidden_dropout: hf.hidden_dropout_prob,
            attention_dropout: hf.attention_probs_dropout_prob,
            max_positions: hf.max_position_embeddings,
            layer_norm_eps: hf.layer_norm_eps,
            num_buckets: hf.relative_attention_num_buckets,
        })
    }

    /// The most tokens (special tokens included) one text may have: positions run from
    /// `PADDING_IDX + 1` to `max_position_embeddings - 1` (512 for all-mpnet-base-v2).
    pub fn max_tokens(&self) -> i64 {
        self.max_positions - PADDING_IDX - 1
    }

    /// Checks the sizes against the checkpoint's tensor shapes (read from the safetensors
    /// headers: nothing is allocated): vocabulary, width, positions, heads, buckets, the
    /// intermediate size and the number of layers.
    pub fn check_checkpoint(&self, path: &Path, ckpt: &Checkpoint, prefix: &str) -> Result<()> {
        let h = self.hidden_size;
        let expect = |name: &str, want: [i64; 2], what: &str| -> Result<()> {
            let found = ckpt.shape(&format!("{prefix}{name}"))?;
            if found != want {
                return Err(Error::config(
                    path,
                    format!(
                        "{what} do not match the checkpoint: `{prefix}{name}` has shape \
                         {found:?}, config.json implies {want:?}"
                    ),
                ));
            }
            Ok(())
        };
        expect(
            "embeddings.word_embeddings.weight",
            [self.vocab_size, h],
            "vocab_size and hidden_size",
        )?;
        expect(
            "embeddings.position_embeddings.weight",
            [self.max_positions, h],
            "max_position_embeddings",
        )?;
        expect(
            "encoder.relative_attention_bias.weight",
            [self.num_buckets, self.num_heads],
            "relative_attention_num_buckets and num_attention_heads",
        )?;
        expect(
            "encoder.layer.0.intermediate.dense.weight",
            [self.intermediate_size, h],
            "intermediate_size",
        )?;
        let layer_probe = |i: usize| format!("{prefix}encoder.layer.{i}.attention.attn.q.weight");
        let present = (0..=self.num_layers).take_while(|&i| ckpt.contains(&layer_probe(i))).count();
        if present != self.num_layers {
            return Err(Error::config(
                path,
                format!(
                    "num_hidden_layers is {} but the checkpoint has {present} layers \
                     (`{prefix}encoder.layer.N.*`)",
                    self.num_layers
                ),
            ));
        }
        Ok(())
    }
}

/// The relative-position bucket of every (query, key) pair of a length-`l` sequence, `[l, l]`,
/// as transformers' `MPNetEncoder.relative_position_bucket` computes it (bidirectional, 32
/// buckets, exact up to distance 8, logarithmic up to 128).
pub fn relative_position_buckets(l: i64, device: tch::Device) -> Tensor {
    let pos = Tensor::arange(l, (Kind::Int64, device));
    let relative = pos.unsqueeze(0) - pos.unsqueeze(1); // memory - context
    let n = -relative;
    let half = BUCKETS / 2;
    let ret = n.lt(0).to_kind(Kind::Int64) * half;
    let n = n.abs();
    let max_exact = half / 2;
    let is_small = n.lt(max_exact);
    // The same float32 operations as transformers, so the truncation agrees bit for bit.
    let large = (n.to_kind(Kind::Float) / max_exact as f64).log()
        / ((MAX_DISTANCE as f64) / (max_exact as f64)).ln()
        * (half - max_exact) as f64;
    let large = (large.to_kind(Kind::Int64) + max_exact).clamp_max(half - 1);
    ret + n.where_self(&is_small, &large)
}

#[derive(Debug)]
struct Embeddings {
    word: Embedding,
    position: Embedding,
    norm: LayerNorm,
    dropout: f64,
    max_positions: i64,
}

impl Embeddings {
    fn new(b: &Builder<'_>, c: &Config) -> Self {
        Embeddings {
            word: b.embedding("word_embeddings", c.vocab_size, c.hidden_size),
            position: b.embedding("position_embeddings", c.max_positions, c.hidden_size),
            norm: b.layer_norm("LayerNorm", c.hidden_size, c.layer_norm_eps),
            dropout: c.hidden_dropout,
            max_positions: c.max_positions,
        }
    }

    fn forward_t(&self, ids: &Tensor, train: bool) -> Tensor {
        let l = ids.size()[1];
        assert!(
            l < self.max_positions - PADDING_IDX,
            "MPNet takes at most {} tokens per text, the batch has {l}: lower max_len",
            self.max_positions - PADDING_IDX - 1
        );
        // create_position_ids_from_input_ids: pads keep PADDING_IDX, tokens count up from it.
        let m = ids.ne(PADDING_IDX).to_kind(Kind::Int64);
        let positions = m.cumsum(1, Kind::Int64) * &m + PADDING_IDX;
        let e = self.word.forward(ids) + self.position.forward(&positions);
        self.norm.forward(&e).dropout(self.dropout, train)
    }
}

/// MPNet's layer is BERT's post-norm layer under other weight names
/// (`attention.attn.{q,k,v,o}`, `attention.LayerNorm`); the bias passed to it is the relative
/// position bias plus the padding mask, `[B, heads, L, L]`.
fn layer(b: &Builder<'_>, c: &Config) -> Layer {
    let h = c.hidden_size;
    let att = b.pp("attention");
    let s = att.pp("attn");
    Layer {
        query: s.linear("q", h, h, true),
        key: s.linear("k", h, h, true),
        value: s.linear("v", h, h, true),
        attn_out: s.linear("o", h, h, true),
        attn_norm: att.layer_norm("LayerNorm", h, c.layer_norm_eps),
        intermediate: b.pp("intermediate").linear("dense", h, c.intermediate_size, true),
        output: b.pp("output").linear("dense", c.intermediate_size, h, true),
        out_norm: b.pp("output").layer_norm("LayerNorm", h, c.layer_norm_eps),
        heads: c.num_heads,
        act: c.act,
        hidden_dropout: c.hidden_dropout,
        attention_dropout: c.attention_dropout,
    }
}

/// An MPNet encoder (no pooler: fintune pools the last hidden states itself).
#[derive(Debug)]
pub struct MpnetModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    /// `encoder.relative_attention_bias`: `[num_buckets, heads]`.
    relative_bias: Embedding,
    info: BackboneInfo,
    max_tokens: i64,
}

impl MpnetModel {
    /// Builds the encoder; weights are named as the checkpoint keys below `b`.
    pub fn new(b: Builder<'_>, c: &Config) -> Result<Self> {
        let embeddings = Embeddings::new(&b.pp("embeddings"), c);
        let enc = b.pp("encoder");
        let relative_bias = enc.embedding("relative_attention_bias", c.num_buckets, c.num_heads);
        let layers = (0..c.num_layers).map(|i| layer(&enc.pp("layer").pp(i), c)).collect();
        let info = BackboneInfo {
            model_type: "mpnet".into(),
            hidden_size: c.hidden_size,
            num_layers: c.num_layers,
            layer_prefix: "encoder.layer.".into(),
            final_prefixes: vec![],
            embedding_prefixes: vec!["embeddings.".into()],
            default_pooling: Pooling::Mean,
            padding_side: PaddingSide::Right,
        };
        Ok(MpnetModel { embeddings, layers, relative_bias, info, max_tokens: c.max_tokens() })
    }

    /// The most tokens per text (see [`Config::max_tokens`]).
    pub fn max_tokens(&self) -> i64 {
        self.max_tokens
    }
}

impl Backbone for MpnetModel {
    fn info(&self) -> &BackboneInfo {
        &self.info
    }

    fn embed_t(&self, batch: &Batch, train: bool) -> (Tensor, LayerContext) {
        let x = self.embeddings.forward_t(&batch.input_ids, train);
        // Additive mask as transformers builds it: 0 for tokens, the dtype's minimum for pads.
        let m = batch.attention_mask.to_kind(x.kind()).view([batch.len(), 1, 1, -1]);
        let mask: Tensor = (m.ones_like() - &m) * crate::layers::mask_min(x.kind());
        let buckets = relative_position_buckets(x.size()[1], x.device());
        (x, LayerContext { tensors: vec![mask, buckets] })
    }

    fn layer_t(&self, i: usize, x: &Tensor, ctx: &LayerContext, train: bool) -> Tensor {
        // [L, L, heads] -> [1, heads, L, L], plus the mask [B, 1, 1, L].
        let bias = self.relative_bias.forward(&ctx.tensors[1]).permute([2, 0, 1]).unsqueeze(0);
        let bias = bias.to_kind(x.kind()) + &ctx.tensors[0];
        self.layers[i].forward_t(x, &bias, train)
    }

    fn merge_lora(&mut self) {
        for l in &mut self.layers {
            for lin in [
                &mut l.query,
                &mut l.key,
                &mut l.value,
                &mut l.attn_out,
                &mut l.intermediate,
                &mut l.output,
            ] {
                lin.merge();
            }
        }
    }
}
