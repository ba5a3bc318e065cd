//! Data-parallel collectives for tch tensors on PyTorch's own distributed engine, c10d:
//! Gloo on CPU, NCCL on CUDA (behind the `cuda` feature).
//!
//! A [`ProcessGroup`] is formed by `world_size` processes that meet at a [`Store`] (a
//! TCPStore whose server rank 0 hosts, torchrun's agent store, or a FileStore); it then runs
//! allreduce (single tensor, or bucketed/coalesced over a list), broadcast, all-gather and
//! barrier on `tch::Tensor`s in place. [`GradBuckets`] puts a `VarStore`'s trainable variables
//! into one fixed order (sorted by name: the `VarStore`'s own order is a `HashMap` order that
//! differs per process) and allreduces their gradients in buckets. [`Launch::from_env`] reads a
//! rank's place in the job from torchrun's, a Kubernetes PyTorchJob's or Slurm's variables.
//!
//! Every failure comes back as an [`Error`], never an abort: a peer that never joins fails
//! [`ProcessGroup::new`] within its timeout, a peer that leaves fails the collective, and
//! ranks that call different collectives or pass tensors of different shapes get
//! [`Error::Mismatch`] before any data moves (each collective first all-gathers a small
//! descriptor of what every rank passed).
//!
//! ```no_run
//! use fintune_dist::{ProcessGroup, ReduceOp, Store};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), fintune_dist::Error> {
//! // Run in two processes, with rank 0 and rank 1.
//! let rank: usize = std::env::var("RANK").unwrap().parse().unwrap();
//! let store = Store::Tcp { host: "127.0.0.1".into(), port: 29500 };
//! let pg = ProcessGroup::new(&store, rank, 2, Duration::from_secs(30))?;
//! let mut t = tch::Tensor::from_slice(&[rank as f32 + 1.0, 10.0]);
//! pg.allreduce(&mut t, ReduceOp::Sum)?;
//! assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [3.0, 20.0]);
//! pg.barrier()?;
//! # Ok(()) }
//! ```
//!
//! The C++ side is a small shim (`shim/fintune_dist.cpp`) with a C interface, compiled against
//! libtorch's headers; all `unsafe` code sits in the private `ffi` module.
//!
//! Architecture Invariant: this crate knows nothing of models, data or training; it moves
//! tensors between processes.

#![deny(missing_docs)]

mod error;
mod ffi;
mod grad;
mod launch;

pub use error::Error;
pub use grad::GradBuckets;
pub use launch::Launch;

use std::path::PathBuf;
use std::time::Duration;

use tch::Tensor;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The default bucket size for bucketed allreduces: 25 MiB, as PyTorch's DDP.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Where the ranks of a group meet to exchange addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Store {
    /// A c10d TCPStore: rank 0 hosts the server on `host:port`, the others connect to it
    /// (`MASTER_ADDR`/`MASTER_PORT`).
    Tcp {
        /// The server's host name or address.
        host: String,
        /// The server's port.
        port: u16,
    },
    /// A TCPStore that someone else hosts (torchrun's agent store, when
    /// `TORCHELASTIC_USE_AGENT_STORE` is set): every rank, rank 0 included, is a client.
    TcpClient {
        /// The server's host name or address.
        host: String,
        /// The server's port.
        port: u16,
    },
    /// A c10d FileStore on a file every rank can reach (tests, shared file systems). The
    /// file must not hold a previous group's keys.
    File(PathBuf),
}

/// The c10d backend of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// Gloo: CPU tensors, TCP transport.
    Gloo,
    /// NCCL: CUDA tensors; needs the crate's `cuda` feature and one GPU per rank.
    Nccl,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

/// How an allreduce combines the ranks' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReduceOp {
    /// The element-wise sum.
    Sum,
    /// The element-wise mean (the sum divided by the world size; floating-point tensors).
    Avg,
}

/// A group of processes running collectives together. Every rank must call the same
/// collectives in the same order; `ProcessGroup` is `Send` but not `Sync`, so one thread at a
/// time issues them.
#[derive(Debug)]
pub struct ProcessGroup {
    raw: ffi::Group,
    backend: Backend,
    rank: usize,
    world_size: usize,
}

