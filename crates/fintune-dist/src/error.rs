//! The crate's error type.

/// Everything that can go wrong while setting up a process group or running a collective.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument is out of range (a rank outside the group, an empty bucket size, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The process group could not be formed: the store was unreachable, a peer never
    /// joined within the timeout, or the backend failed to connect.
    #[error("cannot form the {backend} process group as rank {rank} of {world_size}: {message}")]
    Init {
        /// `gloo` or `nccl`.
        backend: &'static str,
        /// This process's rank.
        rank: usize,
        /// The number of ranks.
        world_size: usize,
        /// c10d's message.
        message: String,
    },
    /// A collective failed in c10d (a peer left, a timeout, a transport error).
    #[error("{op} failed on rank {rank}: {message}")]
    Collective {
        /// The collective (`allreduce`, `broadcast`, `all_gather`, `barrier`).
        op: &'static str,
        /// This process's rank.
        rank: usize,
        /// c10d's message.
        message: String,
    },
    /// The ranks called different collectives, or the same one on tensors of different
    /// shapes or types; detected before any data moves, identically on every rank.
    #[error("{op}: the ranks disagree ({detail})")]
    Mismatch {
        /// The collective this rank called.
        op: &'static str,
        /// What each rank called it with.
        detail: String,
    },
    /// A tensor operation around a collective (flattening, copying back) failed.
    #[error("tensor operation failed around a collective")]
    Tensor(#[source] tch::TchError),
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Tensor(e)
    }
}
