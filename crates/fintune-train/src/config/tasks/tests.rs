use super::*;

const THREE: &str = r#"
[[tasks]]
name = "fiqa"
train = ["fiqa.jsonl"]

[[tasks]]
name = "polarity"
kind = "derived"
from = "fiqa"
loss = "soft-ordinal"
sigma = 0.5
classes = { fixed = 12 }
das = { zero_cut = true }

[[tasks]]
name = "phrasebank"
kind = "classification"
train = ["pb.jsonl"]
label_col = "label"
labels = ["negative", "neutral", "positive"]
share = 0.5
"#;

fn parse(text: &str) -> TrainConfig {
    toml::from_str(text).unwrap()
}

/// The error of `THREE` with `edit` applied to its tasks.
fn error_of(edit: impl FnOnce(&mut Vec<TaskSpec>)) -> String {
    let mut c = parse(THREE);
    edit(&mut c.tasks);
    c.task_specs().unwrap_err().to_string()
}

#[test]
fn three_declared_tasks_parse_validate_and_round_trip() {
    let c = parse(THREE);
    let specs = c.task_specs().unwrap();
    let names: Vec<&str> = specs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["fiqa", "polarity", "phrasebank"]);
    assert!(specs[0].main && !specs[1].main);
    assert_eq!(specs[1].loss(), TaskLoss::SoftOrdinal);
    assert_eq!(specs[2].loss(), TaskLoss::Ce);
    assert_eq!(specs[0].loss(), TaskLoss::Mse);
    assert!(specs[1].das.as_ref().unwrap().get_zero_cut());
    let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn the_main_task_moves_to_the_front() {
    let mut c = parse(THREE);
    c.tasks.push(TaskSpec {
        name: "headlines".into(),
        train: vec!["h.jsonl".into()],
        main: true,
        ..Default::default()
    });
    let specs = c.task_specs().unwrap();
    assert_eq!(specs[0].name, "headlines");
    assert!(specs[0].main && specs.iter().filter(|t| t.main).count() == 1);
    assert_eq!(specs[1].name, "fiqa");
}

#[test]
fn without_declarations_data_and_task_are_the_t1_and_t2_cases() {
    let mut c = TrainConfig::default();
    c.data.train = vec!["a.jsonl".into()];
    c.task.strata = Strata::Das;
    let specs = c.task_specs().unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!((specs[0].name.as_str(), specs[0].kind), (MAIN_TASK, TaskKind::Regression));
    assert_eq!(specs[0].train, c.data.train);
    assert_eq!((specs[1].name.as_str(), specs[1].kind), (CLASS_TASK, TaskKind::Derived));
    assert_eq!(specs[1].from.as_deref(), Some(MAIN_TASK));
    c.task.strata = Strata::None;
    c.task.imbalance = Imbalance::Lds;
    let specs = c.task_specs().unwrap();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].loss(), TaskLoss::Lds);
    // Declared tasks and [data] files do not mix.
    let mut c = parse(THREE);
    c.data.train = vec!["a.jsonl".into()];
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("leave [data]"), "{err}");
}

/// An edit of `THREE`'s tasks.
type Edit = Box<dyn FnOnce(&mut Vec<TaskSpec>)>;

