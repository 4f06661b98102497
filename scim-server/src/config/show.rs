//! `scimhub config show`: the effective configuration, one `key = value  # source` line per
//! setting, secrets redacted (inline secrets and database passwords; references are shown as
//! written, they name a variable or file, not the secret).

use std::path::Path;

use super::keys::{self, Segment};
use super::{Config, Overrides};

/// Where a setting's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env,
    Flag,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
            Source::Flag => "flag",
        }
    }
}

/// One effective setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// Concrete dotted path: `jwt.keys[0].kid`, `clients.entra.dialect`.
    pub key: String,
    /// The value, redacted, as TOML-like text (`none` when unset).
    pub value: String,
    pub source: Source,
}

/// The effective configuration and each value's source. Loads (and so checks) like
/// [`Config::load`].
pub fn effective(
    file: Option<&Path>,
    overrides: &Overrides,
) -> Result<Vec<Setting>, Box<figment::Error>> {
    let config = Config::load(file, overrides)?;
    let mut value =
        serde_json::to_value(&config).map_err(|e| Box::new(figment::Error::from(e.to_string())))?;
    if let Some(url) = value.get_mut("database_url") {
        *url = serde_json::Value::String(config.database_url.redacted());
    }
    let file_keys: Vec<String> = match file.map(std::fs::read_to_string) {
        Some(Ok(text)) => keys::file_keys(&text)
            .unwrap_or_default()
            .iter()
            .map(|k| keys::display(&k.segments))
            .collect(),
        _ => Vec::new(),
    };
    let env_keys: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("SCIMHUB_") && !keys::is_other_variable(k))
        .filter_map(|k| keys::env_segments(&k))
        .map(|s| keys::display(&s))
        .collect();
    // Flags are `Overrides` fields; a nested one (`tls.cert`) serializes as a nested object.
    let mut flagged = Vec::new();
    if let Ok(v) = serde_json::to_value(overrides) {
        flatten(&mut Vec::new(), &v, &mut flagged);
    }
    let flag_keys: Vec<String> = flagged.into_iter().map(|(k, _)| k).collect();
    let mut out = Vec::new();
    flatten(&mut Vec::new(), &value, &mut out);
    Ok(out
        .into_iter()
        .map(|(key, value)| {
            let set_by = |layer: &[String]| {
                layer.iter().any(|k| {
                    k == &key
                        || (key.starts_with(k.as_str())
                            && matches!(key.as_bytes().get(k.len()), Some(b'.') | Some(b'[')))
                })
            };
            let source = if set_by(&flag_keys) {
                Source::Flag
            } else if set_by(&env_keys) {
                Source::Env
            } else if set_by(&file_keys) {
                Source::File
            } else {
                Source::Default
            };
            Setting { key, value, source }
        })
        .collect())
}

/// The lines `scimhub config show` prints.
pub fn render(settings: &[Setting]) -> String {
    let width = settings
        .iter()
        .map(|s| s.key.len() + s.value.len() + 3)
        .max()
        .unwrap_or(0);
    let mut out = String::from(
        "# effective configuration; secrets redacted; after each value: default, file, env or flag\n",
    );
    for s in settings {
        let line = format!("{} = {}", s.key, s.value);
        out.push_str(&format!("{line:<width$}  # {}\n", s.source.as_str()));
    }
    out
}

fn flatten(path: &mut Vec<Segment>, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    match v {
        Value::Object(o) if !o.is_empty() && !is_secret_ref(v) => {
            for (k, v) in o {
                path.push(Segment::Key(k.clone()));
                flatten(path, v, out);
                path.pop();
            }
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_object) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Segment::Index(i));
                flatten(path, v, out);
                path.pop();
            }
        }
        Value::Null => out.push((keys::display(path), "none".into())),
        Value::Object(o) if is_secret_ref(v) => {
            let inner: Vec<String> = o.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            out.push((keys::display(path), format!("{{ {} }}", inner.join(", "))));
        }
        other => out.push((keys::display(path), other.to_string())),
    }
}

