//! Who is calling, and whether the call may come from where it comes from.
//!
//! - `same_site` refuses every state-changing request that a browser did not
//!   send from Slipway's own pages (fail closed: no `Sec-Fetch-Site` and no
//!   `Origin` is refused too).
//! - `gate` finds the caller's session and puts the `User` into the
//!   request's extensions, where handlers and `app::port::current_user`
//!   find it; without a session only the sign-in page and static files are
//!   served.
//! - What a signed-in user may do is decided in `app::access::authorize`,
//!   by the use-case services.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use app::access::User;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use url::Url;

use super::hosts::AllowedHosts;
use super::proxies::TrustedProxies;
use crate::services::accounts::{Accounts, Session};

pub const SESSION_COOKIE: &str = "slipway_session";
const SSO_COOKIE: &str = "slipway_oidc";

/// Where people reach Slipway, as configured.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// The URL people open Slipway at (`--external-url`): state-changing
    /// requests must come from this origin, and cookies are `Secure` when it
    /// is https. Without it the request's own `Host` is the origin.
    pub external_url: Option<Url>,
    /// The host names requests may name (`--allowed-hosts`, `--external-url`).
    pub allowed_hosts: AllowedHosts,
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxies`).
    pub trusted_proxies: TrustedProxies,
}

pub struct Gate {
    pub accounts: Arc<Accounts>,
    pub settings: GateSettings,
}

impl Gate {
    pub fn session_cookie(&self, token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{}",
            self.secure_attribute()
        ))
        .expect("a base64url token is a valid header value")
    }

    pub fn cleared_cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            self.secure_attribute()
        ))
        .expect("a plain header value")
    }

    /// The cookie that binds a single sign-on to the browser that began it.
    pub fn sso_cookie(&self, state: &str) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "{SSO_COOKIE}={state}; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age=600{}",
            self.secure_attribute()
        ))
        .ok()
    }

    pub fn cleared_sso_cookie(&self) -> HeaderValue {
        HeaderValue::from_static(
            "slipway_oidc=; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age=0",
        )
    }

    fn secure_attribute(&self) -> &'static str {
        match &self.settings.external_url {
            Some(url) if url.scheme() == "https" => "; Secure",
            _ => "",
        }
    }

    /// Slipway's own origin as a browser names it in `Origin`.
    fn own_origin(&self, headers: &HeaderMap) -> Option<String> {
        match &self.settings.external_url {
            Some(url) => Some(url.origin().ascii_serialization()),
            None => headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .map(|host| format!("http://{host}")),
        }
    }
}

/// The session token from the request's cookies.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The state of the single sign-on this browser began.
pub fn sso_state(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SSO_COOKIE)
}

fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// The client's address: the peer's (when the server was started with
/// connect info), or behind a trusted proxy the one it forwards for.
pub fn client_address(request: &Request, proxies: &TrustedProxies) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    proxies.client(peer, request.headers())
}

/// Paths served without a session: the sign-in page and what it needs.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/login" | "/login/oidc" | "/login/oidc/callback" | "/api/login_options"
    ) || is_static(path)
}

/// The same files for everyone: no session is looked up for them.
fn is_static(path: &str) -> bool {
    path == "/favicon.svg" || path.starts_with("/pkg/")
}

pub async fn gate(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    if is_static(request.uri().path()) {
        request.extensions_mut().insert(User::anonymous());
        return next.run(request).await;
    }
    let session = match session_token(request.headers()) {
        None => Session::Unknown,
        Some(token) => match gate.accounts.session(&token).await {
            Ok(session) => session,
            Err(err) => {
                let mut response = err.into_response();
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return response;
            }
        },
    };
    let path = request.uri().path();
    let (user, renew_at_provider) = match session {
        Session::Open(user) => (Some(user), false),
        Session::Ended { single_sign_on } => (None, single_sign_on),
        Session::Unknown => (None, false),
    };
    if user.is_none() && !is_public(path) {
        return sign_in_first(&request, renew_at_provider);
    }
    request
        .extensions_mut()
        .insert(user.unwrap_or_else(User::anonymous));
    next.run(request).await
}

/// API calls get 401; a browser goes to the sign-in page, and back to the
/// page it asked for afterwards. A page whose single sign-on session just
/// ran out goes through the provider instead, which reads the person's
/// groups anew.
fn sign_in_first(request: &Request, renew_at_provider: bool) -> Response {
    let path = request.uri().path();
    if path.starts_with("/api/") && !path.starts_with(super::api::DOCS_PATH) {
        return (StatusCode::UNAUTHORIZED, "Sign in first.").into_response();
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Redirect::to("/login").into_response();
    }
    let wanted = request
        .uri()
        .path_and_query()
        .map(|target| target.as_str())
        .unwrap_or("/");
    let next: String = url::form_urlencoded::byte_serialize(wanted.as_bytes()).collect();
    if renew_at_provider {
        return Redirect::to(&format!("/login/oidc?next={next}")).into_response();
    }
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// Every request that can change something (anything but GET, HEAD and
/// OPTIONS) must come from Slipway's own pages: `Sec-Fetch-Site:
/// same-origin`, or, from a browser that does not send that, an `Origin`
/// equal to Slipway's own. A request with neither is refused: only a
/// browser on Slipway's pages holds the session cookie anyway.
pub async fn same_site(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    let allowed = match (fetch_site, origin) {
        (Some(site), _) => site == "same-origin",
        (None, Some(origin)) => same_origin(origin, gate.own_origin(headers).as_deref()),
        (None, None) => false,
    };
    if !allowed {
        tracing::warn!(
            method = %request.method(),
            path = request.uri().path(),
            ?fetch_site,
            ?origin,
            "refused a state-changing request not sent from Slipway's pages"
        );
        return (
            StatusCode::FORBIDDEN,
            "Refused: this request must be sent from Slipway's own pages.",
        )
            .into_response();
    }
    next.run(request).await
}

