//! Tokenized examples and their batches: length-bucketed, seeded shuffling for training,
//! length-sorted batches for evaluation, both with dynamic padding.

use fintune_model::{Batch, Encoded, PaddingSide};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// One tokenized training or evaluation example.
#[derive(Debug, Clone)]
pub struct Example {
    /// Row id from the data.
    pub id: String,
    /// Token ids.
    pub enc: Encoded,
    /// Gold score (NaN for unlabelled input).
    pub score: f32,
    /// Score class (0 when there are no classes).
    pub class: usize,
    /// LDS rarity weight of the score (mean 1 over the training set).
    pub rarity: f32,
}

/// A padded batch with its targets, ready for the model.
#[derive(Debug)]
pub struct TrainBatch {
    /// Token tensors.
    pub inputs: Batch,
    /// Gold scores `[B]` (f32).
    pub scores: Tensor,
    /// Classes `[B]` (i64).
    pub classes: Tensor,
    /// Rarity weights `[B]` (f32).
    pub rarity: Tensor,
    /// Host copies for the weighting's batch characteristics.
    pub rarity_host: Vec<f32>,
    /// Host copy of the classes.
    pub classes_host: Vec<usize>,
}

impl TrainBatch {
    /// Pads `idx` of `examples` into a batch on `device`.
    pub fn new(
        examples: &[Example],
        idx: &[usize],
        pad_id: i64,
        side: PaddingSide,
        device: Device,
    ) -> Self {
        let items: Vec<&Example> = idx.iter().map(|&i| &examples[i]).collect();
        let encs: Vec<&Encoded> = items.iter().map(|e| &e.enc).collect();
        let scores: Vec<f32> = items.iter().map(|e| e.score).collect();
        let classes: Vec<i64> = items.iter().map(|e| e.class as i64).collect();
        let rarity: Vec<f32> = items.iter().map(|e| e.rarity).collect();
        TrainBatch {
            inputs: Batch::pad(&encs, pad_id, side, device),
            scores: Tensor::from_slice(&scores).to_device(device),
            classes: Tensor::from_slice(&classes).to_device(device),
            rarity: Tensor::from_slice(&rarity).to_device(device),
            classes_host: items.iter().map(|e| e.class).collect(),
            rarity_host: rarity,
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.rarity_host.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.rarity_host.is_empty()
    }
}

/// How many batches to pool before sorting by length (larger: less padding, less randomness).
const POOL_BATCHES: usize = 50;

/// The training batches of one epoch: a seeded shuffle, pools of `50 * batch_size` examples
/// sorted by length and cut into batches, then the batches shuffled. Deterministic in
/// `(seed, epoch)`, which is what makes `--resume` exact.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batch size must be positive");
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(batch_size));
    for pool in order.chunks(batch_size * POOL_BATCHES) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Evaluation batches: examples sorted by length (less padding), deterministic.
pub fn eval_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batch size must be positive");
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

#[cfg(test)]
mod tests;
