//! Which SQL statements belong to mutable tables, and running them: DDL and DML naming
//! `mutable.public.*`, and `BEGIN` / `COMMIT` / `ROLLBACK`. Everything else goes to
//! DataFusion unchanged.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, ObjectName, ObjectType, Statement, TableFactor, TableObject};

use super::txn::SavepointOp;
use super::ddl::{self, Ddl};
use super::{dml, CATALOG};
use crate::error::{Error, Result};
use crate::session::Session;
use crate::tenant::TenantScope;

/// A statement this module runs.
#[derive(Debug)]
pub enum Claimed<'a> {
    /// A definition change (see [`ddl::Ddl`]).
    Definition(ddl::Ddl<'a>),
    /// `INSERT INTO mutable.public.T ...`
    Insert(&'a ast::Insert, String),
    /// `UPDATE mutable.public.T SET ...`
    Update(&'a ast::Update, String),
    /// `DELETE FROM mutable.public.T ...`
    Delete(&'a ast::Delete, String),
    /// `BEGIN` / `START TRANSACTION`
    Begin,
    /// `COMMIT`
    Commit,
    /// `ROLLBACK`
    Rollback,
    /// `SAVEPOINT s`, `RELEASE [SAVEPOINT] s`, `ROLLBACK TO [SAVEPOINT] s`
    Savepoint(SavepointOp, String),
}

/// The table name when `name` is `mutable.public.T` (or `mutable.T`).
pub fn mutable_name(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(ident)
        .collect();
    match parts.as_slice() {
        [c, s, t] if c == CATALOG && s == crate::source::naming::DEFAULT_SCHEMA => Some(t.clone()),
        [c, t] if c == CATALOG => Some(t.clone()),
        _ => None,
    }
}

/// An identifier as SQL means it: unquoted ones fold to lower case.
fn ident(id: &ast::Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

fn relation_name(relation: &TableFactor) -> Option<String> {
    match relation {
        TableFactor::Table { name, .. } => mutable_name(name),
        _ => None,
    }
}

/// Claim `statement` if it is ours.
pub fn claim(statement: &DfStatement) -> Result<Option<Claimed<'_>>> {
    let DfStatement::Statement(statement) = statement else { return Ok(None) };
    Ok(match statement.as_ref() {
        Statement::CreateTable(c) => mutable_name(&c.name).map(|n| Claimed::Definition(Ddl::CreateTable(c, n))),
        Statement::Drop { object_type: ObjectType::Table, if_exists, names, .. } => {
            let ours: Vec<String> = names.iter().filter_map(mutable_name).collect();
            if ours.is_empty() {
                None
            } else if ours.len() != names.len() {
                return Err(Error::Query("DROP TABLE cannot mix mutable tables with other tables; drop them in separate statements".into()));
            } else {
                Some(Claimed::Definition(Ddl::Drop(ours, *if_exists)))
            }
        }
        Statement::AlterTable(a) => mutable_name(&a.name).map(|n| Claimed::Definition(Ddl::Alter(a, n))),
        Statement::CreateIndex(c) => mutable_name(&c.table_name).map(|n| Claimed::Definition(Ddl::CreateIndex(c, n))),
        Statement::Insert(i) => match &i.table {
            TableObject::TableName(name) => mutable_name(name).map(|n| Claimed::Insert(i, n)),
            _ => None,
        },
        Statement::Update(u) => relation_name(&u.table.relation).map(|n| Claimed::Update(u, n)),
        Statement::Delete(d) => {
            let tables = match &d.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            tables.first().and_then(|t| relation_name(&t.relation)).map(|n| Claimed::Delete(d, n))
        }
        Statement::StartTransaction { .. } => Some(Claimed::Begin),
        Statement::Commit { .. } => Some(Claimed::Commit),
        Statement::Rollback { savepoint: None, .. } => Some(Claimed::Rollback),
        Statement::Rollback { savepoint: Some(name), .. } => Some(Claimed::Savepoint(SavepointOp::RollbackTo, ident(name))),
        Statement::Savepoint { name } => Some(Claimed::Savepoint(SavepointOp::Define, ident(name))),
        Statement::ReleaseSavepoint { name } => Some(Claimed::Savepoint(SavepointOp::Release, ident(name))),
        _ => None,
    })
}

/// Run a claimed statement; DML returns one row with the number of rows affected (`count`).
pub async fn run(session: &Session, scope: TenantScope, claimed: Claimed<'_>) -> Result<DataFrame> {
    let ctx = session.query_context(scope);
    let count = match claimed {
        Claimed::Begin => {
            session.begin_transaction().await?;
            return Ok(ctx.read_empty()?);
        }
        Claimed::Commit => {
            session.end_transaction(true).await?;
            return Ok(ctx.read_empty()?);
        }
        Claimed::Rollback => {
            session.end_transaction(false).await?;
            return Ok(ctx.read_empty()?);
        }
        Claimed::Savepoint(op, name) => {
            let txn = session
                .open_transaction()
                .ok_or_else(|| Error::Query(format!("savepoint '{name}': savepoints exist only inside BEGIN ... COMMIT")))?;
            txn.savepoint(op, &name).await?;
            // DDL after the savepoint was undone with it.
            if op == SavepointOp::RollbackTo && txn.definitions_changed() > 0 {
                session.mutable_state().reload_in(&txn).await?;
            }
            return Ok(ctx.read_empty()?);
        }
        Claimed::Definition(definition) => ddl::run(session, scope, &definition).await.map(|_| None)?,
        Claimed::Insert(i, name) => Some(dml::run(session, scope, &name, dml::Write::Insert(i)).await?),
        Claimed::Update(u, name) => Some(dml::run(session, scope, &name, dml::Write::Update(u)).await?),
        Claimed::Delete(d, name) => Some(dml::run(session, scope, &name, dml::Write::Delete(d)).await?),
    };
    match count {
        None => Ok(ctx.read_empty()?),
        Some(n) => {
            let schema = Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]));
            let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![n]))]).map_err(|e| Error::Query(e.to_string()))?;
            Ok(ctx.read_batch(batch)?)
        }
    }
}
