//! The multi-task model: outputs, dropout, tuning modes, parameter groups, probes, save/load.

use fintune_model::{HeadsConfig, ModelSpec, MultiTaskModel, Part, Probe, TextEncoder, Tuning};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

use crate::{max_abs, minilm_dir, root};

fn spec(classes: Option<i64>, tuning: Tuning) -> ModelSpec {
    ModelSpec {
        heads: HeadsConfig { num_classes: classes, ..Default::default() },
        tuning,
        ..Default::default()
    }
}

const TEXTS: [&str; 4] = [
    "Profit warning sends shares sharply lower",
    "Record quarterly revenue beats every estimate",
    "The board meets on Tuesday",
    "Bankruptcy filing wipes out shareholders",
];

#[test]
fn outputs_have_the_right_shapes_and_dropout_only_in_training() {
    let _serial = crate::serial();
    tch::manual_seed(1);
    let model =
        MultiTaskModel::new(&minilm_dir(), &spec(Some(5), Tuning::Full), Device::Cpu).unwrap();
    let enc = model.text_encoder(&minilm_dir()).unwrap();
    let batch = enc.batch(&TEXTS, Device::Cpu).unwrap();
    let (e1, e2) =
        tch::no_grad(|| (model.forward_t(&batch, false), model.forward_t(&batch, false)));
    assert_eq!(e1.pooled.size(), [4, 384]);
    assert_eq!(e1.score.size(), [4]);
    assert_eq!(e1.logits.as_ref().unwrap().size(), [4, 5]);
    assert!(e1.score.equal(&e2.score), "evaluation is deterministic");
    assert!(e1.score.abs().max().double_value(&[]) <= 1.0, "bounded by the scaled tanh");
    let t = tch::no_grad(|| model.forward_t(&batch, true));
    assert!(max_abs(&t.score, &e1.score) > 1e-6, "dropout changes training outputs");
}

#[test]
fn tuning_modes_select_the_trainable_parameters() {
    let _serial = crate::serial();
    let dir = minilm_dir();
    let full = MultiTaskModel::new(&dir, &spec(Some(3), Tuning::Full), Device::Cpu).unwrap();
    let p = full.parameters();
    assert_eq!(
        p.iter().filter(|p| p.part == Part::Backbone).count(),
        101,
        "MiniLM: 5 embedding tensors + 6 layers x 16 (the pooler and position_ids are not used)"
    );
    assert_eq!(p.iter().filter(|p| p.part == Part::Head).count(), 4);
    for q in &p {
        let no_decay = q.name.ends_with(".bias") || q.name.contains("LayerNorm");
        assert_eq!(q.decay, !no_decay, "{}", q.name);
    }

    let frozen = MultiTaskModel::new(&dir, &spec(Some(3), Tuning::Frozen), Device::Cpu).unwrap();
    assert!(frozen.parameters().iter().all(|p| p.part == Part::Head));
    assert!(frozen.probe_parameters(Probe::LastLayer).is_err());

    let top = MultiTaskModel::new(&dir, &spec(Some(3), Tuning::Top(2)), Device::Cpu).unwrap();
    let names: Vec<String> =
        top.parameters().into_iter().filter(|p| p.part == Part::Backbone).map(|p| p.name).collect();
    assert_eq!(names.len(), 32, "two layers of 16 tensors");
    assert!(names.iter().all(|n| n.starts_with("backbone.encoder.layer.4.")
        || n.starts_with("backbone.encoder.layer.5.")));
    assert_eq!(top.probe_parameters(Probe::LastLayer).unwrap().len(), 16);
    assert!(MultiTaskModel::new(&dir, &spec(None, Tuning::Top(7)), Device::Cpu).is_err());
    assert_eq!(full.probe_parameters(Probe::All).unwrap().len(), 101);
    assert!(full.probe_parameters(Probe::Representation).unwrap().is_empty());
}

