//! Task declarations: the `[[tasks]]` tables of a run ([`TaskSpec`]), the T = 1 / T = 2 tasks
//! today's `[data]` + `[task]` sections stand for ([`TrainConfig::task_specs`]), and their
//! validation, with errors naming the task and the field.
//!
//! The tables are `[[tasks]]`, not `[[task]]`: TOML cannot hold `[task]` (the multi-task
//! settings, [`super::TaskConfig`]) and an array of tables of the same name in one file.

use std::collections::HashMap;
use std::path::PathBuf;

use fintune_das::{Classes, DasConfig};
use fintune_data::ReadOptions;
use serde::{Deserialize, Serialize};

use super::{Imbalance, Strata, TaskKind, TaskLoss, TrainConfig};
use crate::{Error, Result};

/// Most classes a derived task may have.
pub const MAX_DERIVED_CLASSES: usize = 16;

/// One task of a run (`[[tasks]]`).
///
/// ```toml
/// [[tasks]]
/// name = "fiqa"
/// kind = "regression"
/// train = ["fiqa.jsonl"]
///
/// [[tasks]]
/// name = "polarity"
/// kind = "derived"
/// from = "fiqa"
/// strata = "das"
/// loss = "soft-ordinal"
/// sigma = 0.5
///
/// [[tasks]]
/// name = "phrasebank"
/// kind = "classification"
/// train = ["phrasebank.jsonl"]
/// label_col = "label"
/// labels = ["negative", "neutral", "positive"]
/// share = 0.5
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique name: the per-task columns of `history.csv`, metrics and logs.
    pub name: String,
    /// `regression`, `classification` or `derived`. Default `regression`.
    pub kind: TaskKind,
    /// Training files (regression and classification; a derived task has none).
    pub train: Vec<PathBuf>,
    /// Validation file; without it a share `val_fraction` of the training data is held out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val: Option<PathBuf>,
    /// Test file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
    /// Share of the training data held out for validation when there is no `val`. Default 0.1.
    pub val_fraction: f64,
    /// How the task's files are read (`[tasks.read]`, as `[data.read]`).
    pub read: ReadOptions,
    /// Classification: the column holding the class name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_col: Option<String>,
    /// Classification: the class names, in order (e.g. `["negative", "neutral", "positive"]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Derived: the regression task whose training scores the classes are cut from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Derived: how the classes are cut (`das`, `quantile`, `uniform`). Default `das`.
    pub strata: Strata,
    /// Derived: number of classes (`auto` or K, at most 16). Default `auto`.
    pub classes: Classes,
    /// Derived: DAS constants (e.g. `zero_cut = true`); default: the run's `[das]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub das: Option<DasConfig>,
    /// The task whose head this task shares (same output kind); default: its own head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
    /// Regression: `mse`, `lds`, `bmse`; classification: `ce`; derived: `ce` or
    /// `soft-ordinal`. Default: `mse` for regression, `ce` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<TaskLoss>,
    /// Soft ordinal: width of the Gaussian over the scores, in score units (see
    /// `fintune_das::soft_targets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    /// Sampling weight of a data task's examples in the mixed batches; default: its number
    /// of training examples (proportional sampling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// The main task (exactly one regression task; default: the first task). Early stopping,
    /// model selection and the reported metrics are its.
    pub main: bool,
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec {
            name: String::new(),
            kind: TaskKind::Regression,
            train: vec![],
            val: None,
            test: None,
            val_fraction: 0.1,
            read: ReadOptions::default(),
            label_col: None,
            labels: vec![],
            from: None,
            strata: Strata::Das,
            classes: Classes::Auto,
            das: None,
            shared: None,
            loss: None,
            sigma: None,
            share: None,
            main: false,
        }
    }
}

impl TaskSpec {
    /// The loss, its default filled in.
    pub fn loss(&self) -> TaskLoss {
        self.loss.unwrap_or(match self.kind {
            TaskKind::Regression => TaskLoss::Mse,
            _ => TaskLoss::Ce,
        })
    }

    /// Whether the task brings its own examples (regression, classification).
    pub fn has_data(&self) -> bool {
        self.kind != TaskKind::Derived
    }

    /// Whether the head outputs one score (regression) or class logits.
    pub fn is_regression(&self) -> bool {
        self.kind == TaskKind::Regression
    }
}

/// The name of the main task of today's configurations (and of its `history.csv` columns).
pub const MAIN_TASK: &str = "reg";
/// The name of the derived score-class task of today's configurations.
pub const CLASS_TASK: &str = "cls";

