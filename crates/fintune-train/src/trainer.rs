//! [`train`]: the orchestration of a run. Resolve the configuration, check the run folder,
//! prepare the data, build the model and the step ([`crate::step`]), run the epochs (each ends
//! with a validation pass ([`crate::eval`]); the best epoch, lowest validation MSE, is saved to
//! `model/`, early stopping watches the same number, and a checkpoint makes `--resume` exact),
//! then evaluate the best model once on the test data and write `metrics.json`, the plots and
//! `report.md` ([`crate::report`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use fintune_das::Stratification;
use fintune_dwa::EpochObservation;
use fintune_model::{HeadsConfig, ModelSpec, MultiTaskModel, PaddingSide, TextEncoder};

use crate::batching::{mixed_epoch_batches, task_slots, AuxStream, Example, TrainBatch};
use crate::config::{Precision, Resolved, Strata, TrainConfig};
use crate::dist::DataParallel;
use crate::eval::{evaluate, Fusion, ModelExtra, Predictions};
use crate::further::FurtherInfo;
use crate::init::InitInfo;
use crate::metrics::MetricsConfig;
use crate::prepare::{self, Prepared};
use crate::progress::{EpochView, Progress, StepView};
use crate::run::checkpoint::{self, TrainerState};
use crate::run::history::{self, HistoryWriter};
use crate::run::metrics::{
    DataInfo, DataParallelTiming, EpochLog, Method, RunMetrics, StrataInfo, Timing,
};
use crate::run::{self, RunDir};
use crate::step::{MultiTaskStep, StepData};
use crate::{Error, Result};

/// Options of one invocation (not part of the run's configuration).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue the run in the folder (its `checkpoint/`).
    pub resume: bool,
    /// Stop after this many epochs in total (an interruption on purpose; `--resume` continues).
    pub stop_after: Option<usize>,
    /// Replace a finished run, or a run with another configuration, in the folder.
    pub overwrite: bool,
    /// Train as one rank of a data-parallel job ([`crate::dist`]): rank 0 writes the run
    /// folder, the others compute their slices of every batch.
    pub dist: Option<std::rc::Rc<DataParallel>>,
}

/// The outcome of [`train`].
#[derive(Debug)]
pub enum Outcome {
    /// Training finished; metrics.json, plots and report.md are written.
    Finished(Box<RunMetrics>),
    /// Training stopped on purpose after `epochs` (`--stop-after`); resume to continue.
    Interrupted {
        /// Epochs done.
        epochs: usize,
    },
    /// This rank (not 0) of a data-parallel job finished its part; rank 0 evaluated the model
    /// and wrote the run folder.
    Worker {
        /// This rank.
        rank: usize,
    },
}

/// The loop's view of everything [`train`] set up.
struct Setup<'a> {
    cfg: &'a Resolved,
    /// The configuration as declared (run folder, checkpoint and report).
    declared: &'a TrainConfig,
    /// The training examples of every task: the main task's (`prep.train_ex`) first.
    train_all: &'a [Example],
    /// The main task's rows per batch.
    main_slots: usize,
    /// The further tasks' examples and rows per batch.
    streams: &'a [AuxStream],
    /// Pick a prediction fusion on validation at the end (soft ordinal classes).
    fuse: bool,
    run: &'a RunDir,
    prep: &'a Prepared,
    model: &'a MultiTaskModel,
    pad_id: i64,
    side: PaddingSide,
    metrics_cfg: MetricsConfig,
    extra: serde_json::Value,
    method: Method,
    /// The data-parallel job, when this process is one of its ranks.
    dp: Option<&'a DataParallel>,
}

