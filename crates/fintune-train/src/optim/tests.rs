use std::path::PathBuf;

use fintune_model::weights::{self, Checkpoint};
use fintune_model::{Depth, MultiTaskModel, Param, Part};
use tch::{Kind, Tensor};

use super::*;

fn goldens(name: &str) -> Checkpoint {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/goldens").join(name);
    Checkpoint::open_files(&[p]).unwrap()
}

fn cfg(lr_w: f64, lr_b: f64) -> AdamWConfig {
    AdamWConfig {
        backbone: GroupRates { lr: lr_w, weight_decay: 0.1 },
        adapter: GroupRates { lr: 0.0, weight_decay: 0.0 },
        head: GroupRates { lr: lr_b, weight_decay: 0.0 },
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        layer_decay: LayerDecay::OFF,
    }
}

/// libtorch's random generator is global to the process, and the test harness runs tests on
/// several threads: a test that seeds it and then draws (a model's initial weights) holds this
/// lock, or another test's draws could fall between its seed and its own draws.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn adamw_matches_torch_optim_adamw() {
    let g = goldens("adamw.safetensors");
    let w = g.tensor("init.w").unwrap().set_requires_grad(true);
    let b = g.tensor("init.b").unwrap().set_requires_grad(true);
    let params = vec![
        Param {
            name: "backbone.w".into(),
            tensor: w.shallow_clone(),
            part: Part::Backbone,
            decay: true,
            depth: Depth::Other,
        },
        Param {
            name: "heads.b".into(),
            tensor: b.shallow_clone(),
            part: Part::Head,
            decay: false,
            depth: Depth::Other,
        },
    ];
    let mut opt = AdamW::new(params, cfg(0.01, 0.05));
    for i in 0..3 {
        opt.zero_grad();
        let loss = (&w * g.tensor(&format!("grad{i}.w")).unwrap()).sum(Kind::Float)
            + (&b * g.tensor(&format!("grad{i}.b")).unwrap()).sum(Kind::Float);
        loss.backward();
        opt.step(1.0);
    }
    assert!(max_abs(&w, &g.tensor("final.w").unwrap()) < 1e-6);
    assert!(max_abs(&b, &g.tensor("final.b").unwrap()) < 1e-6);
    let state = opt.state_tensors();
    let m = &state.iter().find(|(n, _)| n == "m.backbone.w").unwrap().1;
    assert!(max_abs(m, &g.tensor("final.m.w").unwrap()) < 1e-7);
}

