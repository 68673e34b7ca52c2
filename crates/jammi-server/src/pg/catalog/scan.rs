//! Reading the parts of a psql catalog query that matter: the select list, the catalog
//! tables of the FROM clause, the name patterns and the object id of the WHERE clause.
//!
//! The text is scanned through a *mask*: a copy in which string literals, quoted
//! identifiers, comments and everything inside parentheses are blanked, so keywords found
//! in it are the outer query's own (a sub-select's FROM never counts).

/// One catalog query's text and its mask.
pub(super) struct Scanned<'a> {
    sql: &'a str,
    /// Same byte length as `sql`, ASCII, lower case; hidden parts are spaces.
    mask: String,
}

/// One item of the select list.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The expression, lower case (what the item computes).
    pub(crate) expr: String,
    /// The column name the client sees: the alias, else what Postgres would name it.
    pub(crate) name: String,
}

/// A catalog table the FROM clause reads, and whether it is only LEFT JOINed (so an
/// empty one does not empty the result).
#[derive(Debug, PartialEq)]
pub(super) struct FromTable {
    pub(super) name: String,
    pub(super) left_joined: bool,
}

impl<'a> Scanned<'a> {
    pub(super) fn new(sql: &'a str) -> Self {
        Scanned { sql, mask: mask(sql) }
    }

    /// Byte offset of the first top-level `word` at or after `from` (whole words only).
    fn keyword(&self, word: &str, from: usize) -> Option<usize> {
        let bytes = self.mask.as_bytes();
        let mut start = from;
        while let Some(found) = self.mask.get(start..)?.find(word) {
            let at = start + found;
            let before = at.checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(at + word.len()).copied();
            let boundary = |b: Option<u8>| b.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.'));
            if boundary(before) && boundary(after) {
                return Some(at);
            }
            start = at + word.len();
        }
        None
    }

    /// Where the clause starting at `start` ends: the next top-level clause keyword.
    fn clause_end(&self, start: usize, enders: &[&str]) -> usize {
        enders.iter().filter_map(|w| self.keyword(w, start)).min().unwrap_or(self.sql.len())
    }

    fn select_range(&self) -> Option<(usize, usize)> {
        let start = self.keyword("select", 0)? + "select".len();
        let end = self.clause_end(start, &["from", "where", "order", "union", "group", "limit"]);
        Some((start, end))
    }

    fn range_of_from(&self) -> Option<(usize, usize)> {
        let start = self.keyword("from", 0)? + "from".len();
        Some((start, self.clause_end(start, &["where", "order", "union", "group", "limit"])))
    }

    fn where_range(&self) -> Option<(usize, usize)> {
        let start = self.keyword("where", 0)? + "where".len();
        Some((start, self.clause_end(start, &["order", "union", "group", "limit"])))
    }

    /// The outer select list.
    pub(super) fn items(&self) -> Vec<Item> {
        let Some((start, end)) = self.select_range() else { return Vec::new() };
        split_commas(&self.mask, start, end).into_iter().map(|(s, e)| self.item(s, e)).filter(|i| !i.expr.is_empty()).collect()
    }

