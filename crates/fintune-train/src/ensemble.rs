//! Seed ensembles: `fintune train --ensemble N` ([`train_ensemble`]) trains N members with
//! seeds `seed, seed + 1, ...` on one validation split (the split seed stays the ensemble's
//! `optim.seed`), each a normal run folder `OUT/members/<k>/`, and saves one ensemble model
//! folder `OUT/model/`: the members' model folders (`model/members/<k>/`) and the manifest
//! `ensemble.json` ([`Manifest`]). [`crate::predict::Predictor`] loads such a folder and
//! averages the members' scores and class probabilities ([`average`]).
//!
//! The ensemble run folder holds `config.toml` (the ensemble's configuration), `members/`,
//! `model/`, `metrics.json` ([`EnsembleMetrics`]: each member's and the ensemble's validation
//! and test metrics, and the cost) and `report.md`. An interrupted ensemble resumes at its
//! unfinished member (`--resume`); finished members are kept.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fintune_model::TextEncoder;
use serde::{Deserialize, Serialize};

use crate::batching::Example;
use crate::eval::Predictions;
use crate::metrics::{MetricReport, RegressionMetrics};
use crate::predict::Predictor;
use crate::progress::Progress;
use crate::run::metrics::RunMetrics;
use crate::run::{self, files, RunDir};
use crate::trainer::{self, Outcome, RunOptions};
use crate::{Error, Result, TrainConfig};

/// The manifest's file name inside an ensemble model folder.
pub const MANIFEST: &str = "ensemble.json";

/// Whether `dir` is an ensemble model folder (it holds [`MANIFEST`]).
pub fn is_ensemble(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

/// `ensemble.json`: the members of an ensemble model folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version of this file (1).
    pub format: u32,
    /// The members, in seed order.
    pub members: Vec<MemberEntry>,
}

/// One member of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// The member's model folder, relative to the manifest's folder (or absolute).
    pub path: PathBuf,
    /// Its training seed.
    pub seed: u64,
    /// Its best (saved) epoch.
    pub best_epoch: usize,
    /// Its validation metrics.
    pub val: MetricReport,
}

impl Manifest {
    /// Reads `dir/ensemble.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let m: Manifest = files::read_json(&dir.join(MANIFEST))?;
        if m.members.is_empty() {
            return Err(Error::Config(format!(
                "{} lists no members",
                dir.join(MANIFEST).display()
            )));
        }
        Ok(m)
    }

    /// The members' model folders, each checked to hold a saved model (`fintune.json`).
    pub fn member_dirs(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.members
            .iter()
            .map(|e| {
                let p = dir.join(&e.path);
                if p.join("fintune.json").is_file() {
                    Ok(p)
                } else {
                    Err(Error::MissingMember { manifest: dir.join(MANIFEST), path: p })
                }
            })
            .collect()
    }
}

/// The mean of several models' predictions: scores and class probabilities averaged (in
/// f64), the class the most probable under the mean probabilities. One set is returned as is.
pub fn average(all: &[Predictions]) -> Predictions {
    match all {
        [] => Predictions::default(),
        [one] => one.clone(),
        _ => {
            let n = all.len() as f64;
            let mean =
                |vals: &mut dyn Iterator<Item = f32>| (vals.map(f64::from).sum::<f64>() / n) as f32;
            let score = (0..all[0].score.len())
                .map(|i| mean(&mut all.iter().map(|p| p.score[i])))
                .collect();
            let probs = all[0].probs.as_ref().map(|first| {
                (0..first.len())
                    .map(|i| {
                        (0..first[i].len())
                            .map(|c| {
                                mean(
                                    &mut all
                                        .iter()
                                        .map(|p| p.probs.as_ref().map_or(0.0, |q| q[i][c])),
                                )
                            })
                            .collect::<Vec<f32>>()
                    })
                    .collect::<Vec<_>>()
            });
            let class = probs.as_ref().map(|p| {
                p.iter()
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .map_or(0, |(i, _)| i)
                    })
                    .collect()
            });
            Predictions { score, class, probs }
        }
    }
}

