//! The logical codec jammi's client, scheduler and executors share: Ballista's own, plus
//! [`ShippedTable`]s. Physical plans need nothing more than Ballista's codec — a shipped
//! table scans as DataFusion's memory source, which Ballista already serialises.

use std::sync::Arc;

use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{Result as DfResult, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::shipped::ShippedTable;

/// Ballista's logical codec with jammi's [`ShippedTable`].
#[derive(Debug, Default)]
pub struct JammiLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl JammiLogicalCodec {
    /// The codec, shared.
    pub fn shared() -> Arc<dyn LogicalExtensionCodec> {
        Arc::new(JammiLogicalCodec::default())
    }
}

impl LogicalExtensionCodec for JammiLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> DfResult<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(&self, buf: &[u8], table_ref: &TableReference, schema: SchemaRef, ctx: &TaskContext) -> DfResult<Arc<dyn TableProvider>> {
        match ShippedTable::decode(buf) {
            Some(table) => Ok(Arc::new(table?)),
            None => self.ballista.try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(&self, table_ref: &TableReference, node: Arc<dyn TableProvider>, buf: &mut Vec<u8>) -> DfResult<()> {
        match node.downcast_ref::<ShippedTable>() {
            Some(table) => table.encode(buf),
            None => self.ballista.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> DfResult<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}
