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

/// Rows `from..to` of the fixture, as JSON values.
fn fixture_rows(from: usize, to: usize) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(crate::root().join("fixtures/train.jsonl")).unwrap();
    text.lines().skip(from).take(to - from).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write_jsonl(path: &Path, rows: &[serde_json::Value]) {
    let lines: Vec<String> = rows.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Main task (32 fixture rows, also its validation data) with DAS classes derived from it, a
/// classification task with its own head (polarity labels of 24 other rows, in a `label`
/// column) and a further regression task sharing the main head (24 more rows, two of them
/// copies of main texts, which the cross-set de-duplication must drop).
fn four_task_config(dir: &Path, out: &str) -> TrainConfig {
    let main = fixture_subset(dir, "main.jsonl", 32);
    let labelled: Vec<serde_json::Value> = fixture_rows(32, 56)
        .into_iter()
        .map(|mut r| {
            let s = r["score"].as_f64().unwrap();
            let label = if s < -0.2 {
                "negative"
            } else if s > 0.2 {
                "positive"
            } else {
                "neutral"
            };
            r.as_object_mut().unwrap().remove("score");
            r["label"] = label.into();
            r
        })
        .collect();
    write_jsonl(&dir.join("polarity.jsonl"), &labelled);
    let mut more = fixture_rows(56, 78);
    more.extend(fixture_rows(0, 2).into_iter().map(|mut r| {
        r["id"] = format!("copy-{}", r["id"].as_str().unwrap()).into();
        r
    }));
    write_jsonl(&dir.join("more.jsonl"), &more);
    let text = format!(
        r#"
[[tasks]]
name = "main"
train = [{main:?}]
val = {main:?}

[[tasks]]
name = "classes"
kind = "derived"
from = "main"

[[tasks]]
name = "polarity"
kind = "classification"
train = [{pol:?}]
label_col = "label"
labels = ["negative", "neutral", "positive"]

[[tasks]]
name = "more"
train = [{more:?}]
shared = "main"
"#,
        pol = dir.join("polarity.jsonl"),
        more = dir.join("more.jsonl"),
    );
    let mut cfg: TrainConfig = toml::from_str(&text).unwrap();
    cfg.model.backbone = crate::minilm();
    cfg.model.max_len = 24;
    cfg.optim.batch_size = 16;
    cfg.optim.eval_batch_size = 32;
    cfg.optim.seed = 7;
    cfg.out = Some(dir.join(out));
    cfg
}

#[test]
fn a_four_task_run_overfits_a_tiny_self_made_fixture() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = four_task_config(dir.path(), "four");
    cfg.optim.epochs = 25;
    cfg.optim.patience = 100;
    cfg.optim.lr = 2e-4;
    cfg.optim.head_lr = 3e-3;
    cfg.optim.warmup = 0.0;
    cfg.model.heads.dropout = 0.0;
    let m = finished(run(&cfg, &Default::default()));
    // Proportional shares of 16 slots: main 32, polarity 24, more 22 (24 less 2 copies).
    let tasks: Vec<(&str, usize, usize, usize)> =
        m.data.tasks.iter().map(|t| (t.name.as_str(), t.train, t.dropped, t.slots)).collect();
    assert_eq!(tasks, [("polarity", 24, 0, 5), ("more", 22, 2, 4)]);
    assert_eq!(m.data.train, 32);
    let report = std::fs::read_to_string(dir.path().join("four/report.md")).unwrap();
    assert!(report.contains("main.jsonl"), "{report}");
    assert!(
        report.contains(
            "further task `more` (regression): 22 training examples of 24 read (2 dropped"
        ),
        "{report}"
    );
    let h =
        fintune_train::run::history::read_history(&dir.path().join("four/history.csv")).unwrap();
    for t in ["main", "classes", "polarity", "more"] {
        assert!(h.header.contains(&format!("loss.{t}")), "no loss.{t} in {:?}", h.header);
    }
    // 32 main rows at 7 per batch: 5 steps per epoch.
    assert_eq!(h.series("loss.main").len(), 25 * 5);
    let last = |c: &str| {
        let s = h.series(c);
        s[s.len() - 5..].iter().map(|(_, v)| v).sum::<f64>() / 5.0
    };
    let first = |c: &str| h.series(c)[..5].iter().map(|(_, v)| v).sum::<f64>() / 5.0;
    for t in ["main", "classes", "polarity", "more"] {
        let (a, b) = (first(&format!("loss.{t}")), last(&format!("loss.{t}")));
        println!("loss.{t}: first epoch {a:.4}, last epoch {b:.4}");
        assert!(b < 0.1 * a, "{t}: last-epoch loss {b} is not a tenth of the first {a}");
    }
    let p =
        fintune_train::predict::Predictor::load(&dir.path().join("four/model"), tch::Device::Cpu)
            .unwrap();
    let ds =
        fintune_data::read_dataset(&[dir.path().join("main.jsonl")], &Default::default()).unwrap();
    let mse = p.evaluate(&ds).unwrap().mse;
    println!("four tasks: main training MSE {mse:.5}");
    assert!(mse < 0.01, "main training MSE {mse} >= 0.01");
}

