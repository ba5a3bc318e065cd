//! MPNet against transformers' `MPNetModel`: a tiny random checkpoint (hidden states, loss,
//! gradients, one SGD and one AdamW step), gradient checkpointing, LoRA, hostile configs, and
//! all-mpnet-base-v2's real weights (when `cargo xtask setup --backbone mpnet` has run).

use std::path::{Path, PathBuf};

use fintune_model::mpnet::relative_position_buckets;
use fintune_model::weights::{self, Checkpoint};
use fintune_model::{
    load_backbone, Batch, HeadsConfig, LoadOptions, LoraConfig, ModelSpec, MultiTaskModel, Pooling,
    TextEncoder, Tuning,
};
use tch::{Device, Kind, Tensor};

use crate::{golden, golden_json, max_abs, root};

fn tiny_mpnet() -> PathBuf {
    root().join("fixtures/tiny-mpnet")
}

/// The all-mpnet-base-v2 folder that `cargo xtask setup --backbone mpnet` installs.
fn mpnet_dir() -> PathBuf {
    let home = std::env::var_os("FINTUNE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".fintune"));
    let dir = home.join("models/all-mpnet-base-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run `cargo xtask setup --backbone mpnet`",
        dir.display()
    );
    dir
}

fn tiny_batch(g: &Checkpoint) -> Batch {
    Batch::from_ids(g.tensor("input_ids").unwrap(), g.tensor("attention_mask").unwrap())
}

fn spec(tuning: Tuning, gradient_checkpointing: bool) -> ModelSpec {
    ModelSpec {
        pooling: Some(Pooling::Mean),
        heads: HeadsConfig {
            dropout: 0.0,
            regression_hidden: None,
            bound: None,
            num_classes: None,
            extra: vec![],
        },
        tuning,
        max_len: 64,
        gradient_checkpointing,
        bf16: false,
        ..Default::default()
    }
}

fn param(model: &MultiTaskModel, name: &str) -> Tensor {
    model
        .parameters()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .tensor
}

#[test]
fn relative_position_buckets_follow_transformers() {
    let b = relative_position_buckets(3, Device::Cpu);
    let want = Tensor::from_slice(&[0i64, 17, 18, 1, 0, 17, 2, 1, 0]).view([3, 3]);
    assert!(b.equal(&want), "{b:?}");
    // Distances of 128 and more share the last bucket of each direction.
    let b = relative_position_buckets(300, Device::Cpu);
    assert_eq!(b.int64_value(&[299, 0]), 15);
    assert_eq!(b.int64_value(&[0, 299]), 31);
    assert_eq!(b.int64_value(&[20, 0]), 10, "log bucket: 8 + floor(ln(20 / 8) / ln(16) * 8)");
}

#[test]
fn tiny_mpnet_hidden_states_match_transformers() {
    let g = golden("tiny_mpnet.safetensors");
    let bb = load_backbone(&tiny_mpnet(), &LoadOptions::default()).unwrap();
    assert_eq!(bb.net.info().model_type, "mpnet");
    let batch = tiny_batch(&g);
    assert_eq!(batch.input_ids.size()[1], 30, "long enough for the logarithmic buckets");
    let h = tch::no_grad(|| bb.net.forward_t(&batch, false));
    let err = max_abs(&h, &g.tensor("hidden").unwrap());
    println!("tiny MPNet hidden states: max abs error {err:.3e}");
    assert!(err < 1e-4, "max abs error {err}");
}

#[test]
fn mpnet_prefixed_checkpoint_keys_load_too() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::open_dir(&tiny_mpnet()).unwrap();
    let named: Vec<(String, Tensor)> =
        ck.names().map(|n| (format!("mpnet.{n}"), ck.tensor(n).unwrap())).collect();
    weights::save(&dir.path().join("model.safetensors"), &named, None).unwrap();
    std::fs::copy(tiny_mpnet().join("config.json"), dir.path().join("config.json")).unwrap();
    let g = golden("tiny_mpnet.safetensors");
    let bb = load_backbone(dir.path(), &LoadOptions::default()).unwrap();
    let h = tch::no_grad(|| bb.net.forward_t(&tiny_batch(&g), false));
    assert!(max_abs(&h, &g.tensor("hidden").unwrap()) < 1e-4);
}

