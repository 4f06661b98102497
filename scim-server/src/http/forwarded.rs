//! Behind a reverse proxy: which forwarded headers are believed, and from whom.
//!
//! `[http] trusted_proxies` lists the peers (addresses or CIDR ranges) whose forwarded headers
//! are used. Only when the TCP peer is one of them does the hub read
//!
//! * `Forwarded` (RFC 7239, its first element: `proto=` and `host=`), else `X-Forwarded-Proto`
//!   and `X-Forwarded-Host` (their first value): the scheme and host of `meta.location`,
//!   `Location` and every URL the discovery endpoints print ([`origin`]);
//! * `X-Forwarded-For` (else the `for=` values of `Forwarded`): the client address the rate
//!   limiter counts and the request log names ([`client_ip`]), taken as the right-most address
//!   that is not itself a trusted proxy (the left-most entries are whatever the client sent).
//!
//! Every other peer's forwarded headers are ignored: the scheme is that of the listener (`https`
//! with built-in TLS), the host that of the `Host` header (or HTTP/2 `:authority`), and the client
//! address the peer's. A forwarded value that is not a plain scheme, host or address is ignored
//! too, so a header cannot put arbitrary text into a URL.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::{HeaderMap, HOST};
use actix_web::HttpRequest;
use ipnet::IpNet;

/// The trusted proxies, parsed once at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `["10.0.0.0/8", "192.0.2.7", "::1"]`; the error names the entry.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|entry| {
                let e = entry.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "[http] trusted_proxies: {entry:?} is neither an IP address nor a \
                             CIDR range (e.g. \"10.0.0.0/8\")"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is a trusted proxy (an IPv4-mapped IPv6 address counts as its IPv4 form).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The scheme and host a client addressed, for the URLs the hub prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
}

/// The first element of `Forwarded`, as `(name, value)` pairs with quotes removed.
fn forwarded_first(headers: &HeaderMap) -> Vec<(String, String)> {
    let Some(value) = headers.get("forwarded").and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    let first = value.split(',').next().unwrap_or_default();
    first
        .split(';')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            ))
        })
        .collect()
}

/// The first comma-separated value of a header.
fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn plain_scheme(s: &str) -> Option<String> {
    let s = s.to_ascii_lowercase();
    (s == "http" || s == "https").then_some(s)
}

/// A host (and port) made only of the characters a host can hold.
fn plain_host(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then(|| s.to_string())
}

/// The scheme and host of a request: forwarded values from a trusted peer, else the
/// connection's own (`secure` is the listener's TLS; `fallback_host` serves requests without a
/// host).
pub fn origin_of(
    proxies: &TrustedProxies,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    authority: Option<&str>,
    secure: bool,
    fallback_host: &str,
) -> Origin {
    let trusted = peer.is_some_and(|p| proxies.trusts(p.ip()));
    let (mut scheme, mut host) = (None, None);
    if trusted {
        let forwarded = forwarded_first(headers);
        let param = |name: &str| {
            forwarded
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        scheme = param("proto")
            .or_else(|| first_value(headers, "x-forwarded-proto"))
            .and_then(plain_scheme);
        host = param("host")
            .or_else(|| first_value(headers, "x-forwarded-host"))
            .and_then(plain_host);
    }
    let scheme = scheme.unwrap_or_else(|| if secure { "https" } else { "http" }.to_string());
    let host = host
        .or_else(|| {
            headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .and_then(plain_host)
        })
        .or_else(|| authority.and_then(plain_host))
        .unwrap_or_else(|| fallback_host.to_string());
    Origin { scheme, host }
}

/// An address of `X-Forwarded-For` or a `for=` value: `192.0.2.1`, `192.0.2.1:4711`,
/// `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// The client address of a request: the peer's, or, when the peer is a trusted proxy, the
/// right-most forwarded address that is not a trusted proxy itself.
pub fn client_ip_of(
    proxies: &TrustedProxies,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let peer = peer?.ip();
    if !proxies.trusts(peer) {
        return Some(peer);
    }
    let mut chain: Vec<String> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if chain.is_empty() {
        chain = headers
            .get_all("forwarded")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| v.trim().to_string())
                })
            })
            .collect();
    }
    let mut client = peer;
    for node in chain.iter().rev() {
        let Some(ip) = parse_node(node) else { break };
        client = ip;
        if !proxies.trusts(ip) {
            break;
        }
    }
    Some(client)
}

