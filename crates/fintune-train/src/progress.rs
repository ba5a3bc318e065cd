//! Progress rendering, kept apart from the training loop: the loop reports events to a
//! [`Progress`]; [`Bars`] draws indicatif bars on a terminal, [`LogLines`] prints periodic
//! plain lines (logs, CI, `--quiet`).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One optimisation step, as shown to the user.
#[derive(Debug, Clone)]
pub struct StepView {
    /// 0-based epoch.
    pub epoch: usize,
    /// Epochs in all.
    pub epochs: usize,
    /// 0-based step in the epoch.
    pub step_in_epoch: usize,
    /// Steps in the epoch.
    pub steps_in_epoch: usize,
    /// Steps done in all.
    pub global_step: u64,
    /// Steps in the run.
    pub total_steps: u64,
    /// Regression loss of the step.
    pub loss_reg: f64,
    /// Classification loss of the step (multi-task runs).
    pub loss_cls: Option<f64>,
    /// Task weights of the step.
    pub weights: Vec<f64>,
    /// Learning rate of the step.
    pub lr: f64,
    /// Throughput of the step.
    pub samples_per_s: f64,
}

/// The end of an epoch.
#[derive(Debug, Clone)]
pub struct EpochView {
    /// 0-based epoch.
    pub epoch: usize,
    /// Epochs in all.
    pub epochs: usize,
    /// Mean regression loss.
    pub train_loss: f64,
    /// Validation MSE.
    pub val_mse: f64,
    /// Validation Pearson correlation.
    pub val_pearson: Option<f64>,
    /// Validation polarity accuracy.
    pub val_acc_polarity: f64,
    /// Whether the model improved (was saved).
    pub improved: bool,
    /// Wall time of the epoch.
    pub elapsed: Duration,
}

/// Receives training events.
pub trait Progress {
    /// Training starts (or resumes at `done_steps`).
    fn start(&mut self, total_steps: u64, done_steps: u64) {
        let _ = (total_steps, done_steps);
    }
    /// A step finished.
    fn step(&mut self, s: &StepView);
    /// An epoch finished and was evaluated.
    fn epoch(&mut self, e: &EpochView);
    /// A free-form message (data summary, early stop, where files went).
    fn message(&mut self, msg: &str);
    /// Training ended.
    fn finish(&mut self) {}
}

/// Bars on a terminal, plain lines otherwise or when `quiet`.
pub fn for_terminal(quiet: bool) -> Box<dyn Progress> {
    if !quiet && std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(LogLines::new(Duration::from_secs(if quiet { 30 } else { 10 })))
    }
}

fn weights_text(w: &[f64]) -> String {
    w.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join("/")
}

fn step_text(s: &StepView) -> String {
    let cls = s.loss_cls.map(|c| format!(" cls {c:.4}")).unwrap_or_default();
    format!(
        "epoch {}/{} step {}/{}: reg {:.4}{cls} w {} lr {:.2e} {:.1} samples/s",
        s.epoch + 1,
        s.epochs,
        s.step_in_epoch + 1,
        s.steps_in_epoch,
        s.loss_reg,
        weights_text(&s.weights),
        s.lr,
        s.samples_per_s
    )
}

fn epoch_text(e: &EpochView) -> String {
    format!(
        "epoch {}/{} done in {:.1}s: train loss {:.4}, val mse {:.4}, pearson {}, acc_polarity {:.3}{}",
        e.epoch + 1,
        e.epochs,
        e.elapsed.as_secs_f64(),
        e.train_loss,
        e.val_mse,
        e.val_pearson.map_or("n/a".into(), |p| format!("{p:.3}")),
        e.val_acc_polarity,
        if e.improved { " (best so far)" } else { "" }
    )
}

/// indicatif bars: one over all steps with the latest losses, weights and throughput.
#[derive(Debug, Default)]
pub struct Bars {
    bar: Option<ProgressBar>,
}

impl Progress for Bars {
    fn start(&mut self, total_steps: u64, done_steps: u64) {
        let bar = ProgressBar::new(total_steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_position(done_steps);
        self.bar = Some(bar);
    }
    fn step(&mut self, s: &StepView) {
        if let Some(b) = &self.bar {
            b.set_position(s.global_step);
            b.set_message(step_text(s));
        }
    }
    fn epoch(&mut self, e: &EpochView) {
        self.message(&epoch_text(e));
    }
    fn message(&mut self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Plain lines on stderr: a step line at most every `every`, and every epoch.
#[derive(Debug)]
pub struct LogLines {
    every: Duration,
    last: Option<Instant>,
}

impl LogLines {
    /// Prints a step line at most every `every`.
    pub fn new(every: Duration) -> Self {
        LogLines { every, last: None }
    }
}

impl Progress for LogLines {
    fn step(&mut self, s: &StepView) {
        let due =
            self.last.is_none_or(|t| t.elapsed() >= self.every) || s.global_step == s.total_steps;
        if due {
            self.last = Some(Instant::now());
            eprintln!("{}", step_text(s));
        }
    }
    fn epoch(&mut self, e: &EpochView) {
        eprintln!("{}", epoch_text(e));
    }
    fn message(&mut self, msg: &str) {
        eprintln!("{msg}");
    }
}

/// Shows nothing (the experiment harness prints one line per run instead).
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn step(&mut self, _: &StepView) {}
    fn epoch(&mut self, _: &EpochView) {}
    fn message(&mut self, _: &str) {}
}