#[test]
fn frozen_backbone_still_exposes_a_differentiable_representation() {
    let _serial = crate::serial();
    let model =
        MultiTaskModel::new(&minilm_dir(), &spec(Some(3), Tuning::Frozen), Device::Cpu).unwrap();
    let batch = model.text_encoder(&minilm_dir()).unwrap().batch(&TEXTS, Device::Cpu).unwrap();
    let out = model.forward_t(&batch, true);
    let loss = out.score.sum(Kind::Float);
    let g = Tensor::run_backward(&[&loss], &[&out.pooled], true, false);
    assert_eq!(g[0].size(), [4, 384]);
    assert!(g[0].abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn save_then_load_gives_bit_identical_outputs() {
    let _serial = crate::serial();
    tch::manual_seed(3);
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("model");
    let model =
        MultiTaskModel::new(&minilm_dir(), &spec(Some(4), Tuning::Full), Device::Cpu).unwrap();
    // Change the backbone so that the saved copy, not the pretrained one, must be read back.
    tch::no_grad(|| {
        for p in model.parameters().iter().filter(|p| p.name.ends_with("LayerNorm.bias")) {
            let _ = p.tensor.shallow_clone().g_add_scalar_(0.01);
        }
    });
    let extra = serde_json::json!({"das": {"thresholds": [-0.3, 0.1, 0.4]}});
    model.save(&out_dir, extra.clone()).unwrap();
    for f in
        ["model.safetensors", "heads.safetensors", "config.json", "tokenizer.json", "fintune.json"]
    {
        assert!(out_dir.join(f).exists(), "{f} missing");
    }
    let (loaded, saved) = MultiTaskModel::load(&out_dir, Device::Cpu).unwrap();
    assert_eq!(saved.extra, extra);
    assert_eq!(saved.spec, *model.spec());
    let enc = TextEncoder::from_file(&out_dir, 128).unwrap();
    let batch = enc.batch(&TEXTS, Device::Cpu).unwrap();
    let (a, b) = tch::no_grad(|| (model.forward_t(&batch, false), loaded.forward_t(&batch, false)));
    assert!(a.score.equal(&b.score), "scores differ after reload");
    assert!(a.logits.unwrap().equal(&b.logits.unwrap()), "logits differ after reload");
    // Saving again over an existing folder replaces it.
    model.save(&out_dir, serde_json::Value::Null).unwrap();
    assert_eq!(
        MultiTaskModel::load(&out_dir, Device::Cpu).unwrap().1.extra,
        serde_json::Value::Null
    );
}

#[test]
fn a_truncated_saved_model_is_an_error() {
    let _serial = crate::serial();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("model");
    let model = MultiTaskModel::new(
        &root().join("fixtures/tiny-roberta"),
        &spec(Some(3), Tuning::Full),
        Device::Cpu,
    );
    // tiny-roberta has no tokenizer.json: saving needs one, so use MiniLM.
    assert!(model.is_ok());
    let model =
        MultiTaskModel::new(&minilm_dir(), &spec(Some(3), Tuning::Full), Device::Cpu).unwrap();
    model.save(&out_dir, serde_json::Value::Null).unwrap();
    let heads = out_dir.join("heads.safetensors");
    let bytes = std::fs::read(&heads).unwrap();
    std::fs::write(&heads, &bytes[..bytes.len() - 10]).unwrap();
    let err = MultiTaskModel::load(&out_dir, Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("heads.safetensors") && err.contains("not a valid safetensors file"),
        "{err}"
    );
}

#[test]
fn tuning_parses_from_the_command_line_forms() {
    let _serial = crate::serial();
    assert_eq!("full".parse::<Tuning>().unwrap(), Tuning::Full);
    assert_eq!("frozen".parse::<Tuning>().unwrap(), Tuning::Frozen);
    assert_eq!("top:2".parse::<Tuning>().unwrap(), Tuning::Top(2));
    match "lora:8".parse::<Tuning>().unwrap() {
        Tuning::Lora(l) => assert_eq!((l.rank, l.alpha), (8, 16.0)),
        other => panic!("{other:?}"),
    }
    for bad in ["", "top", "top:0", "lora:x", "half"] {
        assert!(bad.parse::<Tuning>().is_err(), "{bad}");
    }
}

/// The tch-examples habit: a seeded model must be able to overfit one tiny batch.
#[test]
fn overfits_a_tiny_batch() {
    let _serial = crate::serial();
    tch::manual_seed(42);
    let model = MultiTaskModel::new(&minilm_dir(), &spec(None, Tuning::Full), Device::Cpu).unwrap();
    let batch = model.text_encoder(&minilm_dir()).unwrap().batch(&TEXTS, Device::Cpu).unwrap();
    let y = Tensor::from_slice(&[-0.7f32, 0.8, 0.0, -0.9]);
    let mut vs_params = tch::nn::VarStore::new(Device::Cpu);
    // Optimise the model's own tensors through a var store holding shallow copies.
    for p in model.parameters() {
        let _ = vs_params.root().add(&p.name.replace('.', "_"), p.tensor.shallow_clone(), true);
    }
    let mut opt = tch::nn::Adam::default().build(&vs_params, 2e-4).unwrap();
    let mut last = f64::MAX;
    for _ in 0..60 {
        let out = model.forward_t(&batch, true);
        let loss = out.score.mse_loss(&y, tch::Reduction::Mean);
        opt.backward_step(&loss);
        last = loss.double_value(&[]);
    }
    let _ = &mut vs_params;
    println!("final training MSE {last:.5}");
    assert!(last < 0.01, "did not overfit: {last}");
}

/// bf16 backbones (meant for CUDA; checked here on CPU): outputs close to float32, float32
/// heads and pooled representation, LoRA adapters in float32.
#[test]
fn bf16_backbone_matches_float32_closely() {
    let _serial = crate::serial();
    let dir = minilm_dir();
    let batch = TextEncoder::from_file(&dir, 128).unwrap().batch(&TEXTS, Device::Cpu).unwrap();
    let f32_model = MultiTaskModel::new(&dir, &spec(Some(3), Tuning::Full), Device::Cpu).unwrap();
    let mut s = spec(Some(3), Tuning::Full);
    s.bf16 = true;
    let bf16_model = MultiTaskModel::new(&dir, &s, Device::Cpu).unwrap();
    let pa = tch::no_grad(|| f32_model.forward_backbone(&batch, false));
    let pb = tch::no_grad(|| bf16_model.forward_backbone(&batch, false));
    assert_eq!(pb.kind(), Kind::Float, "the pooled representation is float32");
    let rel = (&pa - &pb).abs().max().double_value(&[]) / pa.abs().max().double_value(&[]);
    println!("bf16 vs f32 pooled MiniLM: max relative difference {rel:.4}");
    assert!(rel < 0.05, "bf16 drifts too far: {rel}");
    let kinds: Vec<(String, Kind)> =
        bf16_model.parameters().into_iter().map(|p| (p.name, p.tensor.kind())).collect();
    assert!(kinds
        .iter()
        .filter(|(n, _)| n.starts_with("backbone."))
        .all(|(_, k)| *k == Kind::BFloat16));
    assert!(kinds.iter().filter(|(n, _)| n.starts_with("heads.")).all(|(_, k)| *k == Kind::Float));

    let mut s = spec(None, Tuning::Lora(fintune_model::LoraConfig::with_rank(4)));
    s.bf16 = true;
    let lora = MultiTaskModel::new(&root().join("fixtures/tiny-llama"), &s, Device::Cpu).unwrap();
    assert!(
        lora.parameters().iter().all(|p| p.tensor.kind() == Kind::Float),
        "adapters and heads stay float32"
    );
    let b = fintune_model::Batch::from_ids(
        Tensor::from_slice(&[5i64, 6, 7]).view([1, 3]),
        Tensor::ones([1, 3], (Kind::Int64, Device::Cpu)),
    );
    let out = lora.forward_t(&b, true);
    out.score.sum(Kind::Float).backward();
    assert!(lora
        .parameters()
        .iter()
        .any(|p| p.name.contains("lora_A") && p.tensor.grad().defined()));
}

#[test]
fn extra_heads_keep_todays_names_and_draws_and_round_trip() {
    let _serial = crate::serial();
    use fintune_model::ExtraHead;
    let dir = minilm_dir();
    tch::manual_seed(5);
    let two = MultiTaskModel::new(&dir, &spec(Some(3), Tuning::Frozen), Device::Cpu).unwrap();
    let mut s = spec(Some(3), Tuning::Frozen);
    s.heads.extra = vec![
        ExtraHead { name: "phrasebank".into(), classes: Some(3) },
        ExtraHead { name: "headlines".into(), classes: None },
    ];
    tch::manual_seed(5);
    let four = MultiTaskModel::new(&dir, &s, Device::Cpu).unwrap();
    let names = |m: &MultiTaskModel| -> Vec<String> {
        m.parameters().into_iter().filter(|p| p.part == Part::Head).map(|p| p.name).collect()
    };
    assert_eq!(
        names(&two),
        [
            "heads.classification.out.bias",
            "heads.classification.out.weight",
            "heads.regression.out.bias",
            "heads.regression.out.weight"
        ]
    );
    let n4 = names(&four);
    assert_eq!(n4.len(), 8);
    for n in names(&two) {
        assert!(n4.contains(&n), "{n} kept");
    }
    assert!(n4.contains(&"heads.extra.phrasebank.out.weight".to_owned()), "{n4:?}");
    assert!(n4.contains(&"heads.extra.headlines.out.bias".to_owned()), "{n4:?}");
    // The first two heads draw the same initial weights as without further heads.
    let enc = two.text_encoder(&dir).unwrap();
    let batch = enc.batch(&TEXTS, Device::Cpu).unwrap();
    let (a, b) = tch::no_grad(|| (two.forward_t(&batch, false), four.forward_t(&batch, false)));
    assert!(a.score.equal(&b.score) && a.logits.unwrap().equal(&b.logits.unwrap()));
    let extra = tch::no_grad(|| four.forward_extra_heads(&b.pooled, false));
    assert_eq!(extra.len(), 2);
    assert_eq!(extra[0].size(), [4, 3]);
    assert_eq!(extra[1].size(), [4]);
    assert!(extra[1].abs().max().double_value(&[]) <= 1.0, "a regression head is bounded");
    assert!(two.forward_extra_heads(&a.pooled, false).is_empty());
    // Saved and loaded with its heads; a folder without further heads records none.
    let tmp = tempfile::tempdir().unwrap();
    four.save(&tmp.path().join("four"), serde_json::Value::Null).unwrap();
    two.save(&tmp.path().join("two"), serde_json::Value::Null).unwrap();
    let json = std::fs::read_to_string(tmp.path().join("two/fintune.json")).unwrap();
    assert!(!json.contains("\"extra\": ["), "{json}");
    let (back, saved) = MultiTaskModel::load(&tmp.path().join("four"), Device::Cpu).unwrap();
    assert_eq!(saved.spec.heads.extra, s.heads.extra);
    let c = tch::no_grad(|| back.forward_t(&batch, false));
    let again = tch::no_grad(|| back.forward_extra_heads(&c.pooled, false));
    assert!(again[0].equal(&extra[0]) && again[1].equal(&extra[1]), "reloaded heads differ");
    // Bad head names and sizes are refused by name.
    let mut bad = s.clone();
    bad.heads.extra[1].name = "phrasebank".into();
    let err = MultiTaskModel::new(&dir, &bad, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("two heads are named `phrasebank`"), "{err}");
    bad.heads.extra[1] = ExtraHead { name: "a.b".into(), classes: Some(1) };
    let err = MultiTaskModel::new(&dir, &bad, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("head name `a.b`"), "{err}");
}
