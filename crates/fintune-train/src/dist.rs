//! Data-parallel training over PyTorch's c10d ([`fintune_dist`]): the ranks of a job, the
//! slice of every global batch each rank computes, and the few reductions the step needs.
//!
//! The contract is that `N` ranks give the result of one process with the same global batch:
//! - every rank builds the same global batches (they are a function of seed and epoch) and
//!   computes the contiguous slice [`DataParallel::slice`] of each;
//! - every loss is written as the rank's *share* of the global loss (its rows' sum over the
//!   global denominator: the task's rows in the global batch, or their class weights), so the
//!   shares sum to the global loss and their gradients to the global gradient;
//! - the gradients are summed across ranks (bucketed, in name order) after backward and before
//!   clipping; the per-task losses and gradient norms the weighting reads are summed too (the
//!   norms as squares: each rank's rows of the pooled representation are disjoint), and the
//!   per-task gradient vectors are gathered, so every weighting method sees the inputs of the
//!   one-process step on every rank;
//! - the batch characteristics (rarity, class histogram) come from the global batch, which every
//!   rank knows without communication.
//!
//! Rank 0 alone writes the run folder; [`DataParallel::agree`] makes every rank fail when one
//! did, instead of leaving the others waiting in a collective.

use std::ops::Range;
use std::time::Duration;

use fintune_dist::{GradBuckets, Launch, ProcessGroup, ReduceOp, DEFAULT_BUCKET_BYTES};
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// This process's place in a data-parallel job and its process group.
#[derive(Debug)]
pub struct DataParallel {
    pg: ProcessGroup,
    /// Where the group's tensors live (CUDA for NCCL, which moves CUDA tensors only).
    device: Device,
}

impl DataParallel {
    /// Joins the job `launch` describes (Gloo on CPU; NCCL when `device` is a GPU), waiting
    /// at most `timeout` for the other ranks (which also bounds every later collective).
    pub fn join(launch: &Launch, device: Device, timeout: Duration) -> Result<Self> {
        let backend = match device {
            Device::Cpu => fintune_dist::Backend::Gloo,
            _ => fintune_dist::Backend::Nccl,
        };
        let pg = ProcessGroup::with_backend(
            backend,
            &launch.store,
            launch.rank,
            launch.world_size,
            timeout,
        )?;
        Ok(DataParallel { pg, device })
    }

    /// Wraps a formed group whose collectives move tensors on `device`.
    pub fn from_group(pg: ProcessGroup, device: Device) -> Self {
        DataParallel { pg, device }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.pg.rank()
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.pg.world_size()
    }

    /// Whether this rank writes the run folder.
    pub fn is_leader(&self) -> bool {
        self.rank() == 0
    }

    /// The rows of a global batch of `n` rows that `rank` computes: the contiguous slice
    /// `[n r / W, n (r + 1) / W)` (empty when `n < W` for some ranks).
    pub fn slice_of(n: usize, rank: usize, world: usize) -> Range<usize> {
        (n * rank / world)..(n * (rank + 1) / world)
    }

    /// This rank's slice of a global batch of `n` rows.
    pub fn slice(&self, n: usize) -> Range<usize> {
        Self::slice_of(n, self.rank(), self.world_size())
    }

    /// Sums `values` over the ranks (in float64), in place.
    pub fn sum(&self, values: &mut [f64]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let mut t = Tensor::from_slice(values).to_device(self.device);
        self.pg.allreduce(&mut t, ReduceOp::Sum)?;
        let out: Vec<f64> = Vec::try_from(&t.to_device(Device::Cpu))?;
        values.copy_from_slice(&out);
        Ok(())
    }

    /// Sums every tensor of `tensors` over the ranks, in place (bucketed).
    pub fn sum_tensors(&self, tensors: &mut [Tensor]) -> Result<()> {
        Ok(self.pg.allreduce_bucketed(tensors, ReduceOp::Sum, DEFAULT_BUCKET_BYTES)?)
    }

    /// Sums the gradients of `grads`' variables over the ranks.
    pub fn sum_grads(&self, grads: &GradBuckets) -> Result<()> {
        Ok(grads.allreduce_grads(&self.pg, ReduceOp::Sum)?)
    }

    /// Makes every rank hold rank 0's values of `grads`' variables.
    pub fn broadcast_params(&self, grads: &GradBuckets) -> Result<()> {
        grads.check_names(&self.pg)?;
        Ok(grads.broadcast_params(&self.pg, 0)?)
    }

    /// The concatenation, in rank order, of every rank's `rows[r] * width` values (`mine` is
    /// this rank's `rows[rank] * width`): one padded all-gather.
    pub fn gather_rows(&self, mine: &[f32], rows: &[usize], width: usize) -> Result<Vec<f32>> {
        let most = rows.iter().copied().max().unwrap_or(0) * width;
        let mut padded = mine.to_vec();
        padded.resize(most.max(1), 0.0);
        let all = self.pg.all_gather(&Tensor::from_slice(&padded).to_device(self.device))?;
        let mut out = Vec::with_capacity(rows.iter().sum::<usize>() * width);
        for (t, &n) in all.iter().zip(rows) {
            let v: Vec<f32> = Vec::try_from(&t.to_device(Device::Cpu))?;
            out.extend_from_slice(&v[..n * width]);
        }
        Ok(out)
    }

