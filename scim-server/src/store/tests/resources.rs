//! Resource CRUD: uniqueness, versions and If-Match, delete, the create answer.

use super::*;

#[test]
fn store_uniqueness() {
    each_backend(|db| {
        let s = &db.store;
        user(s, "BJensen");
        let e = s
            .create(
                ResourceKind::User,
                obj(json!({"userName": "bjensen"})),
                None,
            )
            .unwrap_err();
        assert!(
            matches!(&e, HubError::Uniqueness(m) if m.contains("userName")),
            "{}: {e:?}",
            db.name
        );
        // externalId is unique per client.
        s.create(
            ResourceKind::User,
            obj(json!({"userName": "a", "externalId": "X1"})),
            Some("hr"),
        )
        .unwrap();
        s.create(
            ResourceKind::User,
            obj(json!({"userName": "b", "externalId": "X1"})),
            Some("idp"),
        )
        .unwrap();
        let e = s
            .create(
                ResourceKind::User,
                obj(json!({"userName": "c", "externalId": "X1"})),
                Some("hr"),
            )
            .unwrap_err();
        assert!(
            matches!(&e, HubError::Uniqueness(m) if m.contains("externalId")),
            "{}: {e:?}",
            db.name
        );
        // Group displayName, case-insensitively; users may share displayNames.
        group(s, "Admins", &[]);
        let e = s
            .create(
                ResourceKind::Group,
                obj(json!({"displayName": "ADMINS"})),
                None,
            )
            .unwrap_err();
        assert!(
            matches!(&e, HubError::Uniqueness(m) if m.contains("displayName")),
            "{}: {e:?}",
            db.name
        );
        s.create(
            ResourceKind::User,
            obj(json!({"userName": "d", "displayName": "Same"})),
            None,
        )
        .unwrap();
        s.create(
            ResourceKind::User,
            obj(json!({"userName": "e", "displayName": "Same"})),
            None,
        )
        .unwrap();
    });
}

/// A User with emails is written as its row and its value rows (on PostgreSQL in one statement):
/// a clash on the row writes neither, and the emails are found by a filter.
#[test]
fn store_create_with_emails_is_whole_or_nothing() {
    each_backend(|db| {
        let s = &db.store;
        let with_emails = |name: &str| {
            obj(json!({"userName": name, "emails": [
                {"value": format!("{name}@work.example"), "type": "work"},
                {"value": format!("{name}@home.example"), "type": "home"}]}))
        };
        let first = s
            .create(ResourceKind::User, with_emails("ada"), None)
            .unwrap();
        let e = s
            .create(ResourceKind::User, with_emails("ADA"), None)
            .unwrap_err();
        assert!(
            matches!(&e, HubError::Uniqueness(m) if m.contains("userName")),
            "{}: {e:?}",
            db.name
        );
        let schema = user_schema();
        for email in ["ada@work.example", "ADA@home.example", "ada@home.example"] {
            let f = cmp(AttrPath::with_sub("emails", "value"), CompareOp::Eq, email);
            let page = s
                .search(
                    ResourceKind::User,
                    &SearchQuery {
                        filter: Some(f),
                        count: 10,
                        ..Default::default()
                    },
                    &schema,
                )
                .unwrap();
            let ids: Vec<&str> = page.resources.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids, vec![first.id.as_str()], "{}: {email}", db.name);
        }
    });
}

#[test]
fn store_versions_if_match_and_delete() {
    each_backend(|db| {
        let s = &db.store;
        let u = user(s, "alice");
        assert_eq!(u.version, 1);
        assert_eq!(u.doc["meta"]["version"], json!("W/\"1\""));
        let got = s.get(ResourceKind::User, &u.id, true).unwrap();
        assert_eq!(got.doc["userName"], json!("alice"));
        let e = s
            .replace(
                ResourceKind::User,
                &u.id,
                obj(json!({"userName": "alice2"})),
                Some("W/\"7\""),
                None,
            )
            .unwrap_err();
        assert!(matches!(
            e,
            HubError::PreconditionFailed { current_version: 1 }
        ));
        let r = s
            .replace(
                ResourceKind::User,
                &u.id,
                obj(json!({"userName": "alice2"})),
                Some("W/\"1\""),
                None,
            )
            .unwrap();
        assert_eq!(r.version, 2);
        // An update that changes nothing keeps the version.
        let same = s
            .update_with(ResourceKind::User, &u.id, Some("*"), None, Ok)
            .unwrap();
        assert_eq!(same.version, 2);
        let up = s
            .update_with(ResourceKind::User, &u.id, None, None, |mut d| {
                d.insert("title".into(), json!("Boss"));
                Ok(d)
            })
            .unwrap();
        assert_eq!(up.version, 3);
        assert_eq!(up.doc["title"], json!("Boss"));
        assert!(matches!(
            s.delete(ResourceKind::User, &u.id, Some("W/\"2\"")),
            Err(HubError::PreconditionFailed { current_version: 3 })
        ));
        s.delete(ResourceKind::User, &u.id, None).unwrap();
        assert!(matches!(
            s.delete(ResourceKind::User, &u.id, None),
            Err(HubError::NotFound)
        ));
        assert!(matches!(
            s.get(ResourceKind::User, &u.id, false),
            Err(HubError::NotFound)
        ));
        // A kind mismatch is NotFound.
        let g = group(s, "g", &[]);
        assert!(matches!(
            s.get(ResourceKind::User, &g.id, false),
            Err(HubError::NotFound)
        ));
    });
}

/// The create answer rendered from the written row must be what a read returns right after it.
#[test]
fn create_loaded_is_what_a_read_loads() {
    each_backend(|db| {
        let s = &db.store;
        let made = s
            .create_loaded(
                ResourceKind::User,
                obj(json!({"userName": "cl-user", "emails": [{"value": "a@example.com"}]})),
                Some("client"),
            )
            .unwrap();
        let read = s.get_loaded(ResourceKind::User, &made.id, true).unwrap();
        assert_eq!(made, read, "{}", db.name);
        let g = s
            .create_loaded(
                ResourceKind::Group,
                obj(json!({"displayName": "cl-group", "members": [{"value": made.id}]})),
                None,
            )
            .unwrap();
        let read = s.get_loaded(ResourceKind::Group, &g.id, true).unwrap();
        assert_eq!(g, read, "{}", db.name);
        assert_eq!(g.members.as_ref().map(Vec::len), Some(1));
    });
}

/// The ETags a precondition takes: the ones this server writes (with or without a User's
/// groups digest), strong or weak, `*` and lists; not a version spelt otherwise.
#[test]
fn etag_preconditions_take_only_the_versions_written() {
    use crate::store::{etag_version, if_match_ok, resource_etag};
    assert_eq!(etag_version(&resource_etag(7, None)), Some(7));
    assert_eq!(etag_version(&resource_etag(7, Some(0xabc))), Some(7));
    for (tag, version) in [("\"7\"", Some(7)), ("7", Some(7)), ("W/\"0\"", Some(0))] {
        assert_eq!(etag_version(tag), version, "{tag}");
    }
    for tag in [
        "W/\"07\"", "W/\"+7\"", "W/\"-7\"", "W/\"7", "W/7\"", "W/\"\"", "W/\"x\"", "",
    ] {
        assert_eq!(etag_version(tag), None, "{tag}");
    }
    assert!(if_match_ok(Some("W/\"1\", W/\"7.00ff\""), 7));
    assert!(if_match_ok(Some("*"), 7));
    assert!(!if_match_ok(Some("W/\"07\""), 7));
    assert!(if_match_ok(None, 7));
}
