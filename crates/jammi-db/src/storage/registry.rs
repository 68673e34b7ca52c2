//! [`StorageRegistry`]: URL + options → `Arc<dyn ObjectStore>`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::ObjectStore;

use super::StorageUrl;
use crate::error::{Error, Result};

/// Driver options (`K=V`), such as `endpoint`, `region`, `access_key_id`.
pub type StorageOptions = BTreeMap<String, String>;

/// Builds object stores for storage URLs.
#[derive(Debug, Default)]
pub struct StorageRegistry {
    _private: (),
}

/// `memory://` buckets live for the whole process, so two sessions of one process share them.
fn memory_buckets() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static BUCKETS: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    BUCKETS.get_or_init(Default::default)
}

impl StorageRegistry {
    /// A registry.
    pub fn new() -> Self {
        StorageRegistry::default()
    }

    /// The store serving `url`, configured with `options`. Unknown option keys are an error
    /// naming the key.
    pub fn store_for(&self, url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        match url.scheme() {
            "file" => {
                reject_options(url, options)?;
                Ok(Arc::new(LocalFileSystem::new()))
            }
            "memory" => {
                reject_options(url, options)?;
                let mut buckets = memory_buckets().lock().unwrap_or_else(|p| p.into_inner());
                let store = buckets.entry(url.bucket().to_string()).or_default();
                Ok(Arc::clone(store) as Arc<dyn ObjectStore>)
            }
            "s3" | "s3a" | "r2" => cloud::s3(url, options),
            "gs" => cloud::gcs(url, options),
            "azure" | "az" | "abfs" | "abfss" => cloud::azure(url, options),
            other => Err(Error::invalid_url(url.url().as_str(), format!("unsupported scheme '{other}://'"))),
        }
    }
}

fn reject_options(url: &StorageUrl, options: &StorageOptions) -> Result<()> {
    match options.keys().next() {
        Some(key) => Err(Error::InvalidOption {
            source_name: url.redacted(),
            key: key.clone(),
            message: format!("'{}://' storage takes no options", url.scheme()),
        }),
        None => Ok(()),
    }
}

/// How long a cloud request keeps retrying (connection refused, timeouts, 5xx) before the
/// caller gets an error, unless `retry_timeout` says otherwise. The driver's own default is
/// three minutes, which during an outage reads as a hang.
const DEFAULT_RETRY_TIMEOUT_SECS: u64 = 30;

/// The retry policy of a cloud store from jammi's own options `max_retries` (default 10) and
/// `retry_timeout` (seconds, default [`DEFAULT_RETRY_TIMEOUT_SECS`]), and the options left
/// for the driver.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn retry_policy(url: &StorageUrl, options: &StorageOptions) -> Result<(object_store::RetryConfig, StorageOptions)> {
    let mut retry = object_store::RetryConfig { retry_timeout: std::time::Duration::from_secs(DEFAULT_RETRY_TIMEOUT_SECS), ..Default::default() };
    let mut rest = options.clone();
    if let Some(value) = rest.remove("max_retries") {
        retry.max_retries = value.trim().parse().map_err(|_| option_error(url, "max_retries", format!("'{value}' is not a whole number")))?;
    }
    if let Some(value) = rest.remove("retry_timeout") {
        let secs: u64 = value.trim().trim_end_matches('s').parse().map_err(|_| option_error(url, "retry_timeout", format!("'{value}' is not a number of seconds")))?;
        retry.retry_timeout = std::time::Duration::from_secs(secs);
    }
    Ok((retry, rest))
}

fn option_error(url: &StorageUrl, key: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidOption { source_name: url.redacted(), key: key.to_string(), message: message.to_string() }
}

#[cfg(feature = "s3")]
mod cloud_s3 {
    use super::*;
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

    /// S3 and S3-compatible stores (MinIO, SeaweedFS, Cloudflare R2 via `r2://`).
    pub(super) fn s3(url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        let (retry, options) = &retry_policy(url, options)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(url.bucket()).with_retry(retry.clone());
        let mut account_id = None;
        for (key, value) in options {
            let canonical = match key.as_str() {
                "allow_http" => "aws_allow_http",
                // R2: https://<account_id>.r2.cloudflarestorage.com
                "account_id" if url.scheme() == "r2" => {
                    account_id = Some(value.clone());
                    continue;
                }
                k => k,
            };
            let parsed: AmazonS3ConfigKey = canonical.parse().map_err(|_| {
                option_error(url, key, "not an S3 option (try endpoint, region, access_key_id, secret_access_key, allow_http, max_retries, retry_timeout)")
            })?;
            builder = builder.with_config(parsed, value);
        }
        if url.scheme() == "r2" {
            if let Some(account) = account_id {
                builder = builder.with_endpoint(format!("https://{account}.r2.cloudflarestorage.com"));
            } else if !options.contains_key("endpoint") {
                return Err(option_error(url, "account_id", "r2:// needs --option account_id=<cloudflare account> or endpoint=<url>"));
            }
            builder = builder.with_region("auto");
        }
        builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(|e| Error::Storage(e.to_string()))
    }
}

#[cfg(feature = "gcs")]
mod cloud_gcs {
    use super::*;
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};

    pub(super) fn gcs(url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        let (retry, options) = &retry_policy(url, options)?;
        let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(url.bucket()).with_retry(retry.clone());
        for (key, value) in options {
            let parsed: GoogleConfigKey = key.parse().map_err(|_| option_error(url, key, "not a GCS option"))?;
            builder = builder.with_config(parsed, value);
        }
        builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(|e| Error::Storage(e.to_string()))
    }
}

#[cfg(feature = "azure")]
mod cloud_azure {
    use super::*;
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

    pub(super) fn azure(url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        let (retry, options) = &retry_policy(url, options)?;
        let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(url.bucket()).with_retry(retry.clone());
        for (key, value) in options {
            let parsed: AzureConfigKey = key.parse().map_err(|_| option_error(url, key, "not an Azure option"))?;
            builder = builder.with_config(parsed, value);
        }
        builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(|e| Error::Storage(e.to_string()))
    }
}

/// Dispatch to compiled-in drivers; a disabled one is a clear error naming its feature.
mod cloud {
    use super::*;

    pub(super) fn s3(url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        #[cfg(feature = "s3")]
        return super::cloud_s3::s3(url, options);
        #[cfg(not(feature = "s3"))]
        {
            let _ = options;
            Err(Error::DriverNotEnabled { scheme: url.scheme().to_string(), feature: "s3" })
        }
    }

    pub(super) fn gcs(url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        #[cfg(feature = "gcs")]
        return super::cloud_gcs::gcs(url, options);
        #[cfg(not(feature = "gcs"))]
        {
            let _ = options;
            Err(Error::DriverNotEnabled { scheme: url.scheme().to_string(), feature: "gcs" })
        }
    }

    pub(super) fn azure(url: &StorageUrl, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>> {
        #[cfg(feature = "azure")]
        return super::cloud_azure::azure(url, options);
        #[cfg(not(feature = "azure"))]
        {
            let _ = options;
            Err(Error::DriverNotEnabled { scheme: url.scheme().to_string(), feature: "azure" })
        }
    }
}
