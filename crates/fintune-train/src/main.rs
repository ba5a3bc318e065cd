//! `fintune`: fine-tune transformers for financial sentiment regression.
//!
//! A thin command line over the fintune crates; see `fintune --help`.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fintune: error: {err:#}");
            if err.is::<cmd::Interrupted>() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
