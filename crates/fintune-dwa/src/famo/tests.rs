use super::*;

fn obs(l: &[f64]) -> StepObservation<'_> {
    StepObservation::new(l)
}

#[test]
fn two_steps_by_hand() {
    let eps = 1e-8;
    let mut f = Famo::new(2, FamoConfig::default()).unwrap();
    // Step 0: xi = 0, z = (1/2, 1/2); losses (0.5, 2): w_i = 2 (z_i / l_i) / sum_j z_j / l_j
    // = 2 * (1, 0.25) / 1.25 = (1.6, 0.4) (up to the 1e-8 guard).
    let w = f.weights(&obs(&[0.5, 2.0])).unwrap();
    assert!((w.values[0] - 1.6).abs() < 1e-7 && (w.values[1] - 0.4).abs() < 1e-7, "{:?}", w.values);
    assert_eq!(w.terms.get("z").unwrap(), &[0.5, 0.5]);
    assert_eq!(w.terms.get("delta").unwrap(), &[0.0, 0.0]);

    // Step 1: only task 0 improved (0.5 -> 0.4). delta = (ln(0.5 / 0.4), 0), z.delta =
    // delta_0 / 2, d = z (delta - z.delta) = (delta_0 / 4, -delta_0 / 4). First Adam step
    // (weight decay times xi = 0 adds nothing): xi -= lr d / (|d| + eps_adam).
    let w = f.weights(&obs(&[0.4, 2.0])).unwrap();
    let delta0 = ((0.5f64 + eps) / (0.4 + eps)).ln();
    let d0 = delta0 / 4.0;
    let s = 0.025 * d0 / (d0 + 1e-8);
    let xi = f.logits();
    assert!((xi[0] + s).abs() < 1e-15 && (xi[1] - s).abs() < 1e-15, "{xi:?} vs {s}");
    assert_eq!(w.terms.get("logit").unwrap(), xi);
    assert!((w.terms.get("delta").unwrap()[0] - delta0).abs() < 1e-15);
    // z = softmax(-s, s): the task that improved more loses weight.
    let z0 = (-s).exp() / ((-s).exp() + s.exp());
    let z = w.terms.get("z").unwrap();
    assert!((z[0] - z0).abs() < 1e-15 && z[0] < 0.5);
    let c = z0 / (0.4 + eps) + (1.0 - z0) / (2.0 + eps);
    let expected = [2.0 * z0 / (0.4 + eps) / c, 2.0 * (1.0 - z0) / (2.0 + eps) / c];
    assert!((w.values[0] - expected[0]).abs() < 1e-12 && (w.values[1] - expected[1]).abs() < 1e-12);
}

#[test]
fn same_batch_mode_needs_after_step() {
    let cfg = FamoConfig { update: FamoUpdate::SameBatch, ..FamoConfig::default() };
    let mut f = Famo::new(2, cfg).unwrap();
    assert!(f.needs_post_step_losses());
    f.weights(&obs(&[0.5, 2.0])).unwrap();
    let e = f.weights(&obs(&[0.5, 2.0])).unwrap_err();
    assert!(e.to_string().contains("after_step"), "{e}");
    // Task 1 improved more on the same batch, so its logit falls.
    f.after_step(&[0.5, 1.0]).unwrap();
    assert!(f.logits()[1] < 0.0 && f.logits()[0] > 0.0, "{:?}", f.logits());
    let e = f.after_step(&[0.5, 1.0]).unwrap_err();
    assert!(e.to_string().contains("without a preceding"), "{e}");
}

#[test]
fn paper_scale_sums_to_one() {
    let cfg = FamoConfig { sum_to_one: true, ..FamoConfig::default() };
    let mut f = Famo::new(3, cfg).unwrap();
    let w = f.weights(&obs(&[0.5, 2.0, 1.0])).unwrap();
    assert!((w.sum() - 1.0).abs() < 1e-15);
}

#[test]
fn loss_below_min_loss_is_an_error() {
    let cfg = FamoConfig { min_losses: Some(vec![0.1, 0.0]), ..FamoConfig::default() };
    let mut f = Famo::new(2, cfg).unwrap();
    let e = f.weights(&obs(&[0.05, 1.0])).unwrap_err();
    assert!(e.to_string().contains("min_losses[0]"), "{e}");
}
