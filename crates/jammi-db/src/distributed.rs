//! Distributed query engines: where a query's plan may run other than in this process.
//!
//! The engine itself knows no cluster. A binary links one in (the `jammi` CLI links
//! Apache Ballista through the `jammi-cluster` crate) by [`register_engine`] under a name;
//! `[query] engine = "<name>"` then hands every physical planning to it first. The engine
//! gets the plan after jammi's own analysis — tenant filters added, views expanded, the
//! statement policy checked, database-source parts pushed down — and either returns a
//! physical plan that runs it elsewhere, or `None` to run it here as usual. Whatever it
//! cannot run remotely runs locally: a distributed engine never makes a query fail for
//! that reason.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use datafusion::common::Result as DfResult;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;

use crate::config::QueryConfig;
use crate::error::{Error, Result};

/// A place other than this process where plans can run.
#[async_trait]
pub trait DistributedEngine: Debug + Send + Sync {
    /// A physical plan that runs `plan` (optimised, analysed) elsewhere, or `None` when it
    /// is better or only possible to run it here. `state` plans and runs any part that must
    /// be computed in this process.
    async fn plan(&self, plan: &LogicalPlan, state: &SessionState) -> DfResult<Option<Arc<dyn ExecutionPlan>>>;
}

/// Builds an engine from the `[query]` section (its scheduler address, limits).
pub type EngineFactory = fn(&QueryConfig) -> Result<Arc<dyn DistributedEngine>>;

fn engines() -> &'static Mutex<BTreeMap<String, EngineFactory>> {
    static ENGINES: OnceLock<Mutex<BTreeMap<String, EngineFactory>>> = OnceLock::new();
    ENGINES.get_or_init(Default::default)
}

/// Make `name` usable as `[query] engine = "<name>"` in this process.
pub fn register_engine(name: &str, factory: EngineFactory) {
    engines().lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), factory);
}

/// The engine `[query]` names, or `None` for `local`.
pub(crate) fn engine_for(config: &QueryConfig) -> Result<Option<Arc<dyn DistributedEngine>>> {
    if config.engine == "local" {
        return Ok(None);
    }
    let factory = engines().lock().unwrap_or_else(|p| p.into_inner()).get(&config.engine).copied();
    match factory {
        Some(factory) => factory(config).map(Some),
        None => {
            let known = engines().lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect::<Vec<_>>();
            let hint = if known.is_empty() {
                "this program has no distributed engine linked in (the jammi CLI and server have `ballista`)".to_string()
            } else {
                format!("this program knows local, {}", known.join(", "))
            };
            Err(Error::config("query.engine", format!("unknown engine '{}': {hint}", config.engine)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nowhere;

    #[async_trait]
    impl DistributedEngine for Nowhere {
        async fn plan(&self, _plan: &LogicalPlan, _state: &SessionState) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
            Ok(None)
        }
    }

    #[test]
    fn the_engine_named_in_query_is_the_registered_one_and_an_unknown_name_is_refused_by_name() {
        let mut config = QueryConfig::default();
        assert!(engine_for(&config).unwrap().is_none(), "local needs no engine");
        config.engine = "test-nowhere".to_string();
        config.scheduler = Some("df://127.0.0.1:1".to_string());
        let err = engine_for(&config).unwrap_err().to_string();
        assert!(err.contains("query.engine") && err.contains("test-nowhere"), "{err}");
        register_engine("test-nowhere", |_| Ok(Arc::new(Nowhere)));
        assert!(engine_for(&config).unwrap().is_some());
        config.engine = "test-elsewhere".to_string();
        let err = engine_for(&config).unwrap_err().to_string();
        assert!(err.contains("test-nowhere"), "the known engines are listed: {err}");
    }
}
