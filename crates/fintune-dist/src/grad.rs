//! A model's trainable variables in one fixed order, for gradient allreduces.

use tch::nn::VarStore;
use tch::Tensor;

use crate::{Error, ProcessGroup, ReduceOp, Result};

/// The trainable variables of a model, sorted by name, with the bucket size their gradients
/// are allreduced in. Sorting is what makes the order identical on every rank: a
/// `VarStore`'s variables live in a `HashMap` whose order differs per process.
#[derive(Debug)]
pub struct GradBuckets {
    names: Vec<String>,
    params: Vec<Tensor>,
    bucket_bytes: usize,
}

impl GradBuckets {
    /// The variables of `vs` that require gradients, sorted by name.
    pub fn new(vs: &VarStore, bucket_bytes: usize) -> Self {
        let named = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        Self::from_named(named, bucket_bytes)
    }

    /// Any named tensors (shallow clones of parameters), sorted by name.
    pub fn from_named(mut named: Vec<(String, Tensor)>, bucket_bytes: usize) -> Self {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, params) = named.into_iter().unzip();
        GradBuckets { names, params, bucket_bytes }
    }

    /// The variables' names, in the fixed order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.params.iter().map(Tensor::numel).sum()
    }

    /// Allreduces every defined gradient in place, in the fixed order and in buckets
    /// (`ReduceOp::Avg` for the mean over ranks). Variables without a gradient are skipped;
    /// the ranks must agree on which those are, else every rank gets [`Error::Mismatch`].
    pub fn allreduce_grads(&self, pg: &ProcessGroup, op: ReduceOp) -> Result<()> {
        let mut grads: Vec<Tensor> =
            self.params.iter().map(Tensor::grad).filter(Tensor::defined).collect();
        pg.allreduce_bucketed(&mut grads, op, self.bucket_bytes)
    }

    /// Overwrites every variable with its value on rank `root` (identical initial weights).
    pub fn broadcast_params(&self, pg: &ProcessGroup, root: usize) -> Result<()> {
        let mut params: Vec<Tensor> = self.params.iter().map(Tensor::shallow_clone).collect();
        pg.broadcast_bucketed(&mut params, root, self.bucket_bytes)
    }

    /// Checks that every rank holds the same variable names in the same order; fails with
    /// [`Error::Mismatch`] naming the first difference otherwise.
    pub fn check_names(&self, pg: &ProcessGroup) -> Result<()> {
        let joined = self.names.join("\n");
        let codes: Vec<i64> = joined.bytes().map(i64::from).collect();
        // On the variables' device: NCCL moves CUDA tensors only.
        let device = self.params.first().map_or(tch::Device::Cpu, Tensor::device);
        let mine = Tensor::from_slice(&[codes.len() as i64]).to_device(device);
        let lengths = pg.all_gather(&mine)?;
        let lengths: Vec<i64> = lengths.iter().map(|t| t.int64_value(&[0])).collect();
        if lengths.iter().any(|&n| n != codes.len() as i64) {
            return Err(Error::Mismatch {
                op: "check_names",
                detail: format!("the ranks' name lists have {lengths:?} bytes"),
            });
        }
        let all = pg.all_gather(&Tensor::from_slice(&codes).to_device(device))?;
        for (r, t) in all.iter().enumerate() {
            let theirs: Vec<i64> = Vec::try_from(t)?;
            let bytes: Vec<u8> = theirs.iter().map(|&c| c as u8).collect();
            let text = String::from_utf8_lossy(&bytes);
            if let Some((i, (a, b))) =
                self.names.iter().zip(text.split('\n')).enumerate().find(|(_, (a, b))| a != b)
            {
                return Err(Error::Mismatch {
                    op: "check_names",
                    detail: format!(
                        "variable {i} is `{a}` on rank {} but `{b}` on rank {r}",
                        pg.rank()
                    ),
                });
            }
        }
        Ok(())
    }
}
