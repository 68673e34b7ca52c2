//! `jammi.connect("grpc://host:port", token=…)`: a jammi server through Arrow Flight SQL —
//! the same SQL and the same Arrow answers as in-process, the server's token deciding the
//! tenant. The server's gRPC status codes become the same typed exceptions. Parameters
//! travel as Flight SQL prepared statements: the query is prepared, the one-row batch of
//! values bound with `DoPut`, the result fetched, the statement closed.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, CommandPreparedStatementQuery, CommandStatementQuery,
    ProstMessageExt,
};
use arrow_flight::{Action, FlightDescriptor};
use arrow_pyarrow::PyArrowType;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use pyo3::prelude::*;
use tonic::transport::{Channel, Endpoint};

use crate::errors;
use crate::run::run_py;

/// A jammi server reached through Flight SQL.
#[pyclass(module = "jammi._jammi", frozen)]
pub(crate) struct RemoteDatabase {
    client: FlightServiceClient<Channel>,
    token: Option<String>,
}

/// The exception for a server's gRPC status.
fn status_error(status: tonic::Status) -> PyErr {
    use tonic::Code;
    let message = status.message().to_string();
    match status.code() {
        Code::NotFound => errors::NotFound::new_err(message),
        Code::InvalidArgument | Code::Unimplemented | Code::OutOfRange => errors::InvalidArgument::new_err(message),
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => errors::Conflict::new_err(message),
        Code::PermissionDenied | Code::Unauthenticated => errors::PermissionDenied::new_err(message),
        Code::Unavailable | Code::ResourceExhausted => errors::Unavailable::new_err(message),
        Code::DeadlineExceeded | Code::Cancelled => errors::Timeout::new_err(message),
        _ => errors::InternalError::new_err(message),
    }
}

fn flight_error(e: FlightError) -> PyErr {
    match e {
        FlightError::Tonic(status) => status_error(*status),
        other => errors::InternalError::new_err(format!("reading the server's answer: {other}")),
    }
}

