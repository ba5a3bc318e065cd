//! Tidy: the architecture invariants of ARCHITECTURE.md and the workspace's hygiene, checked
//! on every `cargo test` (the idea of rust-analyzer's tidy test).
//!
//! - the dependency invariants (`cargo metadata`): no tch/torch-sys in the graph of
//!   fintune-data, fintune-das, fintune-dwa and xtask; only fintune-train depends on the other
//!   fintune crates; xtask depends on `anyhow` and `sha2` only; `anyhow` is no library's dependency;
//! - every `[workspace.dependencies]` entry is used by some crate, and every dependency a crate
//!   declares is used in its sources (`name::`, `use name`, with `-` as `_`);
//! - every library's `lib.rs` opens with `//!` and denies missing docs;
//! - the code map: every crate has its section, every path it names exists, and every source
//!   file of `xtask` and `fintune-model` is named in it;
//! - every `#[ignore = "needs ..."]` test carries its group's tag in its path (see
//!   `xtask/src/ignored.rs`), so `cargo xtask test` finds it.
//! - every relative link or image in a tracked Markdown file points at a file that exists.
//!
//! A failure names the file and what to change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn metadata(no_deps: bool) -> Value {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root()).args(["metadata", "--format-version", "1", "--offline"]);
    if no_deps {
        cmd.arg("--no-deps");
    }
    let out = cmd.output().expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata --offline (run `cargo fetch` once in a fresh clone; `cargo xtask test` \
         does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A workspace member as `cargo metadata --no-deps` describes it.
#[derive(Debug)]
struct Member {
    name: String,
    dir: PathBuf,
    /// `(name as written in Cargo.toml, package name, kind)`; kind is `normal`, `dev`, `build`.
    deps: Vec<(String, String, String)>,
    has_lib: bool,
}

fn members() -> Vec<Member> {
    let meta = metadata(true);
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Member {
            name: p["name"].as_str().unwrap().to_owned(),
            dir: Path::new(p["manifest_path"].as_str().unwrap()).parent().unwrap().to_owned(),
            deps: p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let name = d["name"].as_str().unwrap().to_owned();
                    let as_written = d["rename"].as_str().map_or(name.clone(), str::to_owned);
                    let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                    (as_written, name, kind)
                })
                .collect(),
            has_lib: p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "lib")),
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `.rs` file of a crate: src, tests, benches, examples and build.rs.
fn crate_sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["src", "tests", "benches", "examples"] {
        rust_files(&dir.join(sub), &mut files);
    }
    if dir.join("build.rs").is_file() {
        files.push(dir.join("build.rs"));
    }
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const NO_TCH: [&str; 4] = ["fintune-data", "fintune-das", "fintune-dwa", "xtask"];

#[test]
fn no_tch_in_the_graph_of_the_pure_crates() {
    let meta = metadata(false);
    let packages = meta["packages"].as_array().unwrap();
    let name_of: BTreeMap<&str, &str> =
        packages.iter().map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap())).collect();
    let nodes: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    // Normal and build dependencies: what the crate itself links.
                    d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"] != "dev")
                })
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), deps)
        })
        .collect();
    for krate in NO_TCH {
        let start = name_of.iter().find(|(_, n)| **n == krate).map(|(id, _)| *id).unwrap();
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![(start, vec![krate])];
        while let Some((id, path)) = stack.pop() {
            for &dep in &nodes[id] {
                let name = name_of[dep];
                let mut via = path.clone();
                via.push(name);
                assert!(
                    !matches!(name, "tch" | "torch-sys"),
                    "ARCHITECTURE.md: {krate} must not depend on tch, but does: {}",
                    via.join(" -> ")
                );
                if seen.insert(dep) {
                    stack.push((dep, via));
                }
            }
        }
    }
}

#[test]
fn only_fintune_train_depends_on_the_other_fintune_crates() {
    let all = members();
    let names: BTreeSet<&str> = all.iter().map(|m| m.name.as_str()).collect();
    for m in &all {
        let internal: Vec<&str> =
            m.deps.iter().filter(|d| names.contains(d.1.as_str())).map(|d| d.1.as_str()).collect();
        if m.name != "fintune-train" {
            assert!(
                internal.is_empty(),
                "ARCHITECTURE.md: only fintune-train depends on the other fintune crates, but {} depends on {internal:?}",
                m.name
            );
        }
    }
}

#[test]
fn xtask_uses_anyhow_and_sha2_only_and_libraries_do_not_use_anyhow() {
    for m in members() {
        let normal: Vec<&str> =
            m.deps.iter().filter(|d| d.2 == "normal").map(|d| d.1.as_str()).collect();
        if m.name == "xtask" {
            assert_eq!(
                normal,
                ["anyhow", "sha2"],
                "ARCHITECTURE.md: xtask uses anyhow (errors) and sha2 (download checksums) only"
            );
        } else if m.has_lib && m.name != "fintune-train" {
            assert!(
                !normal.contains(&"anyhow"),
                "{}: anyhow is for binaries, xtask and tests (a dev-dependency here)",
                m.name
            );
        }
    }
}

