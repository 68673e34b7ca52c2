//! Configuration: embedded defaults, then a TOML file, then `JAMMI_<SECTION>__<KEY>`
//! environment overrides. `${VAR}` inside file values is replaced from the environment.
//!
//! Where the file comes from, in order: an explicit path (`--config`), the `JAMMI_CONFIG`
//! variable, then `<data-dir>/jammi.toml` when it exists. Every key is validated at load;
//! errors name the key (`catalog.url`) or the variable that set it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// File name looked up inside the data directory when no config file is given.
pub const CONFIG_FILE_NAME: &str = "jammi.toml";

/// The whole engine configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Directory holding the embedded catalog, local storage and caches.
    pub data_dir: PathBuf,
    /// Metadata catalog settings.
    pub catalog: CatalogConfig,
    /// Storage settings.
    pub storage: StorageConfig,
    /// Query engine settings.
    pub query: QueryConfig,
    /// Vector table settings.
    pub vectors: VectorsConfig,
    /// Topic broker settings.
    pub broker: BrokerConfig,
    /// What callers may do, and for how long a transaction may sit idle.
    pub security: SecurityConfig,
    /// The signed audit log of searches.
    pub audit: AuditConfig,
    /// Ephemeral sessions.
    pub ephemeral: EphemeralConfig,
}

/// `[ephemeral]`: sessions whose tables are dropped when they end.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EphemeralConfig {
    /// The idle timeout of a session opened without one.
    pub default_timeout_ms: u64,
    /// The longest idle timeout a session may ask for.
    pub max_timeout_ms: u64,
    /// Ephemeral sessions one engine holds open at once.
    pub max_open: usize,
    /// How often an engine looks for expired sessions (of crashed processes) to recover.
    pub sweep_interval_ms: u64,
}

impl Default for EphemeralConfig {
    fn default() -> Self {
        EphemeralConfig { default_timeout_ms: 600_000, max_timeout_ms: 86_400_000, max_open: 1024, sweep_interval_ms: 10_000 }
    }
}

/// `[audit]`: the signed audit log of searches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Record every search. Unset: off for embedded use, on in `jammi serve`.
    pub enabled: Option<bool>,
    /// The environment variable holding the master key (64 hex characters); `NAME_V2`,
    /// `NAME_V3`, … hold later key versions.
    pub key_env: String,
    /// A file of keys instead (`VERSION=HEX` per line, or one line of hex).
    pub key_file: Option<PathBuf>,
    /// `batched` (default): a search hands its record to the audit writer and returns; the
    /// writer commits records in batches within milliseconds. `synchronous`: a search returns
    /// only after its record is committed.
    pub durability: AuditDurability,
}

/// When a search's audit record is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDurability {
    /// Committed by the audit writer in the next batch, after the search returns.
    #[default]
    Batched,
    /// Committed before the search returns.
    Synchronous,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { enabled: None, key_env: "JAMMI_AUDIT_KEY".into(), key_file: None, durability: AuditDurability::Batched }
    }
}

/// `[security]`: the statement policy and transaction limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Whether the operator (the local CLI or an embedder with no tenant) may run statements
    /// that name locations (`CREATE EXTERNAL TABLE`, `COPY ... TO`) and set engine settings.
    /// Server requests and tenant-bound sessions never may.
    pub operator_locations: bool,
    /// A transaction idle longer than this is rolled back (ms; 0: never). Sessions may
    /// shorten it with `SET idle_in_transaction_timeout`; server clients may not lengthen it.
    pub idle_in_transaction_timeout_ms: u64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig { operator_locations: true, idle_in_transaction_timeout_ms: 10_000 }
    }
}

impl SecurityConfig {
    /// The idle-in-transaction timeout (`None`: never).
    pub fn idle_in_transaction_timeout(&self) -> Option<std::time::Duration> {
        (self.idle_in_transaction_timeout_ms > 0).then(|| std::time::Duration::from_millis(self.idle_in_transaction_timeout_ms))
    }
}

