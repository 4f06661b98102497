//! The planner's rules, one row per lifecycle case: the previous state (itself planned from a
//! document), the document now and what the guard counts, and the outcome expected, summarised
//! as strings so each row reads as what happens.

use chrono::TimeZone;
use serde_json::json;

use crate::policy::Approval;

use super::*;

/// The policy of the engine's integration tests (`tests/engine`), so both test the same rules.
const POLICY: &str = include_str!("../../../../tests/engine/policy.toml");

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap()
}

fn policy() -> Arc<Policy> {
    Arc::new(Policy::parse(POLICY, "decide-tests.toml").expect("test policy"))
}

/// The guard the tests' counts are judged by: the test policy's own.
fn test_guard() -> crate::policy::BlastRadius {
    policy().blast_radius.expect("the test policy has a guard")
}

/// A person as the HRIS sends them; `extra` is merged in.
fn person(name: &str, user_type: &str, dept: &str, title: &str, extra: Value) -> Doc {
    let mut doc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "userType": user_type,
        "title": title,
        "emails": [{"value": format!("{name}@example.com"), "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": dept,
            "manager": {"value": "u-mgr"},
        },
    });
    if let (Some(d), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        d.extend(extra);
    }
    match doc {
        Value::Object(m) => m,
        _ => unreachable!("a person is an object"),
    }
}

fn inputs<'a>(
    doc: Option<&'a Doc>,
    prev: Option<(EngineUser, BTreeMap<String, AccountRecord>)>,
) -> PlanInputs<'a> {
    let (prev, planned) = match prev {
        Some((u, p)) => (Some(u), p),
        None => (None, BTreeMap::new()),
    };
    PlanInputs {
        user_id: "u1".into(),
        doc,
        cause: Cause::Write,
        now: now(),
        policy: policy(),
        capabilities: BTreeMap::new(),
        manager: manager_of(doc, prev.as_ref()),
        prev,
        groups: Vec::new(),
        planned,
        approvals: Approvals::default(),
        approval_rows: Vec::new(),
        held_ops: false,
        overrides: Vec::new(),
        grants: Vec::new(),
        revocations: Vec::new(),
        manager_accounts: BTreeMap::new(),
        manager_email: Some("mgr@example.com".into()),
    }
}

/// Ids `id-1`, `id-2`… in the order the planner asks for them.
fn counter() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("id-{n}")
    }
}

fn run(i: &PlanInputs<'_>, extra: &Contingent) -> Decision {
    let p = project(i);
    decide(i, p, extra, &mut counter())
}

/// The engine state and planned accounts once `doc` was planned (and its operations done).
fn planned_from(doc: &Doc) -> (EngineUser, BTreeMap<String, AccountRecord>) {
    let d = run(&inputs(Some(doc), None), &Contingent::default());
    let w = d.writes.expect("writes");
    (w.user, d.outcome.plan.next)
}

/// The outcome as lines a reader can check.
#[derive(Debug, PartialEq, Default)]
struct Summary {
    event: String,
    state: String,
    ops: Vec<String>,
    overrides: Vec<String>,
    approvals: Vec<String>,
    new_approvals: Vec<String>,
    hold: String,
    audit: Vec<String>,
    timers: Vec<String>,
    notices: Vec<String>,
}