/// Loss, gradients (the relative position bias table included), one SGD step and one
/// torch.optim.AdamW step, against PyTorch.
#[test]
fn tiny_mpnet_training_step_matches_pytorch() {
    let _serial = crate::serial();
    let g = golden("tiny_mpnet.safetensors");
    let meta = golden_json("tiny_mpnet.json");
    let model =
        MultiTaskModel::new(&tiny_mpnet(), &spec(Tuning::Full, false), Device::Cpu).unwrap();
    tch::no_grad(|| {
        param(&model, "heads.regression.out.weight").copy_(&g.tensor("head.weight").unwrap());
        param(&model, "heads.regression.out.bias").copy_(&g.tensor("head.bias").unwrap());
    });
    let out = model.forward_t(&tiny_batch(&g), false);
    let loss = out.score.mse_loss(&g.tensor("targets").unwrap(), tch::Reduction::Mean);
    let loss_err = (loss.double_value(&[]) - g.tensor("loss").unwrap().double_value(&[0])).abs();
    assert!(loss_err < 1e-5, "loss differs by {loss_err}");
    loss.backward();
    let lr = meta["lr"].as_f64().unwrap();
    let adam = &meta["adamw"];
    let (alr, eps, wd) = (
        adam["lr"].as_f64().unwrap(),
        adam["eps"].as_f64().unwrap(),
        adam["weight_decay"].as_f64().unwrap(),
    );
    let mut checked = 0;
    for name in meta["grad_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()) {
        let p = param(&model, &format!("backbone.{name}"));
        let grad = p.grad();
        let err = max_abs(&grad, &g.tensor(&format!("grad.{name}")).unwrap());
        println!("grad {name}: max abs error {err:.3e}");
        assert!(err < 1e-4, "{name}: gradient differs by {err}");
        let after = tch::no_grad(|| &p - &grad * lr);
        assert!(max_abs(&after, &g.tensor(&format!("after_sgd.{name}")).unwrap()) < 1e-4);
        // AdamW's first step: decoupled decay, then m_hat / (sqrt(v_hat) + eps) = g / (|g| + eps).
        let after = tch::no_grad(|| &p * (1.0 - alr * wd) - (&grad / (grad.abs() + eps)) * alr);
        let err = max_abs(&after, &g.tensor(&format!("after_adamw.{name}")).unwrap());
        assert!(err < 1e-4, "{name}: AdamW step differs by {err}");
        checked += 1;
    }
    assert_eq!(checked, 6);
    let err = max_abs(
        &param(&model, "heads.regression.out.weight").grad(),
        &g.tensor("grad.head.weight").unwrap(),
    );
    assert!(err < 1e-4, "head gradient differs by {err}");
}

/// A copy of the tiny checkpoint with dropout off (so that training passes are deterministic).
fn tiny_without_dropout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_mpnet().join("config.json")).unwrap())
            .unwrap();
    cfg["hidden_dropout_prob"] = 0.0.into();
    cfg["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(tiny_mpnet().join("model.safetensors"), dir.path().join("model.safetensors"))
        .unwrap();
    dir
}

/// Gradient checkpointing recomputes each layer (and its lookup of the shared relative
/// position bias) in the backward pass: the gradients equal the ordinary ones, for full
/// tuning and for LoRA on MPNet's q/k/v/o (the default targets).
#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    let _serial = crate::serial();
    let dir = tiny_without_dropout();
    let g = golden("tiny_mpnet.safetensors");
    let batch = tiny_batch(&g);
    let y = g.tensor("targets").unwrap();
    for tuning in
        [Tuning::Full, Tuning::Lora(LoraConfig { dropout: 0.0, ..LoraConfig::with_rank(4) })]
    {
        let build = |ckpt: bool| {
            MultiTaskModel::new(dir.path(), &spec(tuning.clone(), ckpt), Device::Cpu).unwrap()
        };
        let (plain_model, ckpt_model) = (build(false), build(true));
        tch::no_grad(|| {
            for (p, q) in plain_model.parameters().iter().zip(ckpt_model.parameters()) {
                assert_eq!(p.name, q.name);
                if p.name.contains("lora_B") {
                    let n = p.tensor.numel() as i64;
                    let v = (Tensor::arange(n, (Kind::Float, Device::Cpu)).sin() * 0.1)
                        .view(p.tensor.size().as_slice());
                    p.tensor.shallow_clone().copy_(&v);
                }
                q.tensor.shallow_clone().copy_(&p.tensor);
            }
        });
        let grads = |model: &MultiTaskModel| {
            let pooled = model.forward_backbone(&batch, true);
            let ph = pooled.detach().set_requires_grad(true);
            let (score, _) = model.forward_heads(&ph, true);
            score.mse_loss(&y, tch::Reduction::Mean).backward();
            model.backward_backbone(&pooled, &ph.grad());
            model.parameters().into_iter().map(|p| (p.name, p.tensor.grad())).collect::<Vec<_>>()
        };
        let (plain, ckpt) = (grads(&plain_model), grads(&ckpt_model));
        assert_eq!(plain.len(), ckpt.len());
        let mut checked = 0;
        for ((n, a), (_, b)) in plain.iter().zip(&ckpt) {
            assert!(a.defined() && b.defined(), "{tuning}: {n} has no gradient");
            let e = max_abs(a, b);
            assert!(e < 1e-6, "{tuning}: {n} differs by {e}");
            checked += 1;
        }
        let names: Vec<&str> = plain.iter().map(|(n, _)| n.as_str()).collect();
        match tuning {
            Tuning::Full => {
                assert!(names.contains(&"backbone.encoder.relative_attention_bias.weight"));
                let rb = &plain
                    .iter()
                    .find(|(n, _)| n.ends_with("relative_attention_bias.weight"))
                    .unwrap()
                    .1;
                assert!(rb.abs().sum(Kind::Float).double_value(&[]) > 0.0);
            }
            _ => {
                // 2 layers x q/k/v/o x (A, B), plus the head.
                let adapters = names.iter().filter(|n| n.contains("lora_")).count();
                assert_eq!(adapters, 16, "{names:?}");
                assert!(
                    names.contains(&"adapters.encoder.layer.1.attention.attn.o.lora_A.weight"),
                    "{names:?}"
                );
            }
        }
        println!("gradient checkpointing, {tuning}: {checked} parameter gradients equal");
    }
}

