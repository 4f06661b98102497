//! `[[sod]]`: separation-of-duties rules, pairs of entitlements nobody may hold together
//! (blocked, or granted only with security approval).

use std::collections::BTreeSet;

use crate::policy::diagnostics::Diags;
use crate::policy::model::{ApproverSettings, EntRef, SodAction, SodRule};
use crate::policy::raw::{RawEntRef, RawSod};

use super::approvals::no_security;
use super::connectors::CheckedConnectors;

pub(super) fn check(
    raw: Vec<RawSod>,
    connectors: &CheckedConnectors,
    approvals: &ApproverSettings,
    d: &mut Diags<'_>,
) -> Vec<SodRule> {
    let mut sod = Vec::new();
    let mut names = BTreeSet::new();
    for r in raw {
        if !names.insert(r.name.get_ref().clone()) {
            d.at(
                r.name.span(),
                format!("duplicate sod rule {:?}", r.name.get_ref()),
            );
        }
        connectors.known(d, &r.a.connector);
        connectors.known(d, &r.b.connector);
        if r.action == SodAction::Approval && !approvals.has_security() {
            d.at(
                r.name.span(),
                no_security("a SoD rule with action = \"approval\""),
            );
        }
        sod.push(SodRule {
            name: r.name.into_inner(),
            a: ent_ref(r.a),
            b: ent_ref(r.b),
            action: r.action,
        });
    }
    sod
}

fn ent_ref(e: RawEntRef) -> EntRef {
    EntRef {
        connector: e.connector.into_inner(),
        kind: e.kind,
        id: e.id,
    }
}
