//! Long vector literals kept out of the SQL tokenizer.
//!
//! A search written as SQL text carries its query vector as a string literal of thousands
//! of characters (`'[0.0123, -0.0456, …]'`, 4.8 KB for 384 dimensions). The SQL tokenizer
//! reads it character by character — about 11 µs, a seventh of a whole search statement. So
//! before parsing, each such literal that stands alone in a list (between `(` or `,` and
//! `,` or `)`: a function argument, an `IN` or `VALUES` item) is swapped for a placeholder,
//! the short text is parsed, and the literal's text is put back in the placeholder's place:
//! the same tree the parser builds from the whole text. Anything unusual — a `$` or a
//! backslash anywhere, a block comment, a placeholder that does not come back as a plain
//! value — and the text is parsed as written.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, Value, VisitMut, VisitorMut};

/// Literals shorter than this are left to the parser (lifting them saves nothing).
const MIN_LIFTED_LEN: usize = 256;

/// SQL text with its long vector literals replaced by `$1`, `$2`, …
#[derive(Debug, PartialEq)]
pub(crate) struct Lifted {
    /// The short text.
    pub text: String,
    /// The literals' contents (between the quotes), in placeholder order.
    pub literals: Vec<String>,
}

/// Lift the long vector literals out of `sql`; `None` when there are none or the text holds
/// anything this scanner does not follow exactly.
pub(crate) fn lift(sql: &str) -> Option<Lifted> {
    let bytes = sql.as_bytes();
    // (Scans of the whole text are memchr's vectorised ones: per-character loops here would
    // cost what the tokenizer does.)
    if sql.len() < MIN_LIFTED_LEN || memchr::memchr2(b'$', b'\\', bytes).is_some() || memchr::memmem::find(bytes, b"/*").is_some() {
        return None;
    }
    let (mut text, mut literals) = (String::new(), Vec::new());
    let (mut at, mut copied) = (0, 0);
    while at < bytes.len() {
        match bytes[at] {
            b'-' if bytes.get(at + 1) == Some(&b'-') => {
                at = bytes[at..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |n| at + n);
            }
            b'"' => at = closing_quote(bytes, at, b'"')? + 1,
            b'\'' => {
                let end = closing_quote(bytes, at, b'\'')?;
                let content = &sql[at + 1..end];
                if content.len() >= MIN_LIFTED_LEN
                    && is_vector_text(content)
                    && matches!(previous_significant(&bytes[..at]), Some(b'(' | b','))
                    && matches!(next_significant(&bytes[end + 1..]), Some(b',' | b')'))
                {
                    text.push_str(&sql[copied..at]);
                    literals.push(content.to_string());
                    text.push('$');
                    text.push_str(&literals.len().to_string());
                    copied = end + 1;
                }
                at = end + 1;
            }
            _ => at += 1,
        }
    }
    if literals.is_empty() {
        return None;
    }
    text.push_str(&sql[copied..]);
    Some(Lifted { text, literals })
}

/// Put the lifted literals back into `statements` in their placeholders' places. False when
/// a placeholder is not found as a plain value exactly once (the caller then parses the
/// original text).
pub(crate) fn restore(statements: &mut [DfStatement], literals: Vec<String>) -> bool {
    let mut restorer = Restorer { literals: literals.into_iter().map(Some).collect(), stray: false };
    for statement in statements.iter_mut() {
        match statement {
            DfStatement::Statement(inner) => {
                let _ = inner.visit(&mut restorer);
            }
            // Other statement kinds are parsed by DataFusion's own grammar; a placeholder
            // there could stand where a literal is not an expression.
            _ => return false,
        }
    }
    !restorer.stray && restorer.literals.iter().all(Option::is_none)
}

struct Restorer {
    literals: Vec<Option<String>>,
    /// A placeholder not ours, or ours twice.
    stray: bool,
}

impl VisitorMut for Restorer {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Value(v) = expr {
            if let Value::Placeholder(name) = &v.value {
                let slot = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).and_then(|n| self.literals.get_mut(n.checked_sub(1)?));
                match slot.and_then(Option::take) {
                    Some(literal) => *expr = Expr::value(Value::SingleQuotedString(literal)),
                    None => self.stray = true,
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Index of the quote closing the one at `open` (a doubled quote is part of the text).
fn closing_quote(bytes: &[u8], open: usize, quote: u8) -> Option<usize> {
    let mut at = open + 1;
    loop {
        at += memchr::memchr(quote, &bytes[at..])?;
        if bytes.get(at + 1) == Some(&quote) {
            at += 2;
        } else {
            return Some(at);
        }
    }
}

/// `[` then only numbers, commas, brackets and spaces. Checked 64 bytes at a time without
/// branching inside a block, so the compiler vectorises it.
fn is_vector_text(content: &str) -> bool {
    fn allowed(b: u8) -> bool {
        (b.wrapping_sub(b'0') < 10) | matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b',' | b'[' | b']' | b' ' | b'\t' | b'\n' | b'\r')
    }
    content.trim_start().starts_with('[') && content.as_bytes().chunks(64).all(|block| block.iter().fold(true, |ok, b| ok & allowed(*b)))
}

fn previous_significant(bytes: &[u8]) -> Option<u8> {
    bytes.iter().rev().copied().find(|b| !b.is_ascii_whitespace())
}

fn next_significant(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn vector(n: usize) -> String {
        format!("[{}]", (0..n).map(|i| format!("{:.6}", (i as f32 * 0.37).sin())).collect::<Vec<_>>().join(", "))
    }

    fn parse(sql: &str) -> Vec<DfStatement> {
        DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).unwrap().into_iter().collect()
    }

