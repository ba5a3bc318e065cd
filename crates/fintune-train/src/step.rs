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
use crate::config::{Imbalance, Resolved, TaskLoss};
use crate::dist::DataParallel;
use crate::further::{HeadRef, StepTask};
use crate::optim::{AdamW, AdamWConfig, GroupRates, LayerDecay, LinearSchedule};
use crate::prepare::Prepared;
use crate::run::history::{StepRecord, TaskStep};
use crate::{Error, Result};

/// The training step: model, optimiser, weighting and the loss settings.
pub struct MultiTaskStep<'a> {
    model: &'a MultiTaskModel,
    pub(crate) opt: AdamW,
    schedule: LinearSchedule,
    pub(crate) weighting: Box<dyn TaskWeighting + Send>,
    probe: Probe,
    probe_params: Vec<Tensor>,
    /// Where main-task-first DWA measures gradients when the batch mixes tasks with their own
    /// rows: the last shared layer's trainable parameters. At the representation each task's
    /// gradient lives on its own rows only, so two tasks' gradients there never overlap and
    /// their cosine is exactly 0 (the auxiliaries would get weight 0 at every step). Empty
    /// otherwise.
    agreement_params: Vec<Tensor>,
    imbalance: Imbalance,
    pub(crate) bmse_sigma: Option<Tensor>,
    class_weights: Option<Tensor>,
    class_freq: Vec<f64>,
    clip: f64,
    tasks: usize,
    step_tasks: Vec<StepTask>,
    extra_heads: usize,
    /// `dwa-main`: per-sample rarity weights of the main task's MSE.
    main_sample_weights: Option<fintune_dwa::SampleWeightConfig>,
    total_steps: u64,
    peak_lr: f64,
    /// Data-parallel training: the group and the variables whose gradients are summed.
    dp: Option<(&'a DataParallel, fintune_dist::GradBuckets)>,
    /// Host copy of the main task's class weights (the global cross-entropy denominator).
    class_weights_host: Option<Vec<f32>>,
    /// Seconds spent in the gradient allreduce.
    comm_seconds: f64,
    /// Steps this value has taken (in this invocation).
    steps_taken: u64,
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
    /// The tasks, in order (the main task first; see [`crate::further::step_tasks`]).
    pub tasks: &'p [StepTask],
    /// Training share of each score class of the main task (empty without classes).
    pub class_freq: &'p [f64],
    /// Cross-entropy class weights of the main task's score classes.
    pub class_weights: Option<&'p [f32]>,
    /// Batches per epoch (for the schedule's length).
    pub steps_per_epoch: usize,
}

impl<'p> StepData<'p> {
    /// What `prep` gives the step, with `tasks` and `steps_per_epoch` batches per epoch.
    pub fn of(prep: &'p Prepared, tasks: &'p [StepTask], steps_per_epoch: usize) -> Self {
        StepData {
            tasks,
            class_freq: &prep.class_freq,
            class_weights: prep.class_weights.as_deref(),
            steps_per_epoch,
        }
    }
}

/// The outputs of every head on one batch.
struct HeadOuts {
    score: Tensor,
    logits: Option<Tensor>,
    extra: Vec<Tensor>,
}

impl HeadOuts {
    fn of(&self, h: HeadRef) -> &Tensor {
        match h {
            HeadRef::Main => &self.score,
            HeadRef::Cls => self.logits.as_ref().expect("a task on the classification head"),
            HeadRef::Extra(i) => &self.extra[i],
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
        let tasks = data.tasks.len();
        let total_steps = (data.steps_per_epoch * o.epochs) as u64;
        let extra_heads = model.spec().heads.extra.len();
        let mixed = data.tasks.iter().any(|t| t.src != 0);
        if (extra_heads > 0 || mixed) && task.probe != Probe::Representation {
            return Err(Error::Config(format!(
                "task.probe = {:?}: runs with further tasks measure gradients at the \
                 representation only; use --probe representation",
                task.probe
            )));
        }
        let mut wcfg = cfg.raw.weighting.clone();
        if wcfg.task_kinds.is_none() && tasks > 1 {
            wcfg.task_kinds = Some(data.tasks.iter().map(StepTask::kind).collect());
        }
        // Built (and so checked) even for single-task runs, which then weight their one task 1.
        let weighting = task.weighting.build_with(tasks.max(2), &wcfg)?;
        let weighting = if tasks == 1 { WeightingSpec::Equal.build(1)? } else { weighting };
        let probe_params = if tasks > 1 && task.probe != Probe::Representation {
            model.probe_parameters(task.probe)?
        } else {
            vec![]
        };
        let agreement_params = if tasks > 1
            && mixed
            && task.weighting == WeightingSpec::DwaMain
            && task.probe == Probe::Representation
            // A frozen backbone shares no trainable parameter: nothing to agree on.
            && !matches!(cfg.tuning, Tuning::Frozen)
        {
            model.probe_parameters(Probe::LastLayer)?
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
            agreement_params,
            imbalance: task.imbalance,
            bmse_sigma,
            class_weights: data.class_weights.map(|w| Tensor::from_slice(w).to_device(device)),
            class_freq: data.class_freq.to_vec(),
            clip: o.clip,
            tasks,
            step_tasks: data.tasks.to_vec(),
            extra_heads,
            main_sample_weights: (tasks > 1 && task.weighting == WeightingSpec::DwaMain)
                .then(|| cfg.raw.weighting.dwa_main.sample_weights.clone()),
            total_steps,
            peak_lr,
            dp: None,
            class_weights_host: data.class_weights.map(<[f32]>::to_vec),
            comm_seconds: 0.0,
            steps_taken: 0,
        })
    }

