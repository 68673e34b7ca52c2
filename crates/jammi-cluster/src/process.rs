//! `jammi cluster scheduler` and `jammi cluster executor`: Ballista's scheduler and executor
//! with jammi's codec and the deployment's object stores built in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::utils::default_session_builder;
use ballista_core::RuntimeProducer;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use jammi_db::Config;

use crate::codec::JammiLogicalCodec;
use crate::stores::SourceStores;

/// Errors starting or running a cluster process.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The jammi configuration or catalog.
    #[error(transparent)]
    Jammi(#[from] jammi_db::Error),
    /// Ballista refused or failed.
    #[error("ballista: {0}")]
    Ballista(String),
    /// A flag was wrong.
    #[error("{flag}: {message}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// How a scheduler is run.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Where it listens for clients and executors.
    pub bind: SocketAddr,
    /// The host executors and clients reach it by (default: the bind address).
    pub external_host: Option<String>,
    /// An executor silent this long is lost; its tasks run again elsewhere.
    pub executor_timeout_secs: u64,
}

/// How an executor is run.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler (`df://host:port` or `host:port`).
    pub scheduler: String,
    /// Address of the executor's Arrow Flight service (shuffle data, results).
    pub bind: SocketAddr,
    /// Port of its gRPC service (tasks from the scheduler).
    pub grpc_port: u16,
    /// The host others reach it by (default: the bind address).
    pub external_host: Option<String>,
    /// Tasks it runs at once (0: one per CPU core).
    pub concurrent_tasks: usize,
    /// Where shuffle files go (default: a directory under the data directory).
    pub work_dir: Option<PathBuf>,
    /// How often it tells the scheduler it is alive.
    pub heartbeat_secs: u64,
}

/// Run a scheduler until the process is stopped.
pub async fn run_scheduler(config: Config, options: SchedulerOptions) -> Result<(), ClusterError> {
    let stores = SourceStores::open(config)?;
    let mut scheduler = SchedulerConfig {
        bind_host: options.bind.ip().to_string(),
        bind_port: options.bind.port(),
        external_host: options.external_host.unwrap_or_else(|| options.bind.ip().to_string()),
        executor_timeout_seconds: options.executor_timeout_secs,
        expire_dead_executor_interval_seconds: options.executor_timeout_secs.clamp(1, 15),
        no_executors_grace_period_seconds: options.executor_timeout_secs,
        override_logical_codec: Some(JammiLogicalCodec::shared()),
        ..SchedulerConfig::default()
    };
    // Planning lists the files of each scan: the scheduler reads the stores too.
    scheduler.override_session_builder = Some(Arc::new(move |session_config| {
        let state = default_session_builder(session_config)?;
        let runtime = RuntimeEnvBuilder::new().with_object_store_registry(Arc::clone(&stores) as _).build_arc()?;
        Ok(SessionStateBuilder::new_from_existing(state).with_runtime_env(runtime).build())
    }));
    let cluster = BallistaCluster::new_from_config(&scheduler).await.map_err(|e| ClusterError::Ballista(e.to_string()))?;
    start_server(cluster, options.bind, Arc::new(scheduler)).await.map_err(|e| ClusterError::Ballista(e.to_string()))
}

/// Run an executor until the process is stopped.
pub async fn run_executor(config: Config, options: ExecutorOptions) -> Result<(), ClusterError> {
    let scheduler = crate::engine::scheduler_url(&options.scheduler).ok_or_else(|| ClusterError::Invalid {
        flag: "--scheduler",
        message: format!("'{}' is not a scheduler address; write df://HOST:PORT", options.scheduler),
    })?;
    let (scheduler_host, scheduler_port) = scheduler.trim_start_matches("http://").rsplit_once(':').map(|(h, p)| (h.to_string(), p.parse().unwrap_or(50050))).unwrap_or_default();
    let work_dir = options.work_dir.unwrap_or_else(|| config.data_dir.join("cluster-work"));
    std::fs::create_dir_all(&work_dir).map_err(|e| ClusterError::Invalid { flag: "--work-dir", message: format!("cannot create {}: {e}", work_dir.display()) })?;
    let stores = SourceStores::open(config)?;
    let temp = work_dir.clone();
    let runtime: RuntimeProducer = Arc::new(move |_| {
        RuntimeEnvBuilder::new().with_temp_file_path(temp.clone()).with_object_store_registry(Arc::clone(&stores) as _).build_arc()
    });
    let executor = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        port: options.bind.port(),
        grpc_port: options.grpc_port,
        external_host: options.external_host.or_else(|| Some(options.bind.ip().to_string())),
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: options.concurrent_tasks,
        work_dir: Some(work_dir.display().to_string()),
        executor_heartbeat_interval_seconds: options.heartbeat_secs,
        print_thread_info: false,
        override_runtime_producer: Some(runtime),
        override_logical_codec: Some(JammiLogicalCodec::shared()),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(executor)).await.map_err(|e| ClusterError::Ballista(e.to_string()))
}
