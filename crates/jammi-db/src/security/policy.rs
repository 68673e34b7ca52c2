//! The statement policy: which statements a caller may run, checked on the parsed statement
//! before anything is planned, and again on the logical plan before it runs.
//!
//! A *restricted* caller — any request through the server, any tenant-bound session, and
//! the operator too when `[security] operator_locations = false` — may only run statements
//! that read and write the engine's own objects. Anything that names a location (a path or
//! URL: `CREATE EXTERNAL TABLE`, `COPY … TO`, a table function that reads files), changes
//! engine settings, or creates tables outside the mutable catalog is refused with one line
//! naming the statement and what to use instead.
//!
//! The check is an allowlist over the SQL AST (walked with sqlparser's visitor, so nested
//! statements, subqueries, CTEs and table functions anywhere in a statement are seen), not
//! string matching; the plan-level check uses DataFusion's `SQLOptions` for statements and
//! refuses plans that copy to files or create tables DataFusion would keep.

use std::ops::ControlFlow;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, ObjectType, Statement, TableFactor, Visit, Visitor};

use crate::error::{Error, Result};

/// What a caller may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Access {
    /// The local operator (the CLI or an embedder with no tenant): every statement
    /// DataFusion supports, locations included.
    #[default]
    Operator,
    /// A server request or a tenant-bound session: no locations, no engine settings, tables
    /// only in the mutable catalog.
    Restricted,
}

/// Table functions a restricted caller may call: none of them reads a path or a URL.
pub const ALLOWED_TABLE_FUNCTIONS: &[&str] = &["vector_search", "text_search", "hybrid_search", "vector_status", "generate_series", "range"];

/// Settings a restricted caller may `SET`: the engine's own, per session, which can only
/// narrow what the session may hold (see [`crate::security::SessionSettings`]).
pub const ALLOWED_SETTINGS: &[&str] = &["idle_in_transaction_timeout", "ephemeral_session"];

/// Refuse `statement` when `access` may not run it.
pub fn check_statement(statement: &DfStatement, access: Access) -> Result<()> {
    if access == Access::Operator {
        return Ok(());
    }
    match statement {
        DfStatement::Statement(s) => check_sql(s),
        DfStatement::CreateExternalTable(t) => Err(refused(
            &format!("CREATE EXTERNAL TABLE {}", t.name),
            "it reads a location chosen by the client",
            "ask the operator to register the data with `jammi source add NAME URL`",
        )),
        DfStatement::CopyTo(c) => Err(refused(
            &format!("COPY ... TO '{}'", c.target),
            "it writes files on the server",
            "run the query and write its rows on the client (psql's \\copy, the HTTP API's Arrow or JSON answer)",
        )),
        DfStatement::Explain(e) => check_statement(&e.statement, access),
        DfStatement::Reset(_) => Err(refused("RESET", "engine settings are the operator's", "leave the settings as the server has them")),
    }
}

/// The allowlist of top-level SQL statements, then every nested part of it.
fn check_sql(statement: &Statement) -> Result<()> {
    let mut visitor = PolicyVisitor { error: None };
    let _ = statement.visit(&mut visitor);
    match visitor.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct PolicyVisitor {
    error: Option<Error>,
}

impl PolicyVisitor {
    fn fail(&mut self, e: Error) -> ControlFlow<()> {
        self.error = Some(e);
        ControlFlow::Break(())
    }
}

impl Visitor for PolicyVisitor {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement_allowed(statement) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => self.fail(e),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let name = match factor {
            TableFactor::Table { name, args: Some(_), .. } | TableFactor::Function { name, .. } => name,
            TableFactor::TableFunction { expr, .. } => {
                return self.fail(refused(&format!("TABLE({expr})"), "table expressions are not available to this caller", "call vector_search or query tables by name"));
            }
            _ => return ControlFlow::Continue(()),
        };
        let function = last_part(name);
        if ALLOWED_TABLE_FUNCTIONS.contains(&function.as_str()) {
            ControlFlow::Continue(())
        } else {
            self.fail(refused(
                &format!("the table function {name}(...)"),
                "only vector_search, text_search, hybrid_search, vector_status, generate_series and range are available to this caller (a table function may read a location)",
                "ask the operator to register the data with `jammi source add NAME URL`",
            ))
        }
    }
}

