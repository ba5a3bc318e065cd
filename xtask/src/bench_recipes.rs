//! `cargo xtask bench-recipes`: what each training recipe of the README costs on this machine.
//!
//! Each recipe is one `fintune train` run on FiQA's shared training file (fintune's own 10%
//! validation split, all cores), timed from the outside (process start to exit, model loading
//! and saving included), then `fintune predict` of 1,000 texts with the model it saved, timed
//! the same way. The peak RSS is the run's own (`metrics.json`). The recipes are the ones the
//! experiment matrix compares (`fintune compare` method ids in brackets).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::util::{capture, cargo, project_root, tail};

/// One recipe: its id, what it is, and the extra `fintune train` arguments.
struct Recipe {
    id: &'static str,
    what: &'static str,
    args: &'static [&'static str],
    /// Train on the three SSIX training files pooled instead of FiQA's alone.
    pooled: bool,
    /// Start from a first run on the Financial PhraseBank (timed with the recipe).
    sequential: bool,
}

const RECIPES: [Recipe; 7] = [
    Recipe {
        id: "default",
        what: "single-task, lr 5e-5, 5 epochs [single]",
        args: &[],
        pooled: false,
        sequential: false,
    },
    Recipe {
        id: "long",
        what: "up to 15 epochs, patience 3 [single-long]",
        args: &["--epochs", "15", "--config", "@patience3"],
        pooled: false,
        sequential: false,
    },
    Recipe {
        id: "lr1e-4",
        what: "lr 1e-4 [single-lr1e-4]",
        args: &["--lr", "1e-4"],
        pooled: false,
        sequential: false,
    },
    Recipe {
        id: "llrd",
        what: "layer-wise lr decay 0.9 [single-llrd]",
        args: &["--layer-decay", "0.9"],
        pooled: false,
        sequential: false,
    },
    Recipe {
        id: "ens5",
        what: "seed ensemble of 5 members [single-ens5]",
        args: &["--ensemble", "5"],
        pooled: false,
        sequential: false,
    },
    Recipe {
        id: "pooled",
        what: "FiQA + SemEval headlines + microblogs pooled [single-pooled]",
        args: &[],
        pooled: true,
        sequential: false,
    },
    Recipe {
        id: "seq-fpb",
        what: "PhraseBank regression first, then FiQA [seq-fpb]",
        args: &[],
        pooled: false,
        sequential: true,
    },
];

/// Texts predicted per recipe.
const PREDICT_TEXTS: usize = 1000;

/// The parsed options of `bench-recipes`.
struct Options {
    setup: setup::Options,
    backbone: String,
    recipes: Vec<&'static Recipe>,
    markdown: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut rest = Vec::new();
    let mut only: Option<Vec<String>> = None;
    let mut markdown: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--recipes" => {
                let list = it.next().context("--recipes needs a comma-separated list")?;
                only = Some(list.split(',').map(str::to_owned).collect());
            }
            "--markdown" => markdown = Some(it.next().context("--markdown needs a file")?.into()),
            _ => rest.push(a.clone()),
        }
    }
    let (mut setup, backbone, rest) = crate::bench::backbone_option(&rest)?;
    if let Some(extra) = rest.first() {
        bail!("bench-recipes: unexpected argument `{extra}`");
    }
    // No Python peer here: the plain setup (plus the backbone's weights) is enough.
    setup.full = false;
    let recipes = match &only {
        None => RECIPES.iter().collect(),
        Some(ids) => ids
            .iter()
            .map(|id| {
                RECIPES.iter().find(|r| r.id == id).with_context(|| {
                    let known: Vec<_> = RECIPES.iter().map(|r| r.id).collect();
                    format!("unknown recipe `{id}` (known: {})", known.join(", "))
                })
            })
            .collect::<Result<_>>()?,
    };
    Ok(Options { setup, backbone, recipes, markdown })
}

