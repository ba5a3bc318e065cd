use tch::{Device, Kind, Tensor};

use super::*;

fn shapes() -> Vec<Vec<i64>> {
    vec![
        vec![0],
        vec![1],
        vec![7],
        vec![3, 5],
        vec![384, 384],
        vec![1536, 384],
        vec![65536 + 3],
        vec![2, 0, 4],
        vec![300_000],
    ]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * b.abs().max(1.0)
}

#[test]
fn fallback_norms_match_a_direct_computation() {
    tch::manual_seed(1);
    let ts: Vec<Tensor> =
        shapes().iter().map(|s| Tensor::randn(s.as_slice(), (Kind::Float, Device::Cpu))).collect();
    let n = squared_norms(&ts).unwrap();
    assert_eq!(n.size(), [ts.len() as i64]);
    for (i, t) in ts.iter().enumerate() {
        let want: f64 = Vec::<f32>::try_from(t.reshape([-1]))
            .unwrap()
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum();
        assert!(close(n.double_value(&[i as i64]), want), "tensor {i}");
    }
    assert_eq!(squared_norms(&[]).unwrap().size(), [0]);
    let total = total_squared_norm(&ts).unwrap();
    assert!(close(total, n.sum(Kind::Double).double_value(&[])));
}

/// Half-precision gradients are squared in float32, where the square is exact: 1 + 2^-7 squared
/// needs 15 bits, more than bfloat16's 8, so squaring in bfloat16 would round it.
#[test]
fn half_precision_norms_are_squared_exactly() {
    let want = (1.0f64 + 1.0 / 128.0).powi(2);
    for kind in [Kind::BFloat16, Kind::Half] {
        let t = Tensor::from_slice(&[1.0f32 + 1.0 / 128.0, 0.0]).to_kind(kind);
        assert_eq!(squared_norms(&[t]).unwrap().double_value(&[0]), want, "{kind:?}");
    }
}

