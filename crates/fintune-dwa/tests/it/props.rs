//! proptest invariants for every method.

use fintune_dwa::{
    BatchCharacteristics, Dao, DaoConfig, Dwa, DwaConfig, EpochObservation, StepObservation,
    TaskKind, TaskWeighting, Uncertainty, UncertaintyConfig, WeightingConfig, WeightingSpec,
};
use proptest::prelude::*;

/// Finite positive values spanning 1e-12 ..= 1e12 (log-uniform), with the extremes themselves
/// drawn often.
fn extreme() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(1e-12),
        1 => Just(1e12),
        6 => (-12.0f64..=12.0).prop_map(|e| 10f64.powf(e)),
    ]
}

#[derive(Debug, Clone)]
struct Step {
    losses: Vec<f64>,
    norms: Vec<f64>,
    rarity: Vec<f64>,
    histogram: Vec<u64>,
}

/// A random batch of 1..=8 samples over 3 classes, rarities in (0, 20].
fn step(t: usize) -> impl Strategy<Value = Step> {
    (
        prop::collection::vec(extreme(), t),
        prop::collection::vec(extreme(), t),
        prop::collection::vec(0u64..4, 3)
            .prop_filter("non-empty batch", |h| h.iter().sum::<u64>() > 0),
    )
        .prop_flat_map(|(losses, norms, histogram)| {
            let n = histogram.iter().sum::<u64>() as usize;
            (Just(losses), Just(norms), prop::collection::vec(1e-3f64..20.0, n), Just(histogram))
        })
        .prop_map(|(losses, norms, rarity, histogram)| Step {
            losses,
            norms,
            rarity,
            histogram,
        })
}

const FREQ: [f64; 3] = [0.1, 0.7, 0.2];

fn observe<'a>(s: &'a Step, i: u64) -> StepObservation<'a> {
    StepObservation::new(&s.losses)
        .with_grad_norms(&s.norms)
        .with_batch(BatchCharacteristics {
            rarity: &s.rarity,
            class_histogram: &s.histogram,
            class_frequencies: &FREQ,
        })
        .at(i, 1000, (i / 7) as u32)
}

fn assert_valid(m: &dyn TaskWeighting, w: &fintune_dwa::Weights, sums_to_t: bool) {
    let t = m.num_tasks();
    assert_eq!(w.values.len(), t);
    for &x in &w.values {
        assert!(x.is_finite() && x > 0.0, "{}: weight {x} in {:?}", m.name(), w.values);
    }
    if sums_to_t {
        assert!(
            (w.sum() - t as f64).abs() <= 1e-9 * t as f64,
            "{}: sum {} of {:?}",
            m.name(),
            w.sum(),
            w.values
        );
    }
    let names: Vec<&str> = w
        .terms
        .iter()
        .map(|(n, v)| {
            assert_eq!(v.len(), t);
            n
        })
        .collect();
    assert_eq!(names, m.term_names(), "{}: term names must be stable", m.name());
}

