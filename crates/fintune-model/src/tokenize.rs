//! Tokenization into typed, per-batch padded [`Batch`]es.
//!
//! The work per text is bounded: a text is cut to [`TextEncoder::max_chars`] characters
//! before the tokenizer sees it, and no text yields more tokens than the backbone's position
//! embeddings hold. A tokenizer failure, even one that panics inside `tokenizers` (a regex
//! that exhausts its retry limit), is an [`Error::Tokenizer`].
//!
//! With [`InputMode::TextTarget`] a row's target (company, ticker) becomes a second segment
//! ([`TextEncoder::encode_with_targets`]): through the tokenizer's pair template for encoders,
//! after [`TARGET_SEPARATOR`] for decoders ([`PairStyle`]). Truncation cuts the text, not the
//! target.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use tokenizers::{
    PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::{Error, Result};

mod input;
pub use input::{present, InputMode, PairStyle, TARGET_SEPARATOR};

/// Which side padding goes on. Encoders pad on the right; decoders pooled on the last token
/// work with either (the default for decoders is left padding, so the last token is at `L-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    /// Tokens first, then padding.
    #[default]
    Right,
    /// Padding first, then tokens.
    Left,
}

/// One tokenized text (no padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<i64>,
    /// Segment (token type) ids, same length as `ids`.
    pub type_ids: Vec<i64>,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A padded batch of token ids: every tensor is `[batch, seq]`, `Int64`.
#[derive(Debug)]
pub struct Batch {
    /// Token ids (padding positions hold the pad id).
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// Segment ids (all 0 for single-sentence input and for models without token types).
    pub token_type_ids: Tensor,
}

impl Batch {
    /// Pads `items` to the longest one, on `side`, with `pad_id`.
    pub fn pad(items: &[&Encoded], pad_id: i64, side: PaddingSide, device: Device) -> Batch {
        let b = items.len();
        let l = items.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![pad_id; b * l];
        let mut mask = vec![0i64; b * l];
        let mut types = vec![0i64; b * l];
        for (row, e) in items.iter().enumerate() {
            let off = match side {
                PaddingSide::Right => 0,
                PaddingSide::Left => l - e.len(),
            };
            let base = row * l + off;
            ids[base..base + e.len()].copy_from_slice(&e.ids);
            types[base..base + e.len()].copy_from_slice(&e.type_ids);
            mask[base..base + e.len()].iter_mut().for_each(|m| *m = 1);
        }
        let shape = [b as i64, l as i64];
        let t = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
        Batch { input_ids: t(&ids), attention_mask: t(&mask), token_type_ids: t(&types) }
    }

    /// Builds a batch from explicit ids and mask (e.g. golden tests); token types are zeros.
    pub fn from_ids(input_ids: Tensor, attention_mask: Tensor) -> Batch {
        let token_type_ids = input_ids.zeros_like();
        Batch { input_ids, attention_mask, token_type_ids }
    }

    /// Number of rows.
    pub fn len(&self) -> i64 {
        self.input_ids.size()[0]
    }
    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Moves the batch to `device`.
    pub fn to_device(&self, device: Device) -> Batch {
        Batch {
            input_ids: self.input_ids.to_device(device),
            attention_mask: self.attention_mask.to_device(device),
            token_type_ids: self.token_type_ids.to_device(device),
        }
    }
    /// The mask as floats `[batch, seq]`.
    pub fn mask_f(&self, kind: Kind) -> Tensor {
        self.attention_mask.to_kind(kind)
    }
}

/// Turns texts into [`Encoded`] token ids and padded [`Batch`]es with a `tokenizer.json`.
///
/// Truncates to `max_len` tokens (special tokens included) and pads per batch (the fixed
/// padding some tokenizer files carry, e.g. MiniLM's 128, is switched off). Texts are cut to
/// `max_len * CHARS_PER_TOKEN` characters first, so a 10 MB text costs what a short one does.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation (the separator style measures whole rows).
    untruncated: Tokenizer,
    max_len: usize,
    pad_id: i64,
    side: PaddingSide,
    input: InputMode,
    pair: PairStyle,
}

