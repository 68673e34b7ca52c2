//! How an ephemeral session's tables are named: `NAME$eph_<session id>` in the catalog, so
//! two sessions' `scratch` never collide with each other or with a permanent `scratch`; and
//! how a session's statements reach them — `mutable.public.scratch` in its SQL is rewritten
//! to the session's own table when it has one (a `CREATE TABLE` always makes one).
//!
//! A name carrying a session id resolves only for that session ([`visible`]): other
//! sessions neither list nor reach it, and users cannot create such names (`$` is not
//! allowed in mutable table names).

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Ident, ObjectName, ObjectNamePart, ObjectType, Statement};

use crate::error::{Error, Result};
use crate::names::{mutable_table_name, DEFAULT_SCHEMA, MUTABLE_CATALOG};

/// What separates a table's name from its session's id.
const MARK: &str = "$eph_";

/// The catalog name of session `session`'s table `name`.
pub(crate) fn internal(name: &str, session: &str) -> String {
    format!("{name}{MARK}{session}")
}

/// The session a catalog name belongs to, if it is an ephemeral table's.
pub(crate) fn session_of(name: &str) -> Option<&str> {
    name.rsplit_once(MARK).map(|(_, session)| session)
}

/// The name its session's SQL uses for the catalog name `name`.
pub(crate) fn user_name(name: &str) -> &str {
    name.rsplit_once(MARK).map_or(name, |(user, _)| user)
}

/// Whether a caller in ephemeral session `session` (`None`: not in one) may see `name`.
pub(crate) fn visible(name: &str, session: Option<&str>) -> bool {
    match session_of(name) {
        None => true,
        Some(owner) => session == Some(owner),
    }
}

fn mutable_name(table: &str) -> ObjectName {
    ObjectName(vec![
        ObjectNamePart::Identifier(Ident::new(MUTABLE_CATALOG)),
        ObjectNamePart::Identifier(Ident::new(DEFAULT_SCHEMA)),
        ObjectNamePart::Identifier(Ident::with_quote('"', table)),
    ])
}

/// Point `statement`'s mutable-table names at session `session`'s tables: `CREATE TABLE`
/// always makes a session table; any other reference is rewritten when `exists` says the
/// session has that table, and otherwise left to name a permanent one.
pub(crate) fn rewrite(statement: &mut DfStatement, session: &str, exists: impl Fn(&str) -> bool) -> Result<()> {
    let DfStatement::Statement(inner) = statement else { return Ok(()) };
    match inner.as_mut() {
        Statement::CreateTable(create) => {
            if crate::names::vector_table_name(&create.name).is_some() {
                return Err(Error::unsupported("an ephemeral session creates mutable tables only (CREATE TABLE mutable.public.T); create vector tables outside it"));
            }
            if let Some(name) = mutable_table_name(&create.name) {
                create.name = mutable_name(&internal(&name, session));
            }
        }
        Statement::Drop { object_type: ObjectType::Table, names, .. } => {
            for name in names.iter_mut() {
                if let Some(table) = mutable_table_name(name).filter(|t| session_of(t).is_none()) {
                    let own = internal(&table, session);
                    if exists(&own) {
                        *name = mutable_name(&own);
                    }
                }
            }
        }
        _ => {}
    }
    let _ = ast::visit_relations_mut(inner.as_mut(), |name: &mut ObjectName| {
        if let Some(table) = mutable_table_name(name).filter(|t| session_of(t).is_none()) {
            let own = internal(&table, session);
            if exists(&own) {
                *name = mutable_name(&own);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> DfStatement {
        datafusion::sql::parser::DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
    }

    #[test]
    fn names_carry_their_session_and_resolve_only_there() {
        let name = internal("scratch", "abc");
        assert_eq!(session_of(&name), Some("abc"));
        assert_eq!(user_name(&name), "scratch");
        assert!(visible(&name, Some("abc")));
        assert!(!visible(&name, Some("other")));
        assert!(!visible(&name, None));
        assert!(visible("labels", None));
    }

    #[test]
    fn creates_and_references_are_rewritten_to_the_session_s_tables() {
        let mut create = parse("CREATE TABLE mutable.public.scratch (id BIGINT PRIMARY KEY)");
        rewrite(&mut create, "s1", |_| false).unwrap();
        assert!(create.to_string().contains("\"scratch$eph_s1\""), "{create}");

        let own = |n: &str| n == "scratch$eph_s1";
        let mut query = parse("INSERT INTO mutable.public.scratch SELECT id FROM mutable.public.labels JOIN mutable.scratch USING (id)");
        rewrite(&mut query, "s1", own).unwrap();
        let text = query.to_string();
        assert_eq!(text.matches("scratch$eph_s1").count(), 2, "{text}");
        assert!(text.contains("mutable.public.labels"), "a permanent table keeps its name: {text}");

        let mut drop = parse("DROP TABLE mutable.public.scratch");
        rewrite(&mut drop, "s1", own).unwrap();
        assert!(drop.to_string().contains("scratch$eph_s1"));

        let mut vector = parse("CREATE TABLE vectors.public.v (id BIGINT)");
        assert!(rewrite(&mut vector, "s1", own).is_err());
    }
}
