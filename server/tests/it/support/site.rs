//! Slipway in process with a signed-in session per role, and requests as
//! each kind of caller sends them: anonymous, a role, or another site.

use std::collections::BTreeMap;

use app::access::Role;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use server::config::Config;
use server::services::Services;
use server::store::Store;
use server::{build_state, web::router};
use tower::ServiceExt;

use super::sign_in;

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
    sessions: BTreeMap<Role, String>,
    _data: tempfile::TempDir,
}

impl Site {
    /// Slipway in process on `config`, with one signed-in account per role
    /// (named after it).
    pub async fn start(config: Config, data: tempfile::TempDir) -> Self {
        let state = build_state(&config).await.unwrap();
        let services = state.services.clone();
        let store = state.store.clone();
        let router = router(state);
        let mut sessions = BTreeMap::new();
        for role in Role::ALL {
            sessions.insert(role, sign_in(&router, &store, role.as_str(), role).await);
        }
        Self {
            router,
            services,
            store,
            sessions,
            _data: data,
        }
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
                    .header("cookie", &self.sessions[&role])
                    .header("sec-fetch-site", "same-origin")
            }
            Caller::CrossSite(kind) => {
                request = request.header("cookie", &self.sessions[&Role::Admin]);
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