/// `cargo xtask bench-recipes [--backbone minilm|mpnet|DIR] [--recipes a,b,..] [--markdown FILE]`.
pub fn main(args: &[String]) -> Result<()> {
    let Options { setup: opts, backbone, recipes, markdown } = parse(args)?;
    let lay = setup::run(&opts)?;
    let root = project_root();
    let data = root.join("../shared/data");
    let file = |rel: &str| -> Result<PathBuf> {
        let p = data.join(rel);
        if !p.is_file() {
            bail!("bench-recipes needs {} (the shared data sets)", p.display());
        }
        Ok(p)
    };
    let fiqa = file("fiqa2018_task1/train.jsonl")?;
    let pool = [
        fiqa.clone(),
        file("semeval2017_task5/headlines_train.jsonl")?,
        file("semeval2017_task5/microblogs_train.jsonl")?,
    ];
    let phrasebank = file("financial_phrasebank/all.jsonl")?;
    let model_dir = if Path::new(&backbone).is_absolute() {
        PathBuf::from(&backbone)
    } else {
        lay.home.join("models").join(&backbone)
    };
    let work = root.join("target/bench-recipes");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // 1,000 texts to predict: the PhraseBank's first lines, copied as they are.
    let texts = std::fs::read_to_string(&phrasebank)?;
    let lines: Vec<&str> =
        texts.lines().filter(|l| !l.trim().is_empty()).take(PREDICT_TEXTS).collect();
    if lines.len() < PREDICT_TEXTS {
        bail!("{} has fewer than {PREDICT_TEXTS} texts", phrasebank.display());
    }
    let predict_input = work.join("predict.jsonl");
    std::fs::write(&predict_input, lines.join("\n") + "\n")?;
    let patience = work.join("patience3.toml");
    std::fs::write(&patience, "[optim]\npatience = 3\n")?;

    let bin = build()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "bench-recipes: {} on {}, {threads} threads, dev build of fintune; timings include \
         loading and saving the model",
        model_dir.display(),
        fiqa.display()
    );
    let mut table = String::from(
        "| recipe | what | training run (s) | predict 1,000 texts (s) | peak RSS training (MiB) |\n\
         |---|---|---|---|---|\n",
    );
    for r in recipes {
        let out = work.join(r.id);
        let mut train_s = 0.0;
        let mut init = None;
        if r.sequential {
            let stage1 = work.join("seq-fpb-stage1");
            let args = vec![
                "--data".into(),
                phrasebank.to_string_lossy().into_owned(),
                "--out".into(),
                stage1.to_string_lossy().into_owned(),
            ];
            train_s += train(&bin, &model_dir, &args)?;
            init = Some(stage1.join("model"));
        }
        let mut args: Vec<String> = vec!["--data".into()];
        let files: &[PathBuf] = if r.pooled { &pool } else { std::slice::from_ref(&fiqa) };
        args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
        args.extend(["--out".into(), out.to_string_lossy().into_owned()]);
        for a in r.args {
            args.push(if *a == "@patience3" {
                patience.to_string_lossy().into_owned()
            } else {
                (*a).to_owned()
            });
        }
        if let Some(init) = &init {
            args.extend(["--init".into(), init.to_string_lossy().into_owned()]);
        }
        train_s += train(&bin, &model_dir, &args)?;
        let metrics = std::fs::read_to_string(out.join("metrics.json"))
            .with_context(|| format!("{}/metrics.json", out.display()))?;
        let rss = crate::bench::json_field(&metrics, "peak_rss_mib").unwrap_or(f64::NAN);
        let t0 = Instant::now();
        let mut cmd = Command::new(&bin);
        cmd.arg("predict")
            .arg("--model")
            .arg(out.join("model"))
            .arg("--input")
            .arg(&predict_input)
            .arg("--output")
            .arg(out.join("predictions.jsonl"));
        capture(&mut cmd).map_err(|(what, o)| anyhow::anyhow!("{what}\n{}", tail(&o, 20)))?;
        let predict_s = t0.elapsed().as_secs_f64();
        println!(
            "  {}: training {train_s:.1} s, prediction {predict_s:.1} s, peak RSS {rss:.0} MiB",
            r.id
        );
        table += &format!("| {} | {} | {train_s:.0} | {predict_s:.1} | {rss:.0} |\n", r.id, r.what);
    }
    println!("\n{table}");
    if let Some(path) = markdown {
        std::fs::write(&path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Builds the dev `fintune` binary (as `cargo xtask train` uses it) and returns its path.
fn build() -> Result<PathBuf> {
    let release = std::env::var("FINTUNE_RELEASE").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "-p", "fintune-train", "--bin", "fintune"]);
    if release {
        cmd.arg("--release");
    }
    capture(&mut cmd).map_err(|(what, o)| anyhow::anyhow!("{what}\n{}", tail(&o, 20)))?;
    let profile = if release { "release" } else { "debug" };
    Ok(project_root().join("target").join(profile).join("fintune"))
}

/// One `fintune train` run with the backbone and `args`; its wall time in seconds.
fn train(bin: &Path, backbone: &Path, args: &[String]) -> Result<f64> {
    let t0 = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.arg("train").arg("--backbone").arg(backbone).arg("--quiet").args(args);
    capture(&mut cmd).map_err(|(what, o)| anyhow::anyhow!("{what}\n{}", tail(&o, 20)))?;
    Ok(t0.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::{parse, RECIPES};

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recipes_are_selected_by_id_and_unknown_ones_are_named() {
        let o = parse(&args(&["--recipes", "ens5,default", "--backbone", "mpnet"])).unwrap();
        let ids: Vec<_> = o.recipes.iter().map(|r| r.id).collect();
        assert_eq!((ids, o.backbone.as_str()), (vec!["ens5", "default"], "all-mpnet-base-v2"));
        assert!(!o.setup.full);
        assert_eq!(parse(&[]).unwrap().recipes.len(), RECIPES.len());
        let err = parse(&args(&["--recipes", "default,nope"])).err().unwrap().to_string();
        assert!(err.contains("unknown recipe `nope`") && err.contains("seq-fpb"), "{err}");
        assert!(parse(&args(&["extra"])).is_err());
        assert!(parse(&args(&["--markdown"])).is_err());
    }

    #[test]
    fn recipe_ids_are_unique() {
        let mut ids: Vec<_> = RECIPES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RECIPES.len());
    }
}
