use super::*;

fn kinds() -> [TaskKind; 2] {
    [TaskKind::Regression, TaskKind::Classification]
}

#[test]
fn first_two_steps_by_hand() {
    let mut u = Uncertainty::new(&kinds(), UncertaintyConfig::default()).unwrap();
    // s = 0: regression weight 1/2 exp(0) = 0.5, classification exp(0) = 1.
    let w = u.weights(&StepObservation::new(&[0.2, 2.0])).unwrap();
    assert_eq!(w.values, vec![0.5, 1.0]);
    // d/ds = 1/2 - c exp(-s) L: 0.5 - 0.5 * 0.2 = 0.4 and 0.5 - 1 * 2 = -1.5.
    assert_eq!(w.terms.get("grad").unwrap(), &[0.4, -1.5]);
    // First Adam step: s -= lr * g / (|g| + eps) (bias-corrected moments equal g and g^2).
    let s = [-0.01 * 0.4 / (0.4 + 1e-8), 0.01 * 1.5 / (1.5 + 1e-8)];
    let got = u.log_variances();
    assert!((got[0] - s[0]).abs() < 1e-15 && (got[1] - s[1]).abs() < 1e-15, "{got:?}");
    let w = u.weights(&StepObservation::new(&[0.2, 2.0])).unwrap();
    let expected = [0.5 * (-s[0]).exp(), (-s[1]).exp()];
    assert!((w.values[0] - expected[0]).abs() < 1e-15 && (w.values[1] - expected[1]).abs() < 1e-15);
    assert!(w.values[0] > 0.5 && w.values[1] < 1.0, "regression up, classification down");
}

#[test]
fn converges_to_the_analytic_optimum() {
    // Fixed losses: the optimum is exp(-s) = 1 / (2 c L), i.e. w = 1 / (2 L) for both kinds.
    let cfg = UncertaintyConfig { lr: 0.05, ..UncertaintyConfig::default() };
    let mut u = Uncertainty::new(&kinds(), cfg).unwrap();
    let losses = [0.05, 0.8];
    let mut w = Weights::new();
    for _ in 0..3000 {
        u.weights_into(&StepObservation::new(&losses), &mut w).unwrap();
    }
    for i in 0..2 {
        let opt = 1.0 / (2.0 * losses[i]);
        assert!((w.values[i] - opt).abs() < 0.02 * opt, "task {i}: {} vs {opt}", w.values[i]);
    }
}

#[test]
fn normalised_weights_sum_to_t() {
    let cfg = UncertaintyConfig { normalise: true, ..UncertaintyConfig::default() };
    let mut u = Uncertainty::new(&kinds(), cfg).unwrap();
    let w = u.weights(&StepObservation::new(&[0.2, 2.0])).unwrap();
    // (0.5, 1) rescaled to sum 2.
    assert!((w.values[0] - 2.0 / 3.0).abs() < 1e-15 && (w.values[1] - 4.0 / 3.0).abs() < 1e-15);
    assert_eq!(w.terms.get("precision").unwrap(), &[0.5, 1.0]);
}
