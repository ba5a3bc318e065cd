//! BERT-family encoders: `bert` (BERT, all-MiniLM-L6-v2, FinBERT) and `roberta`.
//!
//! Mirrors `transformers`' `BertModel`/`RobertaModel` (post-norm layers, absolute position
//! embeddings). RoBERTa differs only in its embeddings: positions are counted from
//! `pad_token_id + 1` over non-pad tokens, and there is a single token type.
//! Variable names equal the checkpoint keys (`embeddings.word_embeddings.weight`,
//! `encoder.layer.0.attention.self.query.weight`, ...).

use std::path::Path;

use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::backbone::{Backbone, BackboneInfo, LayerContext, Pooling};
use crate::layers::{Activation, Builder, Embedding, LayerNorm, Linear};
use crate::tokenize::{Batch, PaddingSide};
use crate::weights::Checkpoint;
use crate::{Error, Result};

/// The fields of a BERT/RoBERTa `config.json` this implementation reads.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    /// `model_type` (the family).
    pub model_type: String,
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Activation of the feed-forward layer.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Dropout on hidden states.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Rows of the position embedding.
    pub max_position_embeddings: i64,
    /// Rows of the token-type embedding.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> i64 {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// Validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `true` for RoBERTa-style position ids and no token types.
    pub roberta: bool,
    /// Vocabulary size (rows of the token embedding).
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Number of attention heads.
    pub num_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Activation of the feed-forward layer.
    pub act: Activation,
    /// Dropout on hidden states.
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Rows of the position embedding.
    pub max_positions: i64,
    /// Rows of the token-type embedding.
    pub type_vocab_size: i64,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    pub pad_token_id: i64,
}

