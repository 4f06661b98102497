//! AWS IAM connector against `moto_server` (PyPI `moto[server]`) with signature and policy checks
//! on (`INITIAL_NO_AUTH_ACTION_COUNT=3`: three free calls create the hub's own IAM user, its key
//! and an `iam:*` policy; every later call must be signed by that key).
//!
//! Every request goes through a local recording proxy in front of moto, so the tests can assert
//! the order of calls on leave (moto does not enforce DeleteConflict, real IAM does). moto does
//! not implement service-specific credentials (its `ListServiceSpecificCredentials` is a 500), so
//! the proxy serves those three actions from its own small table.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support_standins;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors::aws_iam::{AwsIamConfig, AwsIamConnector, LeaveMode, SUSPENDED_TAG};
use connectors::ownership::Adopt;
use connectors::secret::Secret;
use connectors::{AccountRef, AccountSpec, Capability, Connector, Entitlement, ErrorKind};
use serde_json::json;
use support_standins::stacks::*;
use support_standins::*;

const PATH: &str = "/scimhub/";

fn connector_with(
    r: &Responder,
    key: &str,
    secret: &str,
    tweak: impl FnOnce(&mut AwsIamConfig),
) -> AwsIamConnector {
    let mut cfg = AwsIamConfig::new("aws-test", r.url(), Secret::new(key), Secret::new(secret));
    cfg.path = PATH.into();
    cfg.tags.insert("ManagedBy".into(), "scimhub".into());
    cfg.timeout = Duration::from_secs(10);
    tweak(&mut cfg);
    AwsIamConnector::new(cfg).expect("connector")
}

impl Moto {
    fn connector(&self, tweak: impl FnOnce(&mut AwsIamConfig)) -> AwsIamConnector {
        connector_with(&self.proxy, &self.key_id, &self.secret, tweak)
    }
    /// Actions seen by the proxy since `from`.
    fn actions_since(&self, from: usize) -> Vec<(String, String)> {
        self.proxy.recorded()[from..]
            .iter()
            .map(|r| {
                let a = r.form("Action").unwrap_or_default();
                let detail = [
                    "AccessKeyId",
                    "Status",
                    "GroupName",
                    "PolicyArn",
                    "PolicyName",
                ]
                .iter()
                .filter_map(|k| r.form(k).map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",");
                (a, detail)
            })
            .collect()
    }
    fn mark(&self) -> usize {
        self.proxy.recorded().len()
    }
}

fn spec(key: &str, display: &str, email: Option<&str>) -> AccountSpec {
    let mut attributes = serde_json::Map::new();
    attributes.insert("userName".into(), json!(key));
    attributes.insert("displayName".into(), json!(display));
    attributes.insert("externalId".into(), json!(format!("ext-{key}")));
    if let Some(e) = email {
        attributes.insert("emails".into(), json!([{ "value": e, "primary": true }]));
    }
    AccountSpec {
        account: AccountRef::new(key),
        attributes,
    }
}

