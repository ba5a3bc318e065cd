//! Forward and forward+backward time per batch for a backbone on CPU (or CUDA), the Rust side
//! of `cargo xtask bench-model`. Prints one JSON line.
//!
//! `cargo run --release -p fintune-model --example bench_forward -- DIR [BATCH] [SEQ] [ITERS] [THREADS]`

use std::time::Instant;

use fintune_model::{load_backbone, Batch, LoadOptions, Pooling};
use tch::{Device, Kind, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().ok_or("usage: bench_forward DIR [BATCH] [SEQ] [ITERS] [THREADS]")?;
    let arg = |i: usize, d: i64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (b, l, iters, threads) = (arg(1, 32), arg(2, 64), arg(3, 20) as usize, arg(4, 0));
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    let device = Device::cuda_if_available();
    let bb = load_backbone(dir.as_ref(), &LoadOptions { device, ..Default::default() })?;
    tch::manual_seed(0);
    let vocab = 30000;
    let ids = Tensor::randint_low(1000, vocab, [b, l], (Kind::Int64, device));
    let batch = Batch::from_ids(ids, Tensor::ones([b, l], (Kind::Int64, device)));
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut fwd = Vec::new();
    for i in 0..iters + 3 {
        let t = Instant::now();
        let out = tch::no_grad(|| {
            Pooling::Mean.pool(&bb.net.forward_t(&batch, false), &batch.attention_mask)
        });
        let _ = out.sum(Kind::Float).double_value(&[]);
        sync();
        if i >= 3 {
            fwd.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut fb = Vec::new();
    for i in 0..iters + 3 {
        let t = Instant::now();
        let out = Pooling::Mean.pool(&bb.net.forward_t(&batch, true), &batch.attention_mask);
        let loss = out.square().mean(Kind::Float);
        loss.backward();
        sync();
        for (_, v) in bb.base.variables() {
            let mut v = v;
            v.zero_grad();
        }
        if i >= 3 {
            fb.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!(
        "{{\"impl\": \"fintune (tch)\", \"device\": \"{device:?}\", \"threads\": {}, \"batch\": {b}, \"seq\": {l}, \"forward_ms\": {:.2}, \"forward_backward_ms\": {:.2}, \"peak_rss_mib\": {:.0}}}",
        tch::get_num_threads(),
        median(fwd),
        median(fb),
        peak_rss_mib()
    );
    Ok(())
}
