//! Which configuration keys exist, and the checks that refuse the others.
//!
//! The known keys are read off the `Config` type itself ([`known_keys`]: its `Deserialize` impl is
//! driven by a deserializer that records every field it is asked for), so a field added to
//! `Config` (or to a section struct) is a known key with no list to update. Paths are dotted:
//! `jwt.issuer`; `[]` stands for any element of an array (`jwt.keys[].algorithm`) and `*` for any
//! key of a map (`clients.*.dialect`).

use std::collections::BTreeSet;

/// Every key of `Config`, sections (`jwt`, `jwt.keys`) included.
pub fn known_keys() -> BTreeSet<String> {
    match reflect() {
        Ok(keys) | Err((keys, _)) => keys,
    }
}

/// The reflection feeds every field a placeholder (`""`, `0`, `false`, the first variant). A
/// field type that refuses its placeholder (one parsed from a string, such as `IpAddr`) stops
/// the walk; the fields of every struct reached are still recorded, and the test
/// `reflection_reaches_every_field` names the field so that it is given a `String` (parsed in a
/// check) or another type that accepts the placeholder.
fn reflect() -> Result<BTreeSet<String>, (BTreeSet<String>, String)> {
    crate::reflect::keys_of::<super::Config>()
}

/// The keys that hold a value (not a section), as the docs list them: `*` printed as `<name>`.
pub fn documented_keys() -> Vec<String> {
    let all = known_keys();
    all.iter()
        .filter(|k| {
            !all.iter()
                .any(|o| o.len() > k.len() && o.starts_with(k.as_str()) && is_child(k, o))
        })
        .map(|k| k.replace('*', "<name>"))
        .collect()
}

fn is_child(parent: &str, other: &str) -> bool {
    matches!(other.as_bytes().get(parent.len()), Some(b'.') | Some(b'['))
}

