//! One multi-task training step ([`MultiTaskStep::step`]):
//! 1. backbone forward to the pooled representation `z`;
//! 2. the heads run on a detached copy `z'` of `z` (so their graph is separate), giving the
//!    regression loss `L_reg` (MSE, LDS-weighted MSE or Balanced MSE) and, for multi-task
//!    runs, the cross-entropy `L_cls` over score classes;
//! 3. per-task gradient norms on the chosen probe: for the representation probe,
//!    `dL_i/dz'` by autograd through the heads only (no extra pass through the backbone);
//!    for parameter probes, `dL_i/dtheta` for the probe parameters;
//! 4. the task weighting turns losses, norms and batch characteristics into weights `w`;
//! 5. `sum_i w_i L_i` is backpropagated through the heads, which leaves `dL/dz'` on `z'`;
//!    that gradient (or PCGrad's projected combination) is backpropagated once through the
//!    backbone: one full backward pass per step, as in plain fine-tuning;
//! 6. gradient clipping, AdamW with the warm-up/decay schedule.
//!
//! The output is typed per task ([`StepOutput`]), in the order of [`task_names`].

use std::time::Instant;

use fintune_dwa::{BatchCharacteristics, StepObservation, TaskWeighting, WeightingSpec};
use fintune_model::weights::Checkpoint;
use fintune_model::{MultiTaskModel, Param, Part, Probe, Tuning};
use ndarray::ArrayView1;
use tch::{Device, Kind, Reduction, Tensor};

use crate::batching::TrainBatch;
use crate::config::{Imbalance, Resolved};
use crate::optim::{AdamW, AdamWConfig, GroupRates, LayerDecay, LinearSchedule};
use crate::prepare::Prepared;
use crate::run::history::{StepRecord, TaskStep};
use crate::{Error, Result};

/// The names of the tasks of a run with `n` tasks (1: single-task regression), in order: the
/// per-task columns of `history.csv` and the order of every per-task vector.
pub fn task_names(n: usize) -> &'static [&'static str] {
    &TASKS[..n.clamp(1, TASKS.len())]
}

/// The tasks this trainer knows: the score regression and the score-class classification.
pub const TASKS: [&str; 2] = ["reg", "cls"];

/// The training step: model, optimiser, weighting and the loss settings.
pub struct MultiTaskStep<'a> {
    model: &'a MultiTaskModel,
    pub(crate) opt: AdamW,
    schedule: LinearSchedule,
    pub(crate) weighting: Box<dyn TaskWeighting + Send>,
    probe: Probe,
    probe_params: Vec<Tensor>,
    imbalance: Imbalance,
    pub(crate) bmse_sigma: Option<Tensor>,
    class_weights: Option<Tensor>,
    class_freq: Vec<f64>,
    clip: f64,
    tasks: usize,
    total_steps: u64,
    peak_lr: f64,
}

impl std::fmt::Debug for MultiTaskStep<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiTaskStep")
            .field("tasks", &self.tasks)
            .field("probe", &self.probe)
            .field("imbalance", &self.imbalance)
            .field("total_steps", &self.total_steps)
            .finish_non_exhaustive()
    }
}

/// What the step needs to know of the data.
#[derive(Debug, Clone, Copy)]
pub struct StepData<'p> {
    /// Number of tasks (1 or 2).
    pub tasks: usize,
    /// Training share of each class (empty for single-task).
    pub class_freq: &'p [f64],
    /// Cross-entropy class weights.
    pub class_weights: Option<&'p [f32]>,
    /// Number of training examples (for the schedule's length).
    pub train_examples: usize,
}

impl<'p> StepData<'p> {
    /// What `prep` gives the step.
    pub fn of(prep: &'p Prepared) -> Self {
        StepData {
            tasks: if prep.strat.is_some() { 2 } else { 1 },
            class_freq: &prep.class_freq,
            class_weights: prep.class_weights.as_deref(),
            train_examples: prep.train_ex.len(),
        }
    }
}

/// What one step measured: the `history.csv` row, with per-task losses, weights and gradient
/// norms.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// The row.
    pub record: StepRecord,
}

