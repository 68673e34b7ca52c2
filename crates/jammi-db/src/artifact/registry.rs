//! The model registry: named, versioned models with aliases (`champion` → a version), each
//! pointing at the artifact its last finalized job produced.

use crate::catalog::{ModelRecord, ModelRepo};
use crate::error::{Error, Result};
use crate::context::EngineContext;
use crate::tenant::TenantId;

/// What to register.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDefinition {
    /// Model name.
    pub name: String,
    /// Version label, unique per name.
    pub version: String,
    /// What the model does (`embedding`, `classification`, …).
    pub task: String,
    /// Output dimensions, when meaningful.
    pub dimensions: Option<u32>,
    /// Free-form metadata (a JSON object).
    pub metadata: serde_json::Value,
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Model name.
    pub name: String,
    /// Version label.
    pub version: String,
    /// Task.
    pub task: String,
    /// Output dimensions.
    pub dimensions: Option<u32>,
    /// Metadata (a JSON object).
    pub metadata: serde_json::Value,
    /// The served artifact prefix; `None` until a job finalizes.
    pub artifact_prefix: Option<String>,
    /// The job that produced the served artifact.
    pub job_id: Option<String>,
    /// Aliases naming this version.
    pub aliases: Vec<String>,
    /// Owning tenant (`None`: shared).
    pub tenant: Option<TenantId>,
    /// Registration time, ms since the epoch.
    pub created_at_ms: i64,
    /// Last change, ms since the epoch.
    pub updated_at_ms: i64,
}

impl ModelInfo {
    pub(crate) fn from_record(record: ModelRecord, aliases: Vec<String>) -> Self {
        ModelInfo {
            name: record.name,
            version: record.version,
            task: record.task,
            dimensions: record.dimensions.map(|d| d as u32),
            metadata: serde_json::from_str(&record.metadata).unwrap_or(serde_json::Value::Null),
            artifact_prefix: record.artifact_prefix,
            job_id: record.job_id,
            aliases,
            tenant: record.tenant,
            created_at_ms: record.created_at,
            updated_at_ms: record.updated_at,
        }
    }
}

/// Model names, versions and aliases: letters, digits, `_`, `-`, `.`; at most 128 bytes.
pub(crate) fn check_label(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty() && value.len() <= 128 && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { name: value.to_string(), message: format!("a model {what} uses letters, digits, '_', '-' and '.' (1 to 128 of them)") })
    }
}

/// The model registry of a session, in its tenant scope. Get one with [`Session::models`](crate::Session::models).
#[derive(Debug)]
pub struct Models<'a> {
    ctx: &'a dyn EngineContext,
}

impl<'a> Models<'a> {
    pub(crate) fn new(ctx: &'a dyn EngineContext) -> Self {
        Models { ctx }
    }

