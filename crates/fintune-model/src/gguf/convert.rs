//! Conversion of a `llama` GGUF into a Hugging Face model folder.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::tokenizer::tokenizer_from_gguf;
use super::GgufFile;
use crate::{Error, Result};

/// The files [`convert`] writes; an existing output folder holding only these is replaced.
const OUTPUT_FILES: &[&str] = &[
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
];

/// What [`convert`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConvertReport {
    /// The GGUF file read.
    pub source: PathBuf,
    /// The folder written.
    pub out_dir: PathBuf,
    /// `general.architecture`.
    pub architecture: String,
    /// Number of tensors in the GGUF file, per ggml type (`"Q4_1" -> 210`).
    pub tensors_by_type: BTreeMap<String, usize>,
    /// Number of tensors written to `model.safetensors`.
    pub tensors_written: usize,
    /// Number of parameters written (elements of all tensors).
    pub parameters: u64,
    /// Rows of the embedding table (`vocab_size` in config.json).
    pub vocab_size: usize,
    /// Whether the LM head is the token embedding (no `output.weight` in the file).
    pub tied_embeddings: bool,
    /// Wall-clock seconds for the whole conversion.
    pub seconds: f64,
}

impl std::fmt::Display for ConvertReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by_type: Vec<String> =
            self.tensors_by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
        write!(
            f,
            "converted {} ({} GGUF tensors: {}) into {}: {} tensors, {:.1} M parameters, vocabulary {}, {} embeddings, {:.2} s",
            self.source.display(),
            self.tensors_by_type.values().sum::<usize>(),
            by_type.join(", "),
            self.out_dir.display(),
            self.tensors_written,
            self.parameters as f64 / 1e6,
            self.vocab_size,
            if self.tied_embeddings { "tied" } else { "untied" },
            self.seconds
        )
    }
}

/// llama.cpp's `permute` of Q/K projection rows (convert_hf_to_gguf.py): `w.reshape(n_head, 2,
/// rows / n_head / 2, cols).swapaxes(1, 2).reshape(rows, cols)`. It interleaves the two
/// rotary halves of each head; GGUF files store Q and K in this order.
pub fn llama_cpp_permute_rows(
    w: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
) -> Result<Vec<f32>> {
    permute(w, rows, cols, n_head, false)
}

/// The inverse of [`llama_cpp_permute_rows`]: GGUF's Q/K row order back to Hugging Face's.
pub fn undo_llama_cpp_permute_rows(
    w: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
) -> Result<Vec<f32>> {
    permute(w, rows, cols, n_head, true)
}

fn permute(w: &[f32], rows: usize, cols: usize, n_head: usize, undo: bool) -> Result<Vec<f32>> {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) || w.len() != rows * cols {
        return Err(Error::Invalid(format!(
            "cannot permute a [{rows}, {cols}] matrix ({} values) over {n_head} heads",
            w.len()
        )));
    }
    let d = rows / n_head;
    let half = d / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..half {
                // Hugging Face row h*d + i*half + j sits at GGUF row h*d + 2*j + i.
                let hf = h * d + i * half + j;
                let gg = h * d + 2 * j + i;
                let (src, dst) = if undo { (gg, hf) } else { (hf, gg) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// Llama hyperparameters read from the GGUF metadata.
#[derive(Debug)]
struct Hparams {
    n_layer: usize,
    n_embd: usize,
    n_ff: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    n_ctx: u64,
    eps: f32,
    rope_theta: f32,
    rope_linear_factor: Option<f32>,
}

fn hparams(file: &GgufFile, arch: &str) -> Result<Hparams> {
    let key = |k: &str| format!("{arch}.{k}");
    let usize_of = |k: &str| -> Result<usize> { Ok(file.get_u32(&key(k))? as usize) };
    let n_embd = usize_of("embedding_length")?;
    let n_head = usize_of("attention.head_count")?;
    let n_head_kv = match file.opt_u32(&key("attention.head_count_kv"))? {
        Some(n) => n as usize,
        None => n_head,
    };
    if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
        return Err(file.err(format!(
            "{arch}.attention.head_count {n_head} must be a positive multiple of head_count_kv {n_head_kv}"
        )));
    }
    let head_dim = match file.opt_u32(&key("attention.key_length"))? {
        Some(k) => k as usize,
        None if n_embd % n_head == 0 => n_embd / n_head,
        None => {
            return Err(file.err(format!(
                "{arch}.embedding_length {n_embd} is not a multiple of head_count {n_head}"
            )))
        }
    };
    if let Some(v) = file.opt_u32(&key("attention.value_length"))? {
        if v as usize != head_dim {
            return Err(file.err(format!(
                "{arch}.attention.value_length {v} differs from the key length {head_dim} (not supported)"
            )));
        }
    }
    if head_dim % 2 != 0 {
        return Err(file.err(format!("head dimension {head_dim} must be even for RoPE")));
    }
    if let Some(r) = file.opt_u32(&key("rope.dimension_count"))? {
        if r as usize != head_dim {
            return Err(file.err(format!(
                "{arch}.rope.dimension_count {r} differs from the head dimension {head_dim}: partial rotary embeddings are not supported"
            )));
        }
    }
    let rope_linear_factor = match file.opt_str(&key("rope.scaling.type"))? {
        None | Some("none") => None,
        Some("linear") => Some(file.get_f32(&key("rope.scaling.factor"))?),
        Some(other) => {
            return Err(file.err(format!(
                "{arch}.rope.scaling.type `{other}` is not supported (none, linear)"
            )))
        }
    };
    Ok(Hparams {
        n_layer: usize_of("block_count")?,
        n_embd,
        n_ff: usize_of("feed_forward_length")?,
        n_head,
        n_head_kv,
        head_dim,
        n_ctx: file.get_u64(&key("context_length"))?,
        eps: file.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
        rope_theta: file.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0),
        rope_linear_factor,
    })
}

