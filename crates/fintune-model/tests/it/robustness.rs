//! Regression tests of issue 15 (model side): hostile or broken model folders and inputs are
//! errors that name the cause, before any large allocation, never panics or silent garbage.

use std::path::{Path, PathBuf};

use fintune_model::weights::{self, Checkpoint};
use fintune_model::{load_backbone, Error, LoadOptions, TextEncoder};
use tch::{Device, Kind, Tensor};

use crate::{minilm_dir, root};

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

/// A copy of a fixture folder's config.json with `edit` applied, beside its weights.
fn edited_copy(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let src = fixture(name);
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match load_backbone(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => {
            assert!(matches!(e, Error::Config { .. }), "not a config error: {e:?}");
            e.to_string()
        }
    }
}

/// Issue 15, defect 3: config.json sizes were trusted before the weights were checked
/// (`num_hidden_layers: 1000000` grew memory without bound, `hidden_size: 1200000000`
/// panicked in the allocator). Each is now a config error naming the field, raised from the
/// safetensors headers before any tensor exists.
#[test]
fn config_sizes_are_checked_against_the_weights_before_allocation() {
    for (model, field, value, says) in [
        ("tiny-roberta", "num_hidden_layers", 1_000_000u64, "num_hidden_layers = 1000000"),
        ("tiny-roberta", "num_hidden_layers", 3, "the weights hold 2 layers"),
        ("tiny-roberta", "hidden_size", 1_200_000_000, "hidden_size = 1200000000"),
        ("tiny-roberta", "vocab_size", 121, "`embeddings.word_embeddings.weight` has shape"),
        ("tiny-roberta", "max_position_embeddings", 4000, "`embeddings.position_embeddings"),
        ("tiny-roberta", "intermediate_size", 128, "intermediate_size and hidden_size"),
        ("tiny-llama", "num_hidden_layers", 1_000_000, "num_hidden_layers = 1000000"),
        ("tiny-llama", "num_hidden_layers", 1, "the weights hold 2 layers"),
        ("tiny-qwen2", "hidden_size", 6 << 38, "hidden_size = 1649267441664"),
        ("tiny-qwen2", "intermediate_size", 100, "`layers.0.mlp.gate_proj.weight` has shape"),
        ("tiny-llama", "num_key_value_heads", 1, "`layers.0.self_attn.k_proj.weight`"),
    ] {
        let dir = edited_copy(model, |c| c[field] = value.into());
        let err = load_err(dir.path());
        assert!(err.contains(says), "{model} {field} = {value}: {err}");
        assert!(err.contains("config.json"), "{err}");
    }
    // The fixtures themselves still load.
    for model in ["tiny-roberta", "tiny-llama", "tiny-qwen2"] {
        assert!(load_backbone(&fixture(model), &LoadOptions::default()).is_ok(), "{model}");
    }
}

/// Issue 15, defect 11: a shard index could name files outside the model folder.
#[test]
fn shard_index_paths_must_stay_inside_the_model_folder() {
    let ck = Checkpoint::open_dir(&fixture("tiny-roberta")).unwrap();
    let outer = tempfile::tempdir().unwrap();
    let outside = outer.path().join("outside.safetensors");
    std::fs::copy(fixture("tiny-roberta/model.safetensors"), &outside).unwrap();
    let dir = outer.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(fixture("tiny-roberta/config.json"), dir.join("config.json")).unwrap();
    for shard in ["../outside.safetensors", outside.to_str().unwrap()] {
        let map: serde_json::Map<String, serde_json::Value> =
            ck.names().map(|n| (n.to_owned(), shard.into())).collect();
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .unwrap();
        let err = load_err(&dir);
        assert!(err.contains(&format!("`{shard}`")), "{err}");
        assert!(err.contains("outside the model folder"), "{err}");
        assert!(err.contains("model.safetensors.index.json"), "{err}");
    }
}