/// Drives every method through the same random steps (with an epoch end every 7 steps).
fn drive_all(t: usize, steps: &[Step]) {
    let config = WeightingConfig::default();
    let mut specs = WeightingSpec::all_defaults();
    specs[2] = WeightingSpec::Static((1..=t).map(|i| i as f64 * 0.3).collect());
    for spec in specs {
        let mut m = spec.build_with(t, &config).unwrap();
        let sums_to_t = spec != WeightingSpec::Uncertainty;
        for (i, s) in steps.iter().enumerate() {
            let w = m.weights(&observe(s, i as u64)).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_valid(m.as_ref(), &w, sums_to_t);
            if i % 7 == 6 {
                m.end_epoch(&EpochObservation { epoch: (i / 7) as u32, mean_losses: &s.losses })
                    .unwrap();
            }
        }
    }
    // Uncertainty with normalisation sums to T.
    let mut u = Uncertainty::new(
        &TaskKind::fintune_default(t),
        UncertaintyConfig { normalise: true, ..Default::default() },
    )
    .unwrap();
    for (i, s) in steps.iter().enumerate() {
        let w = u.weights(&observe(s, i as u64)).unwrap();
        assert_valid(&u, &w, true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_method_gives_finite_positive_weights_summing_to_t_two_tasks(
        steps in prop::collection::vec(step(2), 1..40)
    ) {
        drive_all(2, &steps);
    }

    #[test]
    fn every_method_gives_finite_positive_weights_summing_to_t_eight_tasks(
        steps in prop::collection::vec(step(8), 1..25)
    ) {
        drive_all(8, &steps);
    }

    #[test]
    fn dwa_clamps_and_smoothing_hold(
        steps in prop::collection::vec(step(3), 1..40),
        momentum in 0.0f64..0.99,
        w_min in 0.01f64..0.9,
        warmup in 1u64..5,
        alpha in 0.0f64..3.0,
        beta in 0.0f64..2.0,
    ) {
        let config = DwaConfig { momentum, w_min, warmup_steps: warmup, alpha, beta, ..DwaConfig::default() };
        let kinds = [TaskKind::Regression, TaskKind::Classification, TaskKind::Classification];
        let mut m = Dwa::new(&kinds, config).unwrap();
        let (lo, hi) = m.clamps();
        let tol = 1e-12;
        let mut prev = vec![1.0; 3];
        for (i, s) in steps.iter().enumerate() {
            let w = m.weights(&observe(s, i as u64)).unwrap();
            let target = w.terms.get("target").unwrap().to_vec();
            for k in 0..3 {
                prop_assert!(w.values[k] >= lo - tol && w.values[k] <= hi + tol, "clamp: {:?}", w.values);
                prop_assert!(target[k] >= lo - tol && target[k] <= hi + tol, "target clamp: {:?}", target);
                let step = (w.values[k] - prev[k]).abs();
                // Smoothing moves a weight by exactly (1 - m) of its gap to the target,
                // never more; hence also never more than (1 - m)(hi - lo).
                prop_assert!(step <= (1.0 - momentum) * (target[k] - prev[k]).abs() + tol,
                    "step {step} gap {} m {momentum}", (target[k] - prev[k]).abs());
                prop_assert!(step <= (1.0 - momentum) * (hi - lo) + tol);
            }
            prop_assert!((w.sum() - 3.0).abs() < 1e-9);
            prev = w.values.clone();
        }
    }

    #[test]
    fn dwa_and_dao_are_invariant_to_scaling_all_gradient_norms(
        steps in prop::collection::vec(step(2), 1..30),
        scale_exp in -6.0f64..6.0,
    ) {
        let scale = 10f64.powf(scale_exp);
        let scaled: Vec<Step> = steps.iter().map(|s| Step {
            norms: s.norms.iter().map(|g| g * scale).collect(),
            ..s.clone()
        }).collect();
        let kinds = TaskKind::fintune_default(2);
        let mut a: Vec<Box<dyn TaskWeighting>> = vec![
            Box::new(Dwa::new(&kinds, DwaConfig::default()).unwrap()),
            Box::new(Dao::new(2, DaoConfig::default()).unwrap()),
        ];
        let mut b: Vec<Box<dyn TaskWeighting>> = vec![
            Box::new(Dwa::new(&kinds, DwaConfig::default()).unwrap()),
            Box::new(Dao::new(2, DaoConfig::default()).unwrap()),
        ];
        for (i, (s, z)) in steps.iter().zip(&scaled).enumerate() {
            for (ma, mb) in a.iter_mut().zip(b.iter_mut()) {
                let wa = ma.weights(&observe(s, i as u64)).unwrap();
                let wb = mb.weights(&observe(z, i as u64)).unwrap();
                for k in 0..2 {
                    prop_assert!((wa.values[k] - wb.values[k]).abs() <= 1e-9 * wa.values[k].max(1e-3),
                        "{}: {:?} vs {:?} at scale {scale}", ma.name(), wa.values, wb.values);
                }
            }
        }
    }
}
