//! Embeds libtorch's library folder as an rpath so binaries and tests run without
//! `LD_LIBRARY_PATH` (torch-sys only passes the rpath to its own C++ object).
//! With the `cuda` feature, links `libtorch_cuda` despite `--as-needed`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