impl Setup<'_> {
    /// Whether this process writes the run folder (rank 0, or the only process).
    fn leader(&self) -> bool {
        self.dp.is_none_or(DataParallel::is_leader)
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
    let declared = cfg.resolve()?.raw;
    let plan = declared.plan()?;
    let cfg = plan.core.resolve()?;
    let raw = &cfg.raw;
    for w in &cfg.warnings {
        progress.message(&format!("warning: {w}"));
    }
    let run = RunDir::new(root);
    let dp = opts.dist.as_deref();
    let leader = dp.is_none_or(DataParallel::is_leader);
    // The folder's lock, from the checks to the end of the run; a folder created below is
    // locked (and checked again) right after it is created.
    let mut lock = None;
    let locked =
        if leader && run.root.is_dir() { run.lock().map(|l| lock = Some(l)) } else { Ok(()) };
    let notes = if let Err(e) = locked {
        Err(e)
    } else if !leader {
        Ok(vec![])
    } else if opts.resume {
        run.prepare_resume(&declared)
    } else {
        run.prepare_fresh(&declared, opts.overwrite)
    };
    let notes = match dp {
        Some(d) => d.agree(notes, "checking the run folder")?,
        None => notes?,
    };
    for n in notes {
        progress.message(&n);
    }
    if raw.optim.threads > 0 {
        tch::set_num_threads(raw.optim.threads as i32);
    }

    // Data (nothing is written before it is read: a failed start leaves no folder behind).
    let enc =
        TextEncoder::from_file(&raw.model.backbone, raw.model.max_len)?.with_input(raw.model.input);
    let mut prep = prepare::prepare(raw, &enc)?;
    let mut skipped = vec![];
    let further = crate::further::prepare(&plan, raw, &prep, &enc, &mut skipped)?;
    prep.skipped.extend(skipped);
    let (step_tasks, extra_heads) = crate::further::step_tasks(&plan, &prep, &further)?;
    log_data(raw, &prep, progress);
    let o = &raw.optim;
    let (main_slots, streams, further_info) = if further.is_empty() {
        (o.batch_size, vec![], vec![])
    } else {
        let weights: Vec<f64> = std::iter::once(prep.train_ex.len() as f64)
            .chain(further.iter().map(|f| f.spec.share.unwrap_or(f.examples.len() as f64)))
            .collect();
        let slots = task_slots(&weights, raw.task.sampling.tau(), o.batch_size)
            .map_err(|e| Error::Config(format!("[[tasks]]: {e}")))?;
        let mut offset = prep.train_ex.len();
        let mut streams = vec![];
        let mut info = vec![];
        for (f, &quota) in further.iter().zip(&slots[1..]) {
            streams.push(AuxStream { offset, len: f.examples.len(), quota });
            offset += f.examples.len();
            info.push(FurtherInfo {
                name: f.spec.name.clone(),
                kind: f.spec.kind,
                read: f.read,
                dropped: f.dropped,
                train: f.examples.len(),
                slots: quota,
            });
            progress.message(&format!(
                "task {} ({}): {} train examples ({} dropped: equal to a validation or test \
                 text of the main task), {} of {} rows per batch",
                f.spec.name,
                f.spec.kind,
                f.examples.len(),
                f.dropped,
                quota,
                o.batch_size
            ));
        }
        (slots[0], streams, info)
    };
    let train_all: Vec<Example> = if further.is_empty() {
        vec![]
    } else {
        prep.train_ex.iter().cloned().chain(further.into_iter().flat_map(|f| f.examples)).collect()
    };
    let train_all: &[Example] = if train_all.is_empty() { &prep.train_ex } else { &train_all };
    let steps_per_epoch = prep.train_ex.len().div_ceil(main_slots);

    // Model (a warm start's model is loaded first: the seeded heads are those of any run).
    let init = raw.model.init.as_deref().map(|d| crate::init::load(d, cfg.device)).transpose()?;
    tch::manual_seed(raw.optim.seed as i64);
    let spec = ModelSpec {
        pooling: raw.model.pooling,
        heads: HeadsConfig {
            num_classes: prep.strat.as_ref().map(|s| s.num_classes() as i64),
            extra: raw.model.heads.extra.iter().cloned().chain(extra_heads).collect(),
            ..raw.model.heads.clone()
        },
        tuning: cfg.tuning.clone(),
        max_len: raw.model.max_len,
        gradient_checkpointing: raw.model.gradient_checkpointing,
        bf16: raw.optim.precision == Precision::Bf16,
        input: raw.model.input,
    };
    let model = MultiTaskModel::new(&raw.model.backbone, &spec, cfg.device)?;
    if let (Some(from), Some(dir)) = (init, &raw.model.init) {
        let n = crate::init::apply(&model, &from, dir)?;
        progress.message(&format!("backbone initialised from {} ({n} tensors)", dir.display()));
    }
    let side = model.info().padding_side;
    let enc = enc.with_padding_side(side);
    let metrics_cfg = MetricsConfig {
        thresholds: prep.strat.as_ref().map(|s| s.thresholds.iter().map(|&t| t as f32).collect()),
        ..raw.metrics.clone()
    };
    let mut stepper =
        MultiTaskStep::new(&model, &cfg, StepData::of(&prep, &step_tasks, steps_per_epoch))?;
    if let Some(d) = dp {
        stepper = stepper.data_parallel(d)?;
        progress.message(&format!(
            "data-parallel: {} ranks, each computes its slice of every batch of {}",
            d.world_size(),
            o.batch_size
        ));
    }
    let extra = serde_json::to_value(ModelExtra {
        strat: prep.strat.clone(),
        rarity: prep.rarity.clone(),
        metrics: metrics_cfg.clone(),
        fusion: None,
    })
    .expect("serialisable");
    let method = if stepper.tasks() > 1 {
        Method::Weighting(raw.task.weighting.clone())
    } else {
        Method::SingleTask
    };
    let setup = Setup {
        cfg: &cfg,
        declared: &declared,
        train_all,
        main_slots,
        streams: &streams,
        fuse: plan.cls_loss == crate::config::TaskLoss::SoftOrdinal,
        run: &run,
        prep: &prep,
        model: &model,
        pad_id: enc.pad_id(),
        side,
        metrics_cfg,
        extra,
        method,
        dp,
    };

    // Fresh run or resume.
    let mut state = if opts.resume {
        let (st, ck) = checkpoint::load(&run, &declared)?;
        stepper.restore(&ck, st.global_step, &st.weighting)?;
        progress.message(&format!(
            "resuming {} after epoch {} (step {})",
            run.root.display(),
            st.epochs_done,
            st.global_step
        ));
        st
    } else {
        let created = if leader {
            run.create().and_then(|()| {
                if lock.is_none() {
                    lock = Some(run.lock()?);
                    run.prepare_fresh(&declared, false)?;
                }
                run::write_atomic(&run.config(), declared.to_toml().as_bytes())?;
                run::write_json(&run.das(), &prep.strat)
            })
        } else {
            Ok(())
        };
        match dp {
            Some(d) => d.agree(created, "creating the run folder")?,
            None => created?,
        }
        TrainerState::start(&declared)
    };
    let header = history::header(&stepper.task_names(), &stepper.term_names());
    let mut history = if leader {
        Some(HistoryWriter::open(
            &run.history(),
            &header,
            opts.resume.then_some(state.history_rows),
        )?)
    } else {
        None
    };

    let stopped_early =
        match epochs(&setup, &mut stepper, &mut state, &mut history, opts, progress)? {
            Some(stopped_early) => stopped_early,
            None => return Ok(Outcome::Interrupted { epochs: state.epochs_done }),
        };
    finish(&setup, &stepper, &mut state, stopped_early, wall, further_info)
}