    fn item(&self, start: usize, end: usize) -> Item {
        let text = self.sql[start..end].trim();
        // `expr AS "Name"` / `expr AS name`: the last top-level ` as `.
        let split = self.mask[start..end].rfind(" as ").and_then(|at| Some((self.sql.get(start..start + at)?, self.sql.get(start + at + 4..end)?.trim())));
        if let Some((expr, alias)) = split {
            let name = match alias.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => alias.to_ascii_lowercase(),
            };
            return Item { expr: expr.trim().to_ascii_lowercase(), name };
        }
        Item { expr: text.to_ascii_lowercase(), name: default_name(text) }
    }

    /// The `pg_catalog` tables of the outer FROM clause, in order.
    pub(super) fn tables_read(&self) -> Vec<FromTable> {
        let Some((start, end)) = self.range_of_from() else { return Vec::new() };
        let clause = &self.mask[start..end];
        let mut tables = Vec::new();
        let mut at = 0;
        while let Some(found) = clause[at..].find("pg_catalog.") {
            let begin = at + found + "pg_catalog.".len();
            let len = clause[begin..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(clause.len() - begin);
            let before = clause[..at + found].trim_end();
            let left_joined = before.ends_with("left join") || before.ends_with("left outer join");
            tables.push(FromTable { name: clause[begin..begin + len].to_string(), left_joined });
            at = begin + len;
        }
        tables
    }

    /// The regular expression `column` is matched against in the WHERE clause
    /// (`c.relname OPERATOR(pg_catalog.~) '^(people)$'`), if any.
    pub(super) fn regex_on(&self, column: &str) -> Option<String> {
        let (start, end) = self.where_range()?;
        let mut at = start;
        while let Some(found) = self.keyword(column, at).filter(|&p| p < end) {
            let rest = &self.sql[found + column.len()..end];
            let trimmed = rest.trim_start();
            let operator = ["OPERATOR(pg_catalog.~)", "~"].into_iter().find(|op| trimmed.get(..op.len()).is_some_and(|head| head.eq_ignore_ascii_case(op)));
            if let Some(op) = operator {
                if let Some((value, _)) = literal(trimmed[op.len()..].trim_start()) {
                    return Some(value);
                }
            }
            at = found + column.len();
        }
        None
    }

    /// The string literals of `column IN ('r','p','')` in the WHERE clause, if any.
    pub(super) fn in_list(&self, column: &str) -> Option<Vec<String>> {
        let (start, end) = self.where_range()?;
        let found = self.keyword(column, start).filter(|&p| p < end)?;
        let rest = self.sql[found + column.len()..end].trim_start();
        let mut rest = rest.get(..2).filter(|w| w.eq_ignore_ascii_case("in")).and(rest.get(2..))?.trim_start().strip_prefix('(')?;
        let mut values = Vec::new();
        loop {
            let (value, used) = literal(rest.trim_start())?;
            values.push(value);
            rest = rest.trim_start()[used..].trim_start();
            match rest.as_bytes().first()? {
                b',' => rest = &rest[1..],
                b')' => return Some(values),
                _ => return None,
            }
        }
    }

    /// The object id `column` is compared with in the WHERE clause (`c.oid = '16385'`).
    pub(super) fn oid_equals(&self, column: &str) -> Option<u32> {
        let (start, end) = self.where_range()?;
        let found = self.keyword(column, start).filter(|&p| p < end)?;
        let rest = self.sql[found + column.len()..end].trim_start().strip_prefix('=')?.trim_start();
        let digits = match literal(rest) {
            Some((value, _)) => value,
            None => rest.chars().take_while(char::is_ascii_digit).collect(),
        };
        digits.parse().ok()
    }

    /// Whether the WHERE clause has `text` (lower case) outside literals and parentheses,
    /// or, for literals, anywhere (`n.nspname <> 'information_schema'`).
    pub(super) fn where_mentions(&self, text: &str) -> bool {
        self.where_range().is_some_and(|(s, e)| self.sql[s..e].to_ascii_lowercase().contains(text))
    }
}

/// What Postgres names an unaliased item: a column's own name, a function's name.
fn default_name(text: &str) -> String {
    let head = text.split('(').next().unwrap_or(text).trim();
    let last = head.rsplit('.').next().unwrap_or(head);
    if !last.is_empty() && last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !last.chars().all(|c| c.is_ascii_digit()) {
        let word = last.to_ascii_lowercase();
        if !matches!(word.as_str(), "true" | "false" | "null" | "case") {
            return word;
        }
    }
    "?column?".to_string()
}

/// Top-level comma-separated pieces of `mask[start..end]` as byte ranges.
fn split_commas(mask: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut pieces = Vec::new();
    let mut piece = start;
    for (i, b) in mask.as_bytes()[start..end].iter().enumerate() {
        if *b == b',' {
            pieces.push((piece, start + i));
            piece = start + i + 1;
        }
    }
    pieces.push((piece, end));
    pieces
}

