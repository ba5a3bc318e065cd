//! Further tasks (`[[tasks]]` beyond the main task and its score classes, issue 16): their
//! data ([`prepare`]: read, cross-set de-duplication against the main task's evaluation
//! texts, score classes when a derived task is cut from them, tokenization), the tasks of a
//! step in order ([`step_tasks`]: which examples, which target, which head, which loss) and
//! the slots each task with its own data gets in a batch.

use std::collections::HashSet;

use fintune_das::{Rarity, Stratification};
use fintune_data::normalized_text_key;
use fintune_model::ExtraHead;
use serde::{Deserialize, Serialize};

use crate::batching::Example;
use crate::config::{Plan, TaskKind, TaskLoss, TaskSpec, TrainConfig};
use crate::prepare::{self, Prepared, Skipped};
use crate::{Error, Result};

/// A further task with its own examples, prepared.
#[derive(Debug)]
pub struct FurtherData {
    /// Its declaration.
    pub spec: TaskSpec,
    /// The task derived from it (its score classes), when one is declared.
    pub derived: Option<TaskSpec>,
    /// The score classes of `derived`, fitted on this task's training scores.
    pub strat: Option<Stratification>,
    /// Training examples (`src` = this task's position + 1).
    pub examples: Vec<Example>,
    /// Rows read.
    pub read: usize,
    /// Rows dropped because their text equals a validation or test text of the main task.
    pub dropped: usize,
    /// Training share of each class (classification: of the labels; derived: of the classes).
    pub class_freq: Vec<f64>,
}

/// What `metrics.json` records of a further task with its own examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FurtherInfo {
    /// Task name.
    pub name: String,
    /// `regression` or `classification`.
    pub kind: TaskKind,
    /// Valid rows read.
    pub read: usize,
    /// Rows dropped by the cross-set de-duplication (normalised text equal to a validation
    /// or test text of the main task).
    pub dropped: usize,
    /// Training examples used.
    pub train: usize,
    /// Its rows in each training batch.
    pub slots: usize,
}

/// Reads and prepares every further task of `plan` with its own data. Texts equal (by
/// [`normalized_text_key`]) to any validation or test text of the main task are dropped.
pub fn prepare(
    plan: &Plan,
    cfg: &TrainConfig,
    main: &Prepared,
    enc: &fintune_model::TextEncoder,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<FurtherData>> {
    let mut held_out: HashSet<String> = HashSet::new();
    for ds in std::iter::once(&main.val).chain(main.test.as_ref()) {
        held_out.extend(ds.texts().iter().map(|t| normalized_text_key(t)));
    }
    let mut out = Vec::new();
    for spec in plan.aux.iter().filter(|t| t.has_data()) {
        let bad = |field: &str, why: String| {
            Error::Config(format!("task `{}` ({}): `{field}` {why}", spec.name, spec.kind))
        };
        for (field, given) in [("val", spec.val.is_some()), ("test", spec.test.is_some())] {
            if given {
                return Err(bad(
                    field,
                    "is not used for a further task yet: model selection and the reported \
                     metrics are the main task's; leave it out"
                        .into(),
                ));
            }
        }
        let mut opts = spec.read.clone().labelled(true);
        if spec.kind == TaskKind::Classification {
            opts.score_col = spec.label_col.clone().expect("validated");
            opts = opts.labels(spec.labels.iter().cloned());
        }
        let mut warnings = vec![];
        let part = format!("task {}", spec.name);
        let full = prepare::read(&part, &spec.train, &opts, skipped, &mut warnings)?;
        let keep: Vec<usize> = (0..full.len())
            .filter(|&i| !held_out.contains(&normalized_text_key(full.text(i))))
            .collect();
        let ds = full.take(&keep);
        if ds.is_empty() {
            return Err(bad(
                "train",
                format!(
                    "leaves no example: all {} rows equal a validation or test text of the \
                     main task",
                    full.len()
                ),
            ));
        }
        let derived = plan
            .aux
            .iter()
            .find(|t| t.kind == TaskKind::Derived && t.from.as_deref() == Some(&spec.name))
            .cloned();
        let scores = ds.scores().expect("labelled");
        let strat = match &derived {
            Some(d) => {
                let sub = TrainConfig {
                    task: crate::config::TaskConfig {
                        strata: d.strata,
                        classes: d.classes,
                        ..cfg.task.clone()
                    },
                    das: d.das.clone().unwrap_or_else(|| cfg.das.clone()),
                    ..TrainConfig::default()
                };
                prepare::fit_strata(&sub, scores)?
            }
            None => None,
        };
        let rarity = (spec.kind == TaskKind::Regression && spec.loss() == TaskLoss::Lds)
            .then(|| Rarity::fit(scores, cfg.task.rarity_bandwidth))
            .transpose()?;
        let src = out.len() + 1;
        let encoded = enc.encode_with_targets(&ds.texts(), &ds.targets())?;
        let ids = ds.ids();
        let examples: Vec<Example> = encoded
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let y = scores[i];
                let (score, class) = match spec.kind {
                    TaskKind::Classification => (f32::NAN, y as usize),
                    _ => (y, strat.as_ref().map_or(0, |s| s.assign(y))),
                };
                Example {
                    id: ids[i].to_owned(),
                    enc: e,
                    score,
                    class,
                    rarity: rarity.as_ref().map_or(1.0, |r| r.weight(y)),
                    src,
                }
            })
            .collect();
        let class_freq = match (&strat, spec.kind) {
            (Some(s), _) => s.shares(),
            (None, TaskKind::Classification) => {
                let mut n = vec![0.0; spec.labels.len()];
                for e in &examples {
                    n[e.class] += 1.0;
                }
                n.iter().map(|c| c / examples.len() as f64).collect()
            }
            _ => vec![],
        };
        out.push(FurtherData {
            spec: spec.clone(),
            derived,
            strat,
            read: full.len(),
            dropped: full.len() - ds.len(),
            examples,
            class_freq,
        });
    }
    Ok(out)
}

