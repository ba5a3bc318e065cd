//! Fused CUDA kernels and their libtorch fallbacks, chosen at run time.
//!
//! - [`squared_norms`]: squared L2 norms of a list of tensors. On CUDA (with the `cuda`
//!   feature) one multi-tensor kernel handles the whole list in a few launches; elsewhere one
//!   reduction per tensor.
//! - [`mean_pool`] / [`mean_pool_backward`]: masked mean pooling `[B, L, H] -> [B, H]` and its
//!   gradient, fused on CUDA.
//!
//! - [`adamw_cpu`]: the AdamW update of one parameter in one pass over memory, on CPU.
//!
//! The kernels run when the feature is compiled in, the tensors are float32 on a CUDA device,
//! and `FINTUNE_KERNELS` is not `off`; the fallbacks compute the same numbers (tested to 1e-5
//! on a GPU).

use std::sync::OnceLock;

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

#[cfg(feature = "cuda")]
mod ffi {
    use std::ffi::c_void;

    extern "C" {
        pub fn fintune_sqnorm(
            device: i32,
            ptrs: *const *const c_void,
            bf16: *const u8,
            sizes: *const i64,
            n: i32,
            out: *mut f64,
            stream: *mut c_void,
        ) -> i32;
        pub fn fintune_mean_pool_fwd_f32(
            device: i32,
            x: *const f32,
            mask: *const i64,
            out: *mut f32,
            b: i64,
            l: i64,
            h: i64,
            stream: *mut c_void,
        ) -> i32;
        pub fn fintune_mean_pool_bwd_f32(
            device: i32,
            g: *const f32,
            mask: *const i64,
            gx: *mut f32,
            b: i64,
            l: i64,
            h: i64,
            stream: *mut c_void,
        ) -> i32;
        pub fn fintune_adamw(
            device: i32,
            p: *const *mut f32,
            g: *const *const c_void,
            g_bf16: *const u8,
            m: *const *mut f32,
            v: *const *mut f32,
            copy: *const *mut u16,
            sizes: *const i64,
            lr: *const f64,
            wd: *const f64,
            n: i32,
            beta1: f64,
            beta2: f64,
            eps: f64,
            bc1: f64,
            bc2_sqrt: f64,
            stream: *mut c_void,
        ) -> i32;
    }
}

/// Whether the fused kernels were compiled in (the `cuda` feature).
pub const COMPILED: bool = cfg!(feature = "cuda");

/// Whether the kernels are used for tensors on `device`: compiled in, a CUDA device, and not
/// switched off with `FINTUNE_KERNELS=off`.
pub fn enabled_for(device: Device) -> bool {
    COMPILED && device.is_cuda() && std::env::var("FINTUNE_KERNELS").map_or(true, |v| v != "off")
}

#[cfg(feature = "cuda")]
fn cuda_index(d: Device) -> i32 {
    match d {
        Device::Cuda(i) => i as i32,
        _ => 0,
    }
}

#[cfg(feature = "cuda")]
fn check(code: i32, what: &str) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Invalid(format!("CUDA kernel {what} failed with cudaError {code}")))
    }
}

/// Squared L2 norm of each tensor, as a `[n]` float64 tensor on the tensors' device (float32
/// and bfloat16 CUDA tensors by the fused kernel; squares and sums exact to float64 rounding).
pub fn squared_norms(tensors: &[Tensor]) -> Result<Tensor> {
    let Some(first) = tensors.first() else {
        return Ok(Tensor::zeros([0], (Kind::Double, Device::Cpu)));
    };
    let device = first.device();
    if enabled_for(device)
        && tensors
            .iter()
            .all(|t| matches!(t.kind(), Kind::Float | Kind::BFloat16) && t.device() == device)
    {
        return squared_norms_kernel(tensors);
    }
    squared_norms_fallback(tensors)
}

