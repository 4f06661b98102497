//! The front door: an IO wrapper between the accepted connection and actix-http's HTTP/1 codec.
//!
//! actix-http answers a request head it cannot parse with a bare 400 or 431 and an empty body,
//! before any handler (and so before `http::error`) runs. SCIM clients expect an RFC 7644 §3.12
//! error body for every failure, and some send request-targets `http::Uri` refuses although their
//! meaning is plain (the Entra SCIM Validator sends `filter=userName+eq+"a%40b.com"` with raw
//! double quotes). [`FrontDoor`] follows HTTP/1.1 framing on the connection (each request head,
//! then its body by `Content-Length` or chunked coding, then the next pipelined head) and, per
//! head:
//!
//! * percent-encodes the bytes of the request-target that `http::Uri` (or httparse) would refuse
//!   but whose meaning is unambiguous ([`needs_encoding`]), so the request is served;
//! * answers itself, with a SCIM error and `Connection: close`, what actix would refuse: a request
//!   line over [`MAX_REQUEST_LINE`] (414), a head over [`MAX_HEAD`] or with more than
//!   [`MAX_HEADERS`] fields (431), a malformed request line, header or framing header (400
//!   `invalidSyntax`). Requests already passed on are answered first: actix sees end of input
//!   after them, finishes them, and shuts the connection down, and the error is written then.
//!
//! Only heads (and chunk-size lines) are scanned and copied; body bytes are read straight into
//! actix's buffer. HTTP/2 prior-knowledge connections, `CONNECT` and upgrades pass through
//! untouched, and so does the rest of a connection whose body framing the scanner does not
//! understand (actix then refuses it itself). The wrapper is generic over the IO type so TLS can
//! sit underneath later.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::ApiError;

/// The longest request line accepted (after percent-encoding): 414 beyond.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;
/// The largest request head accepted (after percent-encoding): 431 beyond. Below actix-http's
/// own 128 KiB read-buffer limit, so actix never refuses a head this layer passed on.
pub const MAX_HEAD: usize = 120 * 1024;
/// The most header fields accepted: actix-http's own limit (431 beyond).
pub const MAX_HEADERS: usize = 96;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
/// How much is read at a time while a head (or chunk framing) is being collected.
const READ_CHUNK: usize = 8 * 1024;

/// Why a request head is answered here instead of being passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request line is longer than [`MAX_REQUEST_LINE`].
    UriTooLong,
    /// The head is larger than [`MAX_HEAD`].
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    TooManyHeaders,
    /// The request line, a header line or a framing header cannot be parsed.
    Malformed(&'static str),
}

impl Refusal {
    /// The SCIM error for this refusal (mapped in `http::error`).
    pub fn to_api_error(&self) -> ApiError {
        match self {
            Refusal::UriTooLong => ApiError::UriTooLong(format!(
                "The request line is longer than {MAX_REQUEST_LINE} bytes; send long filters \
                 with POST .search (RFC 7644 §3.4.3)."
            )),
            Refusal::HeadTooLarge => ApiError::HeaderFieldsTooLarge(format!(
                "The request head is larger than {MAX_HEAD} bytes."
            )),
            Refusal::TooManyHeaders => ApiError::HeaderFieldsTooLarge(format!(
                "The request has more than {MAX_HEADERS} header fields."
            )),
            Refusal::Malformed(why) => ApiError::Scim(scim_schema::Error::InvalidSyntax(format!(
                "Malformed HTTP request: {why}."
            ))),
        }
    }

    /// The whole HTTP/1.1 response: status line, SCIM JSON body, `Connection: close`.
    pub fn response(&self) -> Vec<u8> {
        let err = self.to_api_error();
        let status = actix_web::ResponseError::status_code(&err);
        let body = serde_json::to_vec(&err.body()).unwrap_or_default();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            super::error::SCIM_JSON,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

/// Bytes of a request-target that are percent-encoded before actix sees them: each is refused
/// by `http::Uri` in the path or the query (or both), none has a meaning in a request-target
/// other than itself. `#` is among them: a request-target carries no fragment (RFC 9112 §3.2),
/// and `http::Uri` would otherwise cut the query there.
#[inline]
pub fn needs_encoding(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'#' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' | 0x80..=0xFF
    )
}

/// Where the scanner is in the byte stream of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first request: an HTTP/2 preface passes through.
    Start,
    /// Collecting a request head.
    Head,
    /// A `Content-Length` body with this many bytes left.
    Length(u64),
    /// A chunked body.
    Chunked(Chunk, u64),
    /// Everything from here on goes to actix unread.
    Passthrough,
    /// A head was refused: actix gets end of input, the refusal is written at shutdown.
    Refused,
}

