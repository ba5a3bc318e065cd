//! Cost of one `weights` call per method (T = 2 and T = 8, scalar inputs plus a 32-sample
//! batch description) and of PCGrad on two 1e6-element gradients.
//!
//! Run: `cargo bench -p fintune-dwa --bench weights`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fintune_dwa::{
    BatchCharacteristics, PcGrad, PcGradConfig, StepObservation, TaskWeighting, WeightingSpec,
    Weights,
};
use ndarray::{Array1, ArrayView1};

const BATCH: usize = 32;

struct Inputs {
    losses: Vec<f64>,
    norms: Vec<f64>,
    rarity: Vec<f64>,
    histogram: Vec<u64>,
    frequencies: Vec<f64>,
}

fn inputs(t: usize) -> Inputs {
    Inputs {
        losses: (0..t).map(|i| 0.05 + 0.3 * i as f64).collect(),
        norms: (0..t).map(|i| 0.2 + 1.7 * i as f64).collect(),
        rarity: (0..BATCH).map(|i| 0.5 + (i % 7) as f64 * 0.3).collect(),
        histogram: vec![4, 10, 8, 7, 3],
        frequencies: vec![0.1, 0.3, 0.25, 0.25, 0.1],
    }
}

fn weights(c: &mut Criterion) {
    let mut group = c.benchmark_group("weights");
    for t in [2usize, 8] {
        let x = inputs(t);
        let batch = BatchCharacteristics {
            rarity: &x.rarity,
            class_histogram: &x.histogram,
            class_frequencies: &x.frequencies,
        };
        let obs = StepObservation::new(&x.losses)
            .with_grad_norms(&x.norms)
            .with_batch(batch)
            .at(100, 1000, 1);
        for name in ["dwa", "dao", "gradnorm", "uncertainty", "famo", "dwa-liu", "equal"] {
            let mut m = name.parse::<WeightingSpec>().unwrap().build(t).unwrap();
            let mut out = Weights::new();
            // Past the DWA warm-up, buffers sized.
            for _ in 0..20 {
                m.weights_into(&obs, &mut out).unwrap();
            }
            group.bench_with_input(BenchmarkId::new(name, format!("T={t}")), &obs, |b, obs| {
                b.iter(|| {
                    m.weights_into(black_box(obs), &mut out).unwrap();
                    black_box(&out);
                })
            });
        }
        // The allocating convenience call, for comparison.
        let mut m = WeightingSpec::Dwa.build(t).unwrap();
        group.bench_with_input(
            BenchmarkId::new("dwa-allocating", format!("T={t}")),
            &obs,
            |b, obs| b.iter(|| black_box(m.weights(black_box(obs)).unwrap())),
        );
    }
    group.finish();
}

fn pcgrad(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let g1 = Array1::from_iter((0..N).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0));
    let g2 = Array1::from_iter((0..N).map(|i| ((i * 104_729 + 13) % 1000) as f32 / 500.0 - 1.2));
    let mut group = c.benchmark_group("pcgrad");
    group.throughput(Throughput::Bytes((2 * N * 4) as u64));
    let mut p = PcGrad::new(2, PcGradConfig::default()).unwrap();
    group.bench_function("combine_gradients/2x1e6", |b| {
        let views: [ArrayView1<'_, f32>; 2] = [g1.view(), g2.view()];
        b.iter(|| black_box(p.combine_gradients(black_box(&views)).unwrap()))
    });
    let mut out = vec![0.0f32; N];
    group.bench_function("combine_into/2x1e6", |b| {
        let slices = [g1.as_slice().unwrap(), g2.as_slice().unwrap()];
        b.iter(|| black_box(p.combine_into(black_box(&slices), &mut out).unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = weights, pcgrad
}
criterion_main!(benches);
