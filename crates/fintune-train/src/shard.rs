//! Which share of a run list this process takes: `--shard K/N`, or the scheduler's own
//! numbering (issue 19), so that a job array runs `fintune compare` unchanged in every task.
//!
//! [`Shard::from_vars`] reads, in this order:
//! 1. a Slurm job array: `SLURM_ARRAY_TASK_ID` of `SLURM_ARRAY_TASK_COUNT` tasks, counted from
//!    `SLURM_ARRAY_TASK_MIN` in steps of `SLURM_ARRAY_TASK_STEP` (`sbatch --array=0-3`);
//! 2. a Kubernetes Indexed Job: `JOB_COMPLETION_INDEX`, with the number of completions in
//!    `FINTUNE_SHARDS` (Kubernetes does not put `.spec.completions` into the environment; set it
//!    in the pod template);
//! 3. a torchrun / PyTorchJob launch: `RANK` of `WORLD_SIZE`.
//!
//! The first of these that is present decides; a present but inconsistent set (an index past
//! the count, a count of 0, a non-number) is an error naming the variable, never a silent run
//! of the whole list. Without any of them there is no shard: the process runs (or collects)
//! everything.
//!
//! ```
//! use fintune_train::shard::Shard;
//!
//! let vars = |k: &str| match k {
//!     "SLURM_ARRAY_TASK_ID" => Some("3".to_owned()),
//!     "SLURM_ARRAY_TASK_COUNT" => Some("4".to_owned()),
//!     _ => None,
//! };
//! let s = Shard::from_vars(vars).unwrap().unwrap();
//! assert_eq!((s.index, s.count), (3, 4));
//! assert!(s.takes(7) && !s.takes(6));
//! ```

use std::fmt;

use crate::{Error, Result};

/// Where a shard came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSource {
    /// `--shard K/N`.
    Flag,
    /// A Slurm job array.
    Slurm,
    /// A Kubernetes Indexed Job.
    Kubernetes,
    /// torchrun or a PyTorchJob (`RANK`/`WORLD_SIZE`).
    Torchrun,
}

/// Shard `index` of `count`: the runs `i` (0-based) with `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's shard, `0 <= index < count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
    /// Where it came from.
    pub source: ShardSource,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match self.source {
            ShardSource::Flag => "--shard",
            ShardSource::Slurm => "SLURM_ARRAY_TASK_ID",
            ShardSource::Kubernetes => "JOB_COMPLETION_INDEX",
            ShardSource::Torchrun => "RANK/WORLD_SIZE",
        };
        write!(f, "shard {}/{} (from {from})", self.index, self.count)
    }
}

fn bad(what: &str, reason: impl fmt::Display) -> Error {
    Error::Config(format!("{what}: {reason}"))
}

fn number(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<usize>> {
    match var(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| bad(name, format!("`{v}` is not a non-negative integer"))),
    }
}

fn required(var: &impl Fn(&str) -> Option<String>, name: &str, with: &str) -> Result<usize> {
    number(var, name)?.ok_or_else(|| bad(name, format!("is not set, but {with} is")))
}

