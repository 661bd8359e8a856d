//! The HTTP surface: Leptos pages and server functions behind the auth gate,
//! plus the unauthenticated operations endpoints (`/healthz`, `/readyz`,
//! `/metrics`) that probes and scrapers call without credentials.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use app::port::SharedControlPlane;
use app::{App, shell};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use leptos::prelude::{LeptosOptions, provide_context};
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use leptos_router::SsrMode;
use serde_json::json;
use tower_http::trace::TraceLayer;

use app::error::AppError;
use app::model::{
    AUDIT_EXPORT_LIMIT, AuditEntry, AuditQuery, DeploymentForm, DeploymentSettings, LaunchRequest,
    LaunchUpdate, User,
};
use app::port::ControlPlane;
use axum::Extension;
use axum::extract::{Path, RawForm};
use axum::response::Redirect;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use crate::approvals::Promoted;
use crate::auth::{self, Auth, LoginRefused};
use crate::control::Slipway;
use crate::executor::LogStream;
use crate::launch::Submitted;
use crate::metrics::{self, Metrics};
use crate::registry::RegistryEdit;
use crate::serving::bindings::Saved;
use crate::serving::reconciler::Expected;
use crate::store::DraftForm;
use crate::webhook::{Rejection, Verifier};

const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub auth: Arc<Auth>,
    pub slipway: Arc<Slipway>,
    pub metrics: Arc<Metrics>,
    /// Set when MLflow webhooks are configured (`SLIPWAY_WEBHOOK_SECRET`).
    pub webhooks: Option<Verifier>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

pub fn router(state: AppState) -> Router {
    let control_plane: SharedControlPlane = state.slipway.clone();
    let leptos_options = state.leptos_options.clone();
    // Every page is rendered whole before it is sent, not streamed out of
    // order: the HTML is complete without JavaScript, and islands hydrate
    // what is already there.
    let pages = generate_route_list(App)
        .into_iter()
        .map(|route| {
            AxumRouteListing::new(
                route.path().to_string(),
                SsrMode::Async,
                route.methods(),
                [],
            )
        })
        .collect::<Vec<_>>();
    let ui = Router::new()
        .leptos_routes_with_context(
            &state,
            pages,
            move || provide_context(control_plane.clone()),
            move || shell(leptos_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell));

    let forms = Router::new()
        // A real redirect (a router-side one answers 200), so it works without JavaScript.
        .route("/", get(|| async { Redirect::to("/experiments") }))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/login/oidc", get(begin_sso))
        .route("/login/oidc/callback", get(finish_sso))
        .route("/launches", post(submit_launch))
        .route("/launches/{id}/cancel", post(cancel_launch))
        .route("/deployments", post(create_deployment))
        .route("/deployments/{model}/settings", post(update_deployment))
        .route("/deployments/{model}/delete", post(delete_deployment))
        .route("/deployments/{model}/promote", post(promote))
        .route("/deployments/{model}/rollback", post(rollback))
        .route("/deployments/{model}/try", post(send_try))
        .route("/audit.csv", get(export_audit_csv))
        .route("/audit.json", get(export_audit_json))
        .route("/models/{name}/edit", post(edit_registry))
        .route("/runs/{id}/register", post(register_run_model))
        .route("/runs/{id}/artifact/raw", get(artifact_file))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/reject", post(reject))
        .route("/api/launches/{id}/events", get(launch_events));

    // Everything people use passes the same three checks; the operations
    // endpoints below do not (probes, scrapers and MLflow have no session,
    // and name the pod's address as their host).
    let people = ui
        .merge(forms)
        .layer(from_fn_with_state(state.auth.clone(), auth::gate))
        .layer(from_fn_with_state(state.auth.clone(), auth::same_site))
        .layer(from_fn(refuse_large_bodies))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost: a request for another host reaches none of the above.
        .layer(from_fn_with_state(
            state.auth.clone(),
            auth::hosts::allowed_host,
        ));

    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        // MLflow calls this; the HMAC signature authenticates it, not the gate.
        .route("/webhooks/mlflow", post(receive_webhook));

    people
        .merge(ops)
        .layer(from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
            tracing::info_span!("request", method = %request.method(), route, path = request.uri().path())
        }))
        .with_state(state)
}

