//! The multi-task training loop.
//!
//! One step ([`MultiTaskStep::step`]):
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
//! Each epoch ends with a validation pass; the best epoch (lowest validation MSE) is saved to
//! `model/`, early stopping watches the same number, and a checkpoint makes `--resume` exact.
//! Test data, when given, is evaluated once at the end with the saved best model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use fintune_das::{Rarity, Stratification};
use fintune_dwa::{BatchCharacteristics, EpochObservation, StepObservation, TaskWeighting};
use fintune_model::weights::{self, Checkpoint};
use fintune_model::{
    HeadsConfig, ModelSpec, MultiTaskModel, PaddingSide, Param, Part, Probe, TextEncoder, Tuning,
};
use ndarray::ArrayView1;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

use crate::batching::{epoch_batches, eval_batches, Example, TrainBatch};
use crate::config::{Imbalance, Precision, TrainConfig};
use crate::metrics::{MetricReport, MetricsConfig, RegressionMetrics};
use crate::optim::{AdamW, AdamWConfig, GroupRates, LinearSchedule};
use crate::prepare::{self, Prepared, Skipped, SplitInfo};
use crate::progress::{EpochView, Progress, StepView};
use crate::run::{self, HistoryWriter, RunDir, StepRecord};
use crate::{Error, Result};

/// Options of one invocation (not part of the run's configuration).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue the run in the folder (its `checkpoint/`).
    pub resume: bool,
    /// Stop after this many epochs in total (an interruption on purpose; `--resume` continues).
    pub stop_after: Option<usize>,
}

/// What one epoch gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    pub train_loss_reg: f64,
    pub train_loss_cls: Option<f64>,
    /// Validation metrics after the epoch.
    pub val: MetricReport,
    /// Whether validation MSE improved (the model was saved).
    pub improved: bool,
    pub seconds: f64,
}

/// Where a run stands; saved in `checkpoint/trainer.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    epochs_done: usize,
    global_step: u64,
    best_val_mse: f64,
    best_epoch: Option<usize>,
    bad_epochs: usize,
    weighting: serde_json::Value,
    history_rows: usize,
    epochs: Vec<EpochLog>,
    train_seconds: f64,
    probe_seconds: f64,
    samples: u64,
    finished: bool,
}

/// Timing of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall time of this invocation (setup, training, evaluation, plots).
    pub wall_s: f64,
    /// Time inside training steps, over all invocations of the run.
    pub train_s: f64,
    /// Training samples per second inside steps.
    pub samples_per_s: f64,
    /// Share of step time spent on the per-task probe gradients (the weighting's overhead).
    pub probe_overhead_share: f64,
    /// Peak resident memory of this process, MiB.
    pub peak_rss_mib: Option<f64>,
}

/// Summary of the data a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub train: usize,
    pub val: usize,
    pub test: Option<usize>,
    pub split: SplitInfo,
    pub skipped: Vec<Skipped>,
    pub warnings: usize,
}

/// Score classes of the auxiliary task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrataInfo {
    /// `das`, `quantile`, `uniform` or `none`.
    pub method: String,
    pub classes: usize,
    pub thresholds: Vec<f64>,
    pub normalized_entropy: Option<f64>,
    pub explained_variance: Option<f64>,
}

/// `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Best epoch (1-based), chosen on validation MSE only.
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub stopped_early: bool,
    /// Validation metrics of the best epoch.
    pub val: MetricReport,
    /// Test metrics of the best model, when test data was given.
    pub test: Option<MetricReport>,
    pub epochs: Vec<EpochLog>,
    pub data: DataInfo,
    pub strata: StrataInfo,
    pub weighting: String,
    pub imbalance: String,
    pub tuning: String,
    pub timing: Timing,
}

/// The outcome of [`train`].
#[derive(Debug)]
pub enum Outcome {
    /// Training finished; metrics.json, plots and report.md are written.
    Finished(Box<RunMetrics>),
    /// Training stopped on purpose after `epochs` (`--stop-after`); resume to continue.
    Interrupted { epochs: usize },
}

