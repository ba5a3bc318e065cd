use super::*;

#[test]
fn two_steps_by_hand() {
    let mut g = GradNorm::new(2, GradNormConfig::default()).unwrap();
    // Step 0: w = (1, 1); L(0) = (1, 2) so both ratios are 1 and r = (1, 1).
    // G^W = (1, 3), mean 2, target (2, 2): task 0 below (grad -G_0 = -1), task 1 above (+3).
    let w = g.weights(&StepObservation::new(&[1.0, 2.0]).with_grad_norms(&[1.0, 3.0])).unwrap();
    assert_eq!(w.values, vec![1.0, 1.0]);
    assert_eq!(w.terms.get("gw").unwrap(), &[1.0, 3.0]);
    assert_eq!(w.terms.get("r").unwrap(), &[1.0, 1.0]);
    assert_eq!(w.terms.get("target").unwrap(), &[2.0, 2.0]);
    assert_eq!(w.terms.get("grad").unwrap(), &[-1.0, 3.0]);
    // First Adam step moves each weight by lr * g / (|g| + eps): about (1.025, 0.975); then
    // renormalised to sum 2 (the eps makes the raw sum differ from 2 by ~1e-10).
    let raw = [1.0 + 0.025 / (1.0 + 1e-8), 1.0 - 0.025 * 3.0 / (3.0 + 1e-8)];
    let w1 = [2.0 * raw[0] / (raw[0] + raw[1]), 2.0 * raw[1] / (raw[0] + raw[1])];
    let cur = g.current_weights();
    assert!((cur[0] - w1[0]).abs() < 1e-12 && (cur[1] - w1[1]).abs() < 1e-12, "{cur:?}");

    // Step 1: losses (0.5, 2): ratios (0.5, 1), mean 0.75, r = (2/3, 4/3).
    let w = g.weights(&StepObservation::new(&[0.5, 2.0]).with_grad_norms(&[1.0, 3.0])).unwrap();
    let r: [f64; 2] = [0.5 / 0.75, 1.0 / 0.75];
    let gw = [w1[0] * 1.0, w1[1] * 3.0];
    let mean = (gw[0] + gw[1]) / 2.0;
    let target = [mean * r[0].powf(1.5), mean * r[1].powf(1.5)];
    for i in 0..2 {
        assert!((w.values[i] - w1[i]).abs() < 1e-12);
        assert!((w.terms.get("r").unwrap()[i] - r[i]).abs() < 1e-10);
        assert!((w.terms.get("target").unwrap()[i] - target[i]).abs() < 1e-10);
    }
    // mean(G^W) = (1.025 + 2.925) / 2 = 1.975; targets 1.975 * (2/3)^1.5 = 1.075 and
    // 1.975 * (4/3)^1.5 = 3.041: both weighted norms are below target, grad = (-G_0, -G_1).
    assert!(gw[0] < target[0] && gw[1] < target[1]);
    assert_eq!(w.terms.get("grad").unwrap(), &[-1.0, -3.0]);
}

#[test]
fn weights_stay_above_the_floor() {
    let mut g = GradNorm::new(2, GradNormConfig { lr: 0.5, ..GradNormConfig::default() }).unwrap();
    for _ in 0..200 {
        let w =
            g.weights(&StepObservation::new(&[1.0, 1.0]).with_grad_norms(&[1e-9, 1e9])).unwrap();
        assert!(w.values.iter().all(|&x| x >= 1e-3 - 1e-15), "{:?}", w.values);
        assert!((w.sum() - 2.0).abs() < 1e-12);
    }
    assert!((g.current_weights()[1] - 1e-3).abs() < 1e-12, "{:?}", g.current_weights());
}