/// Which broker carries topic wake-ups between publishers and live subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    /// Within this process; subscribers in other processes poll the log (the default).
    #[default]
    InProcess,
    /// NATS JetStream at `broker.url`: wake-ups reach every process at once.
    Jetstream,
}

/// `[broker]`: topic fan-out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `in_process` or `jetstream`.
    pub kind: BrokerKind,
    /// NATS server URL for `jetstream`, e.g. `nats://127.0.0.1:4222`.
    pub url: Option<String>,
    /// How often a subscriber with no wake-up looks at the log anyway (ms): the safety net
    /// for lost wake-ups and for publishers in other processes without a shared broker.
    pub poll_interval_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig { kind: BrokerKind::default(), url: None, poll_interval_ms: 100 }
    }
}

/// `[vectors]`: vector search settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VectorsConfig {
    /// Memory budget for loaded vector tables (vectors, payload, indexes), in MiB.
    pub cache_mb: usize,
    /// A table with more segments than this is compacted into one after a write.
    pub max_segments: usize,
    /// A table with a larger fraction of deleted rows is compacted after a write.
    pub max_deleted_fraction: f64,
    /// The most vector data one segment holds, in MiB (rows × dimensions × 4 bytes). An
    /// import larger than this is written as several segments, one at a time, so its memory
    /// stays bounded whatever the input's size; compaction never merges segments past it.
    pub segment_mb: usize,
    /// Disk space (MiB) for local copies of vector segment files on a remote storage root
    /// (`<data-dir>/cache/vectors`, least recently used evicted first); 0 turns it off.
    pub disk_cache_mb: u64,
}

impl Default for VectorsConfig {
    fn default() -> Self {
        VectorsConfig { cache_mb: 1024, max_segments: 8, max_deleted_fraction: 0.2, segment_mb: 512, disk_cache_mb: 10240 }
    }
}

/// `[catalog]`: where metadata lives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// `sqlite:///path/catalog.db` or `postgres://user:pass@host/db`.
    /// Default: SQLite file `catalog.db` in the data directory.
    pub url: Option<String>,
    /// Largest number of pooled catalog connections.
    pub max_connections: u32,
    /// How long a writer waits for a lock held by another process, in milliseconds.
    pub busy_timeout_ms: u64,
    /// How long opening a connection may take before failing, in milliseconds.
    pub connect_timeout_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig { url: None, max_connections: 8, busy_timeout_ms: 30_000, connect_timeout_ms: 5_000 }
    }
}

/// `[storage]`: where engine-managed data is written.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Root URL for engine-managed files. Default: `file://<data-dir>/storage`.
    pub root: Option<String>,
    /// Object-store options for the root (S3: endpoint, region, access_key_id, ...).
    pub options: BTreeMap<String, String>,
}

/// `[query]`: DataFusion execution settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Parallelism of query plans; 0 means one per CPU core.
    pub target_partitions: usize,
    /// Rows per record batch.
    pub batch_size: usize,
    /// Where queries over file sources run: `local` (this process), or the name of a
    /// distributed engine linked into the binary (`ballista`; see [`crate::distributed`]).
    pub engine: String,
    /// The distributed engine's scheduler (`df://host:port` for Ballista).
    pub scheduler: Option<String>,
    /// The most data (MiB) a distributed query may carry from this process to the cluster
    /// (tables that only this process can read: mutable, vector, database sources). A
    /// query needing more runs here instead.
    pub ship_limit_mb: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig { target_partitions: 0, batch_size: 8192, engine: "local".to_string(), scheduler: None, ship_limit_mb: 256 }
    }
}

/// The part of the configuration that can be written in TOML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    catalog: CatalogConfig,
    storage: StorageConfig,
    query: QueryConfig,
    vectors: VectorsConfig,
    broker: BrokerConfig,
    security: SecurityConfig,
    audit: AuditConfig,
    ephemeral: EphemeralConfig,
}