async fn setup_groups_and_policy(c: &AwsIamConnector) -> String {
    for g in ["engineering", "oncall"] {
        c.call("CreateGroup", &[("GroupName", g)])
            .await
            .expect("group");
    }
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
    let out = c
        .call(
            "CreatePolicy",
            &[("PolicyName", "ReadThings"), ("PolicyDocument", doc)],
        )
        .await
        .expect("policy");
    xml_field(&out, "Arn")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_lifecycle_create_adopt_update_grant_revoke_disable_list_delete() {
    let moto = start_moto().await;
    let c = moto.connector(|_| {});
    let caps = c.capabilities();
    assert!(caps.supports(Capability::RevokeCredentials) && caps.knows_kind("policy"));
    let policy_arn = setup_groups_and_policy(&c).await;

    // create
    let jdoe = c
        .create_or_adopt(&spec("jdoe", "Jane Doe", Some("jdoe@example.com")))
        .await
        .expect("create");
    assert_eq!(
        jdoe.id.as_deref(),
        Some("arn:aws:iam::123456789012:user/scimhub/jdoe")
    );
    let st = c.read(&jdoe).await.expect("read").expect("exists");
    assert!(st.enabled);
    assert_eq!(st.attributes["displayName"], "Jane Doe");
    assert_eq!(st.attributes["emails"][0]["value"], "jdoe@example.com");
    assert_eq!(st.attributes["tags"]["ManagedBy"], "scimhub");
    assert_eq!(st.attributes["path"], PATH);

    // creating again adopts (EntityAlreadyExists) and converges
    let again = c
        .create_or_adopt(&spec("jdoe", "Jane Q. Doe", Some("jdoe@example.com")))
        .await
        .expect("adopt self");
    assert_eq!(again, jdoe);
    assert_eq!(
        c.read(&jdoe).await.unwrap().unwrap().attributes["displayName"],
        "Jane Q. Doe"
    );

    // adopt a user created outside scimhub, at another path inside the managed one, untagged
    c.call(
        "CreateUser",
        &[("UserName", "legacy"), ("Path", "/scimhub/old/")],
    )
    .await
    .expect("legacy");
    let legacy = c
        .create_or_adopt(&spec("legacy", "Legacy User", None))
        .await
        .expect("adopt");
    let st = c.read(&legacy).await.unwrap().unwrap();
    assert_eq!(st.attributes["path"], PATH, "path brought to the policy's");
    assert_eq!(st.attributes["displayName"], "Legacy User");
    assert_eq!(
        legacy.id.as_deref(),
        Some("arn:aws:iam::123456789012:user/scimhub/legacy")
    );
    assert_eq!(st.attributes["tags"]["managed-by"], "scimhub:default");

    // update: new display name, email removed -> Email tag removed
    c.update(&spec("jdoe", "Jane Roe", None))
        .await
        .expect("update");
    let st = c.read(&jdoe).await.unwrap().unwrap();
    assert_eq!(st.attributes["displayName"], "Jane Roe");
    assert!(st.attributes.get("emails").is_none(), "{:?}", st.attributes);

    // grant (twice: idempotent) and read back
    let eng = Entitlement::new("group", "engineering");
    let oncall = Entitlement::new("group", "oncall");
    let pol = Entitlement::new("policy", policy_arn.clone());
    for e in [&eng, &oncall, &pol, &eng] {
        c.grant(&jdoe, e).await.expect("grant");
    }
    let st = c.read(&jdoe).await.unwrap().unwrap();
    let mut got = st.entitlements.clone();
    got.sort();
    assert_eq!(got, vec![eng.clone(), oncall.clone(), pol.clone()]);
    // unknown kind and unknown group are permanent
    let e = c
        .grant(&jdoe, &Entitlement::new("team", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    let e = c
        .grant(&jdoe, &Entitlement::new("group", "no-such-group"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");

    // revoke (twice: the second finds nothing and succeeds)
    for _ in 0..2 {
        c.revoke(&jdoe, &oncall).await.expect("revoke group");
        c.revoke(&jdoe, &pol).await.expect("revoke policy");
    }
    assert_eq!(
        c.read(&jdoe).await.unwrap().unwrap().entitlements,
        vec![eng.clone()]
    );

    // list under the path: jdoe and legacy, not the hub's own user at "/"
    let page = c.list_accounts(None).await.expect("list");
    let mut keys: Vec<String> = page
        .accounts
        .iter()
        .map(|a| a.account.key.clone())
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["jdoe", "legacy"]);
    assert!(page.next.is_none());

    // disable: credentials deactivated and deleted, suspended tag; enable removes the tag
    c.call("CreateAccessKey", &[("UserName", "jdoe")])
        .await
        .unwrap();
    c.call(
        "CreateLoginProfile",
        &[("UserName", "jdoe"), ("Password", "Xx-Pass-w0rd!")],
    )
    .await
    .unwrap();
    let mark = moto.mark();
    c.set_enabled(&jdoe, false).await.expect("disable");
    let calls = moto.actions_since(mark);
    let pos = |a: &str| calls.iter().position(|(x, _)| x == a);
    assert!(
        pos("UpdateAccessKey").unwrap() < pos("DeleteAccessKey").unwrap(),
        "{calls:?}"
    );
    assert!(calls
        .iter()
        .any(|(a, d)| a == "UpdateAccessKey" && d.contains("Status=Inactive")));
    let st = c.read(&jdoe).await.unwrap().unwrap();
    assert!(!st.enabled);
    assert!(st.attributes["tags"].get(SUSPENDED_TAG).is_some());
    assert_eq!(st.attributes["accessKeys"], json!([]));
    let lp = c
        .call("GetLoginProfile", &[("UserName", "jdoe")])
        .await
        .unwrap_err();
    assert!(lp.message.contains("NoSuchEntity"), "{lp}");
    c.set_enabled(&jdoe, true).await.expect("enable");
    assert!(c.read(&jdoe).await.unwrap().unwrap().enabled);

    // delete; then read is None and deleting again succeeds
    c.delete(&jdoe).await.expect("delete");
    assert!(c.read(&jdoe).await.unwrap().is_none());
    c.delete(&jdoe).await.expect("delete again");
    c.revoke(&jdoe, &eng).await.expect("revoke on a gone user");

    // leave as tag-suspended: the user stays, powerless and tagged
    let keep = moto.connector(|cfg| cfg.leave_mode = LeaveMode::TagSuspended);
    keep.grant(&legacy, &eng).await.unwrap();
    keep.delete(&legacy).await.expect("suspend on leave");
    let st = keep.read(&legacy).await.unwrap().expect("kept");
    assert!(!st.enabled);
    assert!(st.entitlements.is_empty());

    // nothing printed anywhere carries the secret
    let dbg = format!("{c:?}");
    assert!(
        !dbg.contains(&moto.secret) && !dbg.contains(&moto.key_id),
        "{dbg}"
    );
}

/// Real IAM refuses DeleteUser (409 DeleteConflict) while the user has any access key, login
/// profile, SSH key, service-specific credential, signing certificate, MFA device, attached or
/// inline policy, or group. moto does not, so the order is checked on the recorded calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_leave_removes_everything_in_the_order_real_iam_requires() {
    let moto = start_moto().await;
    let c = moto.connector(|_| {});
    let policy_arn = setup_groups_and_policy(&c).await;
    let u = c
        .create_or_adopt(&spec("leaver", "Lee Ver", Some("lee@example.com")))
        .await
        .unwrap();
    let user = [("UserName", "leaver")];
    // two access keys, one already inactive
    for _ in 0..2 {
        c.call("CreateAccessKey", &user).await.unwrap();
    }
    c.call(
        "CreateLoginProfile",
        &[("UserName", "leaver"), ("Password", "Xx-Pass-w0rd!")],
    )
    .await
    .unwrap();
    // SSH public key and signing certificate from real key material
    let dir = Scratch::new("iam-keys");
    let key = dir.path().join("id");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let ssh = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    c.call(
        "UploadSSHPublicKey",
        &[("UserName", "leaver"), ("SSHPublicKeyBody", ssh.trim())],
    )
    .await
    .expect("ssh key");
    let cert = dir.path().join("cert.pem");
    assert!(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=leaver"
        ])
        .arg("-keyout")
        .arg(dir.path().join("cert.key"))
        .arg("-out")
        .arg(&cert)
        .status()
        .unwrap()
        .success());
    let cert = std::fs::read_to_string(cert).unwrap();
    c.call(
        "UploadSigningCertificate",
        &[("UserName", "leaver"), ("CertificateBody", &cert)],
    )
    .await
    .expect("signing cert");
    c.call(
        "CreateServiceSpecificCredential",
        &[
            ("UserName", "leaver"),
            ("ServiceName", "codecommit.amazonaws.com"),
        ],
    )
    .await
    .unwrap();
    // virtual MFA device, enabled for the user
    let mfa = c
        .call(
            "CreateVirtualMFADevice",
            &[("VirtualMFADeviceName", "leaver-mfa")],
        )
        .await
        .expect("mfa");
    let serial = xml_field(&mfa, "SerialNumber");
    c.call(
        "EnableMFADevice",
        &[
            ("UserName", "leaver"),
            ("SerialNumber", &serial),
            ("AuthenticationCode1", "123456"),
            ("AuthenticationCode2", "654321"),
        ],
    )
    .await
    .expect("enable mfa");
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#;
    c.call(
        "PutUserPolicy",
        &[
            ("UserName", "leaver"),
            ("PolicyName", "inline1"),
            ("PolicyDocument", doc),
        ],
    )
    .await
    .unwrap();
    c.grant(&u, &Entitlement::new("policy", policy_arn))
        .await
        .unwrap();
    c.grant(&u, &Entitlement::new("group", "engineering"))
        .await
        .unwrap();
    c.grant(&u, &Entitlement::new("group", "oncall"))
        .await
        .unwrap();

    let mark = moto.mark();
    c.delete(&u).await.expect("leave");
    let calls = moto.actions_since(mark);
    let names: Vec<&str> = calls.iter().map(|(a, _)| a.as_str()).collect();
    println!("leave sequence: {names:?}");
    assert_eq!(names.last(), Some(&"DeleteUser"), "DeleteUser comes last");
    assert_eq!(names.iter().filter(|a| **a == "DeleteUser").count(), 1);
    let count = |a: &str| names.iter().filter(|x| **x == a).count();
    // every dependent removed before DeleteUser
    assert_eq!(count("UpdateAccessKey"), 2);
    assert_eq!(count("DeleteAccessKey"), 2);
    for a in [
        "DeleteLoginProfile",
        "DeleteSSHPublicKey",
        "DeleteServiceSpecificCredential",
        "DeleteSigningCertificate",
        "DeactivateMFADevice",
        "DeleteVirtualMFADevice",
        "DetachUserPolicy",
        "DeleteUserPolicy",
    ] {
        assert_eq!(count(a), 1, "{a} in {names:?}");
    }
    assert_eq!(count("RemoveUserFromGroup"), 2);
    // keys are deactivated before any is deleted (access stops first)
    let last_update = names.iter().rposition(|a| *a == "UpdateAccessKey").unwrap();
    let first_delete = names.iter().position(|a| *a == "DeleteAccessKey").unwrap();
    assert!(last_update < first_delete, "{names:?}");
    // MFA deactivated before the virtual device is deleted
    assert!(
        names.iter().position(|a| *a == "DeactivateMFADevice")
            < names.iter().position(|a| *a == "DeleteVirtualMFADevice")
    );
    // and the state afterwards, read through IAM itself
    assert!(c.read(&u).await.unwrap().is_none());
    let e = c.call("GetUser", &user).await.unwrap_err();
    assert!(e.message.contains("NoSuchEntity"));
    let mfas = c.call("ListVirtualMFADevices", &[]).await.unwrap();
    assert!(!mfas.contains("leaver-mfa"), "{mfas}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_bad_credentials_are_permanent_and_never_printed() {
    let moto = start_moto().await;
    let wrong_secret = "wrong-secret-value-1234567890";
    let c = connector_with(&moto.proxy, &moto.key_id, wrong_secret, |_| {});
    let e = c.read(&AccountRef::new("anyone")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("SignatureDoesNotMatch"), "{e}");
    let text = format!("{e} {e:?} {c:?}");
    assert!(!text.contains(wrong_secret), "{text}");

    let unknown = "AKIAUNKNOWNKEY000000";
    let c = connector_with(&moto.proxy, unknown, &moto.secret, |_| {});
    let e = c.list_accounts(None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("InvalidClientTokenId"), "{e}");
    let text = format!("{e} {e:?} {c:?}");
    assert!(
        !text.contains(&moto.secret) && !text.contains(unknown),
        "{text}"
    );
}

#[tokio::test]
async fn iam_throttling_is_retryable_with_retry_after() {
    let body = r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
    let r = Responder::canned(400, &[("content-type", "text/xml")], body).await;
    let c = connector_with(&r, "AKIAEXAMPLE000000000", "s3cr3t-value", |_| {});
    let e = c.create_or_adopt(&spec("t", "T", None)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Retryable, "{e}");
    assert!(e.message.contains("Throttling"));
    // the request was signed for iam/us-east-1
    let req = &r.recorded()[0];
    let auth = req.header("authorization").unwrap();
    assert!(auth.contains("/us-east-1/iam/aws4_request"), "{auth}");
    assert_eq!(req.form("Action").as_deref(), Some("CreateUser"));
    assert_eq!(req.form("Path").as_deref(), Some(PATH));

    let r = Responder::canned(503, &[("retry-after", "7")], "").await;
    let c = connector_with(&r, "AKIAEXAMPLE000000000", "s3cr3t-value", |_| {});
    let e = c.list_accounts(None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Retryable);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn iam_read_follows_marker_pagination() {
    let handler = Arc::new(|req: &HttpRequest| {
        let action = req.form("Action").unwrap_or_default();
        let marker = req.form("Marker");
        let body = match (action.as_str(), marker.as_deref()) {
            ("GetUser", _) => "<GetUserResponse><GetUserResult><User><Path>/scimhub/</Path><UserName>p</UserName><UserId>AID</UserId><Arn>arn:aws:iam::1:user/scimhub/p</Arn></User></GetUserResult></GetUserResponse>".to_owned(),
            ("ListGroupsForUser", None) => "<R><ListGroupsForUserResult><Groups><member><GroupName>g1</GroupName></member></Groups><IsTruncated>true</IsTruncated><Marker>page-2</Marker></ListGroupsForUserResult></R>".to_owned(),
            ("ListGroupsForUser", Some("page-2")) => "<R><ListGroupsForUserResult><Groups><member><GroupName>g2</GroupName></member></Groups><IsTruncated>false</IsTruncated></ListGroupsForUserResult></R>".to_owned(),
            ("ListUsers", None) => "<R><ListUsersResult><Users><member><UserName>a</UserName><Arn>x</Arn><Path>/scimhub/</Path></member></Users><IsTruncated>true</IsTruncated><Marker>u2</Marker></ListUsersResult></R>".to_owned(),
            _ => "<R><Result><AttachedPolicies/><AccessKeyMetadata/><IsTruncated>false</IsTruncated></Result></R>".to_owned(),
        };
        Reply::Respond(200, vec![], body)
    });
    let r = Responder::start(handler).await;
    let c = connector_with(&r, "AKIAEXAMPLE000000000", "s3cr3t-value", |cfg| {
        cfg.page_size = 1
    });
    let st = c.read(&AccountRef::new("p")).await.unwrap().unwrap();
    let groups: Vec<&str> = st.entitlements.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(groups, vec!["g1", "g2"]);
    let lg: Vec<_> = r
        .recorded()
        .into_iter()
        .filter(|q| q.form("Action").as_deref() == Some("ListGroupsForUser"))
        .collect();
    assert_eq!(lg.len(), 2);
    assert_eq!(lg[0].form("MaxItems").as_deref(), Some("1"));
    assert_eq!(lg[1].form("Marker").as_deref(), Some("page-2"));
    let page = c.list_accounts(None).await.unwrap();
    assert_eq!(page.next.as_deref(), Some("u2"));
    assert_eq!(page.accounts[0].account.key, "a");
}

#[tokio::test]
async fn iam_call_times_out_as_retryable() {
    let addr = silent_listener().await;
    let mut cfg = AwsIamConfig::new(
        "aws-test",
        format!("http://{addr}/"),
        Secret::new("AKIAEXAMPLE000000000"),
        Secret::new("s3cr3t-value"),
    );
    cfg.timeout = Duration::from_millis(500);
    let c = AwsIamConnector::new(cfg).unwrap();
    let start = Instant::now();
    let e = c.read(&AccountRef::new("x")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Retryable, "{e}");
    assert!(e.message.contains("timed out"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Creates a user as someone else would (path, tags), outside the connector's rules.
async fn create_foreign(c: &AwsIamConnector, user: &str, path: &str, tags: &[(&str, &str)]) {
    let mut p: Vec<(String, String)> = vec![
        ("UserName".into(), user.into()),
        ("Path".into(), path.into()),
    ];
    for (i, (k, v)) in tags.iter().enumerate() {
        p.push((format!("Tags.member.{}.Key", i + 1), (*k).into()));
        p.push((format!("Tags.member.{}.Value", i + 1), (*v).into()));
    }
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    c.call("CreateUser", &p).await.expect("foreign user");
}

fn refused<T: std::fmt::Debug>(r: Result<T, connectors::ConnectorError>) -> String {
    let e = r.expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    e.message
}

/// Pre-existing users: `root` and configured globs are never adopted nor touched, users outside
/// the managed path or tagged by another owner are refused, an unowned suspended one inside the
/// path is adopted, marked and un-suspended; `never` refuses what the hub did not create,
/// `always` takes over another owner's user. Refused users read back unchanged from moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_adoption_is_scoped_marked_and_spares_protected_users() {
    let moto = start_moto().await;
    let c = moto.connector(|cfg| cfg.protected_accounts = vec!["BreakGlass-*".into()]);
    let eng = Entitlement::new("group", "engineering");
    setup_groups_and_policy(&c).await;
    create_foreign(&c, "root", PATH, &[]).await;
    create_foreign(&c, "breakglass-1", PATH, &[("Owner", "secops")]).await;
    create_foreign(&c, "ops-admin", "/admins/", &[]).await;
    create_foreign(&c, "other", PATH, &[("managed-by", "scimhub:other-hub")]).await;
    create_foreign(&c, "idle", PATH, &[(SUSPENDED_TAG, "true")]).await;
    let snapshot = |user: &'static str| {
        let c = &c;
        async move {
            let st = c.read(&AccountRef::new(user)).await.unwrap().expect(user);
            (
                st.attributes["tags"].clone(),
                st.attributes["path"].clone(),
                st.entitlements,
            )
        }
    };

    for user in ["root", "breakglass-1", "ops-admin", "other"] {
        let before = snapshot(user).await;
        let why = refused(c.create_or_adopt(&spec(user, "Mallory", None)).await);
        let acct = AccountRef::new(user);
        refused(c.update(&spec(user, "Mallory", None)).await);
        refused(c.set_enabled(&acct, false).await);
        refused(c.grant(&acct, &eng).await);
        refused(c.revoke_credentials(&acct).await);
        refused(c.delete(&acct).await);
        assert_eq!(snapshot(user).await, before, "{user} untouched");
        match user {
            "root" | "breakglass-1" => assert!(why.contains("protected"), "{why}"),
            "ops-admin" => assert!(why.contains("outside the scope"), "{why}"),
            _ => assert!(why.contains("another owner"), "{why}"),
        }
    }

    let idle = c
        .create_or_adopt(&spec("idle", "Ida Le", None))
        .await
        .expect("adopt unowned");
    let st = c.read(&idle).await.unwrap().unwrap();
    assert!(st.enabled, "adoption un-suspends");
    assert_eq!(st.attributes["tags"]["managed-by"], "scimhub:default");
    assert_eq!(st.attributes["displayName"], "Ida Le");

    let never = moto.connector(|cfg| cfg.adopt = Adopt::Never);
    create_foreign(&c, "legacy", PATH, &[]).await;
    let why = refused(never.create_or_adopt(&spec("legacy", "L", None)).await);
    assert!(why.contains("never"), "{why}");
    assert!(snapshot("legacy").await.0.get("managed-by").is_none());
    never
        .create_or_adopt(&spec("idle", "Ida Le", None))
        .await
        .expect("its own mark");

    let always = moto.connector(|cfg| cfg.adopt = Adopt::Always);
    always
        .create_or_adopt(&spec("other", "Taken Over", None))
        .await
        .expect("always adopts in scope");
    assert_eq!(snapshot("other").await.0["managed-by"], "scimhub:default");
    refused(always.create_or_adopt(&spec("ops-admin", "X", None)).await);
    refused(always.create_or_adopt(&spec("root", "X", None)).await);
}
