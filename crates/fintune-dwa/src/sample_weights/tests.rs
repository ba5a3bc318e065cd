use proptest::prelude::*;

use super::*;

fn cfg(power: f64, min: f64, max: f64) -> SampleWeightConfig {
    SampleWeightConfig { power, min, max }
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
}

#[test]
fn by_hand() {
    // Proportional, nothing clipped: (1, 3) / mean 2 = (0.5, 1.5).
    let w = rarity_sample_weights(&[1.0, 3.0], &cfg(1.0, 0.2, 5.0)).unwrap();
    assert!(close(&w, &[0.5, 1.5]), "{w:?}");
    // max 1.2 binds: s1 = 1.2, so s0 = 2 - 1.2 = 0.8 (lambda = 0.8, 0.8 * 3 = 2.4 clipped).
    let w = rarity_sample_weights(&[1.0, 3.0], &cfg(1.0, 0.2, 1.2)).unwrap();
    assert!(close(&w, &[0.8, 1.2]), "{w:?}");
    // Square root: (1, 4) -> proportions (1, 2) -> (2/3, 4/3).
    let w = rarity_sample_weights(&[1.0, 4.0], &cfg(0.5, 0.2, 5.0)).unwrap();
    assert!(close(&w, &[2.0 / 3.0, 4.0 / 3.0]), "{w:?}");
    // Power 0: uniform.
    assert_eq!(rarity_sample_weights(&[0.1, 9.0], &cfg(0.0, 0.2, 5.0)).unwrap(), vec![1.0; 2]);
    // min binds: (0.01, 1, 1, 2) scaled to mean 1 gives about (0.01, 0.99, 0.99, 1.99);
    // min 0.5 lifts the first to 0.5, the rest share 3.5 in the ratio 1 : 1 : 2:
    // (0.875, 0.875, 1.75).
    let w = rarity_sample_weights(&[0.01, 1.0, 1.0, 2.0], &cfg(1.0, 0.5, 5.0)).unwrap();
    assert!(close(&w, &[0.5, 0.875, 0.875, 1.75]), "{w:?}");
}

#[test]
fn bad_input_errors() {
    let e = rarity_sample_weights(&[], &SampleWeightConfig::default()).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    for bad in [-1.0, 0.0] {
        let e = rarity_sample_weights(&[1.0, bad], &SampleWeightConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("rarity[1] = {bad}")) && e.contains("> 0"), "{e}");
    }
    let e =
        rarity_sample_weights(&[f64::NAN], &SampleWeightConfig::default()).unwrap_err().to_string();
    assert!(e.contains("rarity[0] = NaN"), "{e}");
    let e = rarity_sample_weights(&[1.0], &cfg(1.0, 0.2, 0.9)).unwrap_err().to_string();
    assert!(e.contains("sample_weights.max"), "{e}");
    let e = rarity_sample_weights(&[1.0], &cfg(-1.0, 0.2, 2.0)).unwrap_err().to_string();
    assert!(e.contains("sample_weights.power"), "{e}");
}

proptest! {
    #[test]
    fn mean_one_clipped_and_order_preserving(
        rarity in prop::collection::vec(prop_oneof![1 => Just(1e-6), 1 => Just(1.0), 6 => 1e-6f64..1e6], 1..64),
        power in 0.0f64..3.0,
        min in 0.01f64..=1.0,
        max in 1.0f64..20.0,
    ) {
        let w = rarity_sample_weights(&rarity, &cfg(power, min, max)).unwrap();
        let n = w.len() as f64;
        let mean = w.iter().sum::<f64>() / n;
        prop_assert!((mean - 1.0).abs() < 1e-9, "mean {mean}: {w:?}");
        for &x in &w {
            prop_assert!(x.is_finite() && x >= min - 1e-12 && x <= max + 1e-12, "{x} not in [{min}, {max}]");
        }
        for a in 0..rarity.len() {
            for b in 0..rarity.len() {
                if rarity[a] <= rarity[b] {
                    prop_assert!(w[a] <= w[b] + 1e-12, "order: r {} <= {} but w {} > {}", rarity[a], rarity[b], w[a], w[b]);
                }
            }
        }
    }
}
