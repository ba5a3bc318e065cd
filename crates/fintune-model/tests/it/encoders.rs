//! Encoders against transformers: all-MiniLM-L6-v2 (real weights) and a tiny random RoBERTa,
//! including one training step's gradients.

use std::path::Path;

use fintune_model::backbone::mean_pool;
use fintune_model::weights::{self, Checkpoint};
use fintune_model::{
    load_backbone, Batch, HeadsConfig, LoadOptions, ModelSpec, MultiTaskModel, Pooling,
    TextEncoder, Tuning,
};
use tch::{Device, Kind, Tensor};

use crate::{golden, golden_json, max_abs, minilm_dir, root};

#[test]
fn minilm_mean_pooled_embeddings_match_transformers() {
    let g = golden("minilm.safetensors");
    let bb = load_backbone(&minilm_dir(), &LoadOptions::default()).unwrap();
    assert_eq!(bb.net.info().hidden_size, 384);
    assert_eq!(bb.net.info().num_layers, 6);
    let batch =
        Batch::from_ids(g.tensor("input_ids").unwrap(), g.tensor("attention_mask").unwrap());
    let h = tch::no_grad(|| bb.net.forward_t(&batch, false));
    let emb = Pooling::Mean.pool(&h, &batch.attention_mask);
    let err = max_abs(&emb, &g.tensor("embeddings").unwrap());
    println!("MiniLM embeddings: max abs error {err:.3e} over 8 sentences");
    assert!(err < 1e-4, "max abs error {err}");
}

#[test]
fn minilm_text_encoder_reproduces_the_reference_batch() {
    let g = golden("minilm.safetensors");
    let sentences: Vec<String> =
        serde_json::from_value(golden_json("minilm_sentences.json")).unwrap();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let enc = TextEncoder::from_file(&minilm_dir(), 128).unwrap();
    let batch = enc.batch(&refs, Device::Cpu).unwrap();
    assert!(batch.input_ids.equal(&g.tensor("input_ids").unwrap()));
    assert!(batch.attention_mask.equal(&g.tensor("attention_mask").unwrap()));
}

fn tiny_roberta() -> std::path::PathBuf {
    root().join("fixtures/tiny-roberta")
}

fn roberta_batch(g: &Checkpoint) -> Batch {
    Batch::from_ids(g.tensor("input_ids").unwrap(), g.tensor("attention_mask").unwrap())
}

fn masked_max_abs(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let m = mask.unsqueeze(-1).to_kind(Kind::Double);
    ((a.to_kind(Kind::Double) - b.to_kind(Kind::Double)) * m).abs().max().double_value(&[])
}

#[test]
fn tiny_roberta_hidden_states_match_transformers() {
    let g = golden("tiny_roberta.safetensors");
    let bb = load_backbone(&tiny_roberta(), &LoadOptions::default()).unwrap();
    let batch = roberta_batch(&g);
    let h = tch::no_grad(|| bb.net.forward_t(&batch, false));
    let want = g.tensor("hidden").unwrap();
    // transformers computes padded positions too; compare all positions, then real ones.
    let err = max_abs(&h, &want);
    println!("tiny RoBERTa hidden states: max abs error {err:.3e}");
    assert!(err < 1e-4, "max abs error {err}");
    assert!(masked_max_abs(&h, &want, &batch.attention_mask) < 1e-4);
}

#[test]
fn roberta_prefixed_checkpoint_keys_load_too() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::open_dir(&tiny_roberta()).unwrap();
    let named: Vec<(String, Tensor)> =
        ck.names().map(|n| (format!("roberta.{n}"), ck.tensor(n).unwrap())).collect();
    weights::save(&dir.path().join("model.safetensors"), &named, None).unwrap();
    std::fs::copy(tiny_roberta().join("config.json"), dir.path().join("config.json")).unwrap();
    let a = load_backbone(&tiny_roberta(), &LoadOptions::default()).unwrap();
    let b = load_backbone(dir.path(), &LoadOptions::default()).unwrap();
    let g = golden("tiny_roberta.safetensors");
    let batch = roberta_batch(&g);
    let (ha, hb) =
        tch::no_grad(|| (a.net.forward_t(&batch, false), b.net.forward_t(&batch, false)));
    assert!(ha.equal(&hb));
}

