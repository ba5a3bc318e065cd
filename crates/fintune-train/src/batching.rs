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
    /// The task whose example this is: 0 for the main task, `d` for the `d`-th further task
    /// with its own examples (in declaration order).
    pub src: usize,
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
    /// Host copy of the scores.
    pub scores_host: Vec<f32>,
    /// Which task each row belongs to ([`Example::src`]).
    pub src_host: Vec<usize>,
    /// In data-parallel training, the global batch these rows are a slice of (`None`: the
    /// rows are the whole batch).
    pub global: Option<GlobalRows>,
}

/// The global batch of a data-parallel step, which every rank knows: its rows' targets and
/// where this rank's slice sits (see [`crate::dist`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalRows {
    /// Position of this rank's first row in the global batch.
    pub lo: usize,
    /// Rows of each rank, in rank order.
    pub rows_per_rank: Vec<usize>,
    /// Gold scores of every row.
    pub scores: Vec<f32>,
    /// Classes of every row.
    pub classes: Vec<usize>,
    /// Rarity weights of every row.
    pub rarity: Vec<f32>,
    /// Task of every row.
    pub src: Vec<usize>,
    /// This rank's slice is empty (a global batch with fewer rows than ranks): the batch then
    /// holds the global batch's first row as a stand-in, whose losses count zero, so that the
    /// rank still takes part in every collective with the same gradients defined.
    pub empty: bool,
}

impl GlobalRows {
    /// Global rows of task `src`.
    pub fn count(&self, src: usize) -> usize {
        self.src.iter().filter(|&&s| s == src).count()
    }

    /// Global rows of task `src` before this rank's slice.
    pub fn before(&self, src: usize) -> usize {
        self.src[..self.lo].iter().filter(|&&s| s == src).count()
    }
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
            scores_host: scores,
            src_host: items.iter().map(|e| e.src).collect(),
            global: None,
        }
    }

    /// Rows `idx[range]` of the global batch `idx` as a data-parallel rank's batch, knowing the
    /// global batch's targets (`rows_per_rank`: every rank's slice length, in rank order).
    pub fn slice(
        examples: &[Example],
        idx: &[usize],
        range: std::ops::Range<usize>,
        rows_per_rank: Vec<usize>,
        pad_id: i64,
        side: PaddingSide,
        device: Device,
    ) -> Self {
        let all: Vec<&Example> = idx.iter().map(|&i| &examples[i]).collect();
        let global = GlobalRows {
            lo: range.start,
            rows_per_rank,
            scores: all.iter().map(|e| e.score).collect(),
            classes: all.iter().map(|e| e.class).collect(),
            rarity: all.iter().map(|e| e.rarity).collect(),
            src: all.iter().map(|e| e.src).collect(),
            empty: range.is_empty(),
        };
        let rows = if range.is_empty() { &idx[..1] } else { &idx[range] };
        let mut b = Self::new(examples, rows, pad_id, side, device);
        b.global = Some(global);
        b
    }

    /// Rows this rank computes (0 for a stand-in row).
    pub fn own_rows(&self) -> usize {
        match &self.global {
            Some(g) if g.empty => 0,
            _ => self.len(),
        }
    }

    /// Rows in the global batch (this batch's rows when it is not a slice).
    pub fn global_len(&self) -> usize {
        self.global.as_ref().map_or(self.len(), |g| g.src.len())
    }

    /// The rows of task `src`: `None` when every row is the task's (use the whole batch),
    /// otherwise their positions (possibly none).
    pub fn rows_of(&self, src: usize) -> Option<Vec<i64>> {
        if self.src_host.iter().all(|&s| s == src) {
            return None;
        }
        Some((0..self.len()).filter(|&i| self.src_host[i] == src).map(|i| i as i64).collect())
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

/// The examples a further task contributes to the batches of an epoch: `len` examples that
/// start at `offset` in the training examples, `quota` of them in every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuxStream {
    /// Position of the task's first example.
    pub offset: usize,
    /// Number of its examples.
    pub len: usize,
    /// Its rows per batch (at least 1).
    pub quota: usize,
}

