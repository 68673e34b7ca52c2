//! `jammi cluster scheduler|executor`: Apache Ballista's processes with jammi built in, for
//! `[query] engine = "ballista"` (docs/ballista.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use jammi_cluster::process::{run_executor, run_scheduler, ExecutorOptions, SchedulerOptions};
use jammi_db::Config;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Run a Ballista scheduler until SIGINT/SIGTERM. It reads the deployment's catalog
    /// (this jammi.toml) for the object stores of file sources; it has no authentication of
    /// its own: keep it on a network tenants cannot reach.
    Scheduler {
        /// Address to listen on for clients and executors.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// Host name executors and clients reach this scheduler by (default: the bind address).
        #[arg(long)]
        external_host: Option<String>,
        /// Seconds without a heartbeat after which an executor is lost and its tasks run
        /// again on the others.
        #[arg(long, default_value_t = 30)]
        executor_timeout_secs: u64,
    },
    /// Run a Ballista executor until SIGINT/SIGTERM; reads file sources with the
    /// credentials in the deployment's catalog (this jammi.toml).
    Executor {
        /// The scheduler: df://HOST:PORT.
        #[arg(long, default_value = "df://127.0.0.1:50050")]
        scheduler: String,
        /// Address of this executor's Arrow Flight service (shuffle data and results).
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: SocketAddr,
        /// Port of this executor's gRPC service (tasks from the scheduler).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Host name others reach this executor by (default: the bind address).
        #[arg(long)]
        external_host: Option<String>,
        /// Tasks run at once; 0 = one per CPU core.
        #[arg(long, default_value_t = 0)]
        concurrent_tasks: usize,
        /// Directory for shuffle files (default: <data-dir>/cluster-work).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, default_value_t = 5)]
        heartbeat_secs: u64,
    },
}

pub async fn run(config: Config, command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Scheduler { bind, external_host, executor_timeout_secs } => {
            eprintln!("jammi cluster scheduler listening on df://{bind}");
            run_scheduler(config, SchedulerOptions { bind, external_host, executor_timeout_secs }).await?;
        }
        ClusterCommand::Executor { scheduler, bind, grpc_port, external_host, concurrent_tasks, work_dir, heartbeat_secs } => {
            eprintln!("jammi cluster executor on {bind} (gRPC port {grpc_port}), scheduler {scheduler}");
            run_executor(config, ExecutorOptions { scheduler, bind, grpc_port, external_host, concurrent_tasks, work_dir, heartbeat_secs }).await?;
        }
    }
    Ok(())
}
