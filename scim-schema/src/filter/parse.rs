//! The nom 8 parser for RFC 7644 §3.4.2.2 filters (with errata 4690) and §3.5.2 PATCH paths.
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"   ; plus plain "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! logExp    = FILTER SP ("and" / "or") SP FILTER
//! compValue = false / null / true / number / string                  ; RFC 7159
//! attrPath  = [URI ":"] ATTRNAME *1subAttr
//! ATTRNAME  = ALPHA *(nameChar)  /  "$ref"
//! PATH      = attrPath / valuePath [subAttr]                           ; PATCH (§3.5.2)
//! ```
//!
//! Precedence is `not` > `and` > `or`, and `and`/`or` associate to the left, so
//! `a and b or c` is `(a and b) or c`. Operators, `and`/`or`/`not` and `true`/`false`/`null` are
//! case-insensitive. Whitespace between tokens may be any run of spaces, tabs or line breaks, and
//! `not(` is accepted without a space.
//!
//! Decisions beyond the ABNF:
//!
//! * A URN prefix must start with `urn:` and ends at the last `:` before the attribute name
//!   (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`).
//! * Value paths cannot nest (`a[b[c pr]]`) and cannot carry a sub-attribute before the bracket
//!   (`emails.value[...]`): multi-valued complex attributes have no complex sub-attributes
//!   (RFC 7643 §2.3.8).
//! * Limits: inputs longer than [`MAX_INPUT_LEN`] bytes and nesting (parentheses, `not`, brackets)
//!   deeper than [`MAX_DEPTH`] are rejected, so no input can exhaust the stack. Chains of
//!   `and`/`or` are parsed iteratively (no recursion per clause).
//!
//! Errors are `Error::InvalidFilter` for filters and `Error::InvalidPath` for paths; the message
//! names what was expected and the byte offset where parsing stopped.

use std::borrow::Cow;

use nom::bytes::complete::{tag_no_case, take_while};
use nom::character::complete::multispace0;
use nom::error::{ErrorKind, ParseError};
use nom::IResult;

use super::ast::{AttrPath, CompValue, CompareOp, Filter, PatchPath};
use crate::error::Error;
use crate::name::CiString;

/// Maximum nesting of parentheses, `not` and value-path brackets.
pub const MAX_DEPTH: usize = 64;

/// Maximum length of a filter or path, in bytes.
pub const MAX_INPUT_LEN: usize = 16 * 1024;

/// Parses a `filter` query parameter (RFC 7644 §3.4.2.2). Errors are [`Error::InvalidFilter`].
pub fn parse_filter(input: &str) -> Result<Filter, Error> {
    parse_filter_as(input, FilterSyntax::Rfc7644)
}

/// Which filter grammar to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterSyntax {
    /// RFC 7644 §3.4.2.2 as written.
    #[default]
    Rfc7644,
    /// RFC 7644 plus a comparison on a value path's sub-attribute,
    /// `emails[type eq "work"].value eq "x"` (Entra ID's SCIM Validator and provisioning send
    /// it), read as `emails[type eq "work" and value eq "x"]`. The RFC grammar has no such form,
    /// so accepting it changes the meaning of no valid filter.
    ValuePathSubAttr,
}

/// [`parse_filter`] with a choice of grammar.
pub fn parse_filter_as(input: &str, syntax: FilterSyntax) -> Result<Filter, Error> {
    let top = match syntax {
        FilterSyntax::Rfc7644 => filter_top,
        FilterSyntax::ValuePathSubAttr => filter_top_value_path_sub_attr,
    };
    run(input, "filter", top).map_err(Error::InvalidFilter)
}

/// Parses one attribute path as used by `attributes`, `excludedAttributes` and `sortBy`
/// (`userName`, `name.givenName`, `urn:…:enterprise:2.0:User:manager.value`).
/// Errors are [`Error::InvalidPath`].
pub fn parse_attr_path(input: &str) -> Result<AttrPath, Error> {
    run(input, "attribute path", attr_path).map_err(Error::InvalidPath)
}

/// Parses a PATCH operation `path` (RFC 7644 §3.5.2): `attrPath`, `valuePath` or
/// `valuePath.subAttr` (`emails[type eq "work"].value`). Errors are [`Error::InvalidPath`].
pub fn parse_patch_path(input: &str) -> Result<PatchPath, Error> {
    run(input, "PATCH path", patch_path).map_err(Error::InvalidPath)
}

// ---------------------------------------------------------------------------------------------
// Driver and errors
// ---------------------------------------------------------------------------------------------

/// A parse error: where (the unparsed rest of the input) and what was expected.
#[derive(Debug)]
struct PErr<'a> {
    rest: &'a str,
    msg: Cow<'static, str>,
}

impl<'a> PErr<'a> {
    fn new(rest: &'a str, msg: impl Into<Cow<'static, str>>) -> Self {
        PErr {
            rest,
            msg: msg.into(),
        }
    }
}

impl<'a> ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, kind: ErrorKind) -> Self {
        let msg = match kind {
            ErrorKind::Tag => "unexpected token",
            ErrorKind::Eof => "unexpected end of input",
            _ => "unexpected input",
        };
        PErr::new(input, msg)
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, T> = IResult<&'a str, T, PErr<'a>>;

/// A recoverable error (the caller may try something else).
fn backtrack<'a, T>(rest: &'a str, msg: &'static str) -> Res<'a, T> {
    Err(nom::Err::Error(PErr::new(rest, msg)))
}