/// A key path in one of the known forms: indices become `[]`, map keys `*` (under a map).
fn matches_known(known: &BTreeSet<String>, segments: &[Segment]) -> bool {
    known.contains(&normalize(known, segments))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// The known-key form of a concrete path: `clients.entra.dialect` → `clients.*.dialect`.
fn normalize(known: &BTreeSet<String>, segments: &[Segment]) -> String {
    let mut path = String::new();
    for s in segments {
        match s {
            Segment::Index(_) => path.push_str("[]"),
            Segment::Key(k) => {
                let sep = if path.is_empty() { "" } else { "." };
                let literal = format!("{path}{sep}{k}");
                let wildcard = format!("{path}{sep}*");
                path = if !known.contains(&literal) && known.contains(&wildcard) {
                    wildcard
                } else {
                    literal
                };
            }
        }
    }
    path
}

/// The concrete dotted form: `jwt.keys[0].kid`.
pub(crate) fn display(segments: &[Segment]) -> String {
    let mut path = String::new();
    for s in segments {
        match s {
            Segment::Index(i) => path.push_str(&format!("[{i}]")),
            Segment::Key(k) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
        }
    }
    path
}

/// The closest known key to `wrong` (a normalised path), when close enough to be a likely typo.
fn suggest(known: &BTreeSet<String>, wrong: &str) -> Option<String> {
    let parent = |p: &str| p.rsplit_once('.').map(|(a, _)| a.to_string());
    // Prefer siblings (same section), then any key.
    let candidates: Vec<&String> = {
        let same: Vec<&String> = known
            .iter()
            .filter(|k| parent(k) == parent(wrong))
            .collect();
        if same.is_empty() {
            known.iter().collect()
        } else {
            same
        }
    };
    let last = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
    candidates
        .into_iter()
        .map(|k| (strsim::levenshtein(&last(k), &last(wrong)), k))
        .filter(|(d, k)| *d <= (last(k).len() / 3).max(2))
        .min()
        .map(|(_, k)| k.clone())
}

/// One key of the configuration file, where it is.
#[derive(Debug, Clone)]
pub(crate) struct FileKey {
    pub segments: Vec<Segment>,
    pub line: usize,
}

/// The keys set in a TOML file, each with its line; `Err` is a TOML syntax error (reported by the
/// loader itself, which parses the same text).
pub(crate) fn file_keys(text: &str) -> Result<Vec<FileKey>, String> {
    let doc = toml_edit::ImDocument::parse(text.to_string()).map_err(|e| e.to_string())?;
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    walk_table(doc.as_table(), &mut Vec::new(), &line_of, &mut out);
    Ok(out)
}

fn walk_table(
    table: &dyn toml_edit::TableLike,
    path: &mut Vec<Segment>,
    line_of: &dyn Fn(Option<std::ops::Range<usize>>) -> usize,
    out: &mut Vec<FileKey>,
) {
    for (key, item) in table.iter() {
        let span = table.get_key_value(key).and_then(|(k, _)| k.span());
        path.push(Segment::Key(key.to_string()));
        out.push(FileKey {
            segments: path.clone(),
            line: line_of(span),
        });
        walk_item(item, path, line_of, out);
        path.pop();
    }
}

fn walk_item(
    item: &toml_edit::Item,
    path: &mut Vec<Segment>,
    line_of: &dyn Fn(Option<std::ops::Range<usize>>) -> usize,
    out: &mut Vec<FileKey>,
) {
    match item {
        toml_edit::Item::Table(t) => walk_table(t, path, line_of, out),
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                path.push(Segment::Index(i));
                walk_table(t, path, line_of, out);
                path.pop();
            }
        }
        toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
            walk_table(t, path, line_of, out)
        }
        toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                if let toml_edit::Value::InlineTable(t) = v {
                    path.push(Segment::Index(i));
                    walk_table(t, path, line_of, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// Whether some key is a strict prefix of the path (the value under it is not walked further:
/// a secret reference `{ env = "…" }`, an array of strings).
fn under_leaf(known: &BTreeSet<String>, segments: &[Segment]) -> bool {
    (1..segments.len()).any(|n| {
        let prefix = normalize(known, &segments[..n]);
        known.contains(&prefix) && !known.iter().any(|k| k != &prefix && is_prefix(&prefix, k))
    })
}

fn is_prefix(parent: &str, other: &str) -> bool {
    other.len() > parent.len() && other.starts_with(parent) && is_child(parent, other)
}

/// Unknown keys of a configuration file: one message per key, naming the file, line and key, with
/// a suggestion when a known key is close.
pub(crate) fn check_file(file: &str, keys: &[FileKey]) -> Vec<String> {
    let known = known_keys();
    let mut problems = Vec::new();
    for k in keys {
        if under_leaf(&known, &k.segments) || matches_known(&known, &k.segments) {
            continue;
        }
        let normalized = normalize(&known, &k.segments);
        let mut msg = format!("{file}:{}: unknown key `{}`", k.line, display(&k.segments));
        if let Some(s) = suggest(&known, &normalized) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        }
        problems.push(msg);
        // Keys below an unknown section are not reported one by one.
    }
    dedup_nested(problems)
}

fn dedup_nested(problems: Vec<String>) -> Vec<String> {
    let key_of = |m: &str| m.split('`').nth(1).map(str::to_string).unwrap_or_default();
    let keys: Vec<String> = problems.iter().map(|m| key_of(m)).collect();
    problems
        .into_iter()
        .enumerate()
        .filter(|(i, _)| {
            !keys
                .iter()
                .enumerate()
                .any(|(j, k)| j != *i && is_prefix(k, &keys[*i]))
        })
        .map(|(_, m)| m)
        .collect()
}

/// `SCIMHUB_*` variables that are not settings but are read elsewhere (by the engine's tuning
/// knobs, `--config`/`--policy`, and the test and benchmark tooling).
pub const OTHER_VARIABLES: &[&str] = &[
    "SCIMHUB_CONFIG",
    "SCIMHUB_POLICY",
    "SCIMHUB_ENGINE_IDLE_POLL_MS",
    "SCIMHUB_ENGINE_LEASE_SECS",
    "SCIMHUB_BIN",
    "SCIMHUB_BINARY",
    "SCIMHUB_TOKEN",
    "SCIMHUB_LINK_SECRET",
    "SCIMHUB_STANDINS_HOME",
    "SCIMHUB_MAIL_ARTIFACTS",
    "SCIMHUB_KEEP_SCRATCH",
    "SCIMHUB_CONFORMANCE_VENV",
    "SCIMHUB_GIT_COMMIT",
];

/// Prefixes of `SCIMHUB_*` variables that belong to the test tooling.
pub const OTHER_PREFIXES: &[&str] = &["SCIMHUB_TEST_"];

/// Whether a `SCIMHUB_*` variable is left to its other readers (see [`OTHER_VARIABLES`]).
pub fn is_other_variable(name: &str) -> bool {
    OTHER_VARIABLES.contains(&name) || OTHER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The configuration key a `SCIMHUB_*` variable sets (`SCIMHUB_JWT__ISSUER` → `jwt.issuer`).
pub(crate) fn env_segments(name: &str) -> Option<Vec<Segment>> {
    let rest = name.strip_prefix("SCIMHUB_")?;
    Some(
        rest.split("__")
            .map(|s| Segment::Key(s.to_ascii_lowercase()))
            .collect(),
    )
}

/// The variable that sets a known key (`rate_limit.links_per_minute` →
/// `SCIMHUB_RATE_LIMIT__LINKS_PER_MINUTE`).
pub fn env_name(key: &str) -> String {
    format!("SCIMHUB_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// Unknown `SCIMHUB_*` variables among `vars`: one message per variable, with a suggestion.
pub(crate) fn check_env<'a>(vars: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let known = known_keys();
    let mut problems = Vec::new();
    for name in vars {
        if is_other_variable(name) {
            continue;
        }
        let Some(segments) = env_segments(name) else {
            continue;
        };
        if under_leaf(&known, &segments) || matches_known(&known, &segments) {
            continue;
        }
        let normalized = normalize(&known, &segments);
        let mut msg = format!("unknown environment variable {name}: no setting `{normalized}`");
        if let Some(s) = suggest(&known, &normalized) {
            msg.push_str(&format!("; did you mean {}?", env_name(&s)));
        }
        problems.push(msg);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_reaches_every_field() {
        if let Err((_, e)) = reflect() {
            panic!(
                "a configuration field refuses the reflection's placeholder value ({e}); \
                 see config::keys::reflect"
            );
        }
    }

    #[test]
    fn known_keys_come_from_the_config_type() {
        let keys = known_keys();
        for k in [
            "bind",
            "database_url",
            "bootstrap_token",
            "jwt",
            "jwt.issuer",
            "jwt.audience",
            "jwt.keys",
            "jwt.keys[].algorithm",
            "jwt.keys[].secret",
            "clients.*.dialect",
            "smtp.host",
            "smtp.password",
            "schema_extensions[].file",
            "schema_extensions[].required",
            "rate_limit.links_per_minute",
            "metrics.bind",
        ] {
            assert!(keys.contains(k), "{k} missing from {keys:?}");
        }
        assert!(!keys.iter().any(|k| k.contains("[]") && k.ends_with("[]")));
        assert!(!keys.contains("smtp.password.env"), "{keys:?}");
        let documented = documented_keys();
        assert!(documented.contains(&"clients.<name>.dialect".to_string()));
        assert!(!documented.contains(&"jwt".to_string()));
        assert!(documented.contains(&"jwt.audience".to_string()));
    }

    /// Every setting the loader knows has a row in the configuration table of
    /// docs/operating.md: add the row when adding a field.
    #[test]
    fn every_setting_is_documented() {
        let docs = include_str!("../../../docs/operating.md");
        let missing: Vec<String> = documented_keys()
            .into_iter()
            .filter(|k| !docs.contains(&format!("| `{k}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "settings missing from the table in docs/operating.md: {missing:?}"
        );
    }

    #[test]
    fn unknown_file_keys_are_named_with_line_and_suggestion() {
        let text = "bind = \"x\"\nmax_result = 5\n[jwt]\nissuer = \"i\"\naudiense = []\n\
                    [[jwt.keys]]\nalgorithm = \"HS256\"\nsecret = { env = \"X\" }\nkdi = \"a\"\n\
                    [clients.entra]\ndialect = \"entra\"\n[nonsense]\na = 1\nb = 2\n";
        let keys = file_keys(text).expect("toml");
        let problems = check_file("hub.toml", &keys);
        assert_eq!(
            problems,
            vec![
                "hub.toml:2: unknown key `max_result`; did you mean `max_results`?",
                "hub.toml:5: unknown key `jwt.audiense`; did you mean `jwt.audience`?",
                "hub.toml:9: unknown key `jwt.keys[0].kdi`; did you mean `jwt.keys[].kid`?",
                "hub.toml:12: unknown key `nonsense`",
            ],
        );
    }

    #[test]
    fn unknown_variables_are_named_with_a_suggestion() {
        let problems = check_env([
            "SCIMHUB_BIND",
            "SCIMHUB_MAX_RESULT",
            "SCIMHUB_JWT__ISSUER",
            "SCIMHUB_CLIENTS__ENTRA__DIALECT",
            "SCIMHUB_POLICY",
            "SCIMHUB_TEST_POSTGRES_URL",
            "SCIMHUB_SMTP__HOTS",
        ]);
        assert_eq!(
            problems,
            vec![
                "unknown environment variable SCIMHUB_MAX_RESULT: no setting `max_result`; \
                 did you mean SCIMHUB_MAX_RESULTS?",
                "unknown environment variable SCIMHUB_SMTP__HOTS: no setting `smtp.hots`; \
                 did you mean SCIMHUB_SMTP__HOST?",
            ]
        );
    }
}
