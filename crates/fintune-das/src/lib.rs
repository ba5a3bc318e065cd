//! Data-aware stratification (DAS): class thresholds for continuous sentiment scores, chosen
//! optimally from the training scores, plus stratified splits and rarity (LDS) weights.
//!
//! Pure statistics: no I/O, no tch.
//!
//! # The objective
//! Given `n` training scores and `K`, DAS cuts the sorted scores into `K` contiguous classes
//! minimising
//!
//! `J = a * sum_k p_k ln(K p_k) + (1 - a) * (sum_k SSE_k) / SST`
//!
//! (`p_k` the class share, so the first term is `KL(p || uniform)`; `SSE_k` the within-class
//! sum of squares, `SST` the total; `a` = `balance_weight`, default 0.7), subject to: every
//! class has `>= min_count` scores (default `max(8, ceil(0.02 n))`), every inner class is
//! `>= min_width` wide (default 0.05; distance between its thresholds), and optionally 0 is a
//! threshold (`zero_cut`).
//!
//! Candidate thresholds are the midpoints between consecutive distinct scores (ties never
//! straddle a threshold); with more than `max_candidates` (2048) gaps, quantile-spaced gaps are
//! used and the result says `candidates_exact: false`. Both terms are additive over classes, so
//! a dynamic programme with prefix sums finds the exact optimum over the candidates for every
//! `K <= max_classes` at once; each layer is solved by divide and conquer (the class cost
//! satisfies the quadrangle inequality), `O(K B log B)` for `B` candidate blocks, after an
//! `O(n)` radix-sort grouping of the scores. Ties in `J` (within `1e-12`) go to the
//! higher entropy, then to the lexicographically smallest threshold vector. `Classes::Auto`
//! takes the smallest `K` in `3..=max_classes` explaining `>= 0.9` of SST.
//!
//! # Main types
//! - [`DasConfig`], [`Classes`]: the configuration (builder setters document the defaults).
//! - [`Stratification`]: thresholds, per-class table ([`ClassInfo`]), statistics;
//!   [`Stratification::fit`] (DAS) and the baselines [`Stratification::quantile`] and
//!   [`Stratification::uniform_width`]; `assign`, `class_weights` ([`ClassWeighting`]).
//!   Serde-serialisable and `Display`-able.
//! - [`stratified_split`] / [`stratified_split_by`]: deterministic stratified, grouped splits.
//! - [`Rarity`] / [`rarity`]: inverse smoothed label density weights (LDS).
//! - [`soft_targets`] / [`soft_targets_all`]: Gaussian-smoothed (soft ordinal) class targets;
//!   [`class_means`], [`fuse`] and [`pick_mix`]: prediction fusion of the regression and
//!   classification heads.
//! - [`TaskSampler`] / [`task_probabilities`]: seeded temperature sampling of tasks for batches
//!   that mix `T` tasks.
//!
//! # Example
//! ```
//! use fintune_das::{ClassWeighting, DasConfig, Stratification};
//!
//! // 200 scores, rounded to 3 decimals like the real data.
//! let scores: Vec<f32> = (0..200)
//!     .map(|i| ((i as f32 / 199.0 * 2.0 - 1.0).powi(3) * 1000.0).round() / 1000.0)
//!     .collect();
//! let das = Stratification::fit(&scores, &DasConfig::default()).unwrap();
//! assert!(das.num_classes() >= 3);
//! assert!(das.explained_variance >= 0.9);
//! println!("{das}"); // the per-class table
//!
//! let labels = das.assign_all(&scores).unwrap();
//! assert_eq!(labels.len(), 200);
//! let w = das.class_weights(ClassWeighting::InverseSqrt).unwrap();
//! assert!((w.iter().sum::<f32>() / w.len() as f32 - 1.0).abs() < 1e-5);
//!
//! // Saved beside a model and loaded back to label new data.
//! let json = serde_json::to_string(&das).unwrap();
//! let back: Stratification = serde_json::from_str(&json).unwrap();
//! assert_eq!(back.assign(0.5), das.assign(0.5));
//!
//! let parts = fintune_das::stratified_split(&labels, None, &[0.8, 0.2], 42).unwrap();
//! assert_eq!(parts[0].len() + parts[1].len(), 200);
//! ```

#![deny(missing_docs)]

mod config;
mod dp;
mod error;
mod group;
mod rarity;
mod soft_ordinal;
mod split;
mod strat;
mod task_sampling;

pub use config::{Classes, DasConfig};
pub use error::Error;
pub use rarity::{rarity, Rarity};
pub use soft_ordinal::{
    class_means, default_mix_grid, fuse, pick_mix, soft_targets, soft_targets_all, MixChoice,
    DEFAULT_SIGMA,
};
pub use split::{stratified_split, stratified_split_by};
pub use strat::{
    ChiSquare, ClassInfo, ClassWeighting, Constraints, KSummary, Method, Stratification,
};
pub use task_sampling::{task_probabilities, TaskSampler, TaskSamplerState, TaskSampling};
