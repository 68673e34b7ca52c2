//! `jammi._jammi`: the native half of the `jammi` Python package. Thin on purpose — every
//! call is one engine call on a shared tokio runtime with the GIL released; answers cross
//! as Arrow through the C data interface (no copies). The Pythonic surface (namespaces,
//! pandas/polars inputs, context managers) is `python/jammi/__init__.py`.

mod errors;
mod remote;
mod run;
mod topics;

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use arrow_pyarrow::{IntoPyArrow, PyArrowType, ToPyArrow};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use jammi_db::progress::NoProgress;
use jammi_db::source::{sources_to_batch, FileFormatKind, SourceSpec};
use jammi_db::vector::{tables_to_batch, HybridOptions, ImportSpec, SearchMode, SearchQuery, SearchRequest, TextIndexColumn};
use jammi_db::{Config, Session, TenantId};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::errors::to_py;
use crate::run::{run, run_here, runtime};

/// An open jammi-db: a data directory (or the deployment its `jammi.toml` names), seen as
/// one tenant or as the operator.
#[pyclass(module = "jammi._jammi", frozen)]
struct Database {
    session: Session,
}

pub(crate) fn table(py: Python<'_>, schema: SchemaRef, batches: Vec<RecordBatch>) -> PyResult<Py<PyAny>> {
    let list = PyList::empty(py);
    for batch in batches {
        list.append(batch.to_pyarrow(py)?)?;
    }
    let schema = schema.as_ref().to_pyarrow(py)?;
    Ok(py.import("pyarrow")?.getattr("Table")?.call_method1("from_batches", (list, schema))?.unbind())
}

fn one_batch(py: Python<'_>, batch: RecordBatch) -> PyResult<Py<PyAny>> {
    table(py, batch.schema(), vec![batch])
}

/// The values of a one-row batch, as query parameters `$1, $2, …` (the Python side builds
/// it with pyarrow, so every Arrow type is a parameter type).
fn parameters(row: &RecordBatch) -> PyResult<Vec<ScalarValue>> {
    if row.num_rows() != 1 {
        return Err(errors::InvalidArgument::new_err("parameters travel as one row"));
    }
    row.columns().iter().map(|c| ScalarValue::try_from_array(c, 0).map_err(|e| errors::InvalidArgument::new_err(e.to_string()))).collect()
}

/// Query vectors packed as native-endian float32 (the Python side packs numpy arrays and
/// lists alike), `dims` values each.
fn unpack_vectors(packed: &[u8], dims: usize) -> PyResult<Vec<Vec<f32>>> {
    const F32: usize = std::mem::size_of::<f32>();
    let values = packed.len() / F32;
    if dims == 0 || packed.is_empty() || packed.len() % F32 != 0 || values % dims != 0 {
        return Err(errors::InvalidArgument::new_err(format!("{values} values are not whole vectors of {dims} dimensions")));
    }
    Ok(packed.chunks_exact(dims * F32).map(|vector| vector.chunks_exact(F32).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect()).collect())
}

/// A DataFusion stream read batch by batch as pyarrow pulls it.
struct StreamReader {
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
}

impl Iterator for StreamReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        runtime().block_on(self.stream.next()).map(|r| r.map_err(|e| ArrowError::ExternalError(Box::new(e))))
    }
}

impl RecordBatchReader for StreamReader {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[pymethods]
impl Database {
    /// Run SQL (several statements run in order; the last one's rows are returned).
    #[pyo3(signature = (query, params=None))]
    fn sql(&self, py: Python<'_>, query: String, params: Option<PyArrowType<RecordBatch>>) -> PyResult<Py<PyAny>> {
        let session = self.session.clone();
        let params = params.map(|p| parameters(&p.0)).transpose()?;
        let (schema, batches) = run(py, async move {
            match params {
                Some(values) => {
                    let prepared = session.prepare(&query).await?;
                    let schema = prepared.schema().await?;
                    Ok((schema, prepared.query(values).await?))
                }
                None => {
                    let frame = session.sql(&query).await?;
                    let schema = Arc::new(frame.schema().as_arrow().clone());
                    Ok((schema, frame.collect().await?))
                }
            }
        })?;
        table(py, schema, batches)
    }

