//! Rarity weights from a smoothed label density (label distribution smoothing, LDS).
//!
//! [`Rarity::fit`] estimates the density of the training scores on the score domain `[-1, 1]`
//! with a Gaussian kernel of standard deviation `bandwidth` (default 0.1) and stores it on a
//! regular grid; [`Rarity::weight`] is then `scale / density(score)` by linear interpolation,
//! `O(1)` per score, with `scale` chosen so the weights average 1 over the training scores.
//!
//! **Boundaries.** Scores pile up near ±1 and a plain kernel estimate loses the kernel mass
//! that falls outside the domain, halving the density at the edges and so doubling the weight of
//! the extremes for no reason. We use the *reflection* method: each score `y` also contributes
//! kernels centred at its mirror images `-2 - y` and `2 - y`, which puts the lost mass back
//! inside `[-1, 1]` (exact for one reflection per side; for bandwidths above ~0.5 the second
//! reflections, which are ignored, start to matter, and the estimate tends to flat).
//!
//! **Grid.** Scores are linearly binned onto a grid of step `min(0.002, bandwidth / 10)` and the
//! binned counts are convolved with the (reflected) kernel truncated at 6 bandwidths. The grid
//! error of linear binning and interpolation is of order `(step / bandwidth)^2 / 8 <= 1.25e-3`
//! relative, far below the sampling noise of any realistic training set.
//!
//! **Cap.** Queries far from every training score (possible only for new data) would get a
//! huge weight; the density used for a weight is floored at the smallest density of any
//! training score, so no weight exceeds the largest training weight. Queries outside `[-1, 1]`
//! are clamped onto it.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Smallest bandwidth accepted (the grid would otherwise exceed 200k points).
const MIN_BANDWIDTH: f64 = 1e-4;

/// A fitted rarity model: inverse smoothed label density, normalised to mean 1 over the
/// training scores. Serde-serialisable (about 1000 grid values at the default bandwidth);
/// deserialisation validates the grid.
///
/// ```
/// use fintune_das::Rarity;
/// let train = [-0.9f32, -0.1, 0.0, 0.05, 0.1, 0.1, 0.2, 0.3];
/// let r = Rarity::fit(&train, Rarity::DEFAULT_BANDWIDTH).unwrap();
/// // The lone extreme score is rarer than the crowd around 0.1.
/// assert!(r.weight(-0.9) > r.weight(0.1));
/// let mean: f32 = r.weights(&train).iter().sum::<f32>() / train.len() as f32;
/// assert!((mean - 1.0).abs() < 1e-5);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRarity")]
pub struct Rarity {
    bandwidth: f64,
    n: usize,
    /// Density on the grid `-1 + i * 2 / (len - 1)`.
    density: Vec<f32>,
    /// Smallest density used for a weight.
    floor: f32,
    /// Multiplier making the training weights average 1.
    scale: f64,
}

#[derive(Deserialize)]
struct RawRarity {
    bandwidth: f64,
    n: usize,
    density: Vec<f32>,
    floor: f32,
    scale: f64,
}

impl TryFrom<RawRarity> for Rarity {
    type Error = Error;

    fn try_from(r: RawRarity) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidSaved { what: "rarity", reason };
        if !(r.bandwidth.is_finite() && r.bandwidth >= MIN_BANDWIDTH) {
            return Err(bad(format!("bandwidth {} is not >= {MIN_BANDWIDTH}", r.bandwidth)));
        }
        if r.density.len() < 2 {
            return Err(bad(format!("density grid has {} points (need >= 2)", r.density.len())));
        }
        if let Some(i) = r.density.iter().position(|d| !(d.is_finite() && *d >= 0.0)) {
            return Err(bad(format!("density[{i}] = {} is not finite and >= 0", r.density[i])));
        }
        if !(r.floor.is_finite() && r.floor > 0.0) {
            return Err(bad(format!("floor {} is not finite and > 0", r.floor)));
        }
        if !(r.scale.is_finite() && r.scale > 0.0) {
            return Err(bad(format!("scale {} is not finite and > 0", r.scale)));
        }
        Ok(Rarity {
            bandwidth: r.bandwidth,
            n: r.n,
            density: r.density,
            floor: r.floor,
            scale: r.scale,
        })
    }
}

impl Rarity {
    /// Default kernel standard deviation, in score units.
    pub const DEFAULT_BANDWIDTH: f64 = 0.1;