fn summary(d: &Decision) -> Summary {
    let o = &d.outcome;
    let Some(w) = &d.writes else {
        return Summary {
            event: o.event.as_str().into(),
            state: "(nothing written)".into(),
            ..Default::default()
        };
    };
    Summary {
        event: o.event.as_str().into(),
        state: w.user.state.clone(),
        ops: o
            .plan
            .ops
            .iter()
            .map(|p| format!("{} {}", p.connector, p.op.name()))
            .collect(),
        overrides: w
            .overrides
            .iter()
            .map(|o| {
                format!(
                    "{} {}:{} until {}",
                    o.kept.connector,
                    o.kept.entitlement.kind,
                    o.kept.entitlement.id,
                    o.kept.until.format("%d %H:%M")
                )
            })
            .collect(),
        approvals: w
            .approvals
            .iter()
            .map(|a| {
                let blocked = if a.blocked { " blocked" } else { "" };
                format!("{} {} {}{blocked}", a.id, a.kind, a.level)
            })
            .collect(),
        new_approvals: o.new_approvals.clone(),
        hold: match &w.hold {
            None => String::new(),
            Some(HoldDecision::Join(id)) => format!("join {id}"),
            Some(HoldDecision::Open { id, reason }) => format!("open {id}: {reason}"),
        },
        audit: w
            .audit
            .iter()
            .map(|a| format!("{} {} {}", a.actor, a.action, a.outcome))
            .collect(),
        timers: w
            .timers
            .iter()
            .map(|t| match t {
                TimerChange::Schedule(t) => {
                    let what = match &t.kind {
                        TimerKind::Verify(v) => format!("verify {}", v.connector),
                        k => k.name().to_string(),
                    };
                    format!("{what} at {}", t.due.format("%Y-%m-%d %H:%M"))
                }
                TimerChange::CancelContract => "cancel contract timers".into(),
                TimerChange::CancelOverlap => "cancel overlap timers".into(),
            })
            .collect(),
        notices: w
            .notices
            .iter()
            .map(|n| {
                let mut to = n.to.direct.clone();
                to.extend(n.to.by_name.iter().map(|u| format!("@{u}")));
                to.extend(n.to.then.iter().cloned());
                format!("{} -> {}", n.notice.kind, to.join(","))
            })
            .collect(),
    }
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

struct Case {
    name: &'static str,
    before: Option<Doc>,
    after: Option<Doc>,
    blast: Option<BlastFacts>,
    /// What else the store holds (approvals decided or pending).
    given: fn(&mut PlanInputs<'_>),
    expect: Summary,
}

fn nothing_else(_: &mut PlanInputs<'_>) {}

/// The admin grant that waits for the manager.
fn github_admin() -> Entitlement {
    policy()
        .profile("engineering")
        .and_then(|p| {
            p.grants
                .iter()
                .find_map(|g| g.entitlement.clone().filter(|e| e.kind == "org"))
        })
        .expect("the engineering profile grants an org role")
}

fn admin_request(status: &str) -> ApprovalRow {
    ApprovalRow {
        id: "a-1".into(),
        user_id: "u1".into(),
        kind: ApprovalKind::Entitlement,
        connector: Some("github".into()),
        entitlement: Some(ent_json(&github_admin())),
        level: ApprovalLevel::Manager,
        detail: json!({}),
        status: ApprovalStatus::parse(status).expect("an approval status"),
        requested: "2025-03-01T00:00:00Z".into(),
        decided: None,
        decided_by: None,
        reason: None,
        decided_by_user_id: None,
        decided_by_credential: None,
        decided_as: None,
    }
}

/// A leaver's operations: per connector, disable first, then sessions, credentials and grants.
/// An emergency grant in force until `expires`.
fn emergency(connector: &str, kind: &str, id: &str, expires: DateTime<Utc>) -> EmergencyGrant {
    EmergencyGrant {
        id: "g1".into(),
        connector: connector.into(),
        entitlement: Entitlement::new(kind, id),
        expires,
    }
}

fn leaver_ops() -> Vec<String> {
    lines(&[
        "github set_enabled",
        "github revoke_sessions",
        "github revoke_credentials",
        "github revoke",
        "slack set_enabled",
        "slack revoke_sessions",
        "slack revoke_credentials",
        "slack revoke",
    ])
}

fn engineer() -> Doc {
    person("ann", "Employee", "Engineering", "Developer", json!({}))
}

fn cases() -> Vec<Case> {
    let mut left = engineer();
    left.insert("active".into(), json!(false));
    let contractor = person(
        "cora",
        "Contractor",
        "Engineering",
        "Consultant",
        json!({"urn:example:acme:2.0:User": {"contractEnd": "2025-04-30", "sponsor": "sp@example.com"}}),
    );
    let later = person(
        "nina",
        "Employee",
        "Sales",
        "Rep",
        json!({"urn:example:acme:2.0:User": {"startDate": "2025-03-10"}}),
    );
    let quiet = BlastFacts {
        guard: test_guard(),
        recent: 0,
        population: 20,
        open_hold: None,
    };
    let burst = BlastFacts {
        guard: test_guard(),
        recent: 3,
        population: 13,
        open_hold: None,
    };
    vec![
        Case {
            name: "joiner: accounts and grants; the admin grant waits for the manager",
            before: None,
            after: Some(engineer()),
            blast: None,
            given: nothing_else,
            expect: Summary {
                event: "joiner".into(),
                state: "active".into(),
                ops: lines(&[
                    "github create_or_adopt",
                    "github grant",
                    "slack create_or_adopt",
                    "slack grant",
                ]),
                approvals: lines(&["id-1 entitlement manager"]),
                new_approvals: lines(&["id-1"]),
                audit: lines(&["scim plan queued"]),
                notices: lines(&["approval_request -> mgr@example.com"]),
                ..Default::default()
            },
        },
        Case {
            name: "mover: engineering access kept for the 24h overlap, summary to manager and security",
            before: Some(engineer()),
            after: Some(person("ann", "Employee", "Sales", "Rep", json!({}))),
            blast: None,
            given: nothing_else,
            expect: Summary {
                event: "mover".into(),
                state: "active".into(),
                ops: lines(&["github update", "slack update", "slack grant"]),
                overrides: lines(&["github team:eng until 04 09:00"]),
                audit: lines(&["scim plan queued"]),
                timers: lines(&["overlap_end at 2025-03-04 09:00"]),
                notices: lines(&[
                    "mover_summary -> mgr@example.com",
                    "mover_summary -> security@example.com",
                ]),
                ..Default::default()
            },
        },
        Case {
            name: "leaver: access removed, below the blast-radius share",
            before: Some(engineer()),
            after: Some(left.clone()),
            blast: Some(quiet),
            given: nothing_else,
            expect: Summary {
                event: "leaver".into(),
                state: "left".into(),
                ops: leaver_ops(),
                audit: lines(&["scim plan queued"]),
                timers: lines(&[
                    "cancel overlap timers",
                    "verify github at 2025-03-03 09:15",
                    "verify slack at 2025-03-03 09:15",
                ]),
                ..Default::default()
            },
        },
        Case {
            name: "leaver in a burst: a new hold, security told",
            before: Some(engineer()),
            after: Some(left.clone()),
            blast: Some(burst.clone()),
            given: nothing_else,
            expect: Summary {
                event: "leaver".into(),
                state: "left".into(),
                ops: leaver_ops(),
                hold: "open id-1: more than 30% of 13 users would lose access within 10m".into(),
                audit: lines(&["scim plan held"]),
                notices: lines(&["blast_radius_hold -> security@example.com"]),
                timers: lines(&[
                    "cancel overlap timers",
                    "verify github at 2025-03-03 09:15",
                    "verify slack at 2025-03-03 09:15",
                ]),
                ..Default::default()
            },
        },
        Case {
            name: "leaver in a burst with a hold pending: joins it, no second notice",
            before: Some(engineer()),
            after: Some(left.clone()),
            blast: Some(BlastFacts {
        guard: test_guard(),
                open_hold: Some("h-1".into()),
                ..burst
            }),
            given: nothing_else,
            expect: Summary {
                event: "leaver".into(),
                state: "left".into(),
                ops: leaver_ops(),
                hold: "join h-1".into(),
                audit: lines(&["scim plan held"]),
                timers: lines(&[
                    "cancel overlap timers",
                    "verify github at 2025-03-03 09:15",
                    "verify slack at 2025-03-03 09:15",
                ]),
                ..Default::default()
            },
        },
        Case {
            name: "rehire: a leaver comes back",
            before: Some(left.clone()),
            after: Some(engineer()),
            blast: None,
            given: nothing_else,
            expect: Summary {
                event: "rehire".into(),
                state: "active".into(),
                ops: lines(&[
                    "github create_or_adopt",
                    "github grant",
                    "slack create_or_adopt",
                    "slack grant",
                ]),
                approvals: lines(&["id-1 entitlement manager"]),
                new_approvals: lines(&["id-1"]),
                audit: lines(&["scim plan queued"]),
                notices: lines(&["approval_request -> mgr@example.com"]),
                ..Default::default()
            },
        },
        Case {
            name: "contractor with an end date: contract timers and reminders",
            before: None,
            after: Some(contractor),
            blast: None,
            given: nothing_else,
            expect: Summary {
                event: "joiner".into(),
                state: "active".into(),
                ops: lines(&["slack create_or_adopt", "slack grant"]),
                audit: lines(&["scim plan queued"]),
                timers: lines(&[
                    "cancel contract timers",
                    "contract_end at 2025-04-30 00:00",
                    "reminder at 2025-03-31 00:00",
                    "reminder at 2025-04-23 00:00",
                    "reminder at 2025-04-29 00:00",
                ]),
                ..Default::default()
            },
        },
        Case {
            name: "start date ahead: nothing yet, a start timer",
            before: None,
            after: Some(later),
            blast: None,
            given: nothing_else,
            expect: Summary {
                event: "joiner".into(),
                state: "not_started".into(),
                audit: lines(&["scim plan queued"]),
                timers: lines(&["start at 2025-03-10 00:00"]),
                ..Default::default()
            },
        },
        Case {
            name: "SoD conflict: the blocked role is withheld and recorded, nobody is asked",
            before: None,
            after: Some(person(
                "fred",
                "Employee",
                "Finance",
                "Payable Approver",
                json!({}),
            )),
            blast: None,
            given: nothing_else,
            expect: Summary {
                event: "joiner".into(),
                state: "active".into(),
                ops: lines(&[
                    "erp create_or_adopt",
                    "erp grant",
                    "slack create_or_adopt",
                    "slack grant",
                ]),
                approvals: lines(&["id-1 sod security blocked"]),
                audit: lines(&["engine sod_violation blocked", "scim plan queued"]),
                ..Default::default()
            },
        },
        Case {
            name: "mover who loses a grant in a burst: held like a leaver (the guard counts revocations)",
            before: Some(person("sam", "Employee", "Sales", "Rep", json!({}))),
            after: Some(engineer()),
            blast: Some(burst.clone()),
            given: nothing_else,
            expect: Summary {
                event: "mover".into(),
                state: "active".into(),
                ops: lines(&[
                    "github create_or_adopt",
                    "github grant",
                    "slack update",
                    "slack revoke",
                ]),
                approvals: lines(&["id-1 entitlement manager"]),
                new_approvals: lines(&["id-1"]),
                hold: "open id-2: more than 30% of 13 users would lose access within 10m".into(),
                audit: lines(&["scim plan held"]),
                notices: lines(&[
                    "blast_radius_hold -> security@example.com",
                    "approval_request -> mgr@example.com",
                    "mover_summary -> mgr@example.com",
                    "mover_summary -> security@example.com",
                ]),
                ..Default::default()
            },
        },
        Case {
            name: "rehire with an overlap override from before leaving: the new role only",
            before: Some(left.clone()),
            after: Some(person("ann", "Employee", "Sales", "Rep", json!({}))),
            blast: None,
            given: |i| {
                i.overrides.push(Override {
                    connector: "github".into(),
                    entitlement: Entitlement {
                        kind: "team".into(),
                        id: "eng".into(),
                        role: None,
                    },
                    until: i.now + Duration::hours(12),
                })
            },
            expect: Summary {
                event: "rehire".into(),
                state: "active".into(),
                // Sales and the birthright channel; not the github team the override kept.
                ops: lines(&["slack create_or_adopt", "slack grant", "slack grant"]),
                audit: lines(&["scim plan queued"]),
                ..Default::default()
            },
        },
        Case {
            name: "a request already pending is not asked again",
            before: None,
            after: Some(engineer()),
            blast: None,
            given: |i| i.approval_rows.push(admin_request("pending")),
            expect: Summary {
                event: "joiner".into(),
                state: "active".into(),
                ops: lines(&[
                    "github create_or_adopt",
                    "github grant",
                    "slack create_or_adopt",
                    "slack grant",
                ]),
                audit: lines(&["scim plan queued"]),
                ..Default::default()
            },
        },
        Case {
            name: "an approved grant is planned like any other",
            before: None,
            after: Some(engineer()),
            blast: None,
            given: |i| {
                i.approval_rows.push(admin_request("approved"));
                i.approvals.approved.insert((
                    "github".into(),
                    github_admin(),
                    crate::policy::Approval::Manager,
                ));
            },
            expect: Summary {
                event: "joiner".into(),
                state: "active".into(),
                ops: lines(&[
                    "github create_or_adopt",
                    "github grant",
                    "github grant",
                    "slack create_or_adopt",
                    "slack grant",
                ]),
                audit: lines(&["scim plan queued"]),
                ..Default::default()
            },
        },
        Case {
            name: "an emergency grant in force is provisioned like a role's grant",
            before: None,
            after: Some(person("cy", "Employee", "Sales", "Rep", json!({}))),
            blast: None,
            given: |i| i.grants.push(emergency("github", "team", "eng", i.now + Duration::hours(4))),
            expect: Summary {
                event: "joiner".into(),
                state: "active".into(),
                ops: lines(&[
                    "github create_or_adopt",
                    "github grant",
                    "slack create_or_adopt",
                    "slack grant",
                    "slack grant",
                ]),
                audit: lines(&["scim plan queued"]),
                ..Default::default()
            },
        },
        Case {
            name: "an emergency grant at its end gives nothing",
            before: None,
            after: Some(person("cy", "Employee", "Sales", "Rep", json!({}))),
            blast: None,
            given: |i| i.grants.push(emergency("github", "team", "eng", i.now)),
            expect: Summary {
                event: "joiner".into(),
                state: "active".into(),
                ops: lines(&["slack create_or_adopt", "slack grant", "slack grant"]),
                audit: lines(&["scim plan queued"]),
                ..Default::default()
            },
        },
        Case {
            name: "an emergency grant breaking a SoD rule is withheld, never the role's side",
            before: None,
            after: Some(person("eve", "Employee", "Finance", "Payable clerk", json!({}))),
            blast: None,
            given: |i| i.grants.push(emergency("erp", "role", "approve", i.now + Duration::hours(4))),
            expect: Summary {
                event: "joiner".into(),
                state: "active".into(),
                ops: lines(&[
                    "erp create_or_adopt",
                    "erp grant",
                    "slack create_or_adopt",
                    "slack grant",
                ]),
                approvals: lines(&["id-1 sod security blocked"]),
                audit: lines(&["engine sod_violation blocked", "scim plan queued"]),
                ..Default::default()
            },
        },
        Case {
            name: "an emergency grant of someone who left gives nothing",
            before: None,
            after: Some(person("gone", "Employee", "Sales", "Rep", json!({"active": false}))),
            blast: None,
            given: |i| i.grants.push(emergency("github", "team", "eng", i.now + Duration::hours(4))),
            expect: Summary {
                event: "update".into(),
                state: "left".into(),
                ..Default::default()
            },
        },
        Case {
            name: "deleting a user the engine never planned writes nothing",
            before: None,
            after: None,
            blast: None,
            given: nothing_else,
            expect: Summary {
                event: "update".into(),
                state: "(nothing written)".into(),
                ..Default::default()
            },
        },
    ]
}

#[test]
fn planning_decides_each_lifecycle_case() {
    let mut failures = Vec::new();
    for case in cases() {
        let prev = case.before.as_ref().map(planned_from);
        let mut i = inputs(case.after.as_ref(), prev);
        (case.given)(&mut i);
        let extra = Contingent {
            blast: case.blast.clone(),
            ..Default::default()
        };
        let got = summary(&run(&i, &extra));
        if got != case.expect {
            failures.push(format!(
                "{}:\n  expected {:#?}\n  got {:#?}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_blast_radius_check_is_needed_only_for_deprovisioning_that_does_something() {
    let joiner = project(&inputs(Some(&engineer()), None));
    assert!(!joiner.needs_blast_check());
    let mut left = engineer();
    left.insert("active".into(), json!(false));
    let leaver = project(&inputs(Some(&left), Some(planned_from(&engineer()))));
    assert!(leaver.needs_blast_check());
    let mover = project(&inputs(
        Some(&person("ann", "Employee", "Sales", "Rep", json!({}))),
        Some(planned_from(&engineer())),
    ));
    assert!(mover.needs_links());
}

/// The test policy with an `sre` profile granting the org admin role behind security (the
/// engineering profile grants it behind the manager).
fn sre_policy() -> Arc<Policy> {
    let text = format!(
        "{POLICY}\n[[profile]]\nname = \"sre\"\nmatch = 'department eq \"Engineering\" and title co \"Reliability\"'\n\
         grants = [{{ connector = \"github\", kind = \"org\", id = \"acme\", role = \"admin\", approval = \"security\" }}]\n\
         \n[approvals]\nsecurity = [\"sam\"]\n"
    );
    Arc::new(Policy::parse(&text, "levels.toml").expect("policy with sre"))
}

/// An engineer the `sre` profile matches.
fn sre() -> Doc {
    person(
        "ann",
        "Employee",
        "Engineering",
        "Site Reliability Engineer",
        json!({}),
    )
}

/// Two profiles grant the same entitlement, one behind the manager and one behind security:
/// only an approval at the stricter level (or by security) grants it, to a joiner and to a
/// mover alike, and a pending request at the weaker level does not stand in for it.
#[test]
fn an_approval_counts_only_at_the_level_the_policy_asks() {
    let (strict, sre) = (sre_policy(), sre());
    let with = |doc: &Doc, level: Option<Approval>, rows: Vec<ApprovalRow>| {
        let mut i = inputs(Some(doc), None);
        i.policy = strict.clone();
        if let Some(l) = level {
            i.approvals
                .approved
                .insert(("github".into(), github_admin(), l));
        }
        i.approval_rows = rows;
        let p = project(&i);
        let granted = p
            .desired
            .accounts
            .get("github")
            .is_some_and(|a| a.entitlements.contains(&github_admin()));
        let asked: Vec<String> = p
            .desired
            .needs_approval
            .iter()
            .map(|n| format!("{} {}", n.level.as_str(), n.profile))
            .collect();
        let d = decide(&i, p, &Contingent::default(), &mut counter());
        let new: Vec<String> = d
            .writes
            .map(|w| {
                w.approvals
                    .iter()
                    .map(|r| r.level.as_str().to_string())
                    .collect()
            })
            .unwrap_or_default();
        (granted, asked, new)
    };
    // One request, at the stricter level, named after the profile that asks it.
    assert_eq!(
        with(&sre, None, vec![]),
        (
            false,
            vec!["security sre".to_string()],
            vec!["security".to_string()]
        )
    );
    // The manager's approval does not grant what security must approve...
    let (granted, asked, _) = with(&sre, Some(Approval::Manager), vec![]);
    assert!(
        !granted,
        "a manager's approval granted a security-level entitlement"
    );
    assert_eq!(asked, vec!["security sre".to_string()]);
    // ...security's does; and security's approval covers the manager's level too.
    assert!(with(&sre, Some(Approval::Security), vec![]).0);
    assert!(with(&engineer(), Some(Approval::Security), vec![]).0);
    assert!(with(&engineer(), Some(Approval::Manager), vec![]).0);
    // An owner's approval covers the manager's level, not security's.
    assert!(with(&engineer(), Some(Approval::Owner), vec![]).0);
    assert!(!with(&sre, Some(Approval::Owner), vec![]).0);
    // A mover under the stricter profile whose manager-level request is still pending is asked
    // again, at security.
    let (_, _, new) = with(&sre, None, vec![admin_request("pending")]);
    assert_eq!(new, vec!["security".to_string()]);
}

/// What a plan of `after` (from `before`, with `rows` on record and `approved` decided) ends,
/// as `id was: reason` lines, and the new requests' levels; `blast` as the guard counts.
fn ended_and_asked(
    policy: Option<Arc<Policy>>,
    before: &Doc,
    after: &Doc,
    rows: Vec<ApprovalRow>,
    extra: Contingent,
) -> (Vec<String>, Vec<String>) {
    ended_and_asked_with(policy, before, after, rows, extra, |_| {})
}

/// [`ended_and_asked`] with `given` applied to both plans' inputs (grants, held operations).
/// What `rows` approved was approved before the first plan too, so it is planned (held).
fn ended_and_asked_with(
    policy: Option<Arc<Policy>>,
    before: &Doc,
    after: &Doc,
    rows: Vec<ApprovalRow>,
    extra: Contingent,
    given: impl Fn(&mut PlanInputs<'_>),
) -> (Vec<String>, Vec<String>) {
    let decided = |i: &mut PlanInputs<'_>| {
        if let Some(p) = &policy {
            i.policy = p.clone();
        }
        for r in &rows {
            if r.status == ApprovalStatus::Approved && r.kind == ApprovalKind::Entitlement {
                let e: Entitlement = serde_json::from_str(r.entitlement.as_deref().unwrap_or(""))
                    .expect("an entitlement");
                i.approvals.approved.insert((
                    r.connector.clone().unwrap_or_default(),
                    e,
                    policy_level(r.level),
                ));
            }
            if r.status == ApprovalStatus::Approved && r.kind == ApprovalKind::Sod {
                i.approvals
                    .sod_approved
                    .insert(r.entitlement.clone().unwrap_or_default());
            }
        }
        i.approval_rows = rows.clone();
        given(i);
    };
    let mut prev = inputs(Some(before), None);
    decided(&mut prev);
    let first = run(&prev, &Contingent::default());
    let planned = first.outcome.plan.next.clone();
    let user = first.writes.expect("writes").user;
    let mut i = inputs(Some(after), Some((user, planned)));
    decided(&mut i);
    let decision = run(&i, &extra);
    let w = decision.writes.expect("writes");
    assert_eq!(
        decision.outcome.ended_approvals,
        w.ended_requests
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>(),
        "the outcome (what simulate shows) names what ends"
    );
    assert!(
        !w.audit.iter().any(|a| a.action == "approval_ended"),
        "an ended request is audited only once it ended (commit)"
    );
    assert!(w.ended_requests.iter().all(
        |r| r.audit.action == "approval_ended" && r.audit.detail["approval_id"] == json!(r.id)
    ));
    let ended: Vec<String> = w
        .ended_requests
        .iter()
        .map(|r| format!("{} {}: {}", r.id, r.was, r.reason))
        .collect();
    let asked = w
        .approvals
        .iter()
        .map(|a| format!("{} {}", a.kind, a.level))
        .collect();
    (ended, asked)
}

/// The test policy without the engineering profile's overlap: a move revokes at once.
fn without_overlap() -> Arc<Policy> {
    let text = POLICY.replace("overlap = \"24h\"\n", "");
    assert_ne!(text, POLICY, "the test policy's overlap changed");
    Arc::new(Policy::parse(&text, "no-overlap.toml").expect("policy"))
}

/// An approval belongs to the role it was asked for: once a mover's access from it goes, the
/// approval goes too, so a return asks again rather than restoring the access unasked; while
/// the old profile's overlap keeps the access, the approval stays; staying in the role keeps it.
#[test]
fn a_mover_out_of_the_role_ends_its_approvals() {
    let sales = person("ann", "Employee", "Sales", "Rep", json!({}));
    let pending_too = || {
        vec![admin_request("approved"), {
            let mut other = admin_request("pending");
            other.id = "a-2".into();
            other
        }]
    };
    let (ended, asked) = ended_and_asked(
        Some(without_overlap()),
        &engineer(),
        &sales,
        pending_too(),
        Contingent::default(),
    );
    assert_eq!(
        ended,
        lines(&[
            "a-1 approved: no profile the user matches grants it",
            "a-2 pending: no profile the user matches grants it",
        ])
    );
    assert!(asked.is_empty(), "{asked:?}");
    // Engineering keeps its access for a 24h overlap: the approval stays while it does.
    let (ended, _) = ended_and_asked(
        None,
        &engineer(),
        &sales,
        pending_too(),
        Contingent::default(),
    );
    assert_eq!(
        ended,
        lines(&["a-2 pending: no profile the user matches grants it"])
    );
    // A title change inside the role keeps the approval, and asks nothing.
    let senior = person(
        "ann",
        "Employee",
        "Engineering",
        "Senior Developer",
        json!({}),
    );
    let (ended, asked) = ended_and_asked(
        None,
        &engineer(),
        &senior,
        vec![admin_request("approved")],
        Contingent::default(),
    );
    assert!(ended.is_empty() && asked.is_empty(), "{ended:?} {asked:?}");
    // A rejected request stands (the role still asks it; it is not asked again).
    let (ended, asked) = ended_and_asked(
        None,
        &engineer(),
        &sales,
        vec![admin_request("rejected")],
        Contingent::default(),
    );
    assert!(ended.is_empty() && asked.is_empty(), "{ended:?} {asked:?}");
    // While an earlier plan's operations wait behind a hold, nothing ends either.
    let (ended, _) = ended_and_asked_with(
        Some(without_overlap()),
        &engineer(),
        &sales,
        vec![admin_request("approved")],
        Contingent::default(),
        |i| i.held_ops = true,
    );
    assert!(ended.is_empty(), "{ended:?}");
}

/// A move the blast-radius guard holds, or one staged with a group change, may be a bogus feed
/// that will be reverted: nothing ends until a plan goes ahead.
#[test]
fn a_held_or_staged_move_ends_no_approval() {
    let sales = person("ann", "Employee", "Sales", "Rep", json!({}));
    // Without the overlap the move revokes at once, which the guard counts.
    let no_overlap = without_overlap();
    let burst = Contingent {
        blast: Some(BlastFacts {
            guard: test_guard(),
            recent: 3,
            population: 13,
            open_hold: None,
        }),
        ..Contingent::default()
    };
    let quiet = Contingent {
        blast: Some(BlastFacts {
            guard: test_guard(),
            recent: 0,
            population: 20,
            open_hold: None,
        }),
        ..Contingent::default()
    };
    let staged = Contingent {
        stage: Some("stage-1".into()),
        ..Contingent::default()
    };
    let approved = || vec![admin_request("approved")];
    let ended = |p: Option<Arc<Policy>>, extra: Contingent| {
        ended_and_asked(p, &engineer(), &sales, approved(), extra).0
    };
    assert!(ended(Some(no_overlap.clone()), burst).is_empty());
    assert!(ended(None, staged).is_empty());
    // The same move below the guard's share ends it (so the held case above is the hold's).
    assert_eq!(ended(Some(no_overlap), quiet).len(), 1);
}

/// Under a profile that asks security for what the manager approved, the manager's approval and
/// a pending manager-level request both end, and security is asked.
#[test]
fn a_stricter_role_ends_the_weaker_approval_and_asks_again() {
    let (strict, sre) = (sre_policy(), sre());
    for (status, why) in [
        (
            "approved",
            "a-1 approved: the user's role now asks a stricter approval for it",
        ),
        (
            "pending",
            "a-1 pending: the user's role no longer asks this approval",
        ),
    ] {
        let (ended, asked) = ended_and_asked(
            Some(strict.clone()),
            &engineer(),
            &sre,
            vec![admin_request(status)],
            Contingent::default(),
        );
        assert_eq!(ended, lines(&[why]));
        assert_eq!(asked, lines(&["entitlement security"]));
    }
    // Security's approval covers the engineer's manager level: a move back keeps it.
    let mut by_security = admin_request("approved");
    by_security.level = ApprovalLevel::Security;
    let (ended, asked) = ended_and_asked(
        Some(strict),
        &sre,
        &engineer(),
        vec![by_security],
        Contingent::default(),
    );
    assert!(ended.is_empty() && asked.is_empty(), "{ended:?} {asked:?}");
}

/// An SoD exception holds while the user holds both sides; a move to one side ends it.
#[test]
fn an_sod_exception_ends_when_the_rule_no_longer_applies() {
    let text = POLICY.replace(
        "b = { connector = \"erp\", kind = \"role\", id = \"approve\" }\naction = \"block\"",
        "b = { connector = \"erp\", kind = \"role\", id = \"approve\" }\naction = \"approval\"",
    ) + "\n[approvals]\nsecurity = [\"sam\"]\n";
    assert_ne!(text, POLICY, "the test policy's SoD rule changed");
    let p = Arc::new(Policy::parse(&text, "sod.toml").expect("policy"));
    let both = person("fay", "Employee", "Finance", "Payable Approver", json!({}));
    let clerk = person("fay", "Employee", "Finance", "Payable Clerk", json!({}));
    let exception = |status: &str| {
        let mut r = admin_request(status);
        r.kind = ApprovalKind::Sod;
        r.connector = Some("erp".into());
        r.entitlement = Some("pay-and-approve".into());
        r.level = ApprovalLevel::Security;
        r
    };
    let (ended, _) = ended_and_asked(
        Some(p.clone()),
        &both,
        &both,
        vec![exception("approved")],
        Contingent::default(),
    );
    assert!(ended.is_empty(), "{ended:?}");
    let (ended, asked) = ended_and_asked(
        Some(p.clone()),
        &both,
        &clerk,
        vec![exception("approved")],
        Contingent::default(),
    );
    assert_eq!(
        ended,
        lines(&["a-1 approved: the user no longer holds both sides of the rule"])
    );
    assert!(asked.is_empty(), "{asked:?}");
    // An emergency grant of the other side meets the rule too: its exception, approved or
    // pending, stays (ending it would withhold the grant again and ask again, in a loop).
    let grant = |i: &mut PlanInputs<'_>| {
        i.grants.push(emergency(
            "erp",
            "role",
            "approve",
            i.now + Duration::hours(4),
        ))
    };
    for status in ["approved", "pending"] {
        let (ended, asked) = ended_and_asked_with(
            Some(p.clone()),
            &clerk,
            &clerk,
            vec![exception(status)],
            Contingent::default(),
            grant,
        );
        assert!(
            ended.is_empty() && asked.is_empty(),
            "{status}: {ended:?} {asked:?}"
        );
    }
    // Two rules sharing a side: the first one's pending exception withholds `approve`, and the
    // second rule (approve with badge), whose exception is approved, still applies.
    let chained = Arc::new(
        Policy::parse(
            &format!(
                "{text}\n[[sod]]\nname = \"approve-and-badge\"\n\
                 a = {{ connector = \"erp\", kind = \"role\", id = \"approve\" }}\n\
                 b = {{ connector = \"erp\", kind = \"role\", id = \"badge\" }}\n\
                 action = \"approval\"\n"
            ),
            "chained.toml",
        )
        .expect("policy"),
    );
    let mut second = exception("approved");
    second.id = "a-2".into();
    second.entitlement = Some("approve-and-badge".into());
    let (ended, _) = ended_and_asked_with(
        Some(chained),
        &both,
        &both,
        vec![exception("pending"), second],
        Contingent::default(),
        |i| i.groups = vec![("g-badge".into(), Some("Badge".into()))],
    );
    assert!(ended.is_empty(), "{ended:?}");
}

/// One-click links go to a person's own address only while a `[[source]]` owns `emails`:
/// otherwise any scim:write client could set an approver's address to its own. The request is
/// still mailed, without links.
#[test]
fn approval_links_need_an_owned_email() {
    let with_links = format!("{POLICY}link_base_url = \"http://hub.test\"\n");
    let unowned = with_links.replace(", \"emails\"]", "]");
    assert_ne!(unowned, with_links, "the test policy's source changed");
    let ann = engineer();
    let bodies = |text: &str| {
        let mut i = inputs(Some(&ann), None);
        i.policy = Arc::new(Policy::parse(text, "links.toml").expect("policy"));
        let extra = Contingent {
            link_key: Some(b"link-test-key".to_vec()),
            ..Contingent::default()
        };
        run(&i, &extra)
            .writes
            .expect("writes")
            .notices
            .iter()
            .filter(|n| n.notice.kind == "approval_request")
            .map(|n| n.notice.body.clone())
            .collect::<Vec<_>>()
    };
    let linked = bodies(&with_links);
    assert!(linked.iter().any(|b| b.contains("/links/")), "{linked:?}");
    let plain = bodies(&unowned);
    assert!(!plain.is_empty(), "the request is still mailed");
    assert!(plain.iter().all(|b| !b.contains("/links/")), "{plain:?}");
}

/// With `on_leave = "delete"`, a leaver's records go to the manager's account before the
/// delete. Without one (no manager a source vouches for, or none with an account there) the
/// account is kept disabled and a person is told; a later plan that finds the manager's
/// account hands the records over, then deletes.
#[test]
fn a_leavers_records_go_to_the_manager_or_the_account_stays() {
    use connectors::{Capabilities, Capability as C};
    let github = "name = \"github\"\ntype = \"memory\"\n";
    assert!(POLICY.contains(github));
    let text = POLICY.replace(github, &format!("{github}on_leave = \"delete\"\n"));
    let deleting = Arc::new(Policy::parse(&text, "decide-tests.toml").expect("policy"));
    let mut left = engineer();
    left.insert("active".into(), json!(false));
    // The leaver planned from `prev`, the manager's github account known or not, and github
    // able to do `caps` (everything when `None`); `raised`: the connectors a `records_kept`
    // incident was raised for before.
    let plan_after = |prev: (EngineUser, BTreeMap<String, AccountRecord>),
                      manager: bool,
                      caps: Option<Vec<C>>,
                      raised: &[&str]|
     -> Decision {
        let mut i = inputs(Some(&left), Some(prev));
        i.policy = deleting.clone();
        if manager {
            i.manager_accounts
                .insert("github".into(), AccountRef::new("mgr"));
        }
        if let Some(operations) = caps {
            let entitlement_kinds = Vec::new();
            let caps = Capabilities {
                operations,
                entitlement_kinds,
            };
            i.capabilities.insert("github".into(), caps);
        }
        let extra = Contingent {
            records_kept_raised: raised.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        let projection = project(&i);
        assert_eq!(
            projection.keeps_a_disabled_account(&i.planned),
            i.planned.get("github").is_some_and(|r| !r.enabled)
                && !projection.plan.kept_for_records.is_empty()
        );
        run(&i, &extra)
    };
    let plan = |prev, manager, caps| plan_after(prev, manager, caps, &[]);
    let github_ops = |d: &Decision| -> Vec<String> {
        summary(d)
            .ops
            .into_iter()
            .filter(|o| o.starts_with("github"))
            .collect()
    };
    let records_kept = |d: &Decision| -> usize {
        let w = d.writes.as_ref().expect("writes");
        w.incidents
            .iter()
            .filter(|i| i.kind == "records_kept")
            .count()
    };
    let disabled = [
        "github set_enabled",
        "github revoke_sessions",
        "github revoke_credentials",
    ];

    let d = plan(planned_from(&engineer()), false, None);
    let mut kept = disabled.to_vec();
    kept.push("github revoke");
    assert_eq!(github_ops(&d), lines(&kept));
    assert_eq!(
        d.outcome.plan.kept_for_records,
        vec![("github".to_string(), "ann".to_string())]
    );
    assert_eq!(records_kept(&d), 1);

    // The next plan: still nobody, nothing more (no second incident, one was raised); then
    // the manager's account is known, and the records move before the delete.
    let after = (d.writes.expect("writes").user, d.outcome.plan.next);
    let d = plan_after(after.clone(), false, None, &["github"]);
    assert!(github_ops(&d).is_empty(), "{:?}", github_ops(&d));
    assert_eq!(
        d.outcome.plan.kept_for_records,
        vec![("github".to_string(), "ann".to_string())]
    );
    assert_eq!(records_kept(&d), 0);
    // An account disabled before the connector came to delete leavers' accounts (no incident
    // was ever raised for it) is kept and reported, once: another connector's incident does
    // not count.
    let d = plan_after(after.clone(), false, None, &["slack"]);
    assert!(github_ops(&d).is_empty(), "{:?}", github_ops(&d));
    assert_eq!(records_kept(&d), 1);
    // Rehired with a start date still ahead: the kept account is neither deleted nor handed
    // over before the start decides (with a manager or without).
    let rehired = person(
        "ann",
        "Employee",
        "Engineering",
        "Developer",
        json!({"urn:example:acme:2.0:User": {"startDate": "2025-03-10"}}),
    );
    let back_as =
        |doc: &Doc, prev: (EngineUser, BTreeMap<String, AccountRecord>), manager: bool| {
            let mut i = inputs(Some(doc), Some(prev));
            i.policy = deleting.clone();
            if manager {
                i.manager_accounts
                    .insert("github".into(), AccountRef::new("mgr"));
            }
            let extra = Contingent {
                records_kept_raised: ["github".to_string()].into(),
                ..Default::default()
            };
            run(&i, &extra)
        };
    let back = |prev, manager| back_as(&rehired, prev, manager);
    for manager in [false, true] {
        let d = back(after.clone(), manager);
        assert_eq!(d.outcome.desired.lifecycle.state_name(), "not_started");
        assert!(github_ops(&d).is_empty(), "{:?}", github_ops(&d));
        assert_eq!(records_kept(&d), 0);
    }
    // Someone active whose start date moves ahead loses access until then, but not the
    // account.
    let d = back(planned_from(&engineer()), false);
    let mut stripped = disabled.to_vec();
    stripped.push("github revoke");
    assert_eq!(github_ops(&d), lines(&stripped));
    // Rehired, started, into a role with no github account: the kept account still holds
    // records nobody took, so it stays (no second incident) until a manager's account can take
    // them; then they move before the delete.
    let in_sales = person("ann", "Employee", "Sales", "Account executive", json!({}));
    let waited = back(after.clone(), false);
    let waited = (
        waited.writes.expect("writes").user,
        waited.outcome.plan.next,
    );
    let mut still = None;
    // Straight back, or after waiting for a start date (which kept the account as it was).
    for (prev, event) in [
        (after.clone(), EventKind::Rehire),
        (waited, EventKind::Joiner),
    ] {
        let d = back_as(&in_sales, prev, false);
        assert_eq!(d.outcome.event, event);
        assert!(github_ops(&d).is_empty(), "{:?}", github_ops(&d));
        assert_eq!(
            d.outcome.plan.kept_for_records,
            vec![("github".to_string(), "ann".to_string())]
        );
        assert!(d.outcome.plan.next["github"].kept_for_records);
        assert_eq!(records_kept(&d), 0);
        still = Some((d.writes.expect("writes").user, d.outcome.plan.next));
    }
    let still = still.expect("planned");
    // Rehired into a role with a github account: it is theirs again and no longer kept (a
    // later move out of that role treats it like anyone's, with no hand-over).
    let d = back_as(&engineer(), after.clone(), false);
    assert!(d.outcome.plan.next["github"].enabled);
    assert!(!d.outcome.plan.next["github"].kept_for_records);
    let d = back_as(&in_sales, still, true);
    assert_eq!(
        github_ops(&d),
        lines(&["github transfer_ownership", "github delete"])
    );
    assert!(!d.outcome.plan.next["github"].kept_for_records);
    let d = plan(after, true, None);
    assert_eq!(
        github_ops(&d),
        lines(&["github transfer_ownership", "github delete"])
    );
    assert_eq!(records_kept(&d), 0);

    // With the manager's account from the start: disable, hand over, delete (which takes the
    // team with it).
    let d = plan(planned_from(&engineer()), true, None);
    let mut handed = disabled.to_vec();
    handed.extend(["github transfer_ownership", "github delete"]);
    assert_eq!(github_ops(&d), lines(&handed));
    assert_eq!(records_kept(&d), 0);

    // A connector that cannot hand records over at all has none to keep: its account goes.
    let unable = vec![
        C::CreateAccount,
        C::UpdateAccount,
        C::EnableDisable,
        C::DeleteAccount,
        C::Grant,
        C::Revoke,
        C::RevokeSessions,
        C::RevokeCredentials,
    ];
    let d = plan(planned_from(&engineer()), false, Some(unable));
    let mut deleted = disabled.to_vec();
    deleted.push("github delete");
    assert_eq!(github_ops(&d), lines(&deleted));
    assert!(d.outcome.plan.kept_for_records.is_empty());
    assert_eq!(records_kept(&d), 0);

    // One that can hand records over but not disable: keeping the account would keep the
    // access, so the delete stands (its disable is left to it).
    let no_disable = vec![
        C::CreateAccount,
        C::UpdateAccount,
        C::DeleteAccount,
        C::Grant,
        C::Revoke,
        C::RevokeSessions,
        C::RevokeCredentials,
        C::TransferOwnership,
    ];
    let d = plan(planned_from(&engineer()), false, Some(no_disable));
    assert_eq!(
        github_ops(&d),
        lines(&[
            "github revoke_sessions",
            "github revoke_credentials",
            "github delete"
        ])
    );
    assert!(d.outcome.plan.kept_for_records.is_empty());
}