impl StepOutput {
    /// The per-task losses, in task order.
    pub fn losses(&self) -> Vec<f64> {
        self.record.tasks.iter().map(|t| t.loss).collect()
    }

    /// The per-task weights, in task order.
    pub fn weights(&self) -> Vec<f64> {
        self.record.tasks.iter().map(|t| t.weight).collect()
    }
}

impl<'a> MultiTaskStep<'a> {
    /// The step for `model` as `cfg` says: AdamW with the backbone/adapter/head groups, the
    /// linear schedule over every epoch's steps, the weighting, the probe and the losses.
    pub fn new(model: &'a MultiTaskModel, cfg: &Resolved, data: StepData<'_>) -> Result<Self> {
        let device = model.device();
        let (o, task) = (&cfg.raw.optim, &cfg.raw.task);
        let mut params: Vec<Param> = model.parameters();
        let bmse_sigma = (task.imbalance == Imbalance::Bmse).then(|| {
            Tensor::from_slice(&[task.bmse_sigma as f32]).to_device(device).set_requires_grad(true)
        });
        if let Some(s) = &bmse_sigma {
            params.push(Param {
                name: "loss.bmse_sigma".into(),
                tensor: s.shallow_clone(),
                part: Part::Head,
                decay: false,
                depth: fintune_model::Depth::Other,
            });
        }
        let opt = AdamW::new(
            params,
            AdamWConfig {
                backbone: GroupRates { lr: o.lr, weight_decay: o.weight_decay },
                adapter: GroupRates { lr: o.adapter_lr, weight_decay: o.weight_decay },
                head: GroupRates { lr: o.head_lr, weight_decay: o.weight_decay },
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
                layer_decay: LayerDecay {
                    factor: o.layer_decay,
                    num_layers: model.info().num_layers,
                },
            },
        );
        let tasks = data.tasks;
        let total_steps = (data.train_examples.div_ceil(o.batch_size) * o.epochs) as u64;
        // Built (and so checked) even for single-task runs, which then weight their one task 1.
        let weighting = task.weighting.build_with(tasks.max(2), &cfg.raw.weighting)?;
        let weighting = if tasks == 1 { WeightingSpec::Equal.build(1)? } else { weighting };
        let probe_params = if tasks > 1 && task.probe != Probe::Representation {
            model.probe_parameters(task.probe)?
        } else {
            vec![]
        };
        let peak_lr = match cfg.tuning {
            Tuning::Frozen => o.head_lr,
            Tuning::Lora(_) => o.adapter_lr,
            _ => o.lr,
        };
        Ok(MultiTaskStep {
            model,
            opt,
            schedule: LinearSchedule::new(total_steps, o.warmup),
            weighting,
            probe: task.probe,
            probe_params,
            imbalance: task.imbalance,
            bmse_sigma,
            class_weights: data.class_weights.map(|w| Tensor::from_slice(w).to_device(device)),
            class_freq: data.class_freq.to_vec(),
            clip: o.clip,
            tasks,
            total_steps,
            peak_lr,
        })
    }

    /// Steps per run (the schedule's length).
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

impl MultiTaskStep<'_> {
    fn reg_loss(&self, score: &Tensor, b: &TrainBatch) -> Tensor {
        match self.imbalance {
            Imbalance::None => score.mse_loss(&b.scores, Reduction::Mean),
            Imbalance::Lds => ((score - &b.scores).square() * &b.rarity).mean(Kind::Float),
            Imbalance::Bmse => {
                // Ren et al. 2022, batch-based Monte-Carlo: logits_ij = -(p_i - y_j)^2 / 2s^2,
                // cross-entropy towards the diagonal, scaled by the detached 2s^2.
                let var2 = self.bmse_sigma.as_ref().expect("bmse has a sigma").square() * 2.0;
                let diff = score.unsqueeze(1) - b.scores.unsqueeze(0);
                let logits = -(diff.square() / &var2);
                let target = Tensor::arange(score.size()[0], (Kind::Int64, score.device()));
                logits.cross_entropy_for_logits(&target) * var2.detach()
            }
        }
    }