    /// Run SQL and stream its rows: a `pyarrow.RecordBatchReader`.
    fn sql_reader(&self, py: Python<'_>, query: String) -> PyResult<Py<PyAny>> {
        let session = self.session.clone();
        let stream = run(py, async move { Ok(session.sql(&query).await?.execute_stream().await?) })?;
        let reader: Box<dyn RecordBatchReader + Send> = Box::new(StreamReader { schema: stream.schema(), stream });
        Ok(reader.into_pyarrow(py)?.unbind())
    }

    /// The same database seen as `tenant` (a UUID), or as the operator for `None`.
    #[pyo3(signature = (tenant=None))]
    fn as_tenant(&self, tenant: Option<String>) -> PyResult<Database> {
        let tenant = tenant.map(|t| t.parse::<TenantId>()).transpose().map_err(to_py)?;
        Ok(Database { session: self.session.with_tenant(tenant) })
    }

    /// The tenant this handle acts as, or None.
    #[getter]
    fn tenant(&self) -> Option<String> {
        self.session.scope().owner().map(|t| t.to_string())
    }

    #[pyo3(signature = (name, url, options, tenant_column=None, format=None))]
    fn source_add(&self, py: Python<'_>, name: String, url: String, options: std::collections::BTreeMap<String, String>, tenant_column: Option<String>, format: Option<String>) -> PyResult<Py<PyAny>> {
        let mut spec = SourceSpec::new(name, url);
        spec.options = options;
        spec.tenant_column = tenant_column;
        if let Some(format) = format {
            spec = spec.with_format(format.parse::<FileFormatKind>().map_err(to_py)?);
        }
        let session = self.session.clone();
        let info = run(py, async move { session.sources().add(spec).await })?;
        one_batch(py, sources_to_batch(&[info]).map_err(to_py)?)
    }

    fn source_list(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let session = self.session.clone();
        let sources = run(py, async move { session.sources().list().await })?;
        one_batch(py, sources_to_batch(&sources).map_err(to_py)?)
    }

    fn source_remove(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let session = self.session.clone();
        run(py, async move { session.sources().remove(&name).await.map(|_| ()) })
    }

    #[pyo3(signature = (name, path, id_column, vector_column, metric=None, precision=None, text_columns=Vec::new(), m=None, ef_construction=None))]
    #[allow(clippy::too_many_arguments)]
    fn vectors_import(
        &self,
        py: Python<'_>,
        name: String,
        path: String,
        id_column: String,
        vector_column: String,
        metric: Option<String>,
        precision: Option<String>,
        text_columns: Vec<String>,
        m: Option<usize>,
        ef_construction: Option<usize>,
    ) -> PyResult<Py<PyAny>> {
        let mut spec = ImportSpec::new(name, path, id_column, vector_column);
        if let Some(metric) = metric {
            spec.metric = metric.parse().map_err(to_py)?;
            spec.precision = jammi_db::vector::Precision::default_for(spec.metric);
        }
        if let Some(precision) = precision {
            spec.precision = precision.parse().map_err(to_py)?;
        }
        spec.text_columns = text_columns.iter().map(|c| TextIndexColumn::parse(c)).collect::<jammi_db::Result<_>>().map_err(to_py)?;
        spec.m = m.unwrap_or(spec.m);
        spec.ef_construction = ef_construction.unwrap_or(spec.ef_construction);
        let session = self.session.clone();
        let info = run(py, async move { session.vectors().import(spec, &NoProgress).await })?;
        one_batch(py, tables_to_batch(&[info]).map_err(to_py)?)
    }

    fn vectors_append(&self, py: Python<'_>, name: String, path: String, id_column: String, vector_column: String) -> PyResult<u64> {
        let session = self.session.clone();
        run(py, async move { session.vectors().append(&name, &path, &id_column, &vector_column, &Default::default(), &NoProgress).await })
    }

    fn vectors_delete(&self, py: Python<'_>, name: String, ids: Vec<String>) -> PyResult<u64> {
        let session = self.session.clone();
        run(py, async move { session.vectors().delete_ids(&name, &ids).await })
    }

    fn vectors_list(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let session = self.session.clone();
        let tables = run(py, async move { session.vectors().list().await })?;
        one_batch(py, tables_to_batch(&tables).map_err(to_py)?)
    }

    fn vectors_drop(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let session = self.session.clone();
        run(py, async move { session.vectors().drop(&name).await })
    }