/// The chunked-coding states, the same as actix-http's decoder (so both agree where a body
/// ends); `u64` beside it in [`State::Chunked`] is the current chunk's size or what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    SizeFirst,
    SizeRest,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    /// The body ended with the last byte.
    Done,
}

/// What the scanner made of the bytes it was given.
#[derive(Debug, Default)]
pub struct Scanner {
    state: StateCell,
    /// Bytes read but not yet scanned (an incomplete head or chunk line).
    pending: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct StateCell(State);

impl Default for StateCell {
    fn default() -> Self {
        StateCell(State::Start)
    }
}

impl Scanner {
    /// Body bytes that may be handed to actix without looking at them (0 when the scanner
    /// must see the next bytes first).
    pub fn opaque_bytes(&self) -> u64 {
        if !self.pending.is_empty() {
            return 0;
        }
        match self.state.0 {
            State::Length(n) => n,
            State::Chunked(Chunk::Data, n) => n,
            State::Passthrough => u64::MAX,
            _ => 0,
        }
    }

    /// Records that `n` opaque bytes (at most [`Self::opaque_bytes`]) went to actix unscanned.
    pub fn skip(&mut self, n: u64) {
        match &mut self.state.0 {
            State::Length(left) => {
                *left -= n;
                if *left == 0 {
                    self.state.0 = State::Head;
                }
            }
            State::Chunked(c, left) => {
                *left -= n;
                if *left == 0 {
                    *c = Chunk::DataCr;
                }
            }
            _ => {}
        }
    }

    /// Whether a head was refused (then no more input is passed on).
    pub fn refused(&self) -> bool {
        self.state.0 == State::Refused
    }

    /// Scans `input`, appending what actix should read to `out`. Returns the refusal when a head
    /// is refused; bytes after it are dropped.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<Refusal> {
        if self.refused() {
            return None;
        }
        let owned;
        let mut input: &[u8] = if self.pending.is_empty() {
            input
        } else {
            self.pending.extend_from_slice(input);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        while !input.is_empty() {
            match self.state.0 {
                State::Start => {
                    let n = input.len().min(H2_PREFACE.len());
                    if input[..n] != H2_PREFACE[..n] {
                        self.state.0 = State::Head;
                    } else if n == H2_PREFACE.len() {
                        self.state.0 = State::Passthrough;
                    } else {
                        self.pending.extend_from_slice(input);
                        return None;
                    }
                }
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return None;
                }
                State::Refused => return None,
                State::Head => match scan_head(input, out) {
                    HeadScan::Incomplete => {
                        self.pending.extend_from_slice(input);
                        return None;
                    }
                    HeadScan::Refused(r) => {
                        self.state.0 = State::Refused;
                        return Some(r);
                    }
                    HeadScan::Complete { consumed, body } => {
                        input = &input[consumed..];
                        self.state.0 = match body {
                            Body::None => State::Head,
                            Body::Length(n) => State::Length(n),
                            Body::Chunked => State::Chunked(Chunk::SizeFirst, 0),
                            Body::Stream => State::Passthrough,
                        };
                    }
                },
                State::Length(left) => {
                    let n = (input.len() as u64).min(left) as usize;
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.skip(n as u64);
                }
                State::Chunked(Chunk::Data, left) => {
                    let n = (input.len() as u64).min(left) as usize;
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.skip(n as u64);
                }
                State::Chunked(chunk, size) => {
                    let b = input[0];
                    input = &input[1..];
                    out.push(b);
                    self.state.0 = match chunk_step(chunk, size, b) {
                        Some((Chunk::Done, _)) => State::Head,
                        Some((c, s)) => State::Chunked(c, s),
                        // actix refuses this body itself; from here on the scanner cannot tell
                        // where requests start, so it stops reading the connection.
                        None => State::Passthrough,
                    };
                }
            }
        }
        None
    }
}

