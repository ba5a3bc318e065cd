//! `plots/*.png` and `report.md` of a run.

use std::fmt::Write as _;

use crate::batching::Example;
use crate::config::{Imbalance, TrainConfig};
use crate::eval::Predictions;
use crate::metrics::MetricReport;
use crate::plots;
use crate::prepare::{Prepared, SplitHow};
use crate::run::history::{read_history, History};
use crate::run::metrics::RunMetrics;
use crate::run::{self, files, RunDir};
use crate::Result;

/// Draws the plots; returns (file, caption) for the ones drawn and a note per failure (a
/// failed plot never fails the run).
pub fn plots(
    run: &RunDir,
    prep: &Prepared,
    m: &RunMetrics,
    eval: (&str, &[Example], &Predictions),
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |file: &str, caption: String, r: Result<(), String>| match r {
        Ok(()) => out.push((file.to_owned(), caption)),
        Err(e) => out.push((String::new(), format!("{file} not drawn: {e}"))),
    };
    let hist: Option<History> = read_history(&run.history()).ok();
    if let Some(h) = &hist {
        let col = |name: &str| h.series(name);
        let smooth = |v: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
            let mut ema = None;
            v.into_iter()
                .map(|(x, y)| {
                    let e = ema.map_or(y, |e: f64| 0.9 * e + 0.1 * y);
                    ema = Some(e);
                    (x, e)
                })
                .collect()
        };
        let mut losses = vec![("regression loss (EMA 0.9)", smooth(col("loss.reg")))];
        let cls = smooth(col("loss.cls"));
        if !cls.is_empty() {
            losses.push(("classification loss (EMA 0.9)", cls));
        }
        let p = run.plots().join("losses.png");
        add(
            "plots/losses.png",
            "Training losses per step".into(),
            draw(&p, |p| plots::lines(p, "Training losses", "step", "loss", &losses)),
        );
        let wc = col("w.cls");
        if !wc.is_empty() {
            let p = run.plots().join("weights.png");
            let series = [("w_reg", col("w.reg")), ("w_cls", wc)];
            add(
                "plots/weights.png",
                format!("Task weights per step ({})", m.weighting),
                draw(&p, |p| plots::lines(p, "Task weights", "step", "weight", &series)),
            );
        }
    }
    let train_scores: Vec<f32> = prep.train_ex.iter().map(|e| e.score).collect();
    let th: Vec<f32> = m.strata.thresholds.iter().map(|&t| t as f32).collect();
    let p = run.plots().join("scores.png");
    add(
        "plots/scores.png",
        format!("Training scores with the {} thresholds", m.strata.method),
        draw(&p, |p| {
            plots::histogram(
                p,
                "Training score distribution and class thresholds",
                &train_scores,
                (-1.0, 1.0),
                40,
                &th,
            )
        }),
    );
    let (name, ex, pred) = eval;
    let gold: Vec<f32> = ex.iter().map(|e| e.score).collect();
    let p = run.plots().join("scatter.png");
    add(
        "plots/scatter.png",
        format!("Predicted vs gold scores ({name})"),
        draw(&p, |p| plots::scatter(p, &format!("Predicted vs gold ({name})"), &gold, &pred.score)),
    );
    let report: &MetricReport =
        if name == "test" { m.test.as_ref().unwrap_or(&m.val) } else { &m.val };
    let labels: Vec<String> =
        report.mse_by_region.iter().map(|r| format!("{} (n={})", r.region, r.n)).collect();
    let vals: Vec<Option<f64>> = report.mse_by_region.iter().map(|r| r.mse).collect();
    let p = run.plots().join("regions.png");
    add(
        "plots/regions.png",
        format!("MSE by gold-score region ({name})"),
        draw(&p, |p| plots::bars(p, &format!("MSE by region ({name})"), "MSE", &labels, &vals)),
    );
    out
}

/// Draws a plot into a new temporary file beside `path` and renames it into place (never
/// through a link planted at `path`).
fn draw(
    path: &std::path::Path,
    f: impl FnOnce(&std::path::Path) -> Result<(), String>,
) -> Result<(), String> {
    let dir = files::parent_of(path);
    let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}{name}-", files::TMP_PREFIX))
        .suffix(".png")
        .tempfile_in(&dir)
        .map_err(|e| e.to_string())?
        .into_temp_path();
    f(&tmp)?;
    tmp.persist(path).map_err(|e| e.to_string())?;
    Ok(())
}

fn f(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.4}"))
}

fn metric_rows(out: &mut String, name: &str, r: &MetricReport) {
    let _ = writeln!(
        out,
        "| {name} | {} | {:.4} | {:.4} | {} | {} | {} | {} | {:.3} | {} | {} |",
        r.n,
        r.mse,
        r.mae,
        f(r.r2),
        f(r.pearson),
        f(r.spearman),
        f(r.cosine),
        r.acc_polarity,
        f(r.acc_class),
        f(r.acc_class_from_score),
    );
}

