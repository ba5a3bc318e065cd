//! Integration tests of the trainer and the `fintune` command line.

mod cli;
mod compare;
mod defects;
mod dist;
mod encode_goldens;
mod input;
mod recipes;
mod tasks;
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

/// The shared data folder beside the checkout (tests that use it are
/// `#[ignore = "needs ../shared/data"]`; `cargo xtask test` runs them where it exists).
pub fn shared_data() -> PathBuf {
    let p = root().join("../shared/data");
    assert!(p.is_dir(), "{} is absent (the shared data sits beside the checkout)", p.display());
    p
}

/// An untrained (randomly initialised heads, 3 classes) MiniLM model saved once per test
/// process, for the prediction tests that need a model folder but not a trained one.
pub fn untrained_model() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("untrained-model-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let model = build_untrained();
        let scores: Vec<f32> = (0..30).map(|i| i as f32 / 15.0 - 1.0).collect();
        let extra = fintune_train::eval::ModelExtra {
            strat: Some(fintune_das::Stratification::quantile(&scores, 3).unwrap()),
            rarity: fintune_das::Rarity::fit(&scores, 0.1).unwrap(),
            metrics: Default::default(),
            fusion: None,
        };
        model.save(&dir.join("model"), serde_json::to_value(extra).unwrap()).unwrap();
        dir.join("model")
    })
    .clone()
}

/// MiniLM with fresh heads (3 classes), max_len 24, on the CPU.
pub fn build_untrained() -> fintune_model::MultiTaskModel {
    let spec = fintune_model::ModelSpec {
        pooling: None,
        heads: fintune_model::HeadsConfig { num_classes: Some(3), ..Default::default() },
        tuning: fintune_model::Tuning::Full,
        max_len: 24,
        gradient_checkpointing: false,
        bf16: false,
        ..Default::default()
    };
    fintune_model::MultiTaskModel::new(&minilm(), &spec, tch::Device::Cpu).unwrap()
}

/// A [`fintune_train::progress::Progress`] that keeps the messages.
#[derive(Debug, Default)]
pub struct Messages(pub Vec<String>);

impl fintune_train::progress::Progress for Messages {
    fn step(&mut self, _: &fintune_train::progress::StepView) {}
    fn epoch(&mut self, _: &fintune_train::progress::EpochView) {}
    fn message(&mut self, msg: &str) {
        self.0.push(msg.to_owned());
    }
}
