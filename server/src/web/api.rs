//! The REST API for pipelines and the CLI (`/api/v1`): JSON in and out, a
//! service token as `Authorization: Bearer …`, every call handed to the
//! same use-case services the pages use (one authorization, one audit
//! trail). The OpenAPI document is generated from these handlers: each is
//! registered with `routes!`, which takes its method and path from its own
//! `#[utoipa::path]`, so a route cannot be served undocumented (a test
//! also refuses any other way of adding one here).

use std::collections::BTreeMap;
use std::sync::Arc;

use app::access::{Grant, User};
use app::model::{
    AuditEntry, AuditQuery, DeploymentDetail, DeploymentForm, DeploymentSettings, DeploymentView,
    Experiment, ExperimentPage, Launch, LaunchForm, LaunchRequest, ListQuery, LoadTest,
    LoadTestRequest, ModelDetail, ModelsPage, NewRollout, Prediction, PromotionRequest, Rollout,
    RolloutCheck, RunDetail, RunQuery, RunsPage, TrafficRange, TrafficReport, VersionDetail,
};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::error::Error;
use crate::services::deployments::Saved;
use crate::services::promotions::{Expected, Promoted};
use crate::services::registry::{RegistryEdit, RegistryForm};
use crate::services::rollouts::Started;
use crate::services::tokens::Tokens;

pub const PREFIX: &str = "/api/v1";
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
pub const DOCS_PATH: &str = "/api/v1/docs";
/// The most audit entries one call returns.
const AUDIT_LIMIT: i64 = 10_000;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Slipway API",
        version = "1",
        description = "Everything the pages do, for pipelines and the `slipway` CLI. \
                       Send a service token (made on the Tokens page) as `Authorization: Bearer slp_…`. \
                       Errors are `{\"error\": {status, code, message, fields}}` with the pages' status codes: \
                       400 (with `fields`), 401, 403, 404, 409 (the state moved: look again), 502/503 (MLflow or the cluster)."
    ),
    modifiers(&BearerToken),
    security(("token" = [])),
    components(schemas(ApiErrorBody))
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API's routes and their document, from the same handlers.
pub fn routes() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(whoami))
        .routes(routes!(list_experiments))
        .routes(routes!(get_experiment))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(register_run_model))
        .routes(routes!(list_models))
        .routes(routes!(get_model))
        .routes(routes!(get_model_version))
        .routes(routes!(edit_registry))
        .routes(routes!(launch_catalog))
        .routes(routes!(list_launches, submit_launch))
        .routes(routes!(get_launch))
        .routes(routes!(cancel_launch))
        .routes(routes!(launch_events))
        .routes(routes!(list_deployments, create_deployment))
        .routes(routes!(
            get_deployment,
            update_deployment,
            delete_deployment
        ))
        .routes(routes!(deployment_settings))
        .routes(routes!(deployment_traffic))
        .routes(routes!(try_deployment))
        .routes(routes!(list_load_tests, start_load_test))
        .routes(routes!(get_load_test))
        .routes(routes!(cancel_load_test))
        .routes(routes!(promote))
        .routes(routes!(rollback))
        .routes(routes!(get_rollout, start_rollout))
        .routes(routes!(set_rollout_weight))
        .routes(routes!(promote_rollout))
        .routes(routes!(abort_rollout))
        .routes(routes!(rollout_checks))
        .routes(routes!(list_promotion_requests))
        .routes(routes!(get_promotion_request))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(search_audit))
        .split_for_parts()
}

/// The OpenAPI document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    routes().1
}

// ---- errors ----