    /// Makes the step one rank's part of a data-parallel step over `dp` (see
    /// [`crate::dist`]): every rank's variables are set to rank 0's (after checking that the
    /// ranks hold the same variable names), and from now on the batches given to
    /// [`Self::step`] must be slices ([`TrainBatch::slice`]).
    pub fn data_parallel(mut self, dp: &'a DataParallel) -> Result<Self> {
        let mut named: Vec<(String, Tensor)> =
            self.model.parameters().into_iter().map(|p| (p.name, p.tensor)).collect();
        if let Some(s) = &self.bmse_sigma {
            named.push(("loss.bmse_sigma".into(), s.shallow_clone()));
        }
        let grads =
            fintune_dist::GradBuckets::from_named(named, fintune_dist::DEFAULT_BUCKET_BYTES);
        dp.broadcast_params(&grads)?;
        self.dp = Some((dp, grads));
        Ok(self)
    }

    /// Seconds spent summing gradients across ranks so far (0 in one process).
    pub fn comm_seconds(&self) -> f64 {
        self.comm_seconds
    }

    /// Steps taken by this value (in this invocation).
    pub fn steps_taken(&self) -> u64 {
        self.steps_taken
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
    fn bmse_loss(&self, score: &Tensor, y: &Tensor) -> Tensor {
        // Ren et al. 2022, batch-based Monte-Carlo: logits_ij = -(p_i - y_j)^2 / 2s^2,
        // cross-entropy towards the diagonal, scaled by the detached 2s^2.
        let var2 = self.bmse_sigma.as_ref().expect("bmse has a sigma").square() * 2.0;
        let diff = score.unsqueeze(1) - y.unsqueeze(0);
        let logits = -(diff.square() / &var2);
        let target = Tensor::arange(score.size()[0], (Kind::Int64, score.device()));
        logits.cross_entropy_for_logits(&target) * var2.detach()
    }

    /// Task `t`'s loss on its rows of `b` (the whole batch when every row is its own).
    fn task_loss(&self, t: &StepTask, outs: &HeadOuts, b: &TrainBatch) -> Result<Tensor> {
        let out = outs.of(t.head);
        let rows = b.rows_of(t.src);
        if rows.as_ref().is_some_and(Vec::is_empty) {
            return Ok(out.sum(Kind::Float) * 0.0);
        }
        let idx = rows.as_ref().map(|r| Tensor::from_slice(r).to_device(out.device()));
        let sel = |x: &Tensor| match &idx {
            None => x.shallow_clone(),
            Some(i) => x.index_select(0, i),
        };
        let pred = sel(out);
        if let Some(g) = &b.global {
            return self.task_loss_share(t, &pred, &sel, rows.as_deref(), b, g);
        }
        Ok(match (t.classes, &t.soft) {
            (None, _) => {
                let y = sel(&b.scores);
                match t.loss {
                    TaskLoss::Mse if t.src == 0 && self.main_sample_weights.is_some() => {
                        let rarity: Vec<f64> = match &rows {
                            None => b.rarity_host.iter().map(|&r| f64::from(r)).collect(),
                            Some(r) => {
                                r.iter().map(|&i| f64::from(b.rarity_host[i as usize])).collect()
                            }
                        };
                        let cfg = self.main_sample_weights.as_ref().expect("checked");
                        let w: Vec<f32> = fintune_dwa::rarity_sample_weights(&rarity, cfg)?
                            .into_iter()
                            .map(|v| v as f32)
                            .collect();
                        let w = Tensor::from_slice(&w).to_device(pred.device());
                        ((&pred - &y).square() * w).mean(Kind::Float)
                    }
                    TaskLoss::Lds => ((&pred - &y).square() * sel(&b.rarity)).mean(Kind::Float),
                    TaskLoss::Bmse => self.bmse_loss(&pred, &y),
                    _ => pred.mse_loss(&y, Reduction::Mean),
                }
            }
            (Some(_), None) => {
                let w = if t.src == 0 { self.class_weights.as_ref() } else { None };
                pred.cross_entropy_loss(&sel(&b.classes), w, Reduction::Mean, -100, 0.0)
            }
            (Some(k), Some((thresholds, sigma))) => {
                let mut q = Vec::with_capacity(pred.size()[0] as usize * k);
                let picked: Vec<usize> = match &rows {
                    None => (0..b.len()).collect(),
                    Some(r) => r.iter().map(|&i| i as usize).collect(),
                };
                for i in picked {
                    let row = fintune_das::soft_targets(thresholds, b.scores_host[i], *sigma)
                        .map_err(|e| Error::Config(format!("task `{}`: {e}", t.name)))?;
                    q.extend(row.iter().map(|&v| v as f32));
                }
                let q = Tensor::from_slice(&q).view([-1, k as i64]).to_device(pred.device());
                -(q * pred.log_softmax(-1, Kind::Float))
                    .sum_dim_intlist(1, false, Kind::Float)
                    .mean(Kind::Float)
            }
        })
    }

    /// A data-parallel rank's share of task `t`'s loss on the global batch `g`: its rows'
    /// terms summed over the global denominator (the task's rows, or the sum of their class
    /// weights), so that the ranks' shares add up to the one-process loss.
    fn task_loss_share(
        &self,
        t: &StepTask,
        pred: &Tensor,
        sel: &dyn Fn(&Tensor) -> Tensor,
        rows: Option<&[i64]>,
        b: &TrainBatch,
        g: &crate::batching::GlobalRows,
    ) -> Result<Tensor> {
        let n_global = g.count(t.src).max(1) as f64;
        let local: Vec<usize> = match rows {
            None => (0..b.len()).collect(),
            Some(r) => r.iter().map(|&i| i as usize).collect(),
        };
        let device = pred.device();
        Ok(match (t.classes, &t.soft) {
            (None, _) => {
                let y = sel(&b.scores);
                let sq = (pred - &y).square();
                match t.loss {
                    TaskLoss::Mse if t.src == 0 && self.main_sample_weights.is_some() => {
                        let rarity: Vec<f64> = (0..g.src.len())
                            .filter(|&i| g.src[i] == 0)
                            .map(|i| f64::from(g.rarity[i]))
                            .collect();
                        let cfg = self.main_sample_weights.as_ref().expect("checked");
                        let w_all = fintune_dwa::rarity_sample_weights(&rarity, cfg)?;
                        let start = if g.empty { 0 } else { g.before(0) };
                        let w: Vec<f32> =
                            w_all[start..start + local.len()].iter().map(|&v| v as f32).collect();
                        let w = Tensor::from_slice(&w).to_device(device);
                        (sq * w).sum(Kind::Float) / n_global
                    }
                    TaskLoss::Lds => (sq * sel(&b.rarity)).sum(Kind::Float) / n_global,
                    TaskLoss::Bmse => {
                        let var2 =
                            self.bmse_sigma.as_ref().expect("bmse has a sigma").square() * 2.0;
                        let y_all: Vec<f32> = (0..g.src.len())
                            .filter(|&i| g.src[i] == t.src)
                            .map(|i| g.scores[i])
                            .collect();
                        let y_all = Tensor::from_slice(&y_all).to_device(device);
                        let start = if g.empty { 0 } else { g.before(t.src) as i64 };
                        let n = local.len() as i64;
                        let target = Tensor::arange_start(start, start + n, (Kind::Int64, device));
                        let logits = -((pred.unsqueeze(1) - y_all.unsqueeze(0)).square() / &var2);
                        let nll = -logits.log_softmax(-1, Kind::Float).gather(
                            1,
                            &target.unsqueeze(1),
                            false,
                        );
                        nll.sum(Kind::Float) / n_global * var2.detach()
                    }
                    _ => sq.sum(Kind::Float) / n_global,
                }
            }
            (Some(_), None) => {
                let cls = sel(&b.classes);
                match (t.src == 0).then_some(()).and(self.class_weights.as_ref()) {
                    Some(w) => {
                        let host = self.class_weights_host.as_ref().expect("with the tensor");
                        let denom: f64 = (0..g.src.len())
                            .filter(|&i| g.src[i] == t.src)
                            .map(|i| f64::from(host[g.classes[i]]))
                            .sum();
                        pred.cross_entropy_loss(&cls, Some(w), Reduction::Sum, -100, 0.0)
                            / denom.max(f64::MIN_POSITIVE)
                    }
                    None => {
                        pred.cross_entropy_loss::<Tensor>(&cls, None, Reduction::Sum, -100, 0.0)
                            / n_global
                    }
                }
            }
            (Some(k), Some((thresholds, sigma))) => {
                let mut q = Vec::with_capacity(local.len() * k);
                for &i in &local {
                    let row = fintune_das::soft_targets(thresholds, b.scores_host[i], *sigma)
                        .map_err(|e| Error::Config(format!("task `{}`: {e}", t.name)))?;
                    q.extend(row.iter().map(|&v| v as f32));
                }
                let q =
                    Tensor::from_slice(&q).view([local.len() as i64, k as i64]).to_device(device);
                -(q * pred.log_softmax(-1, Kind::Float)).sum(Kind::Float) / n_global
            }
        })
    }

    fn losses(&self, outs: &HeadOuts, b: &TrainBatch) -> Result<Vec<Tensor>> {
        let losses: Vec<Tensor> =
            self.step_tasks.iter().map(|t| self.task_loss(t, outs, b)).collect::<Result<_>>()?;
        // A rank without rows of this batch computes a stand-in row that counts zero.
        Ok(match &b.global {
            Some(g) if g.empty => losses.into_iter().map(|l| l * 0.0).collect(),
            _ => losses,
        })
    }

    /// Every head's outputs without dropout (the losses after a step).
    fn eval_outs(&self, b: &TrainBatch) -> HeadOuts {
        if self.extra_heads == 0 {
            let out = self.model.forward_t(&b.inputs, false);
            HeadOuts { score: out.score, logits: out.logits, extra: vec![] }
        } else {
            let z = self.model.forward_backbone(&b.inputs, false);
            let (score, logits) = self.model.forward_heads(&z, false);
            HeadOuts { score, logits, extra: self.model.forward_extra_heads(&z, false) }
        }
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
            let extra = self.model.forward_extra_heads(&ph, true);
            let losses = self.losses(&HeadOuts { score, logits, extra }, b)?;
            (Some(pooled), Some(ph), losses)
        } else {
            let out = self.model.forward_t(&b.inputs, true);
            let outs = HeadOuts { score: out.score, logits: out.logits, extra: vec![] };
            let losses = self.losses(&outs, b)?;
            (None, None, losses)
        };
        let mut loss_vals: Vec<f64> = losses.iter().map(scalar).collect();
        if let Some((dp, _)) = &self.dp {
            // The ranks' shares add up to the global losses.
            dp.sum(&mut loss_vals)?;
        }
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
        // Gradients on parameters (a parameter probe, or the agreement parameters) rather than
        // on the representation's rows.
        let on_params = pooled_h.is_none() || !self.agreement_params.is_empty();
        if want_norms {
            for (i, l) in losses.iter().enumerate() {
                let mut grads = match (&pooled, &pooled_h) {
                    (Some(pooled), Some(ph)) if !self.agreement_params.is_empty() => {
                        // dL_i/dz on the rows, then on through the last shared layer only.
                        let rows = Tensor::run_backward(&[l], &[ph], true, false);
                        let s = (pooled * rows[0].detach()).sum(Kind::Float);
                        Tensor::run_backward(&[s], &self.agreement_params, true, false)
                    }
                    (_, Some(ph)) => Tensor::run_backward(&[l], &[ph], true, false),
                    (_, None) => Tensor::run_backward(&[l], &self.probe_params, true, false),
                };
                if let (Some((dp, _)), true) = (&self.dp, on_params) {
                    // Parameter probes: the ranks' gradients add up to the global one.
                    grads = grads.iter().map(Tensor::contiguous).collect();
                    dp.sum_tensors(&mut grads)?;
                }
                norms[i] = fintune_model::kernels::total_squared_norm(&grads)?;
                if need_vecs {
                    let cat =
                        Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0);
                    flat.push(Vec::<f32>::try_from(
                        cat.to_kind(Kind::Float).to_device(Device::Cpu),
                    )?);
                }
            }
            if let (Some((dp, _)), Some(ph), false) = (&self.dp, &pooled_h, on_params) {
                // The representation's rows are split between ranks: squared norms add up,
                // and the gradient vectors are the ranks' rows in rank order.
                dp.sum(&mut norms)?;
                if need_vecs {
                    let g = b.global.as_ref().expect("a data-parallel batch is a slice");
                    let width = ph.size()[1] as usize;
                    for v in &mut flat {
                        if g.empty {
                            v.clear();
                        }
                        *v = dp.gather_rows(v, &g.rows_per_rank, width)?;
                    }
                }
            }
            for n in &mut norms {
                *n = n.sqrt();
            }
        }
        let probe_ms = tp.elapsed().as_secs_f64() * 1e3;