    /// Fits the smoothed density of `train_scores` (all in `[-1, 1]`) with a Gaussian kernel of
    /// standard deviation `bandwidth` (use [`Rarity::DEFAULT_BANDWIDTH`]).
    ///
    /// # Errors
    /// Empty input, a non-finite score or one outside `[-1, 1]` (with its index), or a
    /// bandwidth that is not finite and `>= 1e-4`.
    pub fn fit(train_scores: &[f32], bandwidth: f64) -> Result<Rarity, Error> {
        if !(bandwidth.is_finite() && bandwidth >= MIN_BANDWIDTH) {
            return Err(Error::InvalidParameter {
                name: "bandwidth",
                value: bandwidth.to_string(),
                reason: "must be finite and >= 1e-4",
            });
        }
        crate::group::check_finite(train_scores)?;
        if let Some(index) = train_scores.iter().position(|s| !(-1.0..=1.0).contains(s)) {
            return Err(Error::OutOfRange { index, value: train_scores[index] });
        }
        let n = train_scores.len();
        let last = (2.0 / (0.002f64).min(bandwidth / 10.0)).ceil() as usize; // grid intervals
        let step = 2.0 / last as f64;
        let len = last + 1;

        // Linear binning.
        let mut bins = vec![0.0f64; len];
        for &s in train_scores {
            let u = (f64::from(s) + 1.0) / step;
            let i = (u.floor() as usize).min(last - 1);
            let frac = u - i as f64;
            bins[i] += 1.0 - frac;
            bins[i + 1] += frac;
        }

        // Convolution with the reflected, truncated kernel.
        let radius = ((6.0 * bandwidth / step).ceil() as usize).min(2 * last);
        let kernel: Vec<f64> = (0..=radius)
            .map(|d| {
                let z = d as f64 * step / bandwidth;
                (-0.5 * z * z).exp()
            })
            .collect();
        let mut dens = vec![0.0f64; len];
        let last_i = last as isize;
        for (j, &w) in bins.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let j = j as isize;
            // The bin itself and its mirror images about -1 (index -j) and +1 (index 2L - j).
            for c in [j, -j, 2 * last_i - j] {
                let lo = (c - radius as isize).max(0);
                let hi = (c + radius as isize).min(last_i);
                for g in lo..=hi {
                    dens[g as usize] += w * kernel[(g - c).unsigned_abs()];
                }
            }
        }
        let norm = 1.0 / (n as f64 * bandwidth * (2.0 * std::f64::consts::PI).sqrt());
        let density: Vec<f32> = dens.iter().map(|&d| (d * norm) as f32).collect();

        let mut model = Rarity { bandwidth, n, density, floor: f32::MIN_POSITIVE, scale: 1.0 };
        let floor = train_scores
            .iter()
            .map(|&s| model.interp(s))
            .fold(f32::INFINITY, f32::min)
            .max(f32::MIN_POSITIVE);
        model.floor = floor;
        let inv_sum: f64 =
            train_scores.iter().map(|&s| 1.0 / f64::from(model.interp(s).max(floor))).sum();
        model.scale = n as f64 / inv_sum;
        Ok(model)
    }

    /// Interpolated density at a (finite) score, clamped into `[-1, 1]`.
    #[inline]
    fn interp(&self, score: f32) -> f32 {
        let last = self.density.len() - 1;
        let u = (score.clamp(-1.0, 1.0) + 1.0) * (last as f32 / 2.0);
        let i = (u as usize).min(last - 1);
        let frac = u - i as f32;
        self.density[i] + (self.density[i + 1] - self.density[i]) * frac
    }

    /// The rarity weight of a score: `scale / max(density(score), floor)`. Scores outside
    /// `[-1, 1]` are clamped onto it; NaN gives NaN.
    #[inline]
    pub fn weight(&self, score: f32) -> f32 {
        if score.is_nan() {
            return f32::NAN;
        }
        (self.scale / f64::from(self.interp(score).max(self.floor))) as f32
    }

    /// [`Rarity::weight`] of every score.
    pub fn weights(&self, scores: &[f32]) -> Vec<f32> {
        scores.iter().map(|&s| self.weight(s)).collect()
    }

    /// The smoothed density (a probability density on `[-1, 1]`) at a score (clamped onto the
    /// domain; NaN gives NaN).
    pub fn density(&self, score: f32) -> f64 {
        if score.is_nan() {
            return f64::NAN;
        }
        f64::from(self.interp(score))
    }

    /// The kernel standard deviation.
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth
    }

    /// Number of training scores the model was fitted on.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of grid points.
    pub fn grid_len(&self) -> usize {
        self.density.len()
    }
}

/// LDS rarity weights of `scores` under their own smoothed density, normalised to mean 1 over
/// `scores`. Equivalent to `Rarity::fit(scores, bandwidth)?.weights(scores)` renormalised.
///
/// ```
/// let w = fintune_das::rarity(&[0.1, 0.1, 0.12, 0.9], 0.1).unwrap();
/// assert!(w[3] > w[0]);
/// assert!((w.iter().sum::<f32>() / 4.0 - 1.0).abs() < 1e-5);
/// ```
///
/// # Errors
/// As [`Rarity::fit`].
pub fn rarity(scores: &[f32], bandwidth: f64) -> Result<Vec<f32>, Error> {
    let model = Rarity::fit(scores, bandwidth)?;
    let w = model.weights(scores);
    let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / w.len() as f64;
    Ok(w.iter().map(|&x| (f64::from(x) / mean) as f32).collect())
}

#[cfg(test)]
mod tests;