fn last_part(name: &ObjectName) -> String {
    name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase()).unwrap_or_default()
}

/// Whether a restricted caller may run this kind of statement at all.
fn statement_allowed(statement: &Statement) -> Result<()> {
    match statement {
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::CreateView(_)
        | Statement::AlterTable(_)
        | Statement::CreateIndex(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. } => Ok(()),
        Statement::Drop { object_type: ObjectType::Table | ObjectType::View, .. } => Ok(()),
        Statement::CreateTable(create) => {
            if crate::names::mutable_table_name(&create.name).is_some() || crate::names::vector_table_name(&create.name).is_some() || crate::evidence::channel_name(&create.name).is_some() {
                Ok(())
            } else {
                Err(refused(
                    &format!("CREATE TABLE {}", create.name),
                    "tables outside the mutable catalog would be kept in the server's memory or files",
                    &format!("create a mutable table: CREATE TABLE mutable.public.{} (...)", last_part(&create.name)),
                ))
            }
        }
        Statement::Set(set) => {
            let setting = crate::security::settings::setting_name(set);
            match setting {
                Some(name) if ALLOWED_SETTINGS.contains(&name.as_str()) => Ok(()),
                _ => Err(refused(
                    &format!("{statement}"),
                    "engine settings are the operator's",
                    &format!("leave the settings as the server has them (a session may set: {})", ALLOWED_SETTINGS.join(", ")),
                )),
            }
        }
        Statement::Copy { .. } => Err(refused("COPY", "it reads or writes files on the server", "use INSERT ... VALUES, or psql's \\copy on the client")),
        other => Err(refused(
            &statement_head(other),
            "this statement is not available to server requests or tenant-bound sessions",
            "use queries, DML and DDL on mutable tables, views and vector_search",
        )),
    }
}

/// The first words of a statement, for messages (never its whole text, which may be long).
fn statement_head(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(3).collect();
    words.join(" ")
}

fn refused(what: &str, why: &str, instead: &str) -> Error {
    Error::PermissionDenied { message: format!("{what} is refused: {why}; {instead}") }
}

