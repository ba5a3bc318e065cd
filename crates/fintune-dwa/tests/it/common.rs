//! Shared helpers: a deterministic RNG and observation builders.

use fintune_dwa::{BatchCharacteristics, StepObservation, TaskWeighting, Weights};

/// SplitMix64 plus Box-Muller normals; deterministic test randomness without extra crates.
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A neutral batch: rarity 1 everywhere and a class histogram proportional to the training
/// frequencies, so both DWA batch statistics are exactly 1.
pub const NEUTRAL_RARITY: [f64; 4] = [1.0; 4];
pub const NEUTRAL_HISTOGRAM: [u64; 3] = [1, 2, 1];
pub const FREQUENCIES: [f64; 3] = [0.25, 0.5, 0.25];

pub fn neutral_batch() -> BatchCharacteristics<'static> {
    BatchCharacteristics {
        rarity: &NEUTRAL_RARITY,
        class_histogram: &NEUTRAL_HISTOGRAM,
        class_frequencies: &FREQUENCIES,
    }
}

/// One step with losses, grad norms and a neutral batch.
#[allow(dead_code)]
pub fn step(m: &mut dyn TaskWeighting, losses: &[f64], norms: &[f64], step: u64) -> Weights {
    let obs = StepObservation::new(losses)
        .with_grad_norms(norms)
        .with_batch(neutral_batch())
        .at(step, 1000, 0);
    m.weights(&obs).unwrap_or_else(|e| panic!("{}: {e}", m.name()))
}
