//! AdamW with parameter groups and a saveable state, gradient clipping, and the linear
//! warm-up/decay schedule.
//!
//! libtorch's optimisers (through `tch::nn::Optimizer`) cannot save or restore their moment
//! estimates, which exact `--resume` needs, so AdamW is written here on tensors: the update is
//! PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments).

use fintune_model::kernels::{
    adamw_cpu, adamw_cuda, adamw_cuda_accepts, AdamWScalars, AdamWTensors,
};
use fintune_model::weights::Checkpoint;
use fintune_model::{Depth, Param, Part};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Learning rate and weight decay of one parameter group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupRates {
    /// Peak learning rate (before the schedule's factor).
    pub lr: f64,
    /// Decoupled weight decay (applied to parameters that decay).
    pub weight_decay: f64,
}

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Backbone parameters.
    pub backbone: GroupRates,
    /// LoRA adapters.
    pub adapter: GroupRates,
    /// Task heads.
    pub head: GroupRates,
    /// First-moment decay. Default: 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default: 0.999.
    pub beta2: f64,
    /// Denominator epsilon. Default: 1e-8.
    pub eps: f64,
    /// Layer-wise learning-rate decay. Default: [`LayerDecay::OFF`].
    pub layer_decay: LayerDecay,
}

/// Layer-wise learning-rate decay (discriminative fine-tuning): with `num_layers` = L, the
/// backbone and adapter parameters of layer i (0-based, bottom to top) learn at
/// `lr * factor^(L - i)`, the embeddings at `lr * factor^(L + 1)`; other backbone parameters
/// (a final norm, shared tables) and the heads keep their group's rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerDecay {
    /// The factor per layer; 1 turns the decay off.
    pub factor: f64,
    /// The backbone's number of transformer layers.
    pub num_layers: usize,
}

impl LayerDecay {
    /// No decay: every parameter keeps its group's rate.
    pub const OFF: LayerDecay = LayerDecay { factor: 1.0, num_layers: 0 };

    /// The multiplier of a parameter's group rate.
    pub fn scale(&self, part: Part, depth: Depth) -> f64 {
        if self.factor == 1.0 || part == Part::Head {
            return 1.0;
        }
        let l = self.num_layers as i32;
        match depth {
            Depth::Embeddings => self.factor.powi(l + 1),
            Depth::Layer(i) => self.factor.powi(l - i as i32),
            Depth::Other => 1.0,
        }
    }
}

#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    /// A float32 master copy of a bf16/f16 parameter: the update is applied to it and copied
    /// (rounded) into the parameter, so small updates are not lost to the low precision.
    master: Option<Tensor>,
    part: Part,
    decay: bool,
    /// The layer-wise multiplier of the group's rate (exactly 1 without decay).
    lr_scale: f64,
    m: Tensor,
    v: Tensor,
}

/// A slot as an entry of the fused CUDA update: its float32 parameter (or master copy, with
/// the bfloat16 weight as the copy the kernel writes).
fn fused_entry<'a>(s: &'a Slot, grad: &'a Tensor, lr: f64, wd: f64) -> AdamWTensors<'a> {
    let (param, copy) = match &s.master {
        Some(master) => (master, Some(&s.param)),
        None => (&s.param, None),
    };
    AdamWTensors { param, grad, m: &s.m, v: &s.v, copy, lr, wd }
}

/// `torch.optim.AdamW`'s single-tensor update as tensor operations (on any device and kind).
fn tensor_update(mut p: Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, h: AdamWScalars) {
    if h.wd > 0.0 {
        let _ = p.g_mul_scalar_(1.0 - h.lr * h.wd);
    }
    let _ = m.lerp_(g, 1.0 - h.beta1);
    let _ = v.g_mul_scalar_(h.beta2);
    let _ = v.addcmul_(&(g * (1.0 - h.beta2)), g);
    let denom = v.sqrt() / h.bc2_sqrt + h.eps;
    let _ = p.addcdiv_(&(&*m * (-h.lr / h.bc1)), &denom);
}

/// AdamW over a model's trainable parameters.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    cfg: AdamWConfig,
    step: i64,
}

impl AdamW {
    /// An optimiser for `params` (from `MultiTaskModel::parameters`).
    pub fn new(params: Vec<Param>, cfg: AdamWConfig) -> Self {
        let slots = params
            .into_iter()
            .map(|p| {
                let master = (p.tensor.kind() != Kind::Float)
                    .then(|| p.tensor.detach().to_kind(Kind::Float));
                let f32_zeros =
                    || Tensor::zeros(p.tensor.size().as_slice(), (Kind::Float, p.tensor.device()));
                Slot {
                    m: f32_zeros(),
                    v: f32_zeros(),
                    name: p.name,
                    param: p.tensor,
                    master,
                    part: p.part,
                    decay: p.decay,
                    lr_scale: cfg.layer_decay.scale(p.part, p.depth),
                }
            })
            .collect();
        AdamW { slots, cfg, step: 0 }
    }

    /// Each parameter's name with its peak learning rate (group rate times the layer-wise
    /// multiplier), in the optimiser's order.
    pub fn peak_rates(&self) -> Vec<(String, f64)> {
        self.slots
            .iter()
            .map(|s| {
                let rates = match s.part {
                    Part::Backbone => self.cfg.backbone,
                    Part::Adapter => self.cfg.adapter,
                    Part::Head => self.cfg.head,
                };
                (s.name.clone(), rates.lr * s.lr_scale)
            })
            .collect()
    }