/// Writes `report.md`.
pub fn write(
    run: &RunDir,
    cfg: &TrainConfig,
    m: &RunMetrics,
    plots: &[(String, String)],
    eval_name: &str,
) -> Result<()> {
    let mut s = String::new();
    let _ = writeln!(s, "# fintune run report\n");
    // The main task's files (with [[tasks]], `[data]` is empty).
    let train = cfg.task_specs().map_or_else(|_| cfg.data.train.clone(), |t| t[0].train.clone());
    let _ = writeln!(
        s,
        "- training data: {}",
        train.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(s, "- backbone: {} (tuning {})", cfg.model.backbone.display(), m.tuning);
    let _ = writeln!(
        s,
        "- examples: {} train, {} validation ({}), {}",
        m.data.train,
        m.data.val,
        if m.data.split.how == SplitHow::File {
            "from --val".to_owned()
        } else {
            format!(
                "group-aware stratified {:.0}% hold-out, seed {}",
                100.0 * m.data.split.fraction.unwrap_or(0.0),
                m.data.split.seed
            )
        },
        m.data.test.map_or("no test set".into(), |n| format!("{n} test"))
    );
    for sk in &m.data.skipped {
        let _ = writeln!(s, "- skipped {} invalid {} rows (see metrics.json)", sk.count, sk.part);
    }
    for t in &m.data.tasks {
        let _ = writeln!(
            s,
            "- further task `{}` ({}): {} training examples of {} read ({} dropped: equal to a \
             validation or test text of the main task), {} rows per batch",
            t.name, t.kind, t.train, t.read, t.dropped, t.slots
        );
    }
    let _ = writeln!(
        s,
        "- strata: {}{}",
        m.strata.method,
        if m.strata.classes > 0 {
            format!(
                " with {} classes, thresholds {:?}, normalized entropy {}, explained variance {}",
                m.strata.classes,
                m.strata
                    .thresholds
                    .iter()
                    .map(|t| (t * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>(),
                f(m.strata.normalized_entropy),
                f(m.strata.explained_variance)
            )
        } else {
            " (single-task regression)".into()
        }
    );
    let _ = writeln!(
        s,
        "- weighting: {}, regression loss: {}",
        m.weighting,
        if m.imbalance == Imbalance::None { "mse".into() } else { m.imbalance.to_string() }
    );
    let _ = writeln!(
        s,
        "- epochs run: {} (best epoch {}, chosen on validation MSE{})",
        m.epochs_run,
        m.best_epoch,
        if m.stopped_early { "; stopped early" } else { "" }
    );
    let _ = writeln!(
        s,
        "- time: {:.1} s wall, {:.1} s in training steps, {:.1} samples/s, probe gradients {:.1}% of step time, peak RSS {}\n",
        m.timing.wall_s,
        m.timing.train_s,
        m.timing.samples_per_s,
        100.0 * m.timing.probe_overhead_share,
        m.timing.peak_rss_mib.map_or("n/a".into(), |x| format!("{x:.0} MiB"))
    );
    let _ = writeln!(s, "## Metrics of the best model\n");
    let _ = writeln!(s, "| set | n | mse | mae | r2 | pearson | spearman | cosine | acc_polarity | acc_class (head) | acc_class (score) |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    metric_rows(&mut s, "validation", &m.val);
    if let Some(t) = &m.test {
        metric_rows(&mut s, "test", t);
    }
    let _ = writeln!(s, "\nMSE by gold-score region ({eval_name}):\n");
    let _ = writeln!(s, "| region | abs(gold score) | n | mse |\n|---|---|---|---|");
    let r = if eval_name == "test" { m.test.as_ref().unwrap_or(&m.val) } else { &m.val };
    for e in &r.mse_by_region {
        let range =
            e.abs_hi.map_or(format!("[{}, 1]", e.abs_lo), |h| format!("[{}, {h})", e.abs_lo));
        let _ = writeln!(s, "| {} | {range} | {} | {} |", e.region, e.n, f(e.mse));
    }
    let _ = writeln!(s, "\n## Epochs\n\n| epoch | train loss (reg) | train loss (cls) | val mse | val pearson | val acc_polarity | saved |\n|---|---|---|---|---|---|---|");
    for e in &m.epochs {
        let _ = writeln!(
            s,
            "| {} | {:.4} | {} | {:.4} | {} | {:.3} | {} |",
            e.epoch,
            e.train_loss_reg,
            f(e.train_loss_cls),
            e.val.mse,
            f(e.val.pearson),
            e.val.acc_polarity,
            if e.improved { "yes" } else { "" }
        );
    }
    let _ = writeln!(s, "\n## Plots\n");
    for (file, caption) in plots {
        if file.is_empty() {
            let _ = writeln!(s, "- {caption}");
        } else {
            let _ = writeln!(s, "### {caption}\n\n![{caption}]({file})\n");
        }
    }
    let _ = writeln!(s, "Files: `config.toml` (resolved configuration), `das.json`, `history.csv` (per step), `metrics.json`, `model/` (best model), `checkpoint/` (for --resume).");
    run::write_atomic(&run.report(), s.as_bytes())
}
