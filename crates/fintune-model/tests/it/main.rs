//! Integration tests of fintune-model: goldens against PyTorch/transformers, save/load,
//! errors, and the toolchain itself.

mod decoders;
mod encoders;
mod model;
mod mpnet;
mod robustness;
mod smollm2;
mod toolchain;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use fintune_model::weights::Checkpoint;
use tch::Tensor;

/// libtorch's random generator is global to the process and the test harness runs tests on
/// parallel threads; tests whose numbers depend on the seed hold this lock.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The cached all-MiniLM-L6-v2 folder; `cargo xtask setup` fetches it (`cargo xtask test`
/// runs setup first), so its absence is a failure with the fix, not a skip.
pub fn minilm_dir() -> PathBuf {
    let home = std::env::var_os("FINTUNE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".fintune"));
    let dir = home.join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run `cargo xtask setup` (or `cargo xtask test`, which runs it)",
        dir.display()
    );
    dir
}

/// A golden file from fixtures/goldens/.
pub fn golden(name: &str) -> Checkpoint {
    Checkpoint::open_files(&[root().join("fixtures/goldens").join(name)]).unwrap()
}

/// A golden JSON file from fixtures/goldens/.
pub fn golden_json(name: &str) -> serde_json::Value {
    let p = root().join("fixtures/goldens").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// Largest absolute difference.
pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(tch::Kind::Double) - b.to_kind(tch::Kind::Double)).abs().max().double_value(&[])
}

/// Checks `TextEncoder::encode_with_targets` (input `text+target`) against
/// `fixtures/goldens/pair_tokenizer.json` (`make_pair_goldens.py`) for `model`, at every
/// max_len the golden holds; `encoder(max_len)` builds the encoder. Returns how many
/// (max_len, row) cases matched.
pub fn check_pair_golden(
    model: &str,
    encoder: impl Fn(usize) -> fintune_model::TextEncoder,
) -> usize {
    let g = golden_json("pair_tokenizer.json");
    let rows = g["rows"].as_array().unwrap();
    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let targets: Vec<Option<&str>> = rows.iter().map(|r| r["target"].as_str()).collect();
    let as_vec = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
    };
    let mut checked = 0;
    for entry in g["tokenizers"].as_array().unwrap().iter().filter(|e| e["model"] == model) {
        let max_len = entry["max_len"].as_u64().unwrap() as usize;
        let enc = encoder(max_len).with_input(fintune_model::InputMode::TextTarget);
        let got = enc.encode_with_targets(&texts, &targets).unwrap();
        let refs: Vec<&fintune_model::Encoded> = got.iter().collect();
        let batch = fintune_model::Batch::pad(
            &refs,
            enc.pad_id(),
            fintune_model::PaddingSide::Right,
            tch::Device::Cpu,
        );
        for (i, e) in got.iter().enumerate() {
            let what = format!("{model}, max_len {max_len}, row {i} ({:?})", targets[i]);
            assert_eq!(e.ids, as_vec(&entry["ids"][i]), "ids: {what}");
            assert_eq!(e.type_ids, as_vec(&entry["type_ids"][i]), "token types: {what}");
            let mask = as_vec(&entry["attention_mask"][i]);
            let row = Vec::<i64>::try_from(batch.attention_mask.get(i as i64)).unwrap();
            assert_eq!(&row[..mask.len()], mask.as_slice(), "attention mask: {what}");
            assert!(row[mask.len()..].iter().all(|&m| m == 0), "padding masked: {what}");
            checked += 1;
        }
    }
    assert!(checked > 0, "no golden entries for {model}");
    checked
}