/// Origins compare by scheme, host and port. Without `--external-url` the
/// scheme is unknown (a proxy may end TLS), so only host and port count.
fn same_origin(origin: &str, own: Option<&str>) -> bool {
    let (Some(origin), Some(own)) = (
        Url::parse(origin).ok(),
        own.and_then(|own| Url::parse(own).ok()),
    ) else {
        return false;
    };
    origin.host_str() == own.host_str()
        && origin.port_or_known_default() == own.port_or_known_default()
        && (origin.scheme() == own.scheme() || own.scheme() == "http")
}

/// Where a sign-in goes afterwards: only a path on this site, never
/// another host (`//evil.example`, `/\evil.example`) or a scheme.
pub fn local_target(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.chars().any(|c| c.is_control()) =>
        {
            next.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_local_paths() {
        assert_eq!(local_target(Some("/runs/1?axis=step")), "/runs/1?axis=step");
        assert_eq!(local_target(Some("//evil.example/x")), "/");
        assert_eq!(local_target(Some("/\\evil.example")), "/");
        assert_eq!(local_target(Some("https://evil.example")), "/");
        assert_eq!(local_target(Some("/ok\r\nSet-Cookie: x")), "/");
        assert_eq!(local_target(None), "/");
    }

    #[test]
    fn origins_compare_by_host_and_port() {
        assert!(same_origin(
            "http://127.0.0.1:3000",
            Some("http://127.0.0.1:3000")
        ));
        assert!(!same_origin(
            "http://127.0.0.1:3001",
            Some("http://127.0.0.1:3000")
        ));
        assert!(!same_origin(
            "http://evil.example",
            Some("http://127.0.0.1:3000")
        ));
        assert!(!same_origin("null", Some("http://127.0.0.1:3000")));
        assert!(same_origin(
            "https://slipway.example",
            Some("https://slipway.example/")
        ));
        assert!(!same_origin(
            "http://slipway.example",
            Some("https://slipway.example")
        ));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; slipway_session=abc; other=1"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("slipway_session="));
        assert_eq!(session_token(&headers), None);
    }
}