/// One tensor to write: its GGUF source, Hugging Face name, expected shape, and the head
/// count to undo llama.cpp's row permutation over (Q and K).
struct Plan {
    gguf: String,
    hf: String,
    shape: Vec<usize>,
    unpermute: Option<usize>,
}

fn plan(hp: &Hparams, vocab: usize, has_output: bool) -> Vec<Plan> {
    let (h, q, kv, ff) = (hp.n_embd, hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim, hp.n_ff);
    let p = |g: String, f: String, shape: Vec<usize>, unpermute: Option<usize>| Plan {
        gguf: g,
        hf: f,
        shape,
        unpermute,
    };
    let mut out = vec![p(
        "token_embd.weight".into(),
        "model.embed_tokens.weight".into(),
        vec![vocab, h],
        None,
    )];
    for i in 0..hp.n_layer {
        let g = |s: &str| format!("blk.{i}.{s}.weight");
        let f = |s: &str| format!("model.layers.{i}.{s}.weight");
        out.extend([
            p(g("attn_norm"), f("input_layernorm"), vec![h], None),
            p(g("attn_q"), f("self_attn.q_proj"), vec![q, h], Some(hp.n_head)),
            p(g("attn_k"), f("self_attn.k_proj"), vec![kv, h], Some(hp.n_head_kv)),
            p(g("attn_v"), f("self_attn.v_proj"), vec![kv, h], None),
            p(g("attn_output"), f("self_attn.o_proj"), vec![h, q], None),
            p(g("ffn_norm"), f("post_attention_layernorm"), vec![h], None),
            p(g("ffn_gate"), f("mlp.gate_proj"), vec![ff, h], None),
            p(g("ffn_up"), f("mlp.up_proj"), vec![ff, h], None),
            p(g("ffn_down"), f("mlp.down_proj"), vec![h, ff], None),
        ]);
    }
    out.push(p("output_norm.weight".into(), "model.norm.weight".into(), vec![h], None));
    if has_output {
        out.push(p("output.weight".into(), "lm_head.weight".into(), vec![vocab, h], None));
    }
    out
}

/// An f32 tensor ready for safetensors.
struct F32Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl safetensors::View for &F32Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.data.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

