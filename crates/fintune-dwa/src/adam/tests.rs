use super::{Adam, AdamConfig};

#[test]
fn first_step_moves_by_lr_against_the_gradient_sign() {
    // After one step m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps).
    let c = AdamConfig::with_lr(0.1);
    let mut a = Adam::new(2);
    let mut p = [1.0, -2.0];
    a.step(&c, &mut p, &[3.0, -0.5]);
    assert!((p[0] - (1.0 - 0.1 * 3.0 / (3.0 + 1e-8))).abs() < 1e-15, "{p:?}");
    assert!((p[1] - (-2.0 + 0.1 * 0.5 / (0.5 + 1e-8))).abs() < 1e-15, "{p:?}");
}

#[test]
fn second_step_by_hand() {
    let c = AdamConfig { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.5 };
    let mut a = Adam::new(1);
    let mut p = [2.0];
    a.step(&c, &mut p, &[1.0]);
    a.step(&c, &mut p, &[-1.0]);
    // Hand computation, PyTorch convention (weight decay added to the gradient).
    let mut theta: f64 = 2.0;
    let (mut m, mut v) = (0.0, 0.0);
    for (t, g0) in [(1, 1.0), (2, -1.0)] {
        let g = g0 + 0.5 * theta;
        m = 0.9 * m + 0.1 * g;
        v = 0.999 * v + 0.001 * g * g;
        let mh = m / (1.0 - 0.9f64.powi(t));
        let vh = v / (1.0 - 0.999f64.powi(t));
        theta -= 0.01 * mh / (vh.sqrt() + 1e-8);
    }
    assert_eq!(p[0], theta);
    assert_eq!(a.t, 2);
}

#[test]
fn validation_names_the_field() {
    let mut c = AdamConfig::with_lr(0.1);
    c.beta2 = 1.0;
    let e = c.validate("famo").unwrap_err().to_string();
    assert!(e.contains("famo") && e.contains("beta2"), "{e}");
}

#[test]
fn bias_correction_shortcut_is_exact() {
    for beta in [0.0f64, 0.5, 0.9, 0.99, 0.999] {
        for t in [1u64, 2, 10, 100, 1000, 10_000, 39_000, 41_000, 100_000, 1_000_000] {
            let exact = 1.0 - beta.powi(t as i32);
            assert_eq!(
                super::bias_correction(beta, t).to_bits(),
                exact.to_bits(),
                "beta {beta} t {t}"
            );
        }
    }
}
