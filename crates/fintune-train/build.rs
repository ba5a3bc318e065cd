//! Embeds libtorch's library folder (and, with the `cuda` feature, the CUDA runtime's) as an
//! rpath so the `fintune` binary and the tests run without `LD_LIBRARY_PATH`, and links
//! `libtorch_cuda` despite `--as-needed` under the `cuda` feature.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        if let Ok(dir) = std::env::var("DEP_FINTUNE_MODEL_CUDA_LIB_DIR") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