#[test]
fn bad_declarations_name_the_task_and_the_field() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "task `phrasebank` (classification): `label_col` is missing",
            Box::new(|t| t[2].label_col = None),
        ),
        (
            "task `phrasebank` (classification): `labels` must name at least 2",
            Box::new(|t| t[2].labels.clear()),
        ),
        (
            "task `phrasebank` (classification): `labels` names `neutral` twice",
            Box::new(|t| t[2].labels[0] = "neutral".into()),
        ),
        (
            "task `polarity` (derived): `from` names `phrasebank`, a classification task",
            Box::new(|t| t[1].from = Some("phrasebank".into())),
        ),
        (
            "task `polarity` (derived): `from` names no task: `fiqa2`",
            Box::new(|t| t[1].from = Some("fiqa2".into())),
        ),
        ("task `polarity` (derived): `from` is missing", Box::new(|t| t[1].from = None)),
        (
            "task `polarity` (derived): `train` is not for a derived task",
            Box::new(|t| t[1].train = vec!["x.jsonl".into()]),
        ),
        (
            "task `polarity` (derived): `classes` must be auto or 2 to 16, got 17",
            Box::new(|t| t[1].classes = Classes::Fixed(17)),
        ),
        ("task `polarity` (derived): `sigma` is missing", Box::new(|t| t[1].sigma = None)),
        (
            "task `phrasebank` (classification): `shared` names no task: `nope`",
            Box::new(|t| t[2].shared = Some("nope".into())),
        ),
        (
            "task `phrasebank` (classification): `shared` names `fiqa`, a regression task",
            Box::new(|t| t[2].shared = Some("fiqa".into())),
        ),
        ("task `fiqa`: `name` is used by two tasks", Box::new(|t| t[2].name = "fiqa".into())),
        (
            "tasks fiqa, phrasebank: `main = true` on several tasks",
            Box::new(|t| {
                t[0].main = true;
                t[2].main = true
            }),
        ),
        ("task `phrasebank`: the main task", Box::new(|t| t[2].main = true)),
        ("task `fiqa` (regression): `train` names no file", Box::new(|t| t[0].train.clear())),
        (
            "task `fiqa` (regression): `loss` must be mse, lds or bmse, got ce",
            Box::new(|t| t[0].loss = Some(TaskLoss::Ce)),
        ),
        (
            "task `phrasebank` (classification): `share` must be > 0, got 0",
            Box::new(|t| t[2].share = Some(0.0)),
        ),
    ];
    for (want, edit) in cases {
        let err = error_of(edit);
        assert!(err.contains(want), "want `{want}`, got `{err}`");
    }
}

#[test]
fn a_shared_head_of_the_same_kind_is_accepted() {
    let mut c = parse(THREE);
    c.tasks[2].shared = Some("polarity".into());
    c.task_specs().unwrap();
    c.tasks.push(TaskSpec {
        name: "headlines".into(),
        train: vec!["h.jsonl".into()],
        shared: Some("fiqa".into()),
        ..Default::default()
    });
    assert_eq!(c.task_specs().unwrap().len(), 4);
}

#[test]
fn declared_t1_and_t2_tasks_run_as_their_data_and_task_equivalent() {
    let mut c = parse(THREE);
    c.tasks.truncate(2);
    c.tasks[1].loss = None;
    c.tasks[1].sigma = None;
    let p = c.plan().unwrap();
    let r = &p.core;
    assert!(r.tasks.is_empty() && p.aux.is_empty());
    assert_eq!(p.names, ["fiqa", "polarity"]);
    assert_eq!(r.data.train, vec![PathBuf::from("fiqa.jsonl")]);
    assert_eq!(r.task.strata, Strata::Das);
    assert_eq!(r.task.classes, Classes::Fixed(12));
    assert!(r.das.get_zero_cut());
    // The implied T = 2 tasks, declared, give back the same configuration.
    let mut legacy = TrainConfig::default();
    legacy.data.train = vec!["a.jsonl".into()];
    legacy.task.strata = Strata::Das;
    let declared = TrainConfig {
        tasks: legacy.task_specs().unwrap(),
        data: Default::default(),
        ..legacy.clone()
    };
    assert_eq!(declared.plan().unwrap().core, legacy);
    assert_eq!(legacy.plan().unwrap().names, ["reg", "cls"]);
    legacy.task.strata = Strata::None;
    let declared = TrainConfig {
        tasks: legacy.task_specs().unwrap(),
        data: Default::default(),
        ..legacy.clone()
    };
    assert_eq!(declared.plan().unwrap().core, legacy);
    assert_eq!(legacy.plan().unwrap().names, ["reg"]);
}

#[test]
fn three_tasks_plan_as_core_plus_further_tasks() {
    let p = parse(THREE).plan().unwrap();
    assert_eq!(p.names, ["fiqa", "polarity", "phrasebank"]);
    assert_eq!(p.cls_loss, TaskLoss::SoftOrdinal);
    assert_eq!(p.cls_sigma, Some(0.5));
    assert_eq!(p.aux.len(), 1);
    assert_eq!(p.aux[0].name, "phrasebank");
    assert!(p.core.tasks.is_empty());
    // Two derived tasks from one regression task are refused by name.
    let mut c = parse(THREE);
    let mut second = c.tasks[1].clone();
    second.name = "again".into();
    c.tasks.push(second);
    let err = c.plan().unwrap_err().to_string();
    assert!(err.contains("task `again` (derived): `from` names `fiqa`"), "{err}");
    // The main task has no share.
    let mut c = parse(THREE);
    c.tasks[0].share = Some(2.0);
    let err = c.plan().unwrap_err().to_string();
    assert!(err.contains("task `fiqa` (main): `share`"), "{err}");
}
