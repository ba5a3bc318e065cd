//! Two ranks on loopback, as two processes: each test spawns this test binary twice, running
//! the ignored `rank_child` test with the scenario in environment variables, and bounds the
//! children's run time.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use fintune_dist::{Error, GradBuckets, ProcessGroup, ReduceOp, Store};
use tch::{nn, Kind, Tensor};

const TIMEOUT: Duration = Duration::from_secs(20);
/// A child that has not finished by then has hung: killed, and the test fails.
const CHILD_DEADLINE: Duration = Duration::from_secs(90);

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(scenario: &str, rank: usize, store: &str) -> Result<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    if store.starts_with("file:") {
        // Gloo binds to the named interface (createDeviceForInterface); the TCP tests bind to
        // the store's loopback address (createDeviceForHostname), the single-rank unit test
        // to the default device.
        cmd.env("GLOO_SOCKET_IFNAME", "lo");
    }
    cmd.args(["rank_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("FD_SCENARIO", scenario)
        .env("FD_RANK", rank.to_string())
        .env("FD_STORE", store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning a rank")
}

fn wait_bounded(mut child: Child) -> Result<Output> {
    let start = Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > CHILD_DEADLINE {
            child.kill()?;
            let out = child.wait_with_output()?;
            bail!("rank hung for {CHILD_DEADLINE:?}: {}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}

/// Runs `scenario` on two ranks meeting at `store`; fails with both ranks' output unless both
/// pass.
fn run_two(scenario: &str, store: &str) -> Result<()> {
    let children = [spawn(scenario, 0, store)?, spawn(scenario, 1, store)?];
    let mut failures = vec![];
    for (rank, child) in children.into_iter().enumerate() {
        let out = wait_bounded(child)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(text.contains("running 1 test"), "rank {rank} did not run the child test:\n{text}");
        if !out.status.success() {
            failures.push(format!("rank {rank}:\n{text}"));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn two_ranks_tcp_store_collectives() -> Result<()> {
    run_two("collectives", &format!("tcp:{}", free_port()?))
}

#[test]
fn two_ranks_file_store_collectives() -> Result<()> {
    let dir = tempfile::tempdir()?;
    run_two("collectives", &format!("file:{}", dir.path().join("store").display()))
}

#[test]
fn two_ranks_mismatched_sizes_fail_on_both() -> Result<()> {
    run_two("mismatch", &format!("tcp:{}", free_port()?))
}

#[test]
fn two_ranks_gradients_in_sorted_buckets() -> Result<()> {
    run_two("grads", &format!("tcp:{}", free_port()?))
}

/// Forms a 2-rank group as `rank` alone with a 3 s timeout; returns the error, checking that
/// it came no earlier than the timeout and no later than `slack` after it.
fn lone_rank(rank: usize, slack: Duration) -> Result<Error> {
    let timeout = Duration::from_secs(3);
    let store = Store::Tcp { host: "127.0.0.1".into(), port: free_port()? };
    let start = Instant::now();
    let err = ProcessGroup::new(&store, rank, 2, timeout).expect_err("the other rank never comes");
    let elapsed = start.elapsed();
    eprintln!("rank {rank} alone, after {elapsed:?}: {err}");
    ensure!(elapsed < timeout + slack, "took {elapsed:?}");
    ensure!(elapsed >= timeout - Duration::from_millis(500), "gave up early: {elapsed:?}");
    ensure!(err.to_string().contains(&format!("gloo process group as rank {rank} of 2")), "{err}");
    Ok(err)
}

#[test]
fn missing_peer_fails_within_timeout() -> Result<()> {
    let err = lone_rank(0, Duration::from_secs(5))?;
    ensure!(matches!(err, Error::Init { rank: 0, world_size: 2, .. }), "{err:?}");
    ensure!(err.to_string().contains("1/2 clients joined"), "{err}");
    Ok(())
}

#[test]
fn missing_server_fails_within_timeout() -> Result<()> {
    // c10d's client retries its connection with a back-off that can overrun the timeout by
    // a few seconds (7.2 s for 3 s measured under load).
    let err = lone_rank(1, Duration::from_secs(10))?;
    ensure!(matches!(err, Error::Init { rank: 1, world_size: 2, .. }), "{err:?}");
    ensure!(err.to_string().contains("timed out"), "{err}");
    Ok(())
}

// ---- the child side ----

fn store_from_env(spec: &str) -> Result<Store> {
    if let Some(port) = spec.strip_prefix("tcp:") {
        let (host, port) = ("127.0.0.1".to_string(), port.parse()?);
        // Rank 1 takes the client-only store kind (torchrun's agent store) to exercise it.
        return Ok(if std::env::var("FD_RANK")? == "1" {
            Store::TcpClient { host, port }
        } else {
            Store::Tcp { host, port }
        });
    }
    if let Some(path) = spec.strip_prefix("file:") {
        return Ok(Store::File(path.into()));
    }
    bail!("bad FD_STORE {spec}")
}

/// The values of a float32 tensor of any shape.
fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(&t.reshape([-1]))?)
}

fn collectives(pg: &ProcessGroup) -> Result<()> {
    let r = pg.rank() as f32;
    // Sum and mean of one tensor.
    let mut t = Tensor::from_slice(&[r, 1.0, 10.0 * r]);
    pg.allreduce(&mut t, ReduceOp::Sum)?;
    ensure!(values(&t)? == [1.0, 2.0, 10.0], "sum {:?}", values(&t)?);
    let mut t = Tensor::from_slice(&[r, 3.0]);
    pg.allreduce(&mut t, ReduceOp::Avg)?;
    ensure!(values(&t)? == [0.5, 3.0], "avg {:?}", values(&t)?);
    // Bucketed: 5 tensors of different shapes, 64-byte buckets (several per call, one
    // tensor larger than a bucket), plus a float64 tensor that starts its own bucket.
    let mut ts: Vec<Tensor> = (0..5i64)
        .map(|i| {
            Tensor::full(
                [i + 1, 7],
                f64::from(r + 1.0) * (i + 1) as f64,
                (Kind::Float, tch::Device::Cpu),
            )
        })
        .collect();
    ts.push(Tensor::from_slice(&[f64::from(r) + 0.25]));
    pg.allreduce_bucketed(&mut ts, ReduceOp::Sum, 64)?;
    for (i, t) in ts.iter().take(5).enumerate() {
        let want = 3.0 * (i + 1) as f32;
        ensure!(values(t)?.iter().all(|&v| v == want), "bucket tensor {i}: {:?}", values(t)?);
    }
    ensure!(Vec::<f64>::try_from(&ts[5])? == [1.5], "f64 {:?}", ts[5]);
    // Broadcast from rank 1, alone and bucketed.
    let mut b = Tensor::from_slice(&[r * 7.0, r]);
    pg.broadcast(&mut b, 1)?;
    ensure!(values(&b)? == [7.0, 1.0], "broadcast {:?}", values(&b)?);
    let mut bs = vec![Tensor::from_slice(&[r; 3]), Tensor::from_slice(&[r + 5.0; 2]).view([2, 1])];
    pg.broadcast_bucketed(&mut bs, 0, 8)?;
    ensure!(values(&bs[0])? == [0.0; 3] && values(&bs[1])? == [5.0; 2], "{bs:?}");
    ensure!(bs[1].size() == [2, 1], "shape kept");
    // All-gather.
    let g = pg.all_gather(&Tensor::from_slice(&[r, r + 100.0]))?;
    ensure!(g.len() == 2, "all_gather gave {} tensors", g.len());
    ensure!(values(&g[0])? == [0.0, 100.0] && values(&g[1])? == [1.0, 101.0], "{g:?}");
    pg.barrier()?;
    Ok(())
}

fn mismatch(pg: &ProcessGroup) -> Result<()> {
    let n = 10 + 2 * pg.rank() as i64;
    let mut t = Tensor::ones([n], (Kind::Float, tch::Device::Cpu));
    let err = pg.allreduce(&mut t, ReduceOp::Sum).expect_err("sizes differ");
    let msg = err.to_string();
    ensure!(matches!(err, Error::Mismatch { op: "allreduce", .. }), "{err:?}");
    ensure!(msg.contains("rank 0: allreduce(sum) of 1 tensors with 10 elements"), "{msg}");
    ensure!(msg.contains("rank 1: allreduce(sum) of 1 tensors with 12 elements"), "{msg}");
    // Different collectives: rank 0 broadcasts, rank 1 all-gathers.
    let mut u = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
    let err = if pg.rank() == 0 { pg.broadcast(&mut u, 0).err() } else { pg.all_gather(&u).err() };
    let msg = err.context("different collectives must fail")?.to_string();
    ensure!(msg.contains("broadcast from rank 0") && msg.contains("all_gather"), "{msg}");
    // The group still works afterwards: nothing reached Gloo.
    let mut t = Tensor::ones([3], (Kind::Float, tch::Device::Cpu));
    pg.allreduce(&mut t, ReduceOp::Sum)?;
    ensure!(values(&t)? == [2.0; 3], "after mismatch {:?}", values(&t)?);
    Ok(())
}

fn grads(pg: &ProcessGroup) -> Result<()> {
    let r = pg.rank() as f64;
    // Variables created in a rank-dependent order: the HashMap order differs, the sorted
    // order does not.
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let mut names: Vec<String> = (0..12).map(|i| format!("layer{i:02}.weight")).collect();
    if pg.rank() == 1 {
        names.reverse();
    }
    for name in &names {
        let i: f64 = name[5..7].parse()?;
        let v = (&root / &name[..7]).var("weight", &[3, 4], nn::Init::Const(0.0));
        // Gradient of sum(v * c) is c: rank r gives (r + 1) * (i + 1).
        (v * ((r + 1.0) * (i + 1.0))).sum(Kind::Float).backward();
    }
    let _ = root.var("frozen", &[2], nn::Init::Const(0.0)).set_requires_grad(false);
    let buckets = GradBuckets::new(&vs, 100);
    ensure!(buckets.names().len() == 12, "frozen excluded: {:?}", buckets.names());
    ensure!(buckets.names()[0] == "layer00.weight", "{:?}", buckets.names());
    ensure!(buckets.numel() == 144, "numel {}", buckets.numel());
    buckets.check_names(pg)?;
    buckets.allreduce_grads(pg, ReduceOp::Avg)?;
    let vars = vs.variables();
    for name in &names {
        let i: f32 = name[5..7].parse()?;
        let g = values(&vars[name].grad())?;
        ensure!(g.iter().all(|&x| x == 1.5 * (i + 1.0)), "{name}: {g:?}");
    }
    // Broadcast the parameters from rank 1.
    tch::no_grad(|| {
        for t in vars.values() {
            let _ = t.shallow_clone().fill_(r + 1.0);
        }
    });
    buckets.broadcast_params(pg, 1)?;
    for (name, t) in &vs.variables() {
        if name != "frozen" {
            let v = values(t)?;
            ensure!(v.iter().all(|&x| x == 2.0), "{name}: {v:?}");
        }
    }
    Ok(())
}

/// One rank of a two-rank scenario; run by the tests above in a child process.
#[test]
#[ignore = "needs the two-rank tests, which spawn it as a child process with its scenario"]
fn rank_child() -> Result<()> {
    tch::set_num_threads(1);
    let scenario = std::env::var("FD_SCENARIO").context("FD_SCENARIO (run by the parent)")?;
    let rank: usize = std::env::var("FD_RANK")?.parse()?;
    let store = store_from_env(&std::env::var("FD_STORE")?)?;
    let pg = ProcessGroup::new(&store, rank, 2, TIMEOUT)?;
    ensure!(pg.rank() == rank && pg.world_size() == 2, "group identity");
    match scenario.as_str() {
        "collectives" => collectives(&pg),
        "mismatch" => mismatch(&pg),
        "grads" => grads(&pg),
        other => bail!("unknown scenario {other}"),
    }
}
