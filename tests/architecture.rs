//! The layers inside scim-server, checked rather than hoped for.
//!
//! Every `.rs` file under `scim-server/src` belongs to a top-level module (`http/resources.rs` to
//! `http`, `run.rs` to `run`). Every `crate::<module>` path in its code (a `use` line, a
//! `crate::{a, b}` group, or an inline path such as `crate::engine::plan::EventKind`) is an edge
//! from that module to another. Comments, doc comments and string literals are skipped: a doc
//! link is prose, not a dependency. `super::` stays inside a module and is not an edge.
//!
//! The layers, from the top (a module may use any module of a lower layer):
//!
//! | layer | modules |
//! |-------|---------|
//! | 0 | `main`, `lib`, `run`, `run_audit`, `run_import`, `run_report`, `cli`, `demo` |
//! | 1 | `http` |
//! | 2 | `admin`, `jobs`, `notify`, `import`, `report` |
//! | 3 | `engine`, `service`, `auth` |
//! | 4 | `policy`, `config`, `clock` |
//! | 5 | `store` |
//! | 6, 7, 8 | `error`, `reflect`, `scheduling`: each uses nothing of the crate |
//!
//! An edge to a higher layer fails. An edge inside one layer fails too, unless it is listed in
//! [`SAME_LAYER`] with the reason it exists; the list is one-directional, so two modules of one
//! layer can never import each other. The entry points of layer 0 are leaves nobody imports;
//! they may use each other freely (`run` starts `demo`, `cli` is parsed by `run`).
//!
//! The checker is a small lexer over std only, so this test needs no dependency and reads the
//! whole tree in a fraction of a second (about 0.15 s in a debug build); a self-test runs it on
//! an in-memory sample so it cannot pass vacuously.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The layers, from the top (0) down.
const LAYERS: &[&[&str]] = &[
    &[
        "main",
        "lib",
        "run",
        "run_audit",
        "run_import",
        "run_report",
        "cli",
        "demo",
    ],
    &["http"],
    &["admin", "jobs", "notify", "import", "report"],
    &["engine", "service", "auth"],
    &["policy", "config", "clock", "metrics"],
    &["store"],
    // What any operation on the hub's data can fail with: every layer returns it.
    &["error"],
    // The keys a Deserialize type accepts (config and policy references); uses nothing.
    &["reflect"],
    // How the request threads are scheduled (set by `run`, applied by `http`'s workers and
    // `store`'s writers); uses nothing.
    &["scheduling"],
];

/// The layer of the entry points, whose modules may use each other.
const ENTRY_LAYER: usize = 0;

/// Edges allowed between two modules of the same layer (from, to, why); one direction only.
///
/// When this test was written no module imported another of its own layer (`jobs` and `notify`
/// each reach down to `engine` and `store` but not to each other; `engine`, `service` and `auth`
/// are independent; `policy`, `config` and `clock` likewise). A same-layer edge is the easiest
/// way to grow a cycle, so one must be argued for here, with its reason, before it is written;
/// moving the shared part a layer down is usually better.
const SAME_LAYER: &[(&str, &str, &str)] = &[
    (
        "report",
        "admin",
        "a termination report is the event record admin::events assembles (systems, operations, \
         verification, SLA): one assembly for the events API and the reports",
    ),
    (
        "jobs",
        "report",
        "the runner keeps a contractor's history in the transaction that completes the \
         contract-expiry plan (report::contractor::archive)",
    ),
];

/// One `crate::<module>` reference in code.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    /// The file it is in, relative to `scim-server/src`.
    file: String,
    line: usize,
    /// The module the file belongs to.
    from: String,
    /// The module referenced.
    to: String,
}

