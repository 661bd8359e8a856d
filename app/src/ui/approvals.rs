//! Four-eyes promotions: every request (`/approvals`) and one request with
//! its frozen evidence and the approver's decision (`/approvals/{id}`).
//! Approve and reject are plain POST forms with a comment: they work before
//! hydration and come back to the request's page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::list::Results;
use super::parts::{Evidence, RequestBadge, RequestTable};
use super::{NotAllowed, format_millis, use_me};
use crate::access::{Action, authorize};
use crate::error::AppError;
use crate::model::{NewRollout, PromotionRequest, RequestState, RolloutMode};
use crate::routes::{approval_href, deployment_href};
use crate::server_fns::{get_promotion_request, list_promotion_requests};

#[component]
pub fn ApprovalsPage() -> impl IntoView {
    let requests = Resource::new(|| (), |_| list_promotion_requests());
    view! {
        <Title text="Approvals"/>
        <section class="page">
            <header class="page-header"><h1>"Promotion requests"</h1></header>
            <Results loading_text="Loading requests…">
                {move || Suspend::new(async move {
                    let requests = requests.await?;
                    Ok::<_, AppError>(view! { <RequestTable requests/> })
                })}
            </Results>
        </section>
    }
}

/// Pending requests first, then the rest, newest first in each.
#[component]
pub fn ApprovalPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|params| params.get("id").unwrap_or_default()));
    let request = Resource::new(move || id.get(), get_promotion_request);
    let me = use_me();
    view! {
        <Title text="Promotion request"/>
        <section class="page">
            <super::Notice/>
            <Results loading_text="Loading the request…">
                {move || Suspend::new(async move {
                    let request = request.await?;
                    let user = me.await?;
                    let allowed = authorize(
                        &user,
                        Action::Approve { model: &request.model, requested_by: &request.requested_by },
                    )
                    .map_err(|denied| denied.0);
                    Ok::<_, AppError>(view! { <RequestDetail request allowed/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn RequestDetail(request: PromotionRequest, allowed: Result<(), String>) -> impl IntoView {
    let title = match (&request.settings, &request.rollout) {
        (Some(change), _) if change.create => format!("Make the deployment of {}?", request.model),
        (Some(_), _) => format!("Change the deployment of {}?", request.model),
        (None, Some(asked)) => format!(
            "Start {} v{} as a {} at {} %?",
            request.model, asked.version, asked.mode, asked.weight
        ),
        (None, None) => format!("Promote {} v{}?", request.model, request.version),
    };
    let approve_label = match (&request.settings, &request.rollout) {
        (Some(_), _) => "Approve and save",
        (None, Some(_)) => "Approve and start",
        (None, None) => "Approve and deploy",
    };
    let decision = match request.state {
        RequestState::Pending => match allowed {
            Ok(()) => {
                let approve = format!("{}/approve", approval_href(&request.id));
                let reject = format!("{}/reject", approval_href(&request.id));
                view! {
                    <form method="post" action=approve class="decision">
                        <label for="comment">"Comment (required to reject)"</label>
                        <textarea id="comment" name="comment" rows="3"></textarea>
                        <div class="actions">
                            <button type="submit" class="primary">{approve_label}</button>
                            <button type="submit" class="danger" formaction=reject>"Reject"</button>
                        </div>
                    </form>
                }
                .into_any()
            }
            Err(reason) => view! { <NotAllowed reason/> }.into_any(),
        },
        _ => view! {
            <dl class="facts decided">
                <dt>"Decided by"</dt><dd data-decided-by>{request.decided_by.clone().unwrap_or_else(|| "—".into())}</dd>
                <dt>"When"</dt><dd>{format_millis(request.decided_ms)}</dd>
                <dt>"Comment"</dt><dd class="description">{request.comment.clone()}</dd>
                <dt>"Outcome"</dt><dd>{request.outcome.clone()}</dd>
            </dl>
        }
        .into_any(),
    };
    let base = request
        .base_version
        .as_ref()
        .map_or("nothing".to_string(), |version| format!("v{version}"));
    view! {
        <header class="page-header">
            <h1>{title}</h1>
            <RequestBadge state=request.state/>
        </header>
        <dl class="facts">
            <dt>"Asked by"</dt><dd data-requested-by>{request.requested_by.clone()}</dd>
            <dt>"When"</dt><dd>{format_millis(Some(request.requested_ms))}</dd>
            <dt>"Why"</dt><dd class="description">{request.reason.clone()}</dd>
            <dt>"In production then"</dt><dd>{base}</dd>
        </dl>
        {request.settings.clone().map(|change| view! {
            <h2>"The settings change"</h2>
            <p class="description" data-settings-change>{change.changes}</p>
        })}
        {request.rollout.clone().map(|asked| view! {
            <h2>"The canary"</h2>
            <p class="description" data-rollout-asked>{rollout_words(&asked)}</p>
        })}
        <h2>"Evidence, as it was when asked"</h2>
        {match request.evidence.clone() {
            Some(preview) => view! { <Evidence preview/> }.into_any(),
            None => view! { <p>"It makes no version serve: nothing is in production."</p> }.into_any(),
        }}
        {decision}
        <p><a href=deployment_href(&request.model)>"The deployment"</a></p>
    }
}

/// What approving a canary's request starts, in words.
fn rollout_words(asked: &NewRollout) -> String {
    let share = match asked.mode {
        RolloutMode::Canary => format!(
            "v{} answers {} % of the requests",
            asked.version, asked.weight
        ),
        RolloutMode::Shadow => format!(
            "v{} sees a copy of {} % of the requests while Production answers them all",
            asked.version, asked.weight
        ),
    };
    let analysis = match &asked.analysis {
        Some(analysis) => super::canary::analysis_words(analysis),
        None => "People step, promote and abort it.".to_string(),
    };
    format!("{share}. {analysis} Promoting it fully is a request of its own.")
}
