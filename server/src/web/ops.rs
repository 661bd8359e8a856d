//! What probes, scrapers, MLflow and git servers call, without a session:
//! liveness, readiness, metrics, MLflow's signed webhook deliveries, and
//! signed git pushes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::adapters::mlflow::webhook::{REPLAY_WINDOW_MS, Rejection};
use crate::metrics::Metrics;

const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

/// The process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready to serve pages: the database answers. MLflow's state is said in
/// the body (and on the pages) but does not count: with MLflow down every
/// replica would leave the Service, and nobody could see why.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = async {
        match tokio::time::timeout(READINESS_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "no answer within 3 s".to_string(),
        }
    };
    let mlflow = async {
        let health = state.services.reads.mlflow_health();
        match tokio::time::timeout(READINESS_TIMEOUT, health).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "no answer within 3 s".to_string(),
        }
    };
    let (database, mlflow) = tokio::join!(database, mlflow);
    let ready = database == "ok";
    let body = json!({
        "ready": ready,
        "database": database,
        "mlflow": mlflow,
        "replica": state.leadership.identity(),
        "leading": state.leadership.is_leading(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

pub async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// MLflow's webhook deliveries. Refused ones get 400 or 401 and a log line,
/// nothing else; accepted ones are recorded (their ids catch replays).
pub async fn receive_webhook(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(verifier) = &state.webhooks else {
        return (StatusCode::NOT_FOUND, "webhooks are not configured").into_response();
    };
    let now_secs = crate::store::now_ms() / 1000;
    let delivery = match verifier.verify(&headers, &body, now_secs) {
        Ok(delivery) => delivery,
        Err(rejection) => return refuse(rejection),
    };
    match state
        .services
        .deployments
        .mlflow_changed(&delivery, REPLAY_WINDOW_MS)
        .await
    {
        Ok(true) => {
            tracing::info!(
                delivery = %delivery.id,
                entity = %delivery.entity,
                action = %delivery.action,
                model = %delivery.model,
                "MLflow webhook accepted"
            );
            (StatusCode::OK, "accepted").into_response()
        }
        Ok(false) => refuse(Rejection::Replayed(delivery.id)),
        // MLflow retries on 5xx with the same id: nothing is lost.
        Err(err) => {
            let mut response = err.into_response();
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    }
}

fn refuse(rejection: Rejection) -> Response {
    tracing::warn!(reason = %rejection, "MLflow webhook refused");
    (rejection.status(), rejection.to_string()).into_response()
}

/// A git server's push: launches what the catalog names for that branch,
/// at the pushed commit. 401 unsigned or wrongly signed; 200 with nothing
/// launched for a push no project listens to; 202 with the launches.
pub async fn receive_git_push(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use crate::adapters::git::{PushRejected, verify_push};
    let Some(secret) = state.git_webhook_secret.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            "Git push webhooks are not configured here (SLIPWAY_GIT_WEBHOOK_SECRET).",
        )
            .into_response();
    };
    let push = match verify_push(&headers, &body, secret) {
        Ok(push) => push,
        Err(PushRejected::Unsigned(why)) => {
            tracing::warn!(reason = why, "refused a git push delivery");
            return (StatusCode::UNAUTHORIZED, format!("Refused: {why}.")).into_response();
        }
        Err(PushRejected::NotABranchPush(what)) => {
            return axum::Json(json!({ "launched": [], "ignored": what })).into_response();
        }
        Err(PushRejected::Unreadable(why)) => {
            return (StatusCode::BAD_REQUEST, format!("Not a push: {why}")).into_response();
        }
    };
    match state.services.launches.on_push(&push).await {
        Ok(launches) if launches.is_empty() => axum::Json(json!({
            "launched": [],
            "ignored": format!("no project launches on a push to {} of this repository", push.branch),
        }))
        .into_response(),
        Ok(launches) => {
            let ids: Vec<&str> = launches.iter().map(|launch| launch.id.as_str()).collect();
            tracing::info!(branch = %push.branch, commit = %push.commit, launches = ?ids, "git push launched");
            (StatusCode::ACCEPTED, axum::Json(json!({ "launched": ids }))).into_response()
        }
        Err(err) => err.into_response(),
    }
}
