//! `[[profile]]` and their grants: match filters, grants on declared connectors with entitlement
//! kinds the connector accepts and someone to approve them, overlaps, and includes (known
//! profiles, no cycles).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use chrono::Duration;
use connectors::Entitlement;

use crate::policy::attrs::{check_filter, AttrChecker};
use crate::policy::diagnostics::Diags;
use crate::policy::model::{Approval, ApproverSettings, Grant, Profile};
use crate::policy::raw::{RawGrant, RawProfile, S};

use super::approvals::no_security;
use super::connectors::CheckedConnectors;
use super::{check_user_names, duration_at};

pub(super) fn check(
    raw: Vec<RawProfile>,
    attrs: &AttrChecker,
    connectors: &CheckedConnectors,
    approvals: &ApproverSettings,
    d: &mut Diags<'_>,
) -> Vec<Profile> {
    let mut profiles: Vec<Profile> = Vec::new();
    // Where each profile's name is written (cycles are reported there).
    let mut spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let mut includes: Vec<S<String>> = Vec::new();
    for p in raw {
        let name = p.name.get_ref().clone();
        if spans.contains_key(&name) {
            d.at(p.name.span(), format!("duplicate profile {name:?}"));
            continue;
        }
        spans.insert(name, p.name.span());
        includes.extend(p.include.iter().cloned());
        profiles.push(check_profile(p, attrs, connectors, approvals, d));
    }
    for i in &includes {
        if !spans.contains_key(i.get_ref()) {
            d.at(
                i.span(),
                format!("unknown profile {:?} in include", i.get_ref()),
            );
        }
    }
    check_include_cycles(&profiles, &spans, d);
    profiles
}

fn check_profile(
    p: RawProfile,
    attrs: &AttrChecker,
    connectors: &CheckedConnectors,
    approvals: &ApproverSettings,
    d: &mut Diags<'_>,
) -> Profile {
    let filter = p
        .match_expr
        .as_ref()
        .and_then(|m| check_filter(d, attrs, m, "match"));
    let grants = p
        .grants
        .iter()
        .map(|g| check_grant(g, connectors, approvals, d))
        .collect();
    let overlap = p
        .overlap
        .as_ref()
        .and_then(|o| duration_at(d, o))
        .unwrap_or_else(Duration::zero);
    Profile {
        name: p.name.into_inner(),
        description: p.description,
        match_expr: p.match_expr.map(|m| m.into_inner()),
        filter,
        include: p.include.iter().map(|i| i.get_ref().clone()).collect(),
        grants,
        overlap,
        contractors: p.contractors,
    }
}

fn check_grant(
    g: &S<RawGrant>,
    connectors: &CheckedConnectors,
    approvals: &ApproverSettings,
    d: &mut Diags<'_>,
) -> Grant {
    let span = g.span();
    let g = g.get_ref();
    connectors.known(d, &g.connector);
    let entitlement = match (&g.kind, &g.id) {
        (Some(k), Some(i)) => {
            if let Some(Some(kinds)) = connectors.entitlement_kinds.get(g.connector.get_ref()) {
                if !kinds.iter().any(|x| x == k) {
                    d.at(
                        span.clone(),
                        format!(
                            "connector {:?} has no entitlement kind {k:?} (it knows {})",
                            g.connector.get_ref(),
                            if kinds.is_empty() {
                                "none".to_string()
                            } else {
                                kinds.join(", ")
                            }
                        ),
                    );
                }
            }
            let e = Entitlement::new(k.clone(), i.clone());
            Some(match &g.role {
                Some(r) => e.with_role(r.clone()),
                None => e,
            })
        }
        (None, None) if g.role.is_none() => None,
        _ => {
            d.at(
                span.clone(),
                "a grant needs both kind and id (or neither, for the account alone)",
            );
            None
        }
    };
    let owners = check_user_names(d, &g.owners, "grant owners");
    match g.approval {
        Approval::Owner
            if owners.is_empty()
                && connectors
                    .defs
                    .get(g.connector.get_ref())
                    .is_some_and(|c| c.owners.is_empty()) =>
        {
            d.at(
                span,
                format!(
                    "approval = \"owner\" needs an owner: declare owners = [userNames] on this \
                     grant or on connector {:?}",
                    g.connector.get_ref()
                ),
            );
        }
        Approval::Security if !approvals.has_security() => {
            d.at(span, no_security("approval = \"security\""));
        }
        _ => {}
    }
    Grant {
        connector: g.connector.get_ref().clone(),
        entitlement,
        approval: g.approval,
        privileged: g.privileged,
        owners,
        description: g
            .description
            .as_ref()
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty()),
    }
}

/// Reports include cycles (depth-first, each cycle once, at the profile that closes it).
fn check_include_cycles(
    profiles: &[Profile],
    spans: &BTreeMap<String, Range<usize>>,
    d: &mut Diags<'_>,
) {
    let graph: BTreeMap<&str, Vec<&str>> = profiles
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.include.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let mut reported = BTreeSet::new();
    for p in profiles {
        let mut path = vec![p.name.as_str()];
        if let Some(cycle) = find_cycle(&graph, &mut path) {
            let key: BTreeSet<&str> = cycle.iter().copied().collect();
            if reported.insert(key) {
                let span = spans.get(p.name.as_str()).cloned().unwrap_or(0..0);
                d.at(span, format!("include cycle: {}", cycle.join(" -> ")));
            }
        }
    }
}

fn find_cycle<'a>(
    graph: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    let last = *path.last()?;
    for next in graph.get(last).into_iter().flatten() {
        if let Some(pos) = path.iter().position(|p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            return Some(cycle);
        }
        if path.len() > graph.len() {
            return None;
        }
        path.push(next);
        if let Some(c) = find_cycle(graph, path) {
            return Some(c);
        }
        path.pop();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which profile includes which.
    type Includes<'a> = &'a [(&'a str, &'a [&'a str])];

    #[test]
    fn find_cycle_follows_includes_depth_first() {
        let cases: &[(Includes, &str, Option<&[&str]>)] = &[
            (&[("a", &["b"]), ("b", &[])], "a", None),
            (&[("a", &["a"])], "a", Some(&["a", "a"])),
            (&[("a", &["b"]), ("b", &["a"])], "a", Some(&["a", "b", "a"])),
            (
                &[("a", &["b"]), ("b", &["c"]), ("c", &["b"])],
                "a",
                Some(&["b", "c", "b"]),
            ),
            // A diamond is no cycle.
            (
                &[("a", &["b", "c"]), ("b", &["d"]), ("c", &["d"]), ("d", &[])],
                "a",
                None,
            ),
            // Includes of unknown profiles end the walk.
            (&[("a", &["ghost"])], "a", None),
        ];
        for (edges, start, expected) in cases {
            let graph: BTreeMap<&str, Vec<&str>> =
                edges.iter().map(|(n, to)| (*n, to.to_vec())).collect();
            let mut path = vec![*start];
            assert_eq!(
                find_cycle(&graph, &mut path).as_deref(),
                *expected,
                "{edges:?}"
            );
        }
    }
}