/// Characters kept per token of `max_len` before tokenization: far above what a token spans
/// in text (about 4 characters in English, a few more in long words), so the first `max_len`
/// tokens of the cut text are those of the whole text unless it is mostly whitespace.
pub const CHARS_PER_TOKEN: usize = 32;

/// The longest prefix of `text` with at most `max_chars` characters (a char boundary).
fn clip(text: &str, max_chars: usize) -> &str {
    if text.len() <= max_chars {
        return text;
    }
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// What failed, for a tokenizer error.
fn what(texts: &[&str]) -> String {
    match texts {
        [one] => format!("cannot encode a text of {} bytes", one.len()),
        many => format!("cannot encode a batch of {} texts", many.len()),
    }
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl TextEncoder {
    /// Loads `tokenizer.json` from `path` (a file or a model folder). `max_len` is the
    /// truncation length in tokens (the trainer's default is 128). When the folder holds a
    /// `config.json`, `max_len` must fit the backbone's position embeddings
    /// ([`crate::backbone::position_limit`]): an error otherwise, never an index out of range
    /// in the first long text.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_owned() };
        let tokenizer = Tokenizer::from_file(&file)
            .map_err(|e| Error::tokenizer(format!("cannot load {}", file.display()), e))?;
        let encoder = Self::new(tokenizer, max_len)?;
        let config = file.with_file_name("config.json");
        if !config.exists() {
            return Ok(encoder);
        }
        let text = std::fs::read_to_string(&config).map_err(|e| Error::io(&config, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::json(&config, e))?;
        let encoder = match json.get("model_type").and_then(|t| t.as_str()) {
            Some(t) => encoder.with_pair_style(PairStyle::of_model_type(t)),
            None => encoder,
        };
        match crate::backbone::position_limit(&json) {
            Some(limit) => encoder.with_position_limit(limit).map_err(|e| match e {
                Error::Invalid(reason) => Error::config(&config, reason),
                other => other,
            }),
            None => Ok(encoder),
        }
    }

    /// Checks that `max_len` tokens fit a backbone whose position embeddings hold `limit`
    /// tokens (an [`Error::Invalid`] naming both otherwise).
    pub fn with_position_limit(self, limit: usize) -> Result<Self> {
        if self.max_len > limit {
            return Err(Error::Invalid(format!(
                "max_len {} exceeds the backbone's position limit: its position embeddings hold {limit} tokens (use --max-len {limit} or less)",
                self.max_len
            )));
        }
        Ok(self)
    }

    /// Wraps an already-built tokenizer.
    pub fn new(mut tokenizer: Tokenizer, max_len: usize) -> Result<Self> {
        if max_len < 2 {
            return Err(Error::Invalid(format!("max_len must be at least 2, got {max_len}")));
        }
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id as i64)
            .or_else(|| {
                ["[PAD]", "<pad>", "<|pad|>", "<|endoftext|>", "</s>"]
                    .iter()
                    .find_map(|t| tokenizer.token_to_id(t))
                    .map(i64::from)
            })
            .unwrap_or(0);
        tokenizer.with_padding(None);
        let mut untruncated = tokenizer.clone();
        untruncated
            .with_truncation(None)
            .map_err(|e| Error::tokenizer("cannot switch truncation off", e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| Error::tokenizer(format!("cannot truncate to {max_len} tokens"), e))?;
        Ok(TextEncoder {
            tokenizer,
            untruncated,
            max_len,
            pad_id,
            side: PaddingSide::Right,
            input: InputMode::Text,
            pair: PairStyle::Template,
        })
    }

    /// Sets what rows are encoded from (default: [`InputMode::Text`]).
    pub fn with_input(mut self, input: InputMode) -> Self {
        self.input = input;
        self
    }

    /// Sets how a text and its target are joined (default: [`PairStyle::Template`];
    /// [`Self::from_file`] picks the family's from `config.json`'s `model_type`).
    pub fn with_pair_style(mut self, pair: PairStyle) -> Self {
        self.pair = pair;
        self
    }

    /// What rows are encoded from.
    pub fn input(&self) -> InputMode {
        self.input
    }
    /// How a text and its target are joined.
    pub fn pair_style(&self) -> PairStyle {
        self.pair
    }

    /// Sets the padding side (default: right).
    pub fn with_padding_side(mut self, side: PaddingSide) -> Self {
        self.side = side;
        self
    }

    /// Overrides the pad id (default: the tokenizer's padding id, else its `[PAD]`/`<pad>`
    /// token, else 0). Padding positions are masked, so this matters only for models that
    /// derive positions from ids.
    pub fn with_pad_id(mut self, pad_id: i64) -> Self {
        self.pad_id = pad_id;
        self
    }

    /// The truncation length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
    /// How many characters of a text are tokenized: `max_len * CHARS_PER_TOKEN`.
    pub fn max_chars(&self) -> usize {
        self.max_len.saturating_mul(CHARS_PER_TOKEN)
    }
    /// The pad id.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }
    /// The padding side.
    pub fn padding_side(&self) -> PaddingSide {
        self.side
    }
    /// The wrapped tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Runs the tokenizer over `inputs` (each already cut to [`Self::max_chars`]), catching its
    /// panics.
    fn run(
        &self,
        inputs: Vec<tokenizers::EncodeInput<'_>>,
        special: bool,
        what: impl Fn() -> String,
    ) -> Result<Vec<tokenizers::Encoding>> {
        Self::run_with(&self.tokenizer, inputs, special, what)
    }

    /// [`Self::run`] with another tokenizer (the untruncated one).
    fn run_with(
        tokenizer: &Tokenizer,
        inputs: Vec<tokenizers::EncodeInput<'_>>,
        special: bool,
        what: impl Fn() -> String,
    ) -> Result<Vec<tokenizers::Encoding>> {
        // `tokenizers` panics on some failures (the onig regex of a pre-tokenizer that exhausts
        // its retry limit); the tokenizer is only read, so it stays usable afterwards.
        catch_unwind(AssertUnwindSafe(|| tokenizer.encode_batch(inputs, special)))
            .map_err(|panic| Error::tokenizer(what(), panic_message(panic.as_ref()).into()))?
            .map_err(|e| Error::tokenizer(what(), e))
    }

    /// Typed encodings, checked against `max_len`.
    fn finish(&self, encs: Vec<tokenizers::Encoding>) -> Result<Vec<Encoded>> {
        let out: Vec<Encoded> = encs
            .into_iter()
            .map(|e| Encoded {
                ids: e.get_ids().iter().map(|&i| i64::from(i)).collect(),
                type_ids: e.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
            })
            .collect();
        if let Some(long) = out.iter().find(|e| e.len() > self.max_len) {
            return Err(Error::Invalid(format!(
                "the tokenizer returned {} tokens, more than max_len {}",
                long.len(),
                self.max_len
            )));
        }
        Ok(out)
    }

    /// Tokenizes texts in parallel (special tokens added, each text cut to
    /// [`Self::max_chars`] characters, then truncated to `max_len` tokens). Ignores the input
    /// mode: see [`Self::encode_with_targets`].
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let cap = self.max_chars();
        let inputs: Vec<tokenizers::EncodeInput<'_>> =
            texts.iter().map(|t| clip(t, cap).into()).collect();
        let encs = self.run(inputs, true, || what(texts))?;
        self.finish(encs)
    }

    /// Tokenizes rows as the input mode says: with [`InputMode::Text`] exactly
    /// [`Self::encode`] (`targets` unused); with [`InputMode::TextTarget`] a row whose target
    /// is present (not null, not blank) becomes the pair (text, target) in the
    /// [`PairStyle`], other rows single texts. The target survives truncation: the template
    /// cuts longest-first (the text, unless the target is longer), the separator style cuts
    /// only the text (the target is cut only when it alone does not fit).
    pub fn encode_with_targets(
        &self,
        texts: &[&str],
        targets: &[Option<&str>],
    ) -> Result<Vec<Encoded>> {
        if self.input == InputMode::Text {
            return self.encode(texts);
        }
        if targets.len() != texts.len() {
            return Err(Error::Invalid(format!(
                "{} texts but {} targets",
                texts.len(),
                targets.len()
            )));
        }
        let cap = self.max_chars();
        let pairs: Vec<(&str, Option<&str>)> = texts
            .iter()
            .zip(targets)
            .map(|(t, g)| (clip(t, cap), present(*g).map(|g| clip(g, cap))))
            .collect();
        match self.pair {
            PairStyle::Template => {
                let inputs: Vec<tokenizers::EncodeInput<'_>> = pairs
                    .iter()
                    .map(|&(t, g)| match g {
                        Some(g) => (t, g).into(),
                        None => t.into(),
                    })
                    .collect();
                let encs = self.run(inputs, true, || what(texts))?;
                self.finish(encs)
            }
            PairStyle::Separator => {
                let joined: Vec<String> = pairs
                    .iter()
                    .map(|&(t, g)| match g {
                        Some(g) => [t, TARGET_SEPARATOR, g].concat(),
                        None => t.to_owned(),
                    })
                    .collect();
                let inputs = joined.iter().map(|s| s.as_str().into()).collect();
                let mut encs = Self::run_with(&self.untruncated, inputs, true, || what(texts))?;
                for (enc, &(text, target)) in encs.iter_mut().zip(&pairs) {
                    if enc.len() > self.max_len {
                        *enc = match target {
                            Some(target) => self.fit_target(text, target)?,
                            None => self.run(vec![text.into()], true, || what(&[text]))?.remove(0),
                        };
                    }
                }
                self.finish(encs)
            }
        }
    }

    /// `text + TARGET_SEPARATOR + target` in at most `max_len` tokens, the text cut on one of
    /// its own token boundaries (the longest prefix that fits).
    fn fit_target(&self, text: &str, target: &str) -> Result<tokenizers::Encoding> {
        let suffix = [TARGET_SEPARATOR, target].concat();
        let what = || format!("cannot encode a text of {} bytes with its target", text.len());
        let one = |s: &str, special: bool| -> Result<tokenizers::Encoding> {
            let mut e = Self::run_with(&self.untruncated, vec![s.into()], special, what)?;
            Ok(e.remove(0))
        };
        let n_suffix = one(&suffix, false)?.len();
        let n_special = self.tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(false));
        let text_enc = one(text, false)?;
        let offsets = text_enc.get_offsets();
        let budget = self.max_len.saturating_sub(n_suffix + n_special);
        // Retokenizing a cut word can take a token more than the prefix did: step back until
        // the whole sequence fits.
        for keep in (0..=budget.min(offsets.len().saturating_sub(1))).rev() {
            let mut end = offsets[keep].0.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let enc = one(&[&text[..end], suffix.as_str()].concat(), true)?;
            if enc.len() <= self.max_len {
                return Ok(enc);
            }
        }
        // The separator and target alone exceed max_len: right truncation cuts the target.
        let joined = [text, suffix.as_str()].concat();
        Ok(self.run(vec![joined.as_str().into()], true, what)?.remove(0))
    }

    /// Tokenizes and pads `texts` into one batch on `device` (single texts, see
    /// [`Self::encode`]).
    pub fn batch(&self, texts: &[&str], device: Device) -> Result<Batch> {
        let enc = self.encode(texts)?;
        let refs: Vec<&Encoded> = enc.iter().collect();
        Ok(Batch::pad(&refs, self.pad_id, self.side, device))
    }
}

#[cfg(test)]
mod tests;
