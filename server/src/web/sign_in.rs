//! Signing in and out: the sign-in form, and single sign-on's two legs.

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::AppState;
use super::gate::{client_address, local_target, session_token, sso_state};
use crate::services::accounts::LoginRefused;
use app::routes::{SIGNED_OUT, SSO_FAILED, login_refused_href};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginForm {
    name: String,
    password: String,
    next: String,
}

/// The largest sign-in form read: a name, a password and a path.
const LOGIN_FORM_BYTES: usize = 16 * 1024;

/// The sign-in form's POST: a new session (any earlier one on this browser
/// ends), then the page asked for; a refusal goes back to the form.
pub async fn login(State(state): State<AppState>, request: Request) -> Response {
    let address = client_address(&request, &state.gate.settings.trusted_proxies);
    let previous = session_token(request.headers());
    let Ok(body) = axum::body::to_bytes(request.into_body(), LOGIN_FORM_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.").into_response();
    };
    let form: LoginForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let target = local_target(Some(form.next.as_str()).filter(|next| !next.is_empty()));
    let name = form.name.trim();
    let accounts = &state.gate.accounts;
    let outcome = if name.is_empty() || form.password.is_empty() {
        Ok(Err(LoginRefused::Invalid))
    } else {
        accounts.login(name, &form.password, address).await
    };
    match outcome {
        Ok(Ok(token)) => {
            if let Some(previous) = previous
                && let Err(err) = accounts.logout(&previous).await
            {
                tracing::warn!(error = %err, "ending the session a sign-in replaces");
            }
            let mut response = Redirect::to(&target).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, state.gate.session_cookie(&token));
            response
        }
        Ok(Err(refused)) => {
            let reason = match refused {
                LoginRefused::Invalid => "invalid",
                LoginRefused::Throttled(_) => "throttled",
            };
            Redirect::to(&login_refused_href(reason, &target)).into_response()
        }
        Err(err) => unavailable(err),
    }
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers)
        && let Err(err) = state.gate.accounts.logout(&token).await
    {
        return unavailable(err);
    }
    let mut response = Redirect::to(SIGNED_OUT).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.gate.cleared_cookie());
    response
}

/// The store failed: the answer says so, never a sign-in page that would
/// look like a refusal.
fn unavailable(err: crate::error::Error) -> Response {
    let mut response = err.into_response();
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SsoStart {
    next: String,
}

/// Off to the single sign-on provider.
pub async fn begin_sso(State(state): State<AppState>, Query(query): Query<SsoStart>) -> Response {
    let next = local_target(Some(&query.next));
    let begun = state.gate.accounts.begin_sso(next).await;
    match begun.map(|(url, sso)| (url, state.gate.sso_cookie(&sso))) {
        Ok((url, Some(cookie))) => {
            let mut response = Redirect::to(url.as_str()).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Ok((_, None)) => {
            tracing::warn!("single sign-on could not start: the provider's state is no cookie");
            Redirect::to(SSO_FAILED).into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, "single sign-on could not start");
            Redirect::to(SSO_FAILED).into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SsoCallback {
    code: String,
    state: String,
    error: String,
    /// RFC 9207: the provider that answered, where it says so.
    iss: Option<String>,
}

/// Back from the provider: a session, or the sign-in page with an error
/// (the details go to the log, not into the URL).
pub async fn finish_sso(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<SsoCallback>,
) -> Response {
    let outcome = if !callback.error.is_empty() {
        Err(format!("the provider answered {}", callback.error))
    } else {
        state
            .gate
            .accounts
            .finish_sso(
                sso_state(&headers).as_deref(),
                &callback.code,
                &callback.state,
                callback.iss.as_deref(),
            )
            .await
            .map_err(|err| err.to_string())
    };
    let mut response = match outcome {
        Ok((token, next)) => {
            let mut response = Redirect::to(&local_target(Some(&next))).into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, state.gate.session_cookie(&token));
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "single sign-on failed");
            Redirect::to(SSO_FAILED).into_response()
        }
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.gate.cleared_sso_cookie());
    response
}
