use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn reference(scores: &[f32]) -> (Vec<f32>, Vec<u64>) {
    let mut s: Vec<f32> = scores.iter().map(|&x| x + 0.0).collect();
    s.sort_by(f32::total_cmp);
    let mut values: Vec<f32> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for x in s {
        if values.last().is_some_and(|&v| v == x) {
            *counts.last_mut().unwrap() += 1;
        } else {
            values.push(x);
            counts.push(1);
        }
    }
    (values, counts)
}

#[test]
fn key_preserves_order() {
    let xs = [-f32::MAX, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 1.0, f32::MAX];
    for w in xs.windows(2) {
        assert!(key(w[0]) <= key(w[1]), "{} {}", w[0], w[1]);
        assert_eq!(unkey(key(w[1])), w[1]);
    }
    assert_eq!(key(-0.0), key(0.0));
}

#[test]
fn radix_and_comparison_paths_match_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for &n in &[1usize, 5, 100, 2047, 2048, 5000, 50_000] {
        for &rounded in &[false, true] {
            let scores: Vec<f32> = (0..n)
                .map(|_| {
                    let x: f32 = rng.random_range(-1.0..=1.0);
                    if rounded {
                        (x * 1000.0).round() / 1000.0
                    } else {
                        x * 3e3
                    }
                })
                .collect();
            let g = group(&scores).unwrap();
            let (v, c) = reference(&scores);
            assert_eq!(g.values, v, "n={n} rounded={rounded}");
            assert_eq!(g.counts, c);
            assert_eq!(g.n, n as u64);
        }
    }
}

#[test]
fn negative_zero_is_folded_into_zero() {
    let g = group(&[-0.0, 0.0, -0.0, 1.0]).unwrap();
    assert_eq!(g.values.len(), 2);
    assert_eq!(g.counts, vec![3, 1]);
    assert!(g.values[0].is_sign_positive());
}

#[test]
fn rejects_empty_and_non_finite_with_index() {
    assert!(matches!(group(&[]), Err(Error::Empty { .. })));
    match group(&[0.1, 0.2, f32::NAN, f32::INFINITY]) {
        Err(Error::NonFinite { index, .. }) => assert_eq!(index, 2),
        other => panic!("{other:?}"),
    }
    let big: Vec<f32> =
        (0..5000).map(|i| if i == 4321 { f32::NEG_INFINITY } else { 0.0 }).collect();
    match group(&big) {
        Err(Error::NonFinite { index, value }) => {
            assert_eq!(index, 4321);
            assert_eq!(value, f32::NEG_INFINITY);
        }
        other => panic!("{other:?}"),
    }
}