#[test]
fn restored_state_continues_identically() {
    let make = || {
        let w = {
            let _rng = torch_rng();
            tch::manual_seed(5);
            Tensor::randn([5, 3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true)
        };
        let opt = AdamW::new(
            vec![Param {
                name: "backbone.w".into(),
                tensor: w.shallow_clone(),
                part: Part::Backbone,
                decay: true,
                depth: Depth::Other,
            }],
            cfg(0.01, 0.0),
        );
        (w, opt)
    };
    let grad =
        |i: i64| Tensor::arange(15, (Kind::Float, tch::Device::Cpu)).view([5, 3]).sin() * (i + 1);
    let run = |w: &Tensor, opt: &mut AdamW, from: i64, to: i64| {
        for i in from..to {
            opt.zero_grad();
            (w * grad(i)).sum(Kind::Float).backward();
            opt.step(0.5);
        }
    };
    let (w1, mut o1) = make();
    run(&w1, &mut o1, 0, 6);

    let (w2, mut o2) = make();
    run(&w2, &mut o2, 0, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opt.safetensors");
    let mut tensors = o2.state_tensors();
    tensors.push(("param".into(), w2.detach()));
    weights::save(&path, &tensors, None).unwrap();
    let (w3, mut o3) = make();
    let ck = Checkpoint::open_files(&[path]).unwrap();
    tch::no_grad(|| w3.shallow_clone().copy_(&ck.tensor("param").unwrap()));
    o3.load_state(&ck, o2.steps()).unwrap();
    run(&w3, &mut o3, 3, 6);
    assert!(w1.equal(&w3), "resumed optimisation differs");
}

#[test]
fn clipping_bounds_the_global_norm() {
    let a = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let b = Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let mut opt = AdamW::new(
        vec![
            Param {
                name: "backbone.a".into(),
                tensor: a.shallow_clone(),
                part: Part::Backbone,
                decay: true,
                depth: Depth::Other,
            },
            Param {
                name: "heads.b".into(),
                tensor: b.shallow_clone(),
                part: Part::Head,
                decay: true,
                depth: Depth::Other,
            },
        ],
        cfg(0.1, 0.1),
    );
    ((&a * Tensor::from_slice(&[3.0f32, 0.0])).sum(Kind::Float) + (&b * 4.0).sum(Kind::Float))
        .backward();
    let norm = opt.clip_grad_norm(1.0);
    assert!((norm - 5.0).abs() < 1e-6);
    let after = (a.grad().square().sum(Kind::Float) + b.grad().square().sum(Kind::Float))
        .sqrt()
        .double_value(&[]);
    assert!((after - 1.0).abs() < 1e-5, "{after}");
    // Below the bound nothing changes.
    assert!((opt.clip_grad_norm(10.0) - after).abs() < 1e-6);
}

#[test]
fn linear_schedule_warms_up_then_decays_to_zero() {
    let s = LinearSchedule::new(100, 0.06);
    assert_eq!(s.warmup, 6);
    assert!((s.factor(0) - 1.0 / 6.0).abs() < 1e-12);
    assert_eq!(s.factor(5), 1.0);
    assert_eq!(s.factor(6), 1.0);
    assert!((s.factor(53) - 0.5).abs() < 1e-12);
    assert_eq!(s.factor(100), 0.0);
    let f: Vec<f64> = (6..100).map(|i| s.factor(i)).collect();
    assert!(f.windows(2).all(|w| w[1] < w[0]));
}

#[test]
fn bf16_parameters_are_updated_through_float32_master_copies() {
    // An update far below bf16's resolution at 1.0 (2^-8) accumulates in the master copy.
    let w = Tensor::ones([4], (Kind::BFloat16, tch::Device::Cpu)).set_requires_grad(true);
    let rates = GroupRates { lr: 1e-4, weight_decay: 0.0 };
    let mut opt = AdamW::new(
        vec![Param {
            name: "backbone.w".into(),
            tensor: w.shallow_clone(),
            part: Part::Backbone,
            decay: true,
            depth: Depth::Other,
        }],
        AdamWConfig {
            backbone: rates,
            adapter: rates,
            head: rates,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            layer_decay: LayerDecay::OFF,
        },
    );
    for _ in 0..100 {
        opt.zero_grad();
        w.sum(Kind::Float).backward();
        opt.step(1.0);
    }
    let state = opt.state_tensors();
    let master = &state.iter().find(|(n, _)| n == "master.backbone.w").expect("a master copy").1;
    assert_eq!(master.kind(), Kind::Float);
    // 100 Adam steps of ~lr each: 1 - 0.01.
    assert!((master.double_value(&[0]) - 0.99).abs() < 1e-3, "{}", master.double_value(&[0]));
    assert_eq!(w.kind(), Kind::BFloat16);
    assert!((w.double_value(&[0]) - 0.99).abs() < 4e-3, "the bf16 weight follows its master");
}

fn tiny_model(family: &str, tuning: fintune_model::Tuning) -> MultiTaskModel {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(family);
    let spec = fintune_model::ModelSpec {
        pooling: None,
        heads: fintune_model::HeadsConfig { num_classes: Some(3), ..Default::default() },
        tuning,
        max_len: 16,
        gradient_checkpointing: false,
        bf16: false,
        input: Default::default(),
    };
    let _rng = torch_rng();
    tch::manual_seed(3);
    MultiTaskModel::new(&dir, &spec, tch::Device::Cpu).unwrap()
}

fn llrd_cfg(factor: f64, num_layers: usize) -> AdamWConfig {
    AdamWConfig {
        backbone: GroupRates { lr: 1e-4, weight_decay: 0.01 },
        adapter: GroupRates { lr: 1e-3, weight_decay: 0.01 },
        head: GroupRates { lr: 2e-3, weight_decay: 0.01 },
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        layer_decay: LayerDecay { factor, num_layers },
    }
}

/// The expected multiplier of a parameter under decay 0.5 on a 2-layer model, from its name.
fn documented_scale(name: &str, layer_prefix: &str, embeddings: &str) -> f64 {
    let key = name.split_once('.').unwrap().1;
    if name.starts_with("heads.") {
        1.0
    } else if key.starts_with(&format!("{layer_prefix}0.")) {
        0.25
    } else if key.starts_with(&format!("{layer_prefix}1.")) {
        0.5
    } else if key.starts_with(embeddings) {
        0.125
    } else {
        1.0
    }
}

#[test]
fn layer_decay_gives_each_layer_its_documented_rate() {
    use fintune_model::Tuning;
    for (family, layer_prefix, embeddings, tuning) in [
        ("tiny-roberta", "encoder.layer.", "embeddings.", Tuning::Full),
        ("tiny-mpnet", "encoder.layer.", "embeddings.", Tuning::Full),
        ("tiny-llama", "layers.", "embed_tokens.", Tuning::Full),
        ("tiny-qwen2", "layers.", "embed_tokens.", "lora:4".parse().unwrap()),
    ] {
        let model = tiny_model(family, tuning);
        assert_eq!(model.info().num_layers, 2, "{family}");
        let opt = AdamW::new(model.parameters(), llrd_cfg(0.5, 2));
        let rates = opt.peak_rates();
        let mut seen = std::collections::BTreeSet::new();
        for (name, rate) in &rates {
            let group = match name.split('.').next().unwrap() {
                "backbone" => 1e-4,
                "adapters" => 1e-3,
                _ => 2e-3,
            };
            let want = group * documented_scale(name, layer_prefix, embeddings);
            assert!((rate - want).abs() <= 1e-15, "{family} {name}: {rate} != {want}");
            seen.insert(format!("{}", want / group));
        }
        // Every depth is present: embeddings (frozen under LoRA), both layers, the heads.
        let expect: &[&str] = if family == "tiny-qwen2" {
            &["0.25", "0.5", "1"]
        } else {
            &["0.125", "0.25", "0.5", "1"]
        };
        for s in expect {
            assert!(seen.contains(*s), "{family}: no parameter with scale {s} ({seen:?})");
        }
    }
}

#[test]
fn layer_decay_one_is_bit_identical_to_no_decay() {
    let run = |decay: LayerDecay| {
        let model = tiny_model("tiny-roberta", fintune_model::Tuning::Full);
        let mut cfg = llrd_cfg(1.0, 2);
        cfg.layer_decay = decay;
        let mut opt = AdamW::new(model.parameters(), cfg);
        let ids = Tensor::from_slice(&[0i64, 5, 7, 9, 2, 0, 8, 6, 4, 2]).view([2, 5]);
        let batch = fintune_model::Batch::from_ids(
            ids,
            Tensor::ones([2, 5], (Kind::Int64, tch::Device::Cpu)),
        );
        for _ in 0..3 {
            opt.zero_grad();
            let out = model.forward_t(&batch, false);
            (out.score.square().sum(Kind::Float) + out.logits.unwrap().square().mean(Kind::Float))
                .backward();
            opt.step(0.7);
        }
        model.parameters().into_iter().map(|p| (p.name, p.tensor.copy())).collect::<Vec<_>>()
    };
    let off = run(LayerDecay::OFF);
    let one = run(LayerDecay { factor: 1.0, num_layers: 2 });
    let half = run(LayerDecay { factor: 0.5, num_layers: 2 });
    let mut differs = false;
    for ((n, a), ((_, b), (_, c))) in off.iter().zip(one.iter().zip(&half)) {
        assert!(a.equal(b), "{n} differs with layer_decay = 1");
        differs |= !a.equal(c);
    }
    assert!(differs, "layer_decay = 0.5 changed nothing");
}