/// `{ "env": "X" }` or `{ "file": "/path" }`: printed as one value.
fn is_secret_ref(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|o| {
        o.len() == 1
            && (o.contains_key("env") || o.contains_key("file"))
            && o.values().all(|v| v.is_string())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::result_large_err)]
    use super::*;

    #[test]
    fn shows_sources_and_redacts_secrets() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hub.toml",
                r#"
                bind = "0.0.0.0:9000"
                max_results = 50
                bootstrap_token = "inline-bootstrap-token-of-enough-length"
                database_url = "postgres://hub:pg-s3cret@db.internal:5432/hub?password=q-s3cret"
                [jwt]
                issuer = "https://idp"
                audience = ["scimhub"]
                [[jwt.keys]]
                algorithm = "HS256"
                secret = { env = "HUB_HS" }
                "#,
            )?;
            jail.set_env("HUB_HS", "hs256-secret-hs256-secret-hs256-secret");
            jail.set_env("SCIMHUB_MAX_RESULTS", "75");
            let settings = effective(
                Some(Path::new("hub.toml")),
                &Overrides {
                    log_format: Some(super::super::LogFormat::Json),
                    ..Default::default()
                },
            )
            .map_err(|e| *e)?;
            let text = render(&settings);
            let get = |k: &str| {
                settings
                    .iter()
                    .find(|s| s.key == k)
                    .cloned()
                    .unwrap_or_else(|| panic!("{k} missing:\n{text}"))
            };
            assert_eq!(get("bind").source, Source::File);
            assert_eq!(get("max_results").value, "75");
            assert_eq!(get("max_results").source, Source::Env);
            assert_eq!(get("log_format").source, Source::Flag);
            assert_eq!(get("log_format").value, "\"json\"");
            assert_eq!(get("max_body_bytes").source, Source::Default);
            assert_eq!(get("jwt.issuer").source, Source::File);
            assert_eq!(get("jwt.keys[0].secret").value, "{ env = \"HUB_HS\" }");
            assert_eq!(get("bootstrap_token").value, "\"[redacted]\"");
            assert_eq!(
                get("database_url").value,
                "\"postgres://hub:[redacted]@db.internal:5432/hub?password=[redacted]\""
            );
            for secret in ["inline-bootstrap", "pg-s3cret", "q-s3cret", "hs256-secret"] {
                assert!(!text.contains(secret), "{secret} leaked:\n{text}");
            }
            assert!(text.contains("max_results = 75"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn database_passwords_never_print() {
        let url = super::super::DatabaseUrl::from("postgres://u:hunter2@h/db");
        assert_eq!(format!("{url:?}"), "\"postgres://u:[redacted]@h/db\"");
        assert_eq!(url.as_str(), "postgres://u:hunter2@h/db");
        let cfg = Config {
            database_url: url,
            ..Config::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
        for (url, shown) in [
            ("sqlite://hub.db", "sqlite://hub.db"),
            ("hub.db", "hub.db"),
            (
                "postgres://u@h/db?sslmode=require",
                "postgres://u@h/db?sslmode=require",
            ),
            // libpq's other password parameter, in any case, and a keyword it decodes.
            (
                "postgres://u@h/db?sslmode=require&SSLPassword=hunter4",
                "postgres://u@h/db?sslmode=require&SSLPassword=[redacted]",
            ),
            (
                "postgres://u@h/db?pass%77ord=hunter6",
                "postgres://u@h/db?pass%77ord=[redacted]",
            ),
            // Key/value strings, one with a URL in a value.
            ("host=h user=u password=hunter5 dbname=d", "[redacted]"),
            (
                "host=h password=hunter7 sslrootcert=file://ca.pem",
                "[redacted]",
            ),
        ] {
            assert_eq!(super::super::redact_url(url), shown, "{url}");
        }
    }
}
