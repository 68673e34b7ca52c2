//! Which SQL statements belong to mutable tables, and running them: DDL and DML naming
//! `mutable.public.*`. Transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`, savepoints) is
//! classified here too, and run by the session, which owns the open transaction, as is
//! `CREATE TABLE vectors.public.T WITH (...) [AS query]` (a new vector table).
//! Everything else goes to DataFusion unchanged.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, ObjectType, Statement, TableFactor, TableObject};

use crate::txn::SavepointOp;
use super::ddl::{self, Ddl};
use super::dml;
use crate::names::{mutable_table_name, sql_ident};
use crate::error::{Error, Result};
use crate::context::EngineContext;
use super::MutableState;
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
    /// Transaction control, run by the session.
    Transaction(Control),
    /// `CREATE TABLE vectors.public.T WITH (…) [AS query]`: a new vector table, created
    /// by the session (it owns the vector part).
    VectorTable(&'a ast::CreateTable, String),
    /// `CREATE TABLE evidence.public.C (columns)`: a new evidence channel (its storage is a
    /// mutable table, see [`crate::evidence`]).
    EvidenceChannel(&'a ast::CreateTable, String),
}

/// Transaction control statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `BEGIN` / `START TRANSACTION`
    Begin,
    /// `COMMIT`
    Commit,
    /// `ROLLBACK`
    Rollback,
    /// `SAVEPOINT s`, `RELEASE [SAVEPOINT] s`, `ROLLBACK TO [SAVEPOINT] s`
    Savepoint(SavepointOp, String),
}

fn relation_name(relation: &TableFactor) -> Option<String> {
    match relation {
        TableFactor::Table { name, .. } => mutable_table_name(name),
        _ => None,
    }
}

