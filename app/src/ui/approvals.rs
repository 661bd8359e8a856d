//! Four-eyes promotions: every request (`/approvals`) and one request with
//! its frozen evidence and the approver's decision (`/approvals/{id}`).
//! Approve and reject are plain POST forms with a comment: they work before
//! hydration and come back to the request's page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::deployments::{Evidence, deployment_href};
use super::list::{Results, segment};
use super::models::version_href;
use super::{NotAllowed, format_millis, use_me};
use crate::access::{Action, authorize};
use crate::error::AppError;
use crate::model::{PromotionRequest, RequestState};
use crate::server_fns::{get_promotion_request, list_promotion_requests};

pub fn approval_href(id: &str) -> String {
    format!("/approvals/{}", segment(id))
}

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
pub fn RequestTable(requests: Vec<PromotionRequest>) -> impl IntoView {
    if requests.is_empty() {
        return view! { <p class="empty">"No promotion requests."</p> }.into_any();
    }
    let mut requests = requests;
    requests.sort_by_key(|request| request.state != RequestState::Pending);
    let rows = requests
        .into_iter()
        .map(|request| {
            view! {
                <tr data-request=request.id.clone()>
                    <td><a href=approval_href(&request.id)>{format_millis(Some(request.requested_ms))}</a></td>
                    <td><a href=deployment_href(&request.model)>{request.model.clone()}</a></td>
                    <td><a href=version_href(&request.model, &request.version)>{format!("v{}", request.version)}</a></td>
                    <td>{request.requested_by.clone()}</td>
                    <td class="description">{request.reason.clone()}</td>
                    <td><RequestBadge state=request.state/></td>
                    <td>{request.decided_by.clone().unwrap_or_default()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="data requests">
            <thead>
                <tr>
                    <th scope="col">"Asked"</th>
                    <th scope="col">"Model"</th>
                    <th scope="col">"Version"</th>
                    <th scope="col">"By"</th>
                    <th scope="col">"Why"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Decided by"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

#[component]
fn RequestBadge(state: RequestState) -> impl IntoView {
    let class = format!("status request-{}", state.as_str());
    view! { <span class=class data-request-state=state.as_str()>{state.as_str()}</span> }
}

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
    let title = format!("Promote {} v{}?", request.model, request.version);
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
                            <button type="submit" class="primary">"Approve and deploy"</button>
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
        <h2>"Evidence, as it was when asked"</h2>
        <Evidence preview=request.evidence.clone()/>
        {decision}
        <p><a href=deployment_href(&request.model)>"The deployment"</a></p>
    }
}
