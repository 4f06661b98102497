use super::*;

const GOOD: &str = r#"
[settings]
extensions = ["urn:example:acme:2.0:User"]
end_date_attribute = "urn:example:acme:2.0:User:contractEnd"

[[connector]]
name = "slack"
type = "memory"

[[connector]]
name = "github"
type = "memory"

[[profile]]
name = "employee"
match = 'userType eq "Employee"'
grants = [{ connector = "slack", kind = "channel", id = "general" }]

[[profile]]
name = "engineering"
match = 'department eq "Engineering" and urn:example:acme:2.0:User:costCenter pr'
include = ["employee"]
overlap = "24h"
grants = [{ connector = "github", kind = "team", id = "eng", approval = "manager" }]

[sla]
leaver = "15m"
"#;

#[test]
fn parses_a_good_policy() {
    let p = Policy::parse(GOOD, "good.toml").expect("valid");
    assert_eq!(p.connectors.len(), 2);
    assert_eq!(
        p.profile("engineering").map(|p| p.overlap),
        Some(Duration::hours(24))
    );
    assert_eq!(p.sla_for("leaver"), Some(Duration::minutes(15)));
    let names: Vec<&str> = p
        .expand("engineering")
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, vec!["engineering", "employee"]);
}

fn errors(text: &str) -> String {
    Policy::parse(text, "p.toml")
        .expect_err("invalid")
        .to_string()
}

