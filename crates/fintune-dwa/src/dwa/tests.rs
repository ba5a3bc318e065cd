use super::*;
use crate::observation::BatchCharacteristics;

fn config() -> DwaConfig {
    DwaConfig { warmup_steps: 1, loss_ema: 0.5, momentum: 0.5, ..DwaConfig::default() }
}

fn kinds() -> [TaskKind; 2] {
    [TaskKind::Regression, TaskKind::Classification]
}

#[test]
fn one_step_by_hand() {
    let mut dwa = Dwa::new(&kinds(), config()).unwrap();
    let freq = [0.25, 0.75];

    // Step 0 is the warm-up: weights stay (1, 1).
    // Regression batch statistic: mean rarity (1 + 3) / 2 = 2.
    // Classification: one sample per class, 1 / (2 * 0.25) = 2 and 1 / (2 * 0.75) = 2/3,
    // mean 4/3.
    let b0 = BatchCharacteristics {
        rarity: &[1.0, 3.0],
        class_histogram: &[1, 1],
        class_frequencies: &freq,
    };
    let obs = StepObservation::new(&[0.4, 1.0]).with_grad_norms(&[1.0, 3.0]).with_batch(b0);
    let w = dwa.weights(&obs).unwrap();
    assert_eq!(w.values, vec![1.0, 1.0]);
    assert_eq!(w.terms.get("target").unwrap(), &[1.0, 1.0]);
    assert_eq!(w.terms.get("r").unwrap(), &[1.0, 1.0]);
    // g = mean(G) / G = (2 / 1, 2 / 3); c = 1 on the first step (b over its own mean).
    assert_eq!(w.terms.get("g").unwrap(), &[2.0, 2.0 / 3.0]);
    assert_eq!(w.terms.get("c").unwrap(), &[1.0, 1.0]);

    // Step 1. L0 = step-0 losses (0.4, 1.0); EMA: Lbar = 0.5 * old + 0.5 * new.
    let b1 = BatchCharacteristics {
        rarity: &[1.0, 1.0],
        class_histogram: &[0, 2],
        class_frequencies: &freq,
    };
    let obs = StepObservation::new(&[0.2, 0.9]).with_grad_norms(&[1.0, 4.0]).with_batch(b1);
    let w = dwa.weights(&obs).unwrap();
    let lbar = [0.5 * 0.4 + 0.5 * 0.2, 0.5 * 1.0 + 0.5 * 0.9]; // (0.3, 0.95)
    let ratio = [lbar[0] / 0.4, lbar[1] / 1.0]; // (0.75, 0.95)
    let mean_ratio = (ratio[0] + ratio[1]) / 2.0;
    let r = [ratio[0] / mean_ratio, ratio[1] / mean_ratio];
    let g = [2.5 / 1.0, 2.5 / 4.0];
    // b = (1, 2/3); running means (2 + 1) / 2 = 1.5 and (4/3 + 2/3) / 2 = 1.
    let c: [f64; 2] = [1.0 / 1.5, (2.0 / 3.0) / 1.0];
    let u = [g[0] * r[0] * c[0].sqrt(), g[1] * r[1] * c[1].sqrt()];
    let target = [2.0 * u[0] / (u[0] + u[1]), 2.0 * u[1] / (u[0] + u[1])]; // inside [0.1, 1.9]
    let expected = [0.5 * 1.0 + 0.5 * target[0], 0.5 * 1.0 + 0.5 * target[1]];
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
    assert!(close(w.terms.get("r").unwrap(), &r), "{:?} vs {r:?}", w.terms.get("r"));
    assert!(close(w.terms.get("g").unwrap(), &g));
    assert!(close(w.terms.get("c").unwrap(), &c), "{:?} vs {c:?}", w.terms.get("c"));
    assert!(close(w.terms.get("u").unwrap(), &u));
    assert!(close(w.terms.get("target").unwrap(), &target));
    assert!(close(&w.values, &expected), "{:?} vs {expected:?}", w.values);
    // Numerically: target ~ (1.5190, 0.4810), weights ~ (1.2595, 0.7405).
    assert!((w.values[0] - 1.2595).abs() < 1e-4, "{:?}", w.values);
}

#[test]
fn clamp_binds_on_a_huge_imbalance() {
    let cfg = DwaConfig { warmup_steps: 1, momentum: 0.0, beta: 0.0, ..DwaConfig::default() };
    let mut dwa = Dwa::new(&kinds(), cfg).unwrap();
    for _ in 0..2 {
        let obs = StepObservation::new(&[1.0, 1.0]).with_grad_norms(&[1e-6, 1.0]);
        let w = dwa.weights(&obs).unwrap();
        if w.terms.get("r").unwrap() != [1.0, 1.0] || w.values != [1.0, 1.0] {
            // After warm-up, momentum 0: weight = clamped target = (1.9, 0.1).
            assert!(
                (w.values[0] - 1.9).abs() < 1e-12 && (w.values[1] - 0.1).abs() < 1e-12,
                "{:?}",
                w.values
            );
        }
    }
    assert_eq!(dwa.state.steps, 2);
    assert!((dwa.state.weights[0] - 1.9).abs() < 1e-12);
}

#[test]
fn zero_gradient_norm_gives_finite_weights() {
    let cfg = DwaConfig { warmup_steps: 1, momentum: 0.0, beta: 0.0, ..DwaConfig::default() };
    let mut dwa = Dwa::new(&kinds(), cfg).unwrap();
    for _ in 0..3 {
        let obs = StepObservation::new(&[0.0, 1.0]).with_grad_norms(&[0.0, 2.0]);
        let w = dwa.weights(&obs).unwrap();
        assert!(w.values.iter().all(|x| x.is_finite() && *x > 0.0), "{:?}", w.values);
    }
    // All-zero norms: no information, gradient balance stays neutral.
    let obs = StepObservation::new(&[1.0, 1.0]).with_grad_norms(&[0.0, 0.0]);
    let w = dwa.weights(&obs).unwrap();
    assert_eq!(w.terms.get("g").unwrap(), &[1.0, 1.0]);
}

#[test]
fn initial_weights_are_normalised_and_used_during_warm_up() {
    let cfg = DwaConfig { initial_weights: Some(vec![3.0, 1.0]), ..DwaConfig::default() };
    let mut dwa = Dwa::new(&kinds(), cfg).unwrap();
    let obs = StepObservation::new(&[1.0, 1.0]).with_grad_norms(&[1.0, 1.0]);
    let obs = obs.with_batch(BatchCharacteristics {
        rarity: &[1.0],
        class_histogram: &[1],
        class_frequencies: &[1.0],
    });
    assert_eq!(dwa.weights(&obs).unwrap().values, vec![1.5, 0.5]);
}

#[test]
fn weights_into_reuses_the_buffer() {
    let mut dwa = Dwa::new(&kinds(), DwaConfig { beta: 0.0, ..DwaConfig::default() }).unwrap();
    let mut out = Weights::new();
    let obs = StepObservation::new(&[1.0, 1.0]).with_grad_norms(&[1.0, 2.0]);
    dwa.weights_into(&obs, &mut out).unwrap();
    let p = out.values.as_ptr();
    for _ in 0..20 {
        dwa.weights_into(&obs, &mut out).unwrap();
    }
    assert_eq!(out.values.as_ptr(), p);
    assert_eq!(out.terms.names(), TERMS);
}