    /// Number of updates taken.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// The optimised tensors.
    pub fn params(&self) -> impl Iterator<Item = &Tensor> {
        self.slots.iter().map(|s| &s.param)
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm
    /// before clipping (as `torch.nn.utils.clip_grad_norm_`).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> =
            self.slots.iter().map(|s| s.param.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return 0.0;
        }
        // One fused multi-tensor reduction on CUDA, one reduction per tensor elsewhere.
        let total = fintune_model::kernels::total_squared_norm(&grads).map_or(f64::NAN, f64::sqrt);
        if total.is_finite() && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            });
        }
        total
    }

    /// One AdamW update with every group's learning rate multiplied by `lr_factor`.
    pub fn step(&mut self, lr_factor: f64) {
        self.step += 1;
        let t = self.step as f64;
        let AdamWConfig { beta1, beta2, eps, .. } = self.cfg;
        let bc1 = 1.0 - beta1.powf(t);
        let bc2_sqrt = (1.0 - beta2.powf(t)).sqrt();
        tch::no_grad(|| {
            // CUDA parameters are updated together by the fused multi-tensor kernel (a few
            // launches instead of about ten per parameter): float32 ones in place, bfloat16
            // ones through their float32 master copies, which the kernel writes back to the
            // bfloat16 weights in the same pass. Slot, gradient, lr, wd.
            let mut fused: Vec<(usize, Tensor, f64, f64)> = Vec::new();
            for (i, s) in self.slots.iter_mut().enumerate() {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let rates = match s.part {
                    Part::Backbone => self.cfg.backbone,
                    Part::Adapter => self.cfg.adapter,
                    Part::Head => self.cfg.head,
                };
                // `lr_scale` is exactly 1 without layer decay: the same rate, bit for bit.
                let lr = rates.lr * s.lr_scale * lr_factor;
                let wd = if s.decay { rates.weight_decay } else { 0.0 };
                if adamw_cuda_accepts(&fused_entry(s, &g, lr, wd)) {
                    fused.push((i, g, lr, wd));
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                let p = match &s.master {
                    Some(m) => m.shallow_clone(),
                    None => s.param.shallow_clone(),
                };
                let h = AdamWScalars { lr, wd, beta1, beta2, eps, bc1, bc2_sqrt };
                // One fused pass on CPU; eight tensor operations elsewhere.
                if s.master.is_none() && adamw_cpu(&p, &g, &s.m, &s.v, h) {
                    continue;
                }
                tensor_update(p, &g, &mut s.m, &mut s.v, h);
                if let Some(master) = &s.master {
                    s.param.copy_(master);
                }
            }
            if fused.is_empty() {
                return;
            }
            let h = AdamWScalars { lr: 0.0, wd: 0.0, beta1, beta2, eps, bc1, bc2_sqrt };
            let tensors: Vec<AdamWTensors<'_>> = fused
                .iter()
                .map(|(i, g, lr, wd)| fused_entry(&self.slots[*i], g, *lr, *wd))
                .collect();
            if adamw_cuda(&tensors, h).is_err() {
                // A failed launch touched nothing: the same update as tensor operations.
                drop(tensors);
                for (i, g, lr, wd) in fused {
                    let s = &mut self.slots[i];
                    let h = AdamWScalars { lr, wd, ..h };
                    let p = s.master.as_ref().unwrap_or(&s.param).shallow_clone();
                    tensor_update(p, &g.to_kind(Kind::Float), &mut s.m, &mut s.v, h);
                    if let Some(master) = &s.master {
                        s.param.copy_(master);
                    }
                }
            }
        });
    }

    /// Moment estimates (and float32 master copies) as named tensors (`m.<param>`, `v.<param>`,
    /// `master.<param>`) for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            out.push((format!("m.{}", s.name), s.m.shallow_clone()));
            out.push((format!("v.{}", s.name), s.v.shallow_clone()));
            if let Some(master) = &s.master {
                out.push((format!("master.{}", s.name), master.shallow_clone()));
            }
        }
        out
    }

    /// Restores moments saved by [`Self::state_tensors`] and the step count.
    pub fn load_state(&mut self, ckpt: &Checkpoint, step: i64) -> fintune_model::Result<()> {
        for s in &mut self.slots {
            ckpt.copy_into(&format!("m.{}", s.name), &mut s.m)?;
            ckpt.copy_into(&format!("v.{}", s.name), &mut s.v)?;
            if let Some(master) = &mut s.master {
                ckpt.copy_into(&format!("master.{}", s.name), master)?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Linear warm-up from 0 to 1 over `warmup` steps, then linear decay to 0 at `total`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearSchedule {
    /// Warm-up steps.
    pub warmup: u64,
    /// Total steps.
    pub total: u64,
}

impl LinearSchedule {
    /// A schedule with `ceil(warmup_fraction * total)` warm-up steps.
    pub fn new(total: u64, warmup_fraction: f64) -> Self {
        LinearSchedule {
            warmup: (warmup_fraction * total as f64).ceil() as u64,
            total: total.max(1),
        }
    }

    /// The factor for the update taken at 0-based `step`: transformers'
    /// `get_linear_schedule_with_warmup` shifted by one during warm-up, so the first update
    /// uses `1 / warmup` instead of a wasted zero.
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.warmup {
            (step + 1) as f64 / self.warmup as f64
        } else {
            let rest = self.total.saturating_sub(self.warmup).max(1) as f64;
            (self.total.saturating_sub(step) as f64 / rest).clamp(0.0, 1.0)
        }
    }
}

#[cfg(test)]
mod tests;