/// Every error the API answers: the status again, a stable code, a
/// sentence for people, and each field's problem for 400s.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorBody {
    pub error: ApiErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorDetail {
    pub status: u16,
    /// `invalid`, `unauthenticated`, `forbidden`, `not_found`, `conflict`,
    /// `mlflow`, `unavailable`, `internal`, `no_such_route`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

pub struct ApiError(ApiErrorDetail);

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError(ApiErrorDetail {
            status: status.as_u16(),
            code: code.into(),
            message: message.into(),
            fields: BTreeMap::new(),
        })
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let fields = match &err {
            Error::Invalid(invalid) => invalid.fields.clone(),
            _ => BTreeMap::new(),
        };
        let shown = app::error::AppError::from(err);
        use app::error::AppError as E;
        let code = match &shown {
            E::InvalidInput(_) => "invalid",
            E::Unauthenticated => "unauthenticated",
            E::Forbidden(_) => "forbidden",
            E::NotFound(_) => "not_found",
            E::Conflict(_) => "conflict",
            E::Mlflow { .. } | E::MlflowUnreachable { .. } => "mlflow",
            E::Unavailable(_) => "unavailable",
            E::Internal { .. } | E::ServerFn(_) => "internal",
        };
        ApiError(ApiErrorDetail {
            status: shown.status(),
            code: code.into(),
            message: shown.to_string(),
            fields,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ApiErrorBody { error: self.0 })).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON body; one that does not read is a 400 in the API's error shape
/// (axum's own answer would be plain text).
struct Body<T>(T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                rejection.body_text(),
            )),
        }
    }
}

/// Query parameters, refused as `Body` is.
struct Params<T>(T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                rejection.body_text(),
            )),
        }
    }
}

/// What a route under `/api/v1` that does not exist answers: told apart
/// from a missing object's 404 by its code.
pub async fn no_such_route(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!(
            "No API route {} {}; the routes are listed at {OPENAPI_PATH}.",
            request.method(),
            request.uri().path()
        ),
    )
}

// ---- who is calling ----

/// Finds the caller from its bearer token; there are no sessions here, and
/// so nothing a browser sends by itself (no CSRF to guard against).
pub async fn bearer(
    State(tokens): State<Arc<Tokens>>,
    mut request: Request,
    next: Next,
) -> Response {
    let secret = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(secret) = secret else {
        return unauthenticated(
            "Send a service token: Authorization: Bearer slp_… (make one on the Tokens page).",
        );
    };
    match tokens.user_for(secret).await {
        Ok(Ok(user)) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        Ok(Err(refused)) => {
            tracing::warn!(path = request.uri().path(), reason = %refused.0, "API token refused");
            unauthenticated(&refused.0)
        }
        Err(err) => {
            let mut response = ApiError::from(err).into_response();
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    }
}

fn unauthenticated(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Who the token acts for, and what it may do.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Caller {
    pub name: String,
    pub token: Option<String>,
    pub grants: Vec<Grant>,
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "tokens",
    responses((status = 200, body = Caller), (status = 401, body = ApiErrorBody)))]
async fn whoami(Extension(user): Extension<User>) -> Json<Caller> {
    Json(Caller {
        name: user.name,
        token: user.token,
        grants: user.grants,
    })
}

// ---- experiments, runs, models ----

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Case-insensitive substring of the name.
    name_contains: Option<String>,
    /// `name`, `created` or `updated` (experiments); `name` or `updated` (models).
    order_by: Option<String>,
    #[serde(default)]
    descending: bool,
    /// The previous page's `next_page_token`.
    page_token: Option<String>,
    /// 1–1000; 100 when not given.
    page_size: Option<u32>,
}