/// LoRA starts as the base model (B = 0) and merging folds the adapters in exactly.
#[test]
fn lora_adapters_merge_into_the_base() {
    let g = golden("tiny_mpnet.safetensors");
    let batch = tiny_batch(&g);
    let opts = LoadOptions { lora: Some(LoraConfig::with_rank(2)), ..Default::default() };
    let mut bb = load_backbone(&tiny_mpnet(), &opts).unwrap();
    let h0 = tch::no_grad(|| bb.net.forward_t(&batch, false));
    assert!(max_abs(&h0, &g.tensor("hidden").unwrap()) < 1e-4, "B = 0: the base model");
    tch::no_grad(|| {
        for (n, t) in weights::named_variables(&bb.adapters) {
            if n.contains("lora_B") {
                t.shallow_clone().copy_(&(t.randn_like() * 0.05));
            }
        }
    });
    let h1 = tch::no_grad(|| bb.net.forward_t(&batch, false));
    assert!(max_abs(&h1, &h0) > 1e-3, "the adapters change the output");
    bb.net.merge_lora();
    let h2 = tch::no_grad(|| bb.net.forward_t(&batch, false));
    assert!(max_abs(&h2, &h1) < 1e-5);
}

fn tiny_config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(tiny_mpnet().join("config.json")).unwrap())
        .unwrap()
}

fn load_with(cfg: &serde_json::Value, safetensors: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(safetensors, dir.path().join("model.safetensors")).unwrap();
    load_backbone(dir.path(), &LoadOptions::default()).unwrap_err().to_string()
}

/// A hostile or inconsistent config.json is refused before anything is allocated: sizes are
/// bounded and must equal the checkpoint's tensor shapes.
#[test]
fn configs_that_the_weights_do_not_back_are_refused() {
    let st = tiny_mpnet().join("model.safetensors");
    let cases: [(&str, serde_json::Value, &str); 9] = [
        ("vocab_size", 4_000_000_000i64.into(), "vocab_size must be in [2, 1048576]"),
        ("vocab_size", 121.into(), "vocab_size and hidden_size do not match the checkpoint"),
        ("hidden_size", 1_000_000.into(), "hidden_size must be in [1, 16384]"),
        ("num_hidden_layers", 100_000.into(), "num_hidden_layers must be in [1, 256]"),
        ("num_hidden_layers", 3.into(), "num_hidden_layers is 3 but the checkpoint has 2 layers"),
        ("intermediate_size", 128.into(), "intermediate_size do not match the checkpoint"),
        ("max_position_embeddings", 4096.into(), "max_position_embeddings do not match"),
        (
            "relative_attention_num_buckets",
            16.into(),
            "relative_attention_num_buckets must be in [32, 4096]",
        ),
        ("pad_token_id", 0.into(), "pad_token_id 0 is not supported"),
    ];
    for (field, value, want) in cases {
        let mut cfg = tiny_config();
        cfg[field] = value;
        let err = load_with(&cfg, &st);
        assert!(err.contains(want) && err.contains("config.json"), "{field}: {err}");
    }
    let mut cfg = tiny_config();
    cfg["num_hidden_layers"] = 1.into();
    let err = load_with(&cfg, &st);
    assert!(err.contains("num_hidden_layers is 1 but the checkpoint has 2 layers"), "{err}");
    let mut cfg = tiny_config();
    cfg["num_attention_heads"] = 5.into();
    let err = load_with(&cfg, &st);
    assert!(err.contains("must be a multiple of num_attention_heads 5"), "{err}");
}

