//! Decoders against transformers/peft: tiny random Llama and Qwen2, left and right padding,
//! and one LoRA step's adapter gradients.

use fintune_model::weights::Checkpoint;
use fintune_model::{load_backbone, Batch, LoadOptions, LoraConfig, Pooling};
use tch::{Kind, Tensor};

use crate::{golden, golden_json, max_abs, root};

fn masked_err(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let m = mask.unsqueeze(-1).to_kind(Kind::Double);
    ((a.to_kind(Kind::Double) - b.to_kind(Kind::Double)) * m).abs().max().double_value(&[])
}

fn check_hidden(kind: &str) {
    let g = golden(&format!("tiny_{kind}.safetensors"));
    let bb = load_backbone(&root().join(format!("fixtures/tiny-{kind}")), &LoadOptions::default())
        .unwrap();
    assert_eq!(bb.net.info().model_type, kind);
    let mut by_side = Vec::new();
    for side in ["left", "right"] {
        let batch = Batch::from_ids(
            g.tensor(&format!("{side}.input_ids")).unwrap(),
            g.tensor(&format!("{side}.attention_mask")).unwrap(),
        );
        let h = tch::no_grad(|| bb.net.forward_t(&batch, false));
        // Padding positions are meaningless (fully masked rows); compare real tokens.
        let err =
            masked_err(&h, &g.tensor(&format!("{side}.hidden")).unwrap(), &batch.attention_mask);
        println!("tiny {kind}, {side} padding: max abs error {err:.3e}");
        assert!(err < 1e-4, "{kind} {side}: {err}");
        by_side.push(Pooling::Last.pool(&h, &batch.attention_mask));
    }
    // The last-token representation does not depend on the padding side.
    assert!(max_abs(&by_side[0], &by_side[1]) < 1e-5);
}

#[test]
fn tiny_llama_matches_transformers_with_both_paddings() {
    check_hidden("llama");
}

#[test]
fn tiny_qwen2_matches_transformers_with_both_paddings() {
    check_hidden("qwen2");
}

