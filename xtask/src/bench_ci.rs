//! `cargo xtask bench-ci`: the benchmarks at a base revision against the working tree, measured
//! in the same invocation, with a noise-aware verdict.
//!
//! Method (wall time, paired rounds): the base revision is checked out in a git worktree
//! (`target/bench-ci/base-src`, built in its own target dir `target/bench-ci/base-target`, seeded
//! once from `target/debug` so only the workspace crates compile), both sides are built, and
//! then every benchmark program runs once per side per round, the two sides back to back in
//! alternating order (base first in even rounds, change first in odd ones, so a drift of the
//! machine's speed cancels). A round gives one ratio change / base per benchmark. The verdict
//! uses the median of the ratios and its distribution-free (sign-test) interval from their order
//! statistics: with the default 11 rounds the interval runs from the 3rd smallest to the 3rd
//! largest ratio (93.5% coverage). A benchmark *regresses* only when the whole interval lies
//! above 1 + threshold (default 10%), i.e. in at least 9 of 11 rounds: two rounds disturbed by
//! other load (on the 2-core development VM a burst can slow one side 3x) cannot fail the check
//! nor hide a real slowdown, which shows in every round.
//!
//! Build: the dev profile (the dependencies already optimised at opt-level 2 by every dev
//! build, so nothing outside the workspace is rebuilt) with the benchmarked pure crates at
//! opt-level 3 without debug assertions (`--config profile.dev.package.*`); absolute numbers
//! are therefore close to, not equal to, `cargo bench`'s. Instruction counts (callgrind) are
//! not used: paired wall-time rounds keep one method for the pure and the libtorch benchmarks.
//!
//! `--smoke` (the CI run): builds the criterion benches in the test profile and runs each
//! benchmark body once (`cargo test --bench ...`), and runs the libtorch benchmark programs once
//! on tiny shapes; no base, no timing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::util::{capture, cargo, display, project_root, run, tail};

/// Default regression threshold: 10% slower.
pub const THRESHOLD: f64 = 0.10;
/// Default number of paired rounds: with 11 the interval is the 3rd smallest to the 3rd largest
/// ratio (93.5%), so up to two rounds disturbed by other load on either side change nothing.
const ROUNDS: usize = 11;
/// Names benchmarks to slow down artificially (`das_fit`); given to the change side only.
pub const SLOWDOWN_VAR: &str = "FINTUNE_BENCH_SLOWDOWN";
/// The pure crates whose benches are measured, built at opt-level 3.
const PURE: [&str; 3] = ["fintune-das", "fintune-dwa", "fintune-data"];

/// Criterion bench targets: (bench target, filter regex of the measured benchmarks).
const CRITERION: [(&str, &str); 3] = [
    // DAS auto-K on 1e6 scores, and the per-batch class assignment.
    ("das", "^(das_fit_auto/1000000|per_batch_4096/assign_all)$"),
    // One DWA step (T = 2 and 8 tasks) and PCGrad on two 1e6-element gradients.
    ("weights", "^(weights/dwa/T=2|weights/dwa/T=8|pcgrad/combine_into/2x1e6)$"),
    // The data readers (1e5 rows per read, `FINTUNE_BENCH_ROWS`).
    ("read", "^read_rows/(parquet|jsonl)$"),
];
/// Criterion flags of one measurement (they override the benches' group configs).
const CRITERION_FLAGS: [&str; 12] = [
    "--bench",
    "--output-format",
    "bencher",
    "--noplot",
    "--sample-size",
    "10",
    "--warm-up-time",
    "0.3",
    "--measurement-time",
    "0.8",
    "--nresamples",
    "10000",
];

/// A libtorch benchmark program (an example printing one JSON line).
struct Program {
    example: &'static str,
    /// Arguments after the model folder; `{t}` is replaced by the thread count.
    args: &'static [&'static str],
    /// Smoke-mode arguments after the model folder.
    smoke_args: &'static [&'static str],
    /// (JSON key, benchmark name, nanoseconds per unit of the value).
    metrics: &'static [(&'static str, &'static str, f64)],
}