/// Runs the remaining epochs. Returns whether early stopping ended them, or None when
/// `stop_after` interrupted the run.
fn epochs(
    s: &Setup<'_>,
    stepper: &mut MultiTaskStep<'_>,
    state: &mut TrainerState,
    history: &mut Option<HistoryWriter>,
    opts: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<Option<bool>> {
    let o = &s.cfg.raw.optim;
    let seed = o.seed;
    let train_ex = s.train_all;
    let lengths: Vec<usize> = s.prep.train_ex.iter().map(|e| e.enc.len()).collect();
    let total_steps = stepper.total_steps();
    let method_name = s.method.to_string();
    let device = s.model.device();
    progress.start(total_steps, state.global_step);
    while state.epochs_done < o.epochs {
        if state.bad_epochs >= o.patience {
            progress.message(&format!(
                "early stopping: no better validation MSE for {} epochs",
                o.patience
            ));
            progress.finish();
            return Ok(Some(true));
        }
        if opts.stop_after.is_some_and(|n| state.epochs_done >= n) {
            flush(history)?;
            progress.finish();
            return Ok(None);
        }
        let epoch = state.epochs_done;
        let t_epoch = Instant::now();
        // Dropout and the data order depend on (seed, epoch) only: resuming is exact.
        tch::manual_seed(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64) as i64);
        let batches = mixed_epoch_batches(&lengths, s.main_slots, s.streams, seed, epoch as u64);
        let mut sums = vec![0.0; stepper.tasks()];
        for (bi, idx) in batches.iter().enumerate() {
            let b = match s.dp {
                None => TrainBatch::new(train_ex, idx, s.pad_id, s.side, device),
                Some(d) => {
                    let w = d.world_size();
                    let per_rank =
                        (0..w).map(|r| DataParallel::slice_of(idx.len(), r, w).len()).collect();
                    TrainBatch::slice(
                        train_ex,
                        idx,
                        d.slice(idx.len()),
                        per_rank,
                        s.pad_id,
                        s.side,
                        device,
                    )
                }
            };
            let out = match stepper.step(&b, epoch, state.global_step) {
                Ok(o) => o,
                Err(Error::NonFinite { epoch, step, loss_reg, loss_cls, .. }) => {
                    flush(history)?;
                    return Err(Error::NonFinite {
                        epoch,
                        step,
                        loss_reg,
                        loss_cls,
                        kept: if state.epochs_done > 0 {
                            format!(
                                "the last good checkpoint (epoch {}) is in {}",
                                state.epochs_done,
                                s.run.checkpoint().display()
                            )
                        } else {
                            "no epoch finished, so there is no checkpoint".into()
                        },
                    });
                }
                Err(e) => return Err(e),
            };
            let losses = out.losses();
            for (sum, l) in sums.iter_mut().zip(&losses) {
                *sum += l;
            }
            if let Some(h) = history.as_mut() {
                h.push(&out.record, &method_name)?;
            }
            state.history_rows += 1;
            state.global_step += 1;
            state.samples += b.global_len() as u64;
            state.train_seconds += out.record.step_ms / 1e3;
            state.probe_seconds += out.record.probe_ms / 1e3;
            progress.step(&StepView {
                epoch,
                epochs: o.epochs,
                step_in_epoch: bi,
                steps_in_epoch: batches.len(),
                global_step: state.global_step,
                total_steps,
                loss_reg: losses[0],
                loss_cls: losses.get(1).copied(),
                weights: out.weights(),
                lr: out.record.lr,
                samples_per_s: out.record.samples_per_s,
            });
        }
        flush(history)?;
        let means: Vec<f64> = sums.iter().map(|x| x / batches.len().max(1) as f64).collect();
        if stepper.tasks() > 1 {
            stepper
                .weighting
                .end_epoch(&EpochObservation { epoch: epoch as u32, mean_losses: &means })?;
        }
        let (val, _) =
            evaluate(s.model, &s.prep.val_ex, o.eval_batch_size, s.pad_id, s.side, &s.metrics_cfg)?;
        let improved = val.mse < state.best_val_mse;
        if improved {
            state.best_val_mse = val.mse;
            state.best_epoch = Some(epoch + 1);
            state.bad_epochs = 0;
            if s.leader() {
                s.model.save(&s.run.model(), s.extra.clone())?;
            }
        } else {
            state.bad_epochs += 1;
        }
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
            seconds: t_epoch.elapsed().as_secs_f64(),
        });
        state.epochs_done += 1;
        state.weighting = stepper.weighting.state();
        let saved = if s.leader() {
            checkpoint::save(s.run, s.declared, &stepper.state_tensors(), state)
        } else {
            Ok(())
        };
        match s.dp {
            // Also the barrier after the checkpoint: no rank runs ahead of a failed save.
            Some(d) => d.agree(saved, "saving the model and the checkpoint")?,
            None => saved?,
        }
    }
    progress.finish();
    Ok(Some(false))
}