impl Config {
    /// Parses and validates `config.json` text read from `path`.
    pub fn from_json(path: &Path, text: &str) -> Result<Self> {
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| Error::json(path, e))?;
        Self::resolve(path, &hf)
    }

    /// Validates an [`HfConfig`].
    pub fn resolve(path: &Path, hf: &HfConfig) -> Result<Self> {
        let roberta = match hf.model_type.as_str() {
            "bert" => false,
            "roberta" => true,
            other => {
                return Err(Error::config(
                    path,
                    format!("bert.rs cannot build model_type `{other}`"),
                ))
            }
        };
        if hf.hidden_size <= 0
            || hf.num_attention_heads <= 0
            || hf.hidden_size % hf.num_attention_heads != 0
        {
            return Err(Error::config(
                path,
                format!(
                    "hidden_size {} must be a positive multiple of num_attention_heads {}",
                    hf.hidden_size, hf.num_attention_heads
                ),
            ));
        }
        if let Some(t) = hf.position_embedding_type.as_deref() {
            if t != "absolute" {
                return Err(Error::config(
                    path,
                    format!("position_embedding_type `{t}` is not supported (absolute)"),
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
        let pad_token_id = hf.pad_token_id.unwrap_or(if roberta { 1 } else { 0 });
        Ok(Config {
            roberta,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            intermediate_size: hf.intermediate_size,
            act,
            hidden_dropout: hf.hidden_dropout_prob,
            attention_dropout: hf.attention_probs_dropout_prob,
            max_positions: hf.max_position_embeddings,
            type_vocab_size: hf.type_vocab_size,
            layer_norm_eps: hf.layer_norm_eps,
            pad_token_id,
        })
    }
}

impl Config {
    /// Checks every size against sane bounds and against the checkpoint's tensor shapes (the
    /// safetensors headers, nothing is read), before the model allocates anything: a
    /// config.json claiming `num_hidden_layers: 1000000` or `hidden_size: 1200000000` is an
    /// error, not an allocation. `prefix` is the checkpoint's key prefix (`""`, `bert.`, ...).
    pub fn check_weights(&self, config: &Path, ckpt: &Checkpoint, prefix: &str) -> Result<()> {
        use crate::backbone::{bounds, check_layers, check_size};
        check_size(config, "vocab_size", self.vocab_size, bounds::VOCAB)?;
        check_size(config, "hidden_size", self.hidden_size, bounds::HIDDEN)?;
        check_size(config, "num_attention_heads", self.num_heads, bounds::HEADS)?;
        check_size(config, "intermediate_size", self.intermediate_size, bounds::INTERMEDIATE)?;
        check_size(config, "max_position_embeddings", self.max_positions, bounds::POSITIONS)?;
        check_size(config, "type_vocab_size", self.type_vocab_size, bounds::VOCAB)?;
        check_layers(config, ckpt, &format!("{prefix}encoder.layer."), self.num_layers)?;
        let (h, e) = (self.hidden_size, format!("{prefix}embeddings."));
        for (name, rows, what) in [
            ("word_embeddings", self.vocab_size, "vocab_size and hidden_size"),
            ("position_embeddings", self.max_positions, "max_position_embeddings and hidden_size"),
            ("token_type_embeddings", self.type_vocab_size, "type_vocab_size and hidden_size"),
        ] {
            ckpt.expect_shape(config, &format!("{e}{name}.weight"), &[rows, h], what)?;
        }
        for i in 0..self.num_layers {
            let l = format!("{prefix}encoder.layer.{i}.");
            let what = "hidden_size";
            ckpt.expect_shape(config, &format!("{l}attention.self.query.weight"), &[h, h], what)?;
            let what = "intermediate_size and hidden_size";
            let inter = self.intermediate_size;
            ckpt.expect_shape(config, &format!("{l}intermediate.dense.weight"), &[inter, h], what)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    dropout: f64,
    roberta: bool,
    pad: i64,
}

impl Embeddings {
    fn new(b: &Builder<'_>, c: &Config) -> Self {
        Embeddings {
            word: b.embedding("word_embeddings", c.vocab_size, c.hidden_size),
            position: b.embedding("position_embeddings", c.max_positions, c.hidden_size),
            token_type: b.embedding("token_type_embeddings", c.type_vocab_size, c.hidden_size),
            norm: b.layer_norm("LayerNorm", c.hidden_size, c.layer_norm_eps),
            dropout: c.hidden_dropout,
            roberta: c.roberta,
            pad: c.pad_token_id,
        }
    }

    fn forward_t(&self, batch: &Batch, train: bool) -> Tensor {
        let ids = &batch.input_ids;
        let positions = if self.roberta {
            // transformers' create_position_ids_from_input_ids: pads keep `pad`, tokens count
            // up from pad + 1.
            let m = ids.ne(self.pad).to_kind(Kind::Int64);
            m.cumsum(1, Kind::Int64) * &m + self.pad
        } else {
            let l = ids.size()[1];
            Tensor::arange(l, (Kind::Int64, ids.device())).unsqueeze(0).expand_as(ids)
        };
        let types =
            if self.roberta { ids.zeros_like() } else { batch.token_type_ids.shallow_clone() };
        let e = self.word.forward(ids)
            + self.position.forward(&positions)
            + self.token_type.forward(&types);
        self.norm.forward(&e).dropout(self.dropout, train)
    }
}

/// A post-norm transformer layer: self-attention with an additive mask or bias, residual and
/// LayerNorm, then the feed-forward block, residual and LayerNorm. BERT and RoBERTa build it
/// here; MPNet builds the same layer under its own weight names (`mpnet.rs`).
#[derive(Debug)]
pub(crate) struct Layer {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) attn_out: Linear,
    pub(crate) attn_norm: LayerNorm,
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
    pub(crate) out_norm: LayerNorm,
    pub(crate) heads: i64,
    pub(crate) act: Activation,
    pub(crate) hidden_dropout: f64,
    pub(crate) attention_dropout: f64,
}

impl Layer {
    fn new(b: &Builder<'_>, c: &Config) -> Self {
        let h = c.hidden_size;
        let att = b.pp("attention");
        let s = att.pp("self");
        let o = att.pp("output");
        Layer {
            query: s.linear("query", h, h, true),
            key: s.linear("key", h, h, true),
            value: s.linear("value", h, h, true),
            attn_out: o.linear("dense", h, h, true),
            attn_norm: o.layer_norm("LayerNorm", h, c.layer_norm_eps),
            intermediate: b.pp("intermediate").linear("dense", h, c.intermediate_size, true),
            output: b.pp("output").linear("dense", c.intermediate_size, h, true),
            out_norm: b.pp("output").layer_norm("LayerNorm", h, c.layer_norm_eps),
            heads: c.num_heads,
            act: c.act,
            hidden_dropout: c.hidden_dropout,
            attention_dropout: c.attention_dropout,
        }
    }

    /// `mask` is the additive attention mask `[B, 1, 1, L]` (or any bias broadcastable to
    /// `[B, heads, L, L]`, such as MPNet's relative position bias plus the mask).
    pub(crate) fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let (b, l, h) = x.size3().expect("hidden states are [B, L, H]");
        let d = h / self.heads;
        let split = |t: Tensor| t.view([b, l, self.heads, d]).transpose(1, 2);
        let q = split(self.query.forward_t(x, train));
        let k = split(self.key.forward_t(x, train));
        let v = split(self.value.forward_t(x, train));
        let p = if train { self.attention_dropout } else { 0.0 };
        let ctx =
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), p, false, None, false);
        let ctx = ctx.transpose(1, 2).contiguous().view([b, l, h]);
        let a = self.attn_out.forward_t(&ctx, train).dropout(self.hidden_dropout, train);
        let a = self.attn_norm.forward(&(a + x));
        let i = self.act.forward(&self.intermediate.forward_t(&a, train));
        let o = self.output.forward_t(&i, train).dropout(self.hidden_dropout, train);
        self.out_norm.forward(&(o + a))
    }
}

/// A BERT or RoBERTa encoder (no pooler: fintune pools the last hidden states itself).
#[derive(Debug)]
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    info: BackboneInfo,
}

