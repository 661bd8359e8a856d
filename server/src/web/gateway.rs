//! The gateway: one stable address per locally served deployment,
//! `POST /serve/{model}/invocations`, passed on to the model server of the
//! version serving now (or a rollout's canary, for its share) and recorded (requests, errors by class, latency) by
//! deployment and version.
//!
//! It listens apart from the pages (`SLIPWAY_GATEWAY_LISTEN`, loopback by
//! default) and asks for no sign-in: it is for programs on this machine, as
//! the model servers behind it are. Try it and the load test call it too, so
//! their requests are counted like any other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::adapters::serving::local::{LocalServing, Routed};
use crate::traffic::Traffic;

/// The largest request body passed on (a batch of rows as JSON).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// A model that has not answered by then is reported as not answering.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Gateway {
    serving: Arc<LocalServing>,
    traffic: Arc<Traffic>,
    http: reqwest::Client,
}

impl Gateway {
    pub fn new(serving: Arc<LocalServing>, traffic: Arc<Traffic>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ANSWER_TIMEOUT)
            // Model servers are on this machine: no proxy in between.
            .no_proxy()
            .build()
            .expect("a plain HTTP client");
        Self {
            serving,
            traffic,
            http,
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            // The path app::routes::gateway_invocations builds.
            .route("/serve/{model}/invocations", post(invoke))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self)
    }
}

async fn invoke(
    State(gateway): State<Gateway>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    // A rollout's canary takes its share; each answer is recorded under
    // the version that gave it.
    let Routed {
        server,
        status,
        mirror,
    } = gateway.serving.route(&model);
    let content_type = headers.get(header::CONTENT_TYPE).cloned();
    if let Some(shadow) = mirror {
        // A copy for the shadow, answered on its own time; only its
        // numbers are kept.
        let (gateway, model, body, content_type) = (
            gateway.clone(),
            model.clone(),
            body.clone(),
            content_type.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let mut request = gateway
                .http
                .post(format!("http://127.0.0.1:{}/invocations", shadow.port))
                .body(body);
            if let Some(content_type) = content_type {
                request = request.header(header::CONTENT_TYPE, content_type);
            }
            let status = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Read to the end, so its time is the whole answer's.
                    if response.bytes().await.is_ok() {
                        status
                    } else {
                        502
                    }
                }
                Err(_) => 502,
            };
            gateway.traffic.record(
                &model,
                &shadow.version,
                status,
                started.elapsed().as_secs_f64(),
            );
        });
    }
    let Some(server) = server else {
        let why = if gateway.serving.models().contains(&model) {
            format!("{model} has no version serving yet: {}.", status.message)
        } else {
            format!("No deployment named {model} is served here (local serving).")
        };
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    };
    let mut request = gateway
        .http
        .post(format!("http://127.0.0.1:{}/invocations", server.port))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let answer = match request.send().await {
        Ok(response) => {
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            match response.bytes().await {
                Ok(body) => {
                    let mut answer = (status, body).into_response();
                    if let Some(content_type) = content_type {
                        answer
                            .headers_mut()
                            .insert(header::CONTENT_TYPE, content_type);
                    }
                    answer
                }
                Err(err) => not_answered(&model, &server.version, &err),
            }
        }
        Err(err) => not_answered(&model, &server.version, &err),
    };
    gateway.traffic.record(
        &model,
        &server.version,
        answer.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    answer
}

fn not_answered(model: &str, version: &str, err: &reqwest::Error) -> Response {
    let why = if err.is_timeout() {
        format!("no answer within {} s", ANSWER_TIMEOUT.as_secs())
    } else {
        "the connection failed".to_string()
    };
    (
        StatusCode::BAD_GATEWAY,
        format!("The model server of {model} v{version} did not answer: {why}."),
    )
        .into_response()
}