fn flush(history: &mut Option<HistoryWriter>) -> Result<()> {
    match history.as_mut() {
        Some(h) => h.flush(),
        None => Ok(()),
    }
}

/// Evaluates the saved best model, writes `metrics.json`, the plots and `report.md`.
fn finish(
    s: &Setup<'_>,
    stepper: &MultiTaskStep<'_>,
    state: &mut TrainerState,
    stopped_early: bool,
    wall: Instant,
    further: Vec<FurtherInfo>,
) -> Result<Outcome> {
    let (raw, prep, run) = (&s.cfg.raw, s.prep, s.run);
    if let Some(d) = s.dp {
        // Every rank must end with the same parameters (and optimiser state), bit for bit.
        let mut named = stepper.state_tensors();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let tensors: Vec<tch::Tensor> = named.into_iter().map(|(_, t)| t).collect();
        d.check_identical(&tensors)?;
        if !d.is_leader() {
            return Ok(Outcome::Worker { rank: d.rank() });
        }
    }
    let bs = raw.optim.eval_batch_size;
    let best_epoch = state.best_epoch.ok_or_else(|| Error::Config("no epoch finished".into()))?;
    let (best, _) = MultiTaskModel::load(&run.model(), s.cfg.device)?;
    let (mut val, mut val_pred) =
        evaluate(&best, &prep.val_ex, bs, s.pad_id, s.side, &s.metrics_cfg)?;
    let fusion = if s.fuse { pick_fusion(prep, &val_pred)? } else { None };
    let used = fusion.as_ref().filter(|f| f.mix > 0.0);
    if let Some(f) = used {
        let mut extra: ModelExtra =
            serde_json::from_value(s.extra.clone()).expect("the trainer's own extra");
        extra.fusion = Some(f.clone());
        best.save(&run.model(), serde_json::to_value(extra).expect("serialisable"))?;
        val_pred.fuse(Some(f))?;
        val = rescore(&s.metrics_cfg, &prep.val_ex, &val_pred);
    }
    let test = match &prep.test_ex {
        Some(t) => {
            let (mut r, mut p) = evaluate(&best, t, bs, s.pad_id, s.side, &s.metrics_cfg)?;
            if let Some(f) = used {
                p.fuse(Some(f))?;
                r = rescore(&s.metrics_cfg, t, &p);
            }
            Some((r, p))
        }
        None => None,
    };
    state.finished = true;
    checkpoint::save(run, s.declared, &stepper.state_tensors(), state)?;
    let init = raw.model.init.clone().zip(raw.model.init_sha256.clone());
    let init = init.map(|(dir, sha256)| InitInfo { dir: prepare::absolute(&dir), sha256 });
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
            tasks: further,
        },
        strata: strata_info(raw.task.strata, prep.strat.as_ref()),
        weighting: s.method.clone(),
        imbalance: raw.task.imbalance,
        tuning: s.cfg.tuning.clone(),
        timing: Timing {
            wall_s: wall.elapsed().as_secs_f64(),
            train_s: state.train_seconds,
            samples_per_s: state.samples as f64 / state.train_seconds.max(1e-9),
            probe_overhead_share: state.probe_seconds / state.train_seconds.max(1e-9),
            peak_rss_mib: run::peak_rss_mib(),
            data_parallel: s.dp.map(|d| DataParallelTiming {
                ranks: d.world_size(),
                allreduce_ms_per_step: stepper.comm_seconds() * 1e3
                    / stepper.steps_taken().max(1) as f64,
            }),
        },
        init,
        fusion,
    };
    run::write_json(&run.metrics(), &metrics)?;
    let eval_set: (&str, &[Example], &Predictions) = match (&prep.test_ex, &test) {
        (Some(t), Some((_, p))) => ("test", t, p),
        _ => ("validation", &prep.val_ex, &val_pred),
    };
    let plot_notes = crate::report::plots(run, prep, &metrics, eval_set);
    crate::report::write(run, s.declared, &metrics, &plot_notes, eval_set.0)?;
    Ok(Outcome::Finished(Box::new(metrics)))
}

