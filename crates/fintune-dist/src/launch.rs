//! A rank's place in a job, from the launcher's environment variables.

use crate::{Error, Result, Store};

/// Where this process sits in a data-parallel job, as a launcher describes it: torchrun (and
/// a Kubernetes PyTorchJob) set `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and
/// `MASTER_PORT`; Slurm's `srun` sets `SLURM_PROCID`, `SLURM_NTASKS` and `SLURM_LOCALID`
/// (with `MASTER_ADDR`/`MASTER_PORT` exported by the batch script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank, in `0..world_size`.
    pub rank: usize,
    /// The number of ranks.
    pub world_size: usize,
    /// The rank on this machine (which GPU to take).
    pub local_rank: usize,
    /// Where the ranks meet: rank 0's TCPStore, or torchrun's agent store (every rank a
    /// client) when `TORCHELASTIC_USE_AGENT_STORE` is `True`.
    pub store: Store,
}

impl Launch {
    /// Reads the process environment; `Ok(None)` when no launcher set a world size.
    pub fn from_env() -> Result<Option<Launch>> {
        Self::from_vars(|key| std::env::var(key).ok())
    }

    /// As [`Launch::from_env`], reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        let first = |keys: [&'static str; 2]| keys.into_iter().find_map(|k| var(k).map(|v| (k, v)));
        let number = |found: Option<(&'static str, String)>| -> Result<Option<usize>> {
            found
                .map(|(k, v)| {
                    v.trim()
                        .parse()
                        .map_err(|_| Error::Invalid(format!("{k}={v:?} is not a rank count")))
                })
                .transpose()
        };
        let Some(world_size) = number(first(["WORLD_SIZE", "SLURM_NTASKS"]))? else {
            return Ok(None);
        };
        let rank = number(first(["RANK", "SLURM_PROCID"]))?
            .ok_or_else(|| Error::Invalid("WORLD_SIZE is set but RANK is not".into()))?;
        let local_rank = number(first(["LOCAL_RANK", "SLURM_LOCALID"]))?.unwrap_or(0);
        if rank >= world_size {
            return Err(Error::Invalid(format!("RANK={rank} is outside WORLD_SIZE={world_size}")));
        }
        let host = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_string());
        let port = match var("MASTER_PORT") {
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| Error::Invalid(format!("MASTER_PORT={p:?} is not a port")))?,
            None => 29500,
        };
        let agent =
            var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let store = if agent { Store::TcpClient { host, port } } else { Store::Tcp { host, port } };
        Ok(Some(Launch { rank, world_size, local_rank, store }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(pairs: &[(&str, &str)]) -> Result<Option<Launch>> {
        let env: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|k| env.get(k).cloned())
    }

    #[test]
    fn torchrun_slurm_and_errors() {
        assert_eq!(launch(&[]).unwrap(), None);
        let l = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "1234"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((l.rank, l.world_size, l.local_rank), (3, 4, 1));
        assert_eq!(l.store, Store::TcpClient { host: "node0".into(), port: 1234 });
        let s = launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_LOCALID", "0")])
            .unwrap()
            .unwrap();
        assert_eq!(s.store, Store::Tcp { host: "127.0.0.1".into(), port: 29500 });
        let e = launch(&[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(e.contains("RANK=\"x\""), "{e}");
        assert!(launch(&[("RANK", "2"), ("WORLD_SIZE", "2")]).is_err());
        assert!(launch(&[("WORLD_SIZE", "2")]).is_err());
        let e = launch(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "99999")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MASTER_PORT"), "{e}");
    }
}