fn check_lora(kind: &str) {
    let g = golden(&format!("tiny_{kind}.safetensors"));
    let meta = golden_json(&format!("tiny_{kind}.json"));
    let lora = LoraConfig {
        rank: meta["rank"].as_i64().unwrap(),
        alpha: meta["alpha"].as_f64().unwrap(),
        dropout: 0.0,
        targets: ["q_proj", "k_proj", "v_proj", "o_proj"].map(String::from).to_vec(),
    };
    let bb = load_backbone(
        &root().join(format!("fixtures/tiny-{kind}")),
        &LoadOptions { lora: Some(lora), ..Default::default() },
    )
    .unwrap();
    // Start from peft's initial adapters.
    let names: Vec<String> = meta["lora_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let vars = bb.adapters.variables();
    assert_eq!(vars.len(), names.len(), "one A and one B per targeted projection");
    tch::no_grad(|| {
        for n in &names {
            vars[n].shallow_clone().copy_(&g.tensor(&format!("lora.init.{n}")).unwrap());
        }
    });
    // The base weights are frozen; only adapters train.
    assert!(bb.base.trainable_variables().iter().all(|t| !t.requires_grad()));
    let batch = Batch::from_ids(
        g.tensor("right.input_ids").unwrap(),
        g.tensor("right.attention_mask").unwrap(),
    );
    let h = bb.net.forward_t(&batch, false);
    let err = masked_err(&h, &g.tensor("lora.hidden").unwrap(), &batch.attention_mask);
    assert!(err < 1e-4, "LoRA hidden states differ by {err}");
    let pooled = Pooling::Last.pool(&h, &batch.attention_mask);
    let score =
        pooled.matmul(&g.tensor("lora.head.weight").unwrap().transpose(0, 1)).squeeze_dim(-1);
    let loss = score.mse_loss(&g.tensor("lora.targets").unwrap(), tch::Reduction::Mean);
    assert!(
        (loss.double_value(&[]) - g.tensor("lora.loss").unwrap().double_value(&[0])).abs() < 1e-5
    );
    loss.backward();
    let mut worst = 0f64;
    for n in &names {
        let want = g.tensor(&format!("lora.grad.{n}")).unwrap();
        assert!(want.abs().max().double_value(&[]) > 0.0, "{n}: the reference gradient is zero");
        let e = max_abs(&vars[n].grad(), &want);
        worst = worst.max(e);
        assert!(e < 1e-4, "{kind} {n}: gradient differs by {e}");
    }
    println!("tiny {kind} LoRA step: {} adapter gradients, max abs error {worst:.3e}", names.len());
}

#[test]
fn tiny_llama_lora_step_matches_peft() {
    check_lora("llama");
}

#[test]
fn tiny_qwen2_lora_step_matches_peft() {
    check_lora("qwen2");
}

#[test]
fn lora_merge_keeps_evaluation_outputs() {
    let dir = root().join("fixtures/tiny-llama");
    let mut bb = load_backbone(
        &dir,
        &LoadOptions {
            lora: Some(LoraConfig { dropout: 0.0, ..LoraConfig::with_rank(4) }),
            ..Default::default()
        },
    )
    .unwrap();
    // Non-zero B so that the adapters matter.
    tch::no_grad(|| {
        for (n, t) in bb.adapters.variables() {
            if n.contains("lora_B") {
                t.shallow_clone().copy_(&(Tensor::randn_like(&t) * 0.1));
            }
        }
    });
    let ck = Checkpoint::open_dir(&dir).unwrap();
    assert!(ck.contains("embed_tokens.weight"));
    let g = golden("tiny_llama.safetensors");
    let batch = Batch::from_ids(
        g.tensor("right.input_ids").unwrap(),
        g.tensor("right.attention_mask").unwrap(),
    );
    let before = tch::no_grad(|| bb.net.forward_t(&batch, false));
    let plain = load_backbone(&dir, &LoadOptions::default()).unwrap();
    let base_out = tch::no_grad(|| plain.net.forward_t(&batch, false));
    assert!(
        masked_err(&before, &base_out, &batch.attention_mask) > 1e-4,
        "adapters change the output"
    );
    bb.net.merge_lora();
    let after = tch::no_grad(|| bb.net.forward_t(&batch, false));
    assert!(masked_err(&before, &after, &batch.attention_mask) < 1e-5);
}

/// Gradient checkpointing recomputes layers in the backward pass: with no dropout the
/// gradients equal those of the ordinary backward pass (LoRA adapters, and full tuning
/// including the embeddings).
#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    let _serial = crate::serial();
    use fintune_model::{HeadsConfig, ModelSpec, MultiTaskModel, Tuning};
    let g = golden("tiny_llama.safetensors");
    let batch = Batch::from_ids(
        g.tensor("left.input_ids").unwrap(),
        g.tensor("left.attention_mask").unwrap(),
    );
    let y = Tensor::from_slice(&[0.3f32, -0.5, 0.9]);
    for tuning in
        [Tuning::Lora(LoraConfig { dropout: 0.0, ..LoraConfig::with_rank(4) }), Tuning::Full]
    {
        let build = |ckpt: bool| {
            let spec = ModelSpec {
                heads: HeadsConfig { dropout: 0.0, ..Default::default() },
                tuning: tuning.clone(),
                gradient_checkpointing: ckpt,
                ..Default::default()
            };
            MultiTaskModel::new(&root().join("fixtures/tiny-llama"), &spec, tch::Device::Cpu)
                .unwrap()
        };
        let (plain_model, ckpt_model) = (build(false), build(true));
        // Same weights in both, without relying on the global random generator (other tests
        // draw from it in parallel): the heads of the first, and non-zero LoRA B factors so
        // that the A factors get gradients too.
        tch::no_grad(|| {
            for (p, q) in plain_model.parameters().iter().zip(ckpt_model.parameters()) {
                assert_eq!(p.name, q.name);
                if p.name.contains("lora_B") {
                    let n = p.tensor.numel() as i64;
                    let v = (Tensor::arange(n, (Kind::Float, tch::Device::Cpu)).sin() * 0.1)
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
            if !a.defined() {
                assert!(!b.defined(), "{n}");
                continue;
            }
            assert!(a.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{n} has no gradient");
            let e = max_abs(a, b);
            assert!(e < 1e-6, "{tuning}: {n} differs by {e}");
            checked += 1;
        }
        println!("gradient checkpointing, {tuning}: {checked} parameter gradients equal");
        assert!(checked >= 16, "{tuning}: only {checked} gradients");
    }
}