    /// Fails on every rank when `outcome` failed on any: the failing rank returns its own
    /// error, the others an error that points at it. `what` names the phase.
    pub fn agree<T>(&self, outcome: Result<T>, what: &str) -> Result<T> {
        let mut flags = vec![0.0; self.world_size()];
        if outcome.is_err() {
            flags[self.rank()] = 1.0;
        }
        self.sum(&mut flags)?;
        match outcome {
            Err(e) => Err(e),
            Ok(v) => match flags.iter().position(|&f| f > 0.0) {
                None => Ok(v),
                Some(r) => Err(Error::Config(format!(
                    "rank {r} of the data-parallel job failed while {what} (its message is in \
                     its log); rank {} stops too",
                    self.rank()
                ))),
            },
        }
    }

    /// Checks that every rank holds bit-identical values of `params` (an exact integer
    /// checksum of their bits, all-gathered); fails naming the ranks that differ.
    pub fn check_identical(&self, params: &[Tensor]) -> Result<()> {
        let sum = bit_checksum(params)?;
        let all = self.pg.all_gather(&Tensor::from_slice(&sum).to_device(self.device))?;
        let sums: Vec<Vec<i64>> = all
            .iter()
            .map(|t| Vec::<i64>::try_from(&t.to_device(Device::Cpu)))
            .collect::<Result<_, _>>()?;
        if let Some(r) = sums.iter().position(|s| s != &sums[0]) {
            return Err(Error::Config(format!(
                "the ranks' parameters differ (rank {r} against rank 0): data-parallel training \
                 diverged"
            )));
        }
        Ok(())
    }
}

/// An exact, order-independent checksum of the bits of float32/bfloat16/float64 tensors:
/// the sum of the bit patterns (as integers) and the sum of the bit patterns times a
/// position-dependent factor. Equal checksums on every rank mean bit-identical tensors, up to
/// an adversarial collision.
pub fn bit_checksum(params: &[Tensor]) -> Result<[i64; 2]> {
    let mut out = [0i64; 2];
    tch::no_grad(|| -> Result<()> {
        for (k, p) in params.iter().enumerate() {
            let flat = p.detach().to_device(Device::Cpu).contiguous().reshape([-1]);
            let bits = match flat.kind() {
                Kind::Float => flat.f_view_dtype(Kind::Int)?,
                Kind::Double => flat.f_view_dtype(Kind::Int64)?,
                Kind::BFloat16 | Kind::Half => flat.f_view_dtype(Kind::Int16)?,
                _ => flat.shallow_clone(),
            }
            .to_kind(Kind::Int64);
            let n = bits.size()[0];
            let pos =
                (Tensor::arange(n, (Kind::Int64, Device::Cpu)) + k as i64).remainder(1021) + 1;
            out[0] = out[0].wrapping_add(bits.sum(Kind::Int64).int64_value(&[]));
            out[1] = out[1].wrapping_add((bits * pos).sum(Kind::Int64).int64_value(&[]));
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_batch_in_order() {
        for n in 0..20 {
            for w in 1..5 {
                let parts: Vec<Range<usize>> =
                    (0..w).map(|r| DataParallel::slice_of(n, r, w)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[w - 1].end, n);
                for p in parts.windows(2) {
                    assert_eq!(p[0].end, p[1].start);
                }
                let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{n} rows over {w} ranks: {sizes:?}");
            }
        }
    }

    #[test]
    fn checksum_sees_one_bit() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let b = Tensor::from_slice(&[1.0f32, 2.0, f32::from_bits(3.0f32.to_bits() ^ 1)]);
        let swapped = Tensor::from_slice(&[2.0f32, 1.0, 3.0]);
        let ca = bit_checksum(&[a.shallow_clone()]).unwrap();
        assert_eq!(ca, bit_checksum(&[a.copy()]).unwrap());
        assert_ne!(ca, bit_checksum(&[b]).unwrap());
        assert_ne!(ca, bit_checksum(&[swapped]).unwrap());
    }

    #[test]
    fn one_rank_group_reduces_and_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let store = fintune_dist::Store::File(dir.path().join("store"));
        let pg = ProcessGroup::new(&store, 0, 1, Duration::from_secs(10)).unwrap();
        let dp = DataParallel::from_group(pg, Device::Cpu);
        let mut v = [1.5, -2.0];
        dp.sum(&mut v).unwrap();
        assert_eq!(v, [1.5, -2.0]);
        assert_eq!(dp.gather_rows(&[1.0, 2.0, 3.0, 4.0], &[2], 2).unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(dp.agree(Ok(3), "testing").unwrap(), 3);
        assert!(dp.agree::<()>(Err(Error::Config("x".into())), "testing").is_err());
        dp.check_identical(&[Tensor::from_slice(&[1.0f32])]).unwrap();
        assert_eq!(dp.slice(5), 0..5);
    }
}
