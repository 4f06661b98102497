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
        s.touch_token(&t.id).unwrap();
        assert!(s
            .find_token_by_prefix("pfx1")
            .unwrap()
            .unwrap()
            .last_used
            .is_some());
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