const PROGRAMS: [Program; 3] = [
    Program {
        example: "bench_forward",
        args: &["8", "64", "5", "{t}"],
        smoke_args: &["2", "16", "1", "{t}"],
        metrics: &[
            ("forward_ms", "minilm/forward_8x64", 1e6),
            ("forward_backward_ms", "minilm/forward_backward_8x64", 1e6),
        ],
    },
    Program {
        example: "bench_step",
        args: &["full", "8", "64", "3", "cpu"],
        smoke_args: &["full", "2", "16", "1", "cpu"],
        metrics: &[("seconds_per_step", "minilm/train_step_8x64", 1e9)],
    },
    Program {
        example: "bench_predict",
        args: &["128", "3", "{t}"],
        smoke_args: &["8", "1", "{t}"],
        metrics: &[("seconds_per_pass", "predict/128_texts", 1e9)],
    },
];

const USAGE: &str = "\
cargo xtask bench-ci [--base REV] [--rounds N] [--threshold PCT] [--model] [--markdown FILE]
cargo xtask bench-ci --smoke";

/// Command-line options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub base: Option<String>,
    pub rounds: usize,
    /// Relative threshold (0.10 = 10% slower).
    pub threshold: f64,
    /// Include the libtorch benchmarks (MiniLM forward/backward, training step, prediction).
    pub model: bool,
    /// Append the table (Markdown) to this file, e.g. `$GITHUB_STEP_SUMMARY`.
    pub markdown: Option<PathBuf>,
    pub smoke: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            base: None,
            rounds: ROUNDS,
            threshold: THRESHOLD,
            model: false,
            markdown: None,
            smoke: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next().cloned().with_context(|| format!("{name} needs a value\n{USAGE}"))
            };
            match a.as_str() {
                "--base" => o.base = Some(value("--base")?),
                "--rounds" => {
                    o.rounds = value("--rounds")?
                        .parse()
                        .ok()
                        .filter(|&n| n >= 2)
                        .context("--rounds needs a whole number of at least 2")?;
                }
                "--threshold" => {
                    let pct: f64 = value("--threshold")?
                        .parse()
                        .ok()
                        .filter(|p: &f64| *p > 0.0)
                        .context("--threshold needs a positive percentage (e.g. 10)")?;
                    o.threshold = pct / 100.0;
                }
                "--markdown" => o.markdown = Some(value("--markdown")?.into()),
                "--model" => o.model = true,
                "--smoke" => o.smoke = true,
                other => bail!("bench-ci: unknown argument `{other}`\n{USAGE}"),
            }
        }
        Ok(o)
    }
}

/// The entry point.
pub fn main(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    if o.smoke {
        smoke()
    } else {
        compare(&o)
    }
}

/// One side of the comparison.
struct Side {
    name: &'static str,
    /// Source tree.
    root: PathBuf,
    /// `CARGO_TARGET_DIR`, when not the default one.
    target: Option<PathBuf>,
    /// Bench target name -> executable.
    benches: BTreeMap<String, PathBuf>,
    /// Example name -> executable.
    examples: BTreeMap<String, PathBuf>,
}

impl Side {
    fn cargo(&self) -> Command {
        let mut cmd = cargo();
        cmd.current_dir(&self.root);
        if let Some(t) = &self.target {
            cmd.env("CARGO_TARGET_DIR", t);
        }
        cmd
    }

    /// Sets the environment of a measured process: the artificial slowdown only on the change
    /// side, 1e5 rows for the reader benches.
    fn env(&self, cmd: &mut Command, work: &Path) {
        if self.name == "base" {
            cmd.env_remove(SLOWDOWN_VAR);
        }
        if std::env::var_os("FINTUNE_BENCH_ROWS").is_none() {
            cmd.env("FINTUNE_BENCH_ROWS", "100000");
        }
        cmd.env("CRITERION_HOME", work.join("criterion").join(self.name)).current_dir(&self.root);
    }
}

/// The measured values of one benchmark.
#[derive(Debug, Default, Clone)]
struct Series {
    method: &'static str,
    /// Per round: base and change (nanoseconds), when both ran.
    base: Vec<Option<f64>>,
    change: Vec<Option<f64>>,
}

/// A verdict of one benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The whole interval of the ratio is above 1 + threshold.
    Regression,
    /// The whole interval is below 1 / (1 + threshold).
    Faster,
    /// Within the threshold or the noise.
    Ok,
    /// Measured on one side only.
    OneSided,
}