/// Collective codes in the agreement descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    AllreduceSum = 1,
    AllreduceAvg = 2,
    Broadcast = 3,
    AllGather = 4,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::AllreduceSum | Op::AllreduceAvg => "allreduce",
            Op::Broadcast => "broadcast",
            Op::AllGather => "all_gather",
        }
    }

    fn describe(code: i64) -> &'static str {
        match code {
            1 => "allreduce(sum)",
            2 => "allreduce(avg)",
            3 => "broadcast",
            4 => "all_gather",
            _ => "an unknown collective",
        }
    }
}

impl ProcessGroup {
    /// Forms a Gloo group: blocks until all `world_size` ranks have joined at `store`, or
    /// fails once `timeout` has passed (which also bounds every later collective).
    pub fn new(store: &Store, rank: usize, world_size: usize, timeout: Duration) -> Result<Self> {
        Self::with_backend(Backend::Gloo, store, rank, world_size, timeout)
    }

    /// Forms a group on `backend`; see [`ProcessGroup::new`]. Gloo binds to `host` when the
    /// store is a loopback TCPStore, else to `$GLOO_SOCKET_IFNAME` or the address the machine's
    /// host name resolves to (falling back to loopback).
    pub fn with_backend(
        backend: Backend,
        store: &Store,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Self> {
        if world_size == 0 || rank >= world_size {
            return Err(Error::Invalid(format!(
                "rank {rank} is outside a group of {world_size} ranks"
            )));
        }
        let too_large = |what: &str| Error::Invalid(format!("{what} is too large"));
        let rank_c = i32::try_from(rank).map_err(|_| too_large("the rank"))?;
        let world_c = i32::try_from(world_size).map_err(|_| too_large("the world size"))?;
        let timeout_ms =
            i64::try_from(timeout.as_millis()).map_err(|_| too_large("the timeout"))?;
        let path;
        let (args, gloo_host) = match store {
            Store::Tcp { host, port } | Store::TcpClient { host, port } => {
                let kind = if matches!(store, Store::Tcp { .. }) {
                    ffi::STORE_TCP
                } else {
                    ffi::STORE_TCP_CLIENT
                };
                let loopback = host == "localhost" || host == "::1" || host.starts_with("127.");
                (
                    ffi::StoreArgs { kind, target: host, port: *port },
                    loopback.then_some(host.as_str()),
                )
            }
            Store::File(p) => {
                path = p
                    .to_str()
                    .ok_or_else(|| Error::Invalid(format!("{} is not valid UTF-8", p.display())))?;
                (ffi::StoreArgs { kind: ffi::STORE_FILE, target: path, port: 0 }, None)
            }
        };
        let code = match backend {
            Backend::Gloo => ffi::BACKEND_GLOO,
            Backend::Nccl => ffi::BACKEND_NCCL,
        };
        let raw = ffi::new_group(code, &args, rank_c, world_c, timeout_ms, gloo_host).map_err(
            |message| Error::Init { backend: backend.name(), rank, world_size, message },
        )?;
        Ok(ProcessGroup { raw, backend, rank, world_size })
    }

    /// This process's rank, in `0..world_size`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks in the group.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The group's backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Combines `tensor` across ranks, in place.
    pub fn allreduce(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<()> {
        self.allreduce_bucketed(std::slice::from_mut(tensor), op, DEFAULT_BUCKET_BYTES)
    }

    /// Combines every tensor of `tensors` across ranks, in place, in buckets of at most
    /// `bucket_bytes` (a tensor larger than that is a bucket of its own; a change of dtype
    /// starts a new bucket). Each bucket is one coalesced c10d allreduce; all buckets are in
    /// flight together. The tensors must be contiguous and in the same order on every rank.
    pub fn allreduce_bucketed(
        &self,
        tensors: &mut [Tensor],
        op: ReduceOp,
        bucket_bytes: usize,
    ) -> Result<()> {
        let code = match op {
            ReduceOp::Sum => Op::AllreduceSum,
            ReduceOp::Avg => Op::AllreduceAvg,
        };
        self.agree(code, 0, tensors)?;
        if tensors.is_empty() {
            return Ok(());
        }
        let ends = bucket_ends(tensors, bucket_bytes)?;
        ffi::allreduce(&self.raw, tensors, &ends, op == ReduceOp::Avg)
            .map_err(|m| self.failed(code, m))
    }

    /// Overwrites `tensor` on every rank with its value on rank `root`.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        let root_c = self.check_root(root)?;
        self.agree(Op::Broadcast, root, std::slice::from_ref(tensor))?;
        ffi::broadcast(&self.raw, tensor, root_c).map_err(|m| self.failed(Op::Broadcast, m))
    }

    /// Overwrites every tensor of `tensors` with its value on rank `root`, flattened into
    /// buckets of at most `bucket_bytes` (one broadcast per bucket).
    pub fn broadcast_bucketed(
        &self,
        tensors: &mut [Tensor],
        root: usize,
        bucket_bytes: usize,
    ) -> Result<()> {
        self.check_root(root)?;
        let ends = bucket_ends(tensors, bucket_bytes)?;
        let mut start = 0;
        for end in ends {
            let bucket = &mut tensors[start..end];
            let flats: Vec<Tensor> = bucket.iter().map(|t| t.reshape([-1])).collect();
            let mut flat = Tensor::f_cat(&flats, 0)?;
            self.broadcast(&mut flat, root)?;
            let mut offset = 0;
            for t in bucket.iter_mut() {
                let n = t.numel() as i64;
                let part = flat.f_narrow(0, offset, n)?.f_view(t.size().as_slice())?;
                tch::no_grad(|| t.f_copy_(&part))?;
                offset += n;
            }
            start = end;
        }
        Ok(())
    }

    /// Gathers `tensor` from every rank: element `r` of the result is rank `r`'s tensor. The
    /// tensors must have the same shape and type on every rank.
    pub fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>> {
        self.agree(Op::AllGather, 0, std::slice::from_ref(tensor))?;
        self.gather_unchecked(tensor).map_err(|m| self.failed(Op::AllGather, m))
    }

    /// Blocks until every rank has called it (or the group's timeout has passed).
    pub fn barrier(&self) -> Result<()> {
        ffi::barrier(&self.raw).map_err(|message| Error::Collective {
            op: "barrier",
            rank: self.rank,
            message,
        })
    }

    fn gather_unchecked(&self, tensor: &Tensor) -> std::result::Result<Vec<Tensor>, String> {
        let mut outputs: Vec<Tensor> = (0..self.world_size).map(|_| tensor.empty_like()).collect();
        ffi::all_gather(&self.raw, tensor, &mut outputs)?;
        Ok(outputs)
    }

    fn check_root(&self, root: usize) -> Result<i32> {
        if root >= self.world_size {
            return Err(Error::Invalid(format!(
                "root rank {root} is outside a group of {} ranks",
                self.world_size
            )));
        }
        Ok(root as i32)
    }

    fn failed(&self, op: Op, message: String) -> Error {
        Error::Collective { op: op.name(), rank: self.rank, message }
    }

    /// All-gathers a descriptor of this call (collective, root, tensor count, element count,
    /// a hash of every tensor's dtype and shape) and fails identically on every rank when
    /// the ranks differ: mismatched buffers must never reach Gloo, whose transport aborts on
    /// them. Also checks that the tensors are contiguous.
    fn agree(&self, op: Op, root: usize, tensors: &[Tensor]) -> Result<()> {
        if let Some(i) = tensors.iter().position(|t| !t.is_contiguous()) {
            return Err(Error::Invalid(format!(
                "{}: tensor {i} is not contiguous (call .contiguous() first)",
                op.name()
            )));
        }
        let numel: usize = tensors.iter().map(Tensor::numel).sum();
        let mine =
            [op as i64, root as i64, tensors.len() as i64, numel as i64, layout_hash(tensors)];
        // On the tensors' device: NCCL moves CUDA tensors only.
        let device = tensors.first().map_or(tch::Device::Cpu, Tensor::device);
        let descriptor = Tensor::from_slice(&mine).to_device(device);
        let all = self.gather_unchecked(&descriptor).map_err(|m| self.failed(op, m))?;
        let rows: Vec<Vec<i64>> = all.iter().map(Vec::<i64>::try_from).collect::<Result<_, _>>()?;
        if rows.iter().all(|r| r.as_slice() == mine) {
            return Ok(());
        }
        let detail = rows
            .iter()
            .enumerate()
            .map(|(r, d)| {
                let root = if d[0] == Op::Broadcast as i64 {
                    format!(" from rank {}", d[1])
                } else {
                    String::new()
                };
                format!(
                    "rank {r}: {}{root} of {} tensors with {} elements, layout hash {:x}",
                    Op::describe(d[0]),
                    d[2],
                    d[3],
                    d[4]
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::Mismatch { op: op.name(), detail })
    }
}

/// FNV-1a over every tensor's dtype and shape.
fn layout_hash(tensors: &[Tensor]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for t in tensors {
        eat(format!("{:?}", t.kind()).as_bytes());
        eat(&(t.dim() as i64).to_le_bytes());
        for d in t.size() {
            eat(&d.to_le_bytes());
        }
    }
    h as i64
}

/// Bucket boundaries (exclusive ends) over `tensors`: consecutive tensors of one dtype whose
/// sizes add up to at most `bucket_bytes`.
fn bucket_ends(tensors: &[Tensor], bucket_bytes: usize) -> Result<Vec<usize>> {
    if bucket_bytes == 0 {
        return Err(Error::Invalid("the bucket size must be positive".into()));
    }
    let mut ends = vec![];
    let mut bytes = 0usize;
    let mut kind = None;
    for (i, t) in tensors.iter().enumerate() {
        let size = t.numel() * t.kind().elt_size_in_bytes();
        let fits = kind == Some(t.kind()) && bytes + size <= bucket_bytes;
        if i > 0 && !fits {
            ends.push(i);
            bytes = 0;
        }
        bytes += size;
        kind = Some(t.kind());
    }
    if !tensors.is_empty() {
        ends.push(tensors.len());
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn buckets_split_by_size_and_dtype() {
        let f = |n: i64| Tensor::zeros([n], (Kind::Float, tch::Device::Cpu));
        let d = Tensor::zeros([2], (Kind::Double, tch::Device::Cpu));
        let ts = [f(4), f(4), f(10), d, f(1)];
        // 16 bytes per bucket: [4,4] would be 32 bytes, so each f(4) is alone.
        assert_eq!(bucket_ends(&ts, 16).unwrap(), [1, 2, 3, 4, 5]);
        assert_eq!(bucket_ends(&ts, 32).unwrap(), [2, 3, 4, 5]);
        assert_eq!(bucket_ends(&ts, 1 << 20).unwrap(), [3, 4, 5]);
        assert!(bucket_ends(&ts, 0).is_err());
        assert!(bucket_ends(&[], 16).unwrap().is_empty());
    }

    #[test]
    fn layout_hash_sees_shape_and_dtype() {
        let a = Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::zeros([3, 2], (Kind::Float, tch::Device::Cpu));
        let c = Tensor::zeros([2, 3], (Kind::Double, tch::Device::Cpu));
        let h = layout_hash(std::slice::from_ref(&a));
        assert_eq!(h, layout_hash(&[a.zeros_like()]));
        assert_ne!(h, layout_hash(&[b]));
        assert_ne!(h, layout_hash(&[c]));
    }

    #[test]
    fn single_rank_group_runs_every_collective() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::File(dir.path().join("store"));
        let pg = ProcessGroup::new(&store, 0, 1, Duration::from_secs(10)).unwrap();
        let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
        pg.allreduce(&mut t, ReduceOp::Avg).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [1.0, 2.0]);
        pg.broadcast(&mut t, 0).unwrap();
        let all = pg.all_gather(&t).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(Vec::<f32>::try_from(&all[0]).unwrap(), [1.0, 2.0]);
        pg.barrier().unwrap();
        assert!(matches!(pg.broadcast(&mut t, 1), Err(Error::Invalid(_))));
        let mut strided = Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu)).tr();
        assert!(matches!(pg.allreduce(&mut strided, ReduceOp::Sum), Err(Error::Invalid(_))));
        assert!(matches!(
            ProcessGroup::new(&store, 1, 1, Duration::from_secs(1)),
            Err(Error::Invalid(_))
        ));
    }
}
