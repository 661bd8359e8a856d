//! The pages' plain POST forms, so every change works without JavaScript:
//! each is decoded into a typed form, handed to one use-case service, and
//! answered with a redirect — to what was made, or back to the page with
//! the outcome as its notice. Nothing here decides who may do what.

use app::access::User;
use app::error::AppError;
use app::model::{
    CanaryForm, ChannelRequest, CreatedToken, DeploymentSettings, LaunchRequest, LoadTestRequest,
    TokenRequest,
};
use app::routes::{
    DEPLOYMENTS, Done, NEW_DEPLOYMENT, NOTIFICATIONS, TOKENS, approval_href, created_token_href,
    deployment_draft_href, deployment_href, done_href, launch_draft_href, launch_href,
    load_test_form_href, load_test_href, model_href, promote_href, rollback_href, run_href,
    settings_href, try_answer_href, version_href,
};
use axum::Extension;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::AppState;
use super::errors::status_of;
use crate::error::{Error, Invalid};
use crate::services::deployments::Saved;
use crate::services::promotions::{Expected, Promoted};
use crate::services::registry::{RegistryEdit, RegistryForm};
use crate::services::rollouts::Started;

/// The launch form: a plain form, so it works the same before and after
/// hydration. Launched (or launched before, by the same form) goes to the
/// launch's page; invalid goes back to the form as a draft kept on the
/// server (`/launch?draft=…`), where the page shows each field's error.
pub async fn submit_launch(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let request = LaunchRequest::from_pairs(fields);
    let launches = &state.services.launches;
    match launches.submit(&user, &request).await {
        Ok(launch) => Redirect::to(&launch_href(&launch.id)).into_response(),
        Err(Error::Invalid(_)) => match launches.keep_draft(&user, &request).await {
            Ok(draft) => Redirect::to(&launch_draft_href(&draft)).into_response(),
            Err(err) => err.into_response(),
        },
        Err(err) => err.into_response(),
    }
}

/// A deployment's load test form: started, to the test's live page;
/// invalid, back to the form as a draft; refused otherwise (one running
/// already, nothing serving), back to the form with the reason.
pub async fn start_load_test(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(request): Form<LoadTestRequest>,
) -> Response {
    let load_tests = &state.services.load_tests;
    match load_tests.start(&user, &model, &request).await {
        Ok(id) => Redirect::to(&load_test_href(&model, &id)).into_response(),
        Err(Error::Invalid(invalid)) if !invalid.fields.is_empty() => {
            match load_tests.keep_draft(&user, &request).await {
                Ok(draft) => {
                    Redirect::to(&format!("{}?draft={draft}", load_test_form_href(&model)))
                        .into_response()
                }
                Err(err) => err.into_response(),
            }
        }
        Err(err) => back_to(&state, &user, load_test_form_href(&model), Some(err)).await,
    }
}

/// A running load test's cancel button; back to its page.
pub async fn cancel_load_test(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((model, id)): Path<(String, String)>,
) -> Response {
    let outcome = state.services.load_tests.cancel(&user, &id).await;
    back_to(&state, &user, load_test_href(&model, &id), outcome.err()).await
}