impl TrainConfig {
    /// The run's tasks, validated, main task first: the `[[tasks]]` tables when given (in their
    /// order, the main task moved to the front), otherwise the tasks `[data]` and `[task]`
    /// stand for: the score regression `reg` (loss from `task.imbalance`) and, unless
    /// `task.strata = "none"`, the score classes `cls` derived from it.
    pub fn task_specs(&self) -> Result<Vec<TaskSpec>> {
        if self.tasks.is_empty() {
            return Ok(self.implied_tasks());
        }
        validate_tasks(&self.tasks)?;
        let mut tasks = self.tasks.clone();
        let main = main_index(&tasks)?;
        let m = tasks.remove(main);
        tasks.insert(0, TaskSpec { main: true, ..m });
        Ok(tasks)
    }

    fn implied_tasks(&self) -> Vec<TaskSpec> {
        let d = &self.data;
        let reg = TaskSpec {
            name: MAIN_TASK.into(),
            kind: TaskKind::Regression,
            train: d.train.clone(),
            val: d.val.clone(),
            test: d.test.clone(),
            val_fraction: d.val_fraction,
            read: d.read.clone(),
            loss: Some(match self.task.imbalance {
                Imbalance::None => TaskLoss::Mse,
                Imbalance::Lds => TaskLoss::Lds,
                Imbalance::Bmse => TaskLoss::Bmse,
            }),
            main: true,
            ..Default::default()
        };
        let mut tasks = vec![reg];
        if self.task.strata != Strata::None {
            tasks.push(TaskSpec {
                name: CLASS_TASK.into(),
                kind: TaskKind::Derived,
                from: Some(MAIN_TASK.into()),
                strata: self.task.strata,
                classes: self.task.classes,
                das: Some(self.das.clone()),
                loss: Some(TaskLoss::Ce),
                ..Default::default()
            });
        }
        tasks
    }
}

/// What the trainer runs ([`TrainConfig::plan`]): the `[data]` + `[task]` configuration of
/// the main regression task and of score classes derived from it (the `cls` head), and the
/// further tasks, each with its own examples or derived from a further regression task.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The main task (and its derived classes) as a `[data]` + `[task]` configuration, without
    /// declarations.
    pub core: TrainConfig,
    /// The name of every task in step order: the main task, its derived classes (when
    /// `core.task.strata` is not `none`), then [`Plan::aux`] in declaration order.
    pub names: Vec<String>,
    /// The loss of the main task's derived classes (`ce` or `soft-ordinal`).
    pub cls_loss: TaskLoss,
    /// Soft ordinal width of the main task's derived classes.
    pub cls_sigma: Option<f64>,
    /// The further tasks, in declaration order.
    pub aux: Vec<TaskSpec>,
}

impl Plan {
    /// Whether the run has tasks beyond the main task and its derived classes.
    pub fn has_aux(&self) -> bool {
        !self.aux.is_empty()
    }
}

