//! Slipway's server: the axum binary and the control plane behind the UI's
//! server functions.

pub mod auth;
pub mod config;
pub mod control;
pub mod error;
pub mod http;
pub mod metrics;
pub mod mlflow;
pub mod store;
pub mod telemetry;

use std::sync::Arc;

use leptos::prelude::LeptosOptions;

use crate::config::Config;
use crate::control::Slipway;
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::mlflow::MlflowClient;
use crate::store::Store;

/// Everything the server needs, built from the configuration. MLflow need
/// not be up: Slipway starts anyway and reports it on `/readyz` and in the UI.
pub async fn build_state(config: &Config) -> Result<AppState> {
    config.validate()?;
    let store = Store::connect(&config.database_url()).await?;
    let mlflow = MlflowClient::new(
        &config.mlflow_uri,
        config.mlflow_auth(),
        config.mlflow_timeout(),
    )
    .map_err(|err| Error::Config(format!("MLflow client: {err}")))?;
    Ok(AppState {
        leptos_options: leptos_options(config),
        slipway: Arc::new(Slipway { mlflow, store }),
        metrics: Metrics::new(),
    })
}

fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("slipway")
        .site_root(config.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build()
}
