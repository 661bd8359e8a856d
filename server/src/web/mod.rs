//! The HTTP edge: Leptos pages and server functions, the pages' POST forms,
//! a launch's live events and the downloads, all behind the gate; and the
//! operations endpoints (`/healthz`, `/readyz`, `/metrics`, MLflow's
//! webhook) that probes, scrapers and MLflow call without a session. What
//! a request may do is decided by the services it calls; here requests are
//! routed and decoded, and errors become answers (`errors`).

pub mod api;
pub mod errors;
pub mod events;
pub mod files;
pub mod forms;
pub mod gate;
pub mod gateway;
pub mod hosts;
pub mod ops;
pub mod port;
pub mod proxies;
pub mod sign_in;

use std::sync::{Arc, OnceLock};

use app::port::SharedControlPlane;
use app::{App, shell};
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use leptos::prelude::{LeptosOptions, provide_context};
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use leptos_router::SsrMode;
use tower_http::trace::TraceLayer;

use crate::adapters::mlflow::webhook::Verifier;
use crate::metrics::{self, Metrics};
use crate::services::Services;
use crate::store::Store;
use gate::Gate;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub services: Services,
    pub gate: Arc<Gate>,
    /// For the readiness probe.
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Set when MLflow webhooks are configured (`SLIPWAY_WEBHOOK_SECRET`).
    pub webhooks: Option<Verifier>,
    /// Set when git push webhooks are configured (`SLIPWAY_GIT_WEBHOOK_SECRET`).
    pub git_webhook_secret: Option<String>,
    /// Whether this replica runs the background work (for `/metrics`).
    pub leadership: crate::adapters::lease::Leadership,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

/// The app's pages, listed once per process. Listing them runs the app with
/// resource loads suppressed process-wide (a flag of leptos_server's), so a
/// page rendering at that moment would wait forever (leptos #4773): a second
/// router — another test's, in one test process — must never list again.
/// Every page is rendered whole before it is sent, not streamed out of
/// order: the HTML is complete without JavaScript, and islands hydrate what
/// is already there.
pub fn page_routes() -> &'static [AxumRouteListing] {
    static PAGES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    PAGES.get_or_init(|| {
        generate_route_list(App)
            .into_iter()
            .map(|route| {
                AxumRouteListing::new(
                    route.path().to_string(),
                    SsrMode::Async,
                    route.methods(),
                    [],
                )
            })
            .collect()
    })
}