impl TrainConfig {
    /// The run's plan: `self` as it is when it has no declarations (tasks `reg` and, unless
    /// `task.strata = "none"`, `cls`), otherwise the main task and the classes derived from it
    /// moved into `[data]` + `[task]`, and every other task in [`Plan::aux`]. A regression
    /// task may have at most one derived task.
    pub fn plan(&self) -> Result<Plan> {
        if self.tasks.is_empty() {
            let mut names = vec![MAIN_TASK.to_owned()];
            if self.task.strata != Strata::None {
                names.push(CLASS_TASK.to_owned());
            }
            return Ok(Plan {
                core: self.clone(),
                names,
                cls_loss: TaskLoss::Ce,
                cls_sigma: None,
                aux: vec![],
            });
        }
        let specs = self.task_specs()?;
        let main = &specs[0];
        if main.share.is_some() {
            return Err(Error::Config(format!(
                "task `{}` (main): `share` is for further tasks; the main task's share is what \
                 the others leave",
                main.name
            )));
        }
        let mut derived_from: HashMap<&str, &str> = HashMap::new();
        for t in specs.iter().filter(|t| t.kind == TaskKind::Derived) {
            let from = t.from.as_deref().expect("validated");
            if let Some(other) = derived_from.insert(from, &t.name) {
                return Err(Error::Config(format!(
                    "task `{}` (derived): `from` names `{from}`, which task `{other}` is already \
                     derived from; one derived task per regression task",
                    t.name
                )));
            }
        }
        let mut c = TrainConfig { tasks: vec![], ..self.clone() };
        c.data.train = main.train.clone();
        c.data.val = main.val.clone();
        c.data.test = main.test.clone();
        c.data.val_fraction = main.val_fraction;
        c.data.read = main.read.clone();
        c.task.imbalance = match main.loss() {
            TaskLoss::Lds => Imbalance::Lds,
            TaskLoss::Bmse => Imbalance::Bmse,
            _ => Imbalance::None,
        };
        c.task.strata = Strata::None;
        let mut names = vec![main.name.clone()];
        let (mut cls_loss, mut cls_sigma) = (TaskLoss::Ce, None);
        let mut aux = vec![];
        for t in &specs[1..] {
            if t.kind == TaskKind::Derived && t.from.as_deref() == Some(main.name.as_str()) {
                if t.shared.is_some() {
                    return Err(Error::Config(format!(
                        "task `{}` (derived): `shared` is not for the main task's classes: they \
                         own the classification head (other tasks may share it)",
                        t.name
                    )));
                }
                c.task.strata = t.strata;
                c.task.classes = t.classes;
                if let Some(das) = &t.das {
                    c.das = das.clone();
                }
                cls_loss = t.loss();
                cls_sigma = t.sigma;
                names.insert(1, t.name.clone());
            } else {
                aux.push(t.clone());
            }
        }
        names.extend(aux.iter().map(|t| t.name.clone()));
        Ok(Plan { core: c, names, cls_loss, cls_sigma, aux })
    }
}

impl TrainConfig {
    /// `self` (a `[data]` + `[task]` configuration) with `further` tasks after the ones it
    /// stands for: `[data]` and the task-defining `[task]` keys become `[[tasks]]` tables
    /// (the main task `reg` and, unless `task.strata = "none"`, its classes `cls`).
    pub fn with_further_tasks(&self, further: Vec<TaskSpec>) -> Result<TrainConfig> {
        if !self.tasks.is_empty() {
            return Err(Error::Config(
                "the configuration already declares [[tasks]]: add the further tasks there".into(),
            ));
        }
        let mut c = self.clone();
        c.tasks = self.task_specs()?;
        c.tasks.extend(further);
        c.data = Default::default();
        let d = super::TaskConfig::default();
        (c.task.strata, c.task.classes, c.task.imbalance) = (d.strata, d.classes, d.imbalance);
        c.task_specs()?;
        Ok(c)
    }
}

/// The position of the main task: the one with `main = true`, else the first.
fn main_index(tasks: &[TaskSpec]) -> Result<usize> {
    let marked: Vec<usize> = (0..tasks.len()).filter(|&i| tasks[i].main).collect();
    let i = match marked.as_slice() {
        [] => 0,
        [i] => *i,
        many => {
            let names: Vec<&str> = many.iter().map(|&i| tasks[i].name.as_str()).collect();
            return Err(Error::Config(format!(
                "tasks {}: `main = true` on several tasks; exactly one regression task is the \
                 main task",
                names.join(", ")
            )));
        }
    };
    if !tasks[i].is_regression() {
        return Err(Error::Config(format!(
            "task `{}`: the main task (`main = true`, or the first task when none is marked) must \
             be a regression task, not {}",
            tasks[i].name, tasks[i].kind
        )));
    }
    Ok(i)
}

/// Checks declared tasks on their own and against each other (see [`TaskSpec`]).
pub fn validate_tasks(tasks: &[TaskSpec]) -> Result<()> {
    let mut by_name: HashMap<&str, &TaskSpec> = HashMap::new();
    for t in tasks {
        if t.name.trim().is_empty() {
            return Err(Error::Config("a [[tasks]] table has no `name`".into()));
        }
        if by_name.insert(t.name.as_str(), t).is_some() {
            return Err(Error::Config(format!("task `{}`: `name` is used by two tasks", t.name)));
        }
    }
    main_index(tasks)?;
    for t in tasks {
        check_task(t, &by_name)?;
    }
    Ok(())
}

