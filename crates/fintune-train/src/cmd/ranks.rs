//! `fintune train --nproc N`: spawns N local ranks of a data-parallel job, the way torchrun
//! does (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`),
//! each running this command without `--nproc`, and waits for them.

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The command line of a rank: this one without `--nproc N` (or `--nproc=N`), with
/// `--threads T` added when `threads` is given.
fn rank_args(args: &[OsString], threads: Option<usize>) -> Vec<OsString> {
    let mut out = vec![];
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        match a.to_str() {
            Some("--nproc") => skip = true,
            Some(s) if s.starts_with("--nproc=") => {}
            _ => out.push(a.clone()),
        }
    }
    if let Some(t) = threads {
        out.push("--threads".into());
        out.push(t.to_string().into());
    }
    out
}

/// Runs `n` ranks on this machine and waits; the first rank that fails stops the others.
/// `threads` is the configuration's `optim.threads`: when 0 (one per core), each rank gets
/// an equal share of the cores instead, so that the ranks do not oversubscribe them.
pub(super) fn spawn(n: usize, threads: usize) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the fintune executable")?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let per_rank = (threads == 0).then(|| (cores / n).max(1));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        l.local_addr()?.port()
    };
    eprintln!(
        "data-parallel: starting {n} ranks on 127.0.0.1:{port}{}",
        per_rank.map(|t| format!(", {t} threads each")).unwrap_or_default()
    );
    let mut children: Vec<Child> = vec![];
    for rank in 0..n {
        let child = Command::new(&exe)
            .args(rank_args(&args, per_rank))
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .spawn();
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                stop(&mut children);
                return Err(e).with_context(|| format!("starting rank {rank}"));
            }
        }
    }
    let mut running: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    loop {
        let mut left = 0;
        for (rank, slot) in running.iter_mut().enumerate() {
            let Some(c) = slot else { continue };
            match c.try_wait()? {
                None => left += 1,
                Some(status) if status.success() => *slot = None,
                Some(status) => {
                    *slot = None;
                    let mut rest: Vec<Child> =
                        running.iter_mut().filter_map(Option::take).collect();
                    stop(&mut rest);
                    bail!("rank {rank} of {n} failed ({status}); the other ranks were stopped");
                }
            }
        }
        if left == 0 {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(children: &mut [Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_args_drop_nproc_and_add_threads() {
        let a: Vec<OsString> =
            ["train", "--nproc", "2", "--data", "x.jsonl", "--nproc=3"].map(Into::into).to_vec();
        let out: Vec<String> =
            rank_args(&a, Some(1)).into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(out, ["train", "--data", "x.jsonl", "--threads", "1"]);
        assert_eq!(rank_args(&a, None).len(), 3);
    }
}
