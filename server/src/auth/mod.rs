//! Who is calling, and whether the call may come from where it comes from.
//!
//! - `same_site` refuses every state-changing request that a browser did not
//!   send from Slipway's own pages (fail closed: no `Sec-Fetch-Site` and no
//!   `Origin` is refused too).
//! - `gate` finds the caller's session and puts the `User` into the
//!   request's extensions, where `app::port::current_user` finds it; without
//!   a session only the sign-in page and static files are served.
//! - What a signed-in user may do is decided in `app::access::authorize`.

pub mod hosts;
pub mod limiter;
pub mod oidc;
pub mod password;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use app::model::User;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::Result;
use crate::store::{Account, Store, now_ms};
use limiter::LoginLimiter;

pub const SESSION_COOKIE: &str = "slipway_session";
const OIDC_COOKIE: &str = "slipway_oidc";
/// A session's last-seen time is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;

pub struct Auth {
    store: Store,
    settings: AuthSettings,
    limiter: LoginLimiter,
    oidc: Option<oidc::Oidc>,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute: Duration,
    /// The URL people open Slipway at (`--external-url`): state-changing
    /// requests must come from this origin, and cookies are `Secure` when it
    /// is https. Without it the request's own `Host` is the origin.
    pub external_url: Option<Url>,
    /// The host names requests may name (`--allowed-hosts`, `--external-url`).
    pub allowed_hosts: hosts::AllowedHosts,
}

/// Why a sign-in was refused. Deliberately vague to the user: a wrong name
/// and a wrong password look the same.
#[derive(Debug)]
pub enum LoginRefused {
    Invalid,
    Throttled(Duration),
}

impl Auth {
    pub fn new(store: Store, settings: AuthSettings, oidc: Option<oidc::Oidc>) -> Self {
        Self {
            store,
            settings,
            limiter: LoginLimiter::default(),
            oidc,
        }
    }

    /// The single sign-on provider's name, when there is one.
    pub fn single_sign_on(&self) -> Option<String> {
        self.oidc.as_ref().map(oidc::Oidc::provider)
    }

    /// Starts a single sign-on: the provider's URL, and the cookie that
    /// binds the login to this browser.
    pub async fn begin_sso(&self, next: &str) -> std::result::Result<(Url, HeaderValue), String> {
        let oidc = self
            .oidc
            .as_ref()
            .ok_or("single sign-on is not configured")?;
        let (url, state) = oidc.begin(&self.store, local_target(Some(next))).await?;
        let cookie = HeaderValue::from_str(&format!(
            "{OIDC_COOKIE}={state}; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age=600{}",
            self.secure_attribute()
        ))
        .map_err(|err| err.to_string())?;
        Ok((url, cookie))
    }

    /// Finishes a single sign-on: the account as the provider describes it
    /// now, and a new session; returns the token and where to go.
    pub async fn finish_sso(
        &self,
        headers: &HeaderMap,
        code: &str,
        state: &str,
    ) -> std::result::Result<(String, String), String> {
        let oidc = self
            .oidc
            .as_ref()
            .ok_or("single sign-on is not configured")?;
        // The state must come back to the browser that started the login.
        if cookie(headers, OIDC_COOKIE).as_deref() != Some(state) {
            return Err("the sign-in did not start in this browser".into());
        }
        let signed_in = oidc.finish(&self.store, code, state).await?;
        let name = signed_in.name.clone();
        crate::cli::check_name(&name).map_err(|err| err.to_string())?;
        if signed_in.grants.is_empty() {
            let _ = self
                .store
                .record_event(
                    &name,
                    "login",
                    &format!("user:{name}"),
                    &format!(
                        "refused: single sign-on groups {:?} grant no role",
                        signed_in.groups
                    ),
                )
                .await;
            return Err(format!("{name}'s groups grant no role in Slipway"));
        }
        let account = self
            .store
            .upsert_sso_account(&name, &signed_in.grants)
            .await
            .map_err(|err| err.to_string())?;
        if account.disabled {
            return Err(format!("{name}'s account is disabled"));
        }
        let token = self
            .open_session(&name)
            .await
            .map_err(|err| err.to_string())?;
        let grants: Vec<String> = signed_in.grants.iter().map(ToString::to_string).collect();
        self.store
            .record_event(
                &name,
                "login",
                &format!("user:{name}"),
                &format!("signed in through single sign-on as {}", grants.join("; ")),
            )
            .await
            .map_err(|err| err.to_string())?;
        tracing::info!(user = %name, groups = ?signed_in.groups, "signed in through single sign-on");
        Ok((token, signed_in.next))
    }

    pub fn cleared_sso_cookie(&self) -> HeaderValue {
        HeaderValue::from_static(
            "slipway_oidc=; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age=0",
        )
    }

