//! `audit.public.searches`: the audit records a caller may read, as a read-only SQL table —
//! a tenant its own chain, an unbound caller the shared one, the admin scope every chain.
//! No statement can change it: the table takes no inserts, updates or deletes.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, Session as DfSession, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::MemTable;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::{chain_of, record::SearchRecord, Auditor};
use crate::catalog::{AuditRow, Catalog};
use crate::engine_catalog::{EngineCatalog, PartTables, PublicOnlyCatalog};
use crate::tenant::{scope_of, TenantScope};

/// The SQL catalog name.
pub(crate) const CATALOG: &str = "audit";

/// The `audit` catalog.
#[derive(Debug)]
pub(crate) struct AuditCatalog {
    catalog: Catalog,
    auditor: Option<Arc<Auditor>>,
}

impl AuditCatalog {
    pub(crate) fn new(catalog: Catalog, auditor: Option<Arc<Auditor>>) -> Self {
        AuditCatalog { catalog, auditor }
    }
}

impl EngineCatalog for AuditCatalog {
    fn for_scope(&self, _scope: TenantScope) -> Arc<dyn CatalogProvider> {
        Arc::new(PublicOnlyCatalog::new(AuditTables { catalog: self.catalog.clone(), auditor: self.auditor.clone() }))
    }
}

#[derive(Debug)]
struct AuditTables {
    catalog: Catalog,
    auditor: Option<Arc<Auditor>>,
}

#[async_trait]
impl PartTables for AuditTables {
    /// Listed where auditing is on; queryable by name always (records of earlier runs).
    fn names(&self) -> Vec<String> {
        if self.auditor.is_some() {
            vec!["searches".to_string()]
        } else {
            Vec::new()
        }
    }

    async fn table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        (name == "searches").then(|| Arc::new(SearchesTable { catalog: self.catalog.clone(), auditor: self.auditor.clone() }) as Arc<dyn TableProvider>)
    }

    fn exists(&self, name: &str) -> bool {
        name == "searches"
    }

    fn create_instead(&self, _name: &str) -> String {
        "the audit catalog holds only audit.public.searches, written by the engine".to_string()
    }

    fn drop_instead(&self, _name: &str) -> String {
        "audit.public.searches cannot be dropped: the audit log is append-only".to_string()
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("query_id", DataType::Utf8, false),
        Field::new("time", DataType::Utf8, true),
        Field::new("kind", DataType::Utf8, true),
        Field::new("key_version", DataType::Int64, false),
        Field::new("record", DataType::Utf8, false),
        Field::new("signature", DataType::Utf8, false),
    ]))
}

#[derive(Debug)]
struct SearchesTable {
    catalog: Catalog,
    auditor: Option<Arc<Auditor>>,
}

/// What a query's filters narrow the rows to (the rest of each filter DataFusion applies).
#[derive(Debug, Default)]
struct Narrowed {
    from_seq: i64,
    to_seq: i64,
    query_id: Option<String>,
    tenant: Option<String>,
}

impl Narrowed {
    fn of(filters: &[Expr]) -> Self {
        let mut n = Narrowed { from_seq: 1, to_seq: i64::MAX, ..Default::default() };
        for filter in filters {
            let Some((column, op, value)) = comparison(filter) else { continue };
            match (column.as_str(), op, value) {
                ("seq", op, ScalarValue::Int64(Some(v))) => match op {
                    Operator::Eq => (n.from_seq, n.to_seq) = (n.from_seq.max(v), n.to_seq.min(v)),
                    Operator::GtEq => n.from_seq = n.from_seq.max(v),
                    Operator::Gt => n.from_seq = n.from_seq.max(v.saturating_add(1)),
                    Operator::LtEq => n.to_seq = n.to_seq.min(v),
                    Operator::Lt => n.to_seq = n.to_seq.min(v.saturating_sub(1)),
                    _ => {}
                },
                ("query_id", Operator::Eq, ScalarValue::Utf8(Some(v))) => n.query_id = Some(v),
                ("tenant", Operator::Eq, ScalarValue::Utf8(Some(v))) => n.tenant = Some(v),
                _ => {}
            }
        }
        n
    }
}

/// `column op literal` (or `literal op column`, turned around).
fn comparison(filter: &Expr) -> Option<(String, Operator, ScalarValue)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = filter else { return None };
    let literal = |e: &Expr| match e {
        Expr::Literal(v, _) => v.cast_to(&match v.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
            _ => DataType::Int64,
        }).ok(),
        _ => None,
    };
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), other) => Some((c.name.clone(), *op, literal(other)?)),
        (other, Expr::Column(c)) => Some((c.name.clone(), op.swap()?, literal(other)?)),
        _ => None,
    }
}

impl SearchesTable {
    /// The rows `scope` may read that `narrowed` lets through, in chain order.
    async fn rows(&self, scope: TenantScope, narrowed: &Narrowed) -> crate::error::Result<Vec<AuditRow>> {
        if let Some(auditor) = &self.auditor {
            auditor.flush().await;
        }
        let repo = self.catalog.audit();
        let may_read = |chain: &str| scope == TenantScope::Admin || chain == chain_of(scope);
        if let Some(id) = &narrowed.query_id {
            return Ok(repo.by_query_id(id).await?.into_iter().filter(|r| may_read(&r.tenant)).collect());
        }
        let chains = match (scope, &narrowed.tenant) {
            (TenantScope::Admin, Some(t)) => vec![t.clone()],
            (TenantScope::Admin, None) => repo.tenants().await?,
            (other, _) => vec![chain_of(other)],
        };
        let mut rows = Vec::new();
        for chain in chains {
            rows.extend(repo.range(&chain, narrowed.from_seq, narrowed.to_seq).await?);
        }
        Ok(rows)
    }
}

#[async_trait]
impl TableProvider for SearchesTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// `seq` ranges, `query_id =` and `tenant =` narrow what is read from the catalog (so a
    /// page of a long chain costs that page); DataFusion still applies every filter.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters.iter().map(|f| if comparison(f).is_some() { TableProviderFilterPushDown::Inexact } else { TableProviderFilterPushDown::Unsupported }).collect())
    }

    async fn scan(&self, state: &dyn DfSession, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = self.rows(scope_of(state), &Narrowed::of(filters)).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        let parsed: Vec<Option<SearchRecord>> = rows.iter().map(|r| SearchRecord::parse(&r.record)).collect();
        let text = |f: &dyn Fn(&AuditRow) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
        let columns: Vec<ArrayRef> = vec![
            text(&|r| r.tenant.clone()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.seq))),
            text(&|r| r.query_id.clone()),
            Arc::new(StringArray::from(parsed.iter().map(|p| p.as_ref().map(|r| r.time.clone())).collect::<Vec<_>>())),
            Arc::new(StringArray::from(parsed.iter().map(|p| p.as_ref().map(|r| r.kind.clone())).collect::<Vec<_>>())),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.key_version))),
            text(&|r| r.record.clone()),
            text(&|r| r.signature.clone()),
        ];
        let batch = RecordBatch::try_new(schema(), columns)?;
        MemTable::try_new(schema(), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}
