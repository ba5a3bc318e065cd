//! The ignored tests that `cargo xtask test` runs after the normal ones.
//!
//! A test that needs something a fresh clone lacks is `#[ignore = "needs ..."]` (never a
//! silent pass) and carries its group's tag in its test path (its name or its module), so a
//! test filter selects the group:
//!
//! | tag           | `#[ignore = ...]`                                 | run when                      |
//! |---------------|---------------------------------------------------|-------------------------------|
//! | `shared_data` | `"needs ../shared/data"`                          | `../shared/data` exists       |
//! | `mpnet_real`  | `"needs .fintune/models/all-mpnet-base-v2 ..."`   | that model folder exists      |
//! | `gpu`         | `"needs a CUDA device"`                           | never here: `cargo xtask gpu-check` |
//!
//! The tidy test (`xtask/tests/tidy.rs`) checks that every such test carries its tag.

use std::path::Path;

use anyhow::{anyhow, Result};

use crate::util::{self, capture, cargo, project_root};

/// One group of ignored tests.
struct Group {
    tag: &'static str,
    needs: &'static str,
    /// `Ok(())` when the input is there; the reason they are skipped otherwise.
    available: fn(&Path) -> std::result::Result<(), String>,
}

const GROUPS: [Group; 3] = [
    Group {
        tag: "shared_data",
        needs: "../shared/data",
        available: |_| {
            let dir = project_root().join("../shared/data");
            if dir.is_dir() {
                Ok(())
            } else {
                Err(format!("{} is absent", dir.display()))
            }
        },
    },
    Group {
        tag: "mpnet_real",
        needs: ".fintune/models/all-mpnet-base-v2",
        available: |home| {
            let dir = home.join("models/all-mpnet-base-v2");
            if dir.join("config.json").is_file() {
                Ok(())
            } else {
                Err(format!("{} is absent", dir.display()))
            }
        },
    },
    Group {
        tag: "gpu",
        needs: "a CUDA device",
        available: |_| Err("run `cargo xtask gpu-check` on a GPU machine".into()),
    },
];

/// Lists the ignored tests, runs the groups whose inputs exist and prints what ran and what
/// was skipped, and why. `rest` are the arguments of `cargo xtask test`; with test arguments
/// (after `--`) the ignored tests are left alone.
pub fn run(rest: &[String], home: &Path) -> Result<()> {
    if rest.iter().any(|a| a == "--") {
        println!("xtask: ignored tests not run (test arguments were given)");
        return Ok(());
    }
    let mut list = cargo();
    list.args(["test", "--workspace"]).args(rest).args(["--", "--list", "--ignored"]);
    let listed = capture(&mut list).map_err(|(what, out)| anyhow!("{what}\n{out}"))?;
    let names: Vec<&str> = listed.lines().filter_map(|l| l.strip_suffix(": test")).collect();
    let mut summary = Vec::new();
    let mut tagged = 0;
    for group in &GROUPS {
        let count = names.iter().filter(|n| n.contains(group.tag)).count();
        tagged += count;
        if count == 0 {
            continue;
        }
        match (group.available)(home) {
            Ok(()) => {
                println!("xtask: running the {count} ignored tests that need {}", group.needs);
                let mut cmd = cargo();
                cmd.args(["test", "--workspace"]).args(rest).args(["--", "--ignored", group.tag]);
                util::run(&mut cmd)?;
                summary.push(format!("  ran {count} (all passed) that need {}", group.needs));
            }
            Err(why) => summary.push(format!("  skipped {count} that need {}: {why}", group.needs)),
        }
    }
    if tagged < names.len() {
        summary.push(format!(
            "  skipped {} with no known tag (see xtask/src/ignored.rs)",
            names.len() - tagged
        ));
    }
    println!("xtask: ignored tests ({} in all):", names.len());
    for line in summary {
        println!("{line}");
    }
    Ok(())
}
