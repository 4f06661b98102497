//! API tokens.

use super::*;

#[test]
fn store_tokens() {
    each_backend(|db| {
        let s = &db.store;
        let t = s
            .insert_token(
                "ci",
                "hash",
                "pfx1",
                &["scim:read".to_string(), "admin".to_string()],
                None,
            )
            .unwrap();
        let found = s.find_token_by_prefix("pfx1").unwrap().unwrap();
        assert_eq!(found.user_id, None);
        assert_eq!(found.scopes, vec!["scim:read", "admin"]);
        assert!(found.last_used.is_none());
        let minute = chrono::Duration::seconds(60);
        let t0 = chrono::Utc::now();
        assert!(s.touch_token(&t.id, t0, minute).unwrap());
        let used = |s: &Store| s.find_token_by_prefix("pfx1").unwrap().unwrap().last_used;
        let first = used(s).expect("last_used set");
        // Within the granularity nothing is written; after it, the new time is.
        assert!(!s
            .touch_token(&t.id, t0 + chrono::Duration::seconds(30), minute)
            .unwrap());
        assert_eq!(used(s), Some(first));
        assert!(s
            .touch_token(&t.id, t0 + chrono::Duration::seconds(61), minute)
            .unwrap());
        assert!(used(s).unwrap() > first);
        s.revoke_token(&t.id).unwrap();
        assert!(s
            .find_token_by_prefix("pfx1")
            .unwrap()
            .unwrap()
            .revoked
            .is_some());
        assert!(matches!(s.revoke_token("nope"), Err(HubError::NotFound)));
        assert!(s.find_token_by_prefix("none").unwrap().is_none());
        assert_eq!(s.list_tokens().unwrap().len(), 1);
    });
}

#[test]
fn store_tokens_expire_and_are_revoked_by_name() {
    each_backend(|db| {
        let s = &db.store;
        let scopes = ["scim:read".to_string()];
        let at = chrono::Utc::now() + chrono::Duration::days(90);
        let t = s
            .insert_expiring_token("hr", "h1", "pfx3", &scopes, None, Some(at))
            .unwrap();
        let found = s.find_token_by_prefix("pfx3").unwrap().unwrap();
        assert_eq!(found.expires, t.expires);
        assert_eq!(
            found.expires.map(|e| e.timestamp_micros()),
            Some(at.timestamp_micros())
        );
        // By name, when one live token has it.
        let revoked = s.revoke_token("hr").unwrap();
        assert_eq!(revoked.id, t.id);
        assert!(revoked.revoked.is_some());
        // Two live tokens of one name: the name is ambiguous, the id is not.
        let a = s.insert_token("okta", "h2", "pfx4", &scopes, None).unwrap();
        s.insert_token("okta", "h3", "pfx5", &scopes, None).unwrap();
        assert!(matches!(
            s.revoke_token("okta"),
            Err(HubError::Uniqueness(_))
        ));
        assert_eq!(s.revoke_token(&a.id).unwrap().id, a.id);
        assert_ne!(s.revoke_token("okta").unwrap().id, a.id);
    });
}

#[test]
fn store_tokens_may_act_as_a_directory_user() {
    each_backend(|db| {
        let s = &db.store;
        let mut doc = Doc::new();
        doc.insert("userName".into(), json!("Grace"));
        let grace = s.create(ResourceKind::User, doc, None).unwrap();
        // By id, and by userName case-insensitively.
        assert_eq!(
            s.find_user_id(&grace.id).unwrap(),
            Some((grace.id.clone(), "Grace".to_string()))
        );
        assert_eq!(
            s.find_user_id("grace").unwrap(),
            Some((grace.id.clone(), "Grace".to_string()))
        );
        assert_eq!(s.find_user_id("nobody").unwrap(), None);
        s.insert_token(
            "grace-approvals",
            "hash",
            "pfx2",
            &["approvals".to_string()],
            Some(&grace.id),
        )
        .unwrap();
        let found = s.find_token_by_prefix("pfx2").unwrap().unwrap();
        assert_eq!(found.user_id.as_deref(), Some(grace.id.as_str()));
    });
}