/// One member in [`EnsembleMetrics`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberMetrics {
    /// Its training seed.
    pub seed: u64,
    /// Its run folder, relative to the ensemble's (`members/<k>`).
    pub dir: PathBuf,
    /// Its best epoch.
    pub best_epoch: usize,
    /// Epochs it ran.
    pub epochs_run: usize,
    /// Validation metrics of its best model.
    pub val: MetricReport,
    /// Test metrics of its best model.
    pub test: Option<MetricReport>,
    /// Its wall time in seconds (of the invocation that finished it).
    pub wall_s: f64,
    /// Its time in training steps, in seconds.
    pub train_s: f64,
}

/// The cost of an ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleCost {
    /// Training steps of all members, in seconds.
    pub train_s: f64,
    /// Wall time of the members' runs together, in seconds.
    pub members_wall_s: f64,
    /// Milliseconds per 1,000 texts to predict with the ensemble (validation and test texts).
    pub predict_ms_per_1000: f64,
    /// The same with one member (member 0).
    pub member_predict_ms_per_1000: f64,
    /// Peak resident memory of the process in MiB (where /proc is available).
    pub peak_rss_mib: Option<f64>,
}

/// `metrics.json` of an ensemble run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleMetrics {
    /// The members.
    pub members: Vec<MemberMetrics>,
    /// The ensemble's validation metrics.
    pub val: MetricReport,
    /// The ensemble's test metrics.
    pub test: Option<MetricReport>,
    /// Time and memory.
    pub cost: EnsembleCost,
}

/// The outcome of [`train_ensemble`].
#[derive(Debug)]
pub enum EnsembleOutcome {
    /// Every member finished; `model/`, metrics.json and report.md are written.
    Finished(Box<EnsembleMetrics>),
    /// A member stopped on purpose (`--stop-after`); resume to continue.
    Interrupted {
        /// The member (0-based).
        member: usize,
        /// Its epochs done.
        epochs: usize,
    },
}

/// `members/` of an ensemble run folder.
pub fn members_dir(root: &Path) -> PathBuf {
    root.join("members")
}

/// The configuration of member `k`: seed `seed + k`, the ensemble's split seed, one model,
/// its own folder.
pub fn member_config(cfg: &TrainConfig, root: &Path, k: usize) -> TrainConfig {
    let mut m = cfg.clone();
    m.data.split_seed = Some(cfg.split_seed());
    m.optim.seed = cfg.optim.seed.wrapping_add(k as u64);
    m.optim.ensemble = 1;
    m.out = Some(members_dir(root).join(k.to_string()));
    m
}

/// Checks the ensemble folder before a fresh start or `--resume` and writes its
/// `config.toml` on a fresh start. Returns the folder's lock, held while the members train.
fn prepare_folder(cfg: &TrainConfig, run: &RunDir, opts: &RunOptions) -> Result<files::DirLock> {
    let members = members_dir(&run.root);
    files::refuse_symlink(&members)?;
    let lock = if run.root.is_dir() { Some(run.lock()?) } else { None };
    if opts.resume {
        run.refuse_links()?;
        if run.is_finished() {
            return Err(Error::Resume {
                path: run.root.clone(),
                reason: "the ensemble already finished (metrics.json)".into(),
            });
        }
        if !run.config().exists() {
            return Err(Error::Resume {
                path: run.root.clone(),
                reason: format!("{} is missing", run.config().display()),
            });
        }
        let stored = TrainConfig::from_toml_file(&run.config())?;
        let keys = run::differing_keys(&stored, cfg);
        if !keys.is_empty() {
            return Err(Error::OtherConfig { path: run.root.clone(), keys });
        }
        return lock.map_or_else(|| run.lock(), Ok);
    }
    if opts.overwrite && members.is_dir() {
        fs::remove_dir_all(&members).map_err(|e| Error::io(&members, e))?;
    }
    let check = |overwrite| -> Result<()> {
        run.prepare_fresh(cfg, overwrite)?;
        if members.exists() {
            return Err(Error::Config(format!(
                "{} holds an interrupted ensemble ({}); continue it with --resume, or use \
                 --overwrite to start again",
                run.root.display(),
                members.display()
            )));
        }
        Ok(())
    };
    check(opts.overwrite)?;
    run.create()?;
    let lock = match lock {
        Some(l) => l,
        None => {
            // Created here: locked, then checked again (another process may have been quicker).
            let l = run.lock()?;
            check(false)?;
            l
        }
    };
    run::write_atomic(&run.config(), cfg.to_toml().as_bytes())?;
    Ok(lock)
}

