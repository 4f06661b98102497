//! `scimhub policy docs`: a Markdown runbook generated from the policy, so it is always current.

use std::fmt::Write;

use super::{fmt_duration, Approval, OnConflict, OnLeave, Policy, SodAction, EVENT_TYPES};

/// Renders the runbook.
pub fn render(policy: &Policy) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Access runbook\n");
    let _ = writeln!(
        o,
        "Generated from `{}`. Do not edit: change the policy and regenerate.\n",
        policy.source
    );
    let sla = |e: &str| {
        policy
            .sla_for(e)
            .map(fmt_duration)
            .unwrap_or_else(|| "none set".into())
    };
    let _ = writeln!(o, "## Service levels\n");
    let _ = writeln!(o, "| event | SLA |\n| --- | --- |");
    for &e in EVENT_TYPES {
        let _ = writeln!(o, "| {e} | {} |", sla(e));
    }
    let _ = writeln!(o, "\n## Connectors\n");
    for c in policy.connectors.values() {
        let _ = writeln!(
            o,
            "- **{}** (`{}`): account key `{}`; on leave the account is {}{}. Outages: \
             {} attempts per operation; after {} failures in a row its operations wait and one \
             is tried every {} (`connector_unhealthy` incident).",
            c.name,
            c.kind,
            c.account_key,
            match c.on_leave {
                OnLeave::Disable => "disabled",
                OnLeave::Delete => "deleted",
            },
            if c.transfer_ownership {
                ", owned records go to the manager"
            } else {
                ""
            },
            c.max_attempts
                .map_or_else(|| "the default retry budget of".into(), |n| n.to_string()),
            c.circuit_failures
                .unwrap_or(super::model::DEFAULT_CIRCUIT_FAILURES),
            super::fmt_duration(c.circuit_probe.unwrap_or(chrono::Duration::seconds(
                super::model::DEFAULT_CIRCUIT_PROBE_SECS
            ))),
        );
    }
    let _ = writeln!(o, "\n## Drift reconciliation\n");
    let _ = writeln!(
        o,
        "| connector | schedule | {} |\n| --- | --- |{}",
        super::DRIFT_KINDS.join(" | "),
        " --- |".repeat(super::DRIFT_KINDS.len())
    );
    for c in policy.connectors.values() {
        let actions: Vec<&str> = super::DRIFT_KINDS
            .iter()
            .map(|k| policy.drift_action(&c.name, k).as_str())
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            c.name,
            c.reconcile
                .map(|d| format!("every {}", fmt_duration(d)))
                .unwrap_or_else(|| "on demand".into()),
            actions.join(" | ")
        );
    }
    let _ = writeln!(
        o,
        "\nNew findings of these kinds raise an incident: {}. A finding a manager keeps is an \
         exception for {}.",
        if policy.drift.incidents.is_empty() {
            "none".to_string()
        } else {
            policy.drift.incidents.join(", ")
        },
        fmt_duration(policy.drift.review_expiry)
    );
    let _ = writeln!(o, "\n## Roles\n");
    for p in &policy.profiles {
        let _ = writeln!(o, "### {}\n", p.name);
        if let Some(d) = &p.description {
            let _ = writeln!(o, "{d}\n");
        }
        match &p.match_expr {
            Some(m) => {
                let who = if p.contractors {
                    " (contractors too)"
                } else {
                    " (employees only)"
                };
                let _ = writeln!(o, "Applies when: `{m}`{who}.");
            }
            None => {
                let _ = writeln!(o, "Applies only when included by another role.");
            }
        }
        if !p.include.is_empty() {
            let _ = writeln!(o, "Includes: {}.", p.include.join(", "));
        }
        let _ = writeln!(o, "\n**On join** (at `active`, or at the start date):\n");
        for g in &p.grants {
            let what = match &g.entitlement {
                Some(e) => format!(
                    "{} `{}`{}",
                    e.kind,
                    e.id,
                    e.role
                        .as_ref()
                        .map(|r| format!(" as {r}"))
                        .unwrap_or_default()
                ),
                None => "an account".into(),
            };
            let appr = match (g.approval, &g.entitlement) {
                (Approval::None, _) => "granted at once".to_string(),
                (Approval::Owner, Some(e)) => format!(
                    "after **owner** approval ({})",
                    policy.entitlement_owners(&g.connector, e).join(", ")
                ),
                (a, _) => format!("after **{}** approval", a.as_str()),
            };
            let privileged = if g.privileged { " (privileged)" } else { "" };
            let _ = writeln!(o, "- {}: {what}, {appr}{privileged}", g.connector);
        }
        let when = if p.overlap > chrono::Duration::zero() {
            format!(
                "after an overlap of {} (the manager can acknowledge or extend with one click)",
                fmt_duration(p.overlap)
            )
        } else {
            "at once".into()
        };
        let _ = writeln!(
            o,
            "\n**On move away**: this role's access is revoked {when}; the new manager and \
             security get a summary."
        );
        let _ = writeln!(
            o,
            "\n**On leave**: every account is disabled, sessions and credentials revoked, \
             privileged entitlements removed first, owned records transferred to the manager \
             where supported (SLA {}).{}\n",
            sla("leaver"),
            match policy.leaver.required.as_slice() {
                [] => String::new(),
                steps => format!(
                    " Required steps (an incident when a connector cannot take one): {}.",
                    steps.join(", ")
                ),
            }
        );
    }
    if let Some(c) = &policy.contractor {
        let _ = writeln!(o, "## Contractors\n");
        let _ = writeln!(
            o,
            "Recognised by `{}`; they get the `{}` role and only roles marked for contractors.",
            c.match_expr, c.profile
        );
        if !c.exclude_connectors.is_empty() {
            let _ = writeln!(o, "Never on: {}.", c.exclude_connectors.join(", "));
        }
        let ladder: Vec<String> = c.reminders.iter().map(|d| fmt_duration(*d)).collect();
        let _ = writeln!(
            o,
            "Reminders before the end date: {}; at the end date access expires (SLA {}). \
             Sponsors may extend by up to {} per request.\n",
            ladder.join(", "),
            sla("contractor-expiry"),
            fmt_duration(c.max_extension)
        );
    }
    if !policy.sod.is_empty() {
        let _ = writeln!(o, "## Separation of duties\n");
        for r in &policy.sod {
            let action = match r.action {
                SodAction::Block => "the second is blocked",
                SodAction::Approval => "holding both needs security approval",
            };
            let _ = writeln!(
                o,
                "- **{}**: {} and {} never together; {action}.",
                r.name, r.a, r.b
            );
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## Who decides approvals\n");
    let _ = writeln!(
        o,
        "- **manager** approvals: the user's manager (enterprise `manager`).\n\
         - **owner** approvals: the owners of the connector or of the grant (listed with each \
         grant above).\n\
         - contract extensions: the contractor's sponsor{}.",
        policy
            .contractor
            .as_ref()
            .filter(|c| !c.owners.is_empty())
            .map(|c| format!(" or a contractor owner ({})", c.owners.join(", ")))
            .unwrap_or_default()
    );
    let security: Vec<String> = policy.approvals.security.clone();
    let _ = writeln!(
        o,
        "- **security** approvals and SoD exceptions: {}. Security approvers may decide any \
         request.\n- Nobody decides a request for their own access.\n",
        if security.is_empty() {
            "nobody is declared ([approvals] is empty)".to_string()
        } else {
            security.join(", ")
        }
    );
    let _ = writeln!(o, "## Emergency grants\n");
    let _ = writeln!(
        o,
        "`scimhub grant USER CONNECTOR:KIND:ID --for DURATION --reason TEXT` gives one entitlement \
         outside the roles for at most {}; {}. The outbox removes it when it expires; separation \
         of duties holds for it as for a role's grants; whoever asked does not approve it.\n",
        fmt_duration(policy.grants.max_duration),
        match policy.grants.approval {
            crate::policy::GrantApproval::Security => {
                "every grant waits for a security approver".to_string()
            }
            crate::policy::GrantApproval::Entitlement => {
                "it needs the approval a role grant of the same entitlement needs (none: active \
                 at once), security approval for an entitlement no role grants"
                    .to_string()
            }
        }
    );
    if !policy.sources.is_empty() {
        let _ = writeln!(o, "## Sources of truth\n");
        for r in policy.sources.values() {
            let owns: Vec<&str> = r.owns.iter().map(|a| a.written.as_str()).collect();
            let _ = writeln!(
                o,
                "- **{}** owns {}; a change by another client is {}.",
                r.client,
                owns.join(", "),
                match r.on_conflict {
                    OnConflict::Ignore => "ignored (the stored value is kept)",
                    OnConflict::Reject => "refused",
                }
            );
        }
        let _ = writeln!(o);
    }
    if let Some(b) = &policy.blast_radius {
        let _ = writeln!(o, "## Blast-radius guard\n");
        let _ = writeln!(
            o,
            "If more than {:.0}% of users (with at least {}) would lose access (a disable, \
             delete or any revoke) within {}, the plans are held until an admin confirms or \
             discards them; a group change is judged as a whole.",
            b.max_share * 100.0,
            b.min_population,
            fmt_duration(b.window)
        );
    }
    o
}
