use super::scale_clamped;

fn run(u: &[f64], total: f64, lo: f64, hi: f64) -> Vec<f64> {
    let mut out = vec![f64::NAN; u.len()];
    scale_clamped(u, total, lo, hi, &mut out);
    out
}

#[test]
fn unclamped_is_plain_normalisation() {
    let w = run(&[1.0, 3.0], 2.0, 0.1, 1.9);
    assert_eq!(w, vec![0.5, 1.5]);
}

#[test]
fn one_bound_binds_for_two_tasks() {
    // 2 * 1/101 = 0.0198 < 0.1: clamp to 0.1, the other takes the rest.
    let w = run(&[1.0, 100.0], 2.0, 0.1, 1.9);
    assert!((w[0] - 0.1).abs() < 1e-15, "{w:?}");
    assert!((w[1] - 1.9).abs() < 1e-15, "{w:?}");
}

#[test]
fn clamped_weights_release_when_others_bind() {
    // u = (1, 1e-3, 1e-3), T = 3, bounds [0.1, 1.2]. One pass of normalise, clamp,
    // renormalise gives (1.2, 0.1, 0.1) * 3 / 1.4 = (2.57, 0.21, 0.21), breaking the upper
    // bound. The fixed point pins task 0 at 1.2 and lets tasks 1 and 2 (equal u) share 1.8.
    let w = run(&[1.0, 1e-3, 1e-3], 3.0, 0.1, 1.2);
    assert!((w.iter().sum::<f64>() - 3.0).abs() < 1e-12, "{w:?}");
    assert!((w[0] - 1.2).abs() < 1e-12, "{w:?}");
    assert!((w[1] - 0.9).abs() < 1e-12 && (w[2] - 0.9).abs() < 1e-12, "{w:?}");
}

#[test]
fn proportions_kept_among_free_weights() {
    let w = run(&[1e-6, 2.0, 4.0, 2.0], 4.0, 0.1, 3.9);
    assert!((w[0] - 0.1).abs() < 1e-12, "{w:?}");
    // The remaining 3.9 split 1:2:1.
    assert!((w[1] - 0.975).abs() < 1e-12 && (w[2] - 1.95).abs() < 1e-12, "{w:?}");
    assert!((w[3] - 0.975).abs() < 1e-12, "{w:?}");
}

#[test]
fn zero_sum_is_uniform() {
    assert_eq!(run(&[0.0, 0.0], 2.0, 0.1, 1.9), vec![1.0, 1.0]);
}

#[test]
fn infinite_upper_bound() {
    let w = run(&[1e-9, 1.0], 2.0, 1e-3, f64::INFINITY);
    assert!((w[0] - 1e-3).abs() < 1e-15 && (w[1] - 1.999).abs() < 1e-12, "{w:?}");
}

#[test]
fn any_magnitude_works() {
    for scale in [1e-300, 1e-200, 1.0, 1e200, 1e300] {
        let w = run(&[1.0 * scale, 100.0 * scale], 2.0, 0.1, 1.9);
        assert!((w[0] - 0.1).abs() < 1e-15 && (w[1] - 1.9).abs() < 1e-15, "{scale}: {w:?}");
        let w = run(&[1.0 * scale, 3.0 * scale], 2.0, 0.1, 1.9);
        assert!((w[0] - 0.5).abs() < 1e-15 && (w[1] - 1.5).abs() < 1e-15, "{scale}: {w:?}");
    }
    // Subnormal entries next to normal ones.
    let w = run(&[5e-324, 1e-310], 2.0, 0.1, 1.9);
    assert!((w.iter().sum::<f64>() - 2.0).abs() < 1e-12 && w[0] >= 0.1 && w[1] <= 1.9, "{w:?}");
}