    /// One query (a vector, a text, or both for hybrid search) through the engine's mode
    /// choice, or several vectors in one batch (a `query` column numbers them; `vectors`
    /// is row-major, `dims` values each).
    #[pyo3(signature = (name, k, vectors, dims, text, mode, filter, ef, exact, fusion))]
    #[allow(clippy::too_many_arguments)]
    fn vectors_search(
        &self,
        py: Python<'_>,
        name: String,
        k: usize,
        vectors: Option<&[u8]>,
        dims: usize,
        text: Option<String>,
        mode: Option<String>,
        filter: Option<String>,
        ef: Option<usize>,
        exact: bool,
        fusion: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let mut vectors = match vectors {
            Some(packed) => unpack_vectors(packed, dims)?,
            None => Vec::new(),
        };
        let mode = mode.map(|m| m.parse::<SearchMode>()).transpose().map_err(to_py)?;
        let session = self.session.clone();
        let batch = if vectors.len() > 1 {
            if text.is_some() || mode.is_some_and(|m| m != SearchMode::Vector) || fusion.is_some() {
                return Err(errors::InvalidArgument::new_err("several query vectors are searched in vector mode only; give one vector (and text) for a hybrid search"));
            }
            let requests: Vec<SearchRequest> = vectors.into_iter().map(|v| SearchRequest { filter: filter.clone(), ef, exact, ..SearchRequest::new(v, k) }).collect();
            run_here(py, async move { session.vectors().search_batch(&name, &requests).await })?
        } else {
            if vectors.is_empty() && text.is_none() {
                return Err(errors::InvalidArgument::new_err("search takes a vector, several, or text"));
            }
            let hybrid = fusion.as_deref().map(HybridOptions::parse).transpose().map_err(to_py)?.unwrap_or_default();
            let query = SearchQuery { mode, text, vector: vectors.pop(), k, filter, ef, exact, oversample: None, hybrid };
            run_here(py, async move { Ok(session.vectors().search_any(&name, &query).await?.batch) })?
        };
        one_batch(py, batch)
    }

    #[pyo3(signature = (name, schema=None, from_table=None, max_age_seconds=None, max_events=None))]
    fn topic_create(&self, py: Python<'_>, name: String, schema: Option<String>, from_table: Option<String>, max_age_seconds: Option<i64>, max_events: Option<i64>) -> PyResult<Py<PyAny>> {
        use jammi_db::topic::{Retention, TopicDefinition, TopicSpec};
        let columns = match &schema {
            Some(text) => TopicSpec::parse_schema(text).map_err(to_py)?,
            None => Vec::new(),
        };
        let retention = Retention { max_age_ms: max_age_seconds.map(|s| s.saturating_mul(1000)), max_events };
        let definition = TopicDefinition { name, columns, source_table: from_table, retention };
        let session = self.session.clone();
        let info = run(py, async move { session.topics().create(definition).await })?;
        one_batch(py, jammi_db::topic::topics_to_batch(&[info]).map_err(to_py)?)
    }

    fn topic_list(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let session = self.session.clone();
        let topics = run(py, async move { session.topics().list().await })?;
        one_batch(py, jammi_db::topic::topics_to_batch(&topics).map_err(to_py)?)
    }

    fn topic_drop(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let session = self.session.clone();
        run(py, async move { session.topics().drop(&name).await })
    }

    /// Publish a batch (its columns by name, cast to the topic's types); (first offset, count).
    fn topic_publish(&self, py: Python<'_>, name: String, batch: PyArrowType<RecordBatch>) -> PyResult<(i64, i64)> {
        let session = self.session.clone();
        let published = run(py, async move { session.topics().publish(&name, &batch.0).await })?;
        Ok((published.first_offset, published.count))
    }

    /// Publish JSON objects (one per line, or one array); (first offset, count).
    fn topic_publish_json(&self, py: Python<'_>, name: String, text: String) -> PyResult<(i64, i64)> {
        let session = self.session.clone();
        let published = run(py, async move { session.topics().publish_json(&name, &text).await })?;
        Ok((published.first_offset, published.count))
    }