/// The training batches of one epoch of a run with further tasks: the main task's examples
/// (the first `main_lengths.len()`) in [`epoch_batches`] of `main_slots`, and to each batch
/// every further task adds its `quota` of examples, drawn without replacement from a seeded
/// permutation of its examples (a fresh permutation when one is used up). An epoch is one
/// pass over the main task. Without streams this is [`epoch_batches`] exactly; deterministic
/// in `(seed, epoch)`.
pub fn mixed_epoch_batches(
    main_lengths: &[usize],
    main_slots: usize,
    streams: &[AuxStream],
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut batches = epoch_batches(main_lengths, main_slots, seed, epoch);
    for (d, st) in streams.iter().enumerate() {
        assert!(st.len > 0 && st.quota > 0, "a further task stream needs examples and slots");
        let mut cycle = 0u64;
        let mut rng = stream_rng(seed, epoch, d as u64, cycle);
        let mut order: Vec<usize> = (0..st.len).collect();
        order.shuffle(&mut rng);
        let mut next = 0;
        for b in &mut batches {
            for _ in 0..st.quota {
                if next == order.len() {
                    cycle += 1;
                    rng = stream_rng(seed, epoch, d as u64, cycle);
                    order.shuffle(&mut rng);
                    next = 0;
                }
                b.push(st.offset + order[next]);
                next += 1;
            }
        }
    }
    batches
}

fn stream_rng(seed: u64, epoch: u64, task: u64, cycle: u64) -> ChaCha8Rng {
    let mix = seed
        ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (task + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ cycle.wrapping_mul(0x1656_67B1_9E37_79F9);
    ChaCha8Rng::seed_from_u64(mix)
}

/// Slots per batch of each task with its own examples (main task first): `p_i` proportional
/// to `weights[i]^(1/tau)` (a weight is the task's `share`, by default its number of training
/// examples; `tau = inf` gives every task the same share), the main task
/// `max(1, round(p_0 B))` slots and the others the rest by largest remainder, at least one
/// each. Fails when `B` has fewer slots than tasks.
pub fn task_slots(weights: &[f64], tau: f64, batch_size: usize) -> Result<Vec<usize>, String> {
    let t = weights.len();
    if t == 0 || batch_size < t {
        return Err(format!(
            "a batch of {batch_size} cannot hold one example of each of {t} tasks with their own \
             data; raise --batch-size"
        ));
    }
    let raw: Vec<f64> =
        weights.iter().map(|&w| if tau.is_infinite() { 1.0 } else { w.powf(1.0 / tau) }).collect();
    let sum: f64 = raw.iter().sum();
    let p: Vec<f64> = raw.iter().map(|r| r / sum).collect();
    let bs = batch_size as f64;
    let main = ((p[0] * bs).round() as usize).clamp(1, batch_size - (t - 1));
    let rest = batch_size - main;
    let aux_sum: f64 = p[1..].iter().sum();
    let mut slots = vec![main];
    if t > 1 {
        let exact: Vec<f64> = p[1..].iter().map(|x| x / aux_sum * rest as f64).collect();
        let mut give: Vec<usize> = exact.iter().map(|e| (e.floor() as usize).max(1)).collect();
        while give.iter().sum::<usize>() > rest {
            let i = (0..give.len()).filter(|&i| give[i] > 1).max_by(|&a, &b| {
                (give[a] as f64 - exact[a]).total_cmp(&(give[b] as f64 - exact[b]))
            });
            give[i.expect("one slot each fits")] -= 1;
        }
        while give.iter().sum::<usize>() < rest {
            let i = (0..give.len())
                .max_by(|&a, &b| {
                    (exact[a] - give[a] as f64)
                        .total_cmp(&(exact[b] - give[b] as f64))
                        .then(b.cmp(&a))
                })
                .expect("at least one further task");
            give[i] += 1;
        }
        slots.extend(give);
    }
    Ok(slots)
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
