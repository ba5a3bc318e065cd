//! Multi-task declarations: today's T = 1 and T = 2 runs reproduce their recorded numbers
//! exactly (per-step losses and weights, final validation MSE), declared with `[data]` +
//! `[task]` or as `[[tasks]]`.

use std::path::Path;

use fintune_train::config::Strata;
use fintune_train::run::metrics::RunMetrics;
use fintune_train::TrainConfig;

use crate::training::{finished, run, tiny_config};
use crate::{fixture_subset, serial};

/// Per-step losses and weights of `history.csv` (column name, values) and the final
/// validation MSE of a short run on 48 fixture rows.
fn numbers_of(
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut TrainConfig),
) -> (Vec<(String, Vec<f64>)>, f64) {
    let data = fixture_subset(dir, "train.jsonl", 48);
    let mut cfg = tiny_config(&data, &dir.join(name));
    cfg.data.val = None;
    cfg.optim.epochs = 2;
    cfg.optim.threads = 1;
    edit(&mut cfg);
    // One libtorch thread (the recorded numbers' reduction order), given back afterwards.
    let threads = tch::get_num_threads();
    let m: RunMetrics = finished(run(&cfg, &Default::default()));
    tch::set_num_threads(threads);
    let h = fintune_train::run::history::read_history(&dir.join(name).join("history.csv")).unwrap();
    let cols = h
        .header
        .iter()
        .filter(|c| c.starts_with("loss.") || c.starts_with("w."))
        .map(|c| (c.clone(), h.series(c).into_iter().map(|(_, v)| v).collect()))
        .collect();
    (cols, m.val.mse)
}

/// Numbers recorded from the trainer before task declarations existed (commit e7166a2,
/// one libtorch thread, CPU).
struct Recorded {
    val_mse: f64,
    columns: &'static [(&'static str, &'static [f64])],
}

const T1: Recorded = Recorded {
    val_mse: 0.23070431136577665,
    columns: &[
        (
            "loss.reg",
            &[
                0.20010574162006378,
                0.35672569274902344,
                0.15681104362010956,
                0.29311510920524597,
                0.22840376198291779,
                0.24114714562892914,
                0.07631257176399231,
                0.06900536268949509,
                0.16011367738246918,
                0.025675684213638306,
                0.15161310136318207,
                0.14834195375442505,
            ],
        ),
        ("w.reg", &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ],
};

const T2: Recorded = Recorded {
    val_mse: 0.2266876886424097,
    columns: &[
        (
            "loss.reg",
            &[
                0.20010574162006378,
                0.31223264336586,
                0.2407103180885315,
                0.27980104088783264,
                0.2002500593662262,
                0.22372746467590332,
                0.07731146365404129,
                0.05795775726437569,
                0.23070724308490753,
                0.03133471682667732,
                0.21612505614757538,
                0.18774092197418213,
            ],
        ),
        (
            "loss.cls",
            &[
                1.6570338010787964,
                1.628283143043518,
                1.7120105028152466,
                1.6754465103149414,
                1.6412359476089478,
                1.7027039527893066,
                1.4729464054107666,
                1.6084762811660767,
                1.6236984729766846,
                1.3766871690750122,
                1.6060669422149658,
                1.5187041759490967,
            ],
        ),
        (
            "w.reg",
            &[
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0015647008041353,
                1.0005821313983065,
            ],
        ),
        (
            "w.cls",
            &[
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                0.9984352991958648,
                0.9994178686016936,
            ],
        ),
    ],
};

/// Relative tolerance against the recorded numbers. On the machine that recorded them (the
/// 2-core AMD EPYC VM, libtorch 2.13.0) they are reproduced bit for bit (printed); another CPU
/// may sum in another order inside libtorch's kernels, which moves float32 results in the last
/// bits, while any change in batching, draws or losses moves them by far more than this.
const REL_TOL: f64 = 1e-5;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= REL_TOL * a.abs().max(b.abs()).max(1e-12)
}

fn check(name: &str, got: &(Vec<(String, Vec<f64>)>, f64), want: &Recorded) {
    let names: Vec<&str> = got.0.iter().map(|(c, _)| c.as_str()).collect();
    let want_names: Vec<&str> = want.columns.iter().map(|(c, _)| *c).collect();
    assert_eq!(names, want_names, "{name}: per-task columns");
    let mut exact = got.1.to_bits() == want.val_mse.to_bits();
    for ((col, values), (_, recorded)) in got.0.iter().zip(want.columns) {
        assert_eq!(values.len(), recorded.len(), "{name}: steps of {col}");
        for (step, (&v, &r)) in values.iter().zip(recorded.iter()).enumerate() {
            assert!(close(v, r), "{name}: {col} at step {}: {v} against recorded {r}", step + 1);
            exact &= v.to_bits() == r.to_bits();
        }
    }
    assert!(
        close(got.1, want.val_mse),
        "{name}: validation MSE {} against {}",
        got.1,
        want.val_mse
    );
    println!(
        "{name}: recorded numbers reproduced {}",
        if exact { "bit for bit" } else { "within 1e-5" }
    );
}

#[test]
fn single_task_and_default_two_task_runs_reproduce_their_recorded_numbers() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    check("t1", &numbers_of(dir.path(), "t1", |c| c.task.strata = Strata::None), &T1);
    check("t2", &numbers_of(dir.path(), "t2", |_| {}), &T2);
}

/// `[data]` + `[task]` rewritten as the `[[tasks]]` they stand for.
fn declare(c: &mut TrainConfig) {
    c.tasks = c.task_specs().unwrap();
    c.data = Default::default();
    c.task = Default::default();
}

#[test]
fn the_same_runs_declared_as_tasks_reproduce_them_too() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let t1 = numbers_of(dir.path(), "t1", |c| {
        c.task.strata = Strata::None;
        declare(c);
        assert_eq!(c.tasks.len(), 1);
    });
    check("t1 declared", &t1, &T1);
    let t2 = numbers_of(dir.path(), "t2", |c| {
        declare(c);
        assert_eq!(c.tasks.len(), 2);
    });
    check("t2 declared", &t2, &T2);
}

#[test]
fn a_declaration_the_trainer_cannot_run_yet_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 16);
    let text = format!(
        r#"
[[tasks]]
name = "fiqa"
train = [{data:?}]

[[tasks]]
name = "fiqa-classes"
kind = "derived"
from = "fiqa"

[[tasks]]
name = "more"
train = [{data:?}]
"#
    );
    let toml_path = dir.path().join("run.toml");
    std::fs::write(&toml_path, text).unwrap();
    let cfg = TrainConfig::from_toml_file(&toml_path).unwrap();
    let out = dir.path().join("run");
    let mut progress = crate::Messages::default();
    let err = fintune_train::trainer::train(&cfg, &out, &Default::default(), &mut progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("task `more` (regression): a third task is not supported yet"), "{err}");
    assert!(!out.exists());
    // A derived task pointing at a task that is not there names both.
    let mut bad = cfg.clone();
    bad.tasks[1].from = Some("fiqa2".into());
    let err = fintune_train::trainer::train(&bad, &out, &Default::default(), &mut progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("task `fiqa-classes` (derived): `from` names no task: `fiqa2`"), "{err}");
}
