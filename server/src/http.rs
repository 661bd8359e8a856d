//! The HTTP surface: Leptos pages and server functions behind the auth gate,
//! plus the unauthenticated operations endpoints (`/healthz`, `/readyz`,
//! `/metrics`) that probes and scrapers call without credentials.

use std::sync::Arc;
use std::time::Duration;

use app::port::SharedControlPlane;
use app::{App, shell};
use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use leptos::prelude::{LeptosOptions, provide_context};
use leptos_axum::{LeptosRoutes, generate_route_list};
use serde_json::json;
use tower_http::trace::TraceLayer;

use crate::auth;
use crate::control::Slipway;
use crate::metrics::{self, Metrics};

const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub slipway: Arc<Slipway>,
    pub metrics: Arc<Metrics>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

pub fn router(state: AppState) -> Router {
    let control_plane: SharedControlPlane = state.slipway.clone();
    let leptos_options = state.leptos_options.clone();
    let ui = Router::new()
        .leptos_routes_with_context(
            &state,
            generate_route_list(App),
            move || provide_context(control_plane.clone()),
            move || shell(leptos_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(from_fn(auth::gate));

    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics));

    ui.merge(ops)
        .layer(from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
            tracing::info_span!("request", method = %request.method(), route, path = request.uri().path())
        }))
        .with_state(state)
}

/// The process is up and serving.
async fn healthz() -> &'static str {
    "ok"
}

/// Ready to do useful work: the database and MLflow both answer.
async fn readyz(State(state): State<AppState>) -> Response {
    let database = async {
        match tokio::time::timeout(READINESS_TIMEOUT, state.slipway.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("no answer within 3 s".to_string()),
        }
    };
    let mlflow = async {
        state
            .slipway
            .mlflow
            .health()
            .await
            .map_err(|err| err.to_string())
    };
    let (database, mlflow) = tokio::join!(database, mlflow);
    let ready = database.is_ok() && mlflow.is_ok();
    let describe = |check: Result<(), String>| check.err().unwrap_or_else(|| "ok".to_string());
    let body = json!({
        "ready": ready,
        "database": describe(database),
        "mlflow": describe(mlflow),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}