/// Issue 15, defect 4 (model side): weights holding NaN loaded, and predict wrote
/// `"score": null`. They are refused at load, naming the tensor.
#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let src = fixture("tiny-roberta");
    let ck = Checkpoint::open_dir(&src).unwrap();
    for bad in [f64::NAN, f64::INFINITY] {
        let poisoned: Vec<(String, Tensor)> = ck
            .names()
            .map(|n| {
                let t = ck.tensor(n).unwrap();
                if n == "encoder.layer.1.output.dense.weight" {
                    let _ = t.get(3).get(5).fill_(bad);
                }
                (n.to_owned(), t)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        weights::save(&dir.path().join("model.safetensors"), &poisoned, None).unwrap();
        std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
        let err = load_backbone(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::NonFinite { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(shown.contains("`encoder.layer.1.output.dense.weight`"), "{shown}");
        assert!(shown.contains("NaN or infinite"), "{shown}");
    }
    // A float32 value that overflows the load kind is refused too (bf16 keeps the f32 range,
    // half does not).
    let big: Vec<(String, Tensor)> = ck
        .names()
        .map(|n| {
            let t = ck.tensor(n).unwrap();
            if n == "embeddings.LayerNorm.weight" {
                let _ = t.get(0).fill_(1e6);
            }
            (n.to_owned(), t)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    weights::save(&dir.path().join("model.safetensors"), &big, None).unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let opts = LoadOptions { kind: Kind::Half, ..Default::default() };
    let err = load_backbone(dir.path(), &opts).unwrap_err().to_string();
    assert!(err.contains("`embeddings.LayerNorm.weight` holds NaN or infinite"), "{err}");
    assert!(load_backbone(dir.path(), &LoadOptions::default()).is_ok());
}

/// Issue 15, defect 5 (model side): a max_len above the backbone's position limit was
/// accepted, then panicked (index out of range) on the first long text. It is an error when
/// the encoder is made; up to the limit, the longest text fits the position embeddings.
#[test]
fn max_len_above_the_position_limit_is_an_error() {
    let dir = minilm_dir();
    let err = TextEncoder::from_file(&dir, 513).unwrap_err().to_string();
    assert!(err.contains("max_len 513") && err.contains("512"), "{err}");
    assert!(err.contains("config.json"), "{err}");
    let enc = TextEncoder::from_file(&dir, 512).unwrap();
    let long = "market ".repeat(2000);
    let batch = enc.batch(&[long.as_str()], Device::Cpu).unwrap();
    assert_eq!(batch.input_ids.size(), [1, 512]);
    let bb = load_backbone(&dir, &LoadOptions::default()).unwrap();
    let h = tch::no_grad(|| bb.net.forward_t(&batch, false));
    assert_eq!(h.size(), [1, 512, 384]);
    // RoBERTa counts positions from pad_token_id + 1: 40 position embeddings hold 38 tokens.
    let roberta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-roberta/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(fintune_model::backbone::position_limit(&roberta), Some(38));
    let llama: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny-llama/config.json")).unwrap())
            .unwrap();
    assert_eq!(fintune_model::backbone::position_limit(&llama), None);
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs the test `name` again in a child process with `env` set, where it prints
/// `PEAK_GROWTH_KIB=<n>`, and returns that growth of the peak RSS.
fn child_peak_growth_kib(name: &str, env: &str) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(env, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("PEAK_GROWTH_KIB=").map(|(_, kib)| kib))
        .unwrap_or_else(|| panic!("no measurement in:\n{stdout}"))
        .trim()
        .parse()
        .unwrap()
}

const CHILD: &str = "FINTUNE_TEST_PEAK_CHILD";

/// Issue 15, defect 6: one 10 MB text made predict use 1.7 GB (the whole text was tokenized,
/// then truncated). The text is now cut before tokenization: the peak memory of encoding it,
/// measured in a child process of its own, stays small, and the tokens are those of the
/// whole text.
#[cfg(target_os = "linux")]
#[test]
fn a_ten_megabyte_text_is_cut_before_tokenization() {
    let enc = TextEncoder::from_file(&minilm_dir(), 128).unwrap();
    let text = "Shares of XYZ plunged 20% after an earnings miss. ".repeat(200_000);
    if std::env::var_os(CHILD).is_some() {
        let short = enc.encode(&["warm up"]).unwrap();
        assert_eq!(short.len(), 1);
        let before = rss_kib();
        let ids = enc.encode(&[text.as_str()]).unwrap();
        println!("PEAK_GROWTH_KIB={}", peak_rss_kib().saturating_sub(before));
        assert_eq!(ids[0].len(), 128);
        return;
    }
    let growth =
        child_peak_growth_kib("robustness::a_ten_megabyte_text_is_cut_before_tokenization", CHILD);
    assert!(
        growth < 64 * 1024,
        "encoding a {} byte text grew the peak RSS by {growth} KiB",
        text.len()
    );
    let cut: String = text.chars().take(enc.max_chars()).collect();
    assert_eq!(enc.encode(&[text.as_str()]).unwrap(), enc.encode(&[cut.as_str()]).unwrap());
}

/// `weights::save` writes views (a transpose, a narrowed slice with a storage offset), other
/// kinds and empty tensors with exactly their values.
#[test]
fn saved_tensors_read_back_exactly_whatever_their_layout() {
    let dir = tempfile::tempdir().unwrap();
    let base = Tensor::arange(24, (Kind::Float, Device::Cpu)).reshape([4, 6]);
    let tensors = vec![
        ("a.transposed".to_owned(), base.tr()),
        ("b.narrowed".to_owned(), base.narrow(0, 1, 2)),
        ("c.column".to_owned(), base.select(1, 3)),
        ("d.bf16".to_owned(), base.to_kind(Kind::BFloat16) / 7.0),
        ("e.int64".to_owned(), Tensor::arange(5, (Kind::Int64, Device::Cpu)) - 2),
        ("f.empty".to_owned(), Tensor::zeros([0, 3], (Kind::Float, Device::Cpu))),
    ];
    let path = dir.path().join("t.safetensors");
    weights::save(&path, &tensors, None).unwrap();
    let ck = Checkpoint::open_files(&[path]).unwrap();
    for (name, t) in &tensors {
        let back = ck.tensor(name).unwrap();
        assert_eq!(back.size(), t.size(), "{name}");
        assert_eq!(back.kind(), t.kind(), "{name}");
        assert!(back.equal(&t.contiguous()), "{name}: {back} against {t}");
    }
}

/// Issue 20: saving a checkpoint used to copy every tensor into memory first (1.3 GB more
/// peak RSS for MPNet's parameters and moments). Saving 256 MB of tensors now adds at most one
/// tensor (16 MB here) to the peak, measured in a child process of its own.
#[cfg(target_os = "linux")]
#[test]
fn saving_does_not_copy_the_tensors_into_memory() {
    const CHILD_SAVE: &str = "FINTUNE_TEST_SAVE_PEAK_CHILD";
    if std::env::var_os(CHILD_SAVE).is_some() {
        let dir = tempfile::tempdir().unwrap();
        let tensors: Vec<(String, Tensor)> = (0..16)
            .map(|i| {
                (format!("t{i:02}"), Tensor::full([4 << 20], i as f64, (Kind::Float, Device::Cpu)))
            })
            .collect();
        let before = rss_kib();
        weights::save(&dir.path().join("big.safetensors"), &tensors, None).unwrap();
        println!("PEAK_GROWTH_KIB={}", peak_rss_kib().saturating_sub(before));
        return;
    }
    let growth = child_peak_growth_kib(
        "robustness::saving_does_not_copy_the_tensors_into_memory",
        CHILD_SAVE,
    );
    println!("saving 256 MiB of tensors grew the peak RSS by {growth} KiB");
    assert!(growth < 48 * 1024, "saving 256 MiB of tensors grew the peak RSS by {growth} KiB");
}
