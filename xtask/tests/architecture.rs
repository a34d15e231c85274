//! Two of issue 12's invariants over `xtask/src`, checked on every test run so they cannot regress:
//!
//! - **No source file is longer than [`MAX_LINES`] (500) lines**, counted as `wc -l` counts them
//!   (newline characters). The issue says "about 500"; 500 is the line drawn.
//! - **No module imports one that imports it back**: the graph of modules has no cycle.
//! - **A shared layer never imports a verb**: the modules below the crate root that are not one of
//!   [`VERBS`] (project, release, kconfig, buildroot, rootfs, apps, …) name no verb's module, so
//!   the library's layers stay readable from the folder names (docs/architecture.md).
//!
//! In the graph a module is a file (`foo.rs` or `foo/mod.rs` is `foo`, `lib.rs` is the crate root;
//! `main.rs` is the binary, a crate of its own, and not in the graph). `M → N` when M's non-test code
//! names N by a path starting with `crate::`, `super::`, `self::` or one of M's child modules
//! (`child::item`), grouped `use crate::{a::b, c}` imports included; each path counts for the
//! longest module it names. Items under `#[cfg(test)]` and the test-module files (`tests.rs`,
//! `*_tests.rs`) are left out: tests may reach anywhere.
//!
//! The source is read with a small lexer (comments, strings and char literals skipped) rather than a
//! full Rust parser; the synthetic-tree tests at the bottom prove both checks can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a file under `xtask/src` may have.
const MAX_LINES: usize = 500;

/// The modules that implement a `cargo xtask` verb (main.rs dispatches to them).
const VERBS: &[&str] = &[
    "image",
    "check",
    "audit",
    "flash",
    "bmap",
    "bench",
    "verify",
    "diff",
    "buildroot_tree",
    "qemu",
];

/// A module's path below the crate root (`["audit", "kernel"]`); empty for the root.
type ModPath = Vec<String>;

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `root`, as (path relative to `root`, text), in a stable order.
fn rust_files(root: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .map(|entry| entry.unwrap_or_else(|e| panic!("walking {}: {e}", root.display())))
        .filter(|entry| entry.file_type().is_file())
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "rs"))
        .map(|entry| {
            let text = std::fs::read_to_string(entry.path())
                .unwrap_or_else(|e| panic!("reading {}: {e}", entry.path().display()));
            let relative = entry.path().strip_prefix(root).unwrap().to_path_buf();
            (relative, text)
        })
        .collect();
    files.sort();
    files
}

/// Files longer than [`MAX_LINES`], as `path: N lines`.
fn oversized_files(root: &Path) -> Vec<String> {
    rust_files(root)
        .into_iter()
        .map(|(path, text)| (path, text.bytes().filter(|&b| b == b'\n').count()))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(path, lines)| format!("{}: {lines} lines", path.display()))
        .collect()
}

/// The module a file defines, or `None` for the binary's `main.rs`.
fn module_of(relative: &Path) -> Option<ModPath> {
    let mut parts: ModPath = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.last().map(String::as_str) {
        Some("main") if parts.len() == 1 => return None,
        Some("lib") if parts.len() == 1 => {
            parts.pop();
        }
        Some("mod") => {
            parts.pop();
        }
        _ => {}
    }
    Some(parts)
}

fn is_test_module(module: &ModPath) -> bool {
    module
        .last()
        .is_some_and(|name| name == "tests" || name.ends_with("_tests"))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open(char),
    Close(char),
    Punct(char),
}

