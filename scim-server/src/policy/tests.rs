use chrono::Duration;
use connectors::Entitlement;

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
    assert!(md.contains("after **owner** approval (linus)"), "{md}");
    assert!(md.contains("approvals and SoD exceptions: linus"), "{md}");
    assert!(md.contains("**workday** owns active, title"), "{md}");
    assert!(
        md.contains("after 5 failures in a row its operations wait and one is tried every 30s"),
        "{md}"
    );
    assert_eq!(p.connectors["github"].owners, vec!["linus"]);
    assert_eq!(p.approvals.security, vec!["linus"]);
    // workday owns manager and the sponsor attribute: both give authority.
    assert!(p.manager_trusted() && p.sponsor_trusted());
}

/// A policy with approvals that need deciders; `{}` stands for extra lines.
const APPROVALS: &str = r#"
[[connector]]
name = "github"
type = "memory"
owners = ["olga"]

[[connector]]
name = "aws"
type = "memory"

[[profile]]
name = "eng"
match = 'title pr'
grants = [
  { connector = "github", kind = "org", id = "acme", approval = "owner" },
  { connector = "aws", kind = "group", id = "prod", approval = "owner", owners = ["pete", "olga"] },
  { connector = "aws", kind = "group", id = "audit", approval = "security" },
]

[[sod]]
name = "two-hats"
a = { connector = "aws", kind = "group", id = "prod" }
b = { connector = "aws", kind = "group", id = "audit" }
action = "approval"

[approvals]
security = ["sam"]
"#;

#[test]
fn security_groups_are_refused_and_authority_attributes_need_a_source() {
    // Group membership is written by any scim:write client: it cannot appoint approvers.
    let e = errors(&APPROVALS.replace(
        "security = [\"sam\"]\n",
        "security = [\"sam\"]\nsecurity_groups = [\"Security\"]\n",
    ));
    assert!(e.contains("security_groups is no longer accepted"), "{e}");
    // Without a source owning them, manager and sponsor give no authority...
    let p = Policy::parse(APPROVALS, "a.toml").expect("valid");
    assert!(!p.manager_trusted());
    // ...unless the policy trusts unowned attributes; or a source owns them.
    let trusting = APPROVALS.replace(
        "[approvals]\n",
        "[approvals]\ntrust_unowned_attributes = true\n",
    );
    assert!(Policy::parse(&trusting, "a.toml")
        .expect("valid")
        .manager_trusted());
    let owned = format!("{APPROVALS}\n[[source]]\nclient = \"hr\"\nowns = [\"manager\"]\n");
    let p = Policy::parse(&owned, "a.toml").expect("valid");
    assert!(p.manager_trusted());
    // Owning the approver's id is enough; owning only the manager's display name is not: any
    // other scim:write client could still set manager.value and appoint the approver.
    let value_owned = owned.replace("owns = [\"manager\"]", "owns = [\"manager.value\"]");
    assert!(Policy::parse(&value_owned, "a.toml")
        .expect("valid")
        .manager_trusted());
    let name_owned = owned.replace("owns = [\"manager\"]", "owns = [\"manager.displayName\"]");
    assert!(!Policy::parse(&name_owned, "a.toml")
        .expect("valid")
        .manager_trusted());
    assert!(p.is_authority_attribute(
        &scim_schema::filter::parse_attr_path(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"
        )
        .expect("path")
    ));
}