/// The libtorch form of [`squared_norms`]: one reduction per tensor (in float64); contiguous
/// float32 CPU tensors are summed in one pass over their memory (the tensor form squares into
/// a new buffer first: 60 ms against 7 ms for the 22.7M gradients of MiniLM). Half-precision
/// tensors are squared in float32, where their squares are exact.
pub fn squared_norms_fallback(tensors: &[Tensor]) -> Result<Tensor> {
    let parts: Vec<Tensor> = tensors
        .iter()
        .map(|t| match squared_norm_cpu(t) {
            Some(s) => Tensor::from_slice(&[s]),
            None if matches!(t.kind(), Kind::BFloat16 | Kind::Half) => {
                t.to_kind(Kind::Float).square().sum(Kind::Double).reshape([1])
            }
            None => t.square().sum(Kind::Double).reshape([1]),
        })
        .collect();
    if parts.is_empty() {
        return Ok(Tensor::zeros([0], (Kind::Double, Device::Cpu)));
    }
    Ok(Tensor::cat(&parts, 0))
}

#[cfg(feature = "cuda")]
fn squared_norms_kernel(tensors: &[Tensor]) -> Result<Tensor> {
    let device = tensors[0].device();
    // Non-contiguous inputs are copied; contiguous ones are read in place.
    let owned: Vec<Tensor> = tensors
        .iter()
        .map(|t| if t.is_contiguous() { t.shallow_clone() } else { t.contiguous() })
        .collect();
    let ptrs: Vec<*const std::ffi::c_void> =
        owned.iter().map(|t| t.data_ptr().cast_const()).collect();
    let bf16: Vec<u8> = owned.iter().map(|t| u8::from(t.kind() == Kind::BFloat16)).collect();
    let sizes: Vec<i64> = owned.iter().map(|t| t.numel() as i64).collect();
    let out = Tensor::zeros([tensors.len() as i64], (Kind::Double, device));
    // SAFETY: every pointer addresses `size` contiguous elements (bfloat16 where `bf16` says
    // so, float32 otherwise) on the device of
    // `out`, kept alive by `owned` until the kernels have run (the stream is synchronised by
    // the next libtorch operation on it: the legacy default stream libtorch uses).
    let code = unsafe {
        ffi::fintune_sqnorm(
            cuda_index(device),
            ptrs.as_ptr(),
            bf16.as_ptr(),
            sizes.as_ptr(),
            ptrs.len() as i32,
            out.data_ptr() as *mut f64,
            std::ptr::null_mut(),
        )
    };
    check(code, "fintune_sqnorm")?;
    Ok(out)
}

#[cfg(not(feature = "cuda"))]
fn squared_norms_kernel(tensors: &[Tensor]) -> Result<Tensor> {
    squared_norms_fallback(tensors)
}

/// The squared L2 norm of a contiguous float32 CPU tensor, accumulated in float64 over
/// chunks split across the libtorch thread count (run on the persistent [`pool`]); `None`
/// for any other tensor.
fn squared_norm_cpu(t: &Tensor) -> Option<f64> {
    if t.device() != Device::Cpu || t.kind() != Kind::Float || !t.is_contiguous() {
        return None;
    }
    let n = t.numel();
    if n == 0 {
        return Some(0.0);
    }
    // SAFETY: a live, contiguous float32 buffer of n elements, only read while `t` is borrowed.
    let xs = unsafe { std::slice::from_raw_parts(t.data_ptr().cast::<f32>().cast_const(), n) };
    let threads = cpu_threads();
    if threads == 1 || n < PARALLEL_MIN {
        return Some(lane_sum(xs));
    }
    // The chunks and the order of their sum depend only on the thread count, never on which
    // worker runs a chunk, so the result is the same with the pool or without it.
    let chunk = n.div_ceil(threads);
    let parts: Vec<f64> = match pool() {
        Some(pool) => pool.install(|| xs.par_chunks(chunk).map(lane_sum).collect()),
        None => xs.chunks(chunk).map(lane_sum).collect(),
    };
    Some(parts.into_iter().sum())
}

