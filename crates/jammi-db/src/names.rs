//! SQL names every part shares: the catalogs the engine reserves, the default schema, and
//! identifier quoting.

use datafusion::sql::sqlparser::ast::{self, ObjectName};

/// Catalog names the engine keeps for itself.
pub const RESERVED_CATALOGS: &[&str] = &["mutable", "vectors", "topics", "audit", "evidence", "datafusion", "information_schema"];

/// The SQL catalog name of mutable tables.
pub const MUTABLE_CATALOG: &str = "mutable";

/// The schema every file source's table lives in.
pub const DEFAULT_SCHEMA: &str = "public";

/// Quote an identifier for SQL text (`"a""b"`), the one place identifiers are quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The table name when `name` is `mutable.public.T` (or `mutable.T`).
pub fn mutable_table_name(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(sql_ident)
        .collect();
    match parts.as_slice() {
        [c, s, t] if c == MUTABLE_CATALOG && s == DEFAULT_SCHEMA => Some(t.clone()),
        [c, t] if c == MUTABLE_CATALOG => Some(t.clone()),
        _ => None,
    }
}

/// The table name when `name` is `vectors.public.T` (or `vectors.T`).
pub fn vector_table_name(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident()).map(sql_ident).collect();
    match parts.as_slice() {
        [c, s, t] if c == "vectors" && s == DEFAULT_SCHEMA => Some(t.clone()),
        [c, t] if c == "vectors" => Some(t.clone()),
        _ => None,
    }
}

/// An identifier as SQL means it: unquoted ones fold to lower case.
pub fn sql_ident(id: &ast::Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_mutable_names() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let parse = |sql: &str| match &datafusion::sql::sqlparser::parser::Parser::parse_sql(&datafusion::sql::sqlparser::dialect::GenericDialect {}, &format!("SELECT * FROM {sql}")).unwrap()[0] {
            ast::Statement::Query(q) => match q.body.as_ref() {
                ast::SetExpr::Select(s) => match &s.from[0].relation {
                    ast::TableFactor::Table { name, .. } => name.clone(),
                    _ => unreachable!(),
                },
                _ => unreachable!(),
            },
            _ => unreachable!(),
        };
        assert_eq!(mutable_table_name(&parse("mutable.public.Labels")), Some("labels".into()));
        assert_eq!(mutable_table_name(&parse("MUTABLE.\"Labels\"")), Some("Labels".into()));
        assert_eq!(mutable_table_name(&parse("mutable.other.t")), None);
        assert_eq!(mutable_table_name(&parse("src.public.t")), None);
    }
}
