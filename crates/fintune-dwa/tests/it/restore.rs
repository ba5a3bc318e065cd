//! state/restore: a run resumed from a checkpoint continues bit-identically.

use fintune_dwa::{
    BatchCharacteristics, EpochObservation, FamoConfig, FamoUpdate, StepObservation, TaskWeighting,
    WeightingConfig, WeightingSpec,
};
use ndarray::{Array1, ArrayView1};

use crate::common::TestRng;

const T: usize = 3;
const FREQ: [f64; 3] = [0.2, 0.5, 0.3];

/// Deterministic pseudo-random observations (the same sequence for both runs).
struct Feed {
    rng: TestRng,
}

impl Feed {
    fn next(&mut self) -> ([f64; T], [f64; T], Vec<f64>, [u64; 3]) {
        let r = &mut self.rng;
        let losses = [0.1 + r.uniform(), 0.5 + r.uniform(), 2.0 * r.uniform() + 0.01];
        let norms = [r.uniform() + 1e-3, 5.0 * r.uniform() + 1e-3, 0.1 * r.uniform() + 1e-4];
        let histogram = [(r.next_u64() % 3), 1 + (r.next_u64() % 3), (r.next_u64() % 3)];
        let n = histogram.iter().sum::<u64>() as usize;
        let rarity = (0..n).map(|_| 0.2 + 3.0 * r.uniform()).collect();
        (losses, norms, rarity, histogram)
    }

    fn grads(&mut self, n: usize) -> Vec<Array1<f32>> {
        (0..T).map(|_| Array1::from_iter((0..n).map(|_| self.rng.normal() as f32))).collect()
    }
}

/// Runs `steps` steps, returning every weight, term and combined-gradient bit.
fn run(m: &mut dyn TaskWeighting, feed: &mut Feed, from: u64, steps: u64) -> Vec<u64> {
    let mut bits = Vec::new();
    for i in from..from + steps {
        let (losses, norms, rarity, histogram) = feed.next();
        let batch = BatchCharacteristics {
            rarity: &rarity,
            class_histogram: &histogram,
            class_frequencies: &FREQ,
        };
        let obs = StepObservation::new(&losses).with_grad_norms(&norms).with_batch(batch).at(
            i,
            100,
            (i / 5) as u32,
        );
        let w = m.weights(&obs).unwrap();
        bits.extend(w.values.iter().map(|x| x.to_bits()));
        for (_, v) in w.terms.iter() {
            bits.extend(v.iter().map(|x| x.to_bits()));
        }
        if m.needs_gradients() {
            let g = feed.grads(37);
            let views: Vec<ArrayView1<'_, f32>> = g.iter().map(|a| a.view()).collect();
            if let Some(c) = m.combine_gradients(&views).unwrap() {
                bits.extend(c.gradient.iter().map(|x| u64::from(x.to_bits())));
                bits.extend(c.coefficients.iter().map(|x| x.to_bits()));
            }
        }
        if m.needs_post_step_losses() {
            m.after_step(&losses.map(|l| l * 0.9)).unwrap();
        }
        if i % 5 == 4 {
            m.end_epoch(&EpochObservation { epoch: (i / 5) as u32, mean_losses: &losses }).unwrap();
        }
    }
    bits
}

fn check_round_trip(spec: &WeightingSpec, config: &WeightingConfig, split: u64) {
    let total = 40;
    // Uninterrupted run.
    let mut a = spec.build_with(T, config).unwrap();
    let mut feed_a = Feed { rng: TestRng::new(99) };
    let mut bits_a = run(a.as_mut(), &mut feed_a, 0, split);
    bits_a.extend(run(a.as_mut(), &mut feed_a, split, total - split));

    // Run to `split`, checkpoint through JSON text, resume in a fresh instance.
    let mut b = spec.build_with(T, config).unwrap();
    let mut feed_b = Feed { rng: TestRng::new(99) };
    let mut bits_b = run(b.as_mut(), &mut feed_b, 0, split);
    let text = serde_json::to_string(&b.state()).unwrap();
    drop(b);
    let mut c = spec.build_with(T, config).unwrap();
    c.restore(&serde_json::from_str(&text).unwrap()).unwrap();
    bits_b.extend(run(c.as_mut(), &mut feed_b, split, total - split));

    assert_eq!(bits_a.len(), bits_b.len());
    assert!(
        bits_a == bits_b,
        "{spec}: resumed run differs from the uninterrupted one (split {split})"
    );
}

#[test]
fn every_method_resumes_bit_identically() {
    let mut specs = WeightingSpec::all_defaults();
    specs[2] = WeightingSpec::Static(vec![0.5, 0.3, 0.2]);
    let config = WeightingConfig::default();
    for spec in &specs {
        // Mid warm-up (DWA warm-up is 10 steps), after it, and mid-epoch for dwa-liu.
        for split in [3, 12, 23] {
            check_round_trip(spec, &config, split);
        }
    }
    let same_batch = WeightingConfig {
        famo: FamoConfig { update: FamoUpdate::SameBatch, ..FamoConfig::default() },
        ..WeightingConfig::default()
    };
    check_round_trip(&WeightingSpec::Famo, &same_batch, 17);
}

#[test]
fn restoring_changes_the_continuation() {
    // Guards the test above: a fresh instance that is *not* restored diverges.
    for spec in [
        WeightingSpec::Dwa,
        WeightingSpec::GradNorm,
        WeightingSpec::Famo,
        WeightingSpec::Uncertainty,
    ] {
        let mut a = spec.build(T).unwrap();
        let mut feed = Feed { rng: TestRng::new(5) };
        run(a.as_mut(), &mut feed, 0, 15);
        let mut feed2 = Feed { rng: TestRng::new(6) };
        let cont_a = run(a.as_mut(), &mut feed2, 15, 5);
        let mut fresh = spec.build(T).unwrap();
        let mut feed3 = Feed { rng: TestRng::new(6) };
        let cont_fresh = run(fresh.as_mut(), &mut feed3, 15, 5);
        assert_ne!(cont_a, cont_fresh, "{spec}");
    }
}

#[test]
fn pcgrad_random_order_is_restored() {
    // With three conflicting gradients the projection order matters; a resumed run must draw
    // the same orders.
    let spec = WeightingSpec::PcGrad;
    check_round_trip(&spec, &WeightingConfig::default(), 7);
}

#[test]
fn foreign_or_mismatched_states_are_rejected() {
    let dwa = WeightingSpec::Dwa.build(2).unwrap();
    let state = dwa.state();
    let mut famo = WeightingSpec::Famo.build(2).unwrap();
    let e = famo.restore(&state).unwrap_err().to_string();
    assert!(e.contains("famo") && e.contains("dwa"), "{e}");

    let mut dwa3 = WeightingSpec::Dwa.build(3).unwrap();
    let e = dwa3.restore(&state).unwrap_err().to_string();
    assert!(e.contains("2 tasks"), "{e}");

    let mut other = WeightingConfig::default();
    other.dwa.beta = 0.25;
    let mut dwa_b = WeightingSpec::Dwa.build_with(2, &other).unwrap();
    let e = dwa_b.restore(&state).unwrap_err().to_string();
    assert!(e.contains("config"), "{e}");

    let mut tampered = state.clone();
    tampered["state"]["weights"] = serde_json::json!(["1.0"]);
    let mut dwa2 = WeightingSpec::Dwa.build(2).unwrap();
    let before = dwa2.state();
    assert!(dwa2.restore(&tampered).is_err());
    assert_eq!(dwa2.state(), before, "a failed restore changes nothing");
}
