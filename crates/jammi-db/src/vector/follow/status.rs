//! How far a table is behind its source: [`FollowStatus`] from the catalog, as a record batch
//! (`jammi vectors status`), and as SQL: `SELECT * FROM vector_status('docs_vec')`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::super::{VectorEntry, VectorState};
use super::FollowStatus;
use crate::catalog::{now_millis, Catalog};
use crate::error::{Error, Result};
use crate::tenant::scope_of;

/// The status of `entry`, from its follow row. Tables that neither follow a mutable table
/// nor ever changed model have none.
pub(crate) async fn status_of(catalog: &Catalog, entry: &VectorEntry) -> Result<FollowStatus> {
    let name = &entry.record.name;
    let Some(record) = catalog.follows().get(&entry.record.id).await? else {
        return Err(Error::invalid(
            "table",
            format!("vector table '{name}' does not follow a mutable table, so it has no lag; create one with `jammi vectors follow NAME --from mutable.public.T --embed COLUMN --model M`"),
        ));
    };
    let model = entry.spec.embedding.as_ref().map(|e| format!("{}:{}", e.model, e.version)).unwrap_or_default();
    let reembedding = record
        .target_model
        .as_deref()
        .and_then(|t| serde_json::from_str::<crate::embed::EmbeddingSource>(t).ok())
        .map(|t| format!("{}:{}", t.model, t.version));
    let live = entry.manifest.segments.iter().map(|s| s.rows).sum::<u64>() - entry.manifest.tombstones.len() as u64;
    let now = now_millis();
    Ok(FollowStatus {
        name: name.clone(),
        source: entry.spec.follows.as_ref().map(|f| format!("mutable.public.{}", f.table)),
        model,
        rows: live,
        source_offset: record.next_offset,
        embedded_offset: record.embedded_offset,
        pending: record.next_offset - record.embedded_offset,
        backfill_done: record.backfill_done,
        lag_ms: record.oldest_pending_ms.map(|t| (now - t).max(0)).unwrap_or(0),
        worker: record.lease_worker.filter(|_| record.lease_expires_ms.is_some_and(|e| e >= now)),
        last_error: record.last_error,
        failures: record.failures,
        reembedding,
        rows_embedded: record.rows_embedded,
    })
}

fn status_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, true),
        Field::new("model", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("source_offset", DataType::Int64, false),
        Field::new("embedded_offset", DataType::Int64, false),
        Field::new("pending", DataType::Int64, false),
        Field::new("lag_ms", DataType::Int64, false),
        Field::new("backfill_done", DataType::Boolean, false),
        Field::new("reembedding", DataType::Utf8, true),
        Field::new("worker", DataType::Utf8, true),
        Field::new("failures", DataType::Int64, false),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("rows_embedded", DataType::Int64, false),
    ]))
}

/// `vectors status` as one row.
pub fn status_to_batch(s: &FollowStatus) -> Result<RecordBatch> {
    let text = |v: Option<&str>| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let number = |v: i64| Arc::new(Int64Array::from(vec![v])) as ArrayRef;
    let columns = vec![
        text(Some(&s.name)),
        text(s.source.as_deref()),
        text(Some(&s.model)),
        Arc::new(UInt64Array::from(vec![s.rows])) as ArrayRef,
        number(s.source_offset),
        number(s.embedded_offset),
        number(s.pending),
        number(s.lag_ms),
        Arc::new(BooleanArray::from(vec![s.backfill_done])) as ArrayRef,
        text(s.reembedding.as_deref()),
        text(s.worker.as_deref()),
        number(s.failures),
        text(s.last_error.as_deref()),
        number(s.rows_embedded),
    ];
    RecordBatch::try_new(status_schema(), columns).map_err(Error::internal)
}

/// `vector_status('name')`: the table's status as one row, read when the query runs.
#[derive(Debug)]
pub(crate) struct VectorStatusFunction {
    state: Arc<VectorState>,
}

impl VectorStatusFunction {
    pub(crate) fn new(state: Arc<VectorState>) -> Self {
        VectorStatusFunction { state }
    }
}

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl TableFunctionImpl for VectorStatusFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let name = match args.exprs() {
            [Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(name)), _)] => name.clone(),
            _ => return Err(external(Error::invalid("vector_status", "vector_status takes one argument: the vector table's name as a string"))),
        };
        let scope = scope_of(args.session());
        let entry = self
            .state
            .resolve(scope, &name)
            .ok_or_else(|| external(Error::Unknown { kind: crate::error::ObjectKind::VectorTable, name: name.clone(), scope: scope.describe() }))?;
        Ok(Arc::new(StatusTable { catalog: self.state.catalog.clone(), entry }))
    }
}

#[derive(Debug)]
struct StatusTable {
    catalog: Catalog,
    entry: Arc<VectorEntry>,
}

#[async_trait]
impl TableProvider for StatusTable {
    fn schema(&self) -> SchemaRef {
        status_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(&self, _state: &dyn DfSession, projection: Option<&Vec<usize>>, _filters: &[Expr], _limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = status_to_batch(&status_of(&self.catalog, &self.entry).await.map_err(external)?).map_err(external)?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], status_schema(), projection.cloned())?)
    }
}