    /// Checks a local account's password and opens a new session; returns its token.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<std::result::Result<String, LoginRefused>> {
        if let Err(wait) = self.limiter.check(name, address) {
            tracing::warn!(user = name, ?address, "sign-in refused: too many failures");
            self.store
                .record_event(
                    name,
                    "login",
                    &format!("user:{name}"),
                    "refused: too many failed attempts",
                )
                .await?;
            return Ok(Err(LoginRefused::Throttled(wait)));
        }
        let account = self.store.account(name).await?;
        let stored = account
            .as_ref()
            .filter(|account| !account.disabled)
            .and_then(|account| account.password_hash.clone());
        let password = password.to_string();
        let matches =
            tokio::task::spawn_blocking(move || password::verify(&password, stored.as_deref()))
                .await
                .map_err(|err| crate::error::Error::Internal(format!("password check: {err}")))?;
        if !matches {
            self.limiter.failed(name, address);
            tracing::warn!(user = name, ?address, "sign-in failed");
            self.store
                .record_event(
                    name,
                    "login",
                    &format!("user:{name}"),
                    "failed: wrong name or password, or a disabled account",
                )
                .await?;
            return Ok(Err(LoginRefused::Invalid));
        }
        self.limiter.succeeded(name);
        let token = self.open_session(name).await?;
        tracing::info!(user = name, ?address, "signed in");
        self.store
            .record_event(
                name,
                "login",
                &format!("user:{name}"),
                "signed in with a password",
            )
            .await?;
        Ok(Ok(token))
    }

    /// A new session for an account whose identity is already checked.
    pub async fn open_session(&self, name: &str) -> Result<String> {
        let token = new_token();
        self.store.create_session(&token_hash(&token), name).await?;
        Ok(token)
    }

    pub async fn logout(&self, token: &str) -> Result<()> {
        self.store.end_session(&token_hash(token)).await
    }

    /// The signed-in user of a session token; `None` for an unknown, ended,
    /// expired or disabled one.
    pub async fn user_for(&self, token: &str) -> Result<Option<User>> {
        let hash = token_hash(token);
        let Some(session) = self.store.session(&hash).await? else {
            return Ok(None);
        };
        let now = now_ms();
        let idle_ms = self.settings.idle.as_millis() as i64;
        let absolute_ms = self.settings.absolute.as_millis() as i64;
        if session.account.disabled
            || now - session.last_seen_ms > idle_ms
            || now - session.created_ms > absolute_ms
        {
            self.store.end_session(&hash).await?;
            return Ok(None);
        }
        if now - session.last_seen_ms > TOUCH_EVERY_MS {
            self.store.touch_session(&hash).await?;
        }
        Ok(Some(user_of(&session.account)))
    }

    /// Deletes expired sessions (the gate refuses them anyway; this keeps the table small).
    pub async fn sweep_sessions(&self) -> Result<u64> {
        let now = now_ms();
        self.store
            .end_expired_sessions(
                now - self.settings.idle.as_millis() as i64,
                now - self.settings.absolute.as_millis() as i64,
            )
            .await
    }

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

pub fn user_of(account: &Account) -> User {
    User {
        name: account.name.clone(),
        authenticated: true,
        grants: account.grants.clone(),
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the OS has randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The session token from the request's cookies.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
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

/// The peer's address, when the server was started with connect info.
pub fn peer_address(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
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

pub async fn gate(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    if is_static(request.uri().path()) {
        request.extensions_mut().insert(User::anonymous());
        return next.run(request).await;
    }
    let user = match session_token(request.headers()) {
        None => None,
        Some(token) => match auth.user_for(&token).await {
            Ok(user) => user,
            Err(err) => {
                let shown = app::error::AppError::from(err);
                return (StatusCode::SERVICE_UNAVAILABLE, shown.to_string()).into_response();
            }
        },
    };
    let path = request.uri().path();
    if user.is_none() && !is_public(path) {
        return sign_in_first(&request);
    }
    request
        .extensions_mut()
        .insert(user.unwrap_or_else(User::anonymous));
    next.run(request).await
}

/// API calls get 401; a browser goes to the sign-in page, and back to the
/// page it asked for afterwards.
fn sign_in_first(request: &Request) -> Response {
    let path = request.uri().path();
    if path.starts_with("/api/") {
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
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// Every request that can change something (anything but GET, HEAD and
/// OPTIONS) must come from Slipway's own pages: `Sec-Fetch-Site:
/// same-origin`, or, from a browser that does not send that, an `Origin`
/// equal to Slipway's own. A request with neither is refused: only a
/// browser on Slipway's pages holds the session cookie anyway.
pub async fn same_site(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
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
        (None, Some(origin)) => same_origin(origin, auth.own_origin(headers).as_deref()),
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