impl Config {
    /// Embedded defaults for `data_dir`, ignoring files and environment.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            catalog: CatalogConfig::default(),
            storage: StorageConfig::default(),
            query: QueryConfig::default(),
            vectors: VectorsConfig::default(),
            broker: BrokerConfig::default(),
            security: SecurityConfig::default(),
            audit: AuditConfig::default(),
            ephemeral: EphemeralConfig::default(),
        }
    }

    /// Load the configuration for `data_dir` from the process environment and the config
    /// file (explicit, `JAMMI_CONFIG`, or `<data_dir>/jammi.toml`).
    pub fn load(data_dir: impl Into<PathBuf>, explicit_file: Option<&Path>) -> Result<Self> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load_with_env(data_dir, explicit_file, &env)
    }

    /// Like [`Config::load`], with the environment given explicitly (for tests and embedders).
    pub fn load_with_env(
        data_dir: impl Into<PathBuf>,
        explicit_file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self> {
        // Relative data directories resolve against the working directory, once, here: every
        // URL made from it later (`file://<data-dir>/storage`) must be absolute.
        let data_dir = absolute(data_dir.into());
        let file = match explicit_file {
            Some(p) => Some(p.to_path_buf()),
            None => match env.get("JAMMI_CONFIG") {
                Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
                _ => {
                    let p = data_dir.join(CONFIG_FILE_NAME);
                    p.exists().then_some(p)
                }
            },
        };

        let mut table = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::config(path.display().to_string(), format!("cannot read config file: {e}"))
                })?;
                let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                    Error::config(path.display().to_string(), crate::error::one_line(e.message()))
                })?;
                substitute_table(&mut table, "", env)?;
                table
            }
            None => toml::Table::new(),
        };
        apply_env_overrides(&mut table, env)?;

        let parsed: FileConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                Error::config(key, e.into_inner().to_string())
            })?;

        let config = Config {
            data_dir,
            catalog: parsed.catalog,
            storage: parsed.storage,
            query: parsed.query,
            vectors: parsed.vectors,
            broker: parsed.broker,
            security: parsed.security,
            audit: parsed.audit,
            ephemeral: parsed.ephemeral,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if let Some(url) = &self.catalog.url {
            let ok = url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://");
            if !ok {
                return Err(Error::config(
                    "catalog.url",
                    format!("'{}' is not a sqlite:// or postgres:// URL", crate::redact::redact_url(url)),
                ));
            }
        }
        if self.catalog.max_connections == 0 {
            return Err(Error::config("catalog.max_connections", "must be at least 1"));
        }
        if self.ephemeral.default_timeout_ms == 0 || self.ephemeral.default_timeout_ms > self.ephemeral.max_timeout_ms {
            return Err(Error::config("ephemeral.default_timeout_ms", "must be at least 1 and at most ephemeral.max_timeout_ms"));
        }
        if self.ephemeral.sweep_interval_ms == 0 {
            return Err(Error::config("ephemeral.sweep_interval_ms", "must be at least 1"));
        }
        if self.query.batch_size == 0 {
            return Err(Error::config("query.batch_size", "must be at least 1"));
        }
        if self.query.engine != "local" && self.query.scheduler.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(Error::config("query.scheduler", format!("query.engine = \"{}\" needs the cluster's scheduler address (e.g. df://127.0.0.1:50050)", self.query.engine)));
        }
        if self.vectors.max_segments == 0 {
            return Err(Error::config("vectors.max_segments", "must be at least 1"));
        }
        if self.vectors.segment_mb == 0 {
            return Err(Error::config("vectors.segment_mb", "must be at least 1"));
        }
        if !(self.vectors.max_deleted_fraction > 0.0 && self.vectors.max_deleted_fraction <= 1.0) {
            return Err(Error::config("vectors.max_deleted_fraction", "must be greater than 0 and at most 1"));
        }
        if self.broker.poll_interval_ms == 0 {
            return Err(Error::config("broker.poll_interval_ms", "must be at least 1"));
        }
        if self.broker.kind == BrokerKind::Jetstream && !self.broker.url.as_deref().is_some_and(|u| u.starts_with("nats://") || u.starts_with("tls://")) {
            return Err(Error::config("broker.url", "broker.kind = \"jetstream\" needs broker.url = \"nats://host:port\""));
        }
        Ok(())
    }

    /// The catalog URL to connect to, defaulting to the SQLite file in the data directory.
    pub fn catalog_url(&self) -> String {
        match &self.catalog.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("catalog.db").display()),
        }
    }

    /// The root URL of engine-managed storage.
    pub fn storage_root(&self) -> String {
        match &self.storage.root {
            Some(root) => root.clone(),
            None => format!("file://{}", absolute(self.data_dir.join("storage")).display()),
        }
    }
}

