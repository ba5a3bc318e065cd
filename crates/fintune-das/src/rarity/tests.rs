use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Reflected Gaussian KDE computed directly from the samples.
fn direct(scores: &[f32], h: f64, x: f64) -> f64 {
    let k = |d: f64| (-0.5 * (d / h).powi(2)).exp();
    let s: f64 = scores
        .iter()
        .map(|&y| {
            let y = f64::from(y);
            k(x - y) + k(x - (-2.0 - y)) + k(x - (2.0 - y))
        })
        .sum();
    s / (scores.len() as f64 * h * (2.0 * std::f64::consts::PI).sqrt())
}

fn sample(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let x: f64 =
                rng.random::<f64>().powi(2) * if rng.random_bool(0.7) { 1.0 } else { -1.0 };
            ((x * 1000.0).round() / 1000.0) as f32
        })
        .collect()
}

#[test]
fn grid_density_matches_direct_reflected_kde() {
    let scores = sample(700, 1);
    for h in [0.1, 0.03, 0.3] {
        let r = Rarity::fit(&scores, h).unwrap();
        for i in 0..=200 {
            let x = -1.0 + i as f64 / 100.0;
            let want = direct(&scores, h, x);
            let got = r.density(x as f32);
            assert!((got - want).abs() <= 2e-3 * want + 1e-6, "h={h} x={x}: {got} vs {want}");
        }
    }
}

#[test]
fn reflection_keeps_mass_and_flat_data_stays_flat_at_the_edges() {
    let flat: Vec<f32> = (0..=2000).map(|i| -1.0 + i as f32 / 1000.0).collect();
    let r = Rarity::fit(&flat, 0.1).unwrap();
    // Uniform on [-1, 1] has density 0.5 everywhere, including the edges (a plain KDE gives
    // about 0.25 there).
    for x in [-1.0f32, -0.99, 0.0, 0.97, 1.0] {
        assert!((r.density(x) - 0.5).abs() < 0.01, "x={x}: {}", r.density(x));
    }
    // The density integrates to 1 over the domain.
    let skewed = Rarity::fit(&sample(500, 2), 0.1).unwrap();
    let m = 4000;
    let integral: f64 = (0..m)
        .map(|i| skewed.density((-1.0 + (i as f64 + 0.5) * 2.0 / m as f64) as f32) * 2.0 / m as f64)
        .sum();
    assert!((integral - 1.0).abs() < 2e-3, "{integral}");
}

#[test]
fn weights_have_mean_one_and_favour_rare_scores() {
    let scores = sample(1000, 3);
    let w = rarity(&scores, 0.1).unwrap();
    let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / w.len() as f64;
    assert!((mean - 1.0).abs() < 1e-6);
    let r = Rarity::fit(&scores, 0.1).unwrap();
    let w2 = r.weights(&scores);
    let mean2 = w2.iter().map(|&x| f64::from(x)).sum::<f64>() / w2.len() as f64;
    assert!((mean2 - 1.0).abs() < 1e-5);
    // Scores pile up near 0, so the extremes are rarer.
    assert!(r.weight(-0.95) > r.weight(-0.05));
    assert!(r.weight(0.95) > r.weight(0.05));
    // Monotone in density.
    assert!((r.weight(0.5) - (r.scale / r.density(0.5)) as f32).abs() < 1e-4);
}

#[test]
fn weights_are_capped_far_from_the_data_and_queries_are_clamped() {
    let scores = [0.0f32, 0.01, 0.02, 0.03, 0.05];
    let r = Rarity::fit(&scores, 0.05).unwrap();
    let wmax = r.weights(&scores).into_iter().fold(0.0f32, f32::max);
    assert!(r.weight(1.0) <= wmax * (1.0 + 1e-6), "{} vs {wmax}", r.weight(1.0));
    assert!(r.weight(-1.0).is_finite());
    assert_eq!(r.weight(7.0), r.weight(1.0));
    assert_eq!(r.weight(-3.0), r.weight(-1.0));
    assert!(r.weight(f32::NAN).is_nan());
}

#[test]
fn bad_inputs_name_the_problem() {
    assert!(matches!(Rarity::fit(&[], 0.1), Err(Error::Empty { .. })));
    match Rarity::fit(&[0.0, 1.5], 0.1) {
        Err(Error::OutOfRange { index: 1, value }) => assert_eq!(value, 1.5),
        other => panic!("{other:?}"),
    }
    assert!(matches!(Rarity::fit(&[0.0, f32::NAN], 0.1), Err(Error::NonFinite { index: 1, .. })));
    for h in [0.0, -1.0, f64::NAN, 1e-6] {
        assert!(matches!(
            Rarity::fit(&[0.0], h),
            Err(Error::InvalidParameter { name: "bandwidth", .. })
        ));
    }
}

#[test]
fn json_round_trip_gives_identical_weights_and_is_validated() {
    let scores = sample(300, 4);
    let r = Rarity::fit(&scores, 0.1).unwrap();
    assert_eq!(r.grid_len(), 1001);
    assert_eq!(r.n(), 300);
    let json = serde_json::to_string(&r).unwrap();
    let back: Rarity = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    for &s in &scores {
        assert_eq!(back.weight(s), r.weight(s));
    }
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["density"][3] = serde_json::json!(-1.0);
    let e = serde_json::from_value::<Rarity>(v).unwrap_err();
    assert!(e.to_string().contains("density[3]"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["density"] = serde_json::json!([1.0]);
    assert!(serde_json::from_value::<Rarity>(v).is_err());
}