/// Splits Rust source into identifiers, `::`, brackets and punctuation; comments, string, char and
/// number literals and lifetimes leave nothing behind.
fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    break;
                } else if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&chars, i + 1);
        } else if c == '\'' {
            if at(i + 1) == '\\' {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime: the quote goes, the name is lexed (and ignored) as an identifier.
                i += 1;
            }
        } else if c.is_ascii_digit() {
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let raw_string = (word == "r" || word == "br")
                && (at(i) == '"' || (at(i) == '#' && matches!(at(i + 1), '#' | '"')));
            if raw_string {
                let hashes = chars[i..].iter().take_while(|&&h| h == '#').count();
                i += hashes + 1;
                while i < chars.len()
                    && !(chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#'))
                {
                    i += 1;
                }
                i += hashes + 1;
            } else if word == "r" && at(i) == '#' {
                i += 1; // A raw identifier, `r#type`: lex the name itself next.
            } else if (word == "b" || word == "c") && at(i) == '"' {
                i = skip_string(&chars, i + 1);
            } else if word == "b" && at(i) == '\'' {
                i = if at(i + 1) == '\\' { i + 4 } else { i + 3 };
                while i < chars.len() && chars[i - 1] != '\'' {
                    i += 1;
                }
            } else {
                tokens.push(Token::Ident(word));
            }
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push(Token::PathSep);
            i += 2;
        } else {
            tokens.push(match c {
                '{' | '(' | '[' => Token::Open(c),
                '}' | ')' | ']' => Token::Close(c),
                _ => Token::Punct(c),
            });
            i += 1;
        }
    }
    tokens
}

/// The index just past the closing quote of a string whose text starts at `i`.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i] != '"' {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// Drops every item marked `#[cfg(test)]`: the attribute, any attributes after it, and the item up
/// to its `;` or the `}` that closes its body.
fn without_test_items(tokens: Vec<Token>) -> Vec<Token> {
    let cfg_test = [
        Token::Punct('#'),
        Token::Open('['),
        Token::Ident("cfg".into()),
        Token::Open('('),
        Token::Ident("test".into()),
        Token::Close(')'),
        Token::Close(']'),
    ];
    let mut kept = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if !tokens[i..].starts_with(&cfg_test) {
            kept.push(tokens[i].clone());
            i += 1;
            continue;
        }
        i += cfg_test.len();
        let mut depth = 0usize;
        while i < tokens.len() {
            let token = &tokens[i];
            i += 1;
            match token {
                Token::Open(_) => depth += 1,
                Token::Close(c) => {
                    depth = depth.saturating_sub(1);
                    // The item's body closed (an attribute's `]` does not end the item).
                    if depth == 0 && *c == '}' {
                        break;
                    }
                }
                Token::Punct(';') if depth == 0 => break,
                _ => {}
            }
        }
    }
    kept
}

/// Every path written in the tokens, as its segments, with `use` groups expanded:
/// `crate::{a::b, c}` gives `crate::a::b` and `crate::c`. Single identifiers are not paths.
fn paths(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_path = matches!(tokens[i], Token::Ident(_))
            && !matches!(i.checked_sub(1).map(|p| &tokens[p]), Some(Token::PathSep));
        if starts_path {
            i = path_tree(tokens, i, &[], &mut found);
        } else {
            i += 1;
        }
    }
    // `a::b` and `use a::{b}` are paths; a lone `a` is not.
    found.retain(|path| path.len() > 1);
    found
}

/// Reads the path (or use tree) starting at `i` below `prefix`, adds what it names to `found`, and
/// returns the index after it.
fn path_tree(
    tokens: &[Token],
    mut i: usize,
    prefix: &[String],
    found: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix.to_vec();
    match tokens.get(i) {
        Some(Token::Ident(name)) if name == "self" && !prefix.is_empty() => i += 1,
        Some(Token::Ident(name)) => {
            path.push(name.clone());
            i += 1;
        }
        _ => return i + 1,
    }
    while tokens.get(i) == Some(&Token::PathSep) {
        match tokens.get(i + 1) {
            Some(Token::Ident(name)) => {
                path.push(name.clone());
                i += 2;
            }
            // A glob import names the module before it.
            Some(Token::Punct('*')) => {
                path.push("*".into());
                i += 2;
                break;
            }
            Some(Token::Open('{')) => {
                i += 2;
                while i < tokens.len() && tokens[i] != Token::Close('}') {
                    match &tokens[i] {
                        Token::Ident(_) => i = path_tree(tokens, i, &path, found),
                        _ => i += 1, // `,`, or a `*` that globs the group's own prefix
                    }
                    if let Some(Token::Ident(word)) = tokens.get(i) {
                        if word == "as" {
                            i += 2;
                        }
                    }
                }
                return i + 1;
            }
            _ => break,
        }
    }
    found.push(path);
    i
}