impl Shard {
    /// `K/N` as `--shard` takes it.
    pub fn parse(s: &str) -> Result<Shard> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| bad("--shard", format!("takes K/N, e.g. 0/2, got `{s}`")))?;
        let parse = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| bad("--shard", format!("takes K/N with integers, got `{s}`")))
        };
        Shard::new(parse(k)?, parse(n)?, ShardSource::Flag)
            .map_err(|_| bad("--shard", format!("K/N needs 0 <= K < N, got `{s}`")))
    }

    fn new(index: usize, count: usize, source: ShardSource) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(bad("shard", format!("{index} of {count}")));
        }
        Ok(Shard { index, count, source })
    }

    /// The scheduler's shard from the process environment (see the module docs).
    pub fn from_env() -> Result<Option<Shard>> {
        Shard::from_vars(|k| std::env::var(k).ok())
    }

    /// The scheduler's shard from `var` (the environment, or a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        if let Some(id) = number(&var, "SLURM_ARRAY_TASK_ID")? {
            let count = required(&var, "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID")?;
            let min = number(&var, "SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number(&var, "SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            if id < min || (id - min) % step != 0 {
                return Err(bad(
                    "SLURM_ARRAY_TASK_ID",
                    format!("{id} is not on the array's grid (min {min}, step {step})"),
                ));
            }
            let index = (id - min) / step;
            return Shard::new(index, count, ShardSource::Slurm).map(Some).map_err(|_| {
                bad("SLURM_ARRAY_TASK_ID", format!("task {id} is index {index} of {count} tasks"))
            });
        }
        if let Some(index) = number(&var, "JOB_COMPLETION_INDEX")? {
            let count = required(&var, "FINTUNE_SHARDS", "JOB_COMPLETION_INDEX")?;
            return Shard::new(index, count, ShardSource::Kubernetes).map(Some).map_err(|_| {
                bad("JOB_COMPLETION_INDEX", format!("{index} with FINTUNE_SHARDS = {count}"))
            });
        }
        if let Some(rank) = number(&var, "RANK")? {
            let count = required(&var, "WORLD_SIZE", "RANK")?;
            return Shard::new(rank, count, ShardSource::Torchrun)
                .map(Some)
                .map_err(|_| bad("RANK", format!("{rank} with WORLD_SIZE = {count}")));
        }
        Ok(None)
    }

    /// Whether run `i` (0-based, in the list's order) belongs to this shard.
    pub fn takes(&self, i: usize) -> bool {
        i % self.count == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn flag_form_is_checked() {
        assert_eq!(Shard::parse("1/3").unwrap().index, 1);
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2"] {
            let e = Shard::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--shard") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn slurm_arrays_count_from_their_minimum_in_steps() {
        let s = Shard::from_vars(vars(&[
            ("SLURM_ARRAY_TASK_ID", "14"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("RANK", "0"),
            ("WORLD_SIZE", "8"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s, Shard { index: 2, count: 4, source: ShardSource::Slurm });
        let e = Shard::from_vars(vars(&[
            ("SLURM_ARRAY_TASK_ID", "15"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID") && e.contains("grid"), "{e}");
        let e = Shard::from_vars(vars(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("index 4 of 4"), "{e}");
        let e = Shard::from_vars(vars(&[("SLURM_ARRAY_TASK_ID", "1")])).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_COUNT") && e.contains("not set"), "{e}");
    }

    #[test]
    fn kubernetes_needs_the_completion_count() {
        let s = Shard::from_vars(vars(&[("JOB_COMPLETION_INDEX", "2"), ("FINTUNE_SHARDS", "3")]))
            .unwrap()
            .unwrap();
        assert_eq!((s.index, s.count, s.source), (2, 3, ShardSource::Kubernetes));
        let e = Shard::from_vars(vars(&[("JOB_COMPLETION_INDEX", "2")])).unwrap_err().to_string();
        assert!(e.contains("FINTUNE_SHARDS"), "{e}");
        let e = Shard::from_vars(vars(&[("JOB_COMPLETION_INDEX", "3"), ("FINTUNE_SHARDS", "3")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("JOB_COMPLETION_INDEX"), "{e}");
    }

    #[test]
    fn torchrun_rank_and_world_size() {
        let s = Shard::from_vars(vars(&[("RANK", "1"), ("WORLD_SIZE", "2")])).unwrap().unwrap();
        assert_eq!((s.index, s.count, s.source), (1, 2, ShardSource::Torchrun));
        assert!(s.takes(1) && s.takes(3) && !s.takes(2));
        let e =
            Shard::from_vars(vars(&[("RANK", "x"), ("WORLD_SIZE", "2")])).unwrap_err().to_string();
        assert!(e.contains("RANK") && e.contains("`x`"), "{e}");
        assert_eq!(Shard::from_vars(vars(&[("WORLD_SIZE", "2")])).unwrap(), None);
        assert_eq!(Shard::from_vars(vars(&[])).unwrap(), None);
    }

    #[test]
    fn shards_partition_the_run_list() {
        for count in 1..6 {
            let mut seen = vec![0; 23];
            for index in 0..count {
                let s = Shard { index, count, source: ShardSource::Flag };
                for (i, n) in seen.iter_mut().enumerate() {
                    *n += usize::from(s.takes(i));
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count}: {seen:?}");
        }
    }
}
