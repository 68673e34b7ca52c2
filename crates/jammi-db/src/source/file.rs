//! File sources: Parquet, CSV and JSON files or directories, local or in object storage,
//! read through DataFusion's `ListingTable`.
//!
//! At `source add` time [`inspect`] reads the data once (format, hive partitions, schema)
//! and the result is stored as a [`TableSpec`]; reopening rebuilds the table from the spec
//! without touching the files.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::SessionState;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::naming::table_name_from;
use crate::error::{Error, Result};
use crate::storage::StorageUrl;

/// Supported file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormatKind {
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values (header row by default).
    Csv,
    /// JSON: newline-delimited objects, or one top-level array of objects.
    Json,
}

impl FileFormatKind {
    /// Guess from a file name's extension.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let ext = lower.rsplit('.').next()?;
        match ext {
            "parquet" | "parq" | "pq" => Some(FileFormatKind::Parquet),
            "csv" | "tsv" => Some(FileFormatKind::Csv),
            "json" | "ndjson" | "jsonl" => Some(FileFormatKind::Json),
            _ => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            FileFormatKind::Parquet => "parquet",
            FileFormatKind::Csv => "csv",
            FileFormatKind::Json => "json",
        }
    }
}

impl fmt::Display for FileFormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileFormatKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Ok(FileFormatKind::Parquet),
            "csv" => Ok(FileFormatKind::Csv),
            "json" | "ndjson" | "jsonl" => Ok(FileFormatKind::Json),
            other => Err(Error::UnknownFormat {
                source_name: String::new(),
                message: format!("'{other}' is not a supported format; use parquet, csv or json"),
            }),
        }
    }
}

/// Options that shape how files are read (everything else goes to the storage driver).
pub const FORMAT_OPTIONS: &[&str] = &["table", "has_header", "delimiter", "quote", "file_extension"];

/// What `source add` learned about the data, stored in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Version of this record's layout.
    pub version: u32,
    /// SQL table name.
    pub table: String,
    /// The data format.
    pub format: FileFormatKind,
    /// The location names a directory (prefix) rather than one file.
    pub is_dir: bool,
    /// Only files with this suffix are read ("" = any, used for single files).
    pub file_extension: String,
    /// Hive-style `key=value` partition columns (read as text).
    pub partition_columns: Vec<String>,
    /// Schema of the files (without partition columns).
    pub file_schema: Schema,
    /// CSV: first line is a header.
    pub has_header: bool,
    /// CSV: field delimiter.
    pub delimiter: u8,
    /// CSV: quote character.
    pub quote: u8,
    /// JSON: one object per line (false: one top-level array).
    pub newline_delimited: bool,
}

impl TableSpec {
    /// The schema SQL sees: file columns then partition columns.
    pub fn table_schema(&self) -> SchemaRef {
        let mut fields: Vec<_> = self.file_schema.fields().iter().cloned().collect();
        for p in &self.partition_columns {
            fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(p, DataType::Utf8, true)));
        }
        Arc::new(Schema::new(fields))
    }

    fn listing_options(&self) -> ListingOptions {
        let format: Arc<dyn FileFormat> = match self.format {
            FileFormatKind::Parquet => Arc::new(ParquetFormat::default()),
            FileFormatKind::Csv => Arc::new(
                CsvFormat::default()
                    .with_has_header(self.has_header)
                    .with_delimiter(self.delimiter)
                    .with_quote(self.quote),
            ),
            FileFormatKind::Json => Arc::new(JsonFormat::default().with_newline_delimited(self.newline_delimited)),
        };
        let partitions = self.partition_columns.iter().map(|c| (c.clone(), DataType::Utf8)).collect();
        ListingOptions::new(format)
            .with_file_extension(self.file_extension.clone())
            .with_table_partition_cols(partitions)
    }
}

