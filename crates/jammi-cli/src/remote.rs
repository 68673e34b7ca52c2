//! `jammi --target URL ...`: the commands that make sense against a server (`jammi
//! serve`), sent to its HTTP API. Results travel as Arrow IPC and print exactly as they do
//! locally.

use std::io::Write;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use arrow::ipc::reader::StreamReader;
use futures::StreamExt;
use jammi_db::datafusion::sql::parser::DFParser;

use crate::cli::{Command, OutputFormat, TopicCommand};
use crate::print;

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// Run `command` against the server at `target`.
pub async fn run(target: &str, token: Option<&str>, command: Command, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let client = Client::new(target, token)?;
    match command {
        Command::Sql { sql } => {
            let statements = DFParser::parse_sql(&sql).map_err(|e| anyhow!("SQL syntax error: {e}"))?;
            for statement in statements {
                let started = Instant::now();
                let body = serde_json::json!({ "sql": statement.to_string() });
                let rows = client.query("/v1/sql", &body, format, out).await?;
                if format == OutputFormat::Table {
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    writeln!(out, "({rows} row{}, {ms:.1} ms)", if rows == 1 { "" } else { "s" })?;
                }
                out.flush()?;
            }
            Ok(())
        }
        Command::Search(args) => {
            if args.query_file.is_some() {
                return Err(anyhow!("with --target, search takes --vector and/or --text (a query file is read by the server's host)"));
            }
            let vector: Option<Vec<f32>> = match &args.vector {
                Some(text) => Some(serde_json::from_str(text.trim()).map_err(|_| anyhow!("--vector '{text}' is not a list of numbers such as '[0.1, 0.2]'"))?),
                None => None,
            };
            let mode = args.mode.clone().or_else(|| args.hybrid.then(|| "hybrid".to_string()));
            let mut body = serde_json::json!({
                "table": args.name, "text": args.text, "vector": vector, "mode": mode,
                "k": args.k, "filter": args.filter, "ef": args.ef, "exact": args.exact,
            });
            if let Some(options) = &args.fusion {
                let options = jammi_db::vector::HybridOptions::parse(options)?;
                match options.fusion {
                    jammi_db::vector::Fusion::Rrf { k } => (body["fusion"], body["rrf_k"]) = ("rrf".into(), k.into()),
                    jammi_db::vector::Fusion::Weighted { vector, text } => (body["fusion"], body["weights"]) = ("weighted".into(), serde_json::json!([vector, text])),
                }
                body["candidates"] = options.candidates.into();
            }
            client.query("/v1/search", &body, format, out).await.map(|_| ())
        }
        Command::Topic(TopicCommand::Publish { name, data }) => {
            let text = match data {
                Some(d) => d,
                None => std::io::read_to_string(std::io::stdin())?,
            };
            let answer = client.post(&format!("/v1/topics/{name}/events"), "application/json", text).await?;
            let (first, count) = (answer["first_offset"].as_i64().unwrap_or_default(), answer["count"].as_i64().unwrap_or_default());
            writeln!(out, "{}", crate::print::published(count, first))?;
            Ok(())
        }
        Command::Topic(TopicCommand::Subscribe { name, from_offset, from_beginning, filter, group, limit, ack_timeout_seconds }) => {
            let mut query: Vec<(&str, String)> = vec![("ack_timeout_seconds", ack_timeout_seconds.to_string())];
            if let Some(n) = from_offset {
                query.push(("from_offset", n.to_string()));
            }
            if from_beginning {
                query.push(("from_beginning", "true".into()));
            }
            if let Some(f) = filter {
                query.push(("filter", f));
            }
            if let Some(g) = group {
                query.push(("group", g));
            }
            if let Some(l) = limit {
                query.push(("limit", l.to_string()));
            }
            client.subscribe(&format!("/v1/topics/{name}/events"), &query, limit, out).await
        }
        other => Err(anyhow!(
            "`{}` runs on the data directory itself; with --target only sql, search and topic publish/subscribe are available (run other commands on the server's host)",
            command_name(&other)
        )),
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Demo => "demo",
        Command::Source(_) => "source",
        Command::Vectors(_) => "vectors",
        Command::Topic(_) => "topic",
        Command::Artifact(_) => "artifact",
        Command::Model(_) => "model",
        Command::Job(_) => "job",
        Command::Serve(_) => "serve",
        Command::Worker(_) => "worker",
        Command::Token(_) => "token",
        Command::Audit(_) => "audit",
        Command::Cluster(_) => "cluster",
        Command::Sql { .. } | Command::Search(_) => "query",
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(target: &str, token: Option<&str>) -> Result<Self> {
        let base = target.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(anyhow!("--target '{target}' is not an HTTP URL; give the server's HTTP address, e.g. http://127.0.0.1:8080"));
        }
        let http = reqwest::Client::builder().build()?;
        Ok(Client { http, base, token: token.map(str::to_string) })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Send, and turn an error status into the server's message.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| anyhow!("cannot reach the server at {}: {e}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["error"].as_str().map(str::to_string)).unwrap_or(text);
        Err(anyhow!("{message} (HTTP {})", status.as_u16()))
    }

    /// POST `body`; the answer's JSON.
    async fn post(&self, path: &str, content_type: &str, body: String) -> Result<serde_json::Value> {
        let request = self.request(reqwest::Method::POST, path).header("content-type", content_type).body(body);
        let bytes = self.send(request).await?.bytes().await?;
        serde_json::from_slice(&bytes).context("the server's answer is not JSON")
    }

    /// POST a JSON request whose answer is a result; print it, return its row count.
    async fn query(&self, path: &str, body: &serde_json::Value, format: OutputFormat, out: &mut dyn Write) -> Result<u64> {
        let request = self.request(reqwest::Method::POST, path).header("accept", ARROW_STREAM).header("content-type", "application/json").body(body.to_string());
        let bytes = self.send(request).await?.bytes().await?;
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).context("the server's answer is not an Arrow stream")?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        print::print_batches(schema, &batches, format, out)
    }

    /// Print the events of a server-sent event stream as NDJSON.
    async fn subscribe(&self, path: &str, query: &[(&str, String)], limit: Option<u64>, out: &mut dyn Write) -> Result<()> {
        let request = self.request(reqwest::Method::GET, path).query(query).header("accept", "text/event-stream");
        let mut body = self.send(request).await?.bytes_stream();
        let mut pending = String::new();
        let (mut printed, mut event) = (0u64, String::new());
        while let Some(chunk) = body.next().await {
            pending.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                if let Some(kind) = line.strip_prefix("event:") {
                    event = kind.trim().to_string();
                } else if let Some(data) = line.strip_prefix("data:") {
                    let data = data.strip_prefix(' ').unwrap_or(data);
                    if event == "error" {
                        return Err(anyhow!("the subscription failed: {data}"));
                    }
                    writeln!(out, "{data}")?;
                    out.flush()?;
                    printed += 1;
                    if limit.is_some_and(|l| printed >= l) {
                        return Ok(());
                    }
                } else if line.is_empty() {
                    event.clear();
                }
            }
        }
        if limit.is_some() {
            return Err(anyhow!("the server ended the subscription after {printed} events"));
        }
        Ok(())
    }
}
