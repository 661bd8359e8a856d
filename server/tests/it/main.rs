//! Slipway's integration tests, linked into one binary: each module is a
//! scenario file against real parts (MLflow, SQLite and PostgreSQL, a
//! Kubernetes API server, `mlflow models serve`), sharing `support`.

mod support;

mod access;
mod approvals;
mod artifacts;
mod cluster;
mod deploy;
mod git_push;
mod hosts;
mod http;
mod install;
mod kubernetes;
mod launch;
mod layout;
mod mlflow_client;
mod mlflow_login;
mod pipeline;
mod promotions;
mod registry;
mod secrets;
mod serving;
mod sessions;
mod shutdown;
mod store;
mod traffic;
mod webhook;
