//! Distinguished names as RFC 4514 writes them: `CN=Doe\, John+employeeNumber=7,OU=People,DC=x`.
//!
//! Splitting a DN at every `,` breaks on escaped separators (AD writes the CN `Doe\, John`, and
//! this crate creates such CNs from display names with [`ldap3::dn_escape`], which writes hex
//! escapes like `\2c`). [`parse`] reads the string form: RDNs separated by `,` (or `;`), each a
//! `+`-joined set of `type=value` pairs, values with `\` + special char or `\` + two hex digits
//! (UTF-8 bytes), `#`-prefixed hex (BER) values kept as written, and insignificant spaces around
//! separators dropped.

use std::fmt;

/// One `type=value` pair of an RDN; `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ava {
    pub attr: String,
    pub value: String,
}

/// One RDN: one or more AVAs joined by `+`, with the exact text it had in the DN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdn {
    pub avas: Vec<Ava>,
    /// The RDN as written (escapes kept), for `modifyDN`'s new RDN.
    pub raw: String,
}

/// A DN that does not follow RFC 4514's string form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DN {dn:?}: {reason}")]
pub struct DnError {
    pub dn: String,
    pub reason: &'static str,
}

/// A parsed DN, first RDN (the entry's own) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn {
    pub rdns: Vec<Rdn>,
    raw: String,
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Dn {
    /// The DN as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The value of the first AVA of the first RDN: `Doe, John` for `CN=Doe\, John,OU=x`.
    pub fn first_value(&self) -> Option<&str> {
        self.rdns
            .first()
            .and_then(|r| r.avas.first())
            .map(|a| a.value.as_str())
    }

    /// The first RDN as written and the parent DN as written (empty for a one-RDN DN).
    pub fn split_first(&self) -> Option<(&str, &str)> {
        let first = self.rdns.first()?;
        // `raw` starts with the first RDN's text after leading spaces; the parent begins after
        // the separator that follows it
        let start = self.raw.find(first.raw.as_str()).unwrap_or(0);
        let rest = &self.raw[start + first.raw.len()..];
        let parent = rest
            .trim_start_matches(' ')
            .strip_prefix([',', ';'])
            .unwrap_or("")
            .trim_start_matches(' ');
        Some((first.raw.as_str(), parent))
    }

    /// Whether the DNs name the same entry: same RDNs, attribute types and values compared
    /// case-insensitively (the naming attributes used here, cn/uid/ou/dc, ignore case), AVAs of
    /// a multi-valued RDN in any order.
    pub fn same_as(&self, other: &Dn) -> bool {
        self.rdns.len() == other.rdns.len()
            && self.rdns.iter().zip(&other.rdns).all(|(a, b)| rdn_eq(a, b))
    }

    /// Whether this DN is `ancestor` itself or lies below it.
    pub fn is_within(&self, ancestor: &Dn) -> bool {
        let n = ancestor.rdns.len();
        self.rdns.len() >= n
            && self.rdns[self.rdns.len() - n..]
                .iter()
                .zip(&ancestor.rdns)
                .all(|(a, b)| rdn_eq(a, b))
    }

    /// Whether this DN lies directly below `parent`.
    pub fn is_child_of(&self, parent: &Dn) -> bool {
        self.rdns.len() == parent.rdns.len() + 1 && self.is_within(parent)
    }
}