/// The largest body people send: a form, a server function's arguments,
/// a Try it body (at most 64 KiB, URL-encoded). Larger ones are refused
/// before any handler reads them.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Says plainly why a body that announces its size is too large (a body
/// without a length is cut off by `DefaultBodyLimit`).
async fn refuse_large_bodies(request: Request, next: axum::middleware::Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<usize>().ok());
    if announced.is_some_and(|length| length > MAX_BODY_BYTES) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Refused: the request is larger than {} KiB; nothing was saved. Shorten what you entered.",
                MAX_BODY_BYTES / 1024
            ),
        )
            .into_response();
    }
    next.run(request).await
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

/// The sign-in form's POST: a new session (any earlier one on this browser
/// ends), then the page asked for; a refusal goes back to the form.
async fn login(State(state): State<AppState>, request: Request) -> Response {
    let address = auth::peer_address(&request);
    let previous = auth::session_token(request.headers());
    let Ok(body) = axum::body::to_bytes(request.into_body(), 16 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.").into_response();
    };
    let (name, password, next) = (
        form_field(&body, "name"),
        form_field(&body, "password"),
        form_field(&body, "next"),
    );
    let target = auth::local_target(
        Some(&next)
            .filter(|next| !next.is_empty())
            .map(String::as_str),
    );
    let name = name.trim();
    let outcome = if name.is_empty() || password.is_empty() {
        Ok(Err(LoginRefused::Invalid))
    } else {
        state.auth.login(name, &password, address).await
    };
    match outcome {
        Ok(Ok(token)) => {
            if let Some(previous) = previous
                && let Err(err) = state.auth.logout(&previous).await
            {
                tracing::warn!(error = %err, "ending the session a sign-in replaces");
            }
            let mut response = Redirect::to(&target).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, state.auth.session_cookie(&token));
            response
        }
        Ok(Err(refused)) => {
            let reason = match refused {
                LoginRefused::Invalid => "invalid",
                LoginRefused::Throttled(_) => "throttled",
            };
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("error", reason)
                .append_pair("next", &target)
                .finish();
            Redirect::to(&format!("/login?{query}")).into_response()
        }
        Err(err) => {
            let shown = AppError::from(err);
            (StatusCode::SERVICE_UNAVAILABLE, shown.to_string()).into_response()
        }
    }
}

/// Off to the single sign-on provider.
async fn begin_sso(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
    let query = uri.query().unwrap_or_default();
    let next = form_field(query.as_bytes(), "next");
    match state.auth.begin_sso(&next).await {
        Ok((url, cookie)) => {
            let mut response = Redirect::to(url.as_str()).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "single sign-on could not start");
            Redirect::to("/login?error=sso").into_response()
        }
    }
}

/// Back from the provider: a session, or the sign-in page with an error
/// (the details go to the log, not into the URL).
async fn finish_sso(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let query = uri.query().unwrap_or_default().as_bytes();
    let (code, sso_state, error) = (
        form_field(query, "code"),
        form_field(query, "state"),
        form_field(query, "error"),
    );
    let outcome = if !error.is_empty() {
        Err(format!("the provider answered {error}"))
    } else {
        state.auth.finish_sso(&headers, &code, &sso_state).await
    };
    let mut response = match outcome {
        Ok((token, next)) => {
            let mut response = Redirect::to(&auth::local_target(Some(&next))).into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, state.auth.session_cookie(&token));
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "single sign-on failed");
            Redirect::to("/login?error=sso").into_response()
        }
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.auth.cleared_sso_cookie());
    response
}