/// Median of per-round ratios change / base, and its distribution-free interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioSummary {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    /// Coverage of [low, high] for the median (sign test).
    pub coverage: f64,
    /// `low` and `high` are the k-th smallest and k-th largest ratio.
    pub k: usize,
}

/// The median of `xs` and the interval [x_(k), x_(n+1-k)] with the largest k whose coverage
/// 1 - 2 P(Bin(n, 1/2) < k) is at least 90% (k = 1 when even that is below 90%).
pub fn summarize(xs: &[f64]) -> Option<RatioSummary> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    let choose =
        |k: usize| -> f64 { (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64) };
    // P(Bin(n, 1/2) < k).
    let below = |k: usize| (0..k).map(choose).sum::<f64>() / 2f64.powi(n as i32);
    let coverage = |k: usize| 1.0 - 2.0 * below(k);
    let mut k = 1;
    while k < n.div_ceil(2) && coverage(k + 1) >= 0.90 {
        k += 1;
    }
    Some(RatioSummary { median, low: v[k - 1], high: v[n - k], coverage: coverage(k), k })
}

/// The verdict for a ratio summary at `threshold`.
pub fn verdict(s: Option<RatioSummary>, threshold: f64) -> Verdict {
    match s {
        None => Verdict::OneSided,
        Some(s) if s.low > 1.0 + threshold => Verdict::Regression,
        Some(s) if s.high < 1.0 / (1.0 + threshold) => Verdict::Faster,
        Some(_) => Verdict::Ok,
    }
}

fn median(xs: impl Iterator<Item = f64>) -> Option<f64> {
    summarize(&xs.collect::<Vec<_>>()).map(|s| s.median)
}

/// Nanoseconds as a short human string.
pub fn human_ns(ns: f64) -> String {
    let (v, unit) = match ns {
        x if x >= 1e9 => (x / 1e9, "s"),
        x if x >= 1e6 => (x / 1e6, "ms"),
        x if x >= 1e3 => (x / 1e3, "µs"),
        x => (x, "ns"),
    };
    format!("{v:.3} {unit}")
}

/// `test NAME ... bench:  1,234 ns/iter (+/- 56)` lines of criterion's bencher output format.
pub fn parse_bencher(out: &str) -> BTreeMap<String, f64> {
    out.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("test ")?;
            let (name, value) = rest.split_once(" ... bench:")?;
            let ns: String = value.split_whitespace().next()?.replace(',', "");
            Some((name.trim().to_owned(), ns.parse().ok()?))
        })
        .collect()
}

/// The string value of `"key":"..."` (first occurrence) in a JSON line.
fn json_string(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = line[at..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// Executables from cargo's `--message-format=json` output: (target kind, name) -> path.
pub fn executables(json: &str) -> BTreeMap<(String, String), PathBuf> {
    json.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let exe = json_string(l, "executable")?;
            let kind = l.split("\"kind\":[\"").nth(1)?.split('"').next()?.to_owned();
            Some(((kind, json_string(l, "name")?), PathBuf::from(exe)))
        })
        .collect()
}

