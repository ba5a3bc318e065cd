//! Prediction throughput: texts per second of `Predictor::predict` (tokenize, batched forward
//! in evaluation mode, heads) over a fixed synthetic set of texts. Prints one JSON line.
//!
//! The model is the backbone with freshly initialised heads (5 classes), saved as a run's
//! `model/` folder in a temporary directory and loaded back with `Predictor::load`: the weights
//! do not change the cost.
//!
//! `cargo run --release -p fintune-train --example bench_predict -- DIR [TEXTS] [ITERS] [THREADS]`

use std::time::Instant;

use fintune_das::Rarity;
use fintune_model::{HeadsConfig, ModelSpec, MultiTaskModel, Tuning};
use fintune_train::eval::ModelExtra;
use fintune_train::metrics::MetricsConfig;
use fintune_train::predict::Predictor;
use tch::Device;

const WORDS: [&str; 16] = [
    "shares", "profit", "Tesco", "falls", "rises", "quarter", "guidance", "$AAPL", "outlook",
    "revenue", "short", "bullish", "loss", "merger", "dividend", "cuts",
];

/// `n` deterministic texts of 6 to 29 words.
fn texts(n: usize) -> Vec<String> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = 6 + (next() % 24) as usize;
            (0..len).map(|_| WORDS[(next() % 16) as usize]).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let dir = a.first().ok_or("usage: bench_predict DIR [TEXTS] [ITERS] [THREADS]")?;
    let n = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (count, iters, threads) = (n(1, 256), n(2, 5).max(1), n(3, 0));
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    tch::manual_seed(0);
    let spec = ModelSpec {
        heads: HeadsConfig { num_classes: Some(5), ..Default::default() },
        tuning: Tuning::Full,
        max_len: 128,
        pooling: None,
        gradient_checkpointing: false,
        bf16: false,
        ..Default::default()
    };
    let saved = tempfile::tempdir()?;
    let model_dir = saved.path().join("model");
    let extra = ModelExtra {
        strat: None,
        rarity: Rarity::fit(&[-0.5, 0.0, 0.5], Rarity::DEFAULT_BANDWIDTH)?,
        metrics: MetricsConfig::default(),
        fusion: None,
    };
    MultiTaskModel::new(dir.as_ref(), &spec, Device::Cpu)?
        .save(&model_dir, serde_json::to_value(&extra)?)?;

    // The measured API: load a run's model folder, predict a list of texts.
    let predictor = Predictor::load(&model_dir, Device::Cpu)?;
    let owned = texts(count);
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    assert_eq!(predictor.predict(&texts)?.score.len(), count, "one score per text");
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        std::hint::black_box(predictor.predict(&texts)?);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    println!(
        "{{\"impl\": \"fintune Predictor\", \"threads\": {}, \"texts\": {count}, \"seconds_per_pass\": {med:.4}, \"texts_per_s\": {:.1}}}",
        tch::get_num_threads(),
        count as f64 / med
    );
    Ok(())
}
