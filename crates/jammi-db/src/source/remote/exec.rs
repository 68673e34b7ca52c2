//! [`RemoteQueryExec`]: runs one SQL statement on a database source and streams its rows as
//! Arrow batches. Its `output_rows` metric is the number of rows the remote sent, so
//! `EXPLAIN ANALYZE` shows what crossed the wire.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, ParamValues, Result as DfResult, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream};
use futures::StreamExt;

use super::pushdown::RemoteParam;
use super::RemoteSource;

/// One remote statement.
#[derive(Debug, Clone)]
pub struct RemoteQueryExec {
    source: Arc<RemoteSource>,
    sql: String,
    /// The statement's parameters, and their values once bound.
    params: Vec<RemoteParam>,
    values: Option<Vec<ScalarValue>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl RemoteQueryExec {
    /// Run `sql` (with `params` for its `$1, $2, …`) on `source`; its rows have `schema`.
    pub fn new(source: Arc<RemoteSource>, sql: String, params: Vec<RemoteParam>, schema: SchemaRef) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(SchemaRef::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        RemoteQueryExec { source, sql, params, values: None, schema, properties, metrics: ExecutionPlanMetricsSet::new() }
    }

    /// Whether the statement has parameters.
    pub fn has_parameters(&self) -> bool {
        !self.params.is_empty()
    }

    /// A copy with the values of `params` bound (each converted to its parameter's type).
    pub fn bind(&self, params: &ParamValues) -> DfResult<Self> {
        let mut values = Vec::with_capacity(self.params.len());
        for param in &self.params {
            let given = params.get_placeholders_with_values(&param.id)?.value;
            let value = given.cast_to(&param.data_type).map_err(|_| {
                DataFusionError::Plan(format!("parameter {} must be {}; got {}", param.id, param.data_type, given.data_type()))
            })?;
            values.push(value);
        }
        Ok(RemoteQueryExec { values: Some(values), metrics: ExecutionPlanMetricsSet::new(), ..self.clone() })
    }

    /// The SQL sent.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

impl DisplayAs for RemoteQueryExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let params = show_params(&self.params);
        write!(f, "RemoteQueryExec: source={} sql={}{params}", self.source.name, self.sql)
    }
}

/// ` params=[$1 ← $3, …]` (remote number ← jammi placeholder), or nothing.
pub(crate) fn show_params(params: &[RemoteParam]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = params.iter().enumerate().map(|(i, p)| format!("${} ← {}", i + 1, p.id)).collect();
    format!(" params=[{}]", pairs.join(", "))
}

impl ExecutionPlan for RemoteQueryExec {
    fn name(&self) -> &str {
        "RemoteQueryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let values = match (&self.values, self.params.is_empty()) {
            (Some(values), _) => values.clone(),
            (None, true) => Vec::new(),
            (None, false) => {
                return Err(DataFusionError::Execution(format!("the remote statement on '{}' has parameters without values", self.source.name)));
            }
        };
        let (pool, sql, schema) = (self.source.pool.clone(), self.sql.clone(), SchemaRef::clone(&self.schema));
        let batch_size = context.session_config().batch_size();
        // With an idle connection at hand the producer is driven by the stream's own polls:
        // a task of its own put a wake-up of another thread (~50 µs here) between the rows
        // arriving and the consumer seeing them — a fifth of a point lookup. Connecting
        // (and waiting for a connection, with retries) runs in a task of its own: that
        // future is large, too large for a debug build's stack on top of the caller's.
        let rows = match self.source.pool.idle_connection() {
            Some(conn) => driven(Box::pin(async move { pool.stream(Some(conn), sql, values, schema, batch_size, tx).await }), rx),
            None => {
                // The producer ends by itself when the stream is dropped (its sends fail).
                tokio::spawn(async move { pool.stream(None, sql, values, schema, batch_size, tx).await });
                let mut rx = rx;
                futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
            }
        };
        let (name, password) = (self.source.name.clone(), self.source.password.clone());
        let stream = rows.map(move |item| {
            match item {
                Ok(batch) => {
                    baseline.record_output(batch.num_rows());
                    Ok(batch)
                }
                Err(e) => Err(DataFusionError::External(Box::new(super::pool::remote_error(&e, &name, password.as_deref())))),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(SchemaRef::clone(&self.schema), stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The items `producer` sends to `rx`, with `producer` polled by the stream itself: each
/// poll first lets the producer run until it waits (for the database, or for room in the
/// channel), then hands out what it sent. Dropping the stream drops the producer.
///
/// The producer is polled once right away, so the statement is on its way to the database
/// before anyone asks for rows (the probe side of a join of two databases runs while the
/// build side is read); the polls that follow register the consumer's waker.
fn driven<T: Send + 'static>(
    mut producer: futures::future::BoxFuture<'static, ()>,
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    let started = producer.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    let mut producer = started.is_pending().then_some(producer);
    futures::stream::poll_fn(move |cx| {
        if let Some(running) = producer.as_mut() {
            if running.as_mut().poll(cx).is_ready() {
                producer = None;
            }
        }
        rx.poll_recv(cx)
    })
    .boxed()
}
