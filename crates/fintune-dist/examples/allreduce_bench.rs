//! Measures the bucketed gradient allreduce of a MiniLM-sized model (all-MiniLM-L6-v2's
//! 22.7M float32 parameters, in its tensor shapes) between 2 local Gloo ranks with 1 thread
//! each.
//!
//! `cargo run --release -p fintune-dist --example allreduce_bench [-- ITERATIONS]` starts the
//! two ranks itself (it runs its own binary twice with `FD_BENCH_RANK`).

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use fintune_dist::{GradBuckets, ProcessGroup, ReduceOp, Store, DEFAULT_BUCKET_BYTES};
use tch::{Kind, Tensor};

/// all-MiniLM-L6-v2's parameter shapes (BERT, hidden 384, 6 layers, intermediate 1536).
fn minilm_shapes() -> Vec<(String, Vec<i64>)> {
    let (h, ff) = (384, 1536);
    let mut s = vec![
        ("embeddings.word_embeddings.weight".to_string(), vec![30522, h]),
        ("embeddings.position_embeddings.weight".to_string(), vec![512, h]),
        ("embeddings.token_type_embeddings.weight".to_string(), vec![2, h]),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for l in 0..6 {
        let p = format!("encoder.layer.{l}");
        for (name, shape) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.query.bias", vec![h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.key.bias", vec![h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.self.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("attention.output.LayerNorm.weight", vec![h]),
            ("attention.output.LayerNorm.bias", vec![h]),
            ("intermediate.dense.weight", vec![ff, h]),
            ("intermediate.dense.bias", vec![ff]),
            ("output.dense.weight", vec![h, ff]),
            ("output.dense.bias", vec![h]),
            ("output.LayerNorm.weight", vec![h]),
            ("output.LayerNorm.bias", vec![h]),
        ] {
            s.push((format!("{p}.{name}"), shape));
        }
    }
    s.push(("pooler.dense.weight".to_string(), vec![h, h]));
    s.push(("pooler.dense.bias".to_string(), vec![h]));
    s
}

fn rank_main(rank: usize, port: u16, iterations: usize) -> Result<()> {
    tch::set_num_threads(1);
    let store = Store::Tcp { host: "127.0.0.1".into(), port };
    let pg = ProcessGroup::new(&store, rank, 2, Duration::from_secs(60))?;
    let named: Vec<(String, Tensor)> = minilm_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let p = Tensor::zeros(shape.as_slice(), (Kind::Float, tch::Device::Cpu))
                .set_requires_grad(true);
            (p.sum(Kind::Float) * (rank as f64 + 1.0)).backward();
            (name, p)
        })
        .collect();
    for bucket_bytes in [DEFAULT_BUCKET_BYTES, 4 << 20, usize::MAX] {
        let buckets = GradBuckets::from_named(
            named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
            bucket_bytes,
        );
        buckets.allreduce_grads(&pg, ReduceOp::Avg)?; // warm-up (connections, buffers)
        pg.barrier()?;
        let start = Instant::now();
        for _ in 0..iterations {
            buckets.allreduce_grads(&pg, ReduceOp::Avg)?;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / iterations as f64;
        // Every gradient was (r + 1) on rank r; averaging (1 + 2) / 2 = 1.5 is a fixed point
        // after the first round only if both ranks agree, which they do from then on.
        let g = named[0].1.grad().double_value(&[0, 0]);
        ensure!(g == 1.5, "gradient after allreduce: {g}");
        if rank == 0 {
            let mb = buckets.numel() as f64 * 4.0 / 1e6;
            let label = if bucket_bytes == usize::MAX {
                "one bucket".to_string()
            } else {
                format!("{} MiB buckets", bucket_bytes >> 20)
            };
            println!(
                "{} parameters ({mb:.1} MB float32), {label}: {ms:.1} ms per allreduce \
                 ({:.2} GB/s of gradient), {iterations} iterations",
                buckets.numel(),
                mb / ms
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let iterations: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
    if let Ok(rank) = std::env::var("FD_BENCH_RANK") {
        let port = std::env::var("FD_BENCH_PORT")?.parse()?;
        return rank_main(rank.parse()?, port, iterations);
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let exe = std::env::current_exe()?;
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(&exe)
                .arg(iterations.to_string())
                .env("FD_BENCH_RANK", rank.to_string())
                .env("FD_BENCH_PORT", port.to_string())
                .spawn()
                .context("spawning a rank")
        })
        .collect::<Result<_>>()?;
    for (rank, mut child) in children.into_iter().enumerate() {
        ensure!(child.wait()?.success(), "rank {rank} failed");
    }
    Ok(())
}