#[test]
fn a_run_with_further_tasks_resumes_exactly() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut straight = four_task_config(dir.path(), "straight");
    straight.optim.epochs = 2;
    let a = finished(run(&straight, &Default::default()));
    let mut cut = straight.clone();
    cut.out = Some(dir.path().join("cut"));
    let stop = fintune_train::trainer::RunOptions { stop_after: Some(1), ..Default::default() };
    assert!(matches!(run(&cut, &stop), fintune_train::trainer::Outcome::Interrupted { .. }));
    let resume = fintune_train::trainer::RunOptions { resume: true, ..Default::default() };
    let b = finished(run(&cut, &resume));
    assert_eq!(a.val.mse.to_bits(), b.val.mse.to_bits(), "{} against {}", a.val.mse, b.val.mse);
    let ha = std::fs::read_to_string(dir.path().join("straight/history.csv")).unwrap();
    let hb = std::fs::read_to_string(dir.path().join("cut/history.csv")).unwrap();
    let losses = |h: &str| -> Vec<String> {
        h.lines().map(|l| l.split(',').take(7).collect::<Vec<_>>().join(",")).collect()
    };
    assert_eq!(losses(&ha), losses(&hb));
}

#[test]
fn bad_further_tasks_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut progress = crate::Messages::default();
    let out = dir.path().join("run");
    // A further task whose every text is a validation text of the main task.
    let mut cfg = four_task_config(dir.path(), "run");
    cfg.tasks[3].train = vec![dir.path().join("main.jsonl")];
    let err = fintune_train::trainer::train(&cfg, &out, &Default::default(), &mut progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("task `more` (regression): `train` leaves no example"), "{err}");
    assert!(!out.exists());
    // A label the task does not declare names file, line and column.
    let mut cfg = four_task_config(dir.path(), "run");
    cfg.tasks[2].labels = vec!["negative".into(), "positive".into()];
    let err = fintune_train::trainer::train(&cfg, &out, &Default::default(), &mut progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("polarity.jsonl:") && err.contains("\"label\""), "{err}");
    assert!(!out.exists());
    // A derived task pointing at a task that is not there names both.
    let mut bad = four_task_config(dir.path(), "run");
    bad.tasks[1].from = Some("main2".into());
    let err = fintune_train::trainer::train(&bad, &out, &Default::default(), &mut progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("task `classes` (derived): `from` names no task: `main2`"), "{err}");
    // A head shared across output kinds.
    let mut bad = four_task_config(dir.path(), "run");
    bad.tasks[2].shared = Some("main".into());
    let err = fintune_train::trainer::train(&bad, &out, &Default::default(), &mut progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("task `polarity` (classification): `shared` names `main`"), "{err}");
}