/// One byte of chunked framing (the body bytes themselves are skipped in bulk). `None` for a
/// byte actix's decoder refuses.
fn chunk_step(state: Chunk, size: u64, b: u8) -> Option<(Chunk, u64)> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    };
    Some(match state {
        Chunk::SizeFirst => (Chunk::SizeRest, hex(b)?),
        Chunk::SizeRest => match b {
            b'\t' | b' ' => (Chunk::SizeLws, size),
            b';' => (Chunk::Extension, size),
            b'\r' => (Chunk::SizeLf, size),
            _ => (Chunk::SizeRest, size.checked_mul(16)?.checked_add(hex(b)?)?),
        },
        Chunk::SizeLws => match b {
            b'\t' | b' ' => (Chunk::SizeLws, size),
            b';' => (Chunk::Extension, size),
            b'\r' => (Chunk::SizeLf, size),
            _ => return None,
        },
        Chunk::Extension => match b {
            b'\r' => (Chunk::SizeLf, size),
            0x00..=0x08 | 0x0a..=0x1f | 0x7f => return None,
            _ => (Chunk::Extension, size),
        },
        Chunk::SizeLf => match (b, size) {
            (b'\n', 0) => (Chunk::EndCr, 0),
            (b'\n', n) => (Chunk::Data, n),
            _ => return None,
        },
        // Data bytes are copied in bulk by `Scanner::feed`, never stepped one by one.
        Chunk::Data | Chunk::Done => return None,
        Chunk::DataCr => (b == b'\r').then_some((Chunk::DataLf, 0))?,
        Chunk::DataLf => (b == b'\n').then_some((Chunk::SizeFirst, 0))?,
        Chunk::Trailer => match b {
            b'\r' => (Chunk::TrailerLf, 0),
            _ => (Chunk::Trailer, 0),
        },
        Chunk::TrailerLf => (b == b'\n').then_some((Chunk::EndCr, 0))?,
        Chunk::EndCr => match b {
            b'\r' => (Chunk::EndLf, 0),
            _ => (Chunk::Trailer, 0),
        },
        Chunk::EndLf => (b == b'\n').then_some((Chunk::Done, 0))?,
    })
}

enum HeadScan {
    Incomplete,
    Refused(Refusal),
    Complete { consumed: usize, body: Body },
}

enum Body {
    None,
    Length(u64),
    Chunked,
    /// Read to the end of the connection (CONNECT, upgrades): not scanned any more.
    Stream,
}

