//! `.github/workflows/bench.yml` is valid YAML, runs on pull requests, and its steps call only
//! xtask commands (and flags) that `cargo xtask help` lists.

use std::path::Path;
use std::process::Command;

use yaml_rust::YamlLoader;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).arg("help").output().unwrap();
    assert!(out.status.success(), "xtask help failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Command names of the help text: the first word of each line indented by exactly two spaces.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Every `cargo xtask CMD ARGS` in a shell script: (CMD, ARGS up to a pipe or the line's end).
fn xtask_calls(script: &str) -> Vec<(String, Vec<String>)> {
    let mut calls = Vec::new();
    for line in script.lines() {
        for part in line.split("cargo xtask ").skip(1) {
            let mut words = part.split(['|', ';', '&']).next().unwrap().split_whitespace();
            if let Some(cmd) = words.next() {
                calls.push((cmd.to_owned(), words.map(str::to_owned).collect()));
            }
        }
    }
    calls
}

#[test]
fn bench_workflow_is_valid_and_calls_existing_xtask_commands() {
    let path = root().join(".github/workflows/bench.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    assert_eq!(docs.len(), 1, "one YAML document");
    let wf = &docs[0];
    assert!(!wf["on"]["pull_request"].is_badvalue(), "bench.yml must run on pull requests");
    let jobs = wf["jobs"].as_hash().expect("a `jobs` map");
    assert!(!jobs.is_empty());

    let help = help();
    let known = commands(&help);
    for cmd in ["setup", "test", "bench-peer", "bench-ci"] {
        assert!(known.iter().any(|k| k == cmd), "help lists `{cmd}`: {known:?}");
    }
    let mut calls = Vec::new();
    for (name, job) in jobs {
        let steps = job["steps"].as_vec().unwrap_or_else(|| panic!("job {name:?} has steps"));
        for step in steps {
            assert!(
                step["uses"].as_str().is_some() || step["run"].as_str().is_some(),
                "every step uses an action or runs a script: {step:?}"
            );
            if let Some(script) = step["run"].as_str() {
                calls.extend(xtask_calls(script));
            }
        }
    }
    assert!(calls.iter().any(|(c, _)| c == "bench-ci"), "bench.yml runs bench-ci: {calls:?}");
    assert!(
        calls.iter().any(|(c, a)| c == "bench-peer" && a.iter().any(|a| a == "--quick")),
        "bench.yml runs bench-peer --quick: {calls:?}"
    );
    for (cmd, args) in &calls {
        assert!(known.contains(cmd), "bench.yml calls `cargo xtask {cmd}`, which does not exist");
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            assert!(help.contains(flag.as_str()), "`cargo xtask {cmd}` has no flag `{flag}`");
        }
    }
}

#[test]
fn the_checker_catches_a_missing_command() {
    let known = commands(&help());
    let calls =
        xtask_calls("cargo xtask bench-nothing --x | tee out\ncargo xtask bench-ci --model");
    assert_eq!(calls[0], ("bench-nothing".to_owned(), vec!["--x".to_owned()]));
    assert_eq!(calls[1].0, "bench-ci");
    assert!(!known.contains(&calls[0].0));
    assert!(known.contains(&calls[1].0));
}
