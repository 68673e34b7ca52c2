//! The `vectors` catalog: `vectors.public.NAME` is an ordinary table (without deleted rows)
//! that also takes `DELETE`. The `vector_search` table function is in `search_fn`.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::{plan_datafusion_err, plan_err, Column, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{lit, Expr, LogicalPlanBuilder, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::files::TableFiles;
use super::spec::{Manifest, VectorTableSpec};
use super::write::{self, Selection};
use crate::tenant::scope_of;
use super::{NoProgress, VectorEntry, VectorState};
use crate::catalog::VectorTableRecord;
use crate::error::Result;
use crate::engine_catalog::{PartTables, PublicOnlyCatalog};
use crate::tenant::TenantScope;

/// The `vectors` catalog as one scope sees it.
pub(crate) fn vectors_catalog(state: Arc<VectorState>, scope: TenantScope) -> PublicOnlyCatalog<VectorTables> {
    PublicOnlyCatalog::new(VectorTables { state, scope })
}

#[derive(Debug)]
pub(crate) struct VectorTables {
    state: Arc<VectorState>,
    scope: TenantScope,
}

#[async_trait]
impl PartTables for VectorTables {
    fn names(&self) -> Vec<String> {
        self.state.visible_names(self.scope)
    }

    async fn table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.state.resolve(self.scope, name).map(|e| Arc::clone(&e.provider))
    }

    fn exists(&self, name: &str) -> bool {
        self.state.resolve(self.scope, name).is_some()
    }

    fn create_instead(&self, name: &str) -> String {
        format!("cannot create vectors.public.{name} with SQL; use `jammi vectors import`")
    }

    fn drop_instead(&self, name: &str) -> String {
        format!("cannot drop vectors.public.{name} with SQL; use `jammi vectors drop {name}`")
    }
}


/// `vectors.public.NAME`: the table's data files as an ordinary table, without deleted
/// rows; `DELETE FROM` records tombstones.
#[derive(Debug)]
pub(crate) struct VectorRowsTable {
    inner: Arc<dyn TableProvider>,
    name: String,
    table_id: String,
    /// Per segment with tombstones: its data file alone and the ids deleted from it, skipped
    /// by scans until a compaction drops them. Per segment, because an id deleted from one
    /// segment may live again in a later one (a following table re-embeds a changed row).
    deleted: Vec<(Arc<dyn TableProvider>, Vec<ScalarValue>)>,
    /// The segments without tombstones, together (`None` when there are none).
    intact: Option<Arc<dyn TableProvider>>,
    /// Weak: the state owns this table through its entry.
    state: Weak<VectorState>,
}

fn listing(files: &TableFiles, segments: &[&super::spec::SegmentMeta], schema: &SchemaRef) -> DfResult<Arc<dyn TableProvider>> {
    let urls = segments
        .iter()
        .map(|s| ListingTableUrl::parse(files.url_of(&format!("{}/data.parquet", s.name))))
        .collect::<DfResult<Vec<_>>>()?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(Arc::clone(schema));
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// Build the SQL table of one generation of a vector table.
pub(crate) fn rows_table(
    state: &Arc<VectorState>,
    record: &VectorTableRecord,
    spec: &VectorTableSpec,
    manifest: &Manifest,
    files: &TableFiles,
) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(spec.schema.clone());
    let all: Vec<&super::spec::SegmentMeta> = manifest.segments.iter().collect();
    let inner: Arc<dyn TableProvider> = if all.is_empty() { Arc::new(EmptyTable::new(Arc::clone(&schema))) } else { listing(files, &all, &schema)? };
    let mut deleted = Vec::new();
    let mut intact = Vec::new();
    for segment in &manifest.segments {
        let ids: Vec<ScalarValue> = manifest
            .tombstones
            .iter()
            .filter(|t| t.key >= segment.base_key && t.key < segment.base_key + segment.rows)
            .map(|t| match &t.id {
                serde_json::Value::Number(n) => ScalarValue::Int64(n.as_i64()),
                serde_json::Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
                other => ScalarValue::Utf8(Some(other.to_string())),
            })
            .collect();
        if ids.is_empty() {
            intact.push(segment);
        } else {
            deleted.push((listing(files, &[segment], &schema)?, ids));
        }
    }
    let intact = if intact.is_empty() { None } else { Some(listing(files, &intact, &schema)?) };
    Ok(Arc::new(VectorRowsTable { inner, name: record.name.clone(), table_id: record.id.clone(), deleted, intact, state: Arc::downgrade(state) }))
}

impl VectorRowsTable {
    fn entry(&self, state: &VectorState) -> Option<Arc<VectorEntry>> {
        state.tables.read().values().find(|e| e.record.id == self.table_id).cloned()
    }
}

#[async_trait]
impl TableProvider for VectorRowsTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: the data files prune with them, and the engine still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.deleted.is_empty() {
            return self.inner.scan(state, projection, filters, limit).await;
        }
        let schema = self.inner.schema();
        let column = |i: usize| Expr::Column(Column::new_unqualified(schema.field(i).name()));
        let table = format!("vectors_{}", self.name);
        let mut parts = Vec::new();
        for (segment, ids) in &self.deleted {
            let deleted: Vec<Expr> = ids.iter().map(|v| Expr::Literal(v.clone(), None)).collect();
            parts.push(LogicalPlanBuilder::scan(table.as_str(), provider_as_source(Arc::clone(segment)), None)?.filter(column(0).in_list(deleted, true))?.build()?);
        }
        if let Some(intact) = &self.intact {
            parts.push(LogicalPlanBuilder::scan(table.as_str(), provider_as_source(Arc::clone(intact)), None)?.build()?);
        }
        let mut parts = parts.into_iter();
        let mut plan = LogicalPlanBuilder::from(parts.next().ok_or_else(|| plan_datafusion_err!("no segments"))?);
        for part in parts {
            plan = plan.union(part)?;
        }
        if let Some(p) = projection {
            plan = plan.project(p.iter().map(|i| column(*i)))?;
        }
        if limit.is_some() {
            plan = plan.limit(0, limit)?;
        }
        state.create_physical_plan(&plan.build()?).await
    }

    async fn insert_into(&self, _state: &dyn DfSession, _input: Arc<dyn ExecutionPlan>, _op: InsertOp) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan_err!("cannot INSERT into vectors.public.{}; add rows with `jammi vectors append {} FILE`", self.name, self.name)
    }

    async fn delete_from(&self, session: &dyn DfSession, filters: Vec<Expr>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let external = |e: crate::error::Error| DataFusionError::External(Box::new(e));
        let state = self.state.upgrade().ok_or_else(|| plan_datafusion_err!("the session is closed"))?;
        let entry = self
            .entry(&state)
            .ok_or_else(|| external(crate::error::Error::Unknown { kind: crate::error::ObjectKind::VectorTable, name: self.name.clone(), scope: String::new() }))?;
        let scope = scope_of(session);
        if !super::may_write(scope, &entry) {
            return Err(external(super::write_denied(scope, &entry)));
        }
        super::follow::refuse_direct_write(&entry).map_err(external)?;
        let predicate = conjunction(filters).unwrap_or_else(|| lit(true));
        let deleted = write::delete(&state, &entry, &Selection::Predicate(predicate)).await.map_err(external)?;
        write::compact_if_due(&state, &entry, false, &NoProgress).await.map_err(external)?;
        state.refresh(&entry).await.map_err(external)?;
        let schema = Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(UInt64Array::from(vec![deleted]))])?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None)?)
    }
}
