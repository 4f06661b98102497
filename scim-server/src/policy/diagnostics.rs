//! What a rejected policy reports: each problem as a [`Diagnostic`] at a line and column of the
//! file, all of them together in a [`PolicyError`] (`FILE:LINE:COL: message`, in file order).
//!
//! The checks push into a [`Diags`] sink by byte span; the sink turns spans into lines and
//! columns, and the caller sorts by position once every section has been checked.

use std::fmt;
use std::ops::Range;

/// One problem, at a position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a policy was rejected: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.source, d.line, d.column, d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// Line and column (1-based) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// Where the checks report problems: each with the byte offset it was found at, so the caller
/// can sort them into file order.
pub(super) struct Diags<'a> {
    /// The policy text (spans index into it).
    pub(super) text: &'a str,
    out: Vec<(usize, Diagnostic)>,
}

impl<'a> Diags<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Diags {
            text,
            out: Vec::new(),
        }
    }

    /// Reports `message` at the start of `span`.
    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.out.push((
            span.start,
            Diagnostic {
                line,
                column,
                message: message.into(),
            },
        ));
    }

    /// Whether no problem was reported.
    pub(super) fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The diagnostics in file order (reports at one position keep the order they were made
    /// in).
    pub(super) fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.out.sort_by_key(|(at, _)| *at);
        self.out.into_iter().map(|(_, x)| x).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_and_clamped() {
        let text = "ab\ncd\n";
        for (offset, expected) in [
            (0, (1, 1)),
            (1, (1, 2)),
            (2, (1, 3)),
            (3, (2, 1)),
            (4, (2, 2)),
            (6, (3, 1)),
            (99, (3, 1)),
        ] {
            assert_eq!(line_col(text, offset), expected, "offset {offset}");
        }
    }

    #[test]
    fn reports_sort_by_position_keeping_the_order_at_one_position() {
        let mut d = Diags::new("first\nsecond\n");
        d.at(6..7, "b");
        d.at(0..1, "a");
        d.at(6..6, "c");
        let sorted: Vec<(usize, usize, String)> = d
            .into_sorted()
            .into_iter()
            .map(|x| (x.line, x.column, x.message))
            .collect();
        assert_eq!(
            sorted,
            vec![
                (1, 1, "a".to_string()),
                (2, 1, "b".to_string()),
                (2, 1, "c".to_string())
            ]
        );
    }
}