/// Read the data at `url` once: decide file or directory, the format, partitions and schema.
pub async fn inspect(
    state: &SessionState,
    store: &Arc<dyn ObjectStore>,
    url: &StorageUrl,
    format: Option<FileFormatKind>,
    options: &BTreeMap<String, String>,
    source_name: &str,
) -> Result<TableSpec> {
    let (is_dir, first_file) = locate(store, url).await?;
    let format = match format {
        Some(f) => f,
        None => FileFormatKind::from_file_name(&first_file).ok_or_else(|| Error::UnknownFormat {
            source_name: source_name.to_string(),
            message: format!(
                "cannot tell the format of '{}' from its extension; pass --format parquet|csv|json",
                first_file.rsplit('/').next().unwrap_or(&first_file)
            ),
        })?,
    };
    let table = match options.get("table") {
        Some(t) => table_name_from(t),
        None => {
            let last = url.last_segment().unwrap_or_else(|| url.bucket().to_string());
            let stem = if is_dir { last.as_str() } else { last.split('.').next().unwrap_or(&last) };
            table_name_from(stem)
        }
    };
    let file_extension = match options.get("file_extension") {
        Some(ext) => ext.clone(),
        None if is_dir => first_file.rsplit_once('.').map(|(_, e)| format!(".{e}")).unwrap_or_default(),
        None => String::new(),
    };
    let bool_option = |key: &str, default: bool| -> Result<bool> {
        match options.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| Error::InvalidOption {
                source_name: source_name.to_string(),
                key: key.to_string(),
                message: format!("'{v}' is not true or false"),
            }),
        }
    };
    let byte_option = |key: &str, default: u8| -> Result<u8> {
        match options.get(key).map(|v| v.as_bytes()) {
            None => Ok(default),
            Some([b]) => Ok(*b),
            Some(_) if options.get(key).map(String::as_str) == Some("\\t") => Ok(b'\t'),
            Some(_) => Err(Error::InvalidOption {
                source_name: source_name.to_string(),
                key: key.to_string(),
                message: "must be a single ASCII character".to_string(),
            }),
        }
    };
    let default_delimiter = if first_file.to_ascii_lowercase().ends_with(".tsv") { b'\t' } else { b',' };
    let newline_delimited = match format {
        FileFormatKind::Json => !starts_with_array(store, &first_file).await?,
        _ => true,
    };

    let mut spec = TableSpec {
        version: 1,
        table,
        format,
        is_dir,
        file_extension,
        partition_columns: vec![],
        file_schema: Schema::empty(),
        has_header: bool_option("has_header", true)?,
        delimiter: byte_option("delimiter", default_delimiter)?,
        quote: byte_option("quote", b'"')?,
        newline_delimited,
    };

    let table_url = listing_url(url, is_dir)?;
    let unreadable = |e: datafusion::error::DataFusionError| Error::UnreadableData {
        location: url.redacted(),
        format: format.to_string(),
        message: crate::error::one_line(&e.to_string()),
    };
    let options = spec.listing_options();
    if is_dir {
        spec.partition_columns = options.infer_partitions(state, &table_url).await.map_err(unreadable)?;
    }
    let options = spec.listing_options();
    let schema = options.infer_schema(state, &table_url).await.map_err(unreadable)?;
    if schema.fields().is_empty() {
        return Err(Error::UnreadableData {
            location: url.redacted(),
            format: format.to_string(),
            message: "no columns found (is the file empty?)".to_string(),
        });
    }
    spec.file_schema = schema.as_ref().clone();
    Ok(spec)
}

/// Build the SQL table for a stored spec (no I/O).
pub fn build_table(spec: &TableSpec, url: &StorageUrl) -> Result<Arc<dyn TableProvider>> {
    let table_url = listing_url(url, spec.is_dir)?;
    let config = ListingTableConfig::new(table_url)
        .with_listing_options(spec.listing_options())
        .with_schema(Arc::new(spec.file_schema.clone()));
    let table = ListingTable::try_new(config)?;
    Ok(Arc::new(table))
}

fn listing_url(url: &StorageUrl, is_dir: bool) -> Result<ListingTableUrl> {
    let target = if is_dir { url.as_dir() } else { url.clone() };
    ListingTableUrl::parse(target.url().as_str()).map_err(|e| Error::invalid_url(url.redacted(), e.to_string()))
}

/// Is `url` one file or a directory? Returns the path of the (first data) file too.
async fn locate(store: &Arc<dyn ObjectStore>, url: &StorageUrl) -> Result<(bool, String)> {
    let not_found = || Error::NotFound { location: url.redacted() };
    if let Some(path) = url.local_path() {
        let meta = std::fs::metadata(&path).map_err(|_| not_found())?;
        if !meta.is_dir() {
            std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            return Ok((false, path.display().to_string()));
        }
    } else if !url.is_dir_syntax() {
        match store.head(&url.object_path()?).await {
            Ok(meta) => return Ok((false, meta.location.to_string())),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A directory / prefix: find its first data file, skipping hidden and marker files.
    let prefix = url.object_path()?;
    let mut listing = store.list(Some(&prefix));
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let name = meta.location.filename().unwrap_or_default();
        if name.starts_with('.') || name.starts_with('_') || meta.size == 0 {
            continue;
        }
        return Ok((true, meta.location.to_string()));
    }
    if url.local_path().is_some() {
        return Err(Error::UnreadableData {
            location: url.redacted(),
            format: "files".to_string(),
            message: "the directory holds no data files".to_string(),
        });
    }
    Err(not_found())
}

/// JSON files may be NDJSON or one array; peek at the first non-blank byte.
async fn starts_with_array(store: &Arc<dyn ObjectStore>, file: &str) -> Result<bool> {
    let path = if file.starts_with('/') {
        object_store::path::Path::from_filesystem_path(file).map_err(|e| Error::Storage(e.to_string()))?
    } else {
        object_store::path::Path::parse(file).map_err(|e| Error::Storage(e.to_string()))?
    };
    let head = store.head(&path).await?;
    let end = head.size.min(4096);
    let bytes = store.get_range(&path, 0..end).await?;
    Ok(bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['))
}