    fn cls_loss(&self, logits: &Tensor, b: &TrainBatch) -> Tensor {
        logits.cross_entropy_loss(
            &b.classes,
            self.class_weights.as_ref(),
            Reduction::Mean,
            -100,
            0.0,
        )
    }

    fn losses(&self, score: &Tensor, logits: Option<&Tensor>, b: &TrainBatch) -> Vec<Tensor> {
        let mut l = vec![self.reg_loss(score, b)];
        if let Some(lg) = logits {
            l.push(self.cls_loss(lg, b));
        }
        l
    }

    /// Runs one training step on `b` (0-based `epoch`, `global_step` steps done before).
    pub fn step(&mut self, b: &TrainBatch, epoch: usize, global_step: u64) -> Result<StepOutput> {
        let t0 = Instant::now();
        let need_norms = self.tasks > 1
            && (self.weighting.needs_grad_norms() || self.weighting.needs_gradients());
        // Norms are logged for every method when they are cheap (the representation probe).
        let want_norms = need_norms || self.probe == Probe::Representation;
        let need_vecs = self.tasks > 1 && self.weighting.needs_gradients();
        let need_batch = self.weighting.needs_batch();
        self.opt.zero_grad();

        // Single-task runs measure nothing on parameter probes: they take the cheaper path.
        let representation = self.probe == Probe::Representation || self.tasks == 1;
        let (pooled, pooled_h, losses) = if representation {
            let pooled = self.model.forward_backbone(&b.inputs, true);
            let ph = pooled.detach().set_requires_grad(true);
            let (score, logits) = self.model.forward_heads(&ph, true);
            let losses = self.losses(&score, logits.as_ref(), b);
            (Some(pooled), Some(ph), losses)
        } else {
            let out = self.model.forward_t(&b.inputs, true);
            let losses = self.losses(&out.score, out.logits.as_ref(), b);
            (None, None, losses)
        };
        let loss_vals: Vec<f64> = losses.iter().map(scalar).collect();
        if loss_vals.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                epoch: epoch + 1,
                step: global_step,
                loss_reg: loss_vals[0],
                loss_cls: loss_vals.get(1).copied(),
                kept: String::new(),
            });
        }

        // Per-task probe gradients.
        let tp = Instant::now();
        let mut norms = vec![f64::NAN; self.tasks];
        let mut flat: Vec<Vec<f32>> = Vec::new();
        if want_norms {
            for (i, l) in losses.iter().enumerate() {
                let grads = match &pooled_h {
                    Some(ph) => Tensor::run_backward(&[l], &[ph], true, false),
                    None => Tensor::run_backward(&[l], &self.probe_params, true, false),
                };
                norms[i] = fintune_model::kernels::total_squared_norm(&grads)?.sqrt();
                if need_vecs {
                    let cat =
                        Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0);
                    flat.push(Vec::<f32>::try_from(
                        cat.to_kind(Kind::Float).to_device(Device::Cpu),
                    )?);
                }
            }
        }
        let probe_ms = tp.elapsed().as_secs_f64() * 1e3;

        // Weights.
        let (weights, terms, combined) = if self.tasks == 1 {
            (vec![1.0], vec![], None)
        } else {
            let rarity: Vec<f64> = b.rarity_host.iter().map(|&r| f64::from(r)).collect();
            let mut hist = vec![0u64; self.class_freq.len()];
            for &c in &b.classes_host {
                hist[c] += 1;
            }
            let views: Vec<ArrayView1<'_, f32>> =
                flat.iter().map(|v| ArrayView1::from(v.as_slice())).collect();
            let mut obs =
                StepObservation::new(&loss_vals).at(global_step, self.total_steps, epoch as u32);
            if need_norms {
                obs = obs.with_grad_norms(&norms);
            }
            if need_batch {
                obs = obs.with_batch(BatchCharacteristics {
                    rarity: &rarity,
                    class_histogram: &hist,
                    class_frequencies: &self.class_freq,
                });
            }
            if need_vecs {
                obs.grads = Some(&views);
            }
            let wt = self.weighting.weights(&obs)?;
            let combined = if need_vecs { self.weighting.combine_gradients(&views)? } else { None };
            let terms: Vec<f64> = wt.terms.iter().flat_map(|(_, v)| v.to_vec()).collect();
            (wt.values.clone(), terms, combined)
        };

        // One backward pass through heads, then (representation) one through the backbone.
        let total = losses
            .iter()
            .zip(&weights)
            .map(|(l, &wi)| l * wi)
            .reduce(|a, b| a + b)
            .expect("at least one task");
        total.backward();
        match (&pooled, &pooled_h) {
            (Some(pooled), Some(ph)) => {
                let g = match &combined {
                    Some(c) => Tensor::from_slice(c.gradient.as_slice().expect("contiguous"))
                        .view(ph.size().as_slice())
                        .to_device(ph.device()),
                    None => ph.grad(),
                };
                self.model.backward_backbone(pooled, &g);
            }
            _ => {
                if let Some(c) = &combined {
                    // Parameter probe: the probe parameters take the combined gradient.
                    let flat_g = Tensor::from_slice(c.gradient.as_slice().expect("contiguous"));
                    let mut off = 0i64;
                    tch::no_grad(|| {
                        for p in &self.probe_params {
                            let n = p.numel() as i64;
                            let mut g = p.grad();
                            if g.defined() {
                                g.copy_(
                                    &flat_g
                                        .narrow(0, off, n)
                                        .view(p.size().as_slice())
                                        .to_device(p.device()),
                                );
                            }
                            off += n;
                        }
                    });
                }
            }
        }
        self.opt.clip_grad_norm(self.clip);
        let factor = self.schedule.factor(global_step);
        self.opt.step(factor);

        if self.tasks > 1 && self.weighting.needs_post_step_losses() {
            let after: Vec<f64> = tch::no_grad(|| {
                let out = self.model.forward_t(&b.inputs, false);
                self.losses(&out.score, out.logits.as_ref(), b).iter().map(scalar).collect()
            });
            self.weighting.after_step(&after)?;
        }

        let secs = t0.elapsed().as_secs_f64();
        let record = StepRecord {
            epoch: epoch + 1,
            step: global_step + 1,
            lr: self.opt_lr() * factor,
            tasks: (0..self.tasks)
                .map(|i| TaskStep { loss: loss_vals[i], weight: weights[i], grad_norm: norms[i] })
                .collect(),
            batch_rarity: b.rarity_host.iter().map(|&r| f64::from(r)).sum::<f64>() / b.len() as f64,
            samples_per_s: b.len() as f64 / secs,
            step_ms: secs * 1e3,
            probe_ms,
            terms,
        };
        Ok(StepOutput { record })
    }

    /// The number of tasks.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// The weighting's term columns of `history.csv` (empty for single-task runs).
    pub fn term_names(&self) -> Vec<String> {
        if self.tasks > 1 {
            self.weighting.term_names().iter().map(|n| n.to_string()).collect()
        } else {
            vec![]
        }
    }

    /// Every tensor a checkpoint needs (model, optimiser moments, loss parameters).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = self.model.state();
        tensors.extend(self.opt.state_tensors());
        if let Some(s) = &self.bmse_sigma {
            tensors.push(("loss.bmse_sigma".into(), s.detach()));
        }
        tensors
    }

    /// Restores what [`Self::state_tensors`] saved, after `global_step` steps, and the
    /// weighting's state.
    pub fn restore(
        &mut self,
        ck: &Checkpoint,
        global_step: u64,
        weighting: &serde_json::Value,
    ) -> Result<()> {
        self.model.load_state(ck)?;
        self.opt.load_state(ck, global_step as i64)?;
        if let Some(s) = &self.bmse_sigma {
            let mut s = s.shallow_clone();
            ck.copy_into("loss.bmse_sigma", &mut s)?;
        }
        self.weighting.restore(weighting)?;
        Ok(())
    }

    fn opt_lr(&self) -> f64 {
        // The backbone's (or, when it is frozen, the heads') peak rate, for the history.
        self.peak_lr
    }
}
