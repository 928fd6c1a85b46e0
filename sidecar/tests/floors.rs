//! The sidecar is built in floors, and imports only go down: support → config → store → domains (keys, issuers,
//! api_keys, oauth) → mirror → background → http and cli (→ fuzzing, the fuzz targets' entry points). This test
//! reads every source file, collects the `crate::…` and `super::…` paths it names, and fails on an import of a
//! higher floor, on a domain or lower floor that names axum, the HTTP layer, the CLI or the app state, and on any
//! import loop between modules.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floor of a top-level module: a module may import its own floor and the floors below.
fn floor(top: &str) -> Option<u8> {
    Some(match top {
        "support" => 0,
        "config" => 1,
        "store" => 2,
        "keys" | "issuers" | "api_keys" | "oauth" => 3,
        "mirror" => 4,
        "background" => 5,
        "http" | "cli" => 6,
        // The fuzz targets' entry points (feature `fuzzing`) drive parsers of every floor.
        "fuzzing" => 7,
        _ => return None,
    })
}

/// Domains and the floors below them never see the web framework, the HTTP layer, the CLI or the app state.
const DOMAIN_FLOOR: u8 = 3;
const FORBIDDEN_BELOW_HTTP: [&str; 5] = [
    "axum",
    "crate::http",
    "crate::cli",
    "AppState",
    "crate::state",
];

struct SourceFile {
    /// `http::oauth::token` for `src/http/oauth/token.rs`; `keys` for `src/keys/mod.rs`.
    module: Vec<String>,
    /// The code with comments removed.
    code: String,
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn load(src: &Path) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    source_files(src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            // The crate root and the binary sit above every floor.
            if module == ["lib"] || module == ["main"] {
                return None;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .lines()
                .map(|line| match line.find("//") {
                    Some(at) => &line[..at],
                    None => line,
                })
                .collect::<Vec<_>>()
                .join("\n");
            Some(SourceFile { module, code })
        })
        .collect()
}

/// Every path a file names through `crate::` or `super::`, made absolute, with `{a, b::c}` groups expanded.
fn named_paths(file: &SourceFile) -> Vec<Vec<String>> {
    let code = file.code.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let (base, skip): (Vec<String>, usize) = if rest.starts_with(b"crate::") {
            (Vec::new(), "crate::".len())
        } else if rest.starts_with(b"super::") {
            // `super` of `a::b` is `a`, whether `b` is `a/b.rs` or `a/b/mod.rs`.
            let mut parent = file.module.clone();
            parent.pop();
            (parent, "super::".len())
        } else {
            at += 1;
            continue;
        };
        let preceded_by_word = at > 0
            && (code[at - 1].is_ascii_alphanumeric()
                || code[at - 1] == b'_'
                || code[at - 1] == b':');
        at += skip;
        if preceded_by_word {
            continue;
        }
        let (paths, used) = parse_tree(&file.code[at..]);
        at += used;
        for path in paths {
            let mut full = base.clone();
            full.extend(
                path.into_iter()
                    .filter(|segment| segment != "self" && segment != "*"),
            );
            out.push(full);
        }
    }
    out
}

/// Parses `a::b::{c, d::{e}}` (or `a::b`) at the start of `text`: the paths and how many bytes were read.
fn parse_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut prefix = Vec::new();
    let mut at = 0;
    loop {
        let start = at;
        while at < bytes.len()
            && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_' || bytes[at] == b'*')
        {
            at += 1;
        }
        if at > start {
            prefix.push(text[start..at].to_owned());
        }
        let group = if text[at..].starts_with("::{") {
            Some(3)
        } else if at == 0 && text.starts_with('{') {
            Some(1)
        } else {
            None
        };
        if let Some(open) = group {
            at += open;
            let mut paths = Vec::new();
            loop {
                while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    at += 1;
                    break;
                }
                let (inner, used) = parse_tree(&text[at..]);
                at += used.max(1);
                for path in inner {
                    let mut full = prefix.clone();
                    full.extend(path);
                    paths.push(full);
                }
                // Skip an `as name` rename.
                while at < bytes.len() && !matches!(bytes[at], b',' | b'}') {
                    at += 1;
                }
            }
            return (paths, at);
        }
        if text[at..].starts_with("::") {
            at += 2;
            continue;
        }
        return (vec![prefix], at);
    }
}