    #[pyo3(signature = (name, from_offset=None, from_beginning=false, group=None, filter=None, ack_timeout_seconds=30))]
    #[allow(clippy::too_many_arguments)]
    fn topic_subscribe(&self, py: Python<'_>, name: String, from_offset: Option<i64>, from_beginning: bool, group: Option<String>, filter: Option<String>, ack_timeout_seconds: u64) -> PyResult<topics::Subscription> {
        use jammi_db::topic::{StartAt, SubscribeOptions};
        let from = match (from_offset, from_beginning) {
            (Some(offset), _) => StartAt::Offset(offset),
            (None, true) => StartAt::Beginning,
            (None, false) => StartAt::Live,
        };
        let options = SubscribeOptions { from, filter, group, ack_timeout: std::time::Duration::from_secs(ack_timeout_seconds), ..Default::default() };
        let session = self.session.clone();
        let subscription = run(py, async move { session.topics().subscribe(&name, options).await })?;
        Ok(topics::Subscription::new(subscription))
    }

    /// Store `files` (local paths, stored under their file names) as one artifact bundle
    /// under `root`/`segments`; the bundle's prefix URL.
    fn artifact_put(&self, py: Python<'_>, root: String, segments: Vec<String>, files: Vec<PathBuf>, options: std::collections::BTreeMap<String, String>) -> PyResult<String> {
        use jammi_db::artifact::ArtifactFile;
        use jammi_db::storage::StorageUrl;
        let mut entries = Vec::with_capacity(files.len());
        for path in files {
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| errors::InvalidArgument::new_err(format!("'{}' has no file name to store it under", path.display())))?.to_string();
            entries.push(ArtifactFile::from_path(name, path));
        }
        let session = self.session.clone();
        run(py, async move {
            let store = session.artifacts(options);
            let root = StorageUrl::parse(&root)?;
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            Ok(store.put_artifact(&root, &segments, &entries).await?.to_string())
        })
    }

    /// Fetch (verified, cached) the bundle at `prefix`; its local directory.
    fn artifact_fetch(&self, py: Python<'_>, prefix: String, options: std::collections::BTreeMap<String, String>) -> PyResult<PathBuf> {
        let session = self.session.clone();
        run(py, async move {
            let store = session.artifacts(options);
            Ok(store.fetch_artifact(&jammi_db::storage::StorageUrl::parse(&prefix)?.as_dir()).await?.dir)
        })
    }

    fn artifact_rm(&self, py: Python<'_>, prefix: String, options: std::collections::BTreeMap<String, String>) -> PyResult<()> {
        let session = self.session.clone();
        run(py, async move { session.artifacts(options).delete_artifact_prefix(&jammi_db::storage::StorageUrl::parse(&prefix)?.as_dir()).await })
    }

    #[pyo3(signature = (name, version, task, dimensions=None, metadata="{}".to_string(), from_dir=None))]
    #[allow(clippy::too_many_arguments)]
    fn model_register(&self, py: Python<'_>, name: String, version: String, task: String, dimensions: Option<u32>, metadata: String, from_dir: Option<PathBuf>) -> PyResult<Py<PyAny>> {
        let metadata: serde_json::Value = serde_json::from_str(&metadata).map_err(|e| errors::InvalidArgument::new_err(format!("metadata is not JSON: {e}")))?;
        let definition = jammi_db::artifact::ModelDefinition { name, version, task, dimensions, metadata };
        let session = self.session.clone();
        let info = run(py, async move {
            match from_dir {
                Some(dir) => {
                    // The model's files go under the storage root, with its options.
                    let store = session.artifacts(session.config().storage.options.clone());
                    let root = jammi_db::storage::StorageUrl::parse(&session.config().storage_root())?;
                    session.models().register_files(definition, &dir, &root, &store).await
                }
                None => session.models().register(definition).await,
            }
        })?;
        one_batch(py, jammi_db::artifact::models_to_batch(&[info]).map_err(to_py)?)
    }

    fn model_list(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let session = self.session.clone();
        let models = run(py, async move { session.models().list().await })?;
        one_batch(py, jammi_db::artifact::models_to_batch(&models).map_err(to_py)?)
    }

    fn model_describe(&self, py: Python<'_>, name: String, version_or_alias: String) -> PyResult<Py<PyAny>> {
        let session = self.session.clone();
        let info = run(py, async move { session.models().describe(&name, &version_or_alias).await })?;
        one_batch(py, jammi_db::artifact::models_to_batch(&[info]).map_err(to_py)?)
    }

