#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::*;

/// Feeds `input` in pieces cut at `cuts`, and simulates the IO wrapper: whenever the scanner
/// says bytes are opaque, they are passed on without `feed` (as `poll_read` does).
fn run(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<Refusal>) {
    let mut scanner = Scanner::default();
    let mut out = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    let mut pos = 0;
    for end in bounds {
        while pos < end {
            let opaque = scanner.opaque_bytes();
            if opaque > 0 {
                let n = ((end - pos) as u64).min(opaque) as usize;
                out.extend_from_slice(&input[pos..pos + n]);
                scanner.skip(n as u64);
                pos += n;
            } else {
                if let Some(r) = scanner.feed(&input[pos..end], &mut out) {
                    return (out, Some(r));
                }
                pos = end;
            }
        }
    }
    (out, None)
}

fn whole(input: &[u8]) -> (Vec<u8>, Option<Refusal>) {
    run(input, &[])
}

const GET: &[u8] = b"GET /Users HTTP/1.1\r\nHost: h\r\n\r\n";

#[test]
fn a_plain_head_passes_unchanged() {
    assert_eq!(whole(GET), (GET.to_vec(), None));
}

#[test]
fn raw_quotes_in_the_query_are_percent_encoded() {
    let (out, r) =
        whole(b"GET /Users?filter=userName+eq+\"a%40b.com\" HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r, None);
    assert_eq!(
        out,
        b"GET /Users?filter=userName+eq+%22a%40b.com%22 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()
    );
}

#[test]
fn which_bytes_http_uri_refuses() {
    use actix_web::http::Uri;
    let parses = |t: &[u8]| Uri::try_from(t).is_ok();
    // In the query: `"`, `<`, `>` and bytes >= 0x80 are refused; `#` starts a fragment (dropped).
    for b in [b'"', b'<', b'>', 0x80, 0xFF] {
        assert!(!parses(&[b"/Users?f=".as_slice(), &[b]].concat()), "{b:#x}");
    }
    for b in [b'\\', b'^', b'`', b'{', b'|', b'}'] {
        assert!(parses(&[b"/Users?f=".as_slice(), &[b]].concat()), "{b:#x}");
    }
    let cut = Uri::try_from(&b"/Users?f=a#b"[..]).unwrap();
    assert_eq!(cut.query(), Some("f=a"));
    // In the path: `<`, `>`, backtick and bytes >= 0x80 are refused.
    for b in [b'<', b'>', b'`', 0x80] {
        assert!(!parses(&[b"/Users/".as_slice(), &[b]].concat()), "{b:#x}");
    }
}

#[test]
fn every_byte_needing_encoding_is_encoded_and_the_result_parses() {
    for b in (0u8..=255).filter(|&b| needs_encoding(b)) {
        for prefix in [&b"/Users/"[..], &b"/Users?filter="[..]] {
            let mut head = b"GET ".to_vec();
            head.extend_from_slice(prefix);
            head.push(b);
            head.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
            let (out, r) = whole(&head);
            assert_eq!(r, None, "byte {b:#x} after {prefix:?}");
            let encoded = format!("{}%{b:02X} ", String::from_utf8_lossy(prefix));
            assert!(
                out.windows(encoded.len()).any(|w| w == encoded.as_bytes()),
                "byte {b:#x}: {}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}

#[test]
fn content_length_bodies_are_skipped_and_pipelined_heads_found() {
    let input = b"POST /Users HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nGET /xGET /a\"b HTTP/1.1\r\nHost: h\r\n\r\n";
    let (out, r) = whole(input);
    assert_eq!(r, None);
    // The body `GET /x` must not be rewritten as a head; the next head is.
    let expected = b"POST /Users HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nGET /xGET /a%22b HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(out, expected.to_vec());
}

const CHUNKED: &[u8] = b"POST /Users HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
5;name=\"v\"\r\n\"x\"<>\r\nA \r\n0123456789\r\n0\r\nX-Trailer: \"q\"\r\n\r\n";

#[test]
fn chunked_bodies_with_extensions_and_trailers_end_where_actix_ends_them() {
    let mut input = CHUNKED.to_vec();
    input.extend_from_slice(b"GET /a\"b HTTP/1.1\r\nHost: h\r\n\r\n");
    let (out, r) = whole(&input);
    assert_eq!(r, None);
    let mut expected = CHUNKED.to_vec();
    expected.extend_from_slice(b"GET /a%22b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(out, expected);
}

#[test]
fn bad_chunk_framing_passes_the_rest_through_untouched() {
    let input = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /\"";
    let (out, r) = whole(input);
    assert_eq!(r, None);
    assert_eq!(out, input.to_vec());
}

#[test]
fn a_malformed_second_request_is_refused_after_the_first_is_passed_on() {
    let mut input = GET.to_vec();
    input.extend_from_slice(b"GARBAGE\r\n\r\n");
    let (out, r) = whole(&input);
    assert_eq!(out, GET.to_vec());
    assert!(matches!(r, Some(Refusal::Malformed(_))), "{r:?}");
}

#[test]
fn refusals() {
    let long = format!(
        "GET /Users?filter={} HTTP/1.1\r\nHost: h\r\n\r\n",
        "a".repeat(100_000)
    );
    assert_eq!(whole(long.as_bytes()).1, Some(Refusal::UriTooLong));
    // Known as soon as the line passes the limit, without waiting for its end.
    assert_eq!(
        whole(&long.as_bytes()[..MAX_REQUEST_LINE + 1]).1,
        Some(Refusal::UriTooLong)
    );
    // Encoding counts: 30,000 quotes become 90,000 bytes.
    let quotes = format!(
        "GET /?f={} HTTP/1.1\r\nHost: h\r\n\r\n",
        "\"".repeat(30_000)
    );
    assert_eq!(whole(quotes.as_bytes()).1, Some(Refusal::UriTooLong));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
    assert_eq!(whole(many.as_bytes()).1, Some(Refusal::TooManyHeaders));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "v".repeat(200_000)
    );
    assert_eq!(whole(big.as_bytes()).1, Some(Refusal::HeadTooLarge));
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\nHost: h\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nbad header\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.0\r\n\r\n",
    ] {
        assert!(
            matches!(whole(bad).1, Some(Refusal::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn http2_prior_knowledge_passes_through() {
    let input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\"<>";
    for cut in 0..input.len() {
        assert_eq!(run(input, &[cut]), (input.to_vec(), None), "cut at {cut}");
    }
}

#[test]
fn the_refusal_is_a_scim_error_response() {
    let resp = String::from_utf8(Refusal::UriTooLong.response()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{resp}");
    assert!(resp.contains("content-type: application/scim+json\r\n"));
    assert!(resp.contains("connection: close\r\n"));
    let body: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(body["status"], "414");
    assert!(body.get("scimType").is_none());
    let resp = String::from_utf8(Refusal::Malformed("x").response()).unwrap();
    assert!(resp.contains("\"scimType\":\"invalidSyntax\""), "{resp}");
    assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"));
}

fn corpus() -> Vec<u8> {
    let mut input = b"\r\n".to_vec();
    input.extend_from_slice(GET);
    input.extend_from_slice(CHUNKED);
    input.extend_from_slice(
        b"PUT /Users/1 HTTP/1.1\r\nHost: h\r\ncontent-length: 12\r\n\r\n{\"a\":\"<>#\"}",
    );
    input.extend_from_slice(b"GET /Users?filter=userName eq \"x\"&x=` HTTP/1.1\r\nHost: h\r\n\r\n");
    input.extend_from_slice(b"DELETE /Users/\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n");
    input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\nbad header\r\n\r\nGET / HTTP/1.1\r\n");
    input
}

#[test]
fn every_single_split_gives_the_same_result() {
    let input = corpus();
    let expected = whole(&input);
    assert!(matches!(expected.1, Some(Refusal::Malformed(_))));
    for cut in 0..=input.len() {
        assert_eq!(run(&input, &[cut]), expected, "cut at {cut}");
    }
}

proptest! {
    #[test]
    fn any_splits_give_the_same_result(cuts in proptest::collection::vec(0usize..400, 0..12)) {
        let input = corpus();
        prop_assert_eq!(run(&input, &cuts), whole(&input));
    }
}

/// An IO that hands out its input a few bytes at a time and records what is written.
struct Trickle {
    input: Vec<u8>,
    pos: usize,
    step: usize,
    written: Vec<u8>,
    shut: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .step
            .min(self.input.len() - self.pos)
            .min(buf.remaining());
        let pos = self.pos;
        buf.put_slice(&self.input[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.shut = true;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn the_wrapper_reads_what_the_scanner_says_and_writes_the_refusal_at_shutdown() {
    let input = corpus();
    let (expected, refusal) = whole(&input);
    for step in [1, 3, 7, 64, 100_000] {
        let mut door = FrontDoor::new(Trickle {
            input: input.clone(),
            pos: 0,
            step,
            written: Vec::new(),
            shut: false,
        });
        let mut got = Vec::new();
        door.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, expected, "step {step}");
        door.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        door.shutdown().await.unwrap();
        let io = door.get_ref();
        assert!(io.shut);
        let mut written = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        written.extend_from_slice(&refusal.clone().unwrap().response());
        assert_eq!(
            io.written, written,
            "the refusal comes after actix's answers"
        );
    }
}

/// How long scanning one typical request head takes (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn bench_head_scan() {
    let head =
        b"GET /scim/v2/Users?filter=userName%20eq%20%22bjensen%40example.com%22 HTTP/1.1\r\n\
Host: scim.example.com\r\nAuthorization: Bearer 0123456789abcdef0123456789abcdef\r\n\
Accept: application/scim+json\r\nUser-Agent: Microsoft.Identity.Provisioning\r\n\
Accept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n";
    let n = 200_000;
    let mut out = Vec::with_capacity(head.len());
    let start = std::time::Instant::now();
    let mut scanner = Scanner::default();
    for _ in 0..n {
        out.clear();
        assert!(scanner.feed(head, &mut out).is_none());
    }
    let per = start.elapsed() / n;
    eprintln!("head of {} bytes: {per:?} per head", head.len());
}