/// How a dependency shows up in source when not as `name::` or `use name`.
fn other_uses(package: &str) -> &'static [&'static str] {
    match package {
        // Linked for its `links = "tch"` metadata: build.rs embeds libtorch's folder as rpath.
        "torch-sys" => &["DEP_TCH_LIBTORCH_LIB"],
        _ => &[],
    }
}

fn uses(text: &str, ident: &str) -> bool {
    let found = |pat: &str| {
        text.match_indices(pat).any(|(i, _)| {
            // Not the tail of a longer identifier (`my_serde::`).
            text[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
    };
    found(&format!("{ident}::"))
        || found(&format!("use {ident}"))
        || found(&format!("extern crate {ident}"))
        || found(&format!("{ident}!"))
}

#[test]
fn every_declared_dependency_is_used() {
    let mut unused = Vec::new();
    for m in members() {
        let text: String = crate_sources(&m.dir).iter().map(|f| read(f)).collect();
        for (as_written, package, kind) in &m.deps {
            let ident = as_written.replace('-', "_");
            let used = uses(&text, &ident) || other_uses(package).iter().any(|u| text.contains(u));
            if !used {
                unused.push(format!("{}: {kind} dependency `{as_written}`", m.name));
            }
        }
    }
    assert!(unused.is_empty(), "declared but never used in the crate's sources:\n{unused:#?}");
}

/// The names declared in the root Cargo.toml's `[workspace.dependencies]`.
fn workspace_dependencies() -> Vec<String> {
    let text = read(&root().join("Cargo.toml"));
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[workspace.dependencies]";
            continue;
        }
        if inside && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                out.push(name.trim().to_owned());
            }
        }
    }
    out
}

#[test]
fn every_workspace_dependency_is_used_by_some_crate() {
    let declared = workspace_dependencies();
    assert!(declared.len() > 10, "could not read [workspace.dependencies]: {declared:?}");
    let used: BTreeSet<String> =
        members().iter().flat_map(|m| m.deps.iter().map(|d| d.0.clone())).collect();
    let unused: Vec<&String> = declared.iter().filter(|d| !used.contains(*d)).collect();
    assert!(unused.is_empty(), "Cargo.toml: [workspace.dependencies] no crate uses: {unused:?}");
}

#[test]
fn every_library_opens_with_docs_and_denies_missing_docs() {
    for m in members().iter().filter(|m| m.has_lib) {
        let lib = m.dir.join("src/lib.rs");
        let text = read(&lib);
        assert!(text.starts_with("//!"), "{}: must open with a `//!` crate doc", lib.display());
        assert!(
            text.contains("#![deny(missing_docs)]"),
            "{}: add `#![deny(missing_docs)]`",
            lib.display()
        );
    }
}

/// ARCHITECTURE.md's code map: section title -> the backticked names in the section.
fn code_map() -> BTreeMap<String, Vec<String>> {
    let text = read(&root().join("ARCHITECTURE.md"));
    let map = text
        .split("## Code map")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Code map`")
        .split("\n## ")
        .next()
        .unwrap();
    let mut out = BTreeMap::new();
    for section in map.split("\n### ").skip(1) {
        let (title, body) = section.split_once('\n').unwrap_or((section, ""));
        let title = title.trim().trim_matches('`').to_owned();
        let names = body.split('`').skip(1).step_by(2).map(str::to_owned).collect();
        out.insert(title, names);
    }
    out
}

/// Whether a code-map token names a source file (`weights.rs`, `build.rs`; folders such as
/// `gguf/` are not checked: the map also names run folders like `model/`).
fn is_path(token: &str) -> bool {
    !token.contains(' ') && token.ends_with(".rs")
}

#[test]
fn the_code_map_names_every_crate_and_only_existing_files() {
    let map = code_map();
    for m in members() {
        let rel = m.dir.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
        let Some(names) = map.get(&rel) else {
            panic!("ARCHITECTURE.md: the code map has no `### `{rel}`` section")
        };
        for name in names.iter().filter(|n| is_path(n)) {
            let exists =
                [m.dir.join("src").join(name), m.dir.join(name)].iter().any(|p| p.exists());
            assert!(exists, "ARCHITECTURE.md names `{name}` under `{rel}`, which does not exist");
        }
    }
}

/// Crates whose code-map section names every source file (the others describe their API).
const FULLY_MAPPED: [&str; 2] = ["xtask", "fintune-model"];

