//! Compiles the C++ shim (`shim/fintune_dist.cpp`) against libtorch's headers and embeds
//! libtorch's library folder as an rpath (as `fintune-model` does).
//!
//! - libtorch: the folder torch-sys found (`DEP_TCH_LIBTORCH_LIB`), else `$LIBTORCH/lib`.
//! - Gloo's headers, which `ProcessGroupGloo.hpp` includes but the torch wheel does not ship:
//!   `$GLOO_INCLUDE`, else `.fintune/gloo/usr/include` (Debian's `libgloo-dev` at the checked
//!   version, unpacked there by `cargo xtask setup` without a system install), else
//!   `/usr/include` or `/usr/local/include` (a system-wide `libgloo-dev`).
//!   Declarations only: no Gloo symbol is linked from outside libtorch.
//! - With the `cuda` feature: also `ProcessGroupNCCL` (libtorch_cuda), with the CUDA and NCCL
//!   headers beside libtorch (pip's `nvidia/cu13/include`, `nvidia/nccl/include`), in
//!   `$CUDA_HOME/include`, or in `$FINTUNE_DIST_CUDA_INCLUDE` (folders separated by `:`).

use std::path::{Path, PathBuf};

/// The install line for the Gloo headers, repeated in the error message and the README.
const GLOO_HINT: &str = "apt-get install -y --no-install-recommends libgloo-dev \
     (Debian/Ubuntu; `cargo xtask setup` runs it; check with \
     `dpkg-query -W -f='${Version}' libgloo-dev`, tested with 0.0~git20220518.5b14351-3); \
     without root: `apt-get download libgloo-dev && dpkg -x libgloo-dev_*.deb .fintune/gloo`; \
     or set GLOO_INCLUDE to a folder holding gloo/ (e.g. pytorch/third_party/gloo)";

fn main() {
    for var in ["DEP_TCH_LIBTORCH_LIB", "LIBTORCH", "GLOO_INCLUDE", "CUDA_HOME"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-env-changed=FINTUNE_DIST_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=shim/fintune_dist.cpp");
    println!("cargo:rerun-if-changed=shim/fintune_dist.h");

    let lib = libtorch_lib();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let root = lib.parent().expect("libtorch's lib folder has a parent").to_path_buf();
    let include = root.join("include");
    assert!(
        include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp").exists(),
        "{} lacks the c10d headers (torch/csrc/distributed/c10d); run `cargo xtask setup`",
        include.display()
    );
    let gloo = gloo_include();

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .warnings(false)
        .include("shim")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi().as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        .file("shim/fintune_dist.cpp");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        for dir in cuda_includes(&lib) {
            build.include(dir);
        }
        build.define("USE_C10D_NCCL", None).define("FINTUNE_DIST_NCCL", None);
        // rustc passes --as-needed; the shim references ProcessGroupNCCL, so torch_cuda stays.
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
    }
    build.compile("fintune_dist");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

fn libtorch_lib() -> PathBuf {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        return PathBuf::from(lib);
    }
    match std::env::var_os("LIBTORCH") {
        Some(root) => PathBuf::from(root).join("lib"),
        None => panic!("fintune-dist needs libtorch: run `cargo xtask setup` (sets LIBTORCH)"),
    }
}

fn gloo_include() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("GLOO_INCLUDE") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => {
            let manifest =
                PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
            // The checked version that `cargo xtask setup` unpacks comes first.
            vec![
                manifest.join("../../.fintune/gloo/usr/include"),
                PathBuf::from("/usr/include"),
                PathBuf::from("/usr/local/include"),
            ]
        }
    };
    match candidates.into_iter().find(|d| d.join("gloo/rendezvous/store.h").exists()) {
        Some(dir) => dir,
        None => panic!(
            "fintune-dist needs Gloo's headers (gloo/rendezvous/store.h), which \
             torch/csrc/distributed/c10d/ProcessGroupGloo.hpp includes and the torch wheel \
             does not ship: {GLOO_HINT}"
        ),
    }
}

/// `LIBTORCH_CXX11_ABI` as torch-sys reads it; the PyPI wheels of torch 2.x use the new ABI.
fn cxx11_abi() -> String {
    std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string())
}

fn cuda_includes(torch_lib: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("FINTUNE_DIST_CUDA_INCLUDE")
        .map(|s| s.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect())
        .unwrap_or_default();
    let nvidia = torch_lib.join("../../nvidia");
    dirs.push(nvidia.join("cu13/include"));
    dirs.push(nvidia.join("nccl/include"));
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        dirs.push(PathBuf::from(home).join("include"));
    }
    let dirs: Vec<PathBuf> = dirs.into_iter().filter(|d| d.exists()).collect();
    let has = |file: &str| dirs.iter().any(|d| d.join(file).exists());
    for file in ["nccl.h", "cuda_runtime_api.h", "crt/host_config.h", "nv/target"] {
        assert!(
            has(file),
            "the `cuda` feature of fintune-dist needs {file}: run `cargo xtask setup --cuda` \
             (pip's CUDA toolkit and NCCL beside libtorch), set CUDA_HOME, or list header \
             folders in FINTUNE_DIST_CUDA_INCLUDE"
        );
    }
    dirs
}
