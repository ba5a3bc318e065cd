//! The fused CUDA kernels against their libtorch fallbacks, on a GPU: squared gradient norms
//! over every parameter of a backbone, and masked mean pooling forward and backward. Prints
//! one JSON line per measurement. Part of `cargo xtask gpu-check`.
//!
//! `cargo run --release --features cuda -p fintune-model --example bench_kernels -- DIR...`

use std::time::Instant;

use fintune_model::kernels;
use fintune_model::{load_backbone, LoadOptions};
use tch::{Device, Kind, Tensor};

fn time<F: FnMut()>(mut f: F, iters: usize) -> f64 {
    for _ in 0..5 {
        f();
    }
    tch::Cuda::synchronize(0);
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    tch::Cuda::synchronize(0);
    t.elapsed().as_secs_f64() * 1e6 / iters as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !tch::Cuda::is_available() {
        return Err("no CUDA device: this benchmark needs a GPU".into());
    }
    if !kernels::COMPILED {
        return Err("built without the `cuda` feature: nothing to compare".into());
    }
    let dev = Device::Cuda(0);
    for dir in std::env::args().skip(1) {
        let bb = load_backbone(dir.as_ref(), &LoadOptions { device: dev, ..Default::default() })?;
        let grads: Vec<Tensor> =
            bb.base.trainable_variables().iter().map(Tensor::randn_like).collect();
        let n: i64 = grads.iter().map(|g| g.numel() as i64).sum();
        let k = time(|| drop(kernels::squared_norms(&grads).unwrap()), 50);
        let f = time(|| drop(kernels::squared_norms_fallback(&grads).unwrap()), 50);
        println!(
            "{{\"bench\": \"grad_norms\", \"model\": \"{dir}\", \"tensors\": {}, \"elements\": {n}, \"kernel_us\": {k:.1}, \"fallback_us\": {f:.1}, \"speedup\": {:.2}}}",
            grads.len(),
            f / k
        );
        let h = bb.net.info().hidden_size;
        let (b, l) = (32, 128);
        let x = Tensor::randn([b, l, h], (Kind::Float, dev));
        let mask = Tensor::rand([b, l], (Kind::Float, dev)).ge(0.2).to_kind(Kind::Int64);
        let g = Tensor::randn([b, h], (Kind::Float, dev));
        let kf = time(|| drop(kernels::mean_pool(&x, &mask).unwrap()), 200);
        let ff = time(|| drop(fintune_model::backbone::mean_pool(&x, &mask)), 200);
        let kb = time(|| drop(kernels::mean_pool_backward(&g, &mask, l).unwrap()), 200);
        let fb = time(|| drop(kernels::mean_pool_backward_fallback(&g, &mask)), 200);
        println!(
            "{{\"bench\": \"mean_pool\", \"shape\": [{b}, {l}, {h}], \"fwd_kernel_us\": {kf:.1}, \"fwd_fallback_us\": {ff:.1}, \"bwd_kernel_us\": {kb:.1}, \"bwd_fallback_us\": {fb:.1}}}"
        );
    }
    Ok(())
}