/// `policy check` warns when manager approvals can only wait for security: no source owns the
/// manager, or one owns only a part that names nobody; trusting unowned attributes or owning
/// manager.value silences it, and a policy that asks no manager has nothing to warn of.
#[test]
fn manager_approvals_nobody_can_decide_are_warned_of() {
    let asking = APPROVALS.replace(
        "{ connector = \"github\", kind = \"org\", id = \"acme\", approval = \"owner\" }",
        "{ connector = \"github\", kind = \"org\", id = \"acme\", approval = \"manager\" }",
    );
    assert_ne!(asking, APPROVALS);
    let warnings = |text: &str| Policy::parse(text, "a.toml").expect("valid").warnings();
    assert!(warnings(APPROVALS).is_empty());
    let w = warnings(&asking).join("\n");
    assert!(
        w.contains("profile(s) eng ask the manager's approval")
            && w.contains("no [[source]] owns the enterprise manager")
            && w.contains("wait for the security approvers"),
        "{w}"
    );
    let nobody = "[[connector]]\nname = \"github\"\ntype = \"memory\"\n\n[[profile]]\n\
                  name = \"eng\"\nmatch = 'title pr'\ngrants = [{ connector = \"github\", \
                  kind = \"org\", id = \"acme\", approval = \"manager\" }]\n";
    let w = warnings(nobody).join("\n");
    assert!(w.contains("nobody can decide these requests"), "{w}");
    let owned =
        |what: &str| format!("{asking}\n[[source]]\nclient = \"hr\"\nowns = [\"{what}\"]\n");
    let w = warnings(&owned("manager.displayName")).join("\n");
    assert!(
        w.contains("[[source]] \"hr\" owns only part of the enterprise manager"),
        "{w}"
    );
    assert!(warnings(&owned("manager.value")).is_empty());
    assert!(warnings(&owned("manager")).is_empty());
    let trusting = asking.replace(
        "[approvals]\n",
        "[approvals]\ntrust_unowned_attributes = true\n",
    );
    assert!(warnings(&trusting).is_empty());
    // Links and the addresses they go to: mailed to people only when a source owns emails;
    // a short link key is said to be guessable.
    let key_file = |key: &str| {
        let f = std::env::temp_dir().join(format!("scimhub-link-key-{}", uuid::Uuid::new_v4()));
        std::fs::write(&f, key).expect("a temporary key file");
        f.display().to_string()
    };
    let (short, long) = (key_file("k"), key_file("0123456789abcdef0123456789abcdef"));
    let linked = format!("{APPROVALS}\n[notify]\nlink_secret = {{ file = {short:?} }}\n");
    let p = Policy::parse(&linked, "a.toml").expect("valid");
    assert!(!p.person_email_trusted());
    let w = p.warnings().join("\n");
    assert!(
        w.contains("one-click links are not mailed to people")
            && w.contains("link_secret is 1 bytes"),
        "{w}"
    );
    let linked = linked.replace(&short, &long);
    let owned = format!("{linked}\n[[source]]\nclient = \"hr\"\nowns = [\"emails\"]\n");
    let p = Policy::parse(&owned, "a.toml").expect("valid");
    assert!(
        p.person_email_trusted() && p.warnings().is_empty(),
        "{:?}",
        p.warnings()
    );
    let _ = (std::fs::remove_file(short), std::fs::remove_file(long));
}

/// `policy check` warns when a connector deletes leavers' accounts after handing their records
/// to the manager but no source owns the manager's id (the records go to nobody); owning it,
/// or disabling instead of deleting, silences it.
#[test]
fn records_handed_to_an_unowned_manager_are_warned_of() {
    let warnings = |text: &str| Policy::parse(text, "a.toml").expect("valid").warnings();
    let deleting = "[[connector]]\nname = \"drive\"\ntype = \"memory\"\non_leave = \"delete\"\n";
    let w = warnings(deleting).join("\n");
    assert!(
        w.contains("connector(s) drive hand a leaver's records to the manager")
            && w.contains("records_kept"),
        "{w}"
    );
    let owned = format!("{deleting}\n[[source]]\nclient = \"hr\"\nowns = [\"manager\"]\n");
    assert!(warnings(&owned).is_empty(), "{:?}", warnings(&owned));
    let no_transfer = format!("{deleting}transfer_ownership = false\n");
    assert!(warnings(&no_transfer).is_empty());
    let disabling = deleting.replace("on_leave = \"delete\"\n", "");
    assert!(warnings(&disabling).is_empty());
}

