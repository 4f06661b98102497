//! Test support for the stand-ins: scratch directories, free ports, child processes that are
//! stopped when dropped, and tiny local TCP/HTTP responders (throttling, timeouts, recording
//! proxies). The stand-ins themselves are installed by `install.sh` beside this file into
//! `$SCIMHUB_STANDINS_HOME` (default `~/.cache/scimhub-standins`).
#![allow(dead_code, clippy::unwrap_used, clippy::print_stdout)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub mod stacks;

/// Where `install.sh` put moto, node, prism, emulate and the trimmed GitHub spec.
pub fn standins_home() -> PathBuf {
    if let Ok(d) = std::env::var("SCIMHUB_STANDINS_HOME") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/scimhub-standins")
}

/// Panics with the install instruction when a stand-in is missing (tests never skip silently).
pub fn require(path: &Path, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run `bash connectors/tests/support_standins/install.sh` first",
        path.display()
    );
    path.to_path_buf()
}

pub fn require_bin(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: run `bash connectors/tests/support_standins/install.sh` first");
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller starts its server right away and
/// checks that its own process answers).
pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("scimhub-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SCIMHUB_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process in its own process group; dropping it stops it by its id.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` in a new process group with stdout+stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.into(),
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Panics with the log unless `ready()` turns true within `timeout` while the process lives.
    pub fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if !self.alive() {
                panic!("{} exited early:\n{}", self.name, self.log_tail());
            }
            if ready() {
                eprintln!("{} ready in {:?}", self.name, start.elapsed());
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{} not ready after {timeout:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM to the child's own id only (never a group or -1), then SIGKILL
        let pid = self.child.id();
        if pid > 1 && self.alive() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) && self.alive() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when something accepts TCP connections on 127.0.0.1:port.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Plain HTTP GET with std only (readiness probes); returns (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_owned())?;
    Some((status, body))
}

// ---- tiny HTTP responders ---------------------------------------------------------------------

/// One HTTP/1.1 request as received.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    /// A form field of an `application/x-www-form-urlencoded` body.
    pub fn form(&self, key: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_string())
    }
}

/// What a responder does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// status, extra headers, body
    Respond(u16, Vec<(String, String)>, String),
    /// forward the request verbatim (plus `Connection: close`) to 127.0.0.1:port
    Forward(u16),
    /// forward to 127.0.0.1:port with another method and path
    ForwardAs(u16, String, String),
    /// never answer
    Hang,
}

pub type Handler = Arc<dyn Fn(&HttpRequest) -> Reply + Send + Sync>;

/// A local HTTP server: every request goes through `handler`; all are recorded.
#[derive(Clone)]
pub struct Responder {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<HttpRequest>>>,
    /// `(method path, response head)` of every forwarded request
    pub responses: Arc<Mutex<Vec<(String, String)>>>,
}

impl Responder {
    pub async fn start(handler: Handler) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let responses: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
        let rec = requests.clone();
        let resp_rec = responses.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let rec = rec.clone();
                let resp_rec = resp_rec.clone();
                tokio::spawn(async move {
                    while let Some((req, raw_head)) = read_request(&mut sock).await {
                        rec.lock().unwrap().push(req.clone());
                        let reply = match handler(&req) {
                            Reply::Forward(port) => {
                                Reply::ForwardAs(port, req.method.clone(), req.path.clone())
                            }
                            other => other,
                        };
                        match reply {
                            Reply::Respond(status, headers, body) => {
                                let mut head = format!(
                                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n",
                                    body.len()
                                );
                                for (k, v) in headers {
                                    head.push_str(&format!("{k}: {v}\r\n"));
                                }
                                head.push_str("\r\n");
                                if sock.write_all(head.as_bytes()).await.is_err()
                                    || sock.write_all(body.as_bytes()).await.is_err()
                                {
                                    return;
                                }
                            }
                            Reply::ForwardAs(port, method, path) => {
                                let Ok(mut up) = TcpStream::connect(("127.0.0.1", port)).await
                                else {
                                    return;
                                };
                                let mut head = format!("{method} {path} HTTP/1.1\r\n");
                                for line in raw_head.split("\r\n").skip(1) {
                                    if line.to_ascii_lowercase().starts_with("connection:")
                                        || line.is_empty()
                                    {
                                        continue;
                                    }
                                    head.push_str(line);
                                    head.push_str("\r\n");
                                }
                                head.push_str("Connection: close\r\n\r\n");
                                if up.write_all(head.as_bytes()).await.is_err()
                                    || up.write_all(&req.body).await.is_err()
                                {
                                    return;
                                }
                                let mut resp = Vec::new();
                                let _ = up.read_to_end(&mut resp).await;
                                let end = find(&resp, b"\r\n\r\n").unwrap_or(resp.len());
                                resp_rec.lock().unwrap().push((
                                    format!("{} {}", req.method, req.path),
                                    String::from_utf8_lossy(&resp[..end]).to_string(),
                                ));
                                let _ = sock.write_all(&resp).await;
                                return; // upstream said close; so do we
                            }
                            Reply::Forward(_) => return,
                            Reply::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Responder {
            addr,
            requests,
            responses,
        }
    }

    /// A server that always gives the same answer.
    pub async fn canned(status: u16, headers: &[(&str, &str)], body: &str) -> Responder {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = body.to_owned();
        Responder::start(Arc::new(move |_| {
            Reply::Respond(status, headers.clone(), body.clone())
        }))
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn recorded(&self) -> Vec<HttpRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// A listener that accepts connections and never answers (for timeouts).
pub async fn silent_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr
}

async fn read_request(sock: &mut TcpStream) -> Option<(HttpRequest, String)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let mut parts = first.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    body.truncate(len);
    Some((
        HttpRequest {
            method,
            path,
            headers,
            body,
        },
        head,
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