    fn model_alias(&self, py: Python<'_>, name: String, alias: String, version: String) -> PyResult<()> {
        let session = self.session.clone();
        run(py, async move { session.models().set_alias(&name, &alias, &version).await.map(drop) })
    }

    fn model_rm(&self, py: Python<'_>, name: String, version: String) -> PyResult<()> {
        let session = self.session.clone();
        run(py, async move { session.models().delete(&name, &version).await })
    }

    #[pyo3(signature = (model, version, artifact_root, priority=0, max_attempts=3, payload="{}".to_string()))]
    #[allow(clippy::too_many_arguments)]
    fn job_enqueue(&self, py: Python<'_>, model: String, version: String, artifact_root: String, priority: i64, max_attempts: u32, payload: String) -> PyResult<Py<PyAny>> {
        let payload: serde_json::Value = serde_json::from_str(&payload).map_err(|e| errors::InvalidArgument::new_err(format!("payload is not JSON: {e}")))?;
        let request = jammi_db::artifact::JobRequest { model, version, artifact_root, priority, max_attempts, payload };
        let session = self.session.clone();
        let job = run(py, async move { session.jobs().enqueue(request).await })?;
        one_batch(py, jammi_db::artifact::jobs_to_batch(&[job]).map_err(to_py)?)
    }

    fn job_list(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let session = self.session.clone();
        let jobs = run(py, async move { session.jobs().list().await })?;
        one_batch(py, jammi_db::artifact::jobs_to_batch(&jobs).map_err(to_py)?)
    }

    /// Claim the next job for `worker` under a lease of `lease_seconds`: its lease as JSON
    /// (job_id, attempt, token, artifact_root, segments, artifact_prefix, expires_at_ms,
    /// payload), or None when no job is claimable.
    fn job_claim(&self, py: Python<'_>, worker: String, lease_seconds: u64) -> PyResult<Option<String>> {
        let session = self.session.clone();
        let lease = run(py, async move { session.jobs().claim(&worker, std::time::Duration::from_secs(lease_seconds)).await })?;
        Ok(lease.map(|lease| lease.to_json().to_string()))
    }

    fn job_heartbeat(&self, py: Python<'_>, job: String, token: String, lease_seconds: u64) -> PyResult<i64> {
        let session = self.session.clone();
        run(py, async move { session.jobs().heartbeat(&job, &token, std::time::Duration::from_secs(lease_seconds)).await })
    }

    fn job_fail(&self, py: Python<'_>, job: String, token: String, error: String, options: std::collections::BTreeMap<String, String>) -> PyResult<String> {
        let session = self.session.clone();
        run(py, async move {
            let store = session.artifacts(options);
            Ok(session.jobs().fail(&job, &token, &error, &store).await?.as_str().to_string())
        })
    }

    /// Verify the attempt's artifact and publish it as the job's model version; its prefix.
    fn job_finalize(&self, py: Python<'_>, job: String, token: String, options: std::collections::BTreeMap<String, String>) -> PyResult<String> {
        let session = self.session.clone();
        run(py, async move {
            let store = session.artifacts(options);
            session.jobs().finalize(&job, &token, &store).await
        })
    }

    /// Close the catalog's connections (the handle is unusable afterwards).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let session = self.session.clone();
        run(py, async move {
            session.close().await;
            Ok(())
        })
    }
}

/// Open the jammi-db at `path` (a data directory; its `jammi.toml`, `JAMMI_CONFIG` and
/// `JAMMI_*` variables apply as for the CLI), as `tenant` or as the operator.
#[pyfunction]
#[pyo3(signature = (path, tenant=None))]
fn connect(py: Python<'_>, path: PathBuf, tenant: Option<String>) -> PyResult<Database> {
    let tenant = tenant.map(|t| t.parse::<TenantId>()).transpose().map_err(to_py)?;
    let config = Config::load(&path, None).map_err(to_py)?;
    let session = run(py, async move { Session::open(config).await })?;
    Ok(Database { session: session.with_tenant(tenant) })
}

#[pymodule]
fn _jammi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // `[query] engine = "ballista"` works from Python as from the CLI.
    jammi_cluster::install();
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    m.add_function(wrap_pyfunction!(remote::connect_remote, m)?)?;
    m.add_class::<remote::RemoteDatabase>()?;
    m.add_class::<Database>()?;
    m.add_class::<topics::Subscription>()?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