/// A SQL string literal at the start of `text` (`'…'` or `E'…'`): its value and the bytes
/// it took.
pub(super) fn literal(text: &str) -> Option<(String, usize)> {
    let (escapes, body) = match text.as_bytes().first()? {
        b'E' | b'e' => (true, text.get(1..)?),
        _ => (false, text),
    };
    let mut chars = body.strip_prefix('\'')?.char_indices();
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if body[1 + i + 1..].starts_with('\'') => {
                value.push('\'');
                chars.next();
            }
            '\'' => return Some((value, usize::from(escapes) + 1 + i + 1)),
            '\\' if escapes => match chars.next().map(|(_, c)| c) {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some(other) => value.push(other),
                None => return None,
            },
            c => value.push(c),
        }
    }
    None
}

/// `sql` with literals, quoted identifiers, comments and parenthesised parts blanked
/// (byte for byte), lower case.
fn mask(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = vec![b' '; bytes.len()];
    let (mut i, mut depth) = (0, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' => {
                // E'…' strings let a backslash escape the quote.
                let escapes = i > 0 && matches!(bytes[i - 1], b'E' | b'e') && (i < 2 || !bytes[i - 2].is_ascii_alphanumeric());
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if escapes => i += 1,
                        b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 1,
                        b'\'' => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => {
                if depth == 0 {
                    out[i] = b'(';
                }
                depth += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    out[i] = b')';
                }
            }
            _ if depth == 0 && b.is_ascii() && !b.is_ascii_whitespace() => out[i] = b.to_ascii_lowercase(),
            _ => {}
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOKUP: &str = "SELECT c.oid,\n  n.nspname,\n  c.relname\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relname OPERATOR(pg_catalog.~) '^(people)$' COLLATE pg_catalog.default\n  AND n.nspname OPERATOR(pg_catalog.~) E'^(files\\\\.public)$' COLLATE pg_catalog.default\nORDER BY 2, 3;";

    #[test]
    fn reads_items_tables_patterns() {
        let s = Scanned::new(LOOKUP);
        let names: Vec<_> = s.items().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["oid", "nspname", "relname"]);
        assert_eq!(
            s.tables_read(),
            [FromTable { name: "pg_class".into(), left_joined: false }, FromTable { name: "pg_namespace".into(), left_joined: true }]
        );
        assert_eq!(s.regex_on("c.relname").as_deref(), Some("^(people)$"));
        assert_eq!(s.regex_on("n.nspname").as_deref(), Some("^(files\\.public)$"));
        assert_eq!(s.oid_equals("c.oid"), None);
        let list = Scanned::new("SELECT 1 FROM pg_catalog.pg_class c WHERE c.relkind IN ('r','p','') AND x");
        assert_eq!(list.in_list("c.relkind"), Some(vec!["r".into(), "p".into(), String::new()]));
    }

    #[test]
    fn aliases_subqueries_and_oids() {
        let sql = "SELECT a.attname, (SELECT x FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid), CASE c.relkind WHEN 'r' THEN 'table' END as \"Type\", false AS relhasoids, '' FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16385' AND a.attnum > 0";
        let s = Scanned::new(sql);
        let items = s.items();
        let names: Vec<_> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["attname", "?column?", "Type", "relhasoids", "?column?"]);
        assert_eq!(s.tables_read(), [FromTable { name: "pg_attribute".into(), left_joined: false }]);
        assert_eq!(s.oid_equals("a.attrelid"), Some(16385));
    }

    #[test]
    fn odd_text_does_not_panic() {
        for sql in ["SELECT 'é'as x FROM pg_catalog.pg_class c WHERE c.relname é", "SELECT FROM pg_catalog.pg_class c WHERE c.relname ~ 'é", "SELECT (( FROM", "'"] {
            let s = Scanned::new(sql);
            let _ = (s.items(), s.tables_read(), s.regex_on("c.relname"), s.oid_equals("c.oid"), s.in_list("c.relkind"));
        }
    }

    #[test]
    fn literals() {
        assert_eq!(literal("'it''s' x"), Some(("it's".into(), 7)));
        assert_eq!(literal("E'a\\\\.b'"), Some(("a\\.b".into(), 8)));
        assert_eq!(literal("'open"), None);
        assert_eq!(literal("x"), None);
    }
}