/// The sum of squares of `xs` in float64, over eight lanes so the loop vectorises.
fn lane_sum(xs: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f64::from(x) * f64::from(x);
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// Tensors below this many elements are handled on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;

/// The libtorch thread count (at least 1): how many chunks a large tensor is cut into.
fn cpu_threads() -> usize {
    usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1)
}

/// The worker pool of the CPU loops, created on first use with the libtorch thread count and
/// kept for the life of the process (a MiniLM step used to spawn ~80 threads). `None` when
/// its threads could not be started: the loops then run on the calling thread.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(cpu_threads())
            .thread_name(|i| format!("fintune-cpu-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Sum of the squared norms (the squared global norm), as an `f64` on the host.
pub fn total_squared_norm(tensors: &[Tensor]) -> Result<f64> {
    if tensors.is_empty() {
        return Ok(0.0);
    }
    Ok(squared_norms(tensors)?.sum(Kind::Double).double_value(&[]))
}

fn check_pool_args(x: &Tensor, mask: &Tensor) -> Result<(i64, i64, i64)> {
    let (b, l, h) = x.size3().map_err(|_| {
        Error::Invalid(format!("mean_pool: hidden states must be [B, L, H], got {:?}", x.size()))
    })?;
    if mask.size() != [b, l] {
        return Err(Error::Invalid(format!(
            "mean_pool: mask must be [{b}, {l}], got {:?}",
            mask.size()
        )));
    }
    Ok((b, l, h))
}

/// Masked mean over the sequence axis (sentence-transformers' pooling; the count is clamped
/// at 1e-9). Not differentiable through autograd when the kernel runs: use
/// [`mean_pool_backward`] for the gradient.
pub fn mean_pool(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, l, h) = check_pool_args(x, mask)?;
    if enabled_for(x.device()) && x.kind() == Kind::Float {
        return mean_pool_kernel(x, mask, b, l, h);
    }
    Ok(crate::backbone::mean_pool(x, mask))
}

/// The gradient of [`mean_pool`] with respect to `x` (`[B, L, H]`) for the gradient `g`
/// (`[B, H]`) of its output.
pub fn mean_pool_backward(g: &Tensor, mask: &Tensor, seq_len: i64) -> Result<Tensor> {
    let (b, h) = g.size2().map_err(|_| {
        Error::Invalid(format!("mean_pool_backward: gradient must be [B, H], got {:?}", g.size()))
    })?;
    if mask.size() != [b, seq_len] {
        return Err(Error::Invalid(format!(
            "mean_pool_backward: mask must be [{b}, {seq_len}], got {:?}",
            mask.size()
        )));
    }
    if enabled_for(g.device()) && g.kind() == Kind::Float {
        return mean_pool_backward_kernel(g, mask, b, seq_len, h);
    }
    Ok(mean_pool_backward_fallback(g, mask))
}

/// The libtorch form of [`mean_pool_backward`].
pub fn mean_pool_backward_fallback(g: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.to_kind(g.kind()).to_device(g.device());
    let count = m.sum_dim_intlist([1].as_slice(), true, g.kind()).clamp_min(1e-9);
    g.unsqueeze(1) * (m / count).unsqueeze(-1)
}

#[cfg(feature = "cuda")]
fn mean_pool_kernel(x: &Tensor, mask: &Tensor, b: i64, l: i64, h: i64) -> Result<Tensor> {
    let x = x.contiguous();
    let mask = mask.to_kind(Kind::Int64).to_device(x.device()).contiguous();
    let out = Tensor::empty([b, h], (Kind::Float, x.device()));
    // SAFETY: x is [b, l, h] float32, mask [b, l] int64, out [b, h] float32, all contiguous on
    // one CUDA device and alive across the launch.
    let code = unsafe {
        ffi::fintune_mean_pool_fwd_f32(
            cuda_index(x.device()),
            x.data_ptr() as *const f32,
            mask.data_ptr() as *const i64,
            out.data_ptr() as *mut f32,
            b,
            l,
            h,
            std::ptr::null_mut(),
        )
    };
    check(code, "fintune_mean_pool_fwd_f32")?;
    Ok(out)
}

#[cfg(not(feature = "cuda"))]
fn mean_pool_kernel(x: &Tensor, mask: &Tensor, _b: i64, _l: i64, _h: i64) -> Result<Tensor> {
    Ok(crate::backbone::mean_pool(x, mask))
}

#[cfg(feature = "cuda")]
fn mean_pool_backward_kernel(g: &Tensor, mask: &Tensor, b: i64, l: i64, h: i64) -> Result<Tensor> {
    // The launch grid is (l, b): CUDA allows at most 65535 blocks along y.
    if b > 65_535 {
        return Ok(mean_pool_backward_fallback(g, mask));
    }
    let g = g.contiguous();
    let mask = mask.to_kind(Kind::Int64).to_device(g.device()).contiguous();
    let gx = Tensor::empty([b, l, h], (Kind::Float, g.device()));
    // SAFETY: g is [b, h] float32, mask [b, l] int64, gx [b, l, h] float32, contiguous on one
    // CUDA device and alive across the launch.
    let code = unsafe {
        ffi::fintune_mean_pool_bwd_f32(
            cuda_index(g.device()),
            g.data_ptr() as *const f32,
            mask.data_ptr() as *const i64,
            gx.data_ptr() as *mut f32,
            b,
            l,
            h,
            std::ptr::null_mut(),
        )
    };
    check(code, "fintune_mean_pool_bwd_f32")?;
    Ok(gx)
}

#[cfg(not(feature = "cuda"))]
fn mean_pool_backward_kernel(
    g: &Tensor,
    mask: &Tensor,
    _b: i64,
    _l: i64,
    _h: i64,
) -> Result<Tensor> {
    Ok(mean_pool_backward_fallback(g, mask))
}

/// One parameter of a fused CUDA AdamW update ([`adamw_cuda`]): the parameter, its gradient,
/// its two moment estimates and its own learning rate and weight decay; under bfloat16
/// training the parameter is the float32 master copy and `copy` the bfloat16 model weight.
#[derive(Debug)]
pub struct AdamWTensors<'a> {
    /// The float32 parameter (or master copy), updated in place.
    pub param: &'a Tensor,
    /// Its gradient, float32 or bfloat16.
    pub grad: &'a Tensor,
    /// First moment (float32), updated in place.
    pub m: &'a Tensor,
    /// Second moment (float32), updated in place.
    pub v: &'a Tensor,
    /// The bfloat16 weight that receives the updated parameter, rounded to nearest even as
    /// libtorch's `copy_` rounds (the model's weight when `param` is its master copy).
    pub copy: Option<&'a Tensor>,
    /// Learning rate of this step for this parameter.
    pub lr: f64,
    /// Its decoupled weight decay (0 for parameters that do not decay).
    pub wd: f64,
}