/// Refuse a logical plan a restricted caller may not run: the second line of defence behind
/// [`check_statement`], for plans reached some other way.
pub fn check_plan(plan: &LogicalPlan, access: Access) -> Result<()> {
    if access == Access::Operator {
        return Ok(());
    }
    // Statements (SET, PREPARE, EXECUTE, ...) never reach DataFusion from a restricted
    // caller: the engine's own settings and transactions are handled before planning.
    SQLOptions::new().with_allow_statements(false).verify_plan(plan).map_err(|e| Error::PermissionDenied {
        message: format!("{}; engine settings are the operator's", crate::error::one_line(&e.to_string())),
    })?;
    let mut error = None;
    let _ = plan.apply_with_subqueries(|node| {
        let refusal = match node {
            LogicalPlan::Copy(copy) => Some(refused(&format!("COPY ... TO '{}'", copy.output_url), "it writes files on the server", "run the query and write its rows on the client")),
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(t)) => {
                Some(refused(&format!("CREATE EXTERNAL TABLE {}", t.name), "it reads a location chosen by the client", "ask the operator to run `jammi source add NAME URL`"))
            }
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(t)) => {
                Some(refused(&format!("CREATE TABLE {}", t.name), "tables outside the mutable catalog are not available", "create a mutable table: CREATE TABLE mutable.public.NAME (...)"))
            }
            LogicalPlan::Ddl(d @ (DdlStatement::CreateCatalog(_) | DdlStatement::CreateCatalogSchema(_) | DdlStatement::CreateFunction(_) | DdlStatement::DropFunction(_) | DdlStatement::DropCatalogSchema(_))) => {
                Some(refused(d.name(), "catalogs, schemas and functions are the operator's", "use views and mutable tables"))
            }
            _ => None,
        };
        match refusal {
            Some(e) => {
                error = Some(e);
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Remove storage locations from `EXPLAIN` text shown to a restricted caller: file lists
/// (`file_groups={…}`), and any of `secrets` (the data directory, storage roots, source
/// URLs) that appear elsewhere.
pub fn redact_plan_text(text: &str, secrets: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("file_groups={") {
        let open = start + "file_groups=".len();
        out.push_str(&rest[..open]);
        // Skip the balanced braces.
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, c) in rest[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push_str("{<redacted>}");
        rest = &rest[end..];
    }
    out.push_str(rest);
    for secret in secrets.iter().filter(|s| s.len() > 1) {
        out = out.replace(secret.as_str(), "<redacted>");
        let trimmed = secret.trim_start_matches('/');
        if trimmed.len() > 1 {
            out = out.replace(trimmed, "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn check(sql: &str) -> Result<()> {
        let statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).expect("parses");
        statements.iter().try_for_each(|s| check_statement(s, Access::Restricted))
    }

    #[test]
    fn locations_are_refused_for_restricted_callers() {
        for sql in [
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/x.csv' STORED AS CSV",
            "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv' STORED AS CSV",
            "SELECT * FROM read_parquet('/data/x.parquet')",
            "SELECT * FROM (SELECT * FROM read_csv('/etc/passwd')) t",
            "WITH a AS (SELECT * FROM parquet_metadata('/x')) SELECT * FROM a",
            "CREATE TABLE t AS SELECT 1",
            "CREATE TABLE t (a INT)",
            "SET datafusion.execution.target_partitions = 1000",
            "SET datafusion.catalog.information_schema = false",
            "RESET datafusion.execution.batch_size",
            "CREATE SCHEMA s",
            "PREPARE p AS SELECT 1",
        ] {
            let err = check(sql).expect_err(sql).to_string();
            assert!(err.starts_with("permission denied:") && err.contains("refused"), "{sql}: {err}");
        }
    }

    #[test]
    fn ordinary_work_is_allowed() {
        for sql in [
            "SELECT * FROM s.public.t WHERE a IN (SELECT b FROM mutable.public.m)",
            "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
            "SELECT * FROM vector_search('docs', '[1,2]', 3)",
            "SELECT * FROM generate_series(1, 3)",
            "CREATE TABLE mutable.public.m (id BIGINT PRIMARY KEY)",
            "INSERT INTO mutable.public.m VALUES (1)",
            "CREATE VIEW v AS SELECT 1",
            "DROP VIEW v",
            "BEGIN",
            "COMMIT",
            "SET idle_in_transaction_timeout = '5s'",
            "EXPLAIN SELECT 1",
            "SHOW TABLES",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn operator_keeps_every_ability() {
        let statements = DFParser::parse_sql_with_dialect("COPY (SELECT 1) TO '/tmp/x.csv' STORED AS CSV", &GenericDialect {}).unwrap();
        assert!(check_statement(&statements[0], Access::Operator).is_ok());
    }

    #[test]
    fn explain_text_loses_its_paths() {
        let text = "DataSourceExec: file_groups={1 group: [[home/me/data/a.parquet, b.parquet]]}, projection=[a] at /home/me/data";
        let out = redact_plan_text(text, &["/home/me/data".to_string()]);
        assert!(!out.contains("a.parquet") && !out.contains("home/me"), "{out}");
        assert!(out.contains("file_groups={<redacted>}") && out.contains("projection=[a]"), "{out}");
    }
}