/// Trains the ensemble `cfg.optim.ensemble` members into `root` (see the module docs).
/// `opts.stop_after` applies to each member's epochs.
pub fn train_ensemble(
    cfg: &TrainConfig,
    root: &Path,
    opts: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<EnsembleOutcome> {
    if opts.dist.is_some() {
        return Err(Error::Config(
            "--ensemble trains its members in one process; run each member's data-parallel job \
             on its own (--seed S) instead"
                .into(),
        ));
    }
    let resolved = cfg.resolve()?;
    let run = RunDir::new(root);
    let _lock = prepare_folder(cfg, &run, opts)?;
    let n = cfg.optim.ensemble;
    // A member kept as finished must still have its model, which the ensemble's model folder
    // is made of: one restored from its metrics alone (say, carried across machines without
    // its weights) fails here, before any member trains.
    for k in 0..n {
        let mrun = RunDir::new(&members_dir(root).join(k.to_string()));
        if mrun.is_finished() && !mrun.model().is_dir() {
            return Err(Error::Config(format!(
                "member {k} in {} has finished (its metrics.json is there) but its model \
                 folder {} is missing, and the ensemble needs it: remove {} to train that \
                 member again",
                mrun.root.display(),
                mrun.model().display(),
                mrun.root.display()
            )));
        }
    }
    let mut members = Vec::with_capacity(n);
    for k in 0..n {
        let mcfg = member_config(cfg, root, k);
        let mroot = members_dir(root).join(k.to_string());
        let mrun = RunDir::new(&mroot);
        let metrics: RunMetrics = if mrun.is_finished() {
            let stored = TrainConfig::from_toml_file(&mrun.config())?;
            let keys = run::differing_keys(&stored, &mcfg);
            if !keys.is_empty() {
                return Err(Error::OtherConfig { path: mroot, keys });
            }
            progress.message(&format!("member {k} (seed {}): finished, kept", mcfg.optim.seed));
            files::read_json(&mrun.metrics())?
        } else {
            let resume = mrun.checkpoint().join("trainer.json").exists();
            progress.message(&format!(
                "member {k} of {n} (seed {}){}",
                mcfg.optim.seed,
                if resume { ", resuming" } else { "" }
            ));
            let mopts =
                RunOptions { resume, stop_after: opts.stop_after, overwrite: false, dist: None };
            match trainer::train(&mcfg, &mroot, &mopts, progress)? {
                Outcome::Finished(m) => *m,
                Outcome::Interrupted { epochs } => {
                    return Ok(EnsembleOutcome::Interrupted { member: k, epochs })
                }
                Outcome::Worker { .. } => unreachable!("members train in one process"),
            }
        };
        members.push(MemberMetrics {
            seed: mcfg.optim.seed,
            dir: PathBuf::from("members").join(k.to_string()),
            best_epoch: metrics.best_epoch,
            epochs_run: metrics.epochs_run,
            val: metrics.val,
            test: metrics.test,
            wall_s: metrics.timing.wall_s,
            train_s: metrics.timing.train_s,
        });
    }
    save_model(root, &members)?;

    // The ensemble on the members' validation split and the test data.
    let member0 = member_config(cfg, root, 0);
    let enc = TextEncoder::from_file(&cfg.model.backbone, cfg.model.max_len)?;
    let prep = crate::prepare::prepare(&member0, &enc)?;
    let ensemble = Predictor::load(&run.model(), resolved.device)?
        .with_batch_size(cfg.optim.eval_batch_size)?;
    let single = Predictor::load(&run.root.join(&members[0].dir).join("model"), resolved.device)?
        .with_batch_size(cfg.optim.eval_batch_size)?;
    let t = Instant::now();
    let (val, test) = scores(&ensemble, &prep.val_ex, prep.test_ex.as_deref())?;
    let ensemble_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    scores(&single, &prep.val_ex, prep.test_ex.as_deref())?;
    let single_ms = t.elapsed().as_secs_f64() * 1e3;
    let texts = (prep.val_ex.len() + prep.test_ex.as_ref().map_or(0, Vec::len)).max(1) as f64;
    let metrics = EnsembleMetrics {
        cost: EnsembleCost {
            train_s: members.iter().map(|m| m.train_s).sum(),
            members_wall_s: members.iter().map(|m| m.wall_s).sum(),
            predict_ms_per_1000: ensemble_ms / texts * 1e3,
            member_predict_ms_per_1000: single_ms / texts * 1e3,
            peak_rss_mib: run::peak_rss_mib(),
        },
        members,
        val,
        test,
    };
    run::write_json(&run.metrics(), &metrics)?;
    run::write_atomic(&run.report(), report(cfg, &metrics).as_bytes())?;
    Ok(EnsembleOutcome::Finished(Box::new(metrics)))
}

/// The predictor's metrics on the validation and (when given) test examples.
fn scores(
    p: &Predictor,
    val: &[Example],
    test: Option<&[Example]>,
) -> Result<(MetricReport, Option<MetricReport>)> {
    let of = |ex: &[Example]| -> Result<MetricReport> {
        let pred = p.predict_examples(ex)?;
        let gold: Vec<f32> = ex.iter().map(|e| e.score).collect();
        Ok(RegressionMetrics::of(
            p.extra.metrics.clone(),
            &pred.score,
            &gold,
            pred.class.as_deref(),
        ))
    };
    Ok((of(val)?, test.map(of).transpose()?))
}

/// Writes `root/model/`: each member's model folder under `members/<k>/` (hard links where the
/// file system allows, copies elsewhere) and `ensemble.json`, replaced atomically.
fn save_model(root: &Path, members: &[MemberMetrics]) -> Result<()> {
    let manifest = Manifest {
        format: 1,
        members: members
            .iter()
            .map(|m| MemberEntry {
                path: m.dir.clone(),
                seed: m.seed,
                best_epoch: m.best_epoch,
                val: m.val.clone(),
            })
            .collect(),
    };
    files::replace_dir(&root.join("model"), |tmp| {
        for m in members {
            link_tree(&root.join(&m.dir).join("model"), &tmp.join(&m.dir))?;
        }
        run::write_json(&tmp.join(MANIFEST), &manifest)
    })
}

/// Recreates the folder `src` at `dst`, file by file (hard links, or copies).
fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    for entry in fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let entry = entry.map_err(|e| Error::io(src, e))?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| Error::io(&from, e))?;
        if kind.is_dir() {
            link_tree(&from, &to)?;
        } else if kind.is_file() && fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(())
}