    fn repo(&self) -> ModelRepo<'a> {
        self.ctx.catalog().models()
    }

    fn unknown(&self, name: &str, version: &str) -> Error {
        Error::Unknown { kind: crate::error::ObjectKind::Model, name: format!("{name}:{version}"), scope: self.ctx.scope().describe() }
    }

    /// Register a model version, owned by the session's tenant (shared when unbound). Its
    /// artifact pointer starts empty; only a job's finalize sets it.
    pub async fn register(&self, definition: ModelDefinition) -> Result<ModelInfo> {
        self.register_with(definition, None).await
    }

    /// Register a model version whose files are already the complete artifact bundle at
    /// `prefix` (verified here: its manifest and every file's digest). This is how a
    /// pre-trained model (an embedding model's weights and tokenizer) enters the registry.
    pub async fn register_from(&self, definition: ModelDefinition, prefix: &crate::storage::StorageUrl, store: &crate::artifact::ArtifactStore) -> Result<ModelInfo> {
        store.verify_artifact(prefix).await?;
        self.register_with(definition, Some(prefix.to_string())).await
    }

    /// Register a model version from the files in local directory `dir` (sub-folders
    /// included, hidden files skipped): they are put as one artifact bundle under
    /// `root/models/<name>/<version>/` (sha256 manifest, written last) and the version
    /// points at it, so any host sharing the catalog and storage fetches the same files.
    pub async fn register_files(&self, definition: ModelDefinition, dir: &std::path::Path, root: &crate::storage::StorageUrl, store: &crate::artifact::ArtifactStore) -> Result<ModelInfo> {
        // Everything that can refuse the registration is checked before any file is stored,
        // so a refused registration leaves no bundle behind to block the corrected retry.
        check_definition(&definition)?;
        if let Some(taken) = self.repo().get(self.ctx.scope(), &definition.name, &definition.version).await? {
            if taken.tenant == self.ctx.scope().owner() {
                return Err(crate::catalog::already_registered(&definition.name, &definition.version));
            }
        }
        let files = bundle_files(dir)?;
        let prefix = store.put_artifact(root, &["models", &definition.name, &definition.version], &files).await?;
        // The put hashed every file as it wrote it: no second read to verify.
        self.register_with(definition, Some(prefix.to_string())).await
    }

    async fn register_with(&self, definition: ModelDefinition, artifact_prefix: Option<String>) -> Result<ModelInfo> {
        check_definition(&definition)?;
        if crate::embed::is_http_backed(&definition.metadata) {
            // The endpoint is called from the engine's own network with a key from its own
            // environment: only the operator may point the engine at one.
            if matches!(self.ctx.scope(), crate::tenant::TenantScope::Tenant(_)) {
                return Err(Error::PermissionDenied {
                    message: "models served by an HTTP endpoint are registered by the operator (the engine calls the endpoint from its own network); ask the operator to register it as a shared model".into(),
                });
            }
            crate::embed::check_http(&format!("{}:{}", definition.name, definition.version), &definition.metadata, definition.dimensions)?;
        }
        let metadata = if definition.metadata.is_null() { serde_json::json!({}) } else { definition.metadata };
        let record = ModelRecord {
            id: uuid::Uuid::new_v4().to_string(),
            tenant: self.ctx.scope().owner(),
            name: definition.name,
            version: definition.version,
            task: definition.task,
            dimensions: definition.dimensions.map(i64::from),
            metadata: metadata.to_string(),
            artifact_prefix,
            job_id: None,
            created_at: 0,
            updated_at: 0,
        };
        self.repo().insert(&record).await?;
        self.get(&record.name, &record.version).await
    }

    /// Every model version the session may see, with its aliases.
    pub async fn list(&self) -> Result<Vec<ModelInfo>> {
        let scope = self.ctx.scope();
        let aliases = self.repo().aliases(scope).await?;
        let records = self.repo().list(scope).await?;
        Ok(records
            .into_iter()
            .map(|r| {
                let names = aliases.iter().filter(|a| a.model_id == r.id).map(|a| a.alias.clone()).collect();
                ModelInfo::from_record(r, names)
            })
            .collect())
    }

    async fn with_aliases(&self, record: ModelRecord) -> Result<ModelInfo> {
        let aliases = self.repo().aliases(self.ctx.scope()).await?;
        let names = aliases.iter().filter(|a| a.model_id == record.id).map(|a| a.alias.clone()).collect();
        Ok(ModelInfo::from_record(record, names))
    }

    pub(crate) async fn record(&self, name: &str, version: &str) -> Result<ModelRecord> {
        self.repo().get(self.ctx.scope(), name, version).await?.ok_or_else(|| self.unknown(name, version))
    }

    /// One version.
    pub async fn get(&self, name: &str, version: &str) -> Result<ModelInfo> {
        let record = self.record(name, version).await?;
        self.with_aliases(record).await
    }

    /// The version an alias names, in one catalog read (the returned `aliases` holds just
    /// the one asked for).
    pub async fn resolve(&self, name: &str, alias: &str) -> Result<ModelInfo> {
        let record = self.repo().resolve_alias(self.ctx.scope(), name, alias).await?.ok_or_else(|| self.unknown(name, alias))?;
        Ok(ModelInfo::from_record(record, vec![alias.to_string()]))
    }

    /// A version by its label, or else by an alias.
    pub async fn describe(&self, name: &str, version_or_alias: &str) -> Result<ModelInfo> {
        match self.repo().get(self.ctx.scope(), name, version_or_alias).await? {
            Some(record) => self.with_aliases(record).await,
            None => {
                let record = self.repo().resolve_alias(self.ctx.scope(), name, version_or_alias).await?.ok_or_else(|| self.unknown(name, version_or_alias))?;
                self.with_aliases(record).await
            }
        }
    }

    /// Point `name@alias` at `version` (moving it if it named another version).
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<ModelInfo> {
        check_label("alias", alias)?;
        let record = self.record(name, version).await?;
        let scope = self.ctx.scope();
        // An alias is the session's own name for a version it can see (its own or a shared one).
        if !crate::tenant::visible(scope, record.tenant) {
            return Err(Error::PermissionDenied { message: format!("model {name}:{version} belongs to another tenant") });
        }
        self.repo().set_alias(scope.owner(), name, alias, &record.id).await?;
        self.get(name, version).await
    }

    /// Delete a version with its aliases (refused while a job for it is queued or running).
    /// Its artifacts stay on storage; delete them with `jammi artifact rm`.
    pub async fn delete(&self, name: &str, version: &str) -> Result<()> {
        let record = self.record(name, version).await?;
        let scope = self.ctx.scope();
        if !crate::tenant::may_change(scope, record.tenant) {
            return Err(Error::PermissionDenied { message: format!("model {name}:{version} is not owned by this session's tenant; only its owner may delete it") });
        }
        self.repo().delete(&record).await
    }
}

/// Refuse a definition the registry would refuse: bad labels, no task, metadata that is not
/// a JSON object.
fn check_definition(definition: &ModelDefinition) -> Result<()> {
    check_label("name", &definition.name)?;
    check_label("version", &definition.version)?;
    if definition.task.trim().is_empty() {
        return Err(Error::invalid("task", "a model needs a task (for example embedding or classification)"));
    }
    if !definition.metadata.is_object() && !definition.metadata.is_null() {
        return Err(Error::invalid("metadata", "model metadata must be a JSON object"));
    }
    Ok(())
}

/// The files of `dir` (and its sub-folders) as bundle entries named by their relative path;
/// hidden files and folders are skipped. An empty or unreadable directory is an error.
fn bundle_files(dir: &std::path::Path) -> Result<Vec<crate::artifact::ArtifactFile>> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<crate::artifact::ArtifactFile>) -> Result<()> {
        let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| Error::io(dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out)?;
            } else if path.is_file() {
                let relative = path.strip_prefix(base).unwrap_or(&path).components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect::<Vec<_>>().join("/");
                out.push(crate::artifact::ArtifactFile::from_path(relative, path));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    if files.is_empty() {
        return Err(Error::invalid("--from", format!("{} holds no files to register", dir.display())));
    }
    Ok(files)
}