#[test]
fn rejects_with_line_precise_errors() {
    let bad = GOOD.replace(r#"connector = "github""#, r#"connector = "gitlab""#);
    let e = errors(&bad);
    assert!(e.starts_with("p.toml:24:"), "{e}");
    assert!(e.contains("unknown connector \"gitlab\""), "{e}");

    let bad = GOOD.replace("department eq", "departmnt eq");
    let e = errors(&bad);
    assert!(
        e.contains("p.toml:21:") && e.contains("unknown user attribute \"departmnt\""),
        "{e}"
    );

    let bad = GOOD.replace(
        r#"'userType eq "Employee"'"#,
        r#"'userType eq "Employee" and'"#,
    );
    let e = errors(&bad);
    // The column points inside the expression.
    assert!(e.contains("p.toml:16:"), "{e}");
    assert!(e.contains("match: invalid filter"), "{e}");

    let e = errors(&GOOD.replace("\"24h\"", "\"24x\""));
    assert!(
        e.contains("p.toml:23:") && e.contains("unknown unit 'x'"),
        "{e}"
    );

    let e = errors(&GOOD.replace("name = \"github\"", "name = \"slack\""));
    assert!(e.contains("duplicate connector \"slack\""), "{e}");

    let cyc = GOOD.replace(
        "grants = [{ connector = \"slack\"",
        "include = [\"engineering\"]\ngrants = [{ connector = \"slack\"",
    );
    let e = errors(&cyc);
    assert!(
        e.contains("include cycle: employee -> engineering -> employee"),
        "{e}"
    );

    let e = errors(&format!("{GOOD}\n[bogus]\nx = 1\n"));
    assert!(
        e.contains("p.toml:29:") && e.contains("unknown field `bogus`"),
        "{e}"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1h30m"), Ok(Duration::minutes(90)));
    assert_eq!(parse_duration("30d"), Ok(Duration::days(30)));
    assert!(parse_duration("30").is_err());
    assert_eq!(fmt_duration(Duration::minutes(90)), "1h30m");
}

#[test]
fn demo_policy_is_valid_and_documents_itself() {
    let text = include_str!("../../../examples/demo-policy.toml");
    let p = Policy::parse(text, "demo-policy.toml").expect("demo policy is valid");
    assert!(p.profiles.len() >= 12);
    let md = docs::render(&p);
    assert!(md.contains("## Roles") && md.contains("Separation of duties"));
}

const TYPED: &str = r#"
[[connector]]
name = "gh"
type = "github"
settings = { org = "acme", teams = ["eng"] }
credentials = { token = { env = "GITHUB_TOKEN" } }

[[connector]]
name = "aws"
type = "aws_iam"
credentials = { access_key_id = { env = "K" }, secret_access_key = { file = "/run/s" } }
[connector.settings]
endpoint = "http://127.0.0.1:5000/"
path = "/scimhub/"

[[connector]]
name = "dir"
type = "ldap"
credentials = { bind_password = { env = "LDAP_PW" } }
[connector.settings]
url = "ldap://127.0.0.1:389"
tls = "starttls"
ca_file = "/etc/ca.pem"
bind_dn = "cn=admin,dc=example,dc=com"
search_base = "dc=example,dc=com"
users_dn = "ou=people,dc=example,dc=com"
groups_dn = "ou=groups,dc=example,dc=com"
disable = "move_to_ou"
disabled_ou = "ou=disabled,dc=example,dc=com"

[[profile]]
name = "eng"
match = 'department eq "Engineering"'
grants = [
  { connector = "gh", kind = "team", id = "eng" },
  { connector = "aws", kind = "policy", id = "arn:aws:iam::aws:policy/ReadOnlyAccess" },
  { connector = "dir", kind = "group", id = "engineering" },
]
"#;

#[test]
fn typed_connector_settings_parse() {
    let p = Policy::parse(TYPED, "t.toml").expect("valid");
    assert_eq!(p.connectors.len(), 3);
    assert_eq!(p.connectors["aws"].settings["path"], "/scimhub/");
}

#[test]
fn bad_connector_settings_are_rejected_with_lines() {
    // unknown key in a [connector.settings] section: the line of the key
    let e = errors(&TYPED.replace("path = \"/scimhub/\"", "pth = \"/scimhub/\""));
    assert!(e.starts_with("p.toml:14:1:"), "{e}");
    assert!(e.contains("unknown field `pth`"), "{e}");
    // missing required setting in an inline table: the settings line
    let e = errors(&TYPED.replace("org = \"acme\", ", ""));
    assert!(e.starts_with("p.toml:5:"), "{e}");
    assert!(e.contains("missing field `org`"), "{e}");
    // wrong value type
    let e = errors(&TYPED.replace("tls = \"starttls\"", "tls = \"sometimes\""));
    assert!(e.starts_with("p.toml:22:7:"), "{e}");
    // TLS without a CA
    let e = errors(&TYPED.replace("ca_file = \"/etc/ca.pem\"\n", ""));
    assert!(e.contains("TLS needs ca_file"), "{e}");
    // missing and unknown credentials
    let e = errors(&TYPED.replace(
        "{ token = { env = \"GITHUB_TOKEN\" } }",
        "{ tokn = { env = \"X\" } }",
    ));
    assert!(e.starts_with("p.toml:6:"), "{e}");
    assert!(e.contains("needs credentials.token"), "{e}");
    assert!(e.contains("unknown credential \"tokn\""), "{e}");
    // an inline secret does not parse at all
    let e = errors(&TYPED.replace("{ env = \"GITHUB_TOKEN\" }", "\"ghp_inline\""));
    assert!(e.starts_with("p.toml:6:"), "{e}");
    // unknown type
    let e = errors(&TYPED.replace("type = \"github\"", "type = \"gitlab\""));
    assert!(e.starts_with("p.toml:4:"), "{e}");
    assert!(e.contains("unknown connector type \"gitlab\""), "{e}");
}

#[test]
fn grants_of_unknown_entitlement_kinds_are_rejected() {
    let e = errors(&TYPED.replace(
        "{ connector = \"gh\", kind = \"team\"",
        "{ connector = \"gh\", kind = \"group\"",
    ));
    assert!(e.starts_with("p.toml:35:3:"), "{e}");
    assert!(
        e.contains("connector \"gh\" has no entitlement kind \"group\" (it knows org, team)"),
        "{e}"
    );
}