#[test]
fn max_tokens_is_max_positions_minus_padding_idx_minus_one() {
    let ck = Checkpoint::open_dir(&tiny_mpnet()).unwrap();
    let p = tiny_mpnet().join("config.json");
    let text = std::fs::read_to_string(&p).unwrap();
    let cfg = fintune_model::mpnet::Config::from_checkpoint(&p, &text, &ck, "").unwrap();
    assert_eq!(cfg.max_tokens(), 38);
    // 38 tokens run; 39 would index past the position table.
    let bb = load_backbone(&tiny_mpnet(), &LoadOptions::default()).unwrap();
    let ids = Tensor::full([1, 38], 5, (Kind::Int64, Device::Cpu));
    let h = tch::no_grad(|| {
        bb.net.forward_t(&Batch::from_ids(ids.shallow_clone(), ids.ones_like()), false)
    });
    assert_eq!(h.size(), [1, 38, 32]);
}

#[test]
#[ignore = "needs .fintune/models/all-mpnet-base-v2 (cargo xtask setup --backbone mpnet)"]
fn mpnet_real_weights_match_transformers() {
    let g = golden("mpnet.safetensors");
    let dir = mpnet_dir();
    let bb = load_backbone(&dir, &LoadOptions::default()).unwrap();
    assert_eq!((bb.net.info().hidden_size, bb.net.info().num_layers), (768, 12));
    let batch =
        Batch::from_ids(g.tensor("input_ids").unwrap(), g.tensor("attention_mask").unwrap());
    assert!(batch.input_ids.size()[1] > 24, "a sentence reaches the logarithmic buckets");
    let h = tch::no_grad(|| bb.net.forward_t(&batch, false));
    let err = max_abs(&h.narrow(2, 0, 64), &g.tensor("hidden_head").unwrap());
    println!("all-mpnet-base-v2 hidden states (64 channels): max abs error {err:.3e}");
    assert!(err < 1e-4, "hidden states differ by {err}");
    let emb = Pooling::Mean.pool(&h, &batch.attention_mask);
    let err = max_abs(&emb, &g.tensor("embeddings").unwrap());
    println!("all-mpnet-base-v2 mean-pooled embeddings: max abs error {err:.3e}");
    assert!(err < 1e-4, "embeddings differ by {err}");
    // sentence-transformers' output is the normalised mean (modules.json lists Normalize).
    let st = &emb / emb.norm_scalaropt_dim(2, [1], true);
    assert!(max_abs(&st, &g.tensor("sentence_transformers").unwrap()) < 1e-4);
}

/// `--input text+target` on MPNet: `<s> text </s></s> target </s>` (token types 0), as
/// `tokenizers`/`transformers` encode the pair (`make_pair_goldens.py`).
#[test]
#[ignore = "needs .fintune/models/all-mpnet-base-v2 (cargo xtask setup --backbone mpnet)"]
fn mpnet_real_text_target_pairs_match_python_tokenizers() {
    let n = crate::check_pair_golden("all-mpnet-base-v2", |l| {
        TextEncoder::from_file(&mpnet_dir(), l).unwrap()
    });
    assert_eq!(n, 14);
}

#[test]
#[ignore = "needs .fintune/models/all-mpnet-base-v2 (cargo xtask setup --backbone mpnet)"]
fn mpnet_real_text_encoder_reproduces_the_reference_batch() {
    let g = golden("mpnet.safetensors");
    let sentences: Vec<String> =
        serde_json::from_value(golden_json("mpnet_sentences.json")).unwrap();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let enc = TextEncoder::from_file(&mpnet_dir(), 128).unwrap();
    let batch = enc.batch(&refs, Device::Cpu).unwrap();
    assert!(batch.input_ids.equal(&g.tensor("input_ids").unwrap()));
    assert!(batch.attention_mask.equal(&g.tensor("attention_mask").unwrap()));
}