pub fn router(state: AppState) -> Router {
    let control_plane: SharedControlPlane = Arc::new(port::Port(state.services.clone()));
    let leptos_options = state.leptos_options.clone();
    let pages = page_routes().to_vec();
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
        .route("/login", post(sign_in::login))
        .route("/logout", post(sign_in::logout))
        .route("/login/oidc", get(sign_in::begin_sso))
        .route("/login/oidc/callback", get(sign_in::finish_sso))
        .route("/launches", post(forms::submit_launch))
        .route("/launches/{id}/cancel", post(forms::cancel_launch))
        .route("/deployments", post(forms::create_deployment))
        .route(
            "/deployments/{model}/settings",
            post(forms::update_deployment),
        )
        .route(
            "/deployments/{model}/delete",
            post(forms::delete_deployment),
        )
        .route("/deployments/{model}/promote", post(forms::promote))
        .route("/deployments/{model}/rollback", post(forms::rollback))
        .route("/deployments/{model}/try", post(forms::send_try))
        .route("/deployments/{model}/canary", post(forms::start_canary))
        .route(
            "/deployments/{model}/canary/weight",
            post(forms::set_canary_weight),
        )
        .route(
            "/deployments/{model}/canary/promote",
            post(forms::promote_canary),
        )
        .route(
            "/deployments/{model}/canary/abort",
            post(forms::abort_canary),
        )
        .route(
            "/deployments/{model}/load-tests",
            post(forms::start_load_test),
        )
        .route(
            "/deployments/{model}/load-tests/{id}/cancel",
            post(forms::cancel_load_test),
        )
        .route("/audit.csv", get(files::export_audit_csv))
        .route("/audit.json", get(files::export_audit_json))
        .route("/models/{name}/edit", post(forms::edit_registry))
        .route("/runs/{id}/register", post(forms::register_run_model))
        .route("/runs/{id}/artifact/raw", get(files::artifact_file))
        .route("/approvals/{id}/approve", post(forms::approve))
        .route("/approvals/{id}/reject", post(forms::reject))
        .route("/tokens", post(forms::create_token))
        .route("/tokens/{id}/revoke", post(forms::revoke_token))
        .route("/notifications", post(forms::add_channel))
        .route("/notifications/{id}/delete", post(forms::delete_channel))
        .route("/api/launches/{id}/events", get(events::launch_events));

    // Everything people use passes the same three checks; the operations
    // endpoints below do not (probes, scrapers and MLflow have no session,
    // and name the pod's address as their host).
    let allowed_hosts = Arc::new(state.gate.settings.allowed_hosts.clone());
    let people = ui
        .merge(forms)
        .layer(from_fn_with_state(state.gate.clone(), gate::gate))
        .layer(from_fn_with_state(state.gate.clone(), gate::same_site))
        .layer(from_fn(refuse_large_bodies))
        .layer(from_fn(refuse_framing))
        .layer(from_fn_with_state(state.gate.clone(), strict_transport))
        .layer(from_fn(keep_no_copy))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost: a request for another host reaches none of the above.
        .layer(from_fn_with_state(
            allowed_hosts.clone(),
            hosts::allowed_host,
        ));

    // Pipelines and the CLI: a bearer token instead of a session, so none
    // of the browser's checks above (a token is never sent by itself).
    let (api_routes, api_document) = api::routes();
    let api = api_routes
        .route("/api/v1/{*rest}", any(api::no_such_route))
        .layer(from_fn_with_state(
            state.services.tokens.clone(),
            api::bearer,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    // The document and its reader are for people (and the CLI's docs link):
    // behind the session gate, like every page.
    let api_reference = Router::<AppState>::new()
        .merge(
            utoipa_swagger_ui::SwaggerUi::new(api::DOCS_PATH).url(api::OPENAPI_PATH, api_document),
        )
        .layer(from_fn_with_state(state.gate.clone(), gate::gate))
        .layer(from_fn_with_state(
            allowed_hosts.clone(),
            hosts::allowed_host,
        ));

    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::render_metrics))
        // MLflow calls this; the HMAC signature authenticates it, not the gate.
        .route("/webhooks/mlflow", post(ops::receive_webhook))
        // A git server calls this; its signature or token authenticates it.
        .route("/webhooks/git", post(ops::receive_git_push));

    people
        .merge(api_reference)
        .merge(api)
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

/// No other site may show Slipway's pages in a frame (clickjacking a
/// Promote or Approve button): both the old header and CSP's directive. An
/// answer that sets its own policy (an artifact's sandbox) keeps it.
async fn refuse_framing(request: Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::X_FRAME_OPTIONS)
        .or_insert(header::HeaderValue::from_static("DENY"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(header::HeaderValue::from_static("frame-ancestors 'none'"));
    response
}

/// Where people reach Slipway over https (`--external-url`), browsers
/// are told to come back only over https for a year (HSTS).
async fn strict_transport(
    axum::extract::State(gate): axum::extract::State<Arc<gate::Gate>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    if gate
        .settings
        .external_url
        .as_ref()
        .is_some_and(|url| url.scheme() == "https")
    {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// The tokens page may carry a new secret: no cache, shared or the
/// browser's, keeps a copy.
async fn keep_no_copy(request: Request, next: axum::middleware::Next) -> Response {
    let secret_page = request.uri().path() == app::routes::TOKENS;
    let mut response = next.run(request).await;
    if secret_page {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

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