/// An unrecoverable error: the input is definitely invalid here.
fn fail<T>(rest: &str, msg: impl Into<Cow<'static, str>>) -> Res<'_, T> {
    Err(nom::Err::Failure(PErr::new(rest, msg)))
}

/// Turns a recoverable error into an unrecoverable one (after a commitment point).
fn cut<T>(r: Res<'_, T>) -> Res<'_, T> {
    match r {
        Err(nom::Err::Error(e)) => Err(nom::Err::Failure(e)),
        other => other,
    }
}

fn run<'a, T>(input: &'a str, what: &str, parser: fn(&'a str) -> Res<'a, T>) -> Result<T, String> {
    if input.len() > MAX_INPUT_LEN {
        return Err(format!(
            "{what} is {} bytes long; the maximum is {MAX_INPUT_LEN}",
            input.len()
        ));
    }
    let at = |rest: &str| input.len() - rest.len();
    let (rest, _) = ws0(input).map_err(|_| format!("invalid {what}"))?;
    if rest.is_empty() {
        return Err(format!("{what} is empty"));
    }
    match parser(rest) {
        Ok((rest, value)) => {
            let (rest, _) = ws0(rest).map_err(|_| format!("invalid {what}"))?;
            if rest.is_empty() {
                Ok(value)
            } else {
                Err(format!(
                    "invalid {what}: unexpected {} at byte {}",
                    describe(rest),
                    at(rest)
                ))
            }
        }
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(format!(
            "invalid {what}: {} at byte {} (found {})",
            e.msg,
            at(e.rest),
            describe(e.rest)
        )),
        Err(nom::Err::Incomplete(_)) => Err(format!("invalid {what}: unexpected end of input")),
    }
}

/// What the parser found at `rest`, for error messages. Input text is not echoed: filters carry
/// values (emails, names) that should not end up in logs through error messages.
fn describe(rest: &str) -> &'static str {
    match rest.chars().next() {
        None => "end of input",
        Some('"') => "a string",
        Some('(' | ')' | '[' | ']') => "a bracket",
        Some(c) if c.is_ascii_digit() || c == '-' => "a number",
        Some(c) if c.is_alphabetic() || c == '$' => "a word",
        Some(c) if c.is_whitespace() => "whitespace",
        Some(_) => "a symbol",
    }
}

// ---------------------------------------------------------------------------------------------
// Lexical helpers
// ---------------------------------------------------------------------------------------------

fn ws0(i: &str) -> Res<'_, &str> {
    multispace0(i)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Characters of an attribute path token: name characters, `.` for sub-attributes, `:` and a few
/// URN characters for the schema prefix, `$` for `$ref`.
fn is_path_char(c: char) -> bool {
    is_name_char(c) || matches!(c, '.' | ':' | '$' | '+' | '%')
}

/// A case-insensitive keyword that must not run on into a name (`and` but not `andrew`).
fn keyword<'a>(i: &'a str, kw: &'static str) -> Res<'a, &'a str> {
    let (rest, k) = tag_no_case(kw)(i)?;
    match rest.chars().next() {
        Some(c) if is_name_char(c) => backtrack(i, "unexpected token"),
        _ => Ok((rest, k)),
    }
}

fn expect_char<'a>(i: &'a str, c: char, msg: &'static str) -> Res<'a, ()> {
    match i.strip_prefix(c) {
        Some(rest) => Ok((rest, ())),
        None => fail(i, msg),
    }
}

// ---------------------------------------------------------------------------------------------
// Attribute paths
// ---------------------------------------------------------------------------------------------

/// `ATTRNAME = ALPHA *(nameChar)`, or `$ref`.
fn valid_attr_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => chars.all(is_name_char),
        Some('$') => s.eq_ignore_ascii_case("$ref"),
        _ => false,
    }
}

/// `attrPath = [URI ":"] ATTRNAME *1subAttr`.
fn attr_path(i: &str) -> Res<'_, AttrPath> {
    let (rest, token) = take_while(is_path_char)(i)?;
    if token.is_empty() {
        return backtrack(i, "expected an attribute path");
    }
    let (urn, local) = match token.rfind(':') {
        Some(pos) => {
            let urn = &token[..pos];
            if urn.len() < 4 || !urn[..4].eq_ignore_ascii_case("urn:") {
                return fail(i, "a schema prefix must be a URN starting with \"urn:\"");
            }
            (Some(urn), &token[pos + 1..])
        }
        None => (None, token),
    };
    let local_at = &i[token.len() - local.len()..];
    let (name, sub) = match local.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (local, None),
    };
    if !valid_attr_name(name) {
        return fail(
            local_at,
            "expected an attribute name (a letter followed by letters, digits, '-' or '_')",
        );
    }
    if let Some(sub) = sub {
        if !valid_attr_name(sub) {
            let sub_at = &local_at[name.len() + 1..];
            let msg = if sub.contains('.') {
                "only one level of sub-attribute is allowed"
            } else {
                "expected a sub-attribute name after '.'"
            };
            return fail(sub_at, msg);
        }
    }
    let path = AttrPath {
        urn: urn.map(CiString::from),
        name: CiString::from(name),
        sub_attr: sub.map(CiString::from),
    };
    Ok((rest, path))
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// What the filter parsers pass down: whether they are inside `[...]`, and the grammar.
#[derive(Debug, Clone, Copy)]
struct Cx {
    in_brackets: bool,
    syntax: FilterSyntax,
}

fn filter_top(i: &str) -> Res<'_, Filter> {
    or_expr(
        i,
        0,
        Cx {
            in_brackets: false,
            syntax: FilterSyntax::Rfc7644,
        },
    )
}

