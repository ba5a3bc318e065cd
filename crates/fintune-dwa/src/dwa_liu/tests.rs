use super::*;

fn step(m: &mut DwaLiu) -> Weights {
    m.weights(&StepObservation::new(&[1.0, 1.0])).unwrap()
}

#[test]
fn equal_for_two_epochs_then_softmax_of_ratios() {
    let mut m = DwaLiu::new(2, DwaLiuConfig::default()).unwrap();
    assert_eq!(step(&mut m).values, vec![1.0, 1.0]);
    m.end_epoch(&EpochObservation { epoch: 0, mean_losses: &[1.0, 2.0] }).unwrap();
    assert_eq!(step(&mut m).values, vec![1.0, 1.0], "epoch 1 is still equal");
    m.end_epoch(&EpochObservation { epoch: 1, mean_losses: &[0.5, 1.8] }).unwrap();
    // Ratios w = (0.5 / 1.0, 1.8 / 2.0) = (0.5, 0.9); lambda = 2 softmax(w / 2).
    let w = step(&mut m);
    let (a, b) = ((0.5f64 / 2.0).exp(), (0.9f64 / 2.0).exp());
    let expected = [2.0 * a / (a + b), 2.0 * b / (a + b)];
    assert!((w.values[0] - expected[0]).abs() < 1e-12 && (w.values[1] - expected[1]).abs() < 1e-12);
    assert!((w.terms.get("ratio").unwrap()[1] - 0.9).abs() < 1e-12);
    // The slower task (ratio 0.9) gets more weight: about (0.9003, 1.0997).
    assert!((w.values[0] - 0.9003).abs() < 1e-4, "{:?}", w.values);

    // Epoch 2 uses epochs 1 and 2.
    m.end_epoch(&EpochObservation { epoch: 2, mean_losses: &[0.5, 0.9] }).unwrap();
    let w = step(&mut m);
    let (a, b) = ((1.0f64 / 2.0).exp(), (0.5f64 / 2.0).exp());
    assert!((w.values[0] - 2.0 * a / (a + b)).abs() < 1e-12);
}

#[test]
fn epochs_must_come_in_order() {
    let mut m = DwaLiu::new(2, DwaLiuConfig::default()).unwrap();
    m.end_epoch(&EpochObservation { epoch: 3, mean_losses: &[1.0, 2.0] }).unwrap();
    let e = m.end_epoch(&EpochObservation { epoch: 3, mean_losses: &[1.0, 2.0] }).unwrap_err();
    assert!(e.to_string().contains("epoch 3 ended after epoch 3"), "{e}");
    let e = m.end_epoch(&EpochObservation { epoch: 4, mean_losses: &[1.0] }).unwrap_err();
    assert!(e.to_string().contains("mean_losses"), "{e}");
}

#[test]
fn extreme_ratios_keep_weights_positive() {
    let mut m = DwaLiu::new(2, DwaLiuConfig::default()).unwrap();
    m.end_epoch(&EpochObservation { epoch: 0, mean_losses: &[1e-12, 1e12] }).unwrap();
    m.end_epoch(&EpochObservation { epoch: 1, mean_losses: &[1e12, 1e-12] }).unwrap();
    let w = step(&mut m);
    assert!(w.values.iter().all(|x| x.is_finite() && *x > 0.0), "{:?}", w.values);
    assert!((w.sum() - 2.0).abs() < 1e-12);
}
