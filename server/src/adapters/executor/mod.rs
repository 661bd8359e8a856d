//! Where training runs. An executor starts a prepared launch, reports its
//! status through a channel, streams its logs and cancels it. The launcher
//! (`crate::services::launches`) owns the order of steps and the records; executors only
//! run things.

pub mod kubernetes;
pub mod local;

use std::collections::BTreeSet;
use std::path::PathBuf;

use app::model::LaunchStatus;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::catalog::HardwareProfile;
use crate::error::Result;

/// Everything an executor needs to start one training.
#[derive(Debug, Clone)]
pub struct TrainingJob {
    pub launch_id: String,
    pub run_id: String,
    pub experiment_id: String,
    pub project: String,
    pub entry_point: String,
    /// The project directory (local executor).
    pub directory: PathBuf,
    /// The training image (Kubernetes executor).
    pub image: Option<String>,
    pub argv: Vec<String>,
    pub profile: HardwareProfile,
    /// The virtualenv to build and run in (local executor).
    pub python_env: Option<crate::catalog::mlproject::PythonEnv>,
    /// A project from git: the commit the Job fetches before it trains
    /// (Kubernetes executor; the local one is given `directory` checked out).
    pub git: Option<GitCheckout>,
}

/// One commit of a repository, as a training Job fetches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCheckout {
    pub url: String,
    pub commit: String,
    /// The directory in the repository holding `MLproject` ("" for its top).
    pub path: String,
    /// Secret with `username` and `password` for the fetch, by reference.
    pub secret: Option<String>,
}

/// A status change seen by an executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub launch_id: String,
    pub status: LaunchStatus,
    pub reason: String,
}

/// What an executor saw. Executors report facts; the launcher decides what
/// they mean for the launches it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorEvent {
    Status(StatusReport),
    /// The training's Job no longer exists (deleted outside Slipway, or
    /// collected after it finished): the launch ends unless it has, as the
    /// MLflow run's own status says.
    Gone {
        launch_id: String,
        reason: String,
    },
    /// The training lost its pod while it ran (deleted, preempted). A Job
    /// would start a replacement logging into the same MLflow run, so the
    /// launch fails and what remains of it is stopped.
    Lost {
        launch_id: String,
        reason: String,
    },
    /// A complete listing of the launches that still have a training here
    /// (at start-up, and whenever a watch starts over). Unfinished launches
    /// that are not listed, and are confirmed missing, end with `reason`.
    Listed {
        present: BTreeSet<String>,
        reason: String,
    },
}

pub type StatusSink = mpsc::UnboundedSender<ExecutorEvent>;

/// Why an executor could not do what was asked, in words for the user.
pub type LogStream = BoxStream<'static, Result<String>>;

#[async_trait::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// `local` or `kubernetes`: recorded on the launch and the MLflow run.
    fn backend(&self) -> &'static str;

    /// Starts the training; returns what identifies it (Job name, process id).
    async fn start(&self, job: &TrainingJob) -> Result<String>;

    async fn cancel(&self, launch_id: &str, executor_ref: &str) -> Result<()>;

    /// The output so far, then new output as it comes, until the training ends.
    async fn logs(&self, launch_id: &str, executor_ref: &str) -> Result<LogStream>;

    /// Whether the training still exists, asked of the source itself (a
    /// listing may predate it).
    async fn is_present(&self, launch_id: &str, executor_ref: &str) -> Result<bool>;

    /// Slipway stops: trainings that cannot outlive it are stopped (local
    /// processes, its children); a cluster's Jobs run on without it.
    async fn stop_all(&self) {}
}