    /// Lifting, parsing and restoring gives the tree of parsing the whole text.
    fn same_tree(sql: &str) -> bool {
        let Some(lifted) = lift(sql) else { return false };
        let mut statements = parse(&lifted.text);
        assert!(restore(&mut statements, lifted.literals), "{sql}");
        assert_eq!(statements, parse(sql), "{sql}");
        // (Source spans differ after a lifted literal; the tree compares without them.)
        let display = |s: &[DfStatement]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(display(&statements), display(&parse(sql)));
        true
    }

    #[test]
    fn search_arguments_and_list_items_are_lifted_and_restored_exactly() {
        let v = vector(96);
        assert!(same_tree(&format!("SELECT id, _distance FROM vector_search('t', '{v}', 10) ORDER BY _distance")));
        assert!(same_tree(&format!("SELECT * FROM vector_search('t', '{v}', 10, 'price < 20', 64) AS s JOIN other o ON o.id = s.id")));
        assert!(same_tree(&format!("SELECT * FROM hybrid_search('t', 'words', '{v}' , 5)")));
        assert!(same_tree(&format!("INSERT INTO mutable.public.m VALUES (1, '{v}'), (2, '{v}')")));
        assert!(same_tree(&format!("SELECT * FROM t WHERE e IN ('{v}', 'x')")));
        assert!(same_tree(&format!("-- a comment with a quote ' in it\nSELECT * FROM vector_search('t', '{v}', 3)")));
        assert!(same_tree(&format!("SELECT \"odd ' name\" FROM vector_search('t', '{v}', 3); SELECT '{v}'::text")));
        let lifted = lift(&format!("SELECT * FROM vector_search('t', '{v}', 10)")).unwrap();
        assert_eq!(lifted.text, "SELECT * FROM vector_search('t', $1, 10)");
        assert_eq!(lifted.literals, vec![v]);
    }

    #[test]
    fn literals_outside_lists_or_in_unusual_text_are_left_to_the_parser() {
        let v = vector(96);
        // Not between ( or , and , or ): a comparison, a typed literal, adjacent strings.
        assert_eq!(lift(&format!("SELECT * FROM t WHERE e = '{v}'")), None);
        assert_eq!(lift(&format!("SELECT * FROM f(DATE '{v}')")), None);
        assert_eq!(lift(&format!("SELECT f('{v}' 'more')")), None);
        // Short literals, text that is not a vector, and text this scanner does not follow.
        assert_eq!(lift(&format!("SELECT * FROM vector_search('t', '{}', 10){}", vector(3), " ".repeat(300))), None);
        assert_eq!(lift(&format!("SELECT f('{}')", "word ".repeat(100))), None);
        assert_eq!(lift(&format!("SELECT f('{v}', $1)")), None);
        assert_eq!(lift(&format!("SELECT f('{v}') /* c */")), None);
        assert_eq!(lift(&format!("SELECT f('{v}', 'a\\'b')")), None);
        // Inside another string or a comment: not a literal of its own.
        assert_eq!(lift(&format!("SELECT 'x, ''{v}'', y'")), None);
        assert_eq!(lift(&format!("SELECT 1 -- f('{v}')")), None);
        // Unterminated: the parser reports it.
        assert_eq!(lift(&format!("SELECT f('{v}', 'open)")), None);
    }

    #[test]
    fn a_placeholder_that_does_not_come_back_as_a_value_refuses_the_lift() {
        let v = vector(96);
        let lifted = lift(&format!("SELECT f('{v}')")).unwrap();
        // The same placeholder twice, or one missing: refused.
        let mut twice = parse("SELECT f($1), g($1)");
        assert!(!restore(&mut twice, lifted.literals.clone()));
        let mut missing = parse("SELECT f(1)");
        assert!(!restore(&mut missing, lifted.literals.clone()));
        let mut external = parse("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION 'a'");
        assert!(!restore(&mut external, lifted.literals));
    }
}
