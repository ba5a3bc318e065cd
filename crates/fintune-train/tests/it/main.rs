//! Integration tests of the trainer and the `fintune` command line.

mod cli;
mod compare;
mod training;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// libtorch's random generator is global to the process and the test harness runs tests on
/// parallel threads; tests whose numbers depend on the seed (dropout, head initialisation)
/// hold this lock so that no other test draws from the generator meanwhile.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The cached MiniLM folder (`cargo xtask setup` fetches it; `cargo xtask test` runs setup).
pub fn minilm() -> PathBuf {
    let home = std::env::var_os("FINTUNE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".fintune"));
    let dir = home.join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run `cargo xtask setup`",
        dir.display()
    );
    dir
}

/// The first `n` rows of the fixture training set, written to `dir/name`.
pub fn fixture_subset(dir: &Path, name: &str, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(root().join("fixtures/train.jsonl")).unwrap();
    let rows: Vec<&str> = text.lines().take(n).collect();
    assert_eq!(rows.len(), n);
    let p = dir.join(name);
    std::fs::write(&p, rows.join("\n") + "\n").unwrap();
    p
}

/// The shared data folder beside the checkout, when present.
pub fn shared_data() -> Option<PathBuf> {
    let p = root().join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        println!(
            "skipped: {} is absent (the shared data sits beside the checkout in CI)",
            p.display()
        );
        None
    }
}