async fn logout(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = auth::session_token(&headers)
        && let Err(err) = state.auth.logout(&token).await
    {
        let shown = AppError::from(err);
        return (StatusCode::SERVICE_UNAVAILABLE, shown.to_string()).into_response();
    }
    let mut response = Redirect::to("/login?signed_out=1").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.auth.cleared_cookie());
    response
}

/// The launch form's POST. A plain form, so it works the same before and
/// after hydration: launched (or launched before, by the same form) goes to
/// the launch's page; invalid goes back to the form as a draft kept on the
/// server (`/launch?draft=…`), where the page shows each field's error.
async fn submit_launch(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    RawForm(body): RawForm,
) -> Response {
    let request = LaunchRequest::from_pairs(url::form_urlencoded::parse(&body));
    match state.slipway.launcher.submit(&user, &request).await {
        Ok(Submitted::Launched(launch)) => {
            Redirect::to(&format!("/launches/{}", launch.id)).into_response()
        }
        // The values stay on the server: a URL of them could be megabytes.
        Ok(Submitted::Invalid(_)) => match state
            .slipway
            .store
            .insert_draft(&user.name, DraftForm::Launch, &request)
            .await
        {
            Ok(draft) => Redirect::to(&format!("/launch?draft={draft}")).into_response(),
            Err(err) => {
                let shown = AppError::from(err);
                (status_of(&shown), shown.to_string()).into_response()
            }
        },
        Err(err) => {
            let shown = AppError::from(err);
            (status_of(&shown), shown.to_string()).into_response()
        }
    }
}

/// The HTTP status that goes with an error shown to a user.
pub fn status_of(error: &AppError) -> StatusCode {
    StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The cancel button's POST; back to the launch's page either way, with
/// the reason as a notice when it could not be cancelled.
async fn cancel_launch(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Response {
    let outcome = state.slipway.launcher.cancel(&user, &id).await;
    back_to(format!("/launches/{}", path_segment(&id)), outcome.err())
}

/// The promotion's confirm button: makes the version Production in MLflow and
/// deploys it at once; back to the deployment's page, with a notice on error.
async fn promote(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let version = form_field(&body, "version");
    let reason = form_field(&body, "reason");
    let page = format!("/deployments/{}", path_segment(&model));
    match state
        .slipway
        .promote_or_request(&user, &model, &version, &reason, expected_version(&body))
        .await
    {
        Ok(Promoted::Now) => back_to(page, None),
        Ok(Promoted::Requested(id)) => back_to(format!("/approvals/{id}"), None),
        // Back to the confirm step, which keeps the version.
        Err(err @ AppError::InvalidInput(_)) => back_to(
            format!("{page}/promote?version={}", path_segment(&version)),
            Some(err),
        ),
        Err(err) => back_to(page, Some(err)),
    }
}

/// The new deployment form's POST: to the deployment's page once created;
/// invalid, back to the form as a draft kept on the server.
async fn create_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    RawForm(body): RawForm,
) -> Response {
    let settings = DeploymentSettings::from_pairs(url::form_urlencoded::parse(&body));
    let outcome = state
        .slipway
        .reconciler
        .create_deployment(&user, &settings)
        .await;
    let page = deployment_page(settings.model.trim());
    after_settings(
        &state,
        &user,
        outcome,
        settings,
        false,
        page,
        NEW_DEPLOYMENT.into(),
    )
    .await
}

const NEW_DEPLOYMENT: &str = "/new-deployment";

/// The deployment settings form's POST; as `create_deployment`.
async fn update_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let settings = DeploymentSettings {
        model: model.clone(),
        ..DeploymentSettings::from_pairs(url::form_urlencoded::parse(&body))
    };
    let outcome = state
        .slipway
        .reconciler
        .update_deployment(&user, &model, &settings)
        .await;
    let page = deployment_page(&model);
    let form = format!("{page}/settings");
    after_settings(&state, &user, outcome, settings, true, page, form).await
}