fn rdn_eq(a: &Rdn, b: &Rdn) -> bool {
    let key = |r: &Rdn| {
        let mut v: Vec<(String, String)> = r
            .avas
            .iter()
            .map(|x| (x.attr.to_lowercase(), x.value.to_lowercase()))
            .collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

/// Parses the string form of a DN (RFC 4514 §3). The empty string is the root DN (no RDNs).
pub fn parse(dn: &str) -> Result<Dn, DnError> {
    let err = |reason| DnError {
        dn: dn.to_owned(),
        reason,
    };
    let bytes = dn.as_bytes();
    let mut rdns = Vec::new();
    let mut i = 0;
    skip_spaces(bytes, &mut i);
    if i == bytes.len() {
        return Ok(Dn {
            rdns,
            raw: dn.to_owned(),
        });
    }
    loop {
        let rdn_start = i;
        // end of the last value without its unescaped trailing spaces (an escaped `\ ` stays)
        let mut rdn_end;
        let mut avas = Vec::new();
        loop {
            // attribute type: up to '='
            let t0 = i;
            while i < bytes.len() && bytes[i] != b'=' {
                if matches!(bytes[i], b',' | b';' | b'+' | b'\\' | b'"') {
                    return Err(err("attribute type with a special character"));
                }
                i += 1;
            }
            if i == bytes.len() {
                return Err(err("RDN without '='"));
            }
            let attr = dn[t0..i].trim();
            if attr.is_empty() {
                return Err(err("empty attribute type"));
            }
            i += 1; // '='
            skip_spaces(bytes, &mut i);
            let (value, value_end) = read_value(dn, &mut i).map_err(err)?;
            rdn_end = value_end;
            avas.push(Ava {
                attr: attr.to_owned(),
                value,
            });
            skip_spaces(bytes, &mut i);
            if i < bytes.len() && bytes[i] == b'+' {
                i += 1;
                skip_spaces(bytes, &mut i);
                continue;
            }
            break;
        }
        rdns.push(Rdn {
            avas,
            raw: dn[rdn_start..rdn_end].to_owned(),
        });
        if i == bytes.len() {
            break;
        }
        if matches!(bytes[i], b',' | b';') {
            i += 1;
            skip_spaces(bytes, &mut i);
            if i == bytes.len() {
                return Err(err("empty RDN after a separator"));
            }
            continue;
        }
        return Err(err("unexpected character after a value"));
    }
    Ok(Dn {
        rdns,
        raw: dn.to_owned(),
    })
}

fn skip_spaces(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i] == b' ' {
        *i += 1;
    }
}

/// Reads one attribute value starting at `i`, stopping before an unescaped `,` `;` `+` (and
/// dropping unescaped trailing spaces); returns it unescaped, and where its significant text
/// ends in `dn`.
fn read_value(dn: &str, i: &mut usize) -> Result<(String, usize), &'static str> {
    let b = dn.as_bytes();
    if *i < b.len() && b[*i] == b'#' {
        // BER-encoded value in hex: kept as written (this connector never names entries so)
        let start = *i;
        *i += 1;
        while *i < b.len() && b[*i].is_ascii_hexdigit() {
            *i += 1;
        }
        return Ok((dn[start..*i].to_owned(), *i));
    }
    let mut out: Vec<u8> = Vec::new();
    // length of `out` up to the last escaped or non-space byte: unescaped trailing spaces are
    // not part of the value
    let mut significant = 0;
    let mut end = *i;
    while *i < b.len() {
        let c = b[*i];
        match c {
            b',' | b';' | b'+' => break,
            b'\\' => {
                let Some(&n) = b.get(*i + 1) else {
                    return Err("a value ends with a lone backslash");
                };
                if n.is_ascii_hexdigit() {
                    let h = b.get(*i + 2).copied().filter(u8::is_ascii_hexdigit);
                    let Some(h) = h else {
                        return Err("a hex escape needs two hex digits");
                    };
                    out.push(hex(n) << 4 | hex(h));
                    *i += 3;
                    end = *i;
                } else if matches!(
                    n,
                    b' ' | b'"' | b'#' | b'+' | b',' | b';' | b'<' | b'=' | b'>' | b'\\'
                ) {
                    out.push(n);
                    *i += 2;
                    end = *i;
                } else {
                    return Err("a backslash before a character that needs no escape");
                }
                significant = out.len();
            }
            b'"' => return Err("an unescaped quote in a value"),
            _ => {
                out.push(c);
                *i += 1;
                if c != b' ' {
                    significant = out.len();
                    end = *i;
                }
            }
        }
    }
    out.truncate(significant);
    let value = String::from_utf8(out).map_err(|_| "a value's escapes are not UTF-8")?;
    Ok((value, end))
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ldap3::dn_escape;
    use proptest::prelude::*;

    #[test]
    fn escaped_separators_stay_in_their_value() {
        let dn = parse(r"CN=Doe\, John,OU=People,DC=example,DC=com").unwrap();
        assert_eq!(dn.rdns.len(), 4);
        assert_eq!(dn.first_value(), Some("Doe, John"));
        assert_eq!(
            dn.split_first(),
            Some((r"CN=Doe\, John", "OU=People,DC=example,DC=com"))
        );
        let hexed = parse(r"cn=Doe\2c John\2B\5c\3d\22\3C\3e\3b,ou=p").unwrap();
        assert_eq!(hexed.first_value(), Some(r#"Doe, John+\="<>;"#));
        assert!(hexed.same_as(&parse(r#"CN=doe\, john\+\\\=\"\<\>\;, OU=P"#).unwrap()));
        let utf8 = parse(r"cn=J\C3\BCrgen,dc=x").unwrap();
        assert_eq!(utf8.first_value(), Some("Jürgen"));
    }

    #[test]
    fn leading_and_trailing_spaces_and_hash() {
        let dn = parse(r"cn=\ lead\20,dc=x").unwrap();
        assert_eq!(dn.first_value(), Some(" lead "));
        let dn = parse("cn=a\\ ,dc=x").unwrap();
        assert_eq!(dn.first_value(), Some("a "));
        assert_eq!(dn.split_first(), Some(("cn=a\\ ", "dc=x")));
        let nbsp = parse("cn=\u{a0},dc=x").unwrap();
        assert_eq!(
            nbsp.split_first(),
            Some(("cn=\u{a0}", "dc=x")),
            "only ASCII spaces are trimmed"
        );
        let dn = parse(r"cn=\#tag ,dc=x").unwrap();
        assert_eq!(
            dn.first_value(),
            Some("#tag"),
            "unescaped trailing space dropped"
        );
        let ber = parse("cn=#04024869,dc=x").unwrap();
        assert_eq!(ber.first_value(), Some("#04024869"));
    }

    #[test]
    fn multi_valued_rdns_compare_in_any_order() {
        let a = parse("cn=Doe+uid=jd,ou=p,dc=x").unwrap();
        assert_eq!(a.rdns[0].avas.len(), 2);
        assert_eq!(a.rdns[0].raw, "cn=Doe+uid=jd");
        assert!(a.same_as(&parse("UID=jd + CN=doe, ou=p, dc=x").unwrap()));
        assert!(a.is_within(&parse("dc=x").unwrap()));
        assert!(a.is_child_of(&parse("OU=P,DC=X").unwrap()));
        assert!(!a.is_child_of(&parse("dc=x").unwrap()));
        assert!(!parse("cn=a,ou=pp,dc=x")
            .unwrap()
            .is_within(&parse("ou=p,dc=x").unwrap()));
        // a suffix of the string is not a suffix of the RDNs
        assert!(!parse(r"cn=x\,ou=p,dc=x")
            .unwrap()
            .is_child_of(&parse("ou=p,dc=x").unwrap()));
    }

    #[test]
    fn malformed_dns_are_errors() {
        for bad in [
            "cn",
            "cn=a,",
            r"cn=a\",
            r"cn=a\q",
            r"cn=a\4",
            "cn=a\"b",
            "=a",
            r"cn=\ff\fe",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("").unwrap().rdns.is_empty());
    }

    proptest! {
        #[test]
        fn escape_then_parse_round_trips(value in "\\PC{0,24}", parent in "[a-z]{1,8}") {
            let dn = format!("cn={},ou={parent},dc=example", dn_escape(value.as_str()));
            let parsed = parse(&dn).unwrap();
            prop_assert_eq!(parsed.first_value(), Some(value.as_str()));
            prop_assert_eq!(parsed.rdns.len(), 3);
            let (rdn, rest) = parsed.split_first().unwrap();
            prop_assert_eq!(rest, format!("ou={parent},dc=example"));
            let rdn = parse(rdn).unwrap();
            prop_assert_eq!(rdn.first_value(), Some(value.as_str()));
        }
    }
}