/// The module a path points into: its longest prefix that is a module of the crate.
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

fn is_ancestor(a: &[String], b: &[String]) -> bool {
    a.len() < b.len() && b.starts_with(a)
}

/// Every violation of the floor rules in the sources under `src`.
fn violations(src: &Path) -> Vec<String> {
    let files = load(src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let name = file.module.join("::");
        let Some(own) = floor(&file.module[0]) else {
            problems.push(format!(
                "{name}: top-level module on no floor (add it to `floor`)"
            ));
            continue;
        };
        if own <= DOMAIN_FLOOR {
            for forbidden in FORBIDDEN_BELOW_HTTP {
                let hit = file.code.match_indices(forbidden).any(|(at, _)| {
                    let before = file.code[..at].chars().next_back();
                    let after = file.code[at + forbidden.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    problems.push(format!("{name} (floor {own}) names `{forbidden}`"));
                }
            }
        }
        for path in named_paths(file) {
            let Some(target) = resolve(&path, &modules) else {
                continue;
            };
            let Some(target_floor) = floor(&target[0]) else {
                continue;
            };
            if target_floor > own {
                problems.push(format!(
                    "{name} (floor {own}) imports {} (floor {target_floor})",
                    path.join("::")
                ));
            }
            if target != file.module
                && !is_ancestor(&target, &file.module)
                && !is_ancestor(&file.module, &target)
            {
                edges.entry(file.module.clone()).or_default().insert(target);
            }
        }
    }
    problems.extend(cycles(&edges));
    problems
}

/// The import loops in `edges`, one message per loop found.
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
        found: &mut Vec<String>,
    ) {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut names: Vec<String> =
                        stack[from..].iter().map(|n| n.join("::")).collect();
                    names.push(next.join("::"));
                    found.push(format!("import loop: {}", names.join(" → ")));
                }
                Some(Mark::Done) => {}
                None => visit(next, edges, marks, stack, found),
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = Vec::new();
    for node in edges.keys() {
        if !marks.contains_key(node) {
            visit(node, edges, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found
}

#[test]
fn sidecar_modules_import_only_lower_floors_and_form_no_loops() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = violations(&src);
    assert!(
        problems.is_empty(),
        "floor rules broken:\n{}",
        problems.join("\n")
    );
}

/// The check itself: a tree with an upward import, a domain naming axum and a loop is refused on each count.
#[test]
fn the_floor_check_catches_upward_imports_framework_names_and_loops() {
    let dir = tempfile::tempdir().unwrap();
    let write = |relative: &str, text: &str| {
        let path = dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("support/mod.rs", "pub mod clock;\n");
    write(
        "support/clock.rs",
        "// crate::http is only mentioned in a comment\n",
    );
    write(
        "keys/mod.rs",
        "use crate::http::state::AppState;\nuse axum::body::Bytes;\n",
    );
    write("http/mod.rs", "pub mod state;\n");
    write("http/state.rs", "use crate::keys::Thing;\n");
    write(
        "mirror/mod.rs",
        "use crate::{store::commit, background::Task};\n",
    );
    write("store/commit.rs", "use crate::store::names::KeyNames;\n");
    write("store/names.rs", "use super::commit::{self, Entry};\n");
    write("background/mod.rs", "use crate::mirror::Mirror;\n");
    let problems = violations(dir.path());
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has("keys (floor 3) imports http::state::AppState (floor 6)"),
        "{problems:#?}"
    );
    assert!(has("keys (floor 3) names `axum`"), "{problems:#?}");
    assert!(has("keys (floor 3) names `AppState`"), "{problems:#?}");
    assert!(
        has("mirror (floor 4) imports background::Task (floor 5)"),
        "{problems:#?}"
    );
    assert!(has("import loop: "), "{problems:#?}");
    assert!(has("store::commit"), "{problems:#?}");
    assert!(
        !problems.iter().any(|p| p.starts_with("support")),
        "{problems:#?}"
    );
}