#[test]
fn every_source_file_of_the_fully_mapped_crates_is_in_the_code_map() {
    let map = code_map();
    for m in members().iter().filter(|m| FULLY_MAPPED.contains(&m.name.as_str())) {
        let rel = m.dir.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
        let names = &map[&rel];
        let entries = std::fs::read_dir(m.dir.join("src")).unwrap();
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if ["lib.rs", "main.rs", "error.rs"].contains(&file.as_str()) {
                continue;
            }
            // A module file (`gguf.rs`) and its folder (`gguf/`) name each other.
            let key = file.trim_end_matches(".rs");
            let named =
                names.iter().any(|n| n.trim_end_matches('/').trim_end_matches(".rs") == key);
            assert!(
                named,
                "ARCHITECTURE.md: `{rel}` has src/{file}, which the code map does not name"
            );
        }
    }
}

/// `(tag, the start of the ignore reason)` of the ignored-test groups.
const IGNORE_GROUPS: [(&str, &str); 3] = [
    ("shared_data", "needs ../shared/data"),
    ("gpu", "needs a CUDA device"),
    ("mpnet_real", "needs .fintune/models/all-mpnet-base-v2"),
];

#[test]
fn every_ignored_test_carries_its_group_tag() {
    let mut wrong = Vec::new();
    let mut seen = 0;
    for m in members() {
        for file in crate_sources(&m.dir) {
            let text = read(&file);
            let module = file.file_stem().unwrap().to_string_lossy().into_owned();
            let folder = file
                .parent()
                .and_then(Path::file_name)
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let attributes = text.match_indices("#[ignore").filter(|(at, _)| {
                text[..*at].rsplit('\n').next().is_some_and(|l| l.trim().is_empty())
            });
            for (at, _) in attributes {
                let rest = &text[at..];
                let reason =
                    rest.split_once('"').map_or("", |(_, r)| r.split('"').next().unwrap_or(""));
                let name = rest
                    .split_once("fn ")
                    .map(|(_, r)| r.split(['(', '<']).next().unwrap_or("").trim())
                    .unwrap_or("");
                seen += 1;
                let shown = format!("{}: {name} (#[ignore = {reason:?}])", file.display());
                if !reason.starts_with("needs ") {
                    wrong.push(format!("{shown}: the reason must say what it needs"));
                    continue;
                }
                if let Some((tag, _)) = IGNORE_GROUPS.iter().find(|(_, r)| reason.starts_with(r)) {
                    let tagged = [name, &module, &folder].iter().any(|s| s.contains(tag));
                    if !tagged {
                        wrong.push(format!(
                            "{shown}: put `{tag}` in the test's name or module, for `cargo xtask test`"
                        ));
                    }
                }
            }
        }
    }
    assert!(seen >= 3, "found only {seen} ignored tests: is the scan broken?");
    assert!(wrong.is_empty(), "ignored tests (see xtask/src/ignored.rs):\n{wrong:#?}");
}

/// The Markdown files git tracks (READMEs, ARCHITECTURE.md, the results under `docs/`).
fn tracked_markdown() -> Vec<PathBuf> {
    let out = Command::new("git")
        .args(["ls-files", "-z", "--", "*.md"])
        .current_dir(root())
        .output()
        .expect("git ls-files runs");
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| root().join(String::from_utf8_lossy(p).as_ref()))
        .filter(|p| p.is_file())
        .collect()
}

/// The targets of the inline links and images of `text` (`[..](target)`, `![..](target)`),
/// with their line numbers; a target ends at whitespace or `)`. Code (fenced blocks and
/// backticked spans) is skipped.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Outside code: the even-numbered pieces between backticks.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(|c: char| c == ')' || c.is_whitespace()).unwrap_or(after.len());
            found.push((n + 1, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn link_targets_are_found_in_links_and_images_only() {
    let text = "see [a](docs/a.md#x) and ![p](plots/p.png \"t\")\n[b](https://e.org) `[f](x)` [c](#top)\n```\n[d](e)\n```";
    let got = link_targets(text);
    assert_eq!(
        got,
        [
            (1, "docs/a.md#x".to_string()),
            (1, "plots/p.png".to_string()),
            (2, "https://e.org".to_string()),
            (2, "#top".to_string())
        ]
    );
}

#[test]
fn every_relative_link_in_the_tracked_markdown_resolves() {
    let files = tracked_markdown();
    assert!(files.len() >= 10, "found only {} Markdown files: is the scan broken?", files.len());
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in &files {
        let dir = file.parent().expect("a file has a folder");
        for (line, target) in link_targets(&read(file)) {
            let path = target.split('#').next().unwrap_or("");
            let external = path.split_once(':').is_some_and(|(scheme, _)| {
                !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+')
            });
            if path.is_empty() || external {
                continue;
            }
            checked += 1;
            if !dir.join(path).exists() {
                let rel = file.strip_prefix(root()).unwrap_or(file);
                broken.push(format!("{}:{line}: {target} does not exist", rel.display()));
            }
        }
    }
    assert!(checked >= 20, "checked only {checked} relative links: is the scan broken?");
    assert!(broken.is_empty(), "broken relative links in Markdown files:\n{broken:#?}");
}