fn filter_top_value_path_sub_attr(i: &str) -> Res<'_, Filter> {
    or_expr(
        i,
        0,
        Cx {
            in_brackets: false,
            syntax: FilterSyntax::ValuePathSubAttr,
        },
    )
}

/// `or`-separated `and` expressions, folded to the left.
fn or_expr(i: &str, depth: usize, cx: Cx) -> Res<'_, Filter> {
    let (mut i, mut left) = and_expr(i, depth, cx)?;
    while let Some(rest) = logical(i, "or") {
        let (rest, right) = cut(and_expr(rest, depth, cx))?;
        left = Filter::Or(Box::new(left), Box::new(right));
        i = rest;
    }
    Ok((i, left))
}

/// `and`-separated unary expressions, folded to the left.
fn and_expr(i: &str, depth: usize, cx: Cx) -> Res<'_, Filter> {
    let (mut i, mut left) = unary(i, depth, cx)?;
    while let Some(rest) = logical(i, "and") {
        let (rest, right) = cut(unary(rest, depth, cx))?;
        left = Filter::And(Box::new(left), Box::new(right));
        i = rest;
    }
    Ok((i, left))
}

/// After an operand: optional whitespace, the keyword, then whitespace or `(`. Returns the input
/// after the keyword and its trailing whitespace. (Every operand already ends at a token
/// boundary: `1and`, `trueand` and `prand` are rejected by the value and operator parsers.)
fn logical<'a>(i: &'a str, kw: &'static str) -> Option<&'a str> {
    let (after_ws, _) = ws0(i).ok()?;
    let (rest, _) = keyword(after_ws, kw).ok()?;
    let (rest, ws_after) = ws0(rest).ok()?;
    if ws_after.is_empty() && !rest.starts_with('(') {
        return None;
    }
    Some(rest)
}

fn deeper(i: &str, depth: usize) -> Res<'_, usize> {
    if depth >= MAX_DEPTH {
        fail(i, format!("nesting is deeper than {MAX_DEPTH} levels"))
    } else {
        Ok((i, depth + 1))
    }
}

/// `not (FILTER)`, `(FILTER)`, a value path or an attribute expression.
fn unary(i: &str, depth: usize, cx: Cx) -> Res<'_, Filter> {
    // `not` followed by `(`; otherwise `not` is an attribute name.
    if let Ok((rest, _)) = keyword(i, "not") {
        let (rest, _) = ws0(rest)?;
        if rest.starts_with('(') {
            let (_, depth) = deeper(i, depth)?;
            let (rest, inner) = group(rest, depth, cx)?;
            return Ok((rest, Filter::Not(Box::new(inner))));
        }
    }
    if i.starts_with('(') {
        let (_, depth) = deeper(i, depth)?;
        return group(i, depth, cx);
    }
    attr_expr(i, depth, cx)
}

/// `"(" FILTER ")"`, with `i` at the `(`.
fn group(i: &str, depth: usize, cx: Cx) -> Res<'_, Filter> {
    let (rest, ()) = expect_char(i, '(', "expected '('")?;
    let (rest, _) = ws0(rest)?;
    let (rest, inner) = cut(or_expr(rest, depth, cx))?;
    let (rest, _) = ws0(rest)?;
    let (rest, ()) = expect_char(rest, ')', "expected ')' or a logical operator (and, or)")?;
    Ok((rest, inner))
}

/// `attrPath "[" valFilter "]"`, `attrPath SP "pr"` or `attrPath SP compareOp SP compValue`.
fn attr_expr(i: &str, depth: usize, cx: Cx) -> Res<'_, Filter> {
    let (rest, path) = match attr_path(i) {
        Ok(ok) => ok,
        Err(nom::Err::Error(_)) => {
            return fail(i, "expected an attribute path, 'not (' or '('");
        }
        Err(e) => return Err(e),
    };
    if rest.starts_with('[') {
        if cx.in_brackets {
            return fail(rest, "value paths cannot be nested");
        }
        if path.sub_attr.is_some() {
            return fail(rest, "a value path cannot follow a sub-attribute");
        }
        let (rest, filter) = value_filter(rest, depth, cx.syntax)?;
        if cx.syntax == FilterSyntax::ValuePathSubAttr && rest.starts_with('.') {
            // `emails[type eq "work"].value eq "x"`: the comparison joins the bracket's filter.
            let (rest, sub) = sub_attr_comparison(&rest[1..])?;
            let filter = Filter::And(Box::new(filter), Box::new(sub));
            return Ok((
                rest,
                Filter::ValuePath {
                    path,
                    filter: Box::new(filter),
                },
            ));
        }
        return Ok((
            rest,
            Filter::ValuePath {
                path,
                filter: Box::new(filter),
            },
        ));
    }
    comparison(rest, path)
}

/// `subAttr SP compareOp SP compValue` or `subAttr SP "pr"` after a value path's `].`.
fn sub_attr_comparison(i: &str) -> Res<'_, Filter> {
    let end = i.find(|c: char| !is_name_char(c)).unwrap_or(i.len());
    let name = &i[..end];
    if !valid_attr_name(name) {
        return fail(i, "expected a sub-attribute name after ']. '");
    }
    comparison(&i[end..], AttrPath::simple(name))
}