/// Evidence is append-only: the statements that would change or remove it are refused,
/// whether they name a channel or its storage.
fn refuse_evidence_changes(statement: &Statement) -> Result<()> {
    let storage = |name: &ast::ObjectName| mutable_table_name(name).is_some_and(|n| crate::evidence::channel_of(&n).is_some());
    let channel = |name: &ast::ObjectName| crate::evidence::channel_name(name).is_some();
    let named: Vec<&ast::ObjectName> = match statement {
        Statement::Drop { names, .. } => names.iter().collect(),
        Statement::AlterTable(a) => vec![&a.name],
        Statement::CreateIndex(c) => vec![&c.table_name],
        Statement::Update(u) => match &u.table.relation {
            TableFactor::Table { name, .. } => vec![name],
            _ => Vec::new(),
        },
        Statement::Delete(d) => match &d.from {
            ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t.iter().filter_map(|t| match &t.relation {
                TableFactor::Table { name, .. } => Some(name),
                _ => None,
            }).collect(),
        },
        Statement::CreateTable(c) => vec![&c.name].into_iter().filter(|n| storage(n)).collect(),
        Statement::Insert(i) => match &i.table {
            TableObject::TableName(name) if storage(name) => vec![name],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    match named.into_iter().find(|n| storage(n) || channel(n)) {
        Some(name) => Err(Error::unsupported(format!(
            "{name}: evidence is append-only — attach rows with INSERT INTO evidence.public.CHANNEL (query_id, row_id, …); nothing updates, deletes or drops them"
        ))),
        None => Ok(()),
    }
}

/// Claim `statement` if it is ours.
pub fn claim(statement: &DfStatement) -> Result<Option<Claimed<'_>>> {
    let DfStatement::Statement(statement) = statement else { return Ok(None) };
    refuse_evidence_changes(statement)?;
    Ok(match statement.as_ref() {
        Statement::CreateTable(c) => match (mutable_table_name(&c.name), crate::names::vector_table_name(&c.name), crate::evidence::channel_name(&c.name)) {
            (Some(n), _, _) => Some(Claimed::Definition(Ddl::CreateTable(c, n))),
            (None, Some(n), _) => Some(Claimed::VectorTable(c, n)),
            (None, None, Some(n)) => Some(Claimed::EvidenceChannel(c, n)),
            (None, None, None) => None,
        },
        Statement::Drop { object_type: ObjectType::Table, if_exists, names, .. } => {
            let ours: Vec<String> = names.iter().filter_map(mutable_table_name).collect();
            if ours.is_empty() {
                None
            } else if ours.len() != names.len() {
                return Err(Error::unsupported("DROP TABLE cannot mix mutable tables with other tables; drop them in separate statements"));
            } else {
                Some(Claimed::Definition(Ddl::Drop(ours, *if_exists)))
            }
        }
        Statement::AlterTable(a) => mutable_table_name(&a.name).map(|n| Claimed::Definition(Ddl::Alter(a, n))),
        Statement::CreateIndex(c) => mutable_table_name(&c.table_name).map(|n| Claimed::Definition(Ddl::CreateIndex(c, n))),
        Statement::Insert(i) => match &i.table {
            TableObject::TableName(name) => match crate::evidence::channel_name(name) {
                // Attaching evidence: an insert into the channel's storage.
                Some(channel) => Some(Claimed::Insert(i, crate::evidence::storage_name(&channel))),
                None => mutable_table_name(name).map(|n| Claimed::Insert(i, n)),
            },
            _ => None,
        },
        Statement::Update(u) => relation_name(&u.table.relation).map(|n| Claimed::Update(u, n)),
        Statement::Delete(d) => {
            let tables = match &d.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            tables.first().and_then(|t| relation_name(&t.relation)).map(|n| Claimed::Delete(d, n))
        }
        Statement::StartTransaction { .. } => Some(Claimed::Transaction(Control::Begin)),
        Statement::Commit { .. } => Some(Claimed::Transaction(Control::Commit)),
        Statement::Rollback { savepoint: None, .. } => Some(Claimed::Transaction(Control::Rollback)),
        Statement::Rollback { savepoint: Some(name), .. } => Some(Claimed::Transaction(Control::Savepoint(SavepointOp::RollbackTo, sql_ident(name)))),
        Statement::Savepoint { name } => Some(Claimed::Transaction(Control::Savepoint(SavepointOp::Define, sql_ident(name)))),
        Statement::ReleaseSavepoint { name } => Some(Claimed::Transaction(Control::Savepoint(SavepointOp::Release, sql_ident(name)))),
        _ => None,
    })
}

/// Run a claimed DDL or DML statement; DML returns one row with the number of rows
/// affected (`count`). Transaction control is the session's ([`Claimed::Transaction`]).
pub(crate) async fn run(ctx: &dyn EngineContext, tables: &MutableState, scope: TenantScope, claimed: Claimed<'_>) -> Result<DataFrame> {
    // Another ephemeral session's tables are not there for this caller, whatever it names.
    let session = ctx.ephemeral_id();
    let named: Vec<&String> = match &claimed {
        Claimed::Definition(Ddl::CreateTable(_, n) | Ddl::Alter(_, n) | Ddl::CreateIndex(_, n)) | Claimed::EvidenceChannel(_, n) => vec![n],
        Claimed::Definition(Ddl::Drop(names, _)) => names.iter().collect(),
        Claimed::Insert(_, n) | Claimed::Update(_, n) | Claimed::Delete(_, n) => vec![n],
        _ => Vec::new(),
    };
    if let Some(name) = named.into_iter().find(|n| !crate::ephemeral::names::visible(n, session.as_deref())) {
        return Err(Error::Unknown { kind: crate::error::ObjectKind::MutableTable, name: crate::ephemeral::names::user_name(name).to_string(), scope: scope.describe() });
    }
    let query = ctx.query_context(scope);
    let count = match claimed {
        Claimed::Transaction(control) => return Err(Error::internal(format!("{control:?} is transaction control: the session runs it"))),
        Claimed::VectorTable(_, name) => return Err(Error::internal(format!("CREATE TABLE vectors.public.{name}: the session runs it"))),
        Claimed::EvidenceChannel(create, channel) => {
            let sql = crate::evidence::storage_create_sql(create, &channel)?;
            let parsed = datafusion::sql::parser::DFParser::parse_sql(&sql).map_err(|e| Error::invalid("CREATE TABLE evidence", format!("{e}")))?;
            let Some(DfStatement::Statement(statement)) = parsed.into_iter().next() else { return Err(Error::internal("the channel's storage statement did not parse")) };
            let Statement::CreateTable(storage) = statement.as_ref() else { return Err(Error::internal("the channel's storage statement is not a CREATE TABLE")) };
            let mut storage = storage.clone();
            storage.if_not_exists = create.if_not_exists;
            ddl::run(ctx, tables, scope, &Ddl::CreateTable(&storage, crate::evidence::storage_name(&channel))).await.map(|_| None)?
        }
        Claimed::Definition(definition) => ddl::run(ctx, tables, scope, &definition).await.map(|_| None)?,
        Claimed::Insert(i, name) => Some(dml::run(ctx, tables, scope, &name, dml::Write::Insert(i)).await?),
        Claimed::Update(u, name) => Some(dml::run(ctx, tables, scope, &name, dml::Write::Update(u)).await?),
        Claimed::Delete(d, name) => Some(dml::run(ctx, tables, scope, &name, dml::Write::Delete(d)).await?),
    };
    match count {
        None => Ok(query.read_empty()?),
        Some(n) => {
            let schema = Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]));
            let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![n]))]).map_err(Error::internal)?;
            Ok(query.read_batch(batch)?)
        }
    }
}
