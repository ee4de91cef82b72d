//! `cargo xtask tidy`: checks that keep the workspace honest. Also runs as a `#[test]`.
//!
//! - Layering: each member depends only on crates allowed for its layer (see ARCHITECTURE.md).
//! - Every member has `[lints] workspace = true`.
//! - Every `unsafe` block or impl has a `// SAFETY:` comment directly above it, and every module
//!   that allows `unsafe_code` explains its invariants in a `//! # Safety` section.
//! - No `dbg!` in committed code.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// A workspace member.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    manifest: String,
}

/// External crates the core layers may use.
const CORE_EXTERNAL: &[&str] = &[
    "libc",
    "nix",
    "memoffset",
    "static_assertions",
    "crossbeam-utils",
    "loom",
];

/// The layering table: which workspace crates each layer may depend on (normal, dev and build
/// dependencies alike; a test that crosses layers belongs to the higher crate).
fn allowed_internal(member: &str, is_tool: bool) -> Option<&'static [&'static str]> {
    if is_tool {
        return Some(&[
            "vppinfra",
            "svm",
            "vlibapi",
            "vlibmemory",
            "vlibsocket",
            "*tools",
        ]);
    }
    Some(match member {
        "vppinfra" => &["vppinfra"],
        "svm" => &["vppinfra"],
        "vlibapi" => &["vppinfra"],
        "vlibmemory" => &["vppinfra", "svm", "vlibapi"],
        "vlibsocket" => &["vppinfra", "svm", "vlibapi", "vlibmemory"],
        "xtask" => &[],
        _ => return None,
    })
}

/// Lists the workspace members from the root manifest (`dir/*` globs expanded).
pub(crate) fn members(root: &Path) -> Result<Vec<Member>, String> {
    let manifest = read(&root.join("Cargo.toml"))?;
    let mut out = Vec::new();
    for entry in array_items(&manifest, "members") {
        let dirs: Vec<PathBuf> = if let Some(parent) = entry.strip_suffix("/*") {
            let mut v: Vec<PathBuf> = fs::read_dir(root.join(parent))
                .map_err(|e| format!("{parent}: {e}"))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("Cargo.toml").is_file())
                .collect();
            v.sort();
            v
        } else {
            vec![root.join(&entry)]
        };
        for dir in dirs {
            let manifest = read(&dir.join("Cargo.toml"))?;
            let name = section_value(&manifest, "package", "name")
                .ok_or_else(|| format!("{}: no package name", dir.display()))?;
            out.push(Member {
                name,
                dir,
                manifest,
            });
        }
    }
    Ok(out)
}

/// Runs every check; returns one line per problem.
pub(crate) fn check(root: &Path) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let members = members(root)?;
    let names: BTreeSet<String> = members.iter().map(|m| m.name.clone()).collect();
    for m in &members {
        let rel = m
            .dir
            .strip_prefix(root)
            .unwrap_or(&m.dir)
            .display()
            .to_string();
        let is_tool = rel.starts_with("tools/");
        if section_value(&m.manifest, "lints", "workspace").as_deref() != Some("true") {
            problems.push(format!(
                "{rel}/Cargo.toml: missing `[lints] workspace = true`"
            ));
        }
        let Some(allowed) = allowed_internal(&m.name, is_tool) else {
            problems.push(format!(
                "{rel}: crate `{}` is not in the layering table (xtask/src/tidy.rs)",
                m.name
            ));
            continue;
        };
        for dep in dependencies(&m.manifest) {
            let internal = names.contains(&dep);
            let ok = if m.name == "xtask" {
                false
            } else if internal {
                let dep_is_tool = members
                    .iter()
                    .any(|o| o.name == dep && o.dir.starts_with(root.join("tools")));
                allowed.contains(&dep.as_str()) || (dep_is_tool && allowed.contains(&"*tools"))
            } else {
                is_tool || CORE_EXTERNAL.contains(&dep.as_str())
            };
            if !ok {
                problems.push(format!(
                    "{rel}/Cargo.toml: `{}` may not depend on `{dep}` (layering table)",
                    m.name
                ));
            }
        }
        check_sources(&m.dir, root, &mut problems)?;
    }
    Ok(problems)
}

fn check_sources(dir: &Path, root: &Path, problems: &mut Vec<String>) -> Result<(), String> {
    let mut files = Vec::new();
    collect_rs(dir, &mut files)?;
    for file in files {
        let text = read(&file)?;
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        check_file(&rel, &text, problems);
    }
    Ok(())
}

