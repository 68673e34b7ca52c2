//! `jammi.connect("grpc://host:port", token=…)`: a jammi server through Arrow Flight SQL —
//! the same SQL and the same Arrow answers as in-process, the server's token deciding the
//! tenant. The server's gRPC status codes become the same typed exceptions.

use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::FlightDescriptor;
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

impl RemoteDatabase {
    /// Run `query`; its schema and batches.
    pub(crate) async fn query(mut client: FlightServiceClient<Channel>, token: Option<String>, query: String) -> PyResult<(SchemaRef, Vec<arrow::record_batch::RecordBatch>)> {
        let command = CommandStatementQuery { query, transaction_id: None };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let info = client.get_flight_info(request(descriptor, &token)?).await.map_err(status_error)?.into_inner();
        let schema = std::sync::Arc::new(info.clone().try_decode_schema().map_err(|e| errors::InternalError::new_err(format!("the server's schema: {e}")))?);
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket = endpoint.ticket.ok_or_else(|| errors::InternalError::new_err("the server sent an endpoint without a ticket"))?;
            let data = client.do_get(request(ticket, &token)?).await.map_err(status_error)?.into_inner();
            let mut stream = FlightRecordBatchStream::new_from_flight_data(data.map_err(|s| FlightError::Tonic(Box::new(s))));
            while let Some(batch) = stream.next().await {
                batches.push(batch.map_err(flight_error)?);
            }
        }
        Ok((schema, batches))
    }
}

#[pymethods]
impl RemoteDatabase {
    /// Run SQL on the server; a `pyarrow.Table`.
    fn sql(&self, py: Python<'_>, query: String) -> PyResult<Py<PyAny>> {
        let (client, token) = (self.client.clone(), self.token.clone());
        let (schema, batches) = run_py(py, RemoteDatabase::query(client, token, query))?;
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