/// Which head a task trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRef {
    /// The main regression head.
    Main,
    /// The classification head of the main task's score classes.
    Cls,
    /// The `i`-th further head (`heads.extra`).
    Extra(usize),
}

/// One task of a training step.
#[derive(Debug, Clone)]
pub struct StepTask {
    /// Its name (the `history.csv` columns).
    pub name: String,
    /// The examples it learns from ([`Example::src`]).
    pub src: usize,
    /// Whether its target is the example's class (else its score).
    pub classes: Option<usize>,
    /// The head it trains.
    pub head: HeadRef,
    /// Its loss.
    pub loss: TaskLoss,
    /// Soft ordinal: the class thresholds and the width.
    pub soft: Option<(Vec<f64>, f64)>,
}

impl StepTask {
    /// The task kind the weighting methods see.
    pub fn kind(&self) -> fintune_dwa::TaskKind {
        if self.classes.is_some() {
            fintune_dwa::TaskKind::Classification
        } else {
            fintune_dwa::TaskKind::Regression
        }
    }
}

/// The tasks of a step, in [`Plan::names`] order, and the further heads the model needs.
pub fn step_tasks(
    plan: &Plan,
    main: &Prepared,
    further: &[FurtherData],
) -> Result<(Vec<StepTask>, Vec<ExtraHead>)> {
    let names = &plan.names;
    let mut tasks = vec![StepTask {
        name: names[0].clone(),
        src: 0,
        classes: None,
        head: HeadRef::Main,
        loss: match plan.core.task.imbalance {
            crate::config::Imbalance::None => TaskLoss::Mse,
            crate::config::Imbalance::Lds => TaskLoss::Lds,
            crate::config::Imbalance::Bmse => TaskLoss::Bmse,
        },
        soft: None,
    }];
    let main_k = main.strat.as_ref().map(Stratification::num_classes);
    if let Some(s) = &main.strat {
        tasks.push(StepTask {
            name: names[1].clone(),
            src: 0,
            classes: Some(s.num_classes()),
            head: HeadRef::Cls,
            loss: plan.cls_loss,
            soft: plan.cls_sigma.map(|sg| (s.thresholds.clone(), sg)),
        });
    }
    let mut extra: Vec<ExtraHead> = vec![];
    let mut owners: Vec<(String, HeadRef, Option<usize>)> =
        vec![(names[0].clone(), HeadRef::Main, None)];
    if main.strat.is_some() {
        owners.push((names[1].clone(), HeadRef::Cls, main_k));
    }
    for spec in &plan.aux {
        let bad = |field: &str, why: String| {
            Error::Config(format!("task `{}` ({}): `{field}` {why}", spec.name, spec.kind))
        };
        let (src, classes, soft) = match spec.kind {
            TaskKind::Regression => (data_src(further, &spec.name), None, None),
            TaskKind::Classification => {
                (data_src(further, &spec.name), Some(spec.labels.len()), None)
            }
            TaskKind::Derived => {
                let from = spec.from.as_deref().expect("validated");
                let src = data_src(further, from);
                let s = further[src - 1].strat.as_ref().expect("fitted for its derived task");
                let soft = spec.sigma.map(|sg| (s.thresholds.clone(), sg));
                (src, Some(s.num_classes()), soft)
            }
        };
        if spec.kind == TaskKind::Regression && spec.loss() == TaskLoss::Bmse {
            return Err(bad("loss", "bmse is for the main task only; use mse or lds".into()));
        }
        let head = match &spec.shared {
            Some(owner) => {
                let (_, head, k) = owners.iter().find(|(n, _, _)| n == owner).ok_or_else(|| {
                    bad(
                        "shared",
                        format!("names `{owner}`, which is declared after this task or has no head of its own"),
                    )
                })?;
                if *k != classes {
                    return Err(bad(
                        "shared",
                        format!(
                            "names `{owner}` with {} outputs; this task needs {}",
                            k.map_or("a score".to_string(), |k| format!("{k} classes")),
                            classes.map_or("a score".to_string(), |k| format!("{k} classes")),
                        ),
                    ));
                }
                *head
            }
            None => {
                extra.push(ExtraHead {
                    name: spec.name.clone(),
                    classes: classes.map(|k| k as i64),
                });
                let h = HeadRef::Extra(extra.len() - 1);
                owners.push((spec.name.clone(), h, classes));
                h
            }
        };
        tasks.push(StepTask {
            name: spec.name.clone(),
            src,
            classes,
            head,
            loss: spec.loss(),
            soft,
        });
    }
    Ok((tasks, extra))
}

fn data_src(further: &[FurtherData], name: &str) -> usize {
    1 + further.iter().position(|f| f.spec.name == name).expect("a task with data")
}