/// The cancel button; back to the launch's page either way, with the
/// reason as a notice when it could not be cancelled.
pub async fn cancel_launch(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Response {
    let outcome = state.services.launches.cancel(&user, &id).await;
    back_to(&state, &user, launch_href(&id), outcome.err()).await
}

/// What a change of Production says it saw: the Production version the
/// page showed (`expected_version`, empty for nothing); any, if the form
/// does not say.
fn expected(expected_version: Option<String>) -> Expected {
    match expected_version {
        None => Expected::Any,
        Some(version) if version.is_empty() => Expected::Version(None),
        Some(version) => Expected::Version(Some(version)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PromoteForm {
    version: String,
    reason: String,
    expected_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RollbackForm {
    reason: String,
    expected_version: Option<String>,
}

/// The promotion's confirm button: Production in MLflow and deployed at
/// once, or a request where an approver must decide.
pub async fn promote(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(form): Form<PromoteForm>,
) -> Response {
    let page = deployment_href(&model);
    let outcome = state
        .services
        .promotions
        .promote(
            &user,
            &model,
            &form.version,
            &form.reason,
            expected(form.expected_version),
        )
        .await;
    match outcome {
        Ok(Promoted::Now) => {
            back_to(
                &state,
                &user,
                done_href(&page, Done::Promoted, &form.version),
                None,
            )
            .await
        }
        Ok(Promoted::Requested(id)) => back_to(&state, &user, approval_href(&id), None).await,
        // Back to the confirm step, which keeps the version.
        Err(err @ Error::Invalid(_)) => {
            back_to(
                &state,
                &user,
                promote_href(&model, &form.version),
                Some(err),
            )
            .await
        }
        Err(err) => back_to(&state, &user, page, Some(err)).await,
    }
}

pub async fn rollback(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(form): Form<RollbackForm>,
) -> Response {
    let page = deployment_href(&model);
    let outcome = state
        .services
        .promotions
        .rollback(&user, &model, &form.reason, expected(form.expected_version))
        .await;
    match outcome {
        Ok(version) => {
            back_to(
                &state,
                &user,
                done_href(&page, Done::RolledBack, &version),
                None,
            )
            .await
        }
        // Back to the confirm step, which shows why.
        Err(err @ Error::Invalid(_)) => {
            back_to(&state, &user, rollback_href(&model), Some(err)).await
        }
        Err(err) => back_to(&state, &user, page, Some(err)).await,
    }
}

/// Starts a canary from the deployment's page; back to its canary section.
pub async fn start_canary(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(form): Form<CanaryForm>,
) -> Response {
    let started = match form.parse() {
        Ok(asked) => state.services.rollouts.start(&user, &model, asked).await,
        Err(problems) => Err(Error::Invalid(Invalid {
            problems,
            ..Invalid::default()
        })),
    };
    match started {
        Ok(Started::Requested(id)) => back_to(&state, &user, approval_href(&id), None).await,
        started => to_canary(&state, &user, &model, started.map(drop)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WeightForm {
    weight: String,
}

pub async fn set_canary_weight(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(form): Form<WeightForm>,
) -> Response {
    let set = match form.weight.trim().parse::<u8>() {
        Ok(weight) => state
            .services
            .rollouts
            .set_weight(&user, &model, weight)
            .await
            .map(drop),
        Err(_) => Err(Error::invalid(format!(
            "the share is a number from 1 to 99, not {:?}",
            form.weight.trim()
        ))),
    };
    to_canary(&state, &user, &model, set).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReasonForm {
    reason: String,
}

/// Promotes the canary's version fully; to the request where it needs an
/// approver.
pub async fn promote_canary(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(form): Form<ReasonForm>,
) -> Response {
    match state
        .services
        .rollouts
        .promote(&user, &model, &form.reason)
        .await
    {
        Ok(Promoted::Requested(id)) => back_to(&state, &user, approval_href(&id), None).await,
        promoted => to_canary(&state, &user, &model, promoted.map(drop)).await,
    }
}

pub async fn abort_canary(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(form): Form<ReasonForm>,
) -> Response {
    let aborted = state
        .services
        .rollouts
        .abort(&user, &model, &form.reason)
        .await
        .map(drop);
    to_canary(&state, &user, &model, aborted).await
}

/// Back to the deployment's canary section, or to its page with why not.
async fn to_canary(
    state: &AppState,
    user: &User,
    model: &str,
    done: Result<(), Error>,
) -> Response {
    let page = deployment_href(model);
    match done {
        Ok(()) => Redirect::to(&format!("{page}#canary")).into_response(),
        Err(err) => back_to(state, user, page, Some(err)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CommentForm {
    comment: String,
}

/// An approver's decision on a promotion request; back to the request's page.
pub async fn approve(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    Form(form): Form<CommentForm>,
) -> Response {
    let outcome = state
        .services
        .promotions
        .approve(&user, &id, &form.comment, &*state.services.rollouts)
        .await;
    back_to(&state, &user, approval_href(&id), outcome.err()).await
}

pub async fn reject(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    Form(form): Form<CommentForm>,
) -> Response {
    let outcome = state
        .services
        .promotions
        .reject(&user, &id, &form.comment)
        .await;
    back_to(&state, &user, approval_href(&id), outcome.err()).await
}

/// The new deployment form: to the deployment's page once created;
/// invalid, back to the form as a draft kept on the server.
pub async fn create_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Form(settings): Form<DeploymentSettings>,
) -> Response {
    let outcome = state.services.deployments.create(&user, &settings).await;
    let page = deployment_href(settings.model.trim());
    after_settings(
        &state,
        &user,
        outcome,
        settings,
        false,
        page,
        NEW_DEPLOYMENT,
    )
    .await
}

/// A deployment's settings form; as `create_deployment`.
pub async fn update_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(settings): Form<DeploymentSettings>,
) -> Response {
    let settings = DeploymentSettings {
        model: model.clone(),
        ..settings
    };
    let outcome = state
        .services
        .deployments
        .update(&user, &model, &settings)
        .await;
    let form = settings_href(&model);
    after_settings(
        &state,
        &user,
        outcome,
        settings,
        true,
        deployment_href(&model),
        &form,
    )
    .await
}

/// Saved: the deployment's page; held for a second person: the request's.
/// Invalid: the form again, its values kept as a draft. Refused: the
/// form, with why.
async fn after_settings(
    state: &AppState,
    user: &User,
    outcome: Result<Saved, Error>,
    settings: DeploymentSettings,
    exists: bool,
    page: String,
    form: &str,
) -> Response {
    match outcome {
        Ok(Saved::Now) => Redirect::to(&page).into_response(),
        Ok(Saved::Requested(id)) => Redirect::to(&approval_href(&id)).into_response(),
        Err(Error::Invalid(_)) => {
            let kept = state
                .services
                .deployments
                .keep_draft(user, settings, exists)
                .await;
            match kept {
                Ok(draft) => Redirect::to(&deployment_draft_href(form, &draft)).into_response(),
                Err(err) => back_to(state, user, form.to_string(), Some(err)).await,
            }
        }
        Err(err) => back_to(state, user, form.to_string(), Some(err)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteForm {
    /// The model's name, typed again.
    confirm: String,
    revision: String,
}

/// The delete button on a deployment's settings. Then the deployments
/// list; the next pass stops what served it.
pub async fn delete_deployment(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Response {
    let outcome = state
        .services
        .deployments
        .delete(&user, &model, &form.confirm, &form.revision)
        .await;
    match outcome {
        Ok(()) => Redirect::to(DEPLOYMENTS).into_response(),
        Err(err) => back_to(&state, &user, settings_href(&model), Some(err)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TryForm {
    input: String,
}

/// The Try it panel: sends the body to what serves the model, then to the
/// deployment's page, which shows the answer.
pub async fn send_try(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(form): Form<TryForm>,
) -> Response {
    match state
        .services
        .deployments
        .try_it(&user, &model, form.input)
        .await
    {
        Ok(answer) => Redirect::to(&try_answer_href(&model, &answer)).into_response(),
        Err(err) => back_to(&state, &user, deployment_href(&model), Some(err)).await,
    }
}

/// The model and version pages' registry forms: back to the page the form
/// was on, with MLflow's or Slipway's refusal as its notice.
pub async fn edit_registry(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(model): Path<String>,
    Form(form): Form<RegistryForm>,
) -> Response {
    let version = form.version.as_deref().unwrap_or_default();
    let page = if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
        version_href(&model, version)
    } else {
        model_href(&model)
    };
    let outcome = match RegistryEdit::from_form(&form) {
        Ok(edit) => state.services.registry.edit(&user, &model, &edit).await,
        Err(err) => Err(err),
    };
    back_to(&state, &user, page, outcome.err()).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RegisterForm {
    /// The registered model's name (new or existing).
    model: String,
    /// Which of the run's models.
    source: String,
}

/// The run page's "Register model": to the new version's page.
pub async fn register_run_model(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(run_id): Path<String>,
    Form(form): Form<RegisterForm>,
) -> Response {
    match state
        .services
        .registry
        .register_run_model(&user, &run_id, &form.source, &form.model)
        .await
    {
        Ok(version) => {
            back_to(
                &state,
                &user,
                version_href(form.model.trim(), &version),
                None,
            )
            .await
        }
        Err(err) => back_to(&state, &user, run_href(&run_id), Some(err)).await,
    }
}

/// The new-token form: to the tokens page, which shows the secret once
/// (kept on the server meanwhile, never in the URL); refused or invalid,
/// back to it with why.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Form(request): Form<TokenRequest>,
) -> Response {
    let tokens = &state.services.tokens;
    let made = match tokens.create(&user, &request).await {
        Ok((token, secret)) => {
            tokens
                .keep_secret(
                    &user,
                    &CreatedToken {
                        name: token.name,
                        secret,
                    },
                )
                .await
        }
        Err(err) => Err(err),
    };
    match made {
        Ok(id) => Redirect::to(&created_token_href(&id)).into_response(),
        Err(err) => back_to(&state, &user, TOKENS.to_string(), Some(err)).await,
    }
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Response {
    let outcome = state.services.tokens.revoke(&user, &id).await;
    back_to(&state, &user, TOKENS.to_string(), outcome.err()).await
}

/// The new-channel form (its events a repeated field); back to the page.
pub async fn add_channel(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let mut request = ChannelRequest::default();
    for (name, value) in fields {
        match name.as_str() {
            "name" => request.name = value,
            "kind" => request.kind = value,
            "url" => request.url = value,
            "secret" => request.secret = value,
            "events" => request.events.push(value),
            _ => {}
        }
    }
    let outcome = state
        .services
        .notifications
        .add_channel(&user, &request)
        .await;
    back_to(&state, &user, NOTIFICATIONS.to_string(), outcome.err()).await
}

pub async fn delete_channel(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Response {
    let outcome = state
        .services
        .notifications
        .delete_channel(&user, &id)
        .await;
    back_to(&state, &user, NOTIFICATIONS.to_string(), outcome.err()).await
}

const MAX_NOTICE_CHARS: usize = 300;

/// Back to `page`, with the error (if any) as its `notice`.
async fn back_to(state: &AppState, user: &User, page: String, error: Option<Error>) -> Response {
    let Some(err) = error.map(AppError::from) else {
        return Redirect::to(&page).into_response();
    };
    if matches!(err, AppError::Forbidden(_) | AppError::Unauthenticated) {
        // The page hides what the role does not allow, so this is a stale
        // page or a hand-made request: a plain refusal.
        return (status_of(&err), err.to_string()).into_response();
    }
    // Errors may quote what was sent: the notice stays short.
    let mut message = err.to_string();
    if let Some((cut, _)) = message.char_indices().nth(MAX_NOTICE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    // Kept on the server under an id: the page shows only what Slipway
    // said to this user, never text a link brings.
    let notice = match state.services.reads.keep_notice(user, &message).await {
        Ok(id) => id,
        Err(err) => return err.into_response(),
    };
    let joint = if page.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{page}{joint}notice={notice}")).into_response()
}