fn proxies(req: &HttpRequest) -> TrustedProxies {
    req.app_data::<actix_web::web::Data<super::AppState>>()
        .map(|s| s.trusted_proxies.clone())
        .unwrap_or_default()
}

/// [`origin_of`] for a request.
pub fn origin(req: &HttpRequest) -> Origin {
    let config = req.app_config();
    origin_of(
        &proxies(req),
        req.peer_addr(),
        req.headers(),
        req.uri().authority().map(|a| a.as_str()),
        config.secure(),
        config.host(),
    )
}

/// [`client_ip_of`] for a request.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    client_ip_of(&proxies(req), req.peer_addr(), req.headers())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap()
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    #[test]
    fn entries_are_addresses_or_ranges() {
        let p = proxies();
        assert!(p.trusts("10.1.2.3".parse().unwrap()));
        assert!(p.trusts("192.0.2.7".parse().unwrap()));
        assert!(p.trusts("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!p.trusts("192.0.2.8".parse().unwrap()));
        let e = TrustedProxies::parse(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(e.contains("10.0.0.0/33"), "{e}");
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let h = headers(&[
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "scim.example.com"),
        ]);
        let trusted = origin_of(&proxies(), peer("10.0.0.5"), &h, None, false, "fb");
        assert_eq!(
            trusted,
            Origin {
                scheme: "https".into(),
                host: "scim.example.com".into()
            }
        );
        let untrusted = origin_of(&proxies(), peer("203.0.113.9"), &h, None, false, "fb");
        assert_eq!(
            untrusted,
            Origin {
                scheme: "http".into(),
                host: "10.0.0.5:8080".into()
            }
        );
        // Nothing trusted by default.
        let none = origin_of(
            &TrustedProxies::default(),
            peer("10.0.0.5"),
            &h,
            None,
            true,
            "fb",
        );
        assert_eq!(none.scheme, "https");
        assert_eq!(none.host, "10.0.0.5:8080");
    }

    #[test]
    fn rfc7239_forwarded_wins_and_odd_values_are_ignored() {
        let h = headers(&[
            ("host", "internal:8080"),
            (
                "forwarded",
                "for=198.51.100.1;proto=https;host=\"id.example.org\", for=10.0.0.2",
            ),
            ("x-forwarded-host", "other.example"),
        ]);
        let o = origin_of(&proxies(), peer("10.0.0.5"), &h, None, false, "fb");
        assert_eq!(o.scheme, "https");
        assert_eq!(o.host, "id.example.org");
        let h = headers(&[
            ("host", "internal:8080"),
            ("x-forwarded-proto", "javascript"),
            ("x-forwarded-host", "evil.example/path?x"),
        ]);
        let o = origin_of(&proxies(), peer("10.0.0.5"), &h, None, false, "fb");
        assert_eq!(o.scheme, "http");
        assert_eq!(o.host, "internal:8080");
        // HTTP/2: no Host header, the :authority.
        let o = origin_of(
            &proxies(),
            peer("203.0.113.1"),
            &HeaderMap::new(),
            Some("h2.example:8443"),
            true,
            "fb",
        );
        assert_eq!(o.host, "h2.example:8443");
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let p = proxies();
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.1, 10.0.0.9")]);
        assert_eq!(
            client_ip_of(&p, peer("10.0.0.5"), &h),
            Some("198.51.100.1".parse().unwrap())
        );
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client_ip_of(&p, peer("203.0.113.9"), &h),
            Some("203.0.113.9".parse().unwrap())
        );
        let h = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\", for=10.0.0.2")]);
        assert_eq!(
            client_ip_of(&p, peer("10.0.0.5"), &h),
            Some("2001:db8::1".parse().unwrap())
        );
        // Garbage stops the walk at the last address that parsed.
        let h = headers(&[("x-forwarded-for", "198.51.100.1, unknown, 10.0.0.9")]);
        assert_eq!(
            client_ip_of(&p, peer("10.0.0.5"), &h),
            Some("10.0.0.9".parse().unwrap())
        );
        assert_eq!(
            client_ip_of(&p, peer("10.0.0.5"), &HeaderMap::new()),
            Some("10.0.0.5".parse().unwrap())
        );
    }
}
