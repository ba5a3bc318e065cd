//! DAS fit (auto K, default config) on n = 1e3, 1e5, 1e6 scores rounded to 3 decimals, plus
//! the per-batch paths (assign, rarity weights) and the split.
//!
//! `cargo bench -p fintune-das --bench das`
//!
//! The timings are set per `criterion_group!` (not per benchmark group) so that criterion's
//! command-line flags (`--sample-size`, `--warm-up-time`, `--measurement-time`) override them:
//! `cargo xtask bench-ci` runs short paired rounds that way.
//!
//! `FINTUNE_BENCH_SLOWDOWN=das_fit` (a comma-separated list of names) makes every
//! `das_fit_auto` iteration fit twice: an artificial regression to check that
//! `cargo xtask bench-ci` catches one. The variable is read once per benchmark function, so
//! when it is unset the measured code is unchanged.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fintune_das::{stratified_split, DasConfig, Rarity, Stratification};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A realistic score distribution: a bimodal mixture (positive bulk, smaller negative mode)
/// spanning all of [-1, 1] with ties at the clipped ends, rounded to 3 decimals (so up to 2001
/// distinct values, the worst case for 3-decimal data: at n = 1e6 all 2001 occur).
fn scores(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // Mean of 4 uniforms: a bell shape on [-0.5, 0.5], centred per mode.
            let bell: f64 = (0..4).map(|_| rng.random::<f64>()).sum::<f64>() / 4.0 - 0.5;
            let x = if rng.random_bool(0.65) { 0.3 + 1.6 * bell } else { -0.35 + 1.6 * bell };
            ((x.clamp(-1.0, 1.0) * 1000.0).round() / 1000.0) as f32
        })
        .collect()
}

/// Whether `FINTUNE_BENCH_SLOWDOWN` names `name` (see the module documentation).
fn slowdown(name: &str) -> bool {
    std::env::var("FINTUNE_BENCH_SLOWDOWN").is_ok_and(|v| v.split(',').any(|s| s.trim() == name))
}

fn fit(c: &mut Criterion) {
    let mut g = c.benchmark_group("das_fit_auto");
    let cfg = DasConfig::default();
    // 2 when the artificial slowdown is on: a redundant second fit per iteration.
    let passes = if slowdown("das_fit") { 2 } else { 1 };
    for n in [1_000usize, 100_000, 1_000_000] {
        let s = scores(n, 1);
        let fitted = Stratification::fit(&s, &cfg).unwrap();
        eprintln!(
            "n = {n}: {} distinct values, K = {}, candidates_exact = {}",
            fitted.distinct_values,
            fitted.num_classes(),
            fitted.candidates_exact
        );
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &s, |b, s| {
            b.iter(|| {
                for _ in 1..passes {
                    black_box(Stratification::fit(black_box(s), &cfg).unwrap());
                }
                Stratification::fit(black_box(s), &cfg).unwrap()
            })
        });
    }
    // Worst case for the grouping: 1e6 unrounded scores, nearly all distinct, so the candidates
    // are thinned to 2048 quantile-spaced gaps.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let raw: Vec<f32> = scores(1_000_000, 1)
        .iter()
        .map(|&x| (x + rng.random_range(-0.0005f32..0.0005)).clamp(-1.0, 1.0))
        .collect();
    let fitted = Stratification::fit(&raw, &cfg).unwrap();
    eprintln!(
        "n = 1000000 unrounded: {} distinct values, {} candidates, K = {}",
        fitted.distinct_values,
        fitted.num_candidates,
        fitted.num_classes()
    );
    g.throughput(Throughput::Elements(raw.len() as u64));
    g.bench_with_input(BenchmarkId::from_parameter("1000000_unrounded"), &raw, |b, s| {
        b.iter(|| Stratification::fit(black_box(s), &cfg).unwrap())
    });
    g.finish();
}

fn per_batch(c: &mut Criterion) {
    let train = scores(100_000, 2);
    let das = Stratification::fit(&train, &DasConfig::default()).unwrap();
    let rar = Rarity::fit(&train, Rarity::DEFAULT_BANDWIDTH).unwrap();
    let batch = scores(4096, 3);
    let mut g = c.benchmark_group("per_batch_4096");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("assign_all", |b| b.iter(|| das.assign_all(black_box(&batch)).unwrap()));
    g.bench_function("rarity_weights", |b| b.iter(|| rar.weights(black_box(&batch))));
    g.finish();
}

fn fit_other(c: &mut Criterion) {
    let train = scores(100_000, 2);
    let das = Stratification::fit(&train, &DasConfig::default()).unwrap();
    let mut g = c.benchmark_group("fit_other");
    g.bench_function("rarity_fit_1e5", |b| {
        b.iter(|| Rarity::fit(black_box(&train), Rarity::DEFAULT_BANDWIDTH).unwrap())
    });
    let labels = das.assign_all(&train).unwrap();
    g.bench_function("stratified_split_1e5", |b| {
        b.iter(|| stratified_split(black_box(&labels), None, &[0.8, 0.2], 7).unwrap())
    });
    g.finish();
}

fn config(samples: usize, warm_up_s: u64, measurement_s: u64) -> Criterion {
    Criterion::default()
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(warm_up_s))
        .measurement_time(Duration::from_secs(measurement_s))
}

criterion_group! { name = fits; config = config(10, 1, 3); targets = fit }
criterion_group! { name = batches; config = config(20, 1, 2); targets = per_batch }
criterion_group! { name = others; config = config(10, 1, 2); targets = fit_other }
criterion_main!(fits, batches, others);