/// Number of tasks: 1 (single-task) or 2.
fn num_tasks(p: &Prepared) -> usize {
    if p.strat.is_some() {
        2
    } else {
        1
    }
}

/// The training step: model, optimiser, weighting and the loss settings.
struct MultiTaskStep<'a> {
    model: &'a MultiTaskModel,
    opt: AdamW,
    schedule: LinearSchedule,
    weighting: Box<dyn TaskWeighting + Send>,
    probe: Probe,
    probe_params: Vec<Tensor>,
    imbalance: Imbalance,
    bmse_sigma: Option<Tensor>,
    class_weights: Option<Tensor>,
    class_freq: Vec<f64>,
    clip: f64,
    tasks: usize,
    total_steps: u64,
    peak_lr: f64,
}

/// What a step measured.
struct StepOut {
    record: StepRecord,
    losses: Vec<f64>,
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

    fn step(&mut self, b: &TrainBatch, epoch: usize, global_step: u64) -> Result<StepOut> {
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
            loss_reg: loss_vals[0],
            loss_cls: loss_vals.get(1).copied().unwrap_or(f64::NAN),
            w_reg: weights[0],
            w_cls: weights.get(1).copied().unwrap_or(f64::NAN),
            gnorm_reg: norms[0],
            gnorm_cls: norms.get(1).copied().unwrap_or(f64::NAN),
            batch_rarity: b.rarity_host.iter().map(|&r| f64::from(r)).sum::<f64>() / b.len() as f64,
            samples_per_s: b.len() as f64 / secs,
            step_ms: secs * 1e3,
            probe_ms,
            terms,
        };
        Ok(StepOut { record, losses: loss_vals })
    }

    fn opt_lr(&self) -> f64 {
        // The backbone's (or, when it is frozen, the heads') peak rate, for the history.
        self.peak_lr
    }
}

/// Predictions of a model over examples: scores, classes and class probabilities.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    pub score: Vec<f32>,
    pub class: Option<Vec<usize>>,
    pub probs: Option<Vec<Vec<f32>>>,
}

/// Runs `model` in evaluation mode over `examples` (in their order).
pub fn predict_examples(
    model: &MultiTaskModel,
    examples: &[Example],
    batch_size: usize,
    pad_id: i64,
    side: PaddingSide,
) -> Result<Predictions> {
    let device = model.device();
    let lengths: Vec<usize> = examples.iter().map(|e| e.enc.len()).collect();
    let mut score = vec![0f32; examples.len()];
    let k = model.num_classes();
    let mut probs: Option<Vec<Vec<f32>>> = k.map(|_| vec![vec![]; examples.len()]);
    tch::no_grad(|| -> Result<()> {
        for idx in eval_batches(&lengths, batch_size) {
            let b = TrainBatch::new(examples, &idx, pad_id, side, device);
            let out = model.forward_t(&b.inputs, false);
            let s = Vec::<f32>::try_from(out.score.to_kind(Kind::Float).to_device(Device::Cpu))?;
            for (j, &i) in idx.iter().enumerate() {
                score[i] = s[j];
            }
            if let (Some(lg), Some(pr)) = (&out.logits, probs.as_mut()) {
                let p = lg.softmax(-1, Kind::Float).to_device(Device::Cpu);
                let kk = p.size()[1] as usize;
                let flat = Vec::<f32>::try_from(p.reshape([-1]))?;
                for (j, &i) in idx.iter().enumerate() {
                    pr[i] = flat[j * kk..(j + 1) * kk].to_vec();
                }
            }
        }
        Ok(())
    })?;
    let class = probs.as_ref().map(|p| {
        p.iter()
            .map(|row| {
                row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
            })
            .collect()
    });
    Ok(Predictions { score, class, probs })
}