/// Whether [`adamw_cuda`] takes these tensors: the kernels are enabled for the parameter's
/// CUDA device; parameter and moments are float32, the gradient float32 or bfloat16, the copy
/// (if any) bfloat16, all contiguous, of one size, on that device and in distinct buffers
/// (or empty).
pub fn adamw_cuda_accepts(t: &AdamWTensors<'_>) -> bool {
    let device = t.param.device();
    let n = t.param.numel();
    let alike = |x: &Tensor, kinds: &[Kind]| {
        x.device() == device && kinds.contains(&x.kind()) && x.is_contiguous() && x.numel() == n
    };
    let mut ptrs = vec![t.param.data_ptr(), t.grad.data_ptr(), t.m.data_ptr(), t.v.data_ptr()];
    ptrs.extend(t.copy.map(Tensor::data_ptr));
    // Empty tensors have no buffers (null pointers); the kernel skips them.
    let distinct =
        n == 0 || (0..ptrs.len()).all(|i| (i + 1..ptrs.len()).all(|j| ptrs[i] != ptrs[j]));
    enabled_for(device)
        && [t.param, t.m, t.v].into_iter().all(|x| alike(x, &[Kind::Float]))
        && alike(t.grad, &[Kind::Float, Kind::BFloat16])
        && t.copy.is_none_or(|c| alike(c, &[Kind::BFloat16]))
        && distinct
}