/// `SP compareOp SP compValue` or `SP "pr"` after an attribute path.
fn comparison(rest: &str, path: AttrPath) -> Res<'_, Filter> {
    let (rest, ws) = ws0(rest)?;
    if ws.is_empty() {
        return fail(
            rest,
            "expected whitespace and an operator after the attribute path",
        );
    }
    let (rest, op) = match compare_op(rest) {
        Ok(ok) => ok,
        Err(_) => {
            return fail(
                rest,
                "expected an operator (eq, ne, co, sw, ew, gt, lt, ge, le, pr)",
            );
        }
    };
    let Some(op) = op else {
        return Ok((rest, Filter::Present(path)));
    };
    let (rest, ws) = ws0(rest)?;
    if ws.is_empty() && !rest.starts_with('"') {
        return fail(rest, "expected whitespace and a value after the operator");
    }
    let (rest, value) = comp_value(rest)?;
    Ok((rest, Filter::Compare { path, op, value }))
}

/// `"[" valFilter "]"`, with `i` at the `[`.
fn value_filter(i: &str, depth: usize, syntax: FilterSyntax) -> Res<'_, Filter> {
    let (_, depth) = deeper(i, depth)?;
    let (rest, ()) = expect_char(i, '[', "expected '['")?;
    let (rest, _) = ws0(rest)?;
    let cx = Cx {
        in_brackets: true,
        syntax,
    };
    let (rest, filter) = cut(or_expr(rest, depth, cx))?;
    let (rest, _) = ws0(rest)?;
    let (rest, ()) = expect_char(rest, ']', "expected ']' or a logical operator (and, or)")?;
    Ok((rest, filter))
}

/// A comparison operator, or `None` for `pr`.
fn compare_op(i: &str) -> Res<'_, Option<CompareOp>> {
    let word_end = i.find(|c: char| !is_name_char(c)).unwrap_or(i.len());
    let word = &i[..word_end];
    let op = if word.len() != 2 {
        return backtrack(i, "expected an operator");
    } else if word.eq_ignore_ascii_case("pr") {
        None
    } else {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "lt" => CompareOp::Lt,
            "ge" => CompareOp::Ge,
            "le" => CompareOp::Le,
            _ => return backtrack(i, "expected an operator"),
        })
    };
    Ok((&i[word_end..], op))
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// `compValue = false / null / true / number / string`.
fn comp_value(i: &str) -> Res<'_, CompValue> {
    match i.as_bytes().first() {
        Some(b'"') => {
            let (rest, s) = string(i)?;
            Ok((rest, CompValue::Str(s)))
        }
        Some(b'-' | b'0'..=b'9') => number(i),
        Some(_) => {
            if let Ok((rest, _)) = keyword(i, "true") {
                Ok((rest, CompValue::Bool(true)))
            } else if let Ok((rest, _)) = keyword(i, "false") {
                Ok((rest, CompValue::Bool(false)))
            } else if let Ok((rest, _)) = keyword(i, "null") {
                Ok((rest, CompValue::Null))
            } else {
                fail(
                    i,
                    "expected a value (a quoted string, number, true, false or null)",
                )
            }
        }
        None => fail(
            i,
            "expected a value (a quoted string, number, true, false or null)",
        ),
    }
}

/// A JSON number (RFC 7159 §6): `-? (0 / [1-9][0-9]*) [. [0-9]+] [(e/E) [+/-] [0-9]+]`.
fn number(i: &str) -> Res<'_, CompValue> {
    let b = i.as_bytes();
    let mut n = 0;
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    if b.first() == Some(&b'-') {
        n += 1;
    }
    let int = digits(n);
    if int == 0 {
        return fail(&i[n..], "expected digits in the number");
    }
    if int > 1 && b[n] == b'0' {
        return fail(&i[n..], "numbers cannot have leading zeros");
    }
    n += int;
    if b.get(n) == Some(&b'.') {
        let frac = digits(n + 1);
        if frac == 0 {
            return fail(&i[n + 1..], "expected digits after the decimal point");
        }
        n += 1 + frac;
    }
    if matches!(b.get(n), Some(b'e' | b'E')) {
        n += 1;
        if matches!(b.get(n), Some(b'+' | b'-')) {
            n += 1;
        }
        let exp = digits(n);
        if exp == 0 {
            return fail(&i[n..], "expected digits in the exponent");
        }
        n += exp;
    }
    if i[n..].starts_with(is_path_char) {
        return fail(&i[n..], "unexpected character after the number");
    }
    match to_number(&i[..n]) {
        Some(num) => Ok((&i[n..], CompValue::Number(num))),
        None => fail(i, "number out of range"),
    }
}

/// A validated JSON number as a `serde_json::Number`: integers as `u64`/`i64` when they fit,
/// everything else as a correctly rounded `f64` (Rust's parser, so printing with the shortest
/// representation and parsing again gives the same value).
fn to_number(text: &str) -> Option<serde_json::Number> {
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(u) = text.parse::<u64>() {
            return Some(u.into());
        }
        if let Ok(n) = text.parse::<i64>() {
            return Some(n.into());
        }
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
}

/// A JSON string (RFC 7159 §7) with its escapes, `i` at the opening quote.
fn string(i: &str) -> Res<'_, String> {
    let body = &i[1..];
    let mut out = String::new();
    let mut start = 0; // start of the pending unescaped run in `body`
    let mut iter = body.char_indices();
    while let Some((pos, c)) = iter.next() {
        match c {
            '"' => {
                out.push_str(&body[start..pos]);
                return Ok((&body[pos + 1..], out));
            }
            '\\' => {
                out.push_str(&body[start..pos]);
                let esc_at = &body[pos..];
                let Some((_, e)) = iter.next() else {
                    return fail(esc_at, "unterminated escape sequence");
                };
                let simple = match e {
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    '/' => Some('/'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'u' => None,
                    _ => return fail(esc_at, "invalid escape sequence (expected \\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX)"),
                };
                match simple {
                    Some(ch) => {
                        out.push(ch);
                        start = pos + 2;
                    }
                    None => {
                        let (ch, len) = unicode_escape(&body[pos..])?;
                        out.push(ch);
                        start = pos + len;
                        // Skip the characters consumed by the escape (all ASCII).
                        for _ in 2..len {
                            iter.next();
                        }
                    }
                }
            }
            c if (c as u32) < 0x20 => {
                return fail(
                    &body[pos..],
                    "control characters must be escaped in strings",
                );
            }
            _ => {}
        }
    }
    fail(i, "unterminated string (missing closing '\"')")
}