/// Metrics of `model` on labelled `examples`.
pub fn evaluate(
    model: &MultiTaskModel,
    examples: &[Example],
    batch_size: usize,
    pad_id: i64,
    side: PaddingSide,
    cfg: &MetricsConfig,
) -> Result<(MetricReport, Predictions)> {
    let p = predict_examples(model, examples, batch_size, pad_id, side)?;
    let gold: Vec<f32> = examples.iter().map(|e| e.score).collect();
    let report = RegressionMetrics::of(cfg.clone(), &p.score, &gold, p.class.as_deref());
    Ok((report, p))
}

/// The `extra` stored in `model/fintune.json`: the stratification (to label new data) and
/// the rarity model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelExtra {
    pub strat: Option<Stratification>,
    pub rarity: Rarity,
    pub metrics: MetricsConfig,
}

fn strata_info(cfg: &TrainConfig, s: Option<&Stratification>) -> StrataInfo {
    match s {
        None => StrataInfo {
            method: "none".into(),
            classes: 0,
            thresholds: vec![],
            normalized_entropy: None,
            explained_variance: None,
        },
        Some(s) => StrataInfo {
            method: format!("{:?}", cfg.task.strata).to_lowercase(),
            classes: s.num_classes(),
            thresholds: s.thresholds.clone(),
            normalized_entropy: Some(s.normalized_entropy),
            explained_variance: Some(s.explained_variance),
        },
    }
}