#[test]
fn soft_ordinal_classes_pick_a_fusion_on_validation_and_predict_with_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_subset(dir.path(), "train.jsonl", 48);
    let mut cfg = tiny_config(&data, &dir.path().join("soft"));
    cfg.data.val = None;
    cfg.optim.epochs = 2;
    let mut cfg = cfg.with_further_tasks(vec![]).unwrap();
    cfg.tasks[1].loss = Some(fintune_train::config::TaskLoss::SoftOrdinal);
    cfg.tasks[1].sigma = Some(0.1);
    let m = finished(run(&cfg, &Default::default()));
    let f = m.fusion.clone().expect("a soft ordinal run records its fusion");
    assert_eq!(f.grid.len(), 11);
    let best = f.grid.iter().map(|g| g.1).fold(f64::INFINITY, f64::min);
    let chosen = f.grid.iter().find(|g| g.0 == f.mix).unwrap().1;
    assert_eq!(chosen, best, "the chosen mix has the lowest validation MSE: {f:?}");
    assert!((m.val.mse - chosen).abs() <= 1e-6 * chosen, "{} against {chosen}", m.val.mse);
    // The saved model predicts with the fusion: its validation MSE is the run's.
    let p =
        fintune_train::predict::Predictor::load(&dir.path().join("soft/model"), tch::Device::Cpu)
            .unwrap();
    assert_eq!(p.extra.fusion.as_ref().map(|x| x.mix), (f.mix > 0.0).then_some(f.mix));
    let h =
        fintune_train::run::history::read_history(&dir.path().join("soft/history.csv")).unwrap();
    assert!(h.series("loss.cls").iter().all(|(_, v)| v.is_finite() && *v > 0.0));
    println!("soft ordinal: mix {} (validation MSE {chosen:.4}, mix 0: {:.4})", f.mix, f.grid[0].1);
}

#[test]
fn every_weighting_method_runs_over_four_tasks() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    for spec in fintune_dwa::WeightingSpec::all_defaults()
        .into_iter()
        .filter(|s| !matches!(s, fintune_dwa::WeightingSpec::Static(_)))
        .chain([
            fintune_dwa::WeightingSpec::DwaMain,
            fintune_dwa::WeightingSpec::Static(vec![1.0, 0.5, 0.5, 0.5]),
        ])
    {
        let name = spec.to_string().replace([':', ','], "_");
        let mut cfg = four_task_config(dir.path(), &name);
        cfg.optim.epochs = 1;
        cfg.task.weighting = spec.clone();
        let m = finished(run(&cfg, &Default::default()));
        let h =
            fintune_train::run::history::read_history(&dir.path().join(&name).join("history.csv"))
                .unwrap();
        for t in ["main", "classes", "polarity", "more"] {
            let w = h.series(&format!("w.{t}"));
            assert_eq!(w.len(), 5, "{name}: steps of w.{t}");
            assert!(w.iter().all(|(_, v)| v.is_finite() && *v >= 0.0), "{name}: w.{t} = {w:?}");
        }
        println!("{name}: validation MSE {:.4}", m.val.mse);
        assert!(m.val.mse.is_finite());
        // A run folder holds the model and a checkpoint (about 0.4 GB); keep one at a time.
        std::fs::remove_dir_all(dir.path().join(&name)).unwrap();
    }
}

/// Main-task-first DWA weights an auxiliary by the cosine of its gradient with the main
/// task's. Tasks with their own data occupy their own rows of a batch, so at the batch
/// representation their gradients never overlap: the cosine there is exactly 0, and the
/// FiQA comparison (`mtl-fpb-dwa-main`) gave the PhraseBank weight 0 at every step. The
/// agreement is measured on the last shared layer instead, where the tasks do meet.
#[test]
fn main_task_first_dwa_measures_agreement_where_tasks_with_their_own_rows_meet() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = four_task_config(dir.path(), "dwa-main");
    cfg.optim.epochs = 2;
    cfg.task.weighting = fintune_dwa::WeightingSpec::DwaMain;
    finished(run(&cfg, &Default::default()));
    let h = fintune_train::run::history::read_history(&dir.path().join("dwa-main/history.csv"))
        .unwrap();
    for t in ["classes", "polarity", "more"] {
        let cos = h.series(&format!("cos.{t}"));
        let w = h.series(&format!("w.{t}"));
        assert_eq!(cos.len(), 10, "steps of cos.{t}");
        assert!(
            cos.iter().any(|(_, v)| *v > 0.0) && w.iter().any(|(_, v)| *v > 0.0),
            "{t}: cosine {cos:?}, weight {w:?}: the auxiliary never agreed with the main task"
        );
        assert!(cos.iter().all(|(_, v)| (0.0..=1.0).contains(v)), "cos.{t} = {cos:?}");
    }
}
