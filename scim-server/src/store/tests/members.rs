//! Group membership: member deltas and a user's direct and indirect groups.

use super::*;

/// A resource's stored document text and version, as read.
#[derive(diesel::Queryable)]
struct DocText {
    doc: String,
    version: i64,
}

fn doc_text(s: &Store, id: &str) -> (String, i64) {
    use diesel::RunQueryDsl;
    let mut c = s.read_conn().unwrap();
    let mut q = sql::Sql::<(diesel::sql_types::Text, diesel::sql_types::BigInt)>::new(
        "SELECT doc, version FROM resources WHERE id = ",
    );
    q.text(id);
    let row: DocText = q.get_result(&mut *c).unwrap();
    (row.doc, row.version)
}

#[test]
fn store_member_delta_touches_only_changed_rows() {
    each_backend(|db| {
        let s = &db.store;
        let n_big = if db.name == "sqlite" { 10_000 } else { 3_000 };
        let users: Vec<String> = (0..n_big).map(|i| user(s, &format!("u{i}")).id).collect();
        let small = group(
            s,
            "small",
            &users[..10].iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let big = group(
            s,
            "big",
            &users.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let extra = user(s, "extra").id;
        let mut times = Vec::new();
        for g in [&small, &big] {
            let (doc_before, v_before) = doc_text(s, &g.id);
            let t = std::time::Instant::now();
            let out = s
                .apply_member_delta(
                    &g.id,
                    vec![NewMember::new(extra.clone())],
                    MemberRemoval::None,
                    None,
                )
                .unwrap();
            let out2 = s
                .apply_member_delta(
                    &g.id,
                    vec![],
                    MemberRemoval::Ids(vec![users[3].clone()]),
                    Some(&etag(out.version)),
                )
                .unwrap();
            times.push(t.elapsed());
            assert!(out.changed && out2.changed);
            let (doc_after, v_after) = doc_text(s, &g.id);
            assert_eq!(doc_before, doc_after, "the document is not rewritten");
            assert_eq!(v_after, v_before + 2);
            // Adding an existing member changes nothing.
            let same = s
                .apply_member_delta(
                    &g.id,
                    vec![NewMember::new(extra.clone())],
                    MemberRemoval::None,
                    None,
                )
                .unwrap();
            assert!(!same.changed);
            assert_eq!(same.version, v_after);
        }
        assert_eq!(s.group_members(&big.id).unwrap().len(), n_big);
        assert_eq!(s.group_members(&small.id).unwrap().len(), 10);
        // Unknown members fail the whole change.
        let e = s
            .apply_member_delta(
                &small.id,
                vec![NewMember::new("nope"), NewMember::new(users[20].clone())],
                MemberRemoval::None,
                None,
            )
            .unwrap_err();
        assert!(matches!(&e, HubError::UnknownMembers(ids) if ids == &vec!["nope".to_string()]));
        assert_eq!(s.group_members(&small.id).unwrap().len(), 10);
        // Cost does not grow with the group (generous bound against machine noise).
        assert!(
            times[1] < times[0] * 20 + std::time::Duration::from_millis(50),
            "{}: {times:?}",
            db.name
        );
        // excludedAttributes=members does not read members.
        let g = s.get(ResourceKind::Group, &big.id, false).unwrap();
        assert!(g.doc.get("members").is_none());
        // Deleting a member removes it from the groups and bumps their versions.
        let v = s
            .get(ResourceKind::Group, &small.id, false)
            .unwrap()
            .version;
        s.delete(ResourceKind::User, &extra, None).unwrap();
        assert_eq!(
            s.get(ResourceKind::Group, &small.id, false)
                .unwrap()
                .version,
            v + 1
        );
        assert_eq!(s.group_members(&small.id).unwrap().len(), 9);
    });
}

#[test]
fn store_user_groups_direct_and_indirect() {
    each_backend(|db| {
        let s = &db.store;
        let u = user(s, "nested");
        let inner = group(s, "inner", &[&u.id]);
        let outer = group(s, "outer", &[&inner.id]);
        let top = group(s, "top", &[&outer.id, &u.id]);
        // A cycle must not loop.
        s.apply_member_delta(
            &inner.id,
            vec![NewMember::new(top.id.clone())],
            MemberRemoval::None,
            None,
        )
        .unwrap();
        let got = s.get(ResourceKind::User, &u.id, true).unwrap();
        let groups = got.doc["groups"].as_array().unwrap();
        let find = |id: &str| {
            groups
                .iter()
                .find(|g| g["value"] == json!(id))
                .map(|g| g["type"].clone())
        };
        assert_eq!(find(&inner.id), Some(json!("direct")));
        assert_eq!(find(&outer.id), Some(json!("indirect")));
        assert_eq!(find(&top.id), Some(json!("direct")));
        assert_eq!(groups.len(), 3);
        assert_eq!(
            groups
                .iter()
                .find(|g| g["value"] == json!(inner.id))
                .unwrap()["display"],
            json!("inner")
        );
        let page = s
            .search(
                ResourceKind::User,
                &SearchQuery {
                    count: 10,
                    with_members: true,
                    ..Default::default()
                },
                &user_schema(),
            )
            .unwrap();
        assert_eq!(page.resources[0].doc["groups"].as_array().unwrap().len(), 3);
        let g = s.get(ResourceKind::Group, &top.id, true).unwrap();
        assert_eq!(g.doc["members"].as_array().unwrap().len(), 2);
    });
}
