//! `jammi model ...` and `jammi job ...`: the model registry and the training-job queue
//! (see `docs/artifacts.md`). Argument conversion and printing only. The `job claim`,
//! `heartbeat`, `fail` and `finalize` commands let a shell script be a worker.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::Subcommand;
use jammi_db::artifact::{JobRequest, ModelDefinition, ModelInfo};
use jammi_db::Session;

use crate::cli::OutputFormat;
use crate::print;

/// `jammi model ...`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Register a model version (its artifact pointer is set later by a job's finalize).
    Register {
        /// Model name.
        name: String,
        /// Version label.
        version: String,
        /// What the model does, e.g. embedding or classification.
        #[arg(long)]
        task: String,
        /// Output dimensions.
        #[arg(long)]
        dimensions: Option<u32>,
        /// Metadata, a JSON object (embedding models: "pooling", "normalize", "max_tokens").
        #[arg(long)]
        metadata: Option<String>,
        /// The model's files: a local directory (stored as an artifact bundle under the
        /// storage root, models/NAME/VERSION/) or the URL of a complete artifact prefix.
        /// Without it the version waits for a job's finalize.
        #[arg(long, value_name = "DIR_OR_PREFIX")]
        from: Option<String>,
        /// Storage option K=V for the artifact store.
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
    /// Embed TEXTs with an embedding model and print one vector per line (a JSON array).
    Embed {
        /// Model name.
        name: String,
        /// Version label or alias.
        version: String,
        /// The texts.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Every model version with its aliases and served artifact.
    List,
    /// One model: every version, or the one a version label or alias names.
    Describe {
        /// Model name.
        name: String,
        /// Version label or alias.
        version: Option<String>,
    },
    /// Point NAME@ALIAS at VERSION.
    Alias {
        /// Model name.
        name: String,
        /// Alias, e.g. champion.
        alias: String,
        /// Version label.
        version: String,
    },
    /// Delete a model version and its aliases (its artifacts stay; see `artifact rm`).
    Rm {
        /// Model name.
        name: String,
        /// Version label.
        version: String,
    },
}

/// `jammi job ...`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Queue a job that produces an artifact for MODEL:VERSION.
    Enqueue {
        /// Model name.
        model: String,
        /// Model version.
        version: String,
        /// Storage root under which each attempt writes its own prefix.
        #[arg(long)]
        root: String,
        /// Higher runs first.
        #[arg(long, default_value_t = 0)]
        priority: i64,
        /// Claims allowed before the job fails for good.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// Payload handed to the worker, a JSON value.
        #[arg(long)]
        payload: Option<String>,
    },
    /// Every job: state, attempts, lease holder, served artifact.
    List,
    /// Claim the next job; prints the lease as one JSON line (nothing when no job waits).
    Claim {
        /// Worker name.
        #[arg(long)]
        worker: String,
        /// Lease length.
        #[arg(long, default_value_t = 60)]
        lease_seconds: u64,
    },
    /// Extend a lease.
    Heartbeat {
        /// Job id.
        job: String,
        /// The lease token `job claim` printed.
        #[arg(long)]
        token: String,
        /// New lease length from now.
        #[arg(long, default_value_t = 60)]
        lease_seconds: u64,
    },
    /// Give up an attempt: the job is queued again while attempts remain.
    Fail {
        /// Job id.
        job: String,
        /// The lease token.
        #[arg(long)]
        token: String,
        /// Why.
        #[arg(long)]
        error: String,
        /// Storage option K=V for collecting the attempt's artifact.
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
    /// Complete a job: verify the attempt's artifact and point the model at it.
    Finalize {
        /// Job id.
        job: String,
        /// The lease token.
        #[arg(long)]
        token: String,
        /// Storage option K=V.
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
    /// Delete the artifacts of attempts that can no longer win.
    Gc {
        /// Storage option K=V.
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
}

fn json_arg(what: &str, value: Option<String>) -> Result<serde_json::Value> {
    match value {
        None => Ok(serde_json::json!({})),
        Some(text) => serde_json::from_str(&text).map_err(|e| anyhow!("{what} is not valid JSON: {e}")),
    }
}

pub async fn run_model(session: &Session, command: ModelCommand, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let models = session.models();
    match command {
        ModelCommand::Register { name, version, task, dimensions, metadata, from, options } => {
            let metadata = json_arg("--metadata", metadata)?;
            let definition = ModelDefinition { name, version, task, dimensions, metadata };
            let info = match from {
                None => models.register(definition).await?,
                Some(from) => {
                    let mut options = crate::parse_options(&options)?;
                    for (k, v) in &session.config().storage.options {
                        options.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    let store = session.artifacts(options).with_progress(crate::progress::reporter());
                    let path = std::path::Path::new(&from);
                    if path.is_dir() {
                        let root = jammi_db::storage::StorageUrl::parse(&session.config().storage_root())?;
                        models.register_files(definition, path, &root, &store).await?
                    } else {
                        models.register_from(definition, &jammi_db::storage::StorageUrl::parse(&from)?.as_dir(), &store).await?
                    }
                }
            };
            print::print_batch(&jammi_db::artifact::models_to_batch(&[info])?, format, out)
        }
        ModelCommand::Embed { name, version, texts } => {
            for vector in session.embeddings().embed(&name, &version, texts).await? {
                writeln!(out, "{}", serde_json::to_string(&vector)?)?;
            }
            Ok(())
        }
        ModelCommand::List => print::print_batch(&jammi_db::artifact::models_to_batch(&models.list().await?)?, format, out),
        ModelCommand::Describe { name, version } => {
            let found = match version {
                Some(v) => vec![models.describe(&name, &v).await?],
                None => {
                    let all: Vec<ModelInfo> = models.list().await?.into_iter().filter(|m| m.name == name).collect();
                    if all.is_empty() {
                        return Err(anyhow!("model {name} is not registered; see `jammi model list`"));
                    }
                    all
                }
            };
            print::print_batch(&jammi_db::artifact::models_to_batch(&found)?, format, out)
        }
        ModelCommand::Alias { name, alias, version } => {
            let info = models.set_alias(&name, &alias, &version).await?;
            writeln!(out, "{name}@{alias} -> {}", info.version)?;
            Ok(())
        }
        ModelCommand::Rm { name, version } => {
            models.delete(&name, &version).await?;
            writeln!(out, "deleted model {name}:{version}")?;
            Ok(())
        }
    }
}

pub async fn run_job(session: &Session, command: JobCommand, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let jobs = session.jobs();
    match command {
        JobCommand::Enqueue { model, version, root, priority, max_attempts, payload } => {
            let request = JobRequest { model, version, artifact_root: root, priority, max_attempts, payload: json_arg("--payload", payload)? };
            let info = jobs.enqueue(request).await?;
            print::print_batch(&jammi_db::artifact::jobs_to_batch(&[info])?, format, out)
        }
        JobCommand::List => print::print_batch(&jammi_db::artifact::jobs_to_batch(&jobs.list().await?)?, format, out),
        JobCommand::Claim { worker, lease_seconds } => {
            if let Some(lease) = jobs.claim(&worker, Duration::from_secs(lease_seconds)).await? {
                let line = lease.to_json();
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        JobCommand::Heartbeat { job, token, lease_seconds } => {
            let until = jobs.heartbeat(&job, &token, Duration::from_secs(lease_seconds)).await?;
            writeln!(out, "lease of job {job} extended to {until} ms")?;
            Ok(())
        }
        JobCommand::Fail { job, token, error, options } => {
            let store = session.artifacts(crate::parse_options(&options)?);
            let state = jobs.fail(&job, &token, &error, &store).await?;
            writeln!(out, "job {job} is {}", state.as_str())?;
            Ok(())
        }
        JobCommand::Finalize { job, token, options } => {
            let store = session.artifacts(crate::parse_options(&options)?);
            let prefix = jobs.finalize(&job, &token, &store).await?;
            writeln!(out, "job {job} succeeded; the model serves {prefix}")?;
            Ok(())
        }
        JobCommand::Gc { options } => {
            let store = session.artifacts(crate::parse_options(&options)?);
            let n = jobs.collect(&store).await?;
            writeln!(out, "collected {n} attempt artifact{}", if n == 1 { "" } else { "s" })?;
            Ok(())
        }
    }
}