/// Saved: the deployment's page. Invalid: the form again, its values kept
/// as a draft. Refused: the form, with why.
async fn after_settings(
    state: &AppState,
    user: &User,
    outcome: Result<Saved, AppError>,
    settings: DeploymentSettings,
    exists: bool,
    page: String,
    form: String,
) -> Response {
    match outcome {
        Ok(Saved::Done) => Redirect::to(&page).into_response(),
        Ok(Saved::Invalid(_)) => {
            let draft = DeploymentForm {
                settings,
                exists,
                ..DeploymentForm::default()
            };
            match state
                .slipway
                .store
                .insert_draft(&user.name, DraftForm::Deployment, &draft)
                .await
            {
                Ok(id) => Redirect::to(&format!("{form}?draft={id}")).into_response(),
                Err(err) => back_to(form, Some(AppError::from(err))),
            }
        }
        Err(err) => back_to(form, Some(err)),
    }
}

/// The delete button on a deployment's settings: the model's name typed
/// again confirms it. Then the deployments list; the next pass stops what
/// served it.
async fn delete_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let form = format!("{}/settings", deployment_page(&model));
    if form_field(&body, "confirm").trim() != model {
        let why = format!("Type {model} to confirm the deletion; nothing was deleted.");
        return back_to(form, Some(AppError::InvalidInput(why)));
    }
    let revision = form_field(&body, "revision");
    match state
        .slipway
        .reconciler
        .delete_deployment(&user, &model, &revision)
        .await
    {
        Ok(()) => Redirect::to("/deployments").into_response(),
        Err(err) => back_to(form, Some(err)),
    }
}

fn version_page(model: &str, version: &str) -> String {
    format!(
        "/models/{}/versions/{}",
        path_segment(model),
        path_segment(version)
    )
}

fn deployment_page(model: &str) -> String {
    format!("/deployments/{}", path_segment(model))
}

/// The model and version pages' registry forms: back to the page the form
/// was on, with MLflow's or Slipway's refusal as its notice.
async fn edit_registry(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let version = form_field(&body, "version");
    let page = if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
        version_page(&model, &version)
    } else {
        format!("/models/{}", path_segment(&model))
    };
    let outcome = match RegistryEdit::from_form(url::form_urlencoded::parse(&body)) {
        Ok(edit) => state.slipway.edit_registry(&user, &model, &edit).await,
        Err(err) => Err(err),
    };
    back_to(page, outcome.err())
}

#[derive(serde::Deserialize)]
struct ArtifactQuery {
    path: String,
    /// A logged model's id: its file, not the run's.
    model: Option<String>,
    /// Sent as a file to save, whatever it is.
    #[serde(default)]
    download: Option<String>,
}

