//! Canonical filter text: `Display` for the AST.
//!
//! Printing then parsing yields the identical AST: operators and keywords are printed in lower
//! case, strings are JSON-escaped, numbers are printed as `serde_json` prints them, and
//! parentheses are added exactly where precedence (`not` > `and` > `or`) and left-associativity
//! require them: `(a or b) and c`, `a and (b and c)`.

use std::fmt::{self, Display, Formatter, Write};

use super::ast::{AttrPath, CompValue, CompareOp, Filter, PatchPath};

impl CompareOp {
    /// The operator's keyword, in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Lt => "lt",
            CompareOp::Ge => "ge",
            CompareOp::Le => "le",
        }
    }
}

impl Display for CompareOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for CompValue {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Number(n) => write!(f, "{n}"),
            CompValue::Str(s) => write_json_string(f, s),
        }
    }
}

/// Writes `s` as a JSON string literal.
fn write_json_string(f: &mut Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    let mut start = 0;
    for (pos, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => None,
            _ => continue,
        };
        f.write_str(&s[start..pos])?;
        match esc {
            Some(e) => f.write_str(e)?,
            None => write!(f, "\\u{:04x}", c as u32)?,
        }
        start = pos + c.len_utf8();
    }
    f.write_str(&s[start..])?;
    f.write_char('"')
}

impl Display for AttrPath {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(self.name.as_str())?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Binding strength: `or` < `and` < everything else.
fn precedence(filter: &Filter) -> u8 {
    match filter {
        Filter::Or(..) => 1,
        Filter::And(..) => 2,
        _ => 3,
    }
}

/// Writes `filter`, parenthesised when its precedence is below `min`.
fn write_filter(f: &mut Formatter<'_>, filter: &Filter, min: u8) -> fmt::Result {
    if precedence(filter) < min {
        f.write_char('(')?;
        write_filter(f, filter, 0)?;
        return f.write_char(')');
    }
    match filter {
        Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
        Filter::Present(path) => write!(f, "{path} pr"),
        // Left-associative: the left operand may be the same operator, the right may not.
        Filter::And(a, b) => {
            write_filter(f, a, 2)?;
            f.write_str(" and ")?;
            write_filter(f, b, 3)
        }
        Filter::Or(a, b) => {
            write_filter(f, a, 1)?;
            f.write_str(" or ")?;
            write_filter(f, b, 2)
        }
        Filter::Not(inner) => {
            f.write_str("not (")?;
            write_filter(f, inner, 0)?;
            f.write_char(')')
        }
        Filter::ValuePath { path, filter } => {
            write!(f, "{path}[")?;
            write_filter(f, filter, 0)?;
            f.write_char(']')
        }
    }
}

impl Display for Filter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_filter(f, self, 0)
    }
}

impl Display for PatchPath {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.value_filter {
            write!(f, "[{filter}]")?;
            if let Some(sub) = &self.sub_attr {
                write!(f, ".{sub}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::filter::parse::{parse_filter, parse_patch_path};

    /// Prints the parsed filter and checks the canonical text and that it parses back identically.
    fn canon(input: &str, expected: &str) {
        let f = parse_filter(input).unwrap();
        let printed = f.to_string();
        assert_eq!(printed, expected);
        assert_eq!(
            parse_filter(&printed).unwrap(),
            f,
            "{printed} must parse back to the same AST"
        );
    }

    #[test]
    fn rfc7644_3_4_2_2_examples_print_canonically() {
        for example in [
            r#"userName eq "bjensen""#,
            r#"name.familyName co "O'Malley""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            "title pr",
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        ] {
            canon(example, example);
        }
    }

    #[test]
    fn parentheses_only_where_needed() {
        canon("(a pr or b pr) and c pr", "(a pr or b pr) and c pr");
        canon("a pr and (b pr and c pr)", "a pr and (b pr and c pr)");
        canon("(a pr and b pr) and c pr", "a pr and b pr and c pr");
        canon("a pr or (b pr or c pr)", "a pr or (b pr or c pr)");
        canon("(a pr and b pr) or c pr", "a pr and b pr or c pr");
        canon("a pr or (b pr and c pr)", "a pr or b pr and c pr");
        canon("((a pr))", "a pr");
        canon("NOT(a pr)", "not (a pr)");
        canon("not ((a pr or b pr))", "not (a pr or b pr)");
    }

    #[test]
    fn keywords_and_literals_are_normalised() {
        canon(r#"A Eq TRUE  AND b NE Null"#, "A eq true and b ne null");
        canon("a eq 1E3", "a eq 1000.0");
        canon("a eq -0.50", "a eq -0.5");
        canon("a eq 12", "a eq 12");
    }

    #[test]
    fn strings_are_escaped() {
        canon(r#"a eq "q\"b\\s\/""#, r#"a eq "q\"b\\s/""#);
        canon(
            "a eq \"\\n\\t\\u0001\\u007f é\"",
            "a eq \"\\n\\t\\u0001\\u007f é\"",
        );
        canon(r#"a eq "\ud83d\ude00""#, "a eq \"😀\"");
    }

    #[test]
    fn patch_paths_print() {
        for p in [
            "name.familyName",
            r#"emails[type eq "work"].value"#,
            r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        ] {
            let parsed = parse_patch_path(p).unwrap();
            assert_eq!(parsed.to_string(), p);
            assert_eq!(parse_patch_path(&parsed.to_string()).unwrap(), parsed);
        }
    }
}