        // Weights.
        let (weights, terms, combined) = if self.tasks == 1 {
            (vec![1.0], vec![], None)
        } else {
            // The batch characteristics are the main task's rows'; without score classes the
            // classification term sees one class (rarity 1).
            // In data-parallel training, the global batch's (which every rank knows).
            let (src, rarity_all, classes_all) = match &b.global {
                None => (&b.src_host, &b.rarity_host, &b.classes_host),
                Some(g) => (&g.src, &g.rarity, &g.classes),
            };
            let main_rows: Vec<usize> = (0..src.len()).filter(|&i| src[i] == 0).collect();
            let rarity: Vec<f64> = main_rows.iter().map(|&i| f64::from(rarity_all[i])).collect();
            let one = [1.0];
            let class_freq: &[f64] =
                if self.class_freq.is_empty() { &one } else { &self.class_freq };
            let mut hist = vec![0u64; class_freq.len()];
            for &i in &main_rows {
                hist[if self.class_freq.is_empty() { 0 } else { classes_all[i] }] += 1;
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
                    class_frequencies: class_freq,
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
                    Some(c) => {
                        let all = c.gradient.as_slice().expect("contiguous");
                        // A rank backpropagates its rows of the combined gradient.
                        match &b.global {
                            Some(gl) if gl.empty => ph.zeros_like(),
                            gl => {
                                let rows = match gl {
                                    None => all,
                                    Some(gl) => {
                                        let w = ph.size()[1] as usize;
                                        &all[gl.lo * w..(gl.lo + b.len()) * w]
                                    }
                                };
                                Tensor::from_slice(rows)
                                    .view(ph.size().as_slice())
                                    .to_device(ph.device())
                            }
                        }
                    }
                    None => ph.grad(),
                };
                self.model.backward_backbone(pooled, &g);
            }
            _ => {
                if let Some(c) = &combined {
                    // Parameter probe: the probe parameters take the combined gradient (each
                    // rank 1/W of it: the gradient allreduce sums them).
                    let mut flat_g = Tensor::from_slice(c.gradient.as_slice().expect("contiguous"));
                    if let Some((dp, _)) = &self.dp {
                        flat_g /= dp.world_size() as f64;
                    }
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
        if let Some((dp, grads)) = &self.dp {
            let tc = Instant::now();
            dp.sum_grads(grads)?;
            self.comm_seconds += tc.elapsed().as_secs_f64();
        }
        self.opt.clip_grad_norm(self.clip);
        let factor = self.schedule.factor(global_step);
        self.opt.step(factor);

        if self.tasks > 1 && self.weighting.needs_post_step_losses() {
            let mut after: Vec<f64> = tch::no_grad(|| -> Result<Vec<f64>> {
                let outs = self.eval_outs(b);
                Ok(self.losses(&outs, b)?.iter().map(scalar).collect())
            })?;
            if let Some((dp, _)) = &self.dp {
                dp.sum(&mut after)?;
            }
            self.weighting.after_step(&after)?;
        }

        self.steps_taken += 1;
        let secs = t0.elapsed().as_secs_f64();
        let record = StepRecord {
            epoch: epoch + 1,
            step: global_step + 1,
            lr: self.opt_lr() * factor,
            tasks: (0..self.tasks)
                .map(|i| TaskStep { loss: loss_vals[i], weight: weights[i], grad_norm: norms[i] })
                .collect(),
            batch_rarity: match &b.global {
                None => b.rarity_host.iter().map(|&r| f64::from(r)).sum::<f64>() / b.len() as f64,
                Some(g) => g.rarity.iter().map(|&r| f64::from(r)).sum::<f64>() / g.src.len() as f64,
            },
            // The job's throughput: the global batch's rows.
            samples_per_s: b.global_len() as f64 / secs,
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

    /// The tasks' names, in order (the per-task columns of `history.csv`).
    pub fn task_names(&self) -> Vec<&str> {
        self.step_tasks.iter().map(|t| t.name.as_str()).collect()
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