/// One artifact file, streamed from MLflow as it comes. Only text and
/// raster images are shown in place, and always sandboxed (no script, no
/// plugins): an artifact is anyone's upload, not Slipway's page.
async fn artifact_file(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<ArtifactQuery>,
) -> Response {
    let path = match crate::artifacts::checked_path(&query.path) {
        Ok(path) => path,
        Err(err) => return (status_of(&err), err.to_string()).into_response(),
    };
    let owner = crate::artifacts::owner_of(&run_id, query.model.as_deref());
    let file = match state.slipway.mlflow.open_artifact(&owner, path).await {
        Ok(file) => file,
        Err(err) => {
            let err = AppError::from(err);
            return (status_of(&err), err.to_string()).into_response();
        }
    };
    let (content_type, inline) = crate::artifacts::FileKind::of(path).served_as();
    let name = path.rsplit('/').next().unwrap_or(path);
    let encoded: String = percent_encoding::utf8_percent_encode(name, PATH_SEGMENT).to_string();
    let disposition = if inline && query.download.is_none() {
        format!("inline; filename*=UTF-8''{encoded}")
    } else {
        format!("attachment; filename*=UTF-8''{encoded}")
    };
    let mut headers = vec![
        (header::CONTENT_TYPE, content_type.to_string()),
        (header::CONTENT_DISPOSITION, disposition),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
                .to_string(),
        ),
    ];
    if let Some(length) = file.content_length() {
        headers.push((header::CONTENT_LENGTH, length.to_string()));
    }
    let mut response = axum::body::Body::from_stream(file.bytes_stream()).into_response();
    for (name, value) in headers {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The run page's "Register model": to the new version's page.
async fn register_run_model(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(run_id): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let model = form_field(&body, "model");
    let source = form_field(&body, "source");
    match state
        .slipway
        .register_run_model(&user, &run_id, &source, &model)
        .await
    {
        Ok(version) => back_to(version_page(model.trim(), &version), None),
        Err(err) => back_to(format!("/runs/{}", path_segment(&run_id)), Some(err)),
    }
}

/// An approver's decision on a promotion request; back to the request's page.
async fn approve(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let comment = form_field(&body, "comment");
    let outcome = state.slipway.approve(&user, &id, &comment).await;
    back_to(format!("/approvals/{}", path_segment(&id)), outcome.err())
}

async fn reject(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let comment = form_field(&body, "comment");
    let outcome = state.slipway.reject(&user, &id, &comment).await;
    back_to(format!("/approvals/{}", path_segment(&id)), outcome.err())
}

/// The audit log as the page's filters select it, as CSV or JSON.
async fn export_audit(
    state: &AppState,
    user: &User,
    query: Option<&str>,
) -> Result<Vec<AuditEntry>, Response> {
    let query = AuditQuery::from_pairs(url::form_urlencoded::parse(
        query.unwrap_or_default().as_bytes(),
    ));
    state
        .slipway
        .search_audit(user, query, AUDIT_EXPORT_LIMIT)
        .await
        .map_err(|err| (status_of(&err), err.to_string()).into_response())
}

async fn export_audit_csv(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    uri: axum::http::Uri,
) -> Response {
    let entries = match export_audit(&state, &user, uri.query()).await {
        Ok(entries) => entries,
        Err(response) => return response,
    };
    let mut csv = String::from("time,actor,action,subject,detail,outcome\r\n");
    for entry in entries {
        let time = chrono::DateTime::from_timestamp_millis(entry.at_ms)
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        let cells = [
            time,
            entry.actor,
            entry.action,
            entry.subject,
            entry.detail,
            entry.outcome,
        ];
        let row: Vec<String> = cells.iter().map(|cell| csv_cell(cell)).collect();
        csv.push_str(&row.join(","));
        csv.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"slipway-audit.csv\"",
            ),
        ],
        csv,
    )
        .into_response()
}

async fn export_audit_json(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    uri: axum::http::Uri,
) -> Response {
    match export_audit(&state, &user, uri.query()).await {
        Ok(entries) => (
            [(
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"slipway-audit.json\"",
            )],
            axum::Json(entries),
        )
            .into_response(),
        Err(response) => response,
    }
}

/// One CSV cell: quoted when it must be, and never read as a formula by a
/// spreadsheet (a leading `=`, `+`, `-` or `@` gets a `'` in front).
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// One field of a urlencoded form; empty when missing.
/// The Production version the person saw when they sent the form
/// (`expected_version`, empty for "nothing"); any, if the form does not say.
fn expected_version(body: &[u8]) -> Expected {
    match url::form_urlencoded::parse(body).find(|(key, _)| key == "expected_version") {
        None => Expected::Any,
        Some((_, version)) if version.is_empty() => Expected::Version(None),
        Some((_, version)) => Expected::Version(Some(version.into_owned())),
    }
}

