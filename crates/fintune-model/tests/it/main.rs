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