/// Trains as `cfg` says into the run folder `root` (see the module docs).
pub fn train(
    cfg: &TrainConfig,
    root: &Path,
    opts: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<Outcome> {
    let wall = Instant::now();
    cfg.validate().map_err(Error::Config)?;
    if cfg.optim.threads > 0 {
        tch::set_num_threads(cfg.optim.threads as i32);
    }
    let device = fintune_model::device_from_str(&cfg.optim.device)?;
    let tuning = cfg.model.tuning().map_err(Error::Config)?;
    let run = RunDir::create(root)?;
    let seed = cfg.optim.seed;

    // Data.
    let enc = TextEncoder::from_file(&cfg.model.backbone, cfg.model.max_len)?;
    let prep = prepare::prepare(cfg, &enc)?;
    let tasks = num_tasks(&prep);
    progress.message(&format!(
        "data: {} train / {} validation{} examples; strata {}{}",
        prep.train_ex.len(),
        prep.val_ex.len(),
        prep.test_ex.as_ref().map(|t| format!(" / {} test", t.len())).unwrap_or_default(),
        format!("{:?}", cfg.task.strata).to_lowercase(),
        prep.strat
            .as_ref()
            .map(|s| format!(" ({} classes, thresholds {:?})", s.num_classes(), s.thresholds))
            .unwrap_or_default(),
    ));
    for s in &prep.skipped {
        progress.message(&format!(
            "data: skipped {} invalid {} rows (first: {})",
            s.count,
            s.part,
            s.reasons.first().cloned().unwrap_or_default()
        ));
    }
    if !prep.warnings.is_empty() {
        progress.message(&format!(
            "data: {} warnings (first: {})",
            prep.warnings.len(),
            prep.warnings[0]
        ));
    }

    // Model.
    tch::manual_seed(seed as i64);
    let spec = ModelSpec {
        pooling: cfg.model.pooling,
        heads: HeadsConfig {
            num_classes: prep.strat.as_ref().map(|s| s.num_classes() as i64),
            ..cfg.model.heads.clone()
        },
        tuning: tuning.clone(),
        max_len: cfg.model.max_len,
        gradient_checkpointing: cfg.model.gradient_checkpointing,
        bf16: cfg.optim.precision == Precision::Bf16,
    };
    let model = MultiTaskModel::new(&cfg.model.backbone, &spec, device)?;
    let side = model.info().padding_side;
    let enc = enc.with_padding_side(side);
    let pad_id = enc.pad_id();
    let metrics_cfg = MetricsConfig {
        thresholds: prep.strat.as_ref().map(|s| s.thresholds.iter().map(|&t| t as f32).collect()),
        ..cfg.metrics.clone()
    };

    // Optimiser, schedule, weighting.
    let mut params: Vec<Param> = model.parameters();
    let bmse_sigma = (cfg.task.imbalance == Imbalance::Bmse).then(|| {
        Tensor::from_slice(&[cfg.task.bmse_sigma as f32]).to_device(device).set_requires_grad(true)
    });
    if let Some(s) = &bmse_sigma {
        params.push(Param {
            name: "loss.bmse_sigma".into(),
            tensor: s.shallow_clone(),
            part: Part::Head,
            decay: false,
        });
    }
    let o = &cfg.optim;
    let opt = AdamW::new(
        params,
        AdamWConfig {
            backbone: GroupRates { lr: o.lr, weight_decay: o.weight_decay },
            adapter: GroupRates { lr: o.adapter_lr, weight_decay: o.weight_decay },
            head: GroupRates { lr: o.head_lr, weight_decay: o.weight_decay },
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
    );
    let lengths: Vec<usize> = prep.train_ex.iter().map(|e| e.enc.len()).collect();
    let steps_per_epoch = prep.train_ex.len().div_ceil(o.batch_size);
    let total_steps = (steps_per_epoch * o.epochs) as u64;
    let weighting = cfg.task.weighting.build_with(tasks.max(2), &cfg.weighting)?;
    let weighting =
        if tasks == 1 { fintune_dwa::WeightingSpec::Equal.build(1)? } else { weighting };
    let probe_params = if tasks > 1 && cfg.task.probe != Probe::Representation {
        model.probe_parameters(cfg.task.probe)?
    } else {
        vec![]
    };
    let peak_lr = match tuning {
        Tuning::Frozen => o.head_lr,
        Tuning::Lora(_) => o.adapter_lr,
        _ => o.lr,
    };
    let mut stepper = MultiTaskStep {
        model: &model,
        opt,
        schedule: LinearSchedule::new(total_steps, o.warmup),
        weighting,
        probe: cfg.task.probe,
        probe_params,
        imbalance: cfg.task.imbalance,
        bmse_sigma,
        class_weights: prep.class_weights.as_ref().map(|w| Tensor::from_slice(w).to_device(device)),
        class_freq: prep.class_freq.clone(),
        clip: o.clip,
        tasks,
        total_steps,
        peak_lr,
    };
    let term_columns: Vec<String> = if tasks > 1 {
        stepper
            .weighting
            .term_names()
            .iter()
            .flat_map(|n| ["reg", "cls"].map(|t| format!("{n}_{t}")))
            .collect()
    } else {
        vec![]
    };

    // Fresh run or resume.
    let mut state = if opts.resume {
        let st: TrainerState =
            run::read_json(&run.checkpoint().join("trainer.json")).map_err(|e| Error::Resume {
                path: run.root.clone(),
                reason: format!("no readable checkpoint ({e})"),
            })?;
        if st.finished {
            return Err(Error::Resume {
                path: run.root.clone(),
                reason: "the run already finished".into(),
            });
        }
        let ck = Checkpoint::open_files(&[run.checkpoint().join("state.safetensors")])?;
        model.load_state(&ck)?;
        stepper.opt.load_state(&ck, st.global_step as i64)?;
        if let Some(s) = &stepper.bmse_sigma {
            let mut s = s.shallow_clone();
            ck.copy_into("loss.bmse_sigma", &mut s)?;
        }
        stepper.weighting.restore(&st.weighting)?;
        progress.message(&format!(
            "resuming {} after epoch {} (step {})",
            run.root.display(),
            st.epochs_done,
            st.global_step
        ));
        st
    } else {
        std::fs::write(run.config(), cfg.to_toml()).map_err(|e| Error::io(run.config(), e))?;
        run::write_json(&run.das(), &prep.strat)?;
        TrainerState {
            epochs_done: 0,
            global_step: 0,
            best_val_mse: f64::INFINITY,
            best_epoch: None,
            bad_epochs: 0,
            weighting: serde_json::Value::Null,
            history_rows: 0,
            epochs: vec![],
            train_seconds: 0.0,
            probe_seconds: 0.0,
            samples: 0,
            finished: false,
        }
    };
    let mut history = HistoryWriter::open(
        &run.history(),
        &term_columns,
        opts.resume.then_some(state.history_rows),
    )?;
    let extra = serde_json::to_value(ModelExtra {
        strat: prep.strat.clone(),
        rarity: prep.rarity.clone(),
        metrics: metrics_cfg.clone(),
    })
    .expect("serialisable");

    progress.start(total_steps, state.global_step);
    let method_name = if tasks > 1 { cfg.task.weighting.to_string() } else { "single-task".into() };
    let mut stopped_early = false;
    while state.epochs_done < o.epochs {
        if state.bad_epochs >= o.patience {
            stopped_early = true;
            progress.message(&format!(
                "early stopping: no better validation MSE for {} epochs",
                o.patience
            ));
            break;
        }
        if opts.stop_after.is_some_and(|n| state.epochs_done >= n) {
            history.flush()?;
            progress.finish();
            return Ok(Outcome::Interrupted { epochs: state.epochs_done });
        }
        let epoch = state.epochs_done;
        let t_epoch = Instant::now();
        // Dropout and the data order depend on (seed, epoch) only: resuming is exact.
        tch::manual_seed(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64) as i64);
        let batches = epoch_batches(&lengths, o.batch_size, seed, epoch as u64);
        let mut sums = vec![0.0; tasks];
        for (bi, idx) in batches.iter().enumerate() {
            let b = TrainBatch::new(&prep.train_ex, idx, pad_id, side, device);
            let out = match stepper.step(&b, epoch, state.global_step) {
                Ok(o) => o,
                Err(Error::NonFinite { epoch, step, loss_reg, loss_cls, .. }) => {
                    history.flush()?;
                    return Err(Error::NonFinite {
                        epoch,
                        step,
                        loss_reg,
                        loss_cls,
                        kept: if state.epochs_done > 0 {
                            format!(
                                "the last good checkpoint (epoch {}) is in {}",
                                state.epochs_done,
                                run.checkpoint().display()
                            )
                        } else {
                            "no epoch finished, so there is no checkpoint".into()
                        },
                    });
                }
                Err(e) => return Err(e),
            };
            for (s, l) in sums.iter_mut().zip(&out.losses) {
                *s += l;
            }
            history.push(&out.record, &method_name)?;
            state.history_rows += 1;
            state.global_step += 1;
            state.samples += b.len() as u64;
            state.train_seconds += out.record.step_ms / 1e3;
            state.probe_seconds += out.record.probe_ms / 1e3;
            progress.step(&StepView {
                epoch,
                epochs: o.epochs,
                step_in_epoch: bi,
                steps_in_epoch: batches.len(),
                global_step: state.global_step,
                total_steps,
                loss_reg: out.losses[0],
                loss_cls: out.losses.get(1).copied(),
                weights: vec![out.record.w_reg, out.record.w_cls]
                    .into_iter()
                    .filter(|w| !w.is_nan())
                    .collect(),
                lr: out.record.lr,
                samples_per_s: out.record.samples_per_s,
            });
        }
        history.flush()?;
        let means: Vec<f64> = sums.iter().map(|s| s / batches.len().max(1) as f64).collect();
        if tasks > 1 {
            stepper
                .weighting
                .end_epoch(&EpochObservation { epoch: epoch as u32, mean_losses: &means })?;
        }
        let (val, _) =
            evaluate(&model, &prep.val_ex, o.eval_batch_size, pad_id, side, &metrics_cfg)?;
        let improved = val.mse < state.best_val_mse;
        if improved {
            state.best_val_mse = val.mse;
            state.best_epoch = Some(epoch + 1);
            state.bad_epochs = 0;
            model.save(&run.model(), extra.clone())?;
        } else {
            state.bad_epochs += 1;
        }
        let seconds = t_epoch.elapsed().as_secs_f64();
        progress.epoch(&EpochView {
            epoch,
            epochs: o.epochs,
            train_loss: means[0],
            val_mse: val.mse,
            val_pearson: val.pearson,
            val_acc_polarity: val.acc_polarity,
            improved,
            elapsed: t_epoch.elapsed(),
        });
        state.epochs.push(EpochLog {
            epoch: epoch + 1,
            train_loss_reg: means[0],
            train_loss_cls: means.get(1).copied(),
            val,
            improved,
            seconds,
        });
        state.epochs_done += 1;
        state.weighting = stepper.weighting.state();
        save_checkpoint(&run, &model, &stepper, &state)?;
    }
    progress.finish();

    // Final evaluation with the saved best model.
    let best_epoch = state.best_epoch.ok_or_else(|| Error::Config("no epoch finished".into()))?;
    let (best, _) = MultiTaskModel::load(&run.model(), device)?;
    let (val, val_pred) =
        evaluate(&best, &prep.val_ex, o.eval_batch_size, pad_id, side, &metrics_cfg)?;
    let test = match &prep.test_ex {
        Some(t) => Some(evaluate(&best, t, o.eval_batch_size, pad_id, side, &metrics_cfg)?),
        None => None,
    };
    state.finished = true;
    save_checkpoint(&run, &model, &stepper, &state)?;
    let metrics = RunMetrics {
        best_epoch,
        epochs_run: state.epochs_done,
        stopped_early,
        val,
        test: test.as_ref().map(|t| t.0.clone()),
        epochs: state.epochs.clone(),
        data: DataInfo {
            train: prep.train_ex.len(),
            val: prep.val_ex.len(),
            test: prep.test_ex.as_ref().map(Vec::len),
            split: prep.split.clone(),
            skipped: prep.skipped.clone(),
            warnings: prep.warnings.len(),
        },
        strata: strata_info(cfg, prep.strat.as_ref()),
        weighting: method_name,
        imbalance: format!("{:?}", cfg.task.imbalance).to_lowercase(),
        tuning: tuning.to_string(),
        timing: Timing {
            wall_s: wall.elapsed().as_secs_f64(),
            train_s: state.train_seconds,
            samples_per_s: state.samples as f64 / state.train_seconds.max(1e-9),
            probe_overhead_share: state.probe_seconds / state.train_seconds.max(1e-9),
            peak_rss_mib: run::peak_rss_mib(),
        },
    };
    run::write_json(&run.metrics(), &metrics)?;
    let eval_set: (&str, &[Example], &Predictions) = match (&prep.test_ex, &test) {
        (Some(t), Some((_, p))) => ("test", t, p),
        _ => ("validation", &prep.val_ex, &val_pred),
    };
    let plot_notes = crate::report::plots(&run, &prep, &metrics, eval_set);
    crate::report::write(&run, cfg, &metrics, &plot_notes, eval_set.0)?;
    Ok(Outcome::Finished(Box::new(metrics)))
}

fn save_checkpoint(
    run: &RunDir,
    model: &MultiTaskModel,
    stepper: &MultiTaskStep<'_>,
    state: &TrainerState,
) -> Result<()> {
    let dir = run.checkpoint();
    let tmp = run.root.join(".checkpoint.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut tensors = model.state();
    tensors.extend(stepper.opt.state_tensors());
    if let Some(s) = &stepper.bmse_sigma {
        tensors.push(("loss.bmse_sigma".into(), s.detach()));
    }
    weights::save(&tmp.join("state.safetensors"), &tensors, None)?;
    run::write_json(&tmp.join("trainer.json"), state)?;
    if dir.exists() {
        let old = run.root.join(".checkpoint.old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&dir, &old).map_err(|e| Error::io(&dir, e))?;
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// The run folder `runs/<timestamp>-<name>` for a config without `out`.
pub fn default_run_dir(cfg: &TrainConfig) -> PathBuf {
    let name = cfg.name.clone().unwrap_or_else(|| {
        cfg.data
            .train
            .first()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    });
    PathBuf::from("runs").join(format!("{}-{name}", chrono::Local::now().format("%Y%m%d-%H%M%S")))
}