#[test]
fn tiny_roberta_training_step_gradients_match_pytorch() {
    let _serial = crate::serial();
    let g = golden("tiny_roberta.safetensors");
    let meta = golden_json("tiny_roberta.json");
    let spec = ModelSpec {
        pooling: Some(Pooling::Mean),
        heads: HeadsConfig {
            dropout: 0.0,
            regression_hidden: None,
            bound: None,
            num_classes: None,
            extra: vec![],
        },
        tuning: Tuning::Full,
        max_len: 64,
        gradient_checkpointing: false,
        bf16: false,
        ..Default::default()
    };
    let model = MultiTaskModel::new(&tiny_roberta(), &spec, Device::Cpu).unwrap();
    let params = model.parameters();
    let find = |name: &str| {
        params
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .tensor
            .shallow_clone()
    };
    tch::no_grad(|| {
        find("heads.regression.out.weight").copy_(&g.tensor("head.weight").unwrap());
        find("heads.regression.out.bias").copy_(&g.tensor("head.bias").unwrap());
    });
    let batch = roberta_batch(&g);
    let out = model.forward_t(&batch, false);
    let loss = out.score.mse_loss(&g.tensor("targets").unwrap(), tch::Reduction::Mean);
    let loss_err = (loss.double_value(&[]) - g.tensor("loss").unwrap().double_value(&[0])).abs();
    assert!(loss_err < 1e-5, "loss differs by {loss_err}");
    loss.backward();
    let lr = meta["lr"].as_f64().unwrap();
    let mut checked = 0;
    for name in meta["grad_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()) {
        let p = find(&format!("backbone.{name}"));
        let err = max_abs(&p.grad(), &g.tensor(&format!("grad.{name}")).unwrap());
        println!("grad {name}: max abs error {err:.3e}");
        assert!(err < 1e-4, "{name}: gradient differs by {err}");
        // The SGD step the reference took.
        let after = tch::no_grad(|| &p - p.grad() * lr);
        assert!(max_abs(&after, &g.tensor(&format!("after_sgd.{name}")).unwrap()) < 1e-4);
        checked += 1;
    }
    assert_eq!(checked, 3);
    let err = max_abs(
        &find("heads.regression.out.weight").grad(),
        &g.tensor("grad.head.weight").unwrap(),
    );
    assert!(err < 1e-4, "head gradient differs by {err}");
}

#[test]
fn mean_pool_ignores_padding() {
    let h = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 100.0]).view([1, 4, 1]);
    let mask = Tensor::from_slice(&[1i64, 1, 1, 0]).view([1, 4]);
    assert_eq!(mean_pool(&h, &mask).double_value(&[0, 0]), 2.0);
    assert_eq!(Pooling::Max.pool(&h, &mask).double_value(&[0, 0]), 3.0);
    assert_eq!(Pooling::Cls.pool(&h, &mask).double_value(&[0, 0]), 1.0);
    assert_eq!(Pooling::Last.pool(&h, &mask).double_value(&[0, 0]), 3.0);
    let left = Tensor::from_slice(&[0i64, 1, 1, 1]).view([1, 4]);
    let hl = Tensor::from_slice(&[100.0f32, 1.0, 2.0, 3.0]).view([1, 4, 1]);
    assert_eq!(Pooling::Last.pool(&hl, &left).double_value(&[0, 0]), 3.0);
    assert_eq!(Pooling::Mean.pool(&hl, &left).double_value(&[0, 0]), 2.0);
}

fn write_config(dir: &Path, json: &str) {
    std::fs::write(dir.join("config.json"), json).unwrap();
}

#[test]
fn unknown_model_type_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), r#"{"model_type": "t5"}"#);
    let err = load_backbone(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("unsupported model_type `t5`") && err.contains("bert, roberta"), "{err}");
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let ck = Checkpoint::open_dir(&tiny_roberta()).unwrap();
    let all: Vec<(String, Tensor)> =
        ck.names().map(|n| (n.to_owned(), ck.tensor(n).unwrap())).collect();
    let config = std::fs::read_to_string(tiny_roberta().join("config.json")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let missing: Vec<_> = all
        .iter()
        .filter(|(n, _)| n != "encoder.layer.1.attention.self.key.bias")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    weights::save(&dir.path().join("model.safetensors"), &missing, None).unwrap();
    write_config(dir.path(), &config);
    let err = load_backbone(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("missing tensor `encoder.layer.1.attention.self.key.bias`"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad: Vec<_> = all
        .iter()
        .map(|(n, t)| {
            if n == "encoder.layer.0.intermediate.dense.weight" {
                (n.clone(), t.narrow(0, 0, 10))
            } else {
                (n.clone(), t.shallow_clone())
            }
        })
        .collect();
    weights::save(&dir.path().join("model.safetensors"), &bad, None).unwrap();
    write_config(dir.path(), &config);
    let err = load_backbone(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("`encoder.layer.0.intermediate.dense.weight` has shape [10, 32], the model expects [64, 32]"), "{err}");
}

#[test]
fn sharded_checkpoints_load_through_their_index() {
    let ck = Checkpoint::open_dir(&tiny_roberta()).unwrap();
    let names: Vec<String> = ck.names().map(String::from).collect();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in
        [("model-00001-of-00002.safetensors", first), ("model-00002-of-00002.safetensors", second)]
    {
        let t: Vec<_> = part.iter().map(|n| (n.clone(), ck.tensor(n).unwrap())).collect();
        weights::save(&dir.path().join(file), &t, None).unwrap();
        for n in part {
            map.insert(n.clone(), file.into());
        }
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    std::fs::copy(tiny_roberta().join("config.json"), dir.path().join("config.json")).unwrap();
    let g = golden("tiny_roberta.safetensors");
    let bb = load_backbone(dir.path(), &LoadOptions::default()).unwrap();
    let h = tch::no_grad(|| bb.net.forward_t(&roberta_batch(&g), false));
    assert!(max_abs(&h, &g.tensor("hidden").unwrap()) < 1e-4);
}