/// The module a path written in `current` refers to: the longest module it names, or `None` for
/// paths outside the crate (`std::…`, a dependency, a local item).
fn resolve(current: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let (base, rest): (ModPath, &[String]) = match path[0].as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (current.clone(), &path[1..]),
        "super" => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            let base = current[..current.len().checked_sub(supers)?].to_vec();
            (base, &path[supers..])
        }
        child => {
            let mut child_module = current.clone();
            child_module.push(child.to_string());
            if !modules.contains(&child_module) {
                return None;
            }
            (current.clone(), path)
        }
    };
    (0..=rest.len()).rev().find_map(|k| {
        let mut candidate = base.clone();
        candidate.extend_from_slice(&rest[..k]);
        modules.contains(&candidate).then_some(candidate)
    })
}

fn display(module: &ModPath) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// The module graph of the crate at `root`: for each module, the modules it names, each with the
/// first path that names it (the evidence in a failure message).
fn module_graph(root: &Path) -> BTreeMap<ModPath, BTreeMap<ModPath, String>> {
    let sources: Vec<(ModPath, String)> = rust_files(root)
        .into_iter()
        .filter_map(|(path, text)| Some((module_of(&path)?, text)))
        .collect();
    let modules: BTreeSet<ModPath> = sources.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, text) in &sources {
        let edges: &mut BTreeMap<ModPath, String> = graph.entry(module.clone()).or_default();
        if is_test_module(module) {
            continue;
        }
        for path in paths(&without_test_items(tokenize(text))) {
            if let Some(target) = resolve(module, &path, &modules) {
                if &target != module {
                    edges.entry(target).or_insert_with(|| path.join("::"));
                }
            }
        }
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan's algorithm): each is a set of
/// modules that import each other round a cycle.
fn cycles(graph: &BTreeMap<ModPath, BTreeMap<ModPath, String>>) -> Vec<Vec<ModPath>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<ModPath, BTreeMap<ModPath, String>>,
        index: BTreeMap<&'g ModPath, usize>,
        low: BTreeMap<&'g ModPath, usize>,
        stack: Vec<&'g ModPath>,
        components: Vec<Vec<ModPath>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g ModPath) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph[v].keys() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    self.low.insert(v, self.low[v].min(self.low[w]));
                } else if self.stack.contains(&w) {
                    self.low.insert(v, self.low[v].min(self.index[w]));
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().rposition(|m| *m == v).unwrap();
                let component: Vec<ModPath> = self.stack.drain(at..).cloned().collect();
                if component.len() > 1 {
                    self.components.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !tarjan.index.contains_key(v) {
            tarjan.visit(v);
        }
    }
    tarjan.components
}

/// Each cycle as one line naming its modules and the imports that close it.
fn cycle_report(root: &Path) -> Vec<String> {
    let graph = module_graph(root);
    cycles(&graph)
        .into_iter()
        .map(|mut component| {
            component.sort();
            let edges: Vec<String> = component
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|(to, _)| component.contains(to))
                        .map(move |(to, path)| {
                            format!("{} → {} (`{path}`)", display(from), display(to))
                        })
                })
                .collect();
            let names: Vec<String> = component.iter().map(display).collect();
            format!("{}: {}", names.join(", "), edges.join("; "))
        })
        .collect()
}

/// Each import of a verb's module by a shared layer, as `from → to (`path`)`.
fn layer_report(root: &Path) -> Vec<String> {
    let is_verb = |m: &ModPath| m.first().is_some_and(|top| VERBS.contains(&top.as_str()));
    let graph = module_graph(root);
    graph
        .iter()
        .filter(|(from, _)| !from.is_empty() && !is_verb(from))
        .flat_map(|(from, edges)| {
            edges
                .iter()
                .filter(|(to, _)| is_verb(to))
                .map(move |(to, path)| format!("{} → {} (`{path}`)", display(from), display(to)))
        })
        .collect()
}

