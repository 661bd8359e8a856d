//! Slipway in process with a signed-in session per role, and requests as
//! each kind of caller sends them: anonymous, a role, or another site.
//! Every in-process test of the HTTP surface goes through it.

use std::collections::BTreeMap;

use app::access::Role;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use server::config::Config;
use server::services::Services;
use server::store::Store;
use server::{build_state, web::router};
use tower::ServiceExt;

use super::{config, mlflow_url, sign_in, trainer_catalog};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Signed(Role),
    /// An admin's browser, on another site's page.
    CrossSite(CrossSite),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossSite {
    /// A modern browser: `Sec-Fetch-Site: cross-site` and the other `Origin`.
    FetchMetadata,
    /// An older browser: only the other site's `Origin`.
    ForeignOrigin,
    /// Neither header (a script, a proxy that strips them): refused too.
    NoHeaders,
}

pub const CROSS_SITE: [Caller; 3] = [
    Caller::CrossSite(CrossSite::FetchMetadata),
    Caller::CrossSite(CrossSite::ForeignOrigin),
    Caller::CrossSite(CrossSite::NoHeaders),
];

pub fn everyone() -> Vec<Caller> {
    let mut callers = vec![Caller::Anonymous];
    callers.extend(Role::ALL.map(Caller::Signed));
    callers.extend(CROSS_SITE);
    callers
}

pub struct Site {
    pub router: Router,
    pub services: Services,
    pub store: Store,
    /// One account per role (named after it), signed in on first use.
    sessions: tokio::sync::Mutex<BTreeMap<Role, String>>,
    _data: tempfile::TempDir,
}

impl Site {
    /// Slipway in process on `config`.
    pub async fn start(config: Config, data: tempfile::TempDir) -> Self {
        let state = build_state(&config).await.unwrap();
        let services = state.services.clone();
        let store = state.store.clone();
        Self {
            router: router(state),
            services,
            store,
            sessions: tokio::sync::Mutex::default(),
            _data: data,
        }
    }

    /// Slipway in process on the MLflow at `mlflow_url`, with no catalog.
    pub async fn new(mlflow_url: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        Self::start(config(mlflow_url, data.path()), data).await
    }

    /// With a catalog holding the test trainer project and a `cpu` profile.
    pub async fn with_trainer() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut config = config(&mlflow_url(), data.path());
        config.catalog = Some(trainer_catalog(data.path(), ""));
        Self::start(config, data).await
    }

    /// The `Cookie` header of `role`'s session.
    pub async fn session(&self, role: Role) -> String {
        let mut sessions = self.sessions.lock().await;
        if let Some(cookie) = sessions.get(&role) {
            return cookie.clone();
        }
        let cookie = sign_in(&self.router, &self.store, role.as_str(), role).await;
        sessions.insert(role, cookie.clone());
        cookie
    }

    /// A form POST from Slipway's own page, as `role`.
    pub async fn post(
        &self,
        role: Role,
        uri: &str,
        fields: &[(&str, &str)],
    ) -> axum::response::Response {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(Caller::Signed(role), Method::POST, uri, &body)
            .await
    }

    pub async fn send(
        &self,
        caller: Caller,
        method: Method,
        uri: &str,
        body: &str,
    ) -> axum::response::Response {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "slipway.test")
            .header("content-type", "application/x-www-form-urlencoded");
        match caller {
            Caller::Anonymous => request = request.header("sec-fetch-site", "same-origin"),
            Caller::Signed(role) => {
                request = request
                    .header("cookie", self.session(role).await)
                    .header("sec-fetch-site", "same-origin")
            }
            Caller::CrossSite(kind) => {
                request = request.header("cookie", self.session(Role::Admin).await);
                request = match kind {
                    CrossSite::FetchMetadata => request
                        .header("sec-fetch-site", "cross-site")
                        .header("origin", "https://evil.example"),
                    CrossSite::ForeignOrigin => request.header("origin", "https://evil.example"),
                    CrossSite::NoHeaders => request,
                };
            }
        }
        self.router
            .clone()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap()
    }
}

impl Site {
    /// A request as an admin's browser on Slipway's own pages sends it.
    pub async fn request(
        &self,
        request: axum::http::request::Builder,
        body: Body,
    ) -> axum::response::Response {
        self.router
            .clone()
            .oneshot(
                request
                    .header("cookie", self.session(Role::Admin).await)
                    .header("sec-fetch-site", "same-origin")
                    .body(body)
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    /// An admin's form POST of this urlencoded body.
    pub async fn post_form(&self, uri: &str, body: String) -> axum::response::Response {
        self.request(
            Request::post(uri).header("content-type", "application/x-www-form-urlencoded"),
            Body::from(body),
        )
        .await
    }

    /// A page as an admin sees it: its status and HTML, without Leptos's
    /// hydration markers (`<!>`, empty comments): assertions are about
    /// what people read.
    pub async fn get(&self, uri: &str) -> (StatusCode, String) {
        let response = self.request(Request::get(uri), Body::empty()).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8(body.to_vec()).unwrap();
        (status, html.replace("<!>", ""))
    }
}

impl Site {
    /// The notice the page a form went back to shows `role` (the form's
    /// sender): the server keeps it, the URL names it.
    pub async fn notice(&self, role: Role, sent: &axum::response::Response) -> String {
        let page = location(sent);
        assert!(page.contains("notice="), "no notice in {page}");
        let shown = self
            .send(Caller::Signed(role), Method::GET, &page, "")
            .await;
        let body = shown.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8(body.to_vec()).unwrap().replace("<!>", "");
        let text = html
            .split("class=\"form-errors\"")
            .nth(1)
            .and_then(|rest| rest.split_once('>'))
            .and_then(|(_, rest)| rest.split("</p>").next())
            .unwrap_or_else(|| panic!("{page} shows no notice: {html}"));
        text.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }
}

pub fn location(response: &axum::response::Response) -> String {
    response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The callers a request let through, by what it answered: a refusal is
/// 401, 403 or the redirect to the sign-in page.
pub fn refused(response: &axum::response::Response) -> bool {
    matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) || location(response).starts_with("/login")
}
