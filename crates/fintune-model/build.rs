//! - Embeds libtorch's library folder as an rpath so binaries and tests run without
//!   `LD_LIBRARY_PATH` (torch-sys only passes the rpath to its own C++ object).
//! - With the `cuda` feature: compiles `kernels/fintune_kernels.cu` with nvcc (sm_90 code plus
//!   compute_90 PTX), links it with the CUDA runtime libtorch uses, and links `libtorch_cuda`
//!   despite `--as-needed` so that `tch::Cuda::is_available()` sees the GPU.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-changed=kernels/fintune_kernels.cu");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").ok();
    if let Some(lib) = &lib {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_kernels(lib.as_deref().map(Path::new));
    }
}

/// nvcc: `$NVCC`, the pip CUDA toolkit beside libtorch (`cargo xtask setup --cuda`),
/// `$CUDA_HOME/bin/nvcc`, or `nvcc` on the PATH.
fn find_nvcc(torch_lib: Option<&Path>) -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        return PathBuf::from(p);
    }
    let mut candidates: Vec<PathBuf> = vec![];
    if let Some(lib) = torch_lib {
        candidates.push(lib.join("../../nvidia/cu13/bin/nvcc"));
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        candidates.push(PathBuf::from(home).join("bin/nvcc"));
    }
    if let Some(found) = candidates.into_iter().find(|p| p.exists()) {
        return found;
    }
    match Command::new("nvcc").arg("--version").output() {
        Ok(o) if o.status.success() => PathBuf::from("nvcc"),
        _ => panic!(
            "the `cuda` feature needs nvcc: run `cargo xtask setup --cuda` (pip's cuda-toolkit[nvcc]), \
             or set NVCC=/path/to/nvcc or CUDA_HOME"
        ),
    }
}

fn build_kernels(torch_lib: Option<&Path>) {
    let nvcc = find_nvcc(torch_lib);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("fintune_kernels.o");
    let status = Command::new(&nvcc)
        .args(["-O3", "-std=c++17", "-Xcompiler", "-fPIC"])
        .args([
            "-gencode",
            "arch=compute_90,code=sm_90",
            "-gencode",
            "arch=compute_90,code=compute_90",
        ])
        .args(["-c", "kernels/fintune_kernels.cu", "-o"])
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
    assert!(status.success(), "{} failed to compile kernels/fintune_kernels.cu", nvcc.display());
    let ar = out.join("libfintune_kernels.a");
    let _ = std::fs::remove_file(&ar);
    let status = Command::new("ar").arg("crs").arg(&ar).arg(&obj).status().expect("ar runs");
    assert!(status.success(), "ar failed");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=fintune_kernels");
    // The CUDA runtime: the one libtorch_cuda uses (pip's nvidia/cu13/lib), else nvcc's.
    let nvcc_lib = nvcc.parent().map(|b| b.join("../lib"));
    let cudart_dir = torch_lib
        .map(|l| l.join("../../nvidia/cu13/lib"))
        .into_iter()
        .chain(nvcc_lib)
        .find(|d| d.join("libcudart.so.13").exists() || d.join("libcudart.so").exists());
    match cudart_dir {
        Some(d) => {
            let d = d.canonicalize().unwrap_or(d);
            println!("cargo:rustc-link-search=native={}", d.display());
            if d.join("libcudart.so").exists() {
                println!("cargo:rustc-link-lib=dylib=cudart");
            } else {
                println!("cargo:rustc-link-lib=dylib:+verbatim=libcudart.so.13");
            }
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", d.display());
            println!("cargo:cuda_lib_dir={}", d.display());
        }
        None => println!("cargo:rustc-link-lib=dylib=cudart"),
    }
    // rustc passes --as-needed, which would drop libtorch_cuda (nothing references it
    // directly) and leave libtorch without its CUDA backend.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
}
