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
use datafusion::logical_expr::{Expr, TableType};
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

impl SearchesTable {
    /// The rows `scope` may read, in chain order.
    async fn rows(&self, scope: TenantScope) -> crate::error::Result<Vec<AuditRow>> {
        if let Some(auditor) = &self.auditor {
            auditor.flush().await;
        }
        let repo = self.catalog.audit();
        let chains = match scope {
            TenantScope::Admin => repo.tenants().await?,
            other => vec![chain_of(other)],
        };
        let mut rows = Vec::new();
        for chain in chains {
            rows.extend(repo.chain(&chain, 1, i64::MAX).await?);
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

    async fn scan(&self, state: &dyn DfSession, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = self.rows(scope_of(state)).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
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