/// The fusion mix with the lowest validation MSE (fintune-das `pick_mix`, grid 0, 0.1, ..., 1).
fn pick_fusion(prep: &Prepared, val: &Predictions) -> Result<Option<Fusion>> {
    let (Some(strat), Some(probs)) = (&prep.strat, &val.probs) else { return Ok(None) };
    let means = fintune_das::class_means(strat);
    let k = means.len();
    let flat: Vec<f64> = probs.iter().flatten().map(|&p| f64::from(p)).collect();
    let view = ndarray::ArrayView2::from_shape((val.score.len(), k), &flat)
        .map_err(|e| Error::Config(format!("class probabilities: {e}")))?;
    let reg: Vec<f64> = val.score.iter().map(|&v| f64::from(v)).collect();
    let gold: Vec<f64> = prep.val_ex.iter().map(|e| f64::from(e.score)).collect();
    let c = fintune_das::pick_mix(&reg, view, &means, &gold, &fintune_das::default_mix_grid())?;
    Ok(Some(Fusion { mix: c.mix, class_means: means, grid: c.grid }))
}

fn rescore(cfg: &MetricsConfig, ex: &[Example], p: &Predictions) -> crate::metrics::MetricReport {
    let gold: Vec<f32> = ex.iter().map(|e| e.score).collect();
    crate::metrics::RegressionMetrics::of(cfg.clone(), &p.score, &gold, p.class.as_deref())
}