/// `\uXXXX`, or a surrogate pair `\uD83D\uDE00`; `s` starts at the backslash. Returns the
/// character and the number of bytes consumed.
fn unicode_escape(s: &str) -> Result<(char, usize), nom::Err<PErr<'_>>> {
    let hex4 = |at: usize| -> Option<u32> {
        let h = s.get(at..at + 4)?;
        if h.bytes().all(|b| b.is_ascii_hexdigit()) {
            u32::from_str_radix(h, 16).ok()
        } else {
            None
        }
    };
    let bad = |msg: &'static str| nom::Err::Failure(PErr::new(s, msg));
    let hi = hex4(2).ok_or_else(|| bad("invalid \\u escape (expected four hex digits)"))?;
    match hi {
        0xD800..=0xDBFF => {
            let lo = if s.get(6..8) == Some("\\u") {
                hex4(8)
            } else {
                None
            };
            match lo {
                Some(lo @ 0xDC00..=0xDFFF) => {
                    let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    char::from_u32(cp)
                        .map(|c| (c, 12))
                        .ok_or_else(|| bad("invalid surrogate pair"))
                }
                _ => Err(bad("unpaired high surrogate in \\u escape")),
            }
        }
        0xDC00..=0xDFFF => Err(bad("unpaired low surrogate in \\u escape")),
        cp => char::from_u32(cp)
            .map(|c| (c, 6))
            .ok_or_else(|| bad("invalid \\u escape")),
    }
}

// ---------------------------------------------------------------------------------------------
// PATCH paths
// ---------------------------------------------------------------------------------------------

/// `PATH = attrPath / valuePath [subAttr]`.
fn patch_path(i: &str) -> Res<'_, PatchPath> {
    let (rest, attr) = cut(attr_path(i))?;
    if !rest.starts_with('[') {
        return Ok((
            rest,
            PatchPath {
                attr,
                value_filter: None,
                sub_attr: None,
            },
        ));
    }
    if attr.sub_attr.is_some() {
        return fail(rest, "a value filter cannot follow a sub-attribute");
    }
    let (rest, filter) = value_filter(rest, 0, FilterSyntax::Rfc7644)?;
    let (rest, sub_attr) = match rest.strip_prefix('.') {
        Some(after_dot) => {
            let (after, name) = take_while(is_name_char_or_dollar)(after_dot)?;
            if !valid_attr_name(name) {
                return fail(after_dot, "expected a sub-attribute name after '.'");
            }
            (after, Some(CiString::from(name)))
        }
        None => (rest, None),
    };
    Ok((
        rest,
        PatchPath {
            attr,
            value_filter: Some(filter),
            sub_attr,
        },
    ))
}