impl BertModel {
    /// Builds the encoder; weights are named as the checkpoint keys below `b`.
    pub fn new(b: Builder<'_>, c: &Config) -> Result<Self> {
        let embeddings = Embeddings::new(&b.pp("embeddings"), c);
        let enc = b.pp("encoder").pp("layer");
        let layers = (0..c.num_layers).map(|i| Layer::new(&enc.pp(i), c)).collect();
        let info = BackboneInfo {
            model_type: if c.roberta { "roberta" } else { "bert" }.into(),
            hidden_size: c.hidden_size,
            num_layers: c.num_layers,
            layer_prefix: "encoder.layer.".into(),
            final_prefixes: vec![],
            embedding_prefixes: vec!["embeddings.".into()],
            default_pooling: Pooling::Mean,
            padding_side: PaddingSide::Right,
        };
        Ok(BertModel { embeddings, layers, info })
    }
}

impl Backbone for BertModel {
    fn info(&self) -> &BackboneInfo {
        &self.info
    }

    fn embed_t(&self, batch: &Batch, train: bool) -> (Tensor, LayerContext) {
        let x = self.embeddings.forward_t(batch, train);
        // Additive mask as transformers builds it: 0 for tokens, the dtype's minimum for pads.
        let m = batch.attention_mask.to_kind(x.kind()).view([batch.len(), 1, 1, -1]);
        let mask: Tensor = (m.ones_like() - &m) * crate::layers::mask_min(x.kind());
        (x, LayerContext { tensors: vec![mask] })
    }

    fn layer_t(&self, i: usize, x: &Tensor, ctx: &LayerContext, train: bool) -> Tensor {
        self.layers[i].forward_t(x, &ctx.tensors[0], train)
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