/// Looks for one complete request head at the start of `input`; when there is one, appends it
/// (with its request-target percent-encoded where needed) to `out`.
fn scan_head(input: &[u8], out: &mut Vec<u8>) -> HeadScan {
    // RFC 9112 §2.2: empty lines before a request line are ignored (httparse skips them too).
    let skipped = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(input.len());
    let rest = &input[skipped..];
    if rest.is_empty() {
        return HeadScan::Incomplete;
    }
    let Some(line_end) = memchr_lf(rest) else {
        return if rest.len() > MAX_REQUEST_LINE {
            HeadScan::Refused(Refusal::UriTooLong)
        } else {
            HeadScan::Incomplete
        };
    };
    let line = &rest[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // method SP request-target SP HTTP-version (RFC 9112 §3)
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return HeadScan::Refused(Refusal::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    let extra = target.iter().filter(|&&b| needs_encoding(b)).count() * 2;
    if line.len() + extra > MAX_REQUEST_LINE {
        return HeadScan::Refused(Refusal::UriTooLong);
    }
    let Some(head_len) = find_head_end(rest, line_end) else {
        return if rest.len() + extra > MAX_HEAD {
            HeadScan::Refused(Refusal::HeadTooLarge)
        } else {
            HeadScan::Incomplete
        };
    };
    if head_len + extra > MAX_HEAD {
        return HeadScan::Refused(Refusal::HeadTooLarge);
    }
    let start = out.len();
    if extra == 0 {
        out.extend_from_slice(&rest[..head_len]);
    } else {
        out.reserve(head_len + extra);
        out.extend_from_slice(method);
        out.push(b' ');
        for &b in target {
            if needs_encoding(b) {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            } else {
                out.push(b);
            }
        }
        out.push(b' ');
        out.extend_from_slice(&rest[line.len() - version.len()..head_len]);
    }
    match check_head(&out[start..]) {
        Ok(body) => HeadScan::Complete {
            consumed: skipped + head_len,
            body,
        },
        Err(r) => {
            out.truncate(start);
            HeadScan::Refused(r)
        }
    }
}

fn memchr_lf(s: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', s)
}

/// The length of the head (through the empty line) when it is complete; `line_end` is the
/// position of the request line's `\n`.
fn find_head_end(s: &[u8], line_end: usize) -> Option<usize> {
    let mut i = line_end;
    // Each header line ends in `\n`; the head ends at a line that is empty or just `\r`.
    loop {
        let next = i + 1;
        match s.get(next..)? {
            [b'\n', ..] => return Some(next + 1),
            [b'\r', b'\n', ..] => return Some(next + 2),
            [b'\r'] | [] => return None,
            rest => i = next + memchr_lf(rest)?,
        }
    }
}

/// Parses a complete head the way actix-http does and decides how its body is framed. Every
/// refusal here is one actix would otherwise answer with an empty 400 or 431.
fn check_head(head: &[u8]) -> Result<Body, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(httparse::Status::Complete(_)) => return Err(Refusal::Malformed("invalid header line")),
        Ok(httparse::Status::Partial) => return Err(Refusal::Malformed("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooManyHeaders),
        Err(httparse::Error::Version) => {
            return Err(Refusal::Malformed("unsupported HTTP version"))
        }
        Err(httparse::Error::Token) => return Err(Refusal::Malformed("invalid method")),
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(Refusal::Malformed("invalid header line"))
        }
        Err(_) => return Err(Refusal::Malformed("invalid request line")),
    }
    let path = req.path.unwrap_or_default();
    if actix_web::http::Uri::try_from(path).is_err() {
        return Err(Refusal::Malformed("invalid request-target"));
    }
    let http11 = req.version == Some(1);
    let method = req.method.unwrap_or_default();
    let mut content_length: Option<u64> = None;
    let (mut chunked, mut seen_te, mut seen_host, mut upgrade) = (false, false, false, false);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).ok().map(str::trim);
        if h.name.eq_ignore_ascii_case("content-length") {
            let len = value
                .filter(|v| !v.starts_with('+'))
                .and_then(|v| v.parse::<u64>().ok());
            match (content_length, len) {
                (None, Some(n)) => content_length = Some(n),
                (Some(_), _) => return Err(Refusal::Malformed("more than one Content-Length")),
                (None, None) => return Err(Refusal::Malformed("invalid Content-Length")),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if seen_te {
                return Err(Refusal::Malformed("more than one Transfer-Encoding"));
            }
            seen_te = true;
            if !http11 {
                return Err(Refusal::Malformed(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            // actix-http accepts exactly `chunked` (and refuses `identity` alone).
            if !value.is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                return Err(Refusal::Malformed("Transfer-Encoding other than chunked"));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("host") {
            if seen_host {
                return Err(Refusal::Malformed("more than one Host"));
            }
            seen_host = true;
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if http11 && !seen_host {
        return Err(Refusal::Malformed("HTTP/1.1 request without Host"));
    }
    if chunked && content_length.is_some() {
        return Err(Refusal::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if !http11 && method == "POST" && content_length.is_none() {
        return Err(Refusal::Malformed("HTTP/1.0 POST without Content-Length"));
    }
    Ok(if upgrade || method == "CONNECT" {
        // The server upgrades nothing; whatever actix makes of it, this layer stops reading.
        Body::Stream
    } else if chunked {
        Body::Chunked
    } else {
        match content_length {
            Some(n) if n > 0 => Body::Length(n),
            _ => Body::None,
        }
    })
}

/// The front door's head limits for a request that did not come through the scanner (HTTP/2,
/// whose heads are HPACK-compressed frames that only actix's h2 dispatcher decodes): the same
/// refusal, and so the same SCIM error, as an HTTP/1 head of that size would get.
/// `request_line` is the length of `METHOD target`, `head` the request line plus every field.
pub fn check_head_limits(request_line: usize, fields: usize, head: usize) -> Option<Refusal> {
    if request_line > MAX_REQUEST_LINE {
        Some(Refusal::UriTooLong)
    } else if fields > MAX_HEADERS {
        Some(Refusal::TooManyHeaders)
    } else if head > MAX_HEAD {
        Some(Refusal::HeadTooLarge)
    } else {
        None
    }
}

/// The accepted connection seen through the scanner (see the module documentation).
#[derive(Debug)]
pub struct FrontDoor<T> {
    io: T,
    scanner: Scanner,
    /// Scanned bytes actix has not read yet, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// Read buffer for heads and chunk lines.
    read_buf: Vec<u8>,
    /// The refusal response, written when actix shuts the connection down.
    refusal: Option<Vec<u8>>,
    refusal_pos: usize,
    /// After a refusal: how long, and how much more, the rest of the request is read and
    /// dropped, so that closing with unread input (a TCP reset) does not destroy the response
    /// before the client reads it.
    linger: Option<Linger>,
    write_shut: bool,
}

#[derive(Debug)]
struct Linger {
    until: Pin<Box<tokio::time::Sleep>>,
    left: usize,
}

/// How long and how much a refused connection's remaining input is drained before closing.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

impl<T> FrontDoor<T> {
    pub fn new(io: T) -> Self {
        FrontDoor {
            io,
            scanner: Scanner::default(),
            out: Vec::new(),
            out_pos: 0,
            read_buf: Vec::new(),
            refusal: None,
            refusal_pos: 0,
            linger: None,
            write_shut: false,
        }
    }

    /// The wrapped connection (for its peer address and socket options).
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FrontDoor<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.scanner.refused() || buf.remaining() == 0 {
                // End of input for actix: it answers what it has and shuts down.
                return Poll::Ready(Ok(()));
            }
            let opaque = this.scanner.opaque_bytes();
            if opaque > 0 {
                // Body bytes go straight into actix's buffer, never past the body's end.
                let n = (buf.remaining() as u64).min(opaque) as usize;
                let dst = buf.initialize_unfilled_to(n);
                let mut sub = ReadBuf::new(dst);
                ready!(Pin::new(&mut this.io).poll_read(cx, &mut sub))?;
                let got = sub.filled().len();
                buf.advance(got);
                this.scanner.skip(got as u64);
                return Poll::Ready(Ok(()));
            }
            this.read_buf.resize(READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut this.read_buf);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            let got = rb.filled().len();
            if got == 0 {
                // The client closed: whatever is pending is an incomplete head, which actix
                // would drop without an answer too.
                return Poll::Ready(Ok(()));
            }
            if let Some(refusal) = this.scanner.feed(&this.read_buf[..got], &mut this.out) {
                tracing::info!(?refusal, "request head refused before routing");
                this.refusal = Some(refusal.response());
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FrontDoor<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // actix has answered every request it was given; the refusal comes after them.
        if let Some(resp) = &this.refusal {
            while this.refusal_pos < resp.len() {
                let n = ready!(Pin::new(&mut this.io).poll_write(cx, &resp[this.refusal_pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                this.refusal_pos += n;
            }
            ready!(Pin::new(&mut this.io).poll_flush(cx))?;
            this.refusal = None;
            this.linger = Some(Linger {
                until: Box::pin(tokio::time::sleep(LINGER_TIME)),
                left: LINGER_BYTES,
            });
        }
        if !this.write_shut {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.write_shut = true;
        }
        if let Some(linger) = &mut this.linger {
            let mut scratch = [0u8; 4096];
            loop {
                let mut rb = ReadBuf::new(&mut scratch);
                match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if !rb.filled().is_empty() && linger.left > 0 => {
                        linger.left = linger.left.saturating_sub(rb.filled().len());
                    }
                    // End of input, an error, or enough drained: close now.
                    Poll::Ready(_) => break,
                    Poll::Pending => {
                        if linger.until.as_mut().poll(cx).is_ready() {
                            break;
                        }
                        return Poll::Pending;
                    }
                }
            }
            this.linger = None;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