/// Converts a `general.architecture = llama` GGUF file into a Hugging Face model folder:
///
/// - `model.safetensors`: every tensor dequantized to f32 under Hugging Face Llama names
///   (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, ...,
///   `model.norm.weight`, and `lm_head.weight` only when the file has `output.weight`), with
///   llama.cpp's Q/K row permutation undone;
/// - `config.json` (`model_type = "llama"`, all fields [`crate::llama::Config`] reads),
///   `generation_config.json`;
/// - `tokenizer.json` ([`super::tokenizer_from_gguf`]) and `tokenizer_config.json` (special
///   tokens, chat template).
///
/// Everything is written into a temporary sibling folder that is renamed to `out_dir` at the
/// end. An existing `out_dir` is replaced only when it holds nothing but these files.
pub fn convert(gguf_path: &Path, out_dir: &Path) -> Result<ConvertReport> {
    let start = Instant::now();
    let file = GgufFile::open(gguf_path)?;
    let arch = file.get_str("general.architecture")?.to_owned();
    if arch != "llama" {
        return Err(file.err(format!(
            "general.architecture is `{arch}`; only `llama` models can be converted"
        )));
    }
    let hp = hparams(&file, &arch)?;
    let tokenizer = tokenizer_from_gguf(&file)?;
    let tokens = file.get_str_array("tokenizer.ggml.tokens")?;

    let embd = file
        .tensor_info("token_embd.weight")
        .ok_or_else(|| file.err("missing tensor `token_embd.weight`"))?;
    let vocab = match embd.shape.as_slice() {
        [v, h] if *h as usize == hp.n_embd => *v as usize,
        other => {
            return Err(file.err(format!(
                "tensor `token_embd.weight` has shape {other:?}, expected [vocab, {}]",
                hp.n_embd
            )))
        }
    };
    if let Some(v) = file.opt_u32(&format!("{arch}.vocab_size"))? {
        if v as usize != vocab {
            return Err(file
                .err(format!("{arch}.vocab_size is {v} but token_embd.weight has {vocab} rows")));
        }
    }
    if tokens.len() > vocab {
        return Err(file.err(format!(
            "the tokenizer has {} tokens but token_embd.weight only {vocab} rows",
            tokens.len()
        )));
    }
    let has_output = file.tensor_info("output.weight").is_some();
    let plans = plan(&hp, vocab, has_output);

    // Every tensor of the file must have a destination, and every destination a source.
    let known: HashSet<&str> = plans.iter().map(|p| p.gguf.as_str()).collect();
    for t in file.tensors() {
        if !known.contains(t.name.as_str()) {
            let hint = if t.name == "rope_freqs.weight" {
                " (per-frequency RoPE factors, as Llama 3.1 files carry, are not supported)"
            } else {
                ""
            };
            return Err(file
                .err(format!("tensor `{}` has no Hugging Face Llama counterpart{hint}", t.name)));
        }
    }
    let mut tensors = Vec::with_capacity(plans.len());
    for p in &plans {
        let info = file.tensor_info(&p.gguf).ok_or_else(|| {
            file.err(format!("missing tensor `{}` ({} blocks expected)", p.gguf, hp.n_layer))
        })?;
        let shape: Vec<usize> = info.shape.iter().map(|&d| d as usize).collect();
        if shape != p.shape {
            return Err(file.err(format!(
                "tensor `{}` has shape {shape:?}, the hyperparameters imply {:?}",
                p.gguf, p.shape
            )));
        }
        let mut data = file.dequantize(info)?;
        if let Some(n_head) = p.unpermute {
            data = undo_llama_cpp_permute_rows(&data, shape[0], shape[1], n_head)
                .map_err(|e| file.err(format!("tensor `{}`: {e}", p.gguf)))?;
        }
        tensors.push((p.hf.clone(), F32Tensor { shape, data }));
    }

    let token_id = |k: &str| -> Result<Option<u32>> {
        let id = file.opt_u32(&format!("tokenizer.ggml.{k}"))?;
        match id {
            Some(i) if i as usize >= tokens.len() => Err(file.err(format!(
                "tokenizer.ggml.{k} is {i}, beyond the {}-token vocabulary",
                tokens.len()
            ))),
            other => Ok(other),
        }
    };
    let (bos, eos, pad, unk) = (
        token_id("bos_token_id")?,
        token_id("eos_token_id")?,
        token_id("padding_token_id")?,
        token_id("unknown_token_id")?,
    );
    let shortest = |x: f32| -> f64 { x.to_string().parse().expect("a printed f32 parses") };
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hp.n_embd,
        "intermediate_size": hp.n_ff,
        "num_hidden_layers": hp.n_layer,
        "num_attention_heads": hp.n_head,
        "num_key_value_heads": hp.n_head_kv,
        "head_dim": hp.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": hp.n_ctx,
        "rms_norm_eps": shortest(hp.eps),
        "rope_theta": shortest(hp.rope_theta),
        "rope_scaling": hp.rope_linear_factor.map(|f| json!({"rope_type": "linear", "factor": shortest(f)})),
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "tie_word_embeddings": !has_output,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": "float32",
        "use_cache": true,
    });
    let generation = json!({ "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad });
    let name_of = |id: Option<u32>| id.map(|i| Json::from(tokens[i as usize].clone()));
    let mut tok_config = json!({
        "add_bos_token": file.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false),
        "add_eos_token": file.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
        "bos_token": name_of(bos),
        "eos_token": name_of(eos),
        "pad_token": name_of(pad),
        "unk_token": name_of(unk),
        "clean_up_tokenization_spaces": false,
        "model_max_length": hp.n_ctx,
        "tokenizer_class": "GPT2Tokenizer",
    });
    if let Some(t) = file.opt_str("tokenizer.chat_template")? {
        tok_config["chat_template"] = Json::from(t);
    }

    // Write everything into a temporary sibling folder, then rename it into place.
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = out_dir
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: not a folder name", out_dir.display())))?
        .to_string_lossy()
        .into_owned();
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp = parent.join(format!(".{name}.gguf-tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let written =
        write_all(&tmp, &tensors, gguf_path, &tokenizer, &config, &generation, &tok_config)
            .and_then(|()| install(&tmp, out_dir, &parent, &name));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written?;

    let mut by_type = BTreeMap::new();
    for t in file.tensors() {
        *by_type.entry(t.ggml_type.name()).or_insert(0) += 1;
    }
    Ok(ConvertReport {
        source: gguf_path.to_owned(),
        out_dir: out_dir.to_owned(),
        architecture: arch,
        tensors_by_type: by_type,
        tensors_written: tensors.len(),
        parameters: tensors.iter().map(|(_, t)| t.data.len() as u64).sum(),
        vocab_size: vocab,
        tied_embeddings: !has_output,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn write_json(path: &Path, value: &Json) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::json(path, e))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

fn write_all(
    dir: &Path,
    tensors: &[(String, F32Tensor)],
    source: &Path,
    tokenizer: &tokenizers::Tokenizer,
    config: &Json,
    generation: &Json,
    tok_config: &Json,
) -> Result<()> {
    let st = dir.join("model.safetensors");
    let meta = HashMap::from([
        ("format".to_owned(), "pt".to_owned()),
        (
            "gguf_source".to_owned(),
            source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        ),
    ]);
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta), &st)
        .map_err(|source| Error::SafetensorsWrite { path: st.clone(), source })?;
    write_json(&dir.join("config.json"), config)?;
    write_json(&dir.join("generation_config.json"), generation)?;
    write_json(&dir.join("tokenizer_config.json"), tok_config)?;
    let tj = dir.join("tokenizer.json");
    tokenizer
        .save(&tj, true)
        .map_err(|e| Error::tokenizer(format!("cannot write {}", tj.display()), e))?;
    Ok(())
}

/// Renames `tmp` to `out`, replacing an existing `out` only when it holds nothing but files
/// a conversion writes.
fn install(tmp: &Path, out: &Path, parent: &Path, name: &str) -> Result<()> {
    if !out.exists() {
        return std::fs::rename(tmp, out).map_err(|e| Error::io(out, e));
    }
    if !out.is_dir() {
        return Err(Error::Invalid(format!("{} exists and is not a folder", out.display())));
    }
    let entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(out, e))?;
        let n = entry.file_name().to_string_lossy().into_owned();
        if !OUTPUT_FILES.contains(&n.as_str()) {
            return Err(Error::Invalid(format!(
                "{} exists and holds `{n}`, which a GGUF conversion does not write; remove the folder or choose another one",
                out.display()
            )));
        }
    }
    let old = parent.join(format!(".{name}.gguf-old-{}", std::process::id()));
    std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
    if let Err(e) = std::fs::rename(tmp, out) {
        let _ = std::fs::rename(&old, out);
        return Err(Error::io(out, e));
    }
    std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))
}