/// The AdamW update of many float32 CUDA parameters in a few kernel launches (the update of
/// [`adamw_cpu`], element by element, with each parameter's own `lr` and `wd`; `h`'s `lr` and
/// `wd` are ignored), each written also to its bfloat16 `copy` if it has one. Every entry must
/// pass [`adamw_cuda_accepts`] and all must be on one device; an error otherwise, before
/// anything is touched.
pub fn adamw_cuda(tensors: &[AdamWTensors<'_>], h: AdamWScalars) -> Result<()> {
    let Some(first) = tensors.first() else { return Ok(()) };
    let device = first.param.device();
    if let Some(bad) = tensors.iter().find(|t| !adamw_cuda_accepts(t) || t.param.device() != device)
    {
        return Err(Error::Invalid(format!(
            "adamw_cuda: a parameter of shape {:?} on {:?} is not a contiguous float32 CUDA \
             tensor with moments, gradient and copy alike on {device:?}",
            bad.param.size(),
            bad.param.device()
        )));
    }
    adamw_cuda_launch(tensors, h)
}

#[cfg(feature = "cuda")]
fn adamw_cuda_launch(tensors: &[AdamWTensors<'_>], h: AdamWScalars) -> Result<()> {
    let device = tensors[0].param.device();
    let p: Vec<*mut f32> = tensors.iter().map(|t| t.param.data_ptr().cast::<f32>()).collect();
    let g: Vec<*const std::ffi::c_void> =
        tensors.iter().map(|t| t.grad.data_ptr().cast_const()).collect();
    let g_bf16: Vec<u8> =
        tensors.iter().map(|t| u8::from(t.grad.kind() == Kind::BFloat16)).collect();
    let m: Vec<*mut f32> = tensors.iter().map(|t| t.m.data_ptr().cast::<f32>()).collect();
    let v: Vec<*mut f32> = tensors.iter().map(|t| t.v.data_ptr().cast::<f32>()).collect();
    let copy: Vec<*mut u16> = tensors
        .iter()
        .map(|t| t.copy.map_or(std::ptr::null_mut(), |c| c.data_ptr().cast::<u16>()))
        .collect();
    let sizes: Vec<i64> = tensors.iter().map(|t| t.param.numel() as i64).collect();
    let lr: Vec<f64> = tensors.iter().map(|t| t.lr).collect();
    let wd: Vec<f64> = tensors.iter().map(|t| t.wd).collect();
    let n = i32::try_from(tensors.len())
        .map_err(|_| Error::Invalid("adamw_cuda: too many tensors".into()))?;
    // SAFETY: every pointer addresses `size` contiguous elements of its kind (float32; the
    // gradient bfloat16 where g_bf16 says so; the copy bfloat16) on one CUDA device (checked
    // by adamw_cuda_accepts), the buffers of a parameter are distinct, and the tensors outlive
    // the launch, which runs on the legacy default stream libtorch uses.
    let code = unsafe {
        ffi::fintune_adamw(
            cuda_index(device),
            p.as_ptr(),
            g.as_ptr(),
            g_bf16.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            copy.as_ptr(),
            sizes.as_ptr(),
            lr.as_ptr(),
            wd.as_ptr(),
            n,
            h.beta1,
            h.beta2,
            h.eps,
            h.bc1,
            h.bc2_sqrt,
            std::ptr::null_mut(),
        )
    };
    check(code, "fintune_adamw")
}

#[cfg(not(feature = "cuda"))]
fn adamw_cuda_launch(_tensors: &[AdamWTensors<'_>], _h: AdamWScalars) -> Result<()> {
    // adamw_cuda_accepts is false without the kernels, so nothing reaches this.
    Err(Error::Invalid("adamw_cuda: built without the `cuda` feature".into()))
}

/// The scalars of one AdamW update of one parameter (PyTorch's names).
#[derive(Debug, Clone, Copy)]
pub struct AdamWScalars {
    /// Learning rate of this step.
    pub lr: f64,
    /// Decoupled weight decay (0 for parameters that do not decay).
    pub wd: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// First bias correction `1 - beta1^t`.
    pub bc1: f64,
    /// Square root of the second bias correction `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f64,
}

/// The AdamW update in one pass over memory, for contiguous float32 CPU tensors (a CPU
/// counterpart of PyTorch's fused AdamW, which tch does not bind: the update written as
/// tensor operations makes eight passes and allocates, and took 163 ms of a 370 ms MiniLM
/// training step on CPU). Element by element it is `torch.optim.AdamW`'s
/// single-tensor update, in float32 as libtorch computes it: `p *= 1 - lr wd`,
/// `m = m + (1 - b1)(g - m)`, `v = b2 v + (1 - b2) g g`, `p += -(lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)`.
/// Split over the libtorch thread count, on the persistent worker pool (on the calling thread
/// when the pool could not start). Returns false (and touches nothing) when a tensor
/// is not eligible, for the caller to take the tensor path.
pub fn adamw_cpu(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, h: AdamWScalars) -> bool {
    let n = p.numel();
    let ok = |t: &Tensor| {
        t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && t.numel() == n
    };
    if ![p, g, m, v].into_iter().all(ok) || n == 0 {
        return false;
    }
    let (pp, gp, mp, vp) = (p.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr());
    // Four distinct buffers (a gradient never shares storage with its parameter, and the
    // moments are the optimiser's own), so the slices below do not alias.
    if pp == gp || pp == mp || pp == vp || gp == mp || gp == vp || mp == vp {
        return false;
    }
    // SAFETY: each pointer is the start of a contiguous, live float32 buffer of n elements
    // (checked above), the four buffers are distinct, the tensors outlive this call, and no
    // other code touches them while it runs (the step runs under no_grad on this thread).
    let (ps, gs, ms, vs) = unsafe {
        (
            std::slice::from_raw_parts_mut(pp.cast::<f32>(), n),
            std::slice::from_raw_parts(gp.cast::<f32>().cast_const(), n),
            std::slice::from_raw_parts_mut(mp.cast::<f32>(), n),
            std::slice::from_raw_parts_mut(vp.cast::<f32>(), n),
        )
    };
    let decay = (1.0 - h.lr * h.wd) as f32;
    let w1 = (1.0 - h.beta1) as f32;
    let b2 = h.beta2 as f32;
    let w2 = (1.0 - h.beta2) as f32;
    let bc2 = h.bc2_sqrt as f32;
    let eps = h.eps as f32;
    let step = (-(h.lr / h.bc1)) as f32;
    let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *p *= decay;
            *m += w1 * (g - *m);
            *v = *v * b2 + w2 * g * g;
            *p += step * (*m / (v.sqrt() / bc2 + eps));
        }
    };
    let threads = cpu_threads();
    if threads > 1 && n >= PARALLEL_MIN {
        if let Some(pool) = pool() {
            let chunk = n.div_ceil(threads);
            pool.install(|| {
                ps.par_chunks_mut(chunk)
                    .zip(gs.par_chunks(chunk))
                    .zip(ms.par_chunks_mut(chunk))
                    .zip(vs.par_chunks_mut(chunk))
                    .for_each(|(((p, g), m), v)| update(p, g, m, v));
            });
            return true;
        }
    }
    // Element by element, so one pass on this thread gives the same bits.
    update(ps, gs, ms, vs);
    true
}

#[cfg(test)]
mod tests;
