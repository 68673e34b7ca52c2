//! `jammi artifact put|fetch|rm`: bundles of files on object storage (see
//! `docs/artifacts.md`). Argument conversion and printing only.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Subcommand;
use jammi_db::artifact::ArtifactFile;
use jammi_db::storage::StorageUrl;
use jammi_db::Session;

/// `jammi artifact ...`
#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Upload FILEs as one bundle under ROOT_URL/SEGMENT/.../ (manifest.json last) and print
    /// the prefix URL. A prefix is written once: use a new attempt segment to put again.
    Put {
        /// Where bundles live: a local directory, file://, s3://, gs://, azure://, r2:// or
        /// memory:// URL.
        root_url: String,
        /// Prefix segments separated by '/', e.g. JOB/WORKER/ATTEMPT; each is sanitised.
        segments: String,
        /// The files; each is stored under its base name.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Storage option K=V (endpoint=..., region=..., access_key_id=...).
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
    /// Download (or, for local prefixes, check in place) a bundle, verify every file against
    /// its manifest and print the local directory holding it.
    Fetch {
        /// The prefix URL `artifact put` printed.
        prefix_url: String,
        /// Storage option K=V.
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
    /// Delete a bundle: its files, then its manifest; collects unfinished puts too.
    Rm {
        /// The prefix URL.
        prefix_url: String,
        /// Storage option K=V.
        #[arg(long = "option", value_name = "K=V")]
        options: Vec<String>,
    },
}

pub async fn run(session: &Session, command: ArtifactCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        ArtifactCommand::Put { root_url, segments, files, options } => {
            let store = session.artifacts(crate::parse_options(&options)?).with_progress(crate::progress::reporter());
            let root = StorageUrl::parse(&root_url)?;
            let segments: Vec<&str> = segments.split('/').collect();
            let files = files
                .into_iter()
                .map(|path| {
                    let name = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .ok_or_else(|| anyhow!("'{}' has no file name to store it under", path.display()))?
                        .to_string();
                    Ok(ArtifactFile::from_path(name, path))
                })
                .collect::<Result<Vec<_>>>()?;
            let prefix = store.put_artifact(&root, &segments, &files).await?;
            writeln!(out, "{prefix}")?;
        }
        ArtifactCommand::Fetch { prefix_url, options } => {
            let store = session.artifacts(crate::parse_options(&options)?).with_progress(crate::progress::reporter());
            let fetched = store.fetch_artifact(&StorageUrl::parse(&prefix_url)?.as_dir()).await?;
            writeln!(out, "{}", fetched.dir.display())?;
        }
        ArtifactCommand::Rm { prefix_url, options } => {
            let store = session.artifacts(crate::parse_options(&options)?);
            let prefix = StorageUrl::parse(&prefix_url)?.as_dir();
            store.delete_artifact_prefix(&prefix).await?;
            writeln!(out, "removed {prefix}")?;
        }
    }
    Ok(())
}
