//! Where training runs. An executor starts a prepared launch, reports its
//! status through a channel, streams its logs and cancels it. The launcher
//! (`crate::launch`) owns the order of steps and the records; executors only
//! run things.

pub mod kubernetes;
pub mod local;

use std::path::PathBuf;

use app::model::LaunchStatus;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::catalog::HardwareProfile;

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
}

/// A status change seen by an executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub launch_id: String,
    pub status: LaunchStatus,
    pub reason: String,
}

pub type StatusSink = mpsc::UnboundedSender<StatusReport>;

/// Why an executor could not do what was asked, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecutorError(pub String);

pub type LogStream = BoxStream<'static, Result<String, ExecutorError>>;

#[async_trait::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// `local` or `kubernetes`: recorded on the launch and the MLflow run.
    fn backend(&self) -> &'static str;

    /// Starts the training; returns what identifies it (Job name, process id).
    async fn start(&self, job: &TrainingJob) -> Result<String, ExecutorError>;

    async fn cancel(&self, launch_id: &str, executor_ref: &str) -> Result<(), ExecutorError>;

    /// The output so far, then new output as it comes, until the training ends.
    async fn logs(&self, launch_id: &str, executor_ref: &str) -> Result<LogStream, ExecutorError>;
}