fn log_data(cfg: &TrainConfig, prep: &Prepared, progress: &mut dyn Progress) {
    progress.message(&format!(
        "data: {} train / {} validation{} examples; strata {}{}",
        prep.train_ex.len(),
        prep.val_ex.len(),
        prep.test_ex.as_ref().map(|t| format!(" / {} test", t.len())).unwrap_or_default(),
        cfg.task.strata,
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
}

fn strata_info(strata: Strata, s: Option<&Stratification>) -> StrataInfo {
    match s {
        None => StrataInfo {
            method: Strata::None,
            classes: 0,
            thresholds: vec![],
            normalized_entropy: None,
            explained_variance: None,
        },
        Some(s) => StrataInfo {
            method: strata,
            classes: s.num_classes(),
            thresholds: s.thresholds.clone(),
            normalized_entropy: Some(s.normalized_entropy),
            explained_variance: Some(s.explained_variance),
        },
    }
}

/// The run folder `runs/<timestamp>-<name>` for a config without `out`.
pub fn default_run_dir(cfg: &TrainConfig) -> PathBuf {
    let name = cfg.name.clone().unwrap_or_else(|| {
        cfg.data
            .train
            .first()
            .or_else(|| cfg.tasks.iter().find(|t| t.main).or(cfg.tasks.first())?.train.first())
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    });
    PathBuf::from("runs").join(format!("{}-{name}", chrono::Local::now().format("%Y%m%d-%H%M%S")))
}