fn request<T>(message: T, token: &Option<String>) -> PyResult<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().map_err(|_| errors::InvalidArgument::new_err("the token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

type Client = FlightServiceClient<Channel>;

fn internal(what: &str) -> impl Fn(String) -> PyErr + '_ {
    move |e| errors::InternalError::new_err(format!("{what}: {e}"))
}

/// Prepare `query` on the server; its handle.
async fn prepare(client: &mut Client, token: &Option<String>, query: String) -> PyResult<prost::bytes::Bytes> {
    let body = ActionCreatePreparedStatementRequest { query, transaction_id: None }.as_any().encode_to_vec();
    let action = Action { r#type: "CreatePreparedStatement".into(), body: body.into() };
    let mut answers = client.do_action(request(action, token)?).await.map_err(status_error)?.into_inner();
    let answer = answers.message().await.map_err(status_error)?.ok_or_else(|| errors::InternalError::new_err("the server prepared nothing"))?;
    let any = Any::decode(answer.body).map_err(|e| internal("the server's prepared statement")(e.to_string()))?;
    let result: ActionCreatePreparedStatementResult = any
        .unpack()
        .map_err(|e| internal("the server's prepared statement")(e.to_string()))?
        .ok_or_else(|| errors::InternalError::new_err("the server answered something else than a prepared statement"))?;
    Ok(result.prepared_statement_handle)
}

/// Bind `values` (one row) to the prepared statement `handle`.
async fn bind(client: &mut Client, token: &Option<String>, handle: prost::bytes::Bytes, values: RecordBatch) -> PyResult<()> {
    let command = CommandPreparedStatementQuery { prepared_statement_handle: handle };
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let data: Vec<_> = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .with_schema(values.schema())
        .build(futures::stream::iter([Ok(values)]))
        .try_collect()
        .await
        .map_err(|e| internal("encoding the parameters")(e.to_string()))?;
    let mut answers = client.do_put(request(futures::stream::iter(data), token)?).await.map_err(status_error)?.into_inner();
    while answers.message().await.map_err(status_error)?.is_some() {}
    Ok(())
}

/// Release the prepared statement `handle` on the server.
async fn close(client: &mut Client, token: &Option<String>, handle: prost::bytes::Bytes) -> PyResult<()> {
    let body = ActionClosePreparedStatementRequest { prepared_statement_handle: handle }.as_any().encode_to_vec();
    let action = Action { r#type: "ClosePreparedStatement".into(), body: body.into() };
    client.do_action(request(action, token)?).await.map_err(status_error)?;
    Ok(())
}

/// The schema and batches the server answers for `descriptor`.
async fn fetch(client: &mut Client, token: &Option<String>, descriptor: FlightDescriptor) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
    let info = client.get_flight_info(request(descriptor, token)?).await.map_err(status_error)?.into_inner();
    let schema = std::sync::Arc::new(info.clone().try_decode_schema().map_err(|e| internal("the server's schema")(e.to_string()))?);
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or_else(|| errors::InternalError::new_err("the server sent an endpoint without a ticket"))?;
        let data = client.do_get(request(ticket, token)?).await.map_err(status_error)?.into_inner();
        let mut stream = FlightRecordBatchStream::new_from_flight_data(data.map_err(|s| FlightError::Tonic(Box::new(s))));
        while let Some(batch) = stream.next().await {
            batches.push(batch.map_err(flight_error)?);
        }
    }
    // A prepared statement's announced schema can be looser (nullable) than its rows'.
    let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
    Ok((schema, batches))
}

impl RemoteDatabase {
    /// Run `query` with the `$1, $2, …` values of the one-row batch `params`; its schema
    /// and batches.
    pub(crate) async fn query(mut client: Client, token: Option<String>, query: String, params: Option<RecordBatch>) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
        let Some(values) = params else {
            let command = CommandStatementQuery { query, transaction_id: None };
            return fetch(&mut client, &token, FlightDescriptor::new_cmd(command.as_any().encode_to_vec())).await;
        };
        if values.num_rows() != 1 {
            return Err(errors::InvalidArgument::new_err("parameters travel as one row"));
        }
        let handle = prepare(&mut client, &token, query).await?;
        let answer = async {
            bind(&mut client, &token, handle.clone(), values).await?;
            let command = CommandPreparedStatementQuery { prepared_statement_handle: handle.clone() };
            fetch(&mut client, &token, FlightDescriptor::new_cmd(command.as_any().encode_to_vec())).await
        }
        .await;
        // The answer (or its error) is what the caller needs; a failed close only leaves
        // the statement on the server (which bounds how many a token holds open).
        let _ = close(&mut client, &token, handle).await;
        answer
    }
}

#[pymethods]
impl RemoteDatabase {
    /// Run SQL on the server, with `params` (a one-row batch) for `$1, $2, …`; a
    /// `pyarrow.Table`.
    #[pyo3(signature = (query, params=None))]
    fn sql(&self, py: Python<'_>, query: String, params: Option<PyArrowType<RecordBatch>>) -> PyResult<Py<PyAny>> {
        let (client, token) = (self.client.clone(), self.token.clone());
        let (schema, batches) = run_py(py, RemoteDatabase::query(client, token, query, params.map(|p| p.0)))?;
        crate::table(py, schema, batches)
    }
}

/// Connect to the server at `url` (`grpc://host:port`, or `grpc+tls://` for TLS).
#[pyfunction]
#[pyo3(signature = (url, token=None))]
pub(crate) fn connect_remote(py: Python<'_>, url: String, token: Option<String>) -> PyResult<RemoteDatabase> {
    let address = if let Some(rest) = url.strip_prefix("grpc://") {
        format!("http://{rest}")
    } else if let Some(rest) = url.strip_prefix("grpc+tls://") {
        format!("https://{rest}")
    } else {
        return Err(errors::InvalidArgument::new_err(format!("'{url}' is not a server address; write grpc://HOST:PORT or grpc+tls://HOST:PORT")));
    };
    let endpoint = Endpoint::from_shared(address).map_err(|e| errors::InvalidArgument::new_err(format!("'{url}': {e}")))?;
    let channel = run_py(py, async move { endpoint.connect().await.map_err(|e| errors::Unavailable::new_err(format!("cannot reach {url}: {e}"))) })?;
    Ok(RemoteDatabase { client: FlightServiceClient::new(channel), token })
}