impl From<ListParams> for ListQuery {
    fn from(params: ListParams) -> Self {
        ListQuery {
            name_contains: params.name_contains,
            order_by: params.order_by,
            descending: params.descending,
            page_token: params.page_token,
            page_size: params.page_size.unwrap_or(100),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/experiments", tag = "experiments", params(ListParams),
    responses((status = 200, body = ExperimentPage), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn list_experiments(
    State(state): State<AppState>,
    Params(params): Params<ListParams>,
) -> ApiResult<Json<ExperimentPage>> {
    Ok(Json(
        state
            .services
            .reads
            .search_experiments(params.into())
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/experiments/{id}", tag = "experiments",
    params(("id" = String, Path, description = "MLflow's experiment id")),
    responses((status = 200, body = Experiment), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn get_experiment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Experiment>> {
    Ok(Json(state.services.reads.get_experiment(id).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RunParams {
    /// MLflow's filter syntax: `metrics.auc > 0.9 AND params.optimizer = 'adam'`.
    filter: Option<String>,
    /// `run_name`, `start_time`, `end_time`, `status`, `user_id`, `params.<key>` or `metrics.<key>`.
    order_by: Option<String>,
    #[serde(default)]
    descending: bool,
    page_token: Option<String>,
    page_size: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/experiments/{id}/runs", tag = "experiments",
    params(("id" = String, Path, description = "MLflow's experiment id"), RunParams),
    responses((status = 200, body = RunsPage), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn list_runs(
    State(state): State<AppState>,
    Path(experiment_id): Path<String>,
    Params(params): Params<RunParams>,
) -> ApiResult<Json<RunsPage>> {
    let query = RunQuery {
        experiment_id,
        filter: params.filter,
        order_by: params.order_by,
        descending: params.descending,
        page_token: params.page_token,
        page_size: params.page_size.unwrap_or(100),
    };
    Ok(Json(state.services.reads.search_runs(query).await?))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "experiments",
    params(("id" = String, Path, description = "MLflow's run id")),
    responses((status = 200, body = RunDetail), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunDetail>> {
    Ok(Json(state.services.reads.get_run(id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
struct RegisterBody {
    /// The registered model (made if it does not exist).
    model: String,
    /// Which of the run's models: its artifact path (MLflow 2) or logged
    /// model id (MLflow 3), as the run lists them; empty: its only one.
    #[serde(default)]
    source: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub model: String,
    pub version: String,
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/register", tag = "models",
    params(("id" = String, Path, description = "MLflow's run id")), request_body = RegisterBody,
    responses((status = 201, body = Registered), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn register_run_model(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(run_id): Path<String>,
    Body(body): Body<RegisterBody>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    let source = if body.source.trim().is_empty() {
        only_model_of(&state, &run_id).await?
    } else {
        body.source
    };
    let version = state
        .services
        .registry
        .register_run_model(&user, &run_id, &source, &body.model)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            model: body.model.trim().to_string(),
            version,
        }),
    ))
}

/// The run's one model, for a register call that does not say which.
async fn only_model_of(state: &AppState, run_id: &str) -> ApiResult<String> {
    let run = state.services.reads.get_run(run_id.to_string()).await?;
    match run.registrable.as_slice() {
        [only] => Ok(only.source.clone()),
        [] => Err(Error::invalid(format!("run {run_id} logged no model to register")).into()),
        _ => Err(Error::invalid(format!(
            "run {run_id} logged several models; say which as source: {}",
            run.registrable
                .iter()
                .map(|model| model.source.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()),
    }
}

#[utoipa::path(get, path = "/api/v1/models", tag = "models", params(ListParams),
    responses((status = 200, body = ModelsPage), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn list_models(
    State(state): State<AppState>,
    Params(params): Params<ListParams>,
) -> ApiResult<Json<ModelsPage>> {
    Ok(Json(
        state.services.reads.search_models(params.into()).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/models/{name}", tag = "models",
    params(("name" = String, Path, description = "The registered model")),
    responses((status = 200, body = ModelDetail), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn get_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ModelDetail>> {
    Ok(Json(state.services.reads.get_model(name).await?))
}

#[utoipa::path(get, path = "/api/v1/models/{name}/versions/{version}", tag = "models",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = VersionDetail), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn get_model_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<VersionDetail>> {
    Ok(Json(
        state
            .services
            .reads
            .get_model_version(name, version)
            .await?,
    ))
}

/// One change of a registered model or one of its versions, as the model
/// page's forms send it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
struct RegistryChange {
    /// `set-alias`, `remove-alias`, `stage`, `describe`, `set-tag` or `delete-tag`.
    op: String,
    version: Option<String>,
    alias: Option<String>,
    /// `None`, `Staging`, `Production` or `Archived`.
    stage: Option<String>,
    archive_others: bool,
    description: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/models/{name}/changes", tag = "models",
    params(("name" = String, Path)), request_body = RegistryChange,
    responses((status = 204, description = "Changed in MLflow"), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn edit_registry(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(change): Body<RegistryChange>,
) -> ApiResult<StatusCode> {
    let form = RegistryForm {
        op: change.op,
        version: change.version,
        alias: change.alias,
        stage: change.stage,
        archive_others: change.archive_others.then(|| "on".to_string()),
        description: change.description,
        key: change.key,
        value: change.value,
    };
    let edit = RegistryEdit::from_form(&form)?;
    state.services.registry.edit(&user, &model, &edit).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- launches ----

#[utoipa::path(get, path = "/api/v1/catalog", tag = "launches",
    responses((status = 200, body = LaunchForm, description = "The projects, entry points with their parameters, and hardware profiles a launch may name"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn launch_catalog(State(state): State<AppState>) -> ApiResult<Json<LaunchForm>> {
    Ok(Json(state.services.reads.launch_form().await?))
}

#[utoipa::path(get, path = "/api/v1/launches", tag = "launches",
    responses((status = 200, body = Vec<Launch>, description = "Newest first"), (status = "4XX", body = ApiErrorBody)))]
async fn list_launches(State(state): State<AppState>) -> ApiResult<Json<Vec<Launch>>> {
    Ok(Json(state.services.reads.list_launches().await?))
}

#[utoipa::path(post, path = "/api/v1/launches", tag = "launches",
    request_body(content = LaunchRequest, description = "`submission` is an idempotency key (a retry with the same one gets the first launch; empty: always a new launch); `params` by name; `experiment_id` or `new_experiment`"),
    responses((status = 201, body = Launch), (status = 400, body = ApiErrorBody, description = "Each field's problem in `fields` (parameters as `param.<name>`)"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn submit_launch(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Body(mut request): Body<LaunchRequest>,
) -> ApiResult<(StatusCode, Json<Launch>)> {
    // `submission` is the idempotency key: a retry with the same one gets
    // the first launch. Without one, every call is a new launch.
    if request.submission.trim().is_empty() {
        request.submission = uuid::Uuid::new_v4().simple().to_string();
    }
    let launch = state.services.launches.submit(&user, &request).await?;
    Ok((StatusCode::CREATED, Json(launch)))
}

#[utoipa::path(get, path = "/api/v1/launches/{id}", tag = "launches",
    params(("id" = String, Path)),
    responses((status = 200, body = Launch), (status = "4XX", body = ApiErrorBody)))]
async fn get_launch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Launch>> {
    Ok(Json(state.services.launches.launch(&id).await?))
}

#[utoipa::path(post, path = "/api/v1/launches/{id}/cancel", tag = "launches",
    params(("id" = String, Path)),
    responses((status = 200, body = Launch), (status = 409, body = ApiErrorBody, description = "It has ended"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn cancel_launch(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> ApiResult<Json<Launch>> {
    state.services.launches.cancel(&user, &id).await?;
    Ok(Json(state.services.launches.launch(&id).await?))
}

#[utoipa::path(get, path = "/api/v1/launches/{id}/events", tag = "launches",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "Server-sent events: `reset`, then `status` (JSON: status, reason, run_id, updated_ms, finished_ms) whenever it changes, `log` chunks as the training writes them, and `end` once it has ended and its log is complete"),
        (status = 404, body = ApiErrorBody)))]
async fn launch_events(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if let Err(err) = state.services.launches.launch(&id).await {
        return ApiError::from(err).into_response();
    }
    match super::events::launch_events(State(state), Path(id)).await {
        Ok(events) => events.into_response(),
        Err(response) => response,
    }
}

// ---- deployments ----

#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments",
    responses((status = 200, body = Vec<DeploymentView>), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn list_deployments(State(state): State<AppState>) -> ApiResult<Json<Vec<DeploymentView>>> {
    Ok(Json(state.services.reads.list_deployments().await?))
}

#[utoipa::path(post, path = "/api/v1/deployments", tag = "deployments", request_body = DeploymentSettings,
    responses((status = 201, body = DeploymentDetail),
        (status = 202, body = PromotionRequest, description = "Held for a second person: the model requires approval and its marker already marks a version, or it turns approval off (its last deployment required it)"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn create_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Body(settings): Body<DeploymentSettings>,
) -> ApiResult<Response> {
    let saved = state.services.deployments.create(&user, &settings).await?;
    let model = settings.model.trim().to_string();
    saved_answer(&state, saved, StatusCode::CREATED, model).await
}

/// A deployment saved (`done` with its detail) or held for a second
/// person (202 with the request).
async fn saved_answer(
    state: &AppState,
    saved: Saved,
    done: StatusCode,
    model: String,
) -> ApiResult<Response> {
    Ok(match saved {
        Saved::Now => (
            done,
            Json(state.services.reads.get_deployment(model).await?),
        )
            .into_response(),
        Saved::Requested(id) => (
            StatusCode::ACCEPTED,
            Json(state.services.promotions.request(&id).await?),
        )
            .into_response(),
    })
}

#[utoipa::path(get, path = "/api/v1/deployments/{model}", tag = "deployments",
    params(("model" = String, Path)),
    responses((status = 200, body = DeploymentDetail, description = "State, history and pending requests"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn get_deployment(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> ApiResult<Json<DeploymentDetail>> {
    Ok(Json(state.services.reads.get_deployment(model).await?))
}

#[utoipa::path(get, path = "/api/v1/deployments/{model}/settings", tag = "deployments",
    params(("model" = String, Path)),
    responses((status = 200, body = DeploymentForm, description = "Its settings, with the `revision` a change or deletion must name"),
        (status = "4XX", body = ApiErrorBody)))]
async fn deployment_settings(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> ApiResult<Json<DeploymentForm>> {
    Ok(Json(state.services.deployments.form(Some(&model)).await?))
}

#[utoipa::path(put, path = "/api/v1/deployments/{model}", tag = "deployments",
    params(("model" = String, Path)), request_body = DeploymentSettings,
    responses((status = 200, body = DeploymentDetail),
        (status = 202, body = PromotionRequest, description = "Held for a second person: it turns approval off"),
        (status = 409, body = ApiErrorBody, description = "Changed by someone else since `revision`"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn update_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(settings): Body<DeploymentSettings>,
) -> ApiResult<Response> {
    let settings = DeploymentSettings {
        model: model.clone(),
        ..settings
    };
    let saved = state
        .services
        .deployments
        .update(&user, &model, &settings)
        .await?;
    saved_answer(&state, saved, StatusCode::OK, model).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteParams {
    /// The revision of the settings being deleted (from `/settings`).
    revision: String,
}

#[utoipa::path(delete, path = "/api/v1/deployments/{model}", tag = "deployments",
    params(("model" = String, Path), DeleteParams),
    responses((status = 204, description = "Deleted; the next pass stops what served it"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn delete_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Params(params): Params<DeleteParams>,
) -> ApiResult<StatusCode> {
    state
        .services
        .deployments
        .delete(&user, &model, &model, &params.revision)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
struct PromoteBody {
    version: String,
    /// Why this version should serve; recorded with the change.
    reason: String,
    /// The Production version the caller saw ("" for none): refused with
    /// 409 if it moved since. Not given: whatever it is now.
    #[serde(default)]
    expected_version: Option<String>,
}

/// What came of a promotion: done, or a request an approver decides.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PromotionOutcome {
    /// `promoted` or `requested`.
    pub outcome: String,
    pub version: String,
    /// The promotion request, when approval is required.
    pub request_id: Option<String>,
}

fn expected(version: Option<String>) -> Expected {
    match version {
        None => Expected::Any,
        Some(version) if version.is_empty() => Expected::Version(None),
        Some(version) => Expected::Version(Some(version)),
    }
}

#[utoipa::path(post, path = "/api/v1/deployments/{model}/promotions", tag = "deployments",
    params(("model" = String, Path)), request_body = PromoteBody,
    responses((status = 200, body = PromotionOutcome, description = "Production in MLflow; deploying now"),
        (status = 202, body = PromotionOutcome, description = "Approval required: a promotion request was made"),
        (status = 409, body = ApiErrorBody, description = "Production moved since `expected_version`"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn promote(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(body): Body<PromoteBody>,
) -> ApiResult<(StatusCode, Json<PromotionOutcome>)> {
    let promoted = state
        .services
        .promotions
        .promote(
            &user,
            &model,
            &body.version,
            &body.reason,
            expected(body.expected_version),
        )
        .await?;
    Ok(match promoted {
        Promoted::Now => (
            StatusCode::OK,
            Json(PromotionOutcome {
                outcome: "promoted".into(),
                version: body.version,
                request_id: None,
            }),
        ),
        Promoted::Requested(id) => (
            StatusCode::ACCEPTED,
            Json(PromotionOutcome {
                outcome: "requested".into(),
                version: body.version,
                request_id: Some(id),
            }),
        ),
    })
}

#[utoipa::path(get, path = "/api/v1/deployments/{model}/rollout", tag = "rollouts",
    params(("model" = String, Path)),
    responses((status = 200, body = Rollout, description = "The active rollout, else the newest one"),
        (status = 404, body = ApiErrorBody, description = "It never had one"), (status = "5XX", body = ApiErrorBody)))]
async fn get_rollout(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> ApiResult<Json<Rollout>> {
    Ok(Json(state.services.rollouts.newest(&model).await?))
}

#[utoipa::path(get, path = "/api/v1/deployments/{model}/rollout/checks", tag = "rollouts",
    params(("model" = String, Path)),
    responses((status = 200, body = Vec<RolloutCheck>, description = "The checks of the active rollout, else the newest one, newest first"),
        (status = 404, body = ApiErrorBody, description = "It never had one"), (status = "5XX", body = ApiErrorBody)))]
async fn rollout_checks(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> ApiResult<Json<Vec<RolloutCheck>>> {
    let rollouts = &state.services.rollouts;
    Ok(Json(
        rollouts.checks(&rollouts.newest(&model).await?).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/deployments/{model}/rollout", tag = "rollouts",
    params(("model" = String, Path)), request_body = NewRollout,
    responses((status = 201, body = Rollout, description = "The canary starts; it takes its share once it serves"),
        (status = 202, body = PromotionRequest, description = "The deployment requires approval: the canary waits for an approver (`reason` required)"),
        (status = 409, body = ApiErrorBody, description = "A rollout is under way already"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn start_rollout(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(body): Body<NewRollout>,
) -> ApiResult<Response> {
    Ok(
        match state.services.rollouts.start(&user, &model, body).await? {
            Started::Now(rollout) => (StatusCode::CREATED, Json(rollout)).into_response(),
            Started::Requested(id) => {
                let request = state.services.promotions.request(&id).await?;
                (StatusCode::ACCEPTED, Json(request)).into_response()
            }
        },
    )
}

#[derive(Debug, Deserialize, ToSchema)]
struct WeightBody {
    /// The canary's share of the requests, 1 to 99 %.
    weight: u8,
}

#[utoipa::path(put, path = "/api/v1/deployments/{model}/rollout/weight", tag = "rollouts",
    params(("model" = String, Path)), request_body = WeightBody,
    responses((status = 200, body = Rollout), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn set_rollout_weight(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(body): Body<WeightBody>,
) -> ApiResult<Json<Rollout>> {
    Ok(Json(
        state
            .services
            .rollouts
            .set_weight(&user, &model, body.weight)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
struct ReasonBody {
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/deployments/{model}/rollout/promote", tag = "rollouts",
    params(("model" = String, Path)), request_body = ReasonBody,
    responses((status = 200, body = Rollout, description = "Its version is Production in MLflow; the rollout succeeds once the stable side serves it"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn promote_rollout(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(body): Body<ReasonBody>,
) -> ApiResult<Json<Rollout>> {
    let rollouts = &state.services.rollouts;
    rollouts.promote(&user, &model, &body.reason).await?;
    Ok(Json(rollouts.newest(&model).await?))
}

#[utoipa::path(post, path = "/api/v1/deployments/{model}/rollout/abort", tag = "rollouts",
    params(("model" = String, Path)), request_body = ReasonBody,
    responses((status = 200, body = Rollout, description = "Aborted: every request to the stable version, the canary stopped"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn abort_rollout(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(body): Body<ReasonBody>,
) -> ApiResult<Json<Rollout>> {
    Ok(Json(
        state
            .services
            .rollouts
            .abort(&user, &model, &body.reason)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
struct RollbackBody {
    reason: String,
    #[serde(default)]
    expected_version: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolledBack {
    /// The version that is Production again.
    pub version: String,
}

#[utoipa::path(post, path = "/api/v1/deployments/{model}/rollback", tag = "deployments",
    params(("model" = String, Path)), request_body = RollbackBody,
    responses((status = 200, body = RolledBack), (status = 409, body = ApiErrorBody, description = "Production moved since `expected_version`"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn rollback(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(body): Body<RollbackBody>,
) -> ApiResult<Json<RolledBack>> {
    let version = state
        .services
        .promotions
        .rollback(&user, &model, &body.reason, expected(body.expected_version))
        .await?;
    Ok(Json(RolledBack { version }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TrafficParams {
    /// `1h` (the default), `24h` or `7d`.
    #[serde(default)]
    range: TrafficRange,
}

#[utoipa::path(get, path = "/api/v1/deployments/{model}/traffic", tag = "deployments",
    params(("model" = String, Path), TrafficParams),
    responses((status = 200, body = TrafficReport, description = "Requests, errors and latency by version over the range, and the changes of version in it"),
        (status = "4XX", body = ApiErrorBody)))]
async fn deployment_traffic(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Params(params): Params<TrafficParams>,
) -> ApiResult<Json<TrafficReport>> {
    Ok(Json(
        state
            .services
            .reads
            .get_traffic(model, params.range)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
struct TryBody {
    /// The request body for the model, as it takes it (JSON).
    input: String,
}

/// What the model answered, or why nothing did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Tried {
    pub prediction: Option<Prediction>,
    pub error: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/deployments/{model}/try", tag = "deployments",
    params(("model" = String, Path)), request_body = TryBody,
    responses((status = 200, body = Tried, description = "Sent to what serves the model (counted in its traffic); its answer"),
        (status = "4XX", body = ApiErrorBody)))]
async fn try_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(body): Body<TryBody>,
) -> ApiResult<Json<Tried>> {
    let id = state
        .services
        .deployments
        .try_it(&user, &model, body.input)
        .await?;
    let answer = state.services.reads.try_answer(&user, id).await?;
    Ok(Json(match answer.outcome {
        Ok(prediction) => Tried {
            prediction: Some(prediction),
            error: None,
        },
        Err(why) => Tried {
            prediction: None,
            error: Some(why),
        },
    }))
}

#[utoipa::path(get, path = "/api/v1/deployments/{model}/load-tests", tag = "load tests",
    params(("model" = String, Path)),
    responses((status = 200, body = Vec<LoadTest>, description = "Newest first"), (status = "4XX", body = ApiErrorBody)))]
async fn list_load_tests(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> ApiResult<Json<Vec<LoadTest>>> {
    Ok(Json(state.services.load_tests.of_deployment(&model).await?))
}

#[utoipa::path(post, path = "/api/v1/deployments/{model}/load-tests", tag = "load tests",
    params(("model" = String, Path)), request_body = LoadTestRequest,
    responses((status = 201, body = LoadTest, description = "Started; its numbers grow every second"),
        (status = 400, body = ApiErrorBody, description = "Each field's problem (over the caps, a body that is not JSON, a cluster deployment not confirmed)"),
        (status = 409, body = ApiErrorBody, description = "One is running already"),
        (status = "4XX", body = ApiErrorBody)))]
async fn start_load_test(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Body(request): Body<LoadTestRequest>,
) -> ApiResult<(StatusCode, Json<LoadTest>)> {
    let load_tests = &state.services.load_tests;
    let id = load_tests.start(&user, &model, &request).await?;
    Ok((StatusCode::CREATED, Json(load_tests.test(&id).await?)))
}

#[utoipa::path(get, path = "/api/v1/load-tests/{id}", tag = "load tests",
    params(("id" = String, Path)),
    responses((status = 200, body = LoadTest), (status = "4XX", body = ApiErrorBody)))]
async fn get_load_test(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<LoadTest>> {
    Ok(Json(state.services.load_tests.test(&id).await?))
}

#[utoipa::path(post, path = "/api/v1/load-tests/{id}/cancel", tag = "load tests",
    params(("id" = String, Path)),
    responses((status = 200, body = LoadTest), (status = 409, body = ApiErrorBody, description = "It has ended"),
        (status = "4XX", body = ApiErrorBody)))]
async fn cancel_load_test(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> ApiResult<Json<LoadTest>> {
    Ok(Json(state.services.load_tests.cancel(&user, &id).await?))
}

// ---- promotion requests ----

#[utoipa::path(get, path = "/api/v1/promotion-requests", tag = "approvals",
    responses((status = 200, body = Vec<PromotionRequest>, description = "Pending ones and recent decisions, newest first"),
        (status = "4XX", body = ApiErrorBody)))]
async fn list_promotion_requests(
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<PromotionRequest>>> {
    Ok(Json(state.services.reads.list_promotion_requests().await?))
}

#[utoipa::path(get, path = "/api/v1/promotion-requests/{id}", tag = "approvals",
    params(("id" = String, Path)),
    responses((status = 200, body = PromotionRequest), (status = "4XX", body = ApiErrorBody)))]
async fn get_promotion_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PromotionRequest>> {
    Ok(Json(state.services.promotions.request(&id).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
struct DecisionBody {
    comment: String,
}

#[utoipa::path(post, path = "/api/v1/promotion-requests/{id}/approve", tag = "approvals",
    params(("id" = String, Path)), request_body = DecisionBody,
    responses((status = 200, body = PromotionRequest, description = "Decided; `state` says whether it was carried out"),
        (status = 403, body = ApiErrorBody, description = "Not an approver for the model, or the requester"),
        (status = 409, body = ApiErrorBody, description = "Decided already"),
        (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn approve(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    Body(body): Body<DecisionBody>,
) -> ApiResult<Json<PromotionRequest>> {
    Ok(Json(
        state
            .services
            .promotions
            .approve(&user, &id, &body.comment, &*state.services.rollouts)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/promotion-requests/{id}/reject", tag = "approvals",
    params(("id" = String, Path)), request_body = DecisionBody,
    responses((status = 200, body = PromotionRequest), (status = "4XX", body = ApiErrorBody), (status = "5XX", body = ApiErrorBody)))]
async fn reject(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    Body(body): Body<DecisionBody>,
) -> ApiResult<Json<PromotionRequest>> {
    Ok(Json(
        state
            .services
            .promotions
            .reject(&user, &id, &body.comment)
            .await?,
    ))
}

// ---- audit ----

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
struct AuditParams {
    /// Who (an account name; a token's entries read `owner (token name)`).
    actor: String,
    /// One of the audit actions (`promote`, `approve`, `launch`, …).
    action: String,
    model: String,
    /// From this day (YYYY-MM-DD, UTC).
    from: String,
    /// Up to and including this day.
    to: String,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = Vec<AuditEntry>, description = "Newest first, at most 10,000"),
        (status = "4XX", body = ApiErrorBody)))]
async fn search_audit(
    State(state): State<AppState>,
    Params(params): Params<AuditParams>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let query = AuditQuery {
        actor: params.actor,
        action: params.action,
        model: params.model,
        from: params.from,
        to: params.to,
    };
    Ok(Json(
        state
            .services
            .reads
            .search_audit(query, AUDIT_LIMIT)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes added any other way than `routes!` would be served without
    /// being in the document.
    #[test]
    fn every_route_is_added_with_its_document() {
        let source = include_str!("api.rs");
        let added_otherwise = [".route(", ".nest(", ".merge(", "Router::new"];
        let code = source.split("#[cfg(test)]").next().unwrap();
        for pattern in added_otherwise {
            assert!(
                !code.contains(pattern),
                "{pattern} in the API module: add routes with routes!()"
            );
        }
    }

    #[test]
    fn the_document_names_each_operation_once_under_the_prefix() {
        let document = document();
        let mut operation_ids = Vec::new();
        for (path, item) in &document.paths.paths {
            assert!(path.starts_with(PREFIX), "{path}");
            let operations = [&item.get, &item.post, &item.put, &item.delete, &item.patch];
            for operation in operations.into_iter().flatten() {
                operation_ids.push(operation.operation_id.clone().unwrap_or_default());
            }
        }
        let count = operation_ids.len();
        operation_ids.sort();
        operation_ids.dedup();
        assert_eq!(operation_ids.len(), count, "operation ids repeat");
        assert!(count >= 35, "{count} operations");
        let json = document.to_json().unwrap();
        assert!(json.contains("\"openapi\":\"3.1.0\""), "{}", &json[..80]);
        assert!(json.contains("\"bearer\""));
    }
}
