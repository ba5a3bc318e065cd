//! Per-sample rarity weights of the main task's loss (used with [`DwaMain`](crate::DwaMain)).
//!
//! Where they are used: the trainer, for a run weighted by `dwa-main`, computes the main
//! (regression) task's loss of a batch as `L_0 = mean_j(s_j l_j)` instead of `mean_j(l_j)`,
//! with `l_j` the per-sample loss and `s_j` from [`rarity_sample_weights`] of the batch
//! samples' score rarities (fintune-das `rarity`, training mean 1). `L_0` then enters the
//! weighted sum `sum_i w_i L_i` with `w_0 = 1`. Because the `s_j` have mean 1 over the batch, the
//! scale of `L_0` (and so the main task's effective learning rate) is unchanged; only the
//! balance between rare and common scores inside the batch moves.

use serde::{Deserialize, Serialize};

use crate::error::{config_err, obs_err, Error};
use crate::normalise::scale_clamped;

#[cfg(test)]
mod tests;

/// Smallest proportion `(r_j / max r)^gamma` used (a smaller one underflows or cannot be
/// scaled up to the upper clip).
const PROPORTION_FLOOR: f64 = 1e-12;

/// Constants of [`rarity_sample_weights`]; every field has a default (`#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleWeightConfig {
    /// Exponent `gamma` on the rarity: `s_j ~ r_j^gamma`; 0 gives all samples weight 1.
    /// Finite, >= 0. Default 0.5 (a square root tempers the rarest scores).
    pub power: f64,
    /// Lower clip of each weight. In (0, 1]. Default 0.2.
    pub min: f64,
    /// Upper clip of each weight. Finite, >= 1. Default 5.0.
    pub max: f64,
}

impl Default for SampleWeightConfig {
    fn default() -> Self {
        SampleWeightConfig { power: 0.5, min: 0.2, max: 5.0 }
    }
}

pub(crate) fn check_sample_weight_config(
    method: &'static str,
    c: &SampleWeightConfig,
) -> Result<(), Error> {
    if !(c.power.is_finite() && c.power >= 0.0) {
        return Err(config_err(
            method,
            "sample_weights.power",
            format!("= {} must be finite and >= 0", c.power),
        ));
    }
    if !(c.min > 0.0 && c.min <= 1.0) {
        return Err(config_err(
            method,
            "sample_weights.min",
            format!("= {} must be in (0, 1]", c.min),
        ));
    }
    if !(c.max.is_finite() && c.max >= 1.0) {
        return Err(config_err(
            method,
            "sample_weights.max",
            format!("= {} must be finite and >= 1", c.max),
        ));
    }
    Ok(())
}

/// Per-sample weights `s_j` of one batch's main loss from the samples' rarities `r_j`:
///
/// ```text
/// s_j = clamp(lambda r_j^gamma, min, max),   lambda > 0 such that mean_j(s_j) = 1
/// ```
///
/// (`gamma` = [`SampleWeightConfig::power`]). The proportions `r_j^gamma` are kept except
/// where a clip binds (the normalise-clip-renormalise fixed point, solved exactly, so the mean
/// is 1 and the clips hold); proportions `(r_j / max r)^gamma` below 1e-12 count as 1e-12.
/// Rarities must be finite and `> 0` (fintune-das rarities are: their density is floored), the
/// batch non-empty; the config is checked as for `dwa-main`
/// (`0 < min <= 1 <= max`, so mean 1 is always reachable). Where the weights are used: see the
/// [module docs](self).
pub fn rarity_sample_weights(
    rarity: &[f64],
    config: &SampleWeightConfig,
) -> Result<Vec<f64>, Error> {
    let mut out = vec![0.0; rarity.len()];
    rarity_sample_weights_into("sample-weights", rarity, config, &mut out)?;
    Ok(out)
}

/// [`rarity_sample_weights`] into a caller's buffer of the same length.
pub(crate) fn rarity_sample_weights_into(
    method: &'static str,
    rarity: &[f64],
    config: &SampleWeightConfig,
    out: &mut [f64],
) -> Result<(), Error> {
    check_sample_weight_config(method, config)?;
    if rarity.is_empty() {
        return Err(obs_err(method, "rarity is empty (empty batch)".into()));
    }
    if out.len() != rarity.len() {
        return Err(obs_err(
            method,
            format!("output has {} slots for {} samples", out.len(), rarity.len()),
        ));
    }
    for (j, &r) in rarity.iter().enumerate() {
        if !(r.is_finite() && r > 0.0) {
            return Err(obs_err(method, format!("rarity[{j}] = {r} is not finite and > 0")));
        }
    }
    // Proportions (r_j / max r)^gamma, in (0, 1]: no overflow whatever gamma; floored at
    // PROPORTION_FLOOR so that every sample can be scaled up to `max` (mean 1 stays reachable).
    let g = config.power;
    let rmax = rarity.iter().copied().fold(0.0, f64::max);
    let u: Vec<f64> = rarity
        .iter()
        .map(|&r| if g == 0.0 { 1.0 } else { (r / rmax).powf(g).max(PROPORTION_FLOOR) })
        .collect();
    scale_clamped(&u, rarity.len() as f64, config.min, config.max, out);
    Ok(())
}
