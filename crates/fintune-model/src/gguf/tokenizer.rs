//! A `tokenizers` tokenizer built from a GGUF vocabulary (`tokenizer.ggml.model = gpt2`:
//! byte-level BPE), following llama.cpp's tokenization rules.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::sequence::Sequence as ProcessorSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer};

use super::GgufFile;
use crate::Result;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// `tokenizer.ggml.pre` values whose llama.cpp rules are "split every digit, then GPT-2's
/// regex" (llama.cpp's STARCODER/REFACT/COMMAND_R/SMOLLM/CODESHELL pre-tokenizer types).
const DIGITS_THEN_GPT2: &[&str] = &["smollm", "starcoder", "refact", "command-r", "codeshell"];
/// `tokenizer.ggml.pre` values whose rule is GPT-2's regex alone (llama.cpp's GPT2/MPT/OLMO).
const GPT2_ONLY: &[&str] = &["gpt-2", "mpt", "olmo"];

/// Builds a byte-level BPE tokenizer from the GGUF metadata: `tokenizer.ggml.tokens`
/// (vocabulary, id = position), `tokenizer.ggml.merges` (`"a b"` pairs, by priority),
/// `tokenizer.ggml.token_type` (control tokens become special added tokens, user-defined
/// tokens non-special added tokens), `tokenizer.ggml.pre` (the pre-tokenizer: for `smollm`
/// and the StarCoder family every digit is split off before GPT-2's byte-level regex; for
/// `gpt-2`, `mpt`, `olmo` only the regex), and `tokenizer.ggml.add_bos_token` /
/// `add_eos_token` (a template that adds them; both default to false).
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let model = file.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(file.err(format!(
            "tokenizer.ggml.model is `{model}`; only `gpt2` (byte-level BPE) vocabularies can be converted"
        )));
    }
    let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
    let mut vocab = Vocab::default();
    vocab.reserve(tokens.len());
    for (id, tok) in tokens.iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| file.err("more than 2^32 tokens"))?;
        if let Some(first) = vocab.insert(tok.clone(), id) {
            return Err(file.err(format!(
                "tokenizer.ggml.tokens: token {tok:?} appears twice (ids {first} and {id})"
            )));
        }
    }
    let merges = file
        .get_str_array("tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                Ok((a.to_owned(), b.to_owned()))
            }
            _ => Err(file.err(format!(
                "tokenizer.ggml.merges[{i}] is {m:?}, expected two tokens separated by one space"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let types = match file.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(_) => file.get_int_array("tokenizer.ggml.token_type")?,
    };
    if types.len() != tokens.len() {
        return Err(file.err(format!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let pre = file.opt_str("tokenizer.ggml.pre")?.ok_or_else(|| {
        file.err("tokenizer.ggml.pre is missing: the pre-tokenizer rules are unknown")
    })?;
    let byte_level = ByteLevel::new(false, true, true);
    let pre_tokenizer: PreTokenizerWrapper = if DIGITS_THEN_GPT2.contains(&pre) {
        Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
    } else if GPT2_ONLY.contains(&pre) {
        byte_level.into()
    } else {
        return Err(file.err(format!(
            "tokenizer.ggml.pre `{pre}` is not supported (supported: {}, {})",
            DIGITS_THEN_GPT2.join(", "),
            GPT2_ONLY.join(", ")
        )));
    };

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| file.err(format!("cannot build the BPE model: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    tok.with_decoder(Some(ByteLevelDecoder::default()));

    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL)
        .map(|(s, _)| AddedToken::from(s.clone(), true).normalized(false))
        .collect();
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == TOKEN_TYPE_USER_DEFINED)
        .map(|(s, _)| AddedToken::from(s.clone(), false).normalized(false))
        .collect();
    tok.add_special_tokens(special).map_err(|e| file.err(format!("special tokens: {e}")))?;
    tok.add_tokens(user).map_err(|e| file.err(format!("user-defined tokens: {e}")))?;

    let token = |key: &str| -> Result<Option<(String, u32)>> {
        match file.opt_u32(key)? {
            None => Ok(None),
            Some(id) => tokens.get(id as usize).map(|t| Some((t.clone(), id))).ok_or_else(|| {
                file.err(format!("{key} is {id}, beyond the {}-token vocabulary", tokens.len()))
            }),
        }
    };
    let bos = token("tokenizer.ggml.bos_token_id")?;
    let eos = token("tokenizer.ggml.eos_token_id")?;
    let add_bos = file.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false);
    let add_eos = file.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let byte_level_pp: PostProcessorWrapper =
        tokenizers::processors::byte_level::ByteLevel::new(false, false, true).into();
    let post: PostProcessorWrapper = if add_bos || add_eos {
        let mut single = Vec::new();
        let mut pair = Vec::new();
        let mut specials = Vec::new();
        let mut wrap = |seq: &str, out: &mut Vec<String>, with: bool| -> Result<()> {
            if add_bos && with {
                let (t, id) = bos.clone().ok_or_else(|| {
                    file.err("tokenizer.ggml.add_bos_token is true but there is no bos_token_id")
                })?;
                out.push(t.clone());
                specials.push((t, id));
            }
            out.push(seq.to_owned());
            if add_eos && with {
                let (t, id) = eos.clone().ok_or_else(|| {
                    file.err("tokenizer.ggml.add_eos_token is true but there is no eos_token_id")
                })?;
                out.push(t.clone());
                specials.push((t, id));
            }
            Ok(())
        };
        wrap("$A", &mut single, true)?;
        wrap("$A", &mut pair, true)?;
        wrap("$B:1", &mut pair, true)?;
        specials.sort();
        specials.dedup();
        let template = TemplateProcessing::builder()
            .try_single(single.join(" "))
            .and_then(|b| b.try_pair(pair.join(" ")))
            .map_err(|e| file.err(format!("post-processor template: {e}")))?
            .special_tokens(specials)
            .build()
            .map_err(|e| file.err(format!("post-processor template: {e}")))?;
        ProcessorSequence::new(vec![byte_level_pp, template.into()]).into()
    } else {
        byte_level_pp
    };
    tok.with_post_processor(Some(post));
    Ok(tok)
}