fn form_field(body: &[u8], name: &str) -> String {
    url::form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// The Try it panel's POST: sends the body to what serves the model, then
/// to the deployment's page, which shows the answer.
async fn send_try(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let page = format!("/deployments/{}", path_segment(&model));
    let input = form_field(&body, "input");
    match state.slipway.send_try(&user, &model, input).await {
        Ok(answer) => Redirect::to(&format!("{page}?answer={answer}")).into_response(),
        Err(err) => back_to(page, Some(err)),
    }
}

async fn rollback(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    let outcome = state
        .slipway
        .reconciler
        .rollback(&user, &model, expected_version(&body))
        .await;
    back_to(
        format!("/deployments/{}", path_segment(&model)),
        outcome.err(),
    )
}

/// What a path segment must escape: everything but unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn path_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

const MAX_NOTICE_CHARS: usize = 300;

/// Back to `page`, with the error (if any) as its `notice`.
fn back_to(page: String, error: Option<AppError>) -> Response {
    match error {
        None => Redirect::to(&page).into_response(),
        // The page hides what the role does not allow, so this is a stale
        // page or a hand-made request: a plain refusal.
        Some(err @ (AppError::Forbidden(_) | AppError::Unauthenticated)) => {
            (status_of(&err), err.to_string()).into_response()
        }
        Some(err) => {
            // Errors may quote what was sent: the notice stays short.
            let mut message = err.to_string();
            if let Some((cut, _)) = message.char_indices().nth(MAX_NOTICE_CHARS) {
                message.truncate(cut);
                message.push('…');
            }
            let notice: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
            let joint = if page.contains('?') { '&' } else { '?' };
            Redirect::to(&format!("{page}{joint}notice={notice}")).into_response()
        }
    }
}

/// Server-sent events for one launch: `reset`, then `status` (JSON
/// `LaunchUpdate`) whenever it changes and `log` chunks as the training
/// writes them, then `end` once it has ended and its log is complete.
async fn launch_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    let launcher = state.slipway.launcher.clone();
    let launch = launcher
        .launch(&id)
        .await
        .map_err(|err| (StatusCode::NOT_FOUND, err.to_string()).into_response())?;
    let mut changes = launcher.subscribe();
    let events = async_stream::stream! {
        yield Ok(Event::default().event("reset").data(""));
        let mut shown: Option<LaunchUpdate> = None;
        let mut logs: Option<LogStream> = None;
        let mut logs_done = false;
        // Whether the open log stream has given anything yet. A pod that has
        // not started, or a process not yet spawned, gives an empty stream:
        // that one is tried again later instead of ending the logs.
        let mut log_output = false;
        let mut reopen_at: Option<Instant> = None;
        let mut opened_after_end = false;
        // Bytes of log already sent: a reopened stream starts from the
        // beginning again, and that much of it is skipped.
        let mut delivered = 0usize;
        let mut skip = 0usize;
        // A log source that fails (a node that does not answer, a pod
        // between restarts) is retried while the training runs; each
        // distinct error is shown once.
        let mut last_error: Option<String> = None;
        let mut launch = launch;
        loop {
            let update = launch.update();
            if shown.as_ref() != Some(&update) {
                yield Ok(json_event("status", &update));
                shown = Some(update);
            }
            let may_open = reopen_at.is_none_or(|at| Instant::now() >= at);
            if logs.is_none() && !logs_done && may_open && launch.executor_ref.is_some() {
                opened_after_end = launch.status.is_terminal();
                log_output = false;
                skip = delivered;
                match launcher.logs(&launch).await {
                    Ok(stream) => logs = Some(stream),
                    Err(err) => {
                        let err = err.to_string();
                        if last_error.as_ref() != Some(&err) {
                            yield Ok(Event::default().event("log").data(format!("[slipway] no logs yet: {err}\n")));
                            last_error = Some(err);
                        }
                        logs_done = opened_after_end;
                        reopen_at = Some(Instant::now() + LOG_RETRY);
                    }
                }
            }
            if launch.executor_ref.is_none() && launch.status.is_terminal() {
                logs_done = true;
            }
            if launch.status.is_terminal() && logs_done {
                yield Ok(Event::default().event("end").data(""));
                break;
            }
            let woke = tokio::select! {
                _ = changes.changed() => Woke::Changed,
                chunk = next_chunk(&mut logs) => Woke::Log(chunk),
                // Another replica may have changed it.
                _ = tokio::time::sleep(LAUNCH_RECHECK) => Woke::Changed,
            };
            match woke {
                Woke::Log(Some(Ok(text))) => {
                    log_output = true;
                    let fresh = unseen_part(&text, &mut skip);
                    if !fresh.is_empty() {
                        delivered += fresh.len();
                        yield Ok(Event::default().event("log").data(fresh));
                    }
                    continue;
                }
                Woke::Log(Some(Err(err))) => {
                    let err = err.to_string();
                    if last_error.as_ref() != Some(&err) {
                        yield Ok(Event::default().event("log").data(format!("[slipway] {err}; retrying\n")));
                        last_error = Some(err);
                    }
                    logs = None;
                    logs_done = launch.status.is_terminal();
                    reopen_at = Some(Instant::now() + LOG_RETRY);
                }
                Woke::Log(None) => {
                    logs = None;
                    if log_output || opened_after_end {
                        logs_done = true;
                    } else {
                        reopen_at = Some(Instant::now() + LAUNCH_RECHECK);
                    }
                }
                Woke::Changed => {}
            }
            match launcher.launch(&id).await {
                Ok(current) => launch = current,
                Err(err) => {
                    yield Ok(Event::default().event("log").data(format!("[slipway] {err}\n")));
                    break;
                }
            }
        }
    };
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// How often a live launch page re-reads the launch even without news.
const LAUNCH_RECHECK: Duration = Duration::from_secs(1);
/// How long a failed log source rests before it is asked again.
const LOG_RETRY: Duration = Duration::from_secs(3);

/// The part of `text` past the first `skip` bytes still to skip (a
/// reopened log repeats what was sent before).
fn unseen_part(text: &str, skip: &mut usize) -> String {
    let cut = (*skip).min(text.len());
    *skip -= cut;
    // The repeated prefix is the same text, so `cut` falls on a character
    // boundary unless the source changed under us; then send it whole.
    text.get(cut..).unwrap_or(text).to_string()
}

enum Woke {
    Changed,
    Log(Option<crate::error::Result<String>>),
}

async fn next_chunk(logs: &mut Option<LogStream>) -> Option<crate::error::Result<String>> {
    match logs {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .expect("plain data serialises")
}

/// MLflow's webhook deliveries. Refused ones get 400 or 401 and a log line,
/// nothing else; accepted ones are recorded (their ids catch replays).
async fn receive_webhook(
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
    match state.slipway.store.record_delivery(&delivery).await {
        Ok(true) => {
            state.slipway.mlflow.forget_reads();
            state
                .slipway
                .reconciler
                .trigger(crate::serving::reconciler::Trigger::new(
                    "webhook", "mlflow",
                ));
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
            let shown = AppError::from(err);
            (StatusCode::SERVICE_UNAVAILABLE, shown.to_string()).into_response()
        }
    }
}

fn refuse(rejection: Rejection) -> Response {
    tracing::warn!(reason = %rejection, "MLflow webhook refused");
    (rejection.status(), rejection.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::unseen_part;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(super::csv_cell("plain"), "plain");
        assert_eq!(super::csv_cell("a,b"), "\"a,b\"");
        assert_eq!(super::csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(
            super::csv_cell("=HYPERLINK(\"x\")"),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(super::csv_cell("-1"), "'-1");
    }

    #[test]
    fn a_reopened_log_skips_what_was_sent_before() {
        // 5 bytes were sent before the stream broke; it starts over.
        let mut skip = 5;
        assert_eq!(unseen_part("épo", &mut skip), "");
        assert_eq!(skip, 1);
        assert_eq!(unseen_part("ch 1\nepoch 2\n", &mut skip), "h 1\nepoch 2\n");
        assert_eq!(skip, 0);
        assert_eq!(unseen_part("epoch 3\n", &mut skip), "epoch 3\n");
    }
}