#[test]
fn no_shared_layer_imports_a_verb() {
    let report = layer_report(&source_dir());
    assert!(
        report.is_empty(),
        "shared layers in xtask/src that import a verb; move what both need into a shared layer:\n  {}",
        report.join("\n  ")
    );
}

#[test]
fn no_source_file_exceeds_the_line_limit() {
    let oversized = oversized_files(&source_dir());
    assert!(
        oversized.is_empty(),
        "files in xtask/src longer than {MAX_LINES} lines; split them by concern:\n  {}",
        oversized.join("\n  ")
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let report = cycle_report(&source_dir());
    assert!(
        report.is_empty(),
        "module cycles in xtask/src; move the shared part to a module both can import:\n  {}",
        report.join("\n  ")
    );
}

/// Writes a small crate into a temporary folder.
fn synthetic_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn the_line_limit_names_a_file_one_line_over_and_passes_one_at_the_limit() {
    let at_limit = "//\n".repeat(MAX_LINES);
    let over = "//\n".repeat(MAX_LINES + 1);
    let tree = synthetic_tree(&[
        ("lib.rs", "pub mod big;\npub mod fine;\n"),
        ("big/mod.rs", &over),
        ("fine.rs", &at_limit),
    ]);
    assert_eq!(oversized_files(tree.path()), ["big/mod.rs: 501 lines"]);
}

#[test]
fn the_cycle_check_finds_cycles_through_every_kind_of_path() {
    let tree = synthetic_tree(&[
        ("main.rs", "use demo::a::A;\nfn main() {}\n"),
        (
            "lib.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod e;\n",
        ),
        // a ⇄ b through a grouped import and a `crate::` path in an expression.
        ("a.rs", "use crate::{b::{self as bee}, d};\npub struct A;\n"),
        ("b.rs", "pub fn f() -> crate::a::A { crate::a::A }\n"),
        // c → c::child by a child path, child → c by `super::`.
        (
            "c/mod.rs",
            "mod child;\npub use child::*;\npub struct Base;\n",
        ),
        ("c/child.rs", "pub struct Thing(super::Base);\n"),
        // d → e only; e's import of d is test code, so no cycle; strings and comments are not code.
        ("d.rs", "pub fn g() { crate::e::h() }\n"),
        (
            "e.rs",
            "/* crate::d::g */ pub fn h() { let _ = \"crate::d::g\"; }\n\
             #[cfg(test)]\nmod tests { use crate::d::g; }\n\
             #[cfg(test)]\nfn helper() -> [u8; 2] { crate::d::g(); [0; 2] }\n",
        ),
        ("e_tests.rs", "use crate::d::g;\n"),
    ]);
    let report = cycle_report(tree.path());
    assert_eq!(
        report,
        [
            "a, b: a → b (`crate::b`); b → a (`crate::a::A`)",
            "c, c::child: c → c::child (`child::*`); c::child → c (`super::Base`)",
        ],
    );
}

#[test]
fn the_lexer_skips_literals_and_keeps_paths_after_them() {
    let source = r####"
        let s = r#"crate::x "quoted" "#; let c = '"'; let l: &'static str = "\" crate::y";
        let b = b'\''; crate::z::w();
    "####;
    let found = paths(&tokenize(source));
    assert_eq!(found, [vec!["crate", "z", "w"]]);
}

#[test]
fn the_layer_check_names_a_shared_layer_that_imports_a_verb() {
    let tree = synthetic_tree(&[
        ("lib.rs", "pub mod image;\npub mod project;\npub mod release;\n"),
        ("image.rs", "pub fn run() { crate::release::seal() }\n"),
        ("project.rs", "pub const PIN: &str = \"x\";\n"),
        (
            "release.rs",
            "pub fn seal() { let _ = crate::project::PIN; }\npub fn flow() { crate::image::run() }\n",
        ),
    ]);
    assert_eq!(
        layer_report(tree.path()),
        ["release → image (`crate::image::run`)"]
    );
}