/// The per-file rules, separated from I/O so they can be tested on strings.
fn check_file(rel: &str, text: &str, problems: &mut Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let allows_unsafe = text.contains("#![allow(unsafe_code)]");
    if allows_unsafe && !text.contains("//! # Safety") {
        problems.push(format!(
            "{rel}: allows unsafe_code but has no `//! # Safety` section"
        ));
    }
    for (i, line) in lines.iter().enumerate() {
        let code = strip_comment_and_strings(line);
        if code.contains("dbg!(") {
            problems.push(format!("{rel}:{}: dbg! left in", i + 1));
        }
        let opens_block = code.contains("unsafe {") || code.trim_end().ends_with("unsafe");
        let is_impl = code.contains("unsafe impl");
        if (opens_block || is_impl) && !has_safety_comment(&lines, i) {
            problems.push(format!(
                "{rel}:{}: unsafe without a `// SAFETY:` comment directly above",
                i + 1
            ));
        }
    }
}

/// True when the comment lines right above line `i` (or a trailing comment on the line itself)
/// contain `SAFETY:`. Attributes between the comment and the line are allowed.
fn has_safety_comment(lines: &[&str], i: usize) -> bool {
    if lines[i].contains("// SAFETY:") {
        return true;
    }
    let mut j = i;
    while j > 0 {
        j -= 1;
        let t = lines[j].trim_start();
        if t.starts_with("//") {
            if t.contains("SAFETY:") {
                return true;
            }
        } else if t.starts_with("#[") {
            continue;
        } else {
            return false;
        }
    }
    false
}

/// Drops `//` comments and the contents of string literals, roughly, so that text inside them
/// does not trigger the checks.
fn strip_comment_and_strings(line: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut prev = '\0';
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            if c == '"' && prev != '\\' {
                in_str = false;
                out.push('"');
            }
        } else if c == '"' {
            in_str = true;
            out.push('"');
        } else if c == '/' && chars.peek() == Some(&'/') {
            break;
        } else {
            out.push(c);
        }
        prev = if prev == '\\' && c == '\\' { '\0' } else { c };
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_rs(&p, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A deliberately small TOML reader: enough for our manifests.
fn section_value(manifest: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').to_owned();
        } else if current == section {
            if let Some((k, v)) = t.split_once('=') {
                if k.trim() == key {
                    return Some(v.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    None
}

/// The string items of a (possibly multi-line) top-level array such as `members = [...]`.
fn array_items(manifest: &str, key: &str) -> Vec<String> {
    let Some(start) = manifest
        .lines()
        .position(|l| l.trim_start().starts_with(key) && l.contains('='))
    else {
        return Vec::new();
    };
    let mut items = Vec::new();
    for line in manifest.lines().skip(start) {
        let body = line
            .split_once('=')
            .map_or(line, |(k, v)| if k.trim() == key { v } else { line });
        for part in body.split(',') {
            let p = part.trim().trim_matches(|c| c == '[' || c == ']').trim();
            if let Some(s) = p.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                items.push(s.to_owned());
            }
        }
        if line.contains(']') {
            break;
        }
    }
    items
}

/// Names of all dependencies in every dependency table of a member manifest.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']');
            in_deps = name.ends_with("dependencies");
            // `[dependencies.foo]` style tables name the dependency in the header.
            if let Some((_, dep)) = name.rsplit_once("dependencies.") {
                out.push(dep.trim_matches('"').to_owned());
                in_deps = false;
            }
        } else if in_deps {
            if let Some((k, _)) = t.split_once('=') {
                let k = k.trim().trim_matches('"');
                if !k.is_empty() && !k.starts_with('#') {
                    out.push(k.to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy() {
        let problems = check(&crate::root()).expect("tidy runs");
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn unsafe_without_comment_is_reported() {
        let mut p = Vec::new();
        check_file("x.rs", "fn f() {\n    let a = unsafe { g() };\n}\n", &mut p);
        assert_eq!(p.len(), 1, "{p:?}");
        let mut p = Vec::new();
        check_file(
            "x.rs",
            "fn f() {\n    // SAFETY: g has no preconditions.\n    let a = unsafe { g() };\n}\n",
            &mut p,
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn unsafe_module_needs_safety_section() {
        let mut p = Vec::new();
        check_file("x.rs", "#![allow(unsafe_code)]\nfn f() {}\n", &mut p);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn unsafe_in_strings_and_comments_is_ignored() {
        let mut p = Vec::new();
        check_file("x.rs", "let s = \"unsafe {\"; // unsafe { here\n", &mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn layering_violation_is_reported() {
        let deps = dependencies(
            "[package]\nname=\"svm\"\n[dependencies]\nvlibapi = { workspace = true }\nserde_json = \"1\"\n",
        );
        assert_eq!(deps, ["vlibapi", "serde_json"]);
        assert!(!allowed_internal("svm", false).unwrap().contains(&"vlibapi"));
    }
}