#[test]
fn fallback_pooling_gradient_matches_autograd() {
    tch::manual_seed(2);
    let x = Tensor::randn([3, 5, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mask = Tensor::from_slice(&[1i64, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]).view([3, 5]);
    let pooled = mean_pool(&x, &mask).unwrap();
    let g = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    (&pooled * &g).sum(Kind::Float).backward();
    let ours = mean_pool_backward(&g, &mask, 5).unwrap();
    assert!((x.grad() - ours).abs().max().double_value(&[]) < 1e-6);
    // An all-padding row pools to zero, not NaN.
    assert_eq!(pooled.get(2).abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert!(mean_pool(&x, &mask.narrow(1, 0, 4)).is_err());
}

/// On a GPU (with the `cuda` feature): kernel == fallback to 1e-5 on random inputs of many
/// shapes, empty and non-contiguous ones included. Run by `cargo xtask gpu-check`.
#[test]
#[ignore = "needs a CUDA device"]
fn gpu_cuda_kernels_match_the_fallbacks() {
    assert!(
        tch::Cuda::is_available(),
        "no CUDA device (tch::Cuda::is_available() is false): run this on a GPU machine"
    );
    if !COMPILED {
        panic!("built without the `cuda` feature: run it with --features cuda");
    }
    let dev = Device::Cuda(0);
    tch::manual_seed(3);
    let mut ts: Vec<Tensor> =
        shapes().iter().map(|s| Tensor::randn(s.as_slice(), (Kind::Float, dev))).collect();
    ts.push(Tensor::randn([64, 96], (Kind::Float, dev)).transpose(0, 1)); // non-contiguous
    ts.push(Tensor::randn([50, 40], (Kind::Float, dev)).narrow(1, 3, 20)); // non-contiguous view
    ts.extend((0..60).map(|i| Tensor::randn([i * 37 + 1], (Kind::Float, dev)))); // more tensors than one launch holds
                                                                                 // bfloat16 (the gradients of bf16 training), mixed with float32 in one call.
    ts.extend(shapes().iter().map(|s| Tensor::randn(s.as_slice(), (Kind::BFloat16, dev))));
    ts.push(Tensor::randn([40, 30], (Kind::BFloat16, dev)).transpose(0, 1));
    let k = squared_norms(&ts).unwrap().to_device(Device::Cpu);
    let f = squared_norms_fallback(&ts).unwrap().to_device(Device::Cpu);
    for i in 0..ts.len() as i64 {
        assert!(
            close(k.double_value(&[i]), f.double_value(&[i])),
            "tensor {i}: {} vs {}",
            k.double_value(&[i]),
            f.double_value(&[i])
        );
    }
    for (b, l, h) in
        [(1, 1, 1), (4, 17, 384), (32, 64, 384), (3, 128, 576), (2, 5, 1000), (0, 4, 8)]
    {
        let x = Tensor::randn([b, l, h], (Kind::Float, dev));
        let mask = (Tensor::rand([b, l], (Kind::Float, dev)).ge(0.3)).to_kind(Kind::Int64);
        let want = crate::backbone::mean_pool(&x, &mask);
        let got = mean_pool(&x, &mask).unwrap();
        // `max` of an empty tensor is an error: the empty batch is checked by its shape.
        assert_eq!(got.size(), want.size(), "pool {b}x{l}x{h}");
        assert!(b == 0 || (got - &want).abs().max().double_value(&[]) < 1e-5, "pool {b}x{l}x{h}");
        let g = Tensor::randn([b, h], (Kind::Float, dev));
        let gk = mean_pool_backward(&g, &mask, l).unwrap();
        let gf = mean_pool_backward_fallback(&g, &mask);
        assert!(
            b == 0 || (gk - gf).abs().max().double_value(&[]) < 1e-5,
            "pool backward {b}x{l}x{h}"
        );
    }
    // Non-contiguous hidden states.
    let x = Tensor::randn([16, 8, 24], (Kind::Float, dev)).transpose(0, 1);
    let mask = Tensor::ones([8, 16], (Kind::Int64, dev));
    let d = (mean_pool(&x, &mask).unwrap() - crate::backbone::mean_pool(&x, &mask))
        .abs()
        .max()
        .double_value(&[]);
    assert!(d < 1e-5);
    // The bfloat16 fallback squares in float32 (exact): no bfloat16 rounding of the squares.
    let b = Tensor::from_slice(&[1.0f32 + 1.0 / 128.0]).to_kind(Kind::BFloat16).to_device(dev);
    let want = (1.0f64 + 1.0 / 128.0).powi(2);
    assert_eq!(squared_norms_fallback(&[b.shallow_clone()]).unwrap().double_value(&[0]), want);
    assert_eq!(squared_norms(&[b]).unwrap().double_value(&[0]), want);
    println!("CUDA kernels match the fallbacks on {} tensors and 7 pooling shapes", ts.len());
}

/// PyTorch's single-tensor AdamW update written as tensor operations.
fn adamw_reference(p: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, h: AdamWScalars) {
    let _ = p.g_mul_scalar_(1.0 - h.lr * h.wd);
    let _ = m.lerp_(g, 1.0 - h.beta1);
    let _ = v.g_mul_scalar_(h.beta2);
    let _ = v.addcmul_(&(g * (1.0 - h.beta2)), g);
    let denom = v.sqrt() / h.bc2_sqrt + h.eps;
    let _ = p.addcdiv_(&(&*m * (-h.lr / h.bc1)), &denom);
}

#[test]
fn one_pass_adamw_matches_the_tensor_update_for_many_shapes() {
    tch::manual_seed(3);
    let mut tested = 0;
    for shape in shapes() {
        let mk = || Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
        let (p0, m0, g) = (mk(), mk() * 0.1, mk());
        let v0 = mk().square() * 0.01;
        for t in 1..=3 {
            let h = AdamWScalars {
                lr: 1e-3 * t as f64,
                wd: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                bc1: 1.0 - 0.9f64.powi(t),
                bc2_sqrt: (1.0 - 0.999f64.powi(t)).sqrt(),
            };
            let (mut pr, mut mr, mut vr) = (p0.copy(), m0.copy(), v0.copy());
            adamw_reference(&mut pr, &g, &mut mr, &mut vr, h);
            let (pf, mf, vf) = (p0.copy(), m0.copy(), v0.copy());
            let fused = adamw_cpu(&pf, &g, &mf, &vf, h);
            assert_eq!(fused, p0.numel() > 0, "shape {shape:?}");
            if !fused {
                continue;
            }
            tested += 1;
            for (a, b, what) in [(&pf, &pr, "param"), (&mf, &mr, "m"), (&vf, &vr, "v")] {
                let d = (a - b).abs().max().double_value(&[]);
                assert!(d <= 1e-6, "{what} of shape {shape:?} step {t}: max abs diff {d}");
            }
            assert!(pf.not_equal_tensor(&p0).any().int64_value(&[]) == 1, "the update moved p");
        }
    }
    assert!(tested >= 15);
}

/// The largest amount by which `a` departs from `b` beyond `1e-6 + 1e-6 |b|` (at most 0 when
/// they agree). The relative part is 8 float32 ulps: a fused pass and the tensor operations
/// round differently, and after three steps a parameter of magnitude 5 (a 21-million-element
/// normal draw has some) differed by 4 ulps (1.9e-6) on the H200.
fn excess(a: &Tensor, b: &Tensor) -> f64 {
    ((a - b).abs() - b.abs() * 1e-6).max().double_value(&[]) - 1e-6
}

/// On a GPU: the fused multi-tensor AdamW equals the tensor update for many shapes, more
/// tensors than one launch holds and a tensor longer than one launch's blocks, with each
/// tensor's own learning rate and weight decay. Run by the GPU check.
#[test]
#[ignore = "needs a CUDA device"]
fn gpu_cuda_adamw_matches_the_tensor_update() {
    check_cuda_adamw(false);
}

/// On a GPU: the bfloat16 form (float32 master copies and moments, bfloat16 gradients, the
/// bfloat16 weights written in the same pass) equals the tensor update of the masters from
/// the gradients as float32, and each weight is its master rounded to nearest even, as
/// libtorch's `copy_` rounds. Run by the GPU check.
#[test]
#[ignore = "needs a CUDA device"]
fn gpu_cuda_adamw_updates_bf16_weights_through_masters() {
    check_cuda_adamw(true);
}

fn check_cuda_adamw(bf16: bool) {
    assert!(tch::Cuda::is_available(), "no CUDA device: run this on a GPU machine");
    if !COMPILED {
        panic!("built without the `cuda` feature: run it with --features cuda");
    }
    let dev = Device::Cuda(0);
    tch::manual_seed(6);
    let mut shapes = shapes();
    shapes.extend((0..30).map(|i| vec![i * 101 + 1]));
    shapes.push(vec![21_000_003]); // beyond 320 blocks of 65536: continues in a second launch
    let mk = |s: &[i64]| Tensor::randn(s, (Kind::Float, dev));
    let (mut p0, mut m0, mut v0, mut g) = (vec![], vec![], vec![], vec![]);
    for s in &shapes {
        p0.push(mk(s));
        m0.push(mk(s) * 0.1);
        v0.push(mk(s).square() * 0.01);
        g.push(if bf16 { mk(s).to_kind(Kind::BFloat16) } else { mk(s) });
    }
    let copies = |x: &[Tensor]| -> Vec<Tensor> { x.iter().map(Tensor::copy).collect() };
    let (pf, mf, vf) = (copies(&p0), copies(&m0), copies(&v0));
    let (mut pr, mut mr, mut vr) = (copies(&p0), copies(&m0), copies(&v0));
    // The bfloat16 weights the kernel writes (start from anything: zeros).
    let wf: Vec<Tensor> = p0.iter().map(|p| p.zeros_like().to_kind(Kind::BFloat16)).collect();
    for t in 1..=3 {
        let h = |i: usize| AdamWScalars {
            lr: 1e-3 * t as f64 * (1.0 + i as f64 / 10.0),
            wd: if i.is_multiple_of(3) { 0.0 } else { 0.01 },
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            bc1: 1.0 - 0.9f64.powi(t),
            bc2_sqrt: (1.0 - 0.999f64.powi(t)).sqrt(),
        };
        let entries: Vec<AdamWTensors<'_>> = (0..shapes.len())
            .map(|i| AdamWTensors {
                param: &pf[i],
                grad: &g[i],
                m: &mf[i],
                v: &vf[i],
                copy: bf16.then(|| &wf[i]),
                lr: h(i).lr,
                wd: h(i).wd,
            })
            .collect();
        assert!(entries.iter().all(adamw_cuda_accepts));
        adamw_cuda(&entries, h(0)).unwrap();
        for i in 0..shapes.len() {
            let gi = g[i].to_kind(Kind::Float);
            adamw_reference(&mut pr[i], &gi, &mut mr[i], &mut vr[i], h(i));
        }
    }
    for i in 0..shapes.len() {
        if pf[i].numel() == 0 {
            continue;
        }
        for (a, b, what) in
            [(&pf[i], &pr[i], "param"), (&mf[i], &mr[i], "m"), (&vf[i], &vr[i], "v")]
        {
            let d = excess(a, b);
            assert!(d <= 0.0, "{what} of shape {:?}: {d} beyond 1e-6 + 1e-6 |b|", shapes[i]);
        }
        assert!(pf[i].not_equal_tensor(&p0[i]).any().int64_value(&[]) == 1, "tensor {i} moved");
        if bf16 {
            let want = pf[i].to_kind(Kind::BFloat16);
            assert!(
                wf[i].equal(&want),
                "the bf16 weight of shape {:?} is its master rounded",
                shapes[i]
            );
        }
    }
    // Not taken: a non-contiguous parameter, a CPU tensor, a gradient aliasing its parameter,
    // a float16 gradient, a float32 or aliasing copy.
    let t = mk(&[6, 4]);
    let (z, w) = (t.zeros_like(), t.zeros_like());
    let nc = t.transpose(0, 1);
    let cpu = t.to_device(Device::Cpu);
    fn e<'a>(p: &'a Tensor, gr: &'a Tensor, m: &'a Tensor, v: &'a Tensor) -> AdamWTensors<'a> {
        AdamWTensors { param: p, grad: gr, m, v, copy: None, lr: 1e-3, wd: 0.0 }
    }
    assert!(adamw_cuda_accepts(&e(&t, &t.copy(), &z, &w)));
    assert!(!adamw_cuda_accepts(&e(&nc, &nc.contiguous(), &z, &w)));
    assert!(!adamw_cuda_accepts(&e(&cpu, &cpu.copy(), &z, &w)));
    assert!(!adamw_cuda_accepts(&e(&t, &t, &z, &w)));
    assert!(!adamw_cuda_accepts(&e(&t, &t.to_kind(Kind::Half), &z, &w)));
    let (g2, b) = (t.copy(), t.to_kind(Kind::BFloat16));
    assert!(adamw_cuda_accepts(&AdamWTensors { copy: Some(&b), ..e(&t, &g2, &z, &w) }));
    assert!(!adamw_cuda_accepts(&AdamWTensors { copy: Some(&g2), ..e(&t, &g2, &z, &w) }));
    assert!(!adamw_cuda_accepts(&AdamWTensors { copy: Some(&b), ..e(&t, &b, &z, &w) }));
    assert!(adamw_cuda(&[e(&cpu, &cpu.copy(), &z, &w)], first_step()).is_err());
    let form = if bf16 { "bfloat16 weights through float32 masters" } else { "float32" };
    println!(
        "CUDA AdamW ({form}) matches the tensor update on {} tensors over 3 steps",
        shapes.len()
    );
}

/// The scalars of a first AdamW step at lr 1e-3 without weight decay.
fn first_step() -> AdamWScalars {
    AdamWScalars {
        lr: 1e-3,
        wd: 0.0,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        bc1: 0.1,
        bc2_sqrt: 0.001f64.sqrt(),
    }
}

#[test]
fn one_pass_adamw_declines_tensors_it_cannot_take() {
    let h = first_step();
    let t = || Tensor::ones([4, 6], (Kind::Float, Device::Cpu));
    let p = t();
    // Non-contiguous parameter, wrong kind, wrong size, aliasing: untouched, false.
    assert!(!adamw_cpu(&t().transpose(0, 1), &t(), &t(), &t(), h));
    assert!(!adamw_cpu(&p, &t().to_kind(Kind::Double), &t(), &t(), h));
    assert!(!adamw_cpu(&p, &Tensor::ones([5], (Kind::Float, Device::Cpu)), &t(), &t(), h));
    assert!(!adamw_cpu(&p, &p, &t(), &t(), h));
    assert_eq!(p.sum(Kind::Float).double_value(&[]), 24.0);
}

#[test]
fn one_pass_norms_agree_with_the_tensor_form() {
    tch::manual_seed(4);
    let t = Tensor::randn([700, 300], (Kind::Float, Device::Cpu));
    // Contiguous float32 takes the one-pass loop; a transposed view and a float64 copy take
    // the tensor form; all three must agree.
    let n =
        squared_norms_fallback(&[t.shallow_clone(), t.transpose(0, 1), t.to_kind(Kind::Double)])
            .unwrap();
    let want = t.to_kind(Kind::Double).square().sum(Kind::Double).double_value(&[]);
    for i in 0..3 {
        assert!(close(n.double_value(&[i]), want), "entry {i}: {} vs {want}", n.double_value(&[i]));
    }
}

/// Issue 15, defect 1: the CPU loops spawned fresh OS threads for every large tensor of
/// every step (and panicked when a spawn failed). They now run on one persistent pool: the
/// worker threads seen after the first call are the same after fifty more.
#[cfg(target_os = "linux")]
#[test]
fn kernel_threads_are_pooled_not_spawned_per_call() {
    fn workers() -> std::collections::BTreeSet<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.starts_with("fintune-cpu-"))
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
    let t = Tensor::ones([PARALLEL_MIN as i64 * 4], (Kind::Float, Device::Cpu));
    let h = AdamWScalars { wd: 0.01, ..first_step() };
    let (g, m, v) = (t.copy(), t.zeros_like(), t.zeros_like());
    assert_eq!(squared_norms(&[t.shallow_clone()]).unwrap().double_value(&[0]), 262_144.0);
    if cpu_threads() == 1 {
        // One libtorch thread: everything runs on the calling thread, no worker is started.
        let first = workers();
        assert!(first.is_empty(), "workers started with one libtorch thread: {first:?}");
        return;
    }
    // A worker names itself when it starts running, which may be after the pool was built
    // (seen on a 16-core machine): wait until the whole pool is visible.
    let size = pool().expect("the pool was built by the call above").current_num_threads();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut first = workers();
    while first.len() < size && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        first = workers();
    }
    assert_eq!(first.len(), size, "the pool's workers: {first:?}");
    for _ in 0..50 {
        assert!(squared_norms(&[t.shallow_clone()]).is_ok());
        assert!(adamw_cpu(&t, &g, &m, &v, h));
    }
    assert_eq!(workers(), first, "the calls started new worker threads");
}

/// The pooled norm is bit-identical to the per-chunk sums added in order (the reduction order
/// of the thread-per-chunk version it replaced), for any thread count.
#[test]
fn pooled_norms_equal_the_chunk_sums_in_order_bit_for_bit() {
    tch::manual_seed(5);
    let t = Tensor::randn([300_001], (Kind::Float, Device::Cpu));
    let xs = Vec::<f32>::try_from(&t).unwrap();
    let threads = cpu_threads();
    let want: f64 = if threads == 1 {
        lane_sum(&xs)
    } else {
        xs.chunks(xs.len().div_ceil(threads)).map(lane_sum).sum()
    };
    let got = squared_norms(&[t]).unwrap().double_value(&[0]);
    assert_eq!(got.to_bits(), want.to_bits(), "{got} vs {want}");
}