/// `policy check` warns when a source owns `active` but not the status or date attributes that
/// cause a departure as well; owning them silences it.
#[test]
fn unowned_lifecycle_attributes_beside_an_owned_active_are_warned_of() {
    let warnings = |text: &str| Policy::parse(text, "a.toml").expect("valid").warnings();
    let settings = "[settings]\nextensions = [\"urn:example:acme:2.0:User\"]\n\
                    status_attribute = \"urn:example:acme:2.0:User:status\"\n\
                    end_date_attribute = \"urn:example:acme:2.0:User:contractEnd\"\n";
    let w = warnings(&format!(
        "{settings}\n[[source]]\nclient = \"workday\"\nowns = [\"active\"]\n"
    ))
    .join("\n");
    assert!(
        w.contains("\"workday\" owns \"active\", but nobody owns urn:example:acme:2.0:User:status, urn:example:acme:2.0:User:contractEnd"),
        "{w}"
    );
    let owned = format!(
        "{settings}\n[[source]]\nclient = \"workday\"\nowns = [\"active\", \
         \"urn:example:acme:2.0:User:status\", \"urn:example:acme:2.0:User:contractEnd\"]\n"
    );
    assert!(warnings(&owned).is_empty(), "{:?}", warnings(&owned));
    // Nobody owns active: no source decides departures, nothing to warn of.
    assert!(warnings(settings).is_empty());
}

#[test]
fn approvers_are_declared_and_owners_combine() {
    let p = Policy::parse(APPROVALS, "a.toml").expect("valid");
    assert_eq!(p.approvals.security, vec!["sam"]);
    let prod = Entitlement::new("group", "prod");
    // The grant's owners, then nobody else: aws declares none.
    assert_eq!(p.entitlement_owners("aws", &prod), vec!["pete", "olga"]);
    // github's owners own every github entitlement.
    assert_eq!(
        p.entitlement_owners("github", &Entitlement::new("org", "acme")),
        vec!["olga"]
    );
}

#[test]
fn approvals_without_deciders_are_rejected_with_lines() {
    // An owner-level grant with no owner anywhere.
    let e = errors(&APPROVALS.replace("owners = [\"olga\"]\n", ""));
    // (one line shorter without the connector's owners: the github grant is on line 14)
    assert!(e.starts_with("p.toml:14:3:"), "{e}");
    assert!(e.contains("approval = \"owner\" needs an owner"), "{e}");
    assert!(e.contains("connector \"github\""), "{e}");
    // Security-level grants and SoD exceptions with no security approvers.
    let no_security = APPROVALS.replace("[approvals]\nsecurity = [\"sam\"]\n", "");
    let e = errors(&no_security);
    assert!(
        e.contains("p.toml:17:") && e.contains("approval = \"security\" needs security approvers"),
        "{e}"
    );
    assert!(
        e.contains("p.toml:21:") && e.contains("a SoD rule with action = \"approval\""),
        "{e}"
    );
    // Blank and repeated names.
    let e = errors(&APPROVALS.replace(
        "owners = [\"pete\", \"olga\"]",
        "owners = [\"pete\", \"PETE\", \" \"]",
    ));
    assert!(
        e.contains("p.toml:16:") && e.contains("\"PETE\" is listed twice"),
        "{e}"
    );
    assert!(e.contains("a userName cannot be empty"), "{e}");
    // Contractors whose extensions nobody could decide.
    let e = errors(&format!(
        "{}\n[[profile]]\nname = \"c\"\n\n[contractor]\nmatch = 'userType eq \"Contractor\"'\nprofile = \"c\"\n",
        no_security.replace("approval = \"security\"", "approval = \"none\"").replace("action = \"approval\"", "action = \"block\"")
    ));
    assert!(e.contains("nobody could decide contract extensions"), "{e}");
}

