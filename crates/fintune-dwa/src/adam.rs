//! Adam (Kingma and Ba 2015) for the few parameters some methods learn in-crate, with
//! PyTorch's conventions (`torch.optim.Adam`): bias-corrected moments, `eps` added to the
//! corrected root second moment, and `weight_decay` as L2 added to the gradient.

use serde::{Deserialize, Serialize};

use crate::error::{config_err, Error};
use crate::persist::exact;

#[cfg(test)]
mod tests;

/// Adam hyper-parameters (each method exposes them as flat fields of its own config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AdamConfig {
    /// Step size.
    pub(crate) lr: f64,
    /// First-moment decay.
    pub(crate) beta1: f64,
    /// Second-moment decay.
    pub(crate) beta2: f64,
    /// Denominator guard.
    pub(crate) eps: f64,
    /// L2 coefficient added to the gradient (`g + weight_decay * theta`).
    pub(crate) weight_decay: f64,
}

impl AdamConfig {
    /// `lr` with the default betas (0.9, 0.999), eps 1e-8 and no weight decay.
    #[cfg(test)]
    pub(crate) fn with_lr(lr: f64) -> Self {
        AdamConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }

    pub(crate) fn validate(&self, method: &'static str) -> Result<(), Error> {
        let checks: [(&'static str, f64, bool, &str); 5] = [
            ("lr", self.lr, self.lr.is_finite() && self.lr > 0.0, "finite and > 0"),
            ("adam_beta1", self.beta1, (0.0..1.0).contains(&self.beta1), "in [0, 1)"),
            ("adam_beta2", self.beta2, (0.0..1.0).contains(&self.beta2), "in [0, 1)"),
            ("adam_eps", self.eps, self.eps.is_finite() && self.eps > 0.0, "finite and > 0"),
            (
                "weight_decay",
                self.weight_decay,
                self.weight_decay.is_finite() && self.weight_decay >= 0.0,
                "finite and >= 0",
            ),
        ];
        for (field, v, ok, range) in checks {
            if !ok {
                return Err(config_err(method, field, format!("= {v} must be {range}")));
            }
        }
        Ok(())
    }
}

/// Adam moments; part of the saved state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Adam {
    #[serde(with = "exact::vec")]
    pub(crate) m: Vec<f64>,
    #[serde(with = "exact::vec")]
    pub(crate) v: Vec<f64>,
    pub(crate) t: u64,
}

impl Adam {
    pub(crate) fn new(n: usize) -> Self {
        Adam { m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// One descent step on `params` along `grads`.
    pub(crate) fn step(&mut self, c: &AdamConfig, params: &mut [f64], grads: &[f64]) {
        self.t += 1;
        let bc1 = bias_correction(c.beta1, self.t);
        let bc2 = bias_correction(c.beta2, self.t);
        for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            let g = g + c.weight_decay * *p;
            *m = c.beta1 * *m + (1.0 - c.beta1) * g;
            *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
            let denom = (*v / bc2).sqrt() + c.eps;
            *p -= c.lr * (*m / bc1) / denom;
        }
    }
}

/// `1 - beta^t`, bit-identical to the formula, without the slow subnormal arithmetic that
/// `beta.powi(t)` runs into after a few thousand steps: once `beta^t < 4e-18` (below half an
/// ulp of 1), `1 - beta^t` rounds to exactly 1.
fn bias_correction(beta: f64, t: u64) -> f64 {
    if t as f64 * beta.ln() < -40.0 {
        1.0
    } else {
        1.0 - beta.powi(i32::try_from(t).unwrap_or(i32::MAX))
    }
}
