//! What Slipway talks to: MLflow, the cluster, the executors that run
//! trainings, git repositories, the serving targets, the single sign-on provider, and the
//! processes it starts. Each speaks its own protocol and reports in the
//! server's `Error`; none decides who may do what.

pub mod cluster;
pub mod executor;
pub mod git;
pub mod lease;
pub mod mlflow;
pub mod oidc;
pub mod process;
pub mod prometheus;
pub mod serving;
