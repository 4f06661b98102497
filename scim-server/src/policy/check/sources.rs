//! `[[source]]`: which SCIM client is the source of truth for which User attributes; each
//! attribute has at most one owner.

use std::collections::BTreeMap;

use crate::policy::attrs::{owned_paths_overlap, AttrChecker};
use crate::policy::diagnostics::Diags;
use crate::policy::model::{OwnedAttribute, SourceRule};
use crate::policy::raw::RawSource;

/// Sources by client name.
pub(super) fn check(
    raw: Vec<RawSource>,
    attrs: &AttrChecker,
    d: &mut Diags<'_>,
) -> BTreeMap<String, SourceRule> {
    let mut sources: BTreeMap<String, SourceRule> = BTreeMap::new();
    for s in raw {
        if sources.contains_key(s.client.get_ref()) {
            d.at(
                s.client.span(),
                format!("duplicate source {:?}", s.client.get_ref()),
            );
            continue;
        }
        let mut owns: Vec<OwnedAttribute> = Vec::new();
        for o in &s.owns {
            let path = match attrs.resolve_owned(o.get_ref()) {
                Ok(p) => p,
                Err(msg) => {
                    d.at(o.span(), format!("owns: {msg}"));
                    continue;
                }
            };
            // One owner per attribute: two sources of truth for one value would fight.
            let earlier = sources
                .values()
                .flat_map(|r| r.owns.iter().map(move |a| (r.client.as_str(), a)))
                .chain(owns.iter().map(|a| (s.client.get_ref().as_str(), a)))
                .find(|(_, a)| owned_paths_overlap(&a.path, &path));
            if let Some((client, a)) = earlier {
                d.at(
                    o.span(),
                    format!(
                        "owns: {:?} is already owned by source {client:?} (as {:?})",
                        o.get_ref(),
                        a.written
                    ),
                );
                continue;
            }
            owns.push(OwnedAttribute {
                written: o.get_ref().clone(),
                path,
            });
        }
        sources.insert(
            s.client.get_ref().clone(),
            SourceRule {
                client: s.client.into_inner(),
                owns,
                on_conflict: s.on_conflict,
            },
        );
    }
    sources
}
