//! [`SourceStores`]: the object stores a scheduler or executor reads file sources from,
//! built from the deployment's catalog — the same source records (and credentials) the
//! jammi replicas use. Plans carry file URLs, never credentials.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use jammi_db::catalog::Catalog;
use jammi_db::storage::{StorageRegistry, StorageUrl};
use jammi_db::Config;
use object_store::ObjectStore;
use url::Url;

/// Object stores by `scheme://bucket`, loaded from the catalog's source records (and the
/// storage root) on first use of an unknown bucket.
pub struct SourceStores {
    config: Config,
    local: DefaultObjectStoreRegistry,
    known: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl fmt::Debug for SourceStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known = self.known.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect::<Vec<_>>();
        f.debug_struct("SourceStores").field("known", &known).finish()
    }
}

fn key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
}

impl SourceStores {
    /// Stores for the deployment `config` describes; reads the catalog at once, so a
    /// process that cannot reach it says so when it starts.
    pub fn open(config: Config) -> jammi_db::Result<Arc<Self>> {
        let stores = Arc::new(SourceStores { config, local: DefaultObjectStoreRegistry::new(), known: RwLock::default() });
        stores.reload()?;
        Ok(stores)
    }

    /// Read every file source's store options from the catalog. Runs on a thread of its
    /// own: callers are DataFusion's synchronous store lookups, inside async tasks.
    fn reload(&self) -> jammi_db::Result<()> {
        let config = self.config.clone();
        let loaded = std::thread::spawn(move || -> jammi_db::Result<Vec<(String, Arc<dyn ObjectStore>)>> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| jammi_db::Error::config("catalog", format!("cannot start a runtime: {e}")))?;
            runtime.block_on(async {
                let catalog = Catalog::open(&config.catalog_url(), &config.catalog).await?;
                let records = catalog.sources().list_all().await;
                catalog.close().await;
                let registry = StorageRegistry::new();
                let mut stores = Vec::new();
                if let Some(root) = &config.storage.root {
                    let url = StorageUrl::parse(root)?;
                    if !url.is_local() {
                        stores.push((key(url.url()), registry.store_for(&url, &config.storage.options)?));
                    }
                }
                for record in records? {
                    // Database sources have no files; a source whose store cannot be built is
                    // one no replica can read either: skip it, the query naming it fails there.
                    let Ok(url) = StorageUrl::parse(&record.url) else { continue };
                    if url.is_local() || !matches!(record.kind.as_str(), "file") {
                        continue;
                    }
                    let (_, options) = jammi_db::source::split_options(&record.options);
                    if let Ok(store) = registry.store_for(&url, &options) {
                        stores.push((key(url.url()), store));
                    }
                }
                Ok(stores)
            })
        })
        .join()
        .map_err(|_| jammi_db::Error::config("catalog", "reading the sources' stores panicked"))??;
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        for (key, store) in loaded {
            // The first source naming a bucket decides its options, as on the replicas.
            known.entry(key).or_insert(store);
        }
        Ok(())
    }

    fn lookup(&self, url: &Url) -> Option<Arc<dyn ObjectStore>> {
        self.known.read().unwrap_or_else(|p| p.into_inner()).get(&key(url)).cloned()
    }
}

impl ObjectStoreRegistry for SourceStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.known.write().unwrap_or_else(|p| p.into_inner()).insert(key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        self.known
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(url))
            .ok_or_else(|| DataFusionError::Execution(format!("no object store is registered for {}", key(url))))
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if url.scheme() == "file" {
            return self.local.get_store(url);
        }
        if let Some(store) = self.lookup(url) {
            return Ok(store);
        }
        // A source added since the last look: read the catalog again.
        self.reload().map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.lookup(url).ok_or_else(|| {
            DataFusionError::Execution(format!(
                "no file source in this deployment's catalog reads {}: the cluster reads only the buckets of registered sources (check that this process uses the replicas' jammi.toml)",
                key(url)
            ))
        })
    }
}