fn is_name_char_or_dollar(c: char) -> bool {
    is_name_char(c) || c == '$'
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::Number;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn p(s: &str) -> Filter {
        match parse_filter(s) {
            Ok(f) => f,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }
    fn path(s: &str) -> AttrPath {
        parse_attr_path(s).unwrap()
    }
    fn cmp(path: &str, op: CompareOp, value: CompValue) -> Filter {
        Filter::Compare {
            path: super::parse_attr_path(path).unwrap(),
            op,
            value,
        }
    }
    fn s(v: &str) -> CompValue {
        CompValue::Str(v.to_owned())
    }
    fn pr(p: &str) -> Filter {
        Filter::Present(path(p))
    }
    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }
    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }
    fn not(a: Filter) -> Filter {
        Filter::Not(Box::new(a))
    }
    fn vp(p: &str, f: Filter) -> Filter {
        Filter::ValuePath {
            path: path(p),
            filter: Box::new(f),
        }
    }
    fn num(n: &str) -> CompValue {
        CompValue::Number(n.parse::<Number>().unwrap())
    }
    fn err(s: &str) -> String {
        match parse_filter(s) {
            Ok(f) => panic!("{s:?} should be rejected, parsed as {f:?}"),
            Err(Error::InvalidFilter(m)) => m,
            Err(e) => panic!("{s:?}: wrong error kind {e:?}"),
        }
    }
    use CompareOp::*;

    // ---- valuePath.subAttr comparisons (FilterSyntax::ValuePathSubAttr) ----

    fn tolerant(s: &str) -> Filter {
        parse_filter_as(s, FilterSyntax::ValuePathSubAttr).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn value_path_sub_attr_comparison_joins_the_bracket_filter() {
        assert_eq!(
            tolerant(r#"emails[type eq "work"].value eq "a@x.com""#),
            vp(
                "emails",
                and(cmp("type", Eq, s("work")), cmp("value", Eq, s("a@x.com")))
            )
        );
        assert_eq!(
            tolerant(r#"addresses[type eq "work"].postalCode pr and userName sw "b""#),
            and(
                vp(
                    "addresses",
                    and(cmp("type", Eq, s("work")), pr("postalCode"))
                ),
                cmp("userName", Sw, s("b"))
            )
        );
        // The RFC forms parse the same in both grammars.
        for f in [
            r#"emails[type eq "work" and value co "@x"]"#,
            r#"userName eq "bjensen" or not (title pr)"#,
        ] {
            assert_eq!(tolerant(f), p(f));
        }
    }

    #[test]
    fn value_path_sub_attr_comparison_is_not_rfc7644() {
        let m = err(r#"emails[type eq "work"].value eq "a@x.com""#);
        assert!(m.contains("byte 22"), "{m}");
        for bad in [
            r#"emails[type eq "work"]."#,
            r#"emails[type eq "work"].value"#,
            r#"emails[type eq "work"].value eq"#,
            r#"emails[type eq "work"].9x eq "a""#,
        ] {
            assert!(
                parse_filter_as(bad, FilterSyntax::ValuePathSubAttr).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    // ---- RFC 7644 §3.4.2.2, the example filters, in the order printed ----

    #[test]
    fn rfc7644_3_4_2_2_example_01_eq() {
        assert_eq!(
            p(r#"userName eq "bjensen""#),
            cmp("userName", Eq, s("bjensen"))
        );
    }
    #[test]
    fn rfc7644_3_4_2_2_example_02_sub_attr_co() {
        assert_eq!(
            p(r#"name.familyName co "O'Malley""#),
            cmp("name.familyName", Co, s("O'Malley"))
        );
        assert_eq!(
            path("name.familyName"),
            AttrPath::with_sub("name", "familyName")
        );
    }
    #[test]
    fn rfc7644_3_4_2_2_example_03_sw() {
        assert_eq!(p(r#"userName sw "J""#), cmp("userName", Sw, s("J")));
    }
    #[test]
    fn rfc7644_3_4_2_2_example_04_urn_qualified() {
        let f = p(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#);
        let expected = AttrPath {
            urn: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
            name: "userName".into(),
            sub_attr: None,
        };
        assert_eq!(
            f,
            Filter::Compare {
                path: expected,
                op: Sw,
                value: s("J")
            }
        );
    }
    #[test]
    fn rfc7644_3_4_2_2_example_05_pr() {
        assert_eq!(p("title pr"), pr("title"));
    }
    #[test]
    fn rfc7644_3_4_2_2_examples_06_to_09_datetime_ordering() {
        for (text, op) in [("gt", Gt), ("ge", Ge), ("lt", Lt), ("le", Le)] {
            let f = p(&format!(
                r#"meta.lastModified {text} "2011-05-13T04:42:34Z""#
            ));
            assert_eq!(f, cmp("meta.lastModified", op, s("2011-05-13T04:42:34Z")));
        }
    }
    #[test]
    fn rfc7644_3_4_2_2_example_10_and() {
        assert_eq!(
            p(r#"title pr and userType eq "Employee""#),
            and(pr("title"), cmp("userType", Eq, s("Employee")))
        );
    }
    #[test]
    fn rfc7644_3_4_2_2_example_11_or() {
        assert_eq!(
            p(r#"title pr or userType eq "Intern""#),
            or(pr("title"), cmp("userType", Eq, s("Intern")))
        );
    }
    #[test]
    fn rfc7644_3_4_2_2_example_12_schemas_eq_urn() {
        assert_eq!(
            p(&format!(r#"schemas eq "{ENTERPRISE}""#)),
            cmp("schemas", Eq, s(ENTERPRISE))
        );
    }
    #[test]
    fn rfc7644_3_4_2_2_example_13_grouping() {
        let f = p(
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        );
        let expected = and(
            cmp("userType", Eq, s("Employee")),
            or(
                cmp("emails", Co, s("example.com")),
                cmp("emails.value", Co, s("example.org")),
            ),
        );
        assert_eq!(f, expected);
    }
    #[test]
    fn rfc7644_3_4_2_2_example_14_not() {
        let f = p(
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        );
        let expected = and(
            cmp("userType", Ne, s("Employee")),
            not(or(
                cmp("emails", Co, s("example.com")),
                cmp("emails.value", Co, s("example.org")),
            )),
        );
        assert_eq!(f, expected);
    }
    #[test]
    fn rfc7644_3_4_2_2_example_15_parenthesised_single() {
        let f = p(r#"userType eq "Employee" and (emails.type eq "work")"#);
        assert_eq!(
            f,
            and(
                cmp("userType", Eq, s("Employee")),
                cmp("emails.type", Eq, s("work"))
            )
        );
    }
    #[test]
    fn rfc7644_3_4_2_2_example_16_value_path() {
        let f =
            p(r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#);
        let expected = and(
            cmp("userType", Eq, s("Employee")),
            vp(
                "emails",
                and(
                    cmp("type", Eq, s("work")),
                    cmp("value", Co, s("@example.com")),
                ),
            ),
        );
        assert_eq!(f, expected);
    }
    #[test]
    fn rfc7644_3_4_2_2_example_17_value_paths_or() {
        let f = p(
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        );
        let expected = or(
            vp(
                "emails",
                and(
                    cmp("type", Eq, s("work")),
                    cmp("value", Co, s("@example.com")),
                ),
            ),
            vp(
                "ims",
                and(cmp("type", Eq, s("xmpp")), cmp("value", Co, s("@foo.com"))),
            ),
        );
        assert_eq!(f, expected);
    }

    // ---- Errata ----

    #[test]
    fn errata_7319_not_without_space() {
        assert_eq!(p("not(title pr)"), not(pr("title")));
        assert_eq!(p("NOT   (title pr)"), not(pr("title")));
    }
    #[test]
    fn errata_4690_value_filter_holds_logic_but_no_nested_value_path() {
        let f = p(r#"emails[type eq "work" or (type eq "home" and not (primary eq false))]"#);
        let expected = vp(
            "emails",
            or(
                cmp("type", Eq, s("work")),
                and(
                    cmp("type", Eq, s("home")),
                    not(cmp("primary", Eq, CompValue::Bool(false))),
                ),
            ),
        );
        assert_eq!(f, expected);
        assert!(err(r#"emails[sub[type eq "x"]]"#).contains("nested"));
    }
    #[test]
    fn enterprise_urn_with_sub_attribute() {
        let f = p(&format!(r#"{ENTERPRISE}:manager.value eq "26118915""#));
        let expected = AttrPath {
            urn: Some(ENTERPRISE.into()),
            name: "manager".into(),
            sub_attr: Some("value".into()),
        };
        assert_eq!(
            f,
            Filter::Compare {
                path: expected,
                op: Eq,
                value: s("26118915")
            }
        );
    }

    // ---- Precedence, case, whitespace ----

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            p("a pr and b pr or c pr"),
            or(and(pr("a"), pr("b")), pr("c"))
        );
        assert_eq!(
            p("a pr or b pr and c pr"),
            or(pr("a"), and(pr("b"), pr("c")))
        );
        assert_eq!(
            p("(a pr or b pr) and c pr"),
            and(or(pr("a"), pr("b")), pr("c"))
        );
        assert_eq!(
            p("a pr and b pr and c pr"),
            and(and(pr("a"), pr("b")), pr("c"))
        );
        assert_eq!(p("not (a pr) and b pr"), and(not(pr("a")), pr("b")));
    }
    #[test]
    fn keywords_and_operators_are_case_insensitive() {
        let f = p(r#"userName EQ "x" AND Active Eq TRUE Or not (title PR)"#);
        let expected = or(
            and(
                cmp("userName", Eq, s("x")),
                cmp("active", Eq, CompValue::Bool(true)),
            ),
            not(pr("title")),
        );
        assert_eq!(f, expected);
        assert_eq!(p("a eq NULL"), cmp("a", Eq, CompValue::Null));
        assert_eq!(p("a eq False"), cmp("a", Eq, CompValue::Bool(false)));
        // Names keep their spelling but compare case-insensitively.
        assert_eq!(path("USERNAME"), path("userName"));
    }
    #[test]
    fn whitespace_is_tolerated() {
        let f = p("  userName   eq \t \"x\"   and  (  title  pr  )  ");
        assert_eq!(f, and(cmp("userName", Eq, s("x")), pr("title")));
        assert_eq!(
            p("emails[ type eq \"w\" ]"),
            vp("emails", cmp("type", Eq, s("w")))
        );
    }
    #[test]
    fn names_that_look_like_keywords() {
        assert_eq!(p("not eq 1"), cmp("not", Eq, num("1")));
        assert_eq!(p("notes pr and order pr"), and(pr("notes"), pr("order")));
        assert_eq!(p("andy pr or orson pr"), or(pr("andy"), pr("orson")));
    }
    #[test]
    fn ref_attribute() {
        assert_eq!(
            p(r#"members[$ref eq "https://x/Users/1"]"#),
            vp("members", cmp("$ref", Eq, s("https://x/Users/1")))
        );
        assert_eq!(path("members.$ref"), AttrPath::with_sub("members", "$ref"));
    }

    // ---- Literals ----

    #[test]
    fn string_escapes() {
        assert_eq!(
            p(r#"a eq "q\"b\\s\/n\n\t\r\b\f""#),
            cmp("a", Eq, s("q\"b\\s/n\n\t\r\u{8}\u{c}"))
        );
        assert_eq!(p(r#"a eq "\u00e9\u00C9""#), cmp("a", Eq, s("éÉ")));
        assert_eq!(p(r#"a eq "\ud83d\ude00""#), cmp("a", Eq, s("😀")));
        assert_eq!(p(r#"a eq "é😀""#), cmp("a", Eq, s("é😀")));
        assert_eq!(p(r#"a eq """#), cmp("a", Eq, s("")));
    }
    #[test]
    fn numbers() {
        assert_eq!(p("a eq 42"), cmp("a", Eq, num("42")));
        assert_eq!(p("a eq -7"), cmp("a", Eq, num("-7")));
        assert_eq!(p("a eq 0"), cmp("a", Eq, num("0")));
        assert_eq!(p("a gt 3.25"), cmp("a", Gt, num("3.25")));
        assert_eq!(p("a lt 1e3"), cmp("a", Lt, num("1e3")));
        assert_eq!(p("a lt -2.5E-3"), cmp("a", Lt, num("-2.5E-3")));
        assert_eq!(
            p("a eq 18446744073709551615"),
            cmp("a", Eq, num("18446744073709551615"))
        );
    }
    #[test]
    fn datetime_is_a_string() {
        assert_eq!(
            p(r#"meta.created eq "2024-01-01T00:00:00Z""#),
            cmp("meta.created", Eq, s("2024-01-01T00:00:00Z"))
        );
    }

    // ---- Rejections ----

    #[test]
    fn rejects_unbalanced_parentheses() {
        assert!(err("(a pr").contains("expected ')'"));
        assert!(err("a pr)").contains("unexpected"));
        assert!(err("emails[type pr").contains("expected ']'"));
        assert!(err("not (a pr").contains("byte 9"));
    }
    #[test]
    fn rejects_unknown_operator() {
        let m = err(r#"userName like "x""#);
        assert!(
            m.contains("expected an operator") && m.contains("byte 9"),
            "{m}"
        );
        assert!(err("a eqq 1").contains("operator"));
        assert!(err(r#"a pr xor b pr"#).contains("byte 5"));
    }
    #[test]
    fn rejects_missing_value() {
        let m = err("a eq");
        assert!(m.contains("expected"), "{m}");
        assert!(err("a eq ").contains("value"));
        assert!(err("a eq and b pr").contains("value"));
        assert!(err("a eq bjensen").contains("value"));
        assert!(err("a pr and").contains("unexpected"));
        assert!(err("a pr and ").contains("attribute path"));
        assert!(err("").contains("empty"));
        assert!(err("   ").contains("empty"));
    }
    #[test]
    fn rejects_bad_escapes_and_strings() {
        assert!(err(r#"a eq "\x""#).contains("invalid escape"));
        assert!(err(r#"a eq "\u12""#).contains("\\u"));
        assert!(err(r#"a eq "\ud83d""#).contains("surrogate"));
        assert!(err(r#"a eq "\ude00""#).contains("surrogate"));
        assert!(err(r#"a eq "abc"#).contains("unterminated"));
        assert!(err("a eq \"a\u{1}b\"").contains("control"));
        assert!(err(r#"a eq "x\"#).contains("unterminated"));
    }
    #[test]
    fn rejects_bad_numbers_and_names() {
        assert!(err("a eq 01").contains("leading zeros"));
        assert!(err("a eq 1.").contains("decimal point"));
        assert!(err("a eq 1e").contains("exponent"));
        assert!(err("a eq 1x").contains("after the number"));
        assert!(err("a eq 1e999").contains("range"));
        assert!(err("1a pr").contains("attribute name"));
        assert!(err("a..b pr").contains("sub-attribute"));
        assert!(err("a.b.c pr").contains("one level"));
        assert!(err("foo:bar pr").contains("urn:"));
        assert!(err("emails.value[type pr]").contains("sub-attribute"));
        assert!(err("a eq truex").contains("value"));
    }
    #[test]
    fn rejects_trailing_garbage() {
        let m = err(r#"a eq "x" garbage"#);
        assert!(m.contains("byte 9"), "{m}");
    }
    #[test]
    fn depth_limit() {
        let ok = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(p(&ok), pr("a"));
        let too_deep = format!(
            "{}a pr{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(err(&too_deep).contains("deeper than 64"));
        let nots = format!(
            "{}a pr{}",
            "not (".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(err(&nots).contains("deeper"));
        // 10,000 '(' fail cleanly (no stack overflow).
        assert!(err(&"(".repeat(10_000)).contains("deeper"));
        assert!(err(&"not(".repeat(4_000)).contains("deeper"));
    }
    #[test]
    fn length_limit() {
        let long = format!(r#"a eq "{}""#, "x".repeat(MAX_INPUT_LEN));
        assert!(err(&long).contains("maximum"));
        assert!(parse_patch_path(&"a".repeat(MAX_INPUT_LEN + 1)).is_err());
    }
    #[test]
    fn long_chains_do_not_recurse_in_the_parser() {
        let chain = vec!["a pr"; 1500].join(" and ");
        assert!(chain.len() <= MAX_INPUT_LEN);
        assert!(matches!(p(&chain), Filter::And(..)));
    }

    // ---- Attribute paths and PATCH paths (RFC 7644 §3.5.2) ----

    #[test]
    fn attr_paths() {
        assert_eq!(path("userName"), AttrPath::simple("userName"));
        let p = path(&format!("{ENTERPRISE}:employeeNumber"));
        assert_eq!(p.urn.as_ref().map(|u| u.as_str()), Some(ENTERPRISE));
        assert_eq!(p.name, "employeeNumber");
        assert!(matches!(
            parse_attr_path("emails[type pr]"),
            Err(Error::InvalidPath(_))
        ));
        assert!(matches!(parse_attr_path("a b"), Err(Error::InvalidPath(_))));
        assert!(matches!(parse_attr_path(""), Err(Error::InvalidPath(_))));
    }
    #[test]
    fn rfc7644_3_5_2_patch_paths() {
        let pp = parse_patch_path("name.familyName").unwrap();
        assert_eq!(
            pp,
            PatchPath {
                attr: AttrPath::with_sub("name", "familyName"),
                value_filter: None,
                sub_attr: None
            }
        );

        let pp = parse_patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(pp.attr, AttrPath::simple("emails"));
        assert_eq!(pp.value_filter, Some(cmp("type", Eq, s("work"))));
        assert_eq!(pp.sub_attr, Some("value".into()));

        let pp = parse_patch_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#)
            .unwrap();
        assert_eq!(
            pp.value_filter,
            Some(cmp("value", Eq, s("2819c223-7f76-453a-919d-413861904646")))
        );
        assert_eq!(pp.sub_attr, None);

        let pp = parse_patch_path(r#"addresses[type eq "work"].streetAddress"#).unwrap();
        assert_eq!(pp.sub_attr, Some("streetAddress".into()));

        let pp = parse_patch_path(&format!("{ENTERPRISE}:manager")).unwrap();
        assert_eq!(pp.attr.urn, Some(ENTERPRISE.into()));
        assert_eq!(pp.attr.name, "manager");

        let pp = parse_patch_path(r#"members[$ref eq "x"].display"#).unwrap();
        assert_eq!(pp.sub_attr, Some("display".into()));
    }
    #[test]
    fn patch_path_rejections() {
        for bad in [
            "emails[type eq \"work\"",
            "emails[type eq \"work\"].",
            "emails[type eq \"work\"].value.x",
            "emails[type eq \"work\"]x",
            "emails.value[type pr]",
            "emails[]",
            "[type pr]",
            "a b",
        ] {
            assert!(
                matches!(parse_patch_path(bad), Err(Error::InvalidPath(_))),
                "{bad:?}"
            );
        }
    }
}
