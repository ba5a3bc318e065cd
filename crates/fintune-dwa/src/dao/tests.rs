use super::*;

#[test]
fn two_tasks_by_hand() {
    // lambda_r = G_c / (G_r + G_c) * 2 = 3 / 4 * 2, lambda_c = 1 / 4 * 2.
    let mut d = Dao::new(2, DaoConfig::default()).unwrap();
    let w = d.weights(&StepObservation::new(&[0.3, 1.2]).with_grad_norms(&[1.0, 3.0])).unwrap();
    assert_eq!(w.values, vec![1.5, 0.5]);
    assert_eq!(w.terms.get("g").unwrap(), &[2.0, 2.0 / 3.0]);
}

#[test]
fn three_tasks_by_hand() {
    let mut d = Dao::new(3, DaoConfig::default()).unwrap();
    let w = d.weights(&StepObservation::new(&[1.0; 3]).with_grad_norms(&[1.0, 2.0, 4.0])).unwrap();
    // Inverses 1, 1/2, 1/4 sum to 7/4: weights 3 * (4/7, 2/7, 1/7).
    let expected = [12.0 / 7.0, 6.0 / 7.0, 3.0 / 7.0];
    for (a, b) in w.values.iter().zip(expected) {
        assert!((a - b).abs() < 1e-15, "{:?}", w.values);
    }
    // Every weighted norm equal.
    assert!((w.values[0] * 1.0 - w.values[2] * 4.0).abs() < 1e-12);
}

#[test]
fn zero_norms() {
    let mut d = Dao::new(2, DaoConfig::default()).unwrap();
    let w = d.weights(&StepObservation::new(&[1.0; 2]).with_grad_norms(&[0.0, 0.0])).unwrap();
    assert_eq!(w.values, vec![1.0, 1.0]);
    let w = d.weights(&StepObservation::new(&[1.0; 2]).with_grad_norms(&[0.0, 1.0])).unwrap();
    // The zero norm is floored at 1e-12 * max: weights 2 * (1e12, 1) / (1e12 + 1).
    assert!(
        (w.values[0] - 2.0 * 1e12 / (1e12 + 1.0)).abs() < 1e-9 && w.values[1] > 0.0,
        "{:?}",
        w.values
    );
}
