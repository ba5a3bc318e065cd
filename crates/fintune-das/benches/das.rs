//! DAS fit (auto K, default config) on n = 1e3, 1e5, 1e6 scores rounded to 3 decimals, plus
//! the per-batch paths (assign, rarity weights) and the split.
//!
//! `cargo bench -p fintune-das --bench das`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fintune_das::{stratified_split, DasConfig, Rarity, Stratification};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A realistic score distribution: a bimodal mixture (mild positive bulk, smaller negative
/// mode) with clipped tails, rounded to 3 decimals (at most 2001 distinct values).
fn scores(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // Sum of uniforms ~ bell shape, centred per mode.
            let bell: f64 = (0..4).map(|_| rng.random::<f64>()).sum::<f64>() / 4.0 - 0.5;
            let x = if rng.random_bool(0.65) { 0.3 + 0.9 * bell } else { -0.35 + 0.8 * bell };
            ((x.clamp(-1.0, 1.0) * 1000.0).round() / 1000.0) as f32
        })
        .collect()
}

fn fit(c: &mut Criterion) {
    let mut g = c.benchmark_group("das_fit_auto");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let cfg = DasConfig::default();
    for n in [1_000usize, 100_000, 1_000_000] {
        let s = scores(n, 1);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &s, |b, s| {
            b.iter(|| Stratification::fit(black_box(s), &cfg).unwrap())
        });
    }
    g.finish();
}

fn per_batch(c: &mut Criterion) {
    let train = scores(100_000, 2);
    let das = Stratification::fit(&train, &DasConfig::default()).unwrap();
    let rar = Rarity::fit(&train, Rarity::DEFAULT_BANDWIDTH).unwrap();
    let batch = scores(4096, 3);
    let mut g = c.benchmark_group("per_batch_4096");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("assign_all", |b| b.iter(|| das.assign_all(black_box(&batch)).unwrap()));
    g.bench_function("rarity_weights", |b| b.iter(|| rar.weights(black_box(&batch))));
    g.finish();

    let mut g = c.benchmark_group("fit_other");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    g.bench_function("rarity_fit_1e5", |b| {
        b.iter(|| Rarity::fit(black_box(&train), Rarity::DEFAULT_BANDWIDTH).unwrap())
    });
    let labels = das.assign_all(&train).unwrap();
    g.bench_function("stratified_split_1e5", |b| {
        b.iter(|| stratified_split(black_box(&labels), None, &[0.8, 0.2], 7).unwrap())
    });
    g.finish();
}

criterion_group!(benches, fit, per_batch);
criterion_main!(benches);