#[test]
fn sources_resolve_their_attributes_and_refuse_what_cannot_be_owned() {
    let p = Policy::parse(
        r#"
[[source]]
client = "workday"
owns = ["department", "urn:ietf:params:scim:schemas:core:2.0:User:title", "name.familyName"]

[[source]]
client = "okta"
owns = ["userName", "emails"]
on_conflict = "reject"
"#,
        "s.toml",
    )
    .expect("valid");
    let w = &p.sources["workday"];
    // An enterprise attribute written without its URN gets it; the core URN is dropped.
    assert_eq!(
        w.owns[0].path.urn.as_ref().map(|u| u.as_str()),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(w.owns[1].path.urn, None);
    assert_eq!(
        w.owns[1].written,
        "urn:ietf:params:scim:schemas:core:2.0:User:title"
    );
    assert_eq!(p.sources["okta"].on_conflict, OnConflict::Reject);

    let bad = r#"
[[source]]
client = "workday"
owns = ["id", "externalId", "emails.value", "name"]

[[source]]
client = "okta"
owns = ["name.givenName", "groups", "nickName"]

[[source]]
client = "vms"
owns = ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:NickName", "nickname"]
"#;
    let e = errors(bad);
    assert!(
        e.contains("p.toml:4:") && e.contains("id is read-only"),
        "{e}"
    );
    assert!(e.contains("externalId cannot be owned"), "{e}");
    assert!(e.contains("emails is multi-valued"), "{e}");
    // Two sources of one value: the second names the first.
    assert!(
        e.contains("p.toml:8:")
            && e.contains(
                "\"name.givenName\" is already owned by source \"workday\" (as \"name\")"
            ),
        "{e}"
    );
    assert!(e.contains("groups is read-only"), "{e}");
    assert!(
        e.contains("p.toml:12:") && e.contains("nickname\" is already owned by source \"okta\""),
        "{e}"
    );
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
    let with_ownership = TYPED.replace(
        "path = \"/scimhub/\"",
        "path = \"/scimhub/\"\nadopt = \"never\"\nmanaged_path = \"/\"\nprotected_accounts = [\"break-glass-*\"]\nowner_id = \"hub-eu\"",
    );
    Policy::parse(&with_ownership, "t.toml").expect("ownership keys");
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
    // ownership keys: spelled right, typed, consistent
    let e = errors(&TYPED.replace(
        "path = \"/scimhub/\"",
        "path = \"/scimhub/\"\nadopt = \"maybe\"",
    ));
    assert!(e.contains("unknown variant `maybe`"), "{e}");
    let e = errors(&TYPED.replace(
        "path = \"/scimhub/\"",
        "path = \"/scimhub/\"\nmanaged_path = \"/other/\"",
    ));
    assert!(e.contains("path must lie under managed_path"), "{e}");
    let e = errors(&TYPED.replace(
        "disable = \"move_to_ou\"",
        "managed_ous = [\"ou=service,dc=example,dc=com\"]\ndisable = \"move_to_ou\"",
    ));
    assert!(
        e.contains("users_dn \"ou=people,dc=example,dc=com\" is outside managed_ous"),
        "{e}"
    );
    let e = errors(&TYPED.replace(
        "disable = \"move_to_ou\"",
        "protected_acounts = []\ndisable = \"move_to_ou\"",
    ));
    assert!(e.contains("unknown field `protected_acounts`"), "{e}");
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

/// Every section's checks at once: the messages, their positions and their order (by position,
/// then in the order the sections are checked) are part of the interface.
#[test]
fn every_section_reports_in_file_order() {
    let e = errors(include_str!("testdata/every_section_wrong.toml"));
    let expected = include_str!("testdata/every_section_wrong.expected");
    assert_eq!(e, expected.trim_end(), "\n{e}");
}

const ADOPTION_KEYS: &str = r#"
[[connector]]
name = "gh"
type = "github"
settings = { org = "acme", teams = ["eng"], adopt = "never", protected_accounts = ["break-glass-*"] }
credentials = { token = { env = "GITHUB_TOKEN" } }

[[connector]]
name = "okta"
type = "okta"
credentials = { token = { env = "OKTA_TOKEN" } }
[connector.settings]
base_url = "https://acme.okta.com"
adopt = "unowned"
protected_accounts = ["admin@acme.com"]
protected_roles = ["SUPER_ADMIN", "ORG_ADMIN", "APP_ADMIN"]

[[connector]]
name = "slack"
type = "slack"
credentials = { scim_token = { env = "S" }, admin_token = { env = "A" } }
[connector.settings]
protect_admins = true
scim = { base_url = "https://api.slack.com/scim/v2", profile = "slack", adopt = "always" }
"#;

#[test]
fn github_okta_slack_adoption_keys_are_checked() {
    let p = Policy::parse(ADOPTION_KEYS, "a.toml").expect("valid");
    assert_eq!(
        p.connectors["okta"].settings["protected_roles"][2],
        "APP_ADMIN"
    );
    assert_eq!(p.connectors["gh"].settings["adopt"], "never");
    let errs = |text: &str| {
        Policy::parse(text, "a.toml")
            .expect_err("invalid")
            .to_string()
    };
    let e = errs(&ADOPTION_KEYS.replace("adopt = \"never\"", "adopt = \"sometimes\""));
    assert!(e.starts_with("a.toml:5:"), "{e}");
    assert!(e.contains("unknown variant `sometimes`"), "{e}");
    let e = errs(&ADOPTION_KEYS.replace("protected_roles =", "protected_role ="));
    assert!(e.starts_with("a.toml:16:1:"), "{e}");
    assert!(e.contains("unknown field `protected_role`"), "{e}");
    let e = errs(&ADOPTION_KEYS.replace("protect_admins = true", "protect_admins = \"yes\""));
    assert!(e.starts_with("a.toml:23:"), "{e}");
    let e = errs(&ADOPTION_KEYS.replace(", protected_accounts = [", ", protected_acounts = ["));
    assert!(e.starts_with("a.toml:5:"), "{e}");
    assert!(e.contains("unknown field `protected_acounts`"), "{e}");
}

#[test]
fn verification_defaults_overrides_and_errors() {
    let p = Policy::parse(GOOD, "good.toml").expect("valid");
    assert_eq!(p.verification.delay, Duration::minutes(15));
    assert_eq!(p.verification.after, vec!["leaver", "contractor-expiry"]);
    assert_eq!(
        p.verification.delay_for(p.connectors.get("github")),
        Duration::minutes(15)
    );

    let text = GOOD.replace(
        "name = \"github\"\ntype = \"memory\"\n",
        "name = \"github\"\ntype = \"memory\"\nverify_delay = \"1h\"\n",
    ) + "\n[verification]\ndelay = \"5m\"\nafter = [\"leaver\", \"joiner\"]\n";
    let p = Policy::parse(&text, "v.toml").expect("valid");
    assert_eq!(p.verification.after, vec!["leaver", "joiner"]);
    assert_eq!(
        p.verification.delay_for(p.connectors.get("slack")),
        Duration::minutes(5)
    );
    assert_eq!(
        p.verification.delay_for(p.connectors.get("github")),
        Duration::hours(1)
    );

    let bad = GOOD.to_string() + "\n[verification]\ndelay = \"0s\"\nafter = [\"leavers\"]\n";
    let e = errors(&bad);
    assert!(
        e.contains("p.toml:30:9: a verification delay must be above zero"),
        "{e}"
    );
    assert!(
        e.contains("p.toml:31:10: unknown event type \"leavers\""),
        "{e}"
    );
    let bad = GOOD.to_string() + "\n[verification]\nwhen = \"later\"\n";
    assert!(errors(&bad).contains("when"), "unknown keys are refused");
}

#[test]
fn leaver_required_steps_are_checked_with_lines() {
    let p = Policy::parse(
        &format!("{GOOD}\n[leaver]\nrequired = [\"revoke_sessions\", \"delete\"]\n"),
        "good.toml",
    )
    .expect("valid");
    assert!(p.leaver.requires("revoke_sessions") && p.leaver.requires("delete"));
    assert!(!p.leaver.requires("revoke_credentials"));
    assert!(Policy::parse(GOOD, "good.toml")
        .expect("valid")
        .leaver
        .required
        .is_empty());
    // GOOD is 28 lines: [leaver] is on line 29, its key on line 30.
    let e = errors(&format!(
        "{GOOD}\n[leaver]\nrequired = [\"revoke_session\", \"delete\", \"delete\"]\n"
    ));
    assert!(e.contains("p.toml:30:13:"), "{e}");
    assert!(e.contains("unknown step \"revoke_session\""), "{e}");
    assert!(e.contains("p.toml:30:41:"), "{e}");
    assert!(e.contains("\"delete\" is listed twice"), "{e}");
    let e = errors(&format!("{GOOD}\n[leaver]\nrequird = []\n"));
    assert!(e.contains("p.toml:30:1:"), "{e}");
}

#[test]
fn connector_retry_budget_default_override_and_errors() {
    let p = Policy::parse(GOOD, "good.toml").expect("valid");
    assert_eq!(
        p.connectors.get("github").and_then(|c| c.max_attempts),
        None
    );
    let with = |value: &str| {
        GOOD.replace(
            "name = \"github\"\ntype = \"memory\"\n",
            &format!("name = \"github\"\ntype = \"memory\"\nmax_attempts = {value}\n"),
        )
    };
    let p = Policy::parse(&with("2"), "b.toml").expect("valid");
    assert_eq!(
        p.connectors.get("github").and_then(|c| c.max_attempts),
        Some(2)
    );
    assert_eq!(p.connectors.get("slack").and_then(|c| c.max_attempts), None);
    let e = errors(&with("0"));
    assert!(
        e.contains("p.toml:13:16: max_attempts must be between 1 and 100"),
        "{e}"
    );
    let e = errors(&with("101"));
    assert!(
        e.contains("p.toml:13:16: max_attempts must be between 1"),
        "{e}"
    );
    let e = errors(&with("\"8\""));
    assert!(e.contains("p.toml:13:"), "{e}");
}

#[test]
fn connector_circuit_keys_override_and_errors() {
    let p = Policy::parse(GOOD, "good.toml").expect("valid");
    let gh = p.connectors.get("github").expect("github");
    assert_eq!((gh.circuit_failures, gh.circuit_probe), (None, None));
    let with = |line: &str| {
        GOOD.replace(
            "name = \"github\"\ntype = \"memory\"\n",
            &format!("name = \"github\"\ntype = \"memory\"\n{line}\n"),
        )
    };
    let p = Policy::parse(
        &with("circuit_failures = 3\ncircuit_probe = \"2m\""),
        "b.toml",
    )
    .expect("valid");
    let gh = p.connectors.get("github").expect("github");
    assert_eq!(gh.circuit_failures, Some(3));
    assert_eq!(gh.circuit_probe, Some(chrono::Duration::minutes(2)));
    let e = errors(&with("circuit_failures = 0"));
    assert!(
        e.contains("p.toml:13:20: circuit_failures must be between 1 and 100"),
        "{e}"
    );
    let e = errors(&with("circuit_probe = \"0s\""));
    assert!(
        e.contains("p.toml:13:17: circuit_probe must be between 1 second and 1 day"),
        "{e}"
    );
    let e = errors(&with("circuit_probe = \"soon\""));
    assert!(e.contains("p.toml:13:17:"), "{e}");
}

#[test]
fn incidents_renotify_ladder_is_checked_with_positions() {
    let p = Policy::parse(
        &format!("{GOOD}\n[incidents]\nrenotify = [\"30m\", \"2h\"]\n"),
        "p.toml",
    )
    .expect("policy");
    assert_eq!(
        p.incidents.renotify,
        vec![chrono::Duration::minutes(30), chrono::Duration::hours(2)]
    );
    assert_eq!(p.incidents.delay_after(1), chrono::Duration::minutes(30));
    assert_eq!(p.incidents.delay_after(5), chrono::Duration::hours(2));
    assert_eq!(
        Policy::parse(GOOD, "p.toml")
            .expect("policy")
            .incidents
            .renotify,
        vec![
            chrono::Duration::hours(1),
            chrono::Duration::hours(4),
            chrono::Duration::hours(24)
        ]
    );
    let lines = GOOD.lines().count();
    let e = errors(&format!(
        "{GOOD}\n[incidents]\nrenotify = [\"1h\", \"0s\"]\n"
    ));
    assert!(e.contains(&format!("p.toml:{}:", lines + 3)), "{e}");
    assert!(e.contains("renotify delay must be above zero"), "{e}");
    let e = errors(&format!("{GOOD}\n[incidents]\nrenotify = []\n"));
    assert!(e.contains("at least one delay"), "{e}");
}

#[test]
fn incident_chat_channels_are_checked() {
    let chat = |body: &str| format!("{GOOD}\n[[incidents.chat]]\n{body}\n");
    let p = Policy::parse(
        &chat(
            "name = \"siem\"\nformat = \"json\"\nurl = { env = \"U\" }\nsecret = { env = \"K\" }",
        ),
        "p.toml",
    )
    .expect("policy");
    assert_eq!(p.incidents.chat.len(), 1);
    assert_eq!(p.incidents.chat[0].format, ChatFormat::Json);
    let lines = GOOD.lines().count();
    let e = errors(&chat(
        "name = \"x\"\nformat = \"irc\"\nurl = { env = \"U\" }",
    ));
    assert!(e.contains(&format!("p.toml:{}:", lines + 4)), "{e}");
    assert!(e.contains("unknown chat format \"irc\""), "{e}");
    let e = errors(&chat(
        "name = \"x\"\nformat = \"json\"\nurl = { env = \"U\" }",
    ));
    assert!(e.contains("needs a signing `secret`"), "{e}");
    let e = errors(&chat(
        "name = \"x\"\nformat = \"slack\"\nurl = { env = \"U\" }\nsecret = { env = \"K\" }",
    ));
    assert!(e.contains("only json chat channels are signed"), "{e}");
    let e = errors(&format!(
        "{}\n[[incidents.chat]]\nname = \"x\"\nformat = \"teams\"\nurl = {{ env = \"U\" }}\n",
        chat("name = \"x\"\nformat = \"slack\"\nurl = { env = \"U\" }")
    ));
    assert!(e.contains("\"x\" is listed twice"), "{e}");
}

#[test]
fn drift_actions_schedules_and_errors() {
    use super::{DriftAction, DRIFT_KINDS};
    let p = Policy::parse(GOOD, "good.toml").expect("valid");
    assert_eq!(p.connectors["github"].reconcile, None);
    for k in DRIFT_KINDS {
        assert_eq!(p.drift_action("github", k), DriftAction::Report);
    }
    assert_eq!(p.drift.review_expiry, Duration::days(90));
    assert_eq!(
        p.drift.incidents,
        vec!["orphan", "departed", "entitlement_outside"]
    );

    let text = GOOD.replace(
        "name = \"github\"\ntype = \"memory\"\n",
        "name = \"github\"\ntype = \"memory\"\nreconcile = \"6h\"\n\
         drift = { orphan = \"fix\", missing_entitlement = \"review\" }\n",
    ) + "\n[drift]\norphan = \"review\"\nentitlement_outside = \"fix\"\n\
         incidents = [\"orphan\"]\nreview_expiry = \"30d\"\n";
    let p = Policy::parse(&text, "d.toml").expect("valid");
    assert_eq!(p.connectors["github"].reconcile, Some(Duration::hours(6)));
    assert_eq!(p.drift_action("github", "orphan"), DriftAction::Fix);
    assert_eq!(
        p.drift_action("github", "missing_entitlement"),
        DriftAction::Review
    );
    assert_eq!(
        p.drift_action("github", "entitlement_outside"),
        DriftAction::Fix
    );
    assert_eq!(p.drift_action("slack", "orphan"), DriftAction::Review);
    assert_eq!(
        p.drift_action("slack", "attribute_drift"),
        DriftAction::Report
    );
    assert_eq!(p.drift.incidents, vec!["orphan"]);
    assert_eq!(p.drift.review_expiry, Duration::days(30));

    let bad = GOOD.replace(
        "name = \"github\"\ntype = \"memory\"\n",
        "name = \"github\"\ntype = \"memory\"\nreconcile = \"10s\"\n\
         drift = { orphan = \"delete\" }\n",
    ) + "\n[drift]\nincidents = [\"orphans\"]\nreview_expiry = \"0s\"\n";
    let e = errors(&bad);
    let line_of = |needle: &str| {
        bad.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .expect("the line")
    };
    assert!(
        e.contains(&format!(
            "p.toml:{}:13: reconcile must be at least 1m",
            line_of("reconcile = \"10s\"")
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "p.toml:{}:20: orphan: unknown drift action \"delete\" (one of report, fix, review)",
            line_of("drift = {")
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "p.toml:{}:14: unknown drift finding kind \"orphans\"",
            line_of("incidents = [\"orphans\"]")
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "p.toml:{}:17: review_expiry must be above zero",
            line_of("review_expiry")
        )),
        "{e}"
    );
    let md = super::docs::render(&p);
    assert!(
        md.contains("| github | every 6h | fix | report | fix | report | review | report |"),
        "{md}"
    );
    assert!(md.contains("| slack | on demand | review |"), "{md}");
    assert!(
        md.contains("raise an incident: orphan. A finding a manager keeps is an exception for 30d"),
        "{md}"
    );
    let bad = GOOD.to_string() + "\n[drift]\norphan_accounts = \"fix\"\n";
    assert!(
        errors(&bad).contains("orphan_accounts"),
        "unknown keys are refused"
    );
}

#[test]
fn grants_section_sets_the_limit_and_the_approval_of_emergency_grants() {
    let p = Policy::parse(GOOD, "good.toml").expect("valid");
    assert_eq!(p.grants.max_duration, Duration::hours(72));
    assert_eq!(p.grants.approval, GrantApproval::Entitlement);
    // The level the profiles give the entitlement; security when none grants it.
    assert_eq!(
        p.grant_approval("github", &Entitlement::new("team", "eng")),
        Approval::Manager
    );
    assert_eq!(
        p.grant_approval("slack", &Entitlement::new("channel", "general")),
        Approval::None
    );
    assert_eq!(
        p.grant_approval("github", &Entitlement::new("team", "secret")),
        Approval::Security
    );
    let strict = format!(
        "{GOOD}\n[approvals]\nsecurity = [\"sec\"]\n\n[grants]\nmax_duration = \"8h\"\napproval = \"security\"\n"
    );
    let p = Policy::parse(&strict, "strict.toml").expect("valid");
    assert_eq!(p.grants.max_duration, Duration::hours(8));
    assert_eq!(
        p.grant_approval("slack", &Entitlement::new("channel", "general")),
        Approval::Security
    );
    let md = docs::render(&p);
    assert!(
        md.contains("## Emergency grants")
            && md.contains("for at most 8h; every grant waits for a security approver"),
        "{md}"
    );
    let e = errors(&format!("{GOOD}\n[grants]\napproval = \"security\"\n"));
    assert!(e.contains("[approvals] security"), "{e}");
    let e = errors(&format!("{GOOD}\n[grants]\nmax_duration = \"0s\"\n"));
    assert!(e.contains("max_duration must be above zero"), "{e}");
    let e = errors(&format!("{GOOD}\n[grants]\napproval = \"manager\"\n"));
    assert!(e.contains("unknown variant"), "{e}");
}

#[test]
fn grants_describe_their_entitlement_for_people() {
    let described = APPROVALS.replacen(
        "approval = \"owner\", owners = [",
        "approval = \"owner\", description = \"  Production admin  \", owners = [",
        1,
    );
    assert_ne!(described, APPROVALS, "the fixture has a grant with owners");
    let p = Policy::parse(&described, "a.toml").expect("valid");
    let prod = Entitlement::new("group", "prod");
    assert_eq!(
        p.entitlement_description("aws", &prod),
        Some("Production admin")
    );
    assert_eq!(
        p.entitlement_text("aws", &serde_json::to_string(&prod).expect("json")),
        "Production admin (group:prod)"
    );
    // Without a description: kind:id; unparsable: never raw JSON.
    let plain = Policy::parse(APPROVALS, "a.toml").expect("valid");
    assert_eq!(
        plain.entitlement_text("aws", &serde_json::to_string(&prod).expect("json")),
        "group:prod"
    );
    assert_eq!(
        plain.entitlement_text("aws", "{\"x\":1}"),
        "(unknown entitlement)"
    );
}
