//! [`ShippedTable`]: rows computed in the jammi process that sends a query, travelling
//! inside the plan to the cluster — how tables that only jammi can read (mutable, vector
//! and database sources) join files scanned by executors.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// The first bytes of an encoded [`ShippedTable`], so the codec tells it from the table
/// providers Ballista's own codec encodes.
const MAGIC: &[u8] = b"jammi-shipped-v1\n";

/// Rows with their schema, read by executors from the plan itself.
#[derive(Debug)]
pub struct ShippedTable {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl ShippedTable {
    /// `batches` (each of `schema`).
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        ShippedTable { schema, batches }
    }

    /// Bytes of Arrow data the table holds (what it adds to the plan sent).
    pub fn data_bytes(batches: &[RecordBatch]) -> usize {
        batches.iter().map(RecordBatch::get_array_memory_size).sum()
    }

    /// Arrow IPC stream behind [`MAGIC`].
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) -> DfResult<()> {
        buf.extend_from_slice(MAGIC);
        let mut writer = StreamWriter::try_new(&mut *buf, &self.schema)?;
        for batch in &self.batches {
            writer.write(batch)?;
        }
        writer.finish()?;
        Ok(())
    }

    /// The table in `buf`, or `None` when `buf` is not a shipped table.
    pub(crate) fn decode(buf: &[u8]) -> Option<DfResult<ShippedTable>> {
        let body = buf.strip_prefix(MAGIC)?;
        Some((|| {
            let reader = StreamReader::try_new(body, None)?;
            let schema = reader.schema();
            let batches = reader.collect::<Result<Vec<_>, _>>()?;
            Ok(ShippedTable { schema, batches })
        })()
        .map_err(|e: DataFusionError| DataFusionError::Internal(format!("a shipped table in the plan is unreadable: {e}"))))
    }
}

#[async_trait]
impl TableProvider for ShippedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(&self, _state: &dyn CatalogSession, projection: Option<&Vec<usize>>, _filters: &[Expr], _limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        // One partition: the rows are small by construction (`[query] ship_limit_mb`) and
        // the cluster repartitions them for joins as it needs.
        Ok(MemorySourceConfig::try_new_exec(std::slice::from_ref(&self.batches), Arc::clone(&self.schema), projection.cloned())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_shipped_table_decodes_to_the_rows_it_was_encoded_from_and_nothing_else_decodes() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(StringArray::from(vec![Some("a"), None]))]).unwrap();
        let mut buf = Vec::new();
        ShippedTable::new(Arc::clone(&schema), vec![batch.clone(), batch.clone()]).encode(&mut buf).unwrap();
        let back = ShippedTable::decode(&buf).unwrap().unwrap();
        assert_eq!(back.schema, schema);
        assert_eq!(back.batches, vec![batch.clone(), batch]);
        assert!(ShippedTable::decode(b"something else").is_none());
        let truncated = &buf[..buf.len() - 20];
        let err = ShippedTable::decode(truncated).unwrap().unwrap_err().to_string();
        assert!(err.contains("shipped table"), "{err}");
    }
}