/// `path` made absolute against the working directory (unchanged if that cannot be read).
fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::path::absolute(&path).unwrap_or(path)
}

/// Replace `${VAR}` in every string of `table`; `$$` stands for a literal `$`.
fn substitute_table(table: &mut toml::Table, prefix: &str, env: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in table.iter_mut() {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        substitute_value(v, &key, env)?;
    }
    Ok(())
}

fn substitute_value(value: &mut toml::Value, key: &str, env: &BTreeMap<String, String>) -> Result<()> {
    match value {
        toml::Value::String(s) => *s = substitute_str(s, key, env)?,
        toml::Value::Table(t) => substitute_table(t, key, env)?,
        toml::Value::Array(items) => {
            for item in items {
                substitute_value(item, key, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

pub(crate) fn substitute_str(s: &str, key: &str, env: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                Error::config(key, "unterminated '${' (write '$$' for a literal '$')")
            })?;
            let var = &body[..end];
            let value = env.get(var).ok_or_else(|| {
                Error::config(key, format!("environment variable '{var}' is not set (referenced as ${{{var}}})"))
            })?;
            out.push_str(value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Apply `JAMMI_<SECTION>__<KEY>=value`. Values that parse as TOML scalars (numbers,
/// booleans) keep their type; anything else is a string.
fn apply_env_overrides(table: &mut toml::Table, env: &BTreeMap<String, String>) -> Result<()> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("JAMMI_") else { continue };
        let Some((section, key)) = rest.split_once("__") else { continue };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if !is_known_key(&section, &key) {
            return Err(Error::config(
                name.clone(),
                format!("sets unknown config key '{section}.{key}'"),
            ));
        }
        let value = parse_scalar(raw);
        let section_table = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match section_table {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            _ => return Err(Error::config(section, "must be a table")),
        }
    }
    Ok(())
}

fn is_known_key(section: &str, key: &str) -> bool {
    matches!(
        (section, key),
        ("catalog", "url" | "max_connections" | "busy_timeout_ms" | "connect_timeout_ms")
            | ("storage", "root")
            | ("query", "target_partitions" | "batch_size" | "engine" | "scheduler" | "ship_limit_mb")
            | ("vectors", "cache_mb" | "max_segments" | "max_deleted_fraction" | "segment_mb" | "disk_cache_mb")
            | ("broker", "kind" | "url" | "poll_interval_ms")
            | ("security", "operator_locations" | "idle_in_transaction_timeout_ms")
            | ("audit", "enabled" | "key_env" | "key_file" | "durability")
            | ("ephemeral", "default_timeout_ms" | "max_timeout_ms" | "max_open" | "sweep_interval_ms")
    )
}

fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(f) = raw.parse::<f64>() {
        if raw.contains('.') {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn relative_data_dirs_become_absolute() {
        let c = Config::load_with_env(".jammi-relative-test", None, &env(&[])).unwrap();
        assert!(c.data_dir.is_absolute(), "{}", c.data_dir.display());
        assert!(c.storage_root().starts_with("file:///"), "{}", c.storage_root());
        crate::storage::StorageUrl::parse(&c.storage_root()).expect("the storage root is a valid URL");
        let embedded = Config::embedded("relative/dir");
        crate::storage::StorageUrl::parse(&embedded.storage_root()).expect("embedded configs resolve too");
    }

    #[test]
    fn defaults_without_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_with_env(dir.path(), None, &env(&[])).unwrap();
        assert_eq!(c.catalog, CatalogConfig::default());
        assert!(c.catalog_url().ends_with("catalog.db"));
        assert!(c.storage_root().starts_with("file://"));
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "[query]\nbatch_size = 100\n[catalog]\nmax_connections = 3\n",
        )
        .unwrap();
        let c = Config::load_with_env(dir.path(), None, &env(&[("JAMMI_QUERY__BATCH_SIZE", "42")])).unwrap();
        assert_eq!(c.query.batch_size, 42);
        assert_eq!(c.catalog.max_connections, 3);
    }

    #[test]
    fn substitution_and_missing_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[storage]\nroot = \"file:///${BASE}/x$$y\"\n").unwrap();
        let c = Config::load_with_env(dir.path(), Some(&file), &env(&[("BASE", "tmp")])).unwrap();
        assert_eq!(c.storage.root.as_deref(), Some("file:///tmp/x$y"));

        let err = Config::load_with_env(dir.path(), Some(&file), &env(&[])).unwrap_err().to_string();
        assert!(err.contains("storage.root") && err.contains("BASE"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[catalog]\nurll = \"x\"\n").unwrap();
        let err = Config::load_with_env(dir.path(), Some(&file), &env(&[])).unwrap_err().to_string();
        assert!(err.contains("catalog") && err.contains("urll"), "{err}");

        let err = Config::load_with_env(dir.path(), None, &env(&[("JAMMI_CATALOG__NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("JAMMI_CATALOG__NOPE") && err.contains("catalog.nope"), "{err}");
    }

    #[test]
    fn a_distributed_engine_needs_its_scheduler() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load_with_env(dir.path(), None, &env(&[("JAMMI_QUERY__ENGINE", "ballista")])).unwrap_err().to_string();
        assert!(err.contains("query.scheduler") && err.contains("df://"), "{err}");
        let c = Config::load_with_env(dir.path(), None, &env(&[("JAMMI_QUERY__ENGINE", "ballista"), ("JAMMI_QUERY__SCHEDULER", "df://10.0.0.5:50050")])).unwrap();
        assert_eq!((c.query.engine.as_str(), c.query.scheduler.as_deref(), c.query.ship_limit_mb), ("ballista", Some("df://10.0.0.5:50050"), 256));
        assert_eq!(Config::embedded(dir.path()).query.engine, "local");
    }

    #[test]
    fn wrong_types_and_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load_with_env(dir.path(), None, &env(&[("JAMMI_QUERY__BATCH_SIZE", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("query.batch_size"), "{err}");
        let err = Config::load_with_env(dir.path(), None, &env(&[("JAMMI_CATALOG__URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("catalog.url"), "{err}");
    }

    #[test]
    fn vector_and_storage_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[vectors]\ncache_mb = 64\nmax_deleted_fraction = 0.5\n[storage]\nroot = \"s3://b/p\"\noptions = { region = \"eu-west-1\" }\n",
        )
        .unwrap();
        let c = Config::load_with_env(dir.path(), Some(&file), &env(&[("JAMMI_VECTORS__MAX_SEGMENTS", "4"), ("JAMMI_VECTORS__SEGMENT_MB", "16")])).unwrap();
        assert_eq!((c.vectors.cache_mb, c.vectors.max_segments, c.vectors.max_deleted_fraction, c.vectors.segment_mb), (64, 4, 0.5, 16));
        assert_eq!(c.storage.options.get("region").map(String::as_str), Some("eu-west-1"));
        for (key, value) in [("JAMMI_VECTORS__MAX_SEGMENTS", "0"), ("JAMMI_VECTORS__MAX_DELETED_FRACTION", "1.5"), ("JAMMI_VECTORS__SEGMENT_MB", "0")] {
            let err = Config::load_with_env(dir.path(), None, &env(&[(key, value)])).unwrap_err().to_string();
            assert!(err.contains(&key["JAMMI_".len()..].to_ascii_lowercase().replace("__", ".")), "{err}");
        }
    }
}