/// A reference that breaks the layering.
#[derive(Debug)]
struct Violation {
    reference: Reference,
    why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.reference;
        write!(f, "scim-server/src/{}:{}: {}", r.file, r.line, self.why)
    }
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module of a file path relative to `src` (`http/error.rs` -> `http`,
/// `run.rs` -> `run`).
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// The source with comments and string/char literals blanked out (newlines kept, so line
/// numbers still match).
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
                out.push(' ');
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"') | Some('#'))
            && !b
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && raw_string_start(&b, i + 1).is_some()
        {
            // r"..." or r#"..."#: no escapes, ends at a quote followed by as many hashes.
            let hashes = raw_string_start(&b, i + 1).unwrap_or(0);
            let mut j = i + 2 + hashes;
            while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            if i < b.len() {
                out.push(' ');
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the first is skipped.
            let close = if next == Some('\\') {
                (i + 2..b.len()).find(|&j| b[j] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    for &ch in &b[i..=end] {
                        blank(&mut out, ch);
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `b[at]` (just after an `r`): the number of `#` before an opening quote, if it is one.
fn raw_string_start(b: &[char], at: usize) -> Option<usize> {
    let mut n = 0;
    while b.get(at + n) == Some(&'#') {
        n += 1;
    }
    (b.get(at + n) == Some(&'"')).then_some(n)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every `crate::<module>` reference in one file's source.
fn references(file: &str, from: &str, src: &str) -> Vec<Reference> {
    let code: Vec<char> = code_only(src).chars().collect();
    let mut found = Vec::new();
    let mut line = 1;
    let mut line_at = 0; // code[..line_at] has been counted for newlines
    let mut i = 0;
    let mut push = |to: String, at: usize, found: &mut Vec<Reference>| {
        while line_at < at {
            if code[line_at] == '\n' {
                line += 1;
            }
            line_at += 1;
        }
        found.push(Reference {
            file: file.to_string(),
            line,
            from: from.to_string(),
            to,
        });
    };
    while i + 5 <= code.len() {
        let starts_word = i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == '$');
        if !(starts_word && code[i..i + 5] == ['c', 'r', 'a', 't', 'e']) {
            i += 1;
            continue;
        }
        let mut j = skip_space(&code, i + 5);
        if !(code.get(j) == Some(&':') && code.get(j + 1) == Some(&':')) {
            i += 5;
            continue;
        }
        j = skip_space(&code, j + 2);
        if code.get(j) == Some(&'{') {
            // `crate::{a::X, b}`: the first segment of each item at depth one.
            let mut depth = 0;
            let mut expect_item = true;
            while j < code.len() {
                match code[j] {
                    '{' => {
                        depth += 1;
                        expect_item = depth == 1;
                        j += 1;
                    }
                    '}' => {
                        depth -= 1;
                        j += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' => {
                        expect_item = depth == 1;
                        j += 1;
                    }
                    c if is_ident(c) && expect_item => {
                        let (name, end) = ident_at(&code, j);
                        push(name, j, &mut found);
                        expect_item = false;
                        j = end;
                    }
                    _ => j += 1,
                }
            }
            i = j;
        } else if code.get(j).is_some_and(|c| is_ident(*c)) {
            let (name, end) = ident_at(&code, j);
            push(name, j, &mut found);
            i = end;
        } else {
            i = j;
        }
    }
    found
}

fn skip_space(code: &[char], mut at: usize) -> usize {
    while code.get(at).is_some_and(|c| c.is_whitespace()) {
        at += 1;
    }
    at
}

fn ident_at(code: &[char], start: usize) -> (String, usize) {
    let mut end = start;
    while code.get(end).is_some_and(|c| is_ident(*c)) {
        end += 1;
    }
    (code[start..end].iter().collect(), end)
}

/// The references that break the layering, given the same-layer edges `allowed`. `self` (from
/// `crate::{self, ..}`) is no module.
fn violations(refs: &[Reference], allowed: &[(&str, &str, &str)]) -> Vec<Violation> {
    let mut out = Vec::new();
    for r in refs {
        if r.to == r.from || r.to == "self" {
            continue;
        }
        let why = match (layer_of(&r.from), layer_of(&r.to)) {
            (None, _) => Some(format!(
                "module `{}` is in no layer; add it to LAYERS in tests/architecture.rs",
                r.from
            )),
            (_, None) => Some(format!(
                "`{}` references `crate::{}`, which is in no layer; add it to LAYERS",
                r.from, r.to
            )),
            (Some(f), Some(t)) if t < f => Some(format!(
                "{} imports {}, which is above it (layer {t} over layer {f})",
                r.from, r.to
            )),
            (Some(f), Some(t))
                if t == f
                    && f != ENTRY_LAYER
                    && !allowed.iter().any(|(a, b, _)| *a == r.from && *b == r.to) =>
            {
                Some(format!(
                    "{} imports {}, which is in the same layer ({f}) and not in SAME_LAYER",
                    r.from, r.to
                ))
            }
            _ => None,
        };
        if let Some(why) = why {
            out.push(Violation {
                reference: r.clone(),
                why,
            });
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every reference under `scim-server/src`, read once for all the tests here.
fn real_tree() -> &'static [Reference] {
    static TREE: OnceLock<Vec<Reference>> = OnceLock::new();
    TREE.get_or_init(read_tree)
}

fn read_tree() -> Vec<Reference> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut refs = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = relative.to_string_lossy().replace('\\', "/");
        refs.extend(references(&file, &module_of(relative), &text));
    }
    refs
}

#[test]
fn layers_point_one_way() {
    let refs = real_tree();
    assert!(
        refs.len() > 100,
        "found only {} crate:: references under scim-server/src; is the checker reading the tree?",
        refs.len()
    );
    let bad = violations(refs, SAME_LAYER);
    let report: Vec<String> = bad.iter().map(ToString::to_string).collect();
    assert!(
        bad.is_empty(),
        "{} reference(s) break the layering of scim-server (see tests/architecture.rs):\n{}",
        bad.len(),
        report.join("\n")
    );
}

/// The allow-list is sane: same-layer only, both modules known, one direction per pair, each
/// with a reason.
#[test]
fn same_layer_list_is_one_directional() {
    for (a, b, why) in SAME_LAYER {
        let (la, lb) = (layer_of(a), layer_of(b));
        assert!(
            la.is_some() && la == lb,
            "{a} -> {b} is not a same-layer edge"
        );
        assert!(
            !SAME_LAYER.iter().any(|(x, y, _)| x == b && y == a),
            "{a} <-> {b} would be a cycle"
        );
        assert!(!why.trim().is_empty(), "{a} -> {b} needs a reason");
    }
}

/// The allow-list holds only edges the code has: a stale entry would quietly permit a new one.
#[test]
fn same_layer_list_is_used() {
    let refs = real_tree();
    for (a, b, _) in SAME_LAYER {
        assert!(
            refs.iter().any(|r| r.from == *a && r.to == *b),
            "SAME_LAYER allows {a} -> {b} but the code has no such reference; remove the entry"
        );
    }
}

#[test]
fn checker_reports_an_upward_import() {
    let src = r#"
//! Docs may name [`crate::http::AppState`] freely.
use crate::store::Store;
use crate::{engine::plan, config};
/* crate::run in a block comment is prose */
fn f() {
    let s = "crate::demo in a string";
    let c = '"';
    let _ = crate::http::BASE_PATH;
    let k: crate::engine::plan::EventKind;
}
"#;
    let refs = references("store/sample.rs", "store", src);
    let targets: Vec<(usize, &str)> = refs.iter().map(|r| (r.line, r.to.as_str())).collect();
    assert_eq!(
        targets,
        vec![
            (3, "store"),
            (4, "engine"),
            (4, "config"),
            (9, "http"),
            (10, "engine")
        ]
    );
    let bad = violations(&refs, SAME_LAYER);
    let messages: Vec<String> = bad.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert_eq!(
        messages[0],
        "scim-server/src/store/sample.rs:4: store imports engine, which is above it \
         (layer 3 over layer 5)"
    );
    assert!(messages[2].contains("store imports http, which is above it"));
}

#[test]
fn checker_rules_same_layer_and_unknown_modules() {
    let refs = [
        references("notify/a.rs", "notify", "use crate::jobs::Workers;"),
        references("admin/a.rs", "admin", "use crate::notify::Outbox;"),
        references("run.rs", "run", "use crate::demo; use crate::cli::Cli;"),
        references("widgets/a.rs", "widgets", "use crate::store::Store;"),
        references("http/a.rs", "http", "use crate::{self, gadgets};"),
    ]
    .concat();
    let allowed = [("admin", "notify", "sample")];
    let messages: Vec<String> = violations(&refs, &allowed)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(messages[0].contains("notify imports jobs, which is in the same layer (2)"));
    assert!(messages[1].contains("module `widgets` is in no layer"));
    assert!(messages[2].contains("`http` references `crate::gadgets`, which is in no layer"));
}

/// A summary of the edges, printed with `--nocapture` when reviewing the layering.
#[test]
fn edges_summary() {
    let mut edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in real_tree() {
        if r.from != r.to && r.to != "self" {
            *edges.entry((r.from.clone(), r.to.clone())).or_default() += 1;
        }
    }
    for ((a, b), n) in &edges {
        println!("{a} -> {b}: {n}");
    }
    assert!(!edges.is_empty());
}
