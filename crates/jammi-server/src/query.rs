//! Running one request for a principal, the same way for every protocol: on a session
//! handle of its own (so `BEGIN` on one connection never leaks into another), inside the
//! principal's task-local tenant scope, through the limits gate, counted in the metrics.

use std::future::Future;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use jammi_db::Session;

use crate::auth::Principal;
use crate::error::Result;
use crate::metrics::Protocol;
use crate::Shared;

/// A query's result: its schema (also when it has no rows) and its batches.
#[derive(Debug)]
pub(crate) struct QueryResult {
    pub(crate) schema: SchemaRef,
    pub(crate) batches: Vec<RecordBatch>,
}

impl Shared {
    /// A fresh session handle for `principal`.
    pub(crate) fn session_for(&self, principal: Principal) -> Session {
        // Restricted whatever the token's tenant: no client of the server may name a
        // location or change engine settings (see jammi_db::security).
        self.session.with_tenant(principal.tenant).restricted()
    }

    /// Run `work` as `principal` (task-local tenant scope), in a query slot, and count it.
    pub(crate) async fn run_as<T>(
        &self,
        principal: Principal,
        protocol: Protocol,
        kind: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if *self.stopping.borrow() {
            return Err(crate::ServerError::ShuttingDown);
        }
        let started = Instant::now();
        let result = scoped(principal, self.gate.run(work)).await;
        self.metrics.record(protocol, kind, started.elapsed(), result.is_ok());
        result
    }
}

/// `future` in `principal`'s task-local tenant scope.
pub(crate) async fn scoped<F: Future>(principal: Principal, future: F) -> F::Output {
    // On the heap: request futures (DataFusion planning inside) are large, and moving them
    // by value through these layers overflowed a worker's stack in debug builds.
    let future = Box::pin(future);
    match principal.tenant {
        Some(tenant) => jammi_db::tenant::with_tenant(tenant, future).await,
        None => future.await,
    }
}

/// Rows a DML statement affected: the engine answers them as one `count` row.
pub(crate) fn affected_rows(batches: &[RecordBatch]) -> Option<u64> {
    use datafusion::arrow::array::AsArray;
    batches
        .first()
        .filter(|b| b.num_rows() == 1 && b.num_columns() == 1 && b.schema().field(0).name() == "count")
        .and_then(|b| b.column(0).as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>().map(|c| c.value(0)))
}

/// Run `sql` (several `;`-separated statements run in order; the last one's rows are
/// returned) or, with `params`, one statement with `$1, $2, …` bound: a query as a
/// prepared statement, anything else (DML on mutable tables, DDL) with the values written
/// into it as literals.
pub(crate) async fn run_sql(session: &Session, sql: &str, params: Vec<ScalarValue>) -> Result<QueryResult> {
    if params.is_empty() {
        let frame = session.sql(sql).await?;
        return collect(frame).await;
    }
    let mut statements = session.parse(sql)?;
    if statements.len() != 1 {
        return Err(crate::ServerError::BadRequest(format!("parameters go with one statement; got {}", statements.len())));
    }
    let statement = statements.remove(0);
    if statement.returns_rows() {
        if let Ok(prepared) = session.prepare(sql).await {
            let stream = prepared.execute(params).await?;
            let schema = stream.schema();
            use futures::TryStreamExt;
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            return Ok(QueryResult { schema, batches });
        }
    }
    let frame = session.run(&statement.with_literals(&params)?).await?;
    collect(frame).await
}

async fn collect(frame: datafusion::dataframe::DataFrame) -> Result<QueryResult> {
    let schema = SchemaRef::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok(QueryResult { schema, batches })
}
