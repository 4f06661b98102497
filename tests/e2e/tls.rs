//! Built-in HTTPS: a SCIM round trip over TLS, certificate reload on SIGHUP and on file change
//! (a new connection sees the new certificate while an open keep-alive connection goes on),
//! HTTP/2 through ALPN with SCIM errors for bad input, and plain HTTP refused off loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

use crate::harness::{Backend, TestApp, SCIM_JSON, TOKEN};

/// A throw-away certificate authority the test clients trust.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate signed by [`Ca`]: PEM texts and the DER the client will see.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "scimhub test CA");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn leaf(&self, cn: &str, serial: u64) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }

    fn reqwest_client(&self, http2: bool) -> reqwest::blocking::Client {
        let builder = reqwest::blocking::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.issuer.pem().as_bytes()).unwrap(),
            )
            .timeout(Duration::from_secs(30));
        let builder = if http2 { builder } else { builder.http1_only() };
        builder.build().unwrap()
    }
}

fn write_pair(dir: &Path, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    // Each file replaced by a rename, as a certificate manager does.
    for (path, text) in [(&key, &leaf.key_pem), (&cert, &leaf.cert_pem)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    (cert, key)
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scimhub-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_https(backend: Backend, cert: &Path, key: &Path, config: &str) -> Option<TestApp> {
    TestApp::builder(backend)
        .arg("--tls-cert")
        .arg(cert.to_str().unwrap())
        .arg("--tls-key")
        .arg(key.to_str().unwrap())
        .config(config)
        .start()
}

/// A keep-alive HTTP/1.1 connection over rustls, driven by hand so the test knows which
/// connection each request uses.
struct RawTls {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl RawTls {
    fn connect(addr: &str, roots: rustls::RootCertStore) -> RawTls {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        RawTls { stream }
    }

    fn peer_leaf(&self) -> CertificateDer<'static> {
        self.stream.conn.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }

    /// Sends a GET and reads one response: status and body.
    fn get(&mut self, path: &str) -> (u16, String) {
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        .unwrap();
        self.stream.flush().unwrap();
        self.read_response()
    }

    fn read_response(&mut self) -> (u16, String) {
        let mut reader = BufReader::new(&mut self.stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn sighup(app: &TestApp) {
    let status = Command::new("kill")
        .args(["-HUP", &app.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Polls new connections until one is served `want` (a reload is asynchronous).
#[track_caller]
fn await_certificate(app: &TestApp, ca: &Ca, want: &Leaf, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = RawTls::connect(&app.addr, ca.roots()).peer_leaf();
        if seen == want.der {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: new connections still get the old certificate; log: {}",
            app.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn https_round_trip_and_reload(backend: Backend) {
    let dir = temp_dir();
    let ca = Ca::new();
    let a = ca.leaf("scimhub-a", 1);
    let (cert, key) = write_pair(&dir, &a);
    let Some(app) = start_https(backend, &cert, &key, "[tls]\nreload_check_secs = 1\n") else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
        return;
    };
    let client = ca.reqwest_client(false);
    let base = format!("https://localhost:{}", app.addr.rsplit(':').next().unwrap());

    // A SCIM round trip over HTTPS; meta.location says https.
    let created: Value = client
        .post(format!("{base}/scim/v2/Users"))
        .bearer_auth(TOKEN)
        .header("content-type", SCIM_JSON)
        .body(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "tls.user"})
                .to_string(),
        )
        .send()
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["meta"]["location"],
        format!("{base}/scim/v2/Users/{id}"),
        "{created}"
    );
    let read: Value = client
        .get(format!("{base}/scim/v2/Users/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(read["userName"], "tls.user");
    // The front door's SCIM errors hold over TLS: an oversized request line is a SCIM 414.
    let mut raw = RawTls::connect(&app.addr, ca.roots());
    let (status, body) = raw.get(&format!("/scim/v2/Users?filter={}", "a".repeat(70 * 1024)));
    assert_eq!(status, 414);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );

    // A keep-alive connection opened on certificate A.
    let mut kept = RawTls::connect(&app.addr, ca.roots());
    assert!(kept.peer_leaf() == a.der);
    let (status, body) = kept.get(&format!("/scim/v2/Users/{id}"));
    assert_eq!(status, 200, "{body}");

    // SIGHUP after the files are replaced: new connections get B, the open one goes on.
    let b = ca.leaf("scimhub-b", 2);
    write_pair(&dir, &b);
    sighup(&app);
    await_certificate(&app, &ca, &b, "after SIGHUP");
    let (status, body) = kept.get(&format!("/scim/v2/Users/{id}"));
    assert_eq!(status, 200, "the kept connection after the reload: {body}");
    assert!(kept.peer_leaf() == a.der);

    // A broken certificate is refused and B stays in force.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    sighup(&app);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.log().contains("TLS certificate reload rejected") {
        assert!(
            Instant::now() < deadline,
            "no rejection logged: {}",
            app.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let still = RawTls::connect(&app.addr, ca.roots());
    assert!(still.peer_leaf() == b.der, "the previous certificate stays");

    // A file change alone (no signal) is picked up too.
    let c = ca.leaf("scimhub-c", 3);
    write_pair(&dir, &c);
    await_certificate(&app, &ca, &c, "after a file change");
    let (status, _) = kept.get("/scim/v2/ServiceProviderConfig");
    assert_eq!(status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn https_round_trip_and_certificate_reload_sqlite() {
    https_round_trip_and_reload(Backend::Sqlite);
}

#[test]
fn https_round_trip_and_certificate_reload_postgres() {
    https_round_trip_and_reload(Backend::Postgres);
}

#[test]
fn http2_is_negotiated_and_answers_scim_errors() {
    let dir = temp_dir();
    let ca = Ca::new();
    let leaf = ca.leaf("scimhub-h2", 7);
    let (cert, key) = write_pair(&dir, &leaf);
    let app = start_https(Backend::Sqlite, &cert, &key, "max_body_bytes = 4096\n").unwrap();
    let client = ca.reqwest_client(true);
    let base = format!(
        "https://localhost:{}/scim/v2",
        app.addr.rsplit(':').next().unwrap()
    );
    let scim_error = |r: reqwest::blocking::Response, status: u16| -> Value {
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status().as_u16(), status);
        let body: Value = r.json().unwrap();
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{body}"
        );
        body
    };

    let r = client
        .get(format!("{base}/Users"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .post(format!("{base}/Users"))
        .bearer_auth(TOKEN)
        .header("content-type", SCIM_JSON)
        .body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "h2.user"}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status().as_u16(), 201);

    // Bad input over h2 gets the SCIM errors HTTP/1 gets.
    let r = client
        .post(format!("{base}/Users"))
        .bearer_auth(TOKEN)
        .header("content-type", SCIM_JSON)
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(scim_error(r, 400)["scimType"], "invalidSyntax");
    let r = client
        .post(format!("{base}/Users"))
        .bearer_auth(TOKEN)
        .header("content-type", SCIM_JSON)
        .body(format!("{{\"userName\": \"{}\"}}", "x".repeat(8192)))
        .send()
        .unwrap();
    scim_error(r, 413);
    let r = client
        .get(format!("{base}/Users"))
        .bearer_auth(TOKEN)
        .header("x-large", "a".repeat(130 * 1024))
        .send()
        .unwrap();
    scim_error(r, 431);
    let mut rb = client.get(format!("{base}/Users")).bearer_auth(TOKEN);
    for i in 0..100 {
        rb = rb.header(format!("x-extra-{i}"), "1");
    }
    scim_error(rb.send().unwrap(), 431);
    let r = client
        .get(format!("{base}/Users"))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .unwrap();
    scim_error(r, 401);
    let _ = std::fs::remove_dir_all(&dir);
}

fn serve_on(bind: &str, extra: &[&str], dir: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_scimhub"))
        .args(["serve", "--bind", bind, "--database-url"])
        .arg(format!("sqlite://{}", dir.join("hub.db").display()))
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SCIMHUB_BOOTSTRAP_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn plain_http_is_refused_off_loopback_without_the_flag() {
    let dir = temp_dir();
    let out = serve_on("0.0.0.0:0", &[], &dir).wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to serve plain HTTP"), "{err}");
    assert!(err.contains("--allow-plain-http"), "{err}");

    // With the flag it serves.
    let mut child = serve_on("0.0.0.0:0", &["--allow-plain-http"], &dir);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening on 0.0.0.0:"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}
