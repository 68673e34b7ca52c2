//! A server on loopback over a fresh data directory, and data to serve.

use std::sync::Arc;

use jammi_db::datafusion::arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray};
use jammi_db::datafusion::arrow::datatypes::{DataType, Field, Schema};
use jammi_db::datafusion::parquet::arrow::ArrowWriter;
use jammi_db::source::SourceSpec;
use jammi_db::vector::{ImportSpec, NoProgress};
use jammi_db::{Config, Session, TenantId};
use jammi_server::{Limits, ServeOptions, Server};

pub struct Served {
    pub server: Server,
    pub session: Session,
    pub http: String,
    pub pg_port: u16,
    /// Kept so the data directory lives as long as the server.
    pub _dir: tempfile::TempDir,
}

pub async fn session() -> (Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::open(Config::embedded(dir.path())).await.unwrap();
    (session, dir)
}

/// Serve `session` on loopback with `limits`.
pub async fn serve(session: Session, dir: tempfile::TempDir, limits: Limits) -> Served {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let options = ServeOptions { http: Some(loopback), pg: Some(loopback), flight: Some(loopback), limits, drain_timeout: std::time::Duration::from_secs(10), ..ServeOptions::default() };
    let server = Server::start(session.clone(), options).await.unwrap();
    let http = format!("http://{}", server.addresses().http.unwrap());
    let pg_port = server.addresses().pg.unwrap().port();
    Served { server, session, http, pg_port, _dir: dir }
}

/// Two tenants' rows in a Parquet file registered as `files.public.people` with tenant
/// column `tenant`; each tenant has `per_tenant` rows whose `name` starts with its letter.
pub async fn tenant_people(session: &Session, dir: &std::path::Path, a: TenantId, b: TenantId, per_tenant: i64) {
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut tenants = Vec::new();
    for i in 0..per_tenant {
        for (letter, tenant) in [("a", a), ("b", b)] {
            ids.push(ids.len() as i64);
            names.push(format!("{letter}{i}"));
            tenants.push(tenant.to_string());
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names)), Arc::new(StringArray::from(tenants))];
    let path = dir.join("people.parquet");
    write_parquet(&path, RecordBatch::try_new(schema, columns).unwrap());
    session.sources().add(SourceSpec::new("files", path.display().to_string()).with_tenant_column("tenant")).await.unwrap();
}

/// Vector table `docs`: ids 0..n, 4-d vectors pointing in direction `i` (one-hot-ish), and a
/// `lang` payload (`en` for even ids, `fr` for odd), which has a full-text index (raw).
pub async fn docs(session: &Session, dir: &std::path::Path, n: i64) {
    let mut values = Vec::new();
    for i in 0..n {
        let mut v = [0.1f32; 4];
        v[(i % 4) as usize] = 1.0 + i as f32 / 100.0;
        values.extend_from_slice(&v);
    }
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let vectors = FixedSizeListArray::try_new(item, 4, Arc::new(Float32Array::from(values)), None).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("lang", DataType::Utf8, false),
        Field::new("embedding", vectors.data_type().clone(), false),
    ]));
    let langs: Vec<&str> = (0..n).map(|i| if i % 2 == 0 { "en" } else { "fr" }).collect();
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())), Arc::new(StringArray::from(langs)), Arc::new(vectors)]).unwrap();
    let path = dir.join("docs.parquet");
    write_parquet(&path, batch);
    let mut spec = ImportSpec::new("docs", path.display().to_string(), "id", "embedding");
    spec.text_columns = vec![jammi_db::vector::TextIndexColumn::parse("lang:raw").unwrap()];
    session.vectors().import(spec, &NoProgress).await.unwrap();
}

fn write_parquet(path: &std::path::Path, batch: RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// POST JSON; (status, JSON answer).
pub async fn post(client: &reqwest::Client, url: &str, token: Option<&str>, body: serde_json::Value) -> (u16, serde_json::Value) {
    let mut request = client.post(url).header("content-type", "application/json").body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into())))
}