/// `report.md` of an ensemble run.
fn report(cfg: &TrainConfig, m: &EnsembleMetrics) -> String {
    let f = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{x:.4}"));
    let test = |t: &Option<MetricReport>| {
        t.as_ref().map_or("| n/a | n/a | n/a ".into(), |t| {
            format!("| {:.4} | {} | {} ", t.mse, f(t.pearson), f(t.cosine))
        })
    };
    let mut s = String::new();
    let _ = writeln!(s, "# fintune ensemble report\n");
    let _ = writeln!(
        s,
        "- training data: {}",
        cfg.data.train.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        s,
        "- {} members, seeds {}..={}, one validation split (seed {})\n",
        m.members.len(),
        cfg.optim.seed,
        cfg.optim.seed + m.members.len() as u64 - 1,
        cfg.split_seed()
    );
    let _ = writeln!(
        s,
        "| model | best epoch | val MSE | val Pearson | test MSE | test Pearson | test cosine |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for (k, e) in m.members.iter().enumerate() {
        let _ = writeln!(
            s,
            "| member {k} (seed {}) | {} | {:.4} | {} {}|",
            e.seed,
            e.best_epoch,
            e.val.mse,
            f(e.val.pearson),
            test(&e.test)
        );
    }
    let _ = writeln!(
        s,
        "| **ensemble** | | {:.4} | {} {}|\n",
        m.val.mse,
        f(m.val.pearson),
        test(&m.test)
    );
    let c = &m.cost;
    let _ = writeln!(s, "## Cost\n");
    let _ = writeln!(
        s,
        "- training: {:.1} s in steps, {:.1} s wall (all members)",
        c.train_s, c.members_wall_s
    );
    let _ = writeln!(
        s,
        "- prediction per 1,000 texts: {:.0} ms (ensemble) vs {:.0} ms (one member)",
        c.predict_ms_per_1000, c.member_predict_ms_per_1000
    );
    let _ = writeln!(
        s,
        "- peak RSS: {}",
        c.peak_rss_mib.map_or("n/a".into(), |r| format!("{r:.0} MiB"))
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_of_predictions_averages_scores_and_probabilities() {
        let a = Predictions {
            score: vec![0.5, -0.25],
            class: Some(vec![0, 1]),
            probs: Some(vec![vec![0.9, 0.1], vec![0.4, 0.6]]),
        };
        let b = Predictions {
            score: vec![0.0, 0.75],
            class: Some(vec![1, 1]),
            probs: Some(vec![vec![0.2, 0.8], vec![0.3, 0.7]]),
        };
        let m = average(&[a.clone(), b]);
        assert_eq!(m.score, vec![0.25, 0.25]);
        let p = m.probs.unwrap();
        assert!((p[0][0] - 0.55).abs() < 1e-7 && (p[1][1] - 0.65).abs() < 1e-7, "{p:?}");
        assert_eq!(m.class, Some(vec![0, 1]));
        assert_eq!(average(std::slice::from_ref(&a)), a);
    }

    #[test]
    fn members_share_the_split_and_take_consecutive_seeds() {
        let mut cfg = TrainConfig::default();
        cfg.optim.seed = 7;
        cfg.optim.ensemble = 3;
        let m2 = member_config(&cfg, Path::new("out"), 2);
        assert_eq!((m2.optim.seed, m2.split_seed(), m2.optim.ensemble), (9, 7, 1));
        assert_eq!(m2.out.as_deref(), Some(Path::new("out/members/2")));
        assert_eq!(member_config(&cfg, Path::new("out"), 0).optim.seed, 7);
    }

    #[test]
    fn a_manifest_naming_a_missing_member_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let val = RegressionMetrics::of(Default::default(), &[0.1, 0.2], &[0.1, 0.3], None);
        let m = Manifest {
            format: 1,
            members: vec![MemberEntry { path: "members/0".into(), seed: 1, best_epoch: 1, val }],
        };
        run::write_json(&d.path().join(MANIFEST), &m).unwrap();
        assert!(is_ensemble(d.path()));
        let back = Manifest::read(d.path()).unwrap();
        assert_eq!(back, m);
        let e = back.member_dirs(d.path()).unwrap_err().to_string();
        assert!(e.contains(&d.path().join("members/0").display().to_string()), "{e}");
        assert!(e.contains("ensemble.json"), "{e}");
    }
}