fn check_task(t: &TaskSpec, by_name: &HashMap<&str, &TaskSpec>) -> Result<()> {
    let bad = |field: &str, why: String| {
        Error::Config(format!("task `{}` ({}): `{field}` {why}", t.name, t.kind))
    };
    let loss = t.loss();
    if t.has_data() {
        if t.train.is_empty() {
            return Err(bad("train", "names no file".into()));
        }
        if !(0.0..0.9).contains(&t.val_fraction) || t.val_fraction == 0.0 && t.val.is_none() {
            return Err(bad(
                "val_fraction",
                format!("must be in (0, 0.9), got {}", t.val_fraction),
            ));
        }
        if t.from.is_some() {
            return Err(bad("from", "is only for derived tasks".into()));
        }
    } else {
        for (field, given) in
            [("train", !t.train.is_empty()), ("val", t.val.is_some()), ("test", t.test.is_some())]
        {
            if given {
                return Err(bad(
                    field,
                    "is not for a derived task: it uses the examples of its `from` task".into(),
                ));
            }
        }
        if t.share.is_some() {
            return Err(bad(
                "share",
                "is not for a derived task: it is sampled with `from`".into(),
            ));
        }
    }
    match t.kind {
        TaskKind::Regression => {
            if !matches!(loss, TaskLoss::Mse | TaskLoss::Lds | TaskLoss::Bmse) {
                return Err(bad("loss", format!("must be mse, lds or bmse, got {loss}")));
            }
        }
        TaskKind::Classification => {
            if t.label_col.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return Err(bad(
                    "label_col",
                    "is missing: name the column holding the class".into(),
                ));
            }
            if t.labels.len() < 2 {
                return Err(bad(
                    "labels",
                    format!("must name at least 2 classes in order, got {}", t.labels.len()),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = t.labels.iter().find(|l| !seen.insert(l.as_str())) {
                return Err(bad("labels", format!("names `{dup}` twice")));
            }
            if loss != TaskLoss::Ce {
                return Err(bad("loss", format!("must be ce, got {loss}")));
            }
        }
        TaskKind::Derived => {
            let from = t.from.as_deref().ok_or_else(|| {
                bad("from", "is missing: name the regression task the classes are cut from".into())
            })?;
            match by_name.get(from) {
                None => return Err(bad("from", format!("names no task: `{from}`"))),
                Some(s) if !s.is_regression() => {
                    return Err(bad(
                        "from",
                        format!(
                            "names `{from}`, a {} task; classes are cut from a regression task's \
                             scores",
                            s.kind
                        ),
                    ))
                }
                Some(_) => {}
            }
            if t.strata == Strata::None {
                return Err(bad("strata", "must be das, quantile or uniform, not none".into()));
            }
            if let Classes::Fixed(k) = t.classes {
                if !(2..=MAX_DERIVED_CLASSES).contains(&k) {
                    return Err(bad(
                        "classes",
                        format!("must be auto or 2 to {MAX_DERIVED_CLASSES}, got {k}"),
                    ));
                }
            }
            if !matches!(loss, TaskLoss::Ce | TaskLoss::SoftOrdinal) {
                return Err(bad("loss", format!("must be ce or soft-ordinal, got {loss}")));
            }
        }
    }
    match (loss, t.sigma) {
        (TaskLoss::SoftOrdinal, None) => {
            return Err(bad("sigma", "is missing: soft-ordinal needs a width > 0".into()))
        }
        (TaskLoss::SoftOrdinal, Some(s)) if !(s.is_finite() && s > 0.0) => {
            return Err(bad("sigma", format!("must be > 0, got {s}")))
        }
        (TaskLoss::SoftOrdinal, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(bad("sigma", "is only for loss = \"soft-ordinal\"".into())),
    }
    if let Some(s) = t.share {
        if !(s.is_finite() && s > 0.0) {
            return Err(bad("share", format!("must be > 0, got {s}")));
        }
    }
    if let Some(h) = &t.shared {
        let Some(owner) = by_name.get(h.as_str()) else {
            return Err(bad("shared", format!("names no task: `{h}`")));
        };
        if h == &t.name {
            return Err(bad("shared", "names the task itself".into()));
        }
        if owner.shared.is_some() {
            return Err(bad(
                "shared",
                format!("names `{h}`, which shares another task's head; name the owner"),
            ));
        }
        if owner.is_regression() != t.is_regression() {
            return Err(bad(
                "shared",
                format!(
                    "names `{h}`, a {} task: a shared head needs the same output kind \
                     (regression with regression, classes with classes)",
                    owner.kind
                ),
            ));
        }
        if t.kind == TaskKind::Classification
            && owner.kind == TaskKind::Classification
            && owner.labels.len() != t.labels.len()
        {
            return Err(bad(
                "shared",
                format!(
                    "names `{h}` with {} classes; this task has {}",
                    owner.labels.len(),
                    t.labels.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