/// Runs a cargo build with JSON messages on stdout (diagnostics rendered on stderr).
fn build_json(cmd: &mut Command) -> Result<String> {
    cmd.arg("--message-format=json-render-diagnostics").stderr(Stdio::inherit());
    let shown = display(cmd);
    let out = cmd.output().with_context(|| format!("could not start `{shown}`"))?;
    if !out.status.success() {
        bail!("`{shown}` failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `--bench NAME` for each criterion target (`--benches` would add every library's unit tests).
fn bench_targets() -> Vec<&'static str> {
    CRITERION.iter().flat_map(|&(b, _)| ["--bench", b]).collect()
}

/// `--config` flags: the benchmarked pure crates at opt-level 3, no debug assertions.
fn opt_flags() -> Vec<String> {
    PURE.iter()
        .flat_map(|p| {
            [
                format!("profile.dev.package.{p}.opt-level=3"),
                format!("profile.dev.package.{p}.debug-assertions=false"),
                format!("profile.dev.package.{p}.overflow-checks=false"),
            ]
        })
        .flat_map(|c| ["--config".to_owned(), c])
        .collect()
}

fn build(side: &mut Side, model: bool) -> Result<()> {
    let t0 = Instant::now();
    eprintln!("bench-ci: building the {} benches ({})", side.name, side.root.display());
    // `--workspace`, not `-p`: the features of the dependencies are then unified as in
    // `cargo test --workspace`, whose build the dependencies come from.
    let mut cmd = side.cargo();
    cmd.args(opt_flags()).args(["test", "--no-run", "--workspace"]).args(bench_targets());
    for ((kind, name), exe) in executables(&build_json(&mut cmd)?) {
        if kind == "bench" {
            side.benches.insert(name, exe);
        }
    }
    if model {
        for p in &PROGRAMS {
            let mut cmd = side.cargo();
            cmd.args(["build", "--workspace", "--example", p.example]);
            match build_json(&mut cmd) {
                Ok(json) => {
                    for ((kind, name), exe) in executables(&json) {
                        if kind == "example" {
                            side.examples.insert(name, exe);
                        }
                    }
                }
                // A benchmark the base revision does not have yet.
                Err(e) if side.name == "base" => {
                    eprintln!("bench-ci: base has no usable {} ({e:#}); skipped", p.example)
                }
                Err(e) => return Err(e),
            }
        }
    }
    eprintln!("bench-ci: {} built in {:.0} s", side.name, t0.elapsed().as_secs_f64());
    Ok(())
}

/// `--base`, else the merge base with `origin/main`, else with `main` when that is not HEAD,
/// else `HEAD~1`.
fn resolve_base(root: &Path, base: Option<&str>) -> Result<(String, String)> {
    let git = |args: &[&str]| -> Option<String> {
        capture(Command::new("git").current_dir(root).args(args)).ok().map(|s| s.trim().to_owned())
    };
    let head = git(&["rev-parse", "HEAD"]).context("not a git checkout")?;
    if let Some(b) = base {
        let rev = git(&["rev-parse", "--verify", &format!("{b}^{{commit}}")])
            .with_context(|| format!("--base {b}: no such revision"))?;
        return Ok((rev, b.to_owned()));
    }
    for upstream in ["origin/main", "main"] {
        if let Some(mb) = git(&["merge-base", upstream, "HEAD"]) {
            if mb != head {
                return Ok((mb, format!("merge base with {upstream}")));
            }
        }
    }
    let rev =
        git(&["rev-parse", "--verify", "HEAD~1^{commit}"]).context("no HEAD~1 to compare with")?;
    Ok((rev, "HEAD~1".into()))
}

/// Checks out `rev` in the base worktree (created on first use).
fn checkout_base(root: &Path, dir: &Path, rev: &str) -> Result<()> {
    let git = |cwd: &Path, args: &[&str]| run(Command::new("git").current_dir(cwd).args(args));
    if dir.join(".git").exists() {
        git(dir, &["checkout", "--quiet", "--force", "--detach", rev])?;
        git(dir, &["clean", "-fdxq", "--exclude=/target"])?;
    } else {
        let _ = std::fs::remove_dir_all(dir);
        git(root, &["worktree", "prune"])?;
        git(
            root,
            &["worktree", "add", "--quiet", "--force", "--detach", &dir.to_string_lossy(), rev],
        )?;
    }
    Ok(())
}

/// Seeds the base target dir from `target/debug` once (dependencies stay fresh: their sources
/// and settings are the same, only the workspace crates rebuild).
fn seed_target(root: &Path, target: &Path) -> Result<()> {
    let src = root.join("target/debug");
    let dst = target.join("debug");
    if dst.exists() || !src.exists() {
        return Ok(());
    }
    let t0 = Instant::now();
    std::fs::create_dir_all(&dst)?;
    for sub in ["deps", "build", ".fingerprint"] {
        if src.join(sub).exists() {
            run(Command::new("cp").arg("-a").arg(src.join(sub)).arg(&dst))?;
        }
    }
    eprintln!(
        "bench-ci: seeded {} from target/debug in {:.0} s",
        dst.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn compare(o: &Options) -> Result<()> {
    let t0 = Instant::now();
    let root = project_root();
    let work = root.join("target/bench-ci");
    std::fs::create_dir_all(&work)?;
    let (rev, how) = resolve_base(&root, o.base.as_deref())?;
    let short = &rev[..rev.len().min(10)];
    eprintln!("bench-ci: base {short} ({how}), change = the working tree");
    let base_src = work.join("base-src");
    checkout_base(&root, &base_src, &rev)?;
    let base_target = work.join("base-target");
    seed_target(&root, &base_target)?;
    let mut sides = [
        Side {
            name: "base",
            root: base_src,
            target: Some(base_target),
            benches: BTreeMap::new(),
            examples: BTreeMap::new(),
        },
        Side {
            name: "change",
            root: root.clone(),
            target: None,
            benches: BTreeMap::new(),
            examples: BTreeMap::new(),
        },
    ];
    let model_dir = if o.model {
        let lay = setup::run(&setup::Options::default())?;
        Some(lay.home.join("models/all-MiniLM-L6-v2"))
    } else {
        None
    };
    for side in &mut sides {
        build(side, o.model)?;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();

    // The measurement units: criterion binaries and (with --model) example programs.
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let t_measure = Instant::now();
    let mut units: Vec<Unit<'_>> = CRITERION.iter().map(|&(b, f)| Unit::Criterion(b, f)).collect();
    if let Some(dir) = &model_dir {
        units.extend(PROGRAMS.iter().map(|p| Unit::Program(p, dir)));
    }
    for round in 0..o.rounds {
        eprintln!("bench-ci: round {}/{}", round + 1, o.rounds);
        for (i, unit) in units.iter().enumerate() {
            let order: [usize; 2] = if (round + i) % 2 == 0 { [0, 1] } else { [1, 0] };
            for s in order {
                let side = &sides[s];
                let values = unit.measure(side, &work, &threads)?;
                for (name, ns) in values {
                    let e = series.entry(name).or_insert_with(|| Series {
                        method: unit.method(),
                        base: vec![None; o.rounds],
                        change: vec![None; o.rounds],
                    });
                    if s == 0 {
                        e.base[round] = Some(ns);
                    } else {
                        e.change[round] = Some(ns);
                    }
                }
            }
        }
    }
    let measure_s = t_measure.elapsed().as_secs_f64();

    let mut table = String::new();
    let (coverage, k) = summarize(&vec![1.0; o.rounds]).map_or((0.0, 1), |s| (s.coverage, s.k));
    let _ = writeln!(
        table,
        "bench-ci: base {short} ({how}) against the working tree; {} paired rounds (alternating order), threshold +{:.0}%",
        o.rounds,
        o.threshold * 100.0
    );
    let _ = writeln!(
        table,
        "ratio = change / base time, median of the per-round ratios [{:.1}% sign-test interval: \
         the {k}. smallest and largest ratio]; regression = the whole interval above {:.2}\n",
        coverage * 100.0,
        1.0 + o.threshold
    );
    table.push_str("| benchmark | method | base | change | ratio [interval] | verdict |\n|---|---|---|---|---|---|\n");
    let mut regressions = Vec::new();
    for (name, s) in &series {
        let ratios: Vec<f64> =
            s.base.iter().zip(&s.change).filter_map(|(b, c)| Some((*c)? / (*b)?)).collect();
        let sum = summarize(&ratios);
        let v = verdict(sum, o.threshold);
        let show =
            |xs: &[Option<f64>]| median(xs.iter().flatten().copied()).map_or("–".into(), human_ns);
        let ratio =
            sum.map_or("–".into(), |r| format!("{:.3} [{:.3}, {:.3}]", r.median, r.low, r.high));
        let v = match v {
            Verdict::Regression => {
                regressions.push(format!("{name} ({ratio})"));
                "REGRESSION"
            }
            Verdict::Faster => "faster",
            Verdict::Ok => "ok",
            Verdict::OneSided if s.base.iter().all(Option::is_none) => "new",
            Verdict::OneSided => "removed",
        };
        let _ = writeln!(
            table,
            "| {name} | {} | {} | {} | {ratio} | {v} |",
            s.method,
            show(&s.base),
            show(&s.change)
        );
    }
    let _ = writeln!(
        table,
        "\n{} benchmarks, {} regressions; measured in {:.0} s, {:.0} s in all",
        series.len(),
        regressions.len(),
        measure_s,
        t0.elapsed().as_secs_f64()
    );
    println!("\n{table}");
    if let Some(path) = &o.markdown {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(f, "## Benchmarks (`cargo xtask bench-ci`)\n\n{table}")?;
    }
    if !regressions.is_empty() {
        bail!(
            "bench-ci: {} benchmark(s) slower than the base by more than {:.0}% (the whole interval of the ratio above {:.2}): {}",
            regressions.len(),
            o.threshold * 100.0,
            1.0 + o.threshold,
            regressions.join(", ")
        );
    }
    Ok(())
}

/// One program run per side and round.
enum Unit<'a> {
    /// A criterion bench target and its filter.
    Criterion(&'static str, &'static str),
    /// A libtorch example and the model folder.
    Program(&'static Program, &'a Path),
}

impl Unit<'_> {
    fn method(&self) -> &'static str {
        match self {
            Unit::Criterion(..) => "criterion, median",
            Unit::Program(..) => "example, median",
        }
    }

    /// Runs the unit on `side`: benchmark name -> nanoseconds.
    fn measure(&self, side: &Side, work: &Path, threads: &str) -> Result<BTreeMap<String, f64>> {
        match *self {
            Unit::Criterion(bench, filter) => {
                let Some(exe) = side.benches.get(bench) else { return Ok(BTreeMap::new()) };
                let mut cmd = Command::new(exe);
                cmd.args(CRITERION_FLAGS).arg(filter);
                side.env(&mut cmd, work);
                let out = capture(&mut cmd)
                    .map_err(|(what, out)| anyhow::anyhow!("{what}\n{}", tail(&out, 20)))?;
                Ok(parse_bencher(&out))
            }
            Unit::Program(p, dir) => {
                let Some(exe) = side.examples.get(p.example) else { return Ok(BTreeMap::new()) };
                let mut cmd = Command::new(exe);
                cmd.arg(dir).args(p.args.iter().map(|a| if *a == "{t}" { threads } else { a }));
                side.env(&mut cmd, work);
                let out = capture(&mut cmd)
                    .map_err(|(what, out)| anyhow::anyhow!("{what}\n{}", tail(&out, 20)))?;
                let line = out
                    .lines()
                    .rev()
                    .find(|l| l.trim_start().starts_with('{'))
                    .context("no JSON result line")?;
                let mut m = BTreeMap::new();
                for &(key, name, ns) in p.metrics {
                    let v = crate::bench::json_num(line, key)
                        .with_context(|| format!("{}: no `{key}` in {line}", p.example))?;
                    m.insert(name.to_owned(), v * ns);
                }
                Ok(m)
            }
        }
    }
}

/// `--smoke`: every bench builds and runs once (no timing), the libtorch programs on tiny
/// shapes; for `.ci/run`.
fn smoke() -> Result<()> {
    let t0 = Instant::now();
    let mut cmd = cargo();
    cmd.env("FINTUNE_BENCH_ROWS", "10000").args(["test", "--workspace"]).args(bench_targets());
    run(&mut cmd)?;
    let t_pure = t0.elapsed().as_secs_f64();
    let dir = setup::layout().home.join("models/all-MiniLM-L6-v2");
    if !dir.join("config.json").exists() {
        bail!("bench-ci --smoke: {} is missing: run `cargo xtask setup` first", dir.display());
    }
    // Built by `cargo test --workspace` already (examples are part of its build).
    let mut cmd = cargo();
    cmd.args(["build", "--workspace"]);
    for p in &PROGRAMS {
        cmd.args(["--example", p.example]);
    }
    let exes = executables(&build_json(&mut cmd)?);
    for p in &PROGRAMS {
        let exe = exes
            .get(&("example".to_owned(), p.example.to_owned()))
            .with_context(|| format!("cargo built no example {}", p.example))?;
        let mut cmd = Command::new(exe);
        cmd.arg(&dir).args(p.smoke_args.iter().map(|a| if *a == "{t}" { "0" } else { a }));
        let out = capture(&mut cmd)
            .map_err(|(what, out)| anyhow::anyhow!("{what}\n{}", tail(&out, 20)))?;
        let line = out.lines().rev().find(|l| l.trim_start().starts_with('{'));
        println!("{}: {}", p.example, line.context("no JSON result line")?);
        for &(key, ..) in p.metrics {
            if crate::bench::json_num(line.unwrap_or(""), key).is_none() {
                bail!("{}: no `{key}` in its output", p.example);
            }
        }
    }
    println!(
        "bench-ci --smoke: {} criterion bench targets and {} benchmark programs built and ran once in {:.0} s (criterion {:.0} s)",
        CRITERION.len(),
        PROGRAMS.len(),
        t0.elapsed().as_secs_f64(),
        t_pure
    );
    // Any failure above has already returned an error.
    println!("smoke: {} passed, 0 failed", CRITERION.len() + PROGRAMS.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_of_five_rounds_is_their_range() {
        let s = summarize(&[1.02, 0.97, 1.3, 1.0, 0.99]).unwrap();
        assert_eq!((s.median, s.low, s.high), (1.0, 0.97, 1.3));
        assert!((s.coverage - 0.9375).abs() < 1e-12, "{}", s.coverage);
        // Nine rounds: the second order statistics (96.1%).
        let s = summarize(&[9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!((s.median, s.low, s.high), (5.0, 2.0, 8.0));
        // Eleven rounds: the third (93.5%); two wild rounds do not move the interval's bounds
        // past the others.
        let s = summarize(&[2.0, 0.68, 1.95, 2.1, 0.7, 1.9, 2.05, 1.97, 2.02, 3.9, 1.99]).unwrap();
        assert_eq!((s.k, s.median, s.low, s.high), (3, 1.99, 1.9, 2.05));
        assert_eq!(verdict(Some(s), 0.10), Verdict::Regression);
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn one_noisy_round_is_no_regression_a_consistent_slowdown_is() {
        let noisy = summarize(&[1.0, 1.25, 0.98, 1.02, 1.01]);
        assert_eq!(verdict(noisy, 0.10), Verdict::Ok);
        let slow = summarize(&[1.9, 2.1, 2.0, 1.95, 2.05]);
        assert_eq!(verdict(slow, 0.10), Verdict::Regression);
        let fast = summarize(&[0.5, 0.6, 0.55, 0.52, 0.58]);
        assert_eq!(verdict(fast, 0.10), Verdict::Faster);
        assert_eq!(verdict(None, 0.10), Verdict::OneSided);
    }

    #[test]
    fn parses_criterion_bencher_lines_and_cargo_artifacts() {
        let out = "test das_fit_auto/1000000 ... bench:    23,812,345 ns/iter (+/- 1,234)\n\
                   noise\ntest weights/dwa/T=2 ... bench:         427 ns/iter (+/- 3)\n";
        let m = parse_bencher(out);
        assert_eq!(m["das_fit_auto/1000000"], 23_812_345.0);
        assert_eq!(m["weights/dwa/T=2"], 427.0);
        assert_eq!(m.len(), 2);
        let json = r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["bench"],"crate_types":["bin"],"name":"das","src_path":"/a/das.rs"},"executable":"/t/deps/das-1234","fresh":true}
{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"fintune_das"},"executable":null}
{"reason":"build-finished","success":true}"#;
        let e = executables(json);
        assert_eq!(e.len(), 1);
        assert_eq!(e[&("bench".to_owned(), "das".to_owned())], PathBuf::from("/t/deps/das-1234"));
    }

    #[test]
    fn options_parse_and_reject_unknown_flags() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = Options::parse(&args("--base main --rounds 7 --threshold 5 --model")).unwrap();
        assert_eq!(o.base.as_deref(), Some("main"));
        assert_eq!((o.rounds, o.model, o.smoke), (7, true, false));
        assert!((o.threshold - 0.05).abs() < 1e-12);
        assert!(Options::parse(&args("--rounds 1")).is_err());
        assert!(Options::parse(&args("--fast")).is_err());
        assert!(Options::parse(&args("--base")).is_err());
        assert_eq!(human_ns(23_812_345.0), "23.812 ms");
        assert_eq!(human_ns(427.0), "427.000 ns");
    }
}
