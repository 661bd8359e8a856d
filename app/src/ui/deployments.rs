//! Deployments: every bound model (`/deployments`), one model's live status,
//! history and Try it panel (`/deployments/{model}`), and the promotion's
//! confirm step (`/deployments/{model}/promote?version=N`).
//!
//! Promote and rollback are plain POST forms, like the launch form: they work
//! before hydration and come back to the deployment's page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::canary::CanarySection;
use super::list::{Results, data_table};
use super::live::{keep_fresh, keep_fresh_every};
use super::load_tests::LoadTestsSection;
use super::parts::{Evidence, RequestTable};
use super::{NotAllowed, format_millis, format_ms, format_percent, use_me};
use crate::access::{Action, Role, authorize, holds_anywhere};
use crate::error::AppError;
use crate::model::{
    DeploymentDetail, DeploymentEvent, DeploymentOutcome, DeploymentView, Prediction,
    PromotionPreview, ServingState, TrafficNow, TrafficRange, TrafficReport, TryAnswer,
};
use crate::routes::{
    NEW_DEPLOYMENT, deployment_href, deployment_traffic_href, model_href, rollback_href,
    version_href,
};
use crate::server_fns::{
    get_deployment, get_traffic, get_try_answer, list_deployments, preview_promotion,
    preview_rollback,
};

#[component]
pub fn DeploymentsPage() -> impl IntoView {
    let deployments = Resource::new(|| (), |_| list_deployments());
    let me = use_me();
    let may_create = me.0.with_value(|user| {
        user.as_ref()
            .is_ok_and(|user| holds_anywhere(user, Role::Admin))
    });
    view! {
        <Title text="Deployments"/>
        <section class="page">
            <header class="page-header">
                <h1>"Deployments"</h1>
                {may_create.then(|| view! { <a class="button" href=NEW_DEPLOYMENT>"New deployment"</a> })}
            </header>
            <Results loading_text="Loading deployments…">
                {move || Suspend::new(async move {
                    let deployments = deployments.await?;
                    Ok::<_, AppError>(view! { <LiveDeployments deployments/> })
                })}
            </Results>
        </section>
    }
}

/// The table as the server rendered it, then kept current in the browser.
#[island]
fn LiveDeployments(deployments: Vec<DeploymentView>) -> impl IntoView {
    let current = RwSignal::new(deployments);
    keep_fresh(current, list_deployments);
    move || {
        let deployments = current.get();
        // With several replicas, one reconciles: its name.
        let reconciler = deployments
            .iter()
            .map(|deployment| deployment.reconciled_by.clone())
            .find(|name| !name.is_empty());
        view! {
            <DeploymentTable deployments/>
            {reconciler.map(|name| view! { <p class="muted" data-reconciler>"Reconciled by replica " {name}</p> })}
        }
    }
}

#[component]
fn DeploymentTable(deployments: Vec<DeploymentView>) -> impl IntoView {
    data_table(
        deployments,
        "data",
        &[
            "Model",
            "Target",
            "Production is",
            "Serving",
            "Status",
            "Requests/s",
            "Errors",
            "p99",
            "Address",
            "Last change",
        ],
        "No model is deployed yet. An admin creates a deployment here (New deployment) or with a [[deployment]] entry in the catalog file (SLIPWAY_CATALOG).",
        |deployment| {
            view! {
                <tr data-model=deployment.model.clone()>
                    <td class="name"><a href=deployment_href(&deployment.model)>{deployment.model.clone()}</a></td>
                    <td>{target_text(&deployment)}</td>
                    <td>{deployment.marker.clone()}</td>
                    <td class="number" data-serving>{version_text(&deployment.serving_version)}</td>
                    <td><StateBadge state=deployment.state/></td>
                    <TrafficCells traffic=deployment.traffic.clone()/>
                    <td class="address">{deployment.address.clone().unwrap_or_default()}</td>
                    <td>{format_millis(deployment.last_change_ms)}</td>
                </tr>
            }
        },
    )
}

/// The last minute's rate, errors and p99; dashes where nothing tells.
#[component]
fn TrafficCells(traffic: Option<TrafficNow>) -> impl IntoView {
    let (rate, errors, p99) = match traffic {
        Some(traffic) => (
            format_rate(traffic.requests_per_second),
            format_percent(traffic.error_percent),
            format_ms(traffic.p99_ms),
        ),
        None => ("—".into(), "—".into(), "—".into()),
    };
    view! {
        <td class="number" data-rate>{rate}</td>
        <td class="number" data-errors>{errors}</td>
        <td class="number" data-p99>{p99}</td>
    }
}

fn format_rate(rate: f64) -> String {
    if rate == 0.0 {
        "0".into()
    } else if rate < 10.0 {
        format!("{rate:.2}")
    } else {
        format!("{rate:.0}")
    }
}

fn target_text(deployment: &DeploymentView) -> String {
    match &deployment.namespace {
        Some(namespace) => format!("{} in {namespace}", deployment.target),
        None => deployment.target.clone(),
    }
}

fn version_text(version: &Option<String>) -> String {
    version
        .as_ref()
        .map_or("—".to_string(), |version| format!("v{version}"))
}

#[component]
fn StateBadge(state: ServingState) -> impl IntoView {
    let class = format!("status state-{}", state.as_str().to_lowercase());
    view! { <span class=class data-state=state.as_str()>{state.as_str()}</span> }
}

#[component]
pub fn DeploymentPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let model = Memo::new(move |_| params.with(|params| params.get("model").unwrap_or_default()));
    let answer_id = Memo::new(move |_| query.with(|query| query.get("answer")));
    let range = Memo::new(move |_| {
        query.with(|query| {
            query
                .get("range")
                .and_then(|range| TrafficRange::parse(&range))
                .unwrap_or_default()
        })
    });
    let detail = Resource::new(move || model.get(), get_deployment);
    let traffic = Resource::new(
        move || (model.get(), range.get()),
        |(model, range)| get_traffic(model, range),
    );
    let me = use_me();
    let answer = Resource::new(
        move || answer_id.get(),
        |id| async move {
            match id {
                Some(id) => get_try_answer(id).await.map(Some),
                None => Ok(None),
            }
        },
    );
    view! {
        <Title text="Deployment"/>
        <section class="page">
            <super::Notice/>
            <Results loading_text="Loading the deployment…">
                {move || Suspend::new(async move {
                    let detail = detail.await?;
                    let user = me.await?;
                    let may_roll_back = user.may(Action::Rollback { model: &detail.view.model });
                    let may_manage = user.may(Action::ManageDeployment { model: &detail.view.model });
                    let may_promote = user.may(Action::Promote { model: &detail.view.model });
                    let canary = detail.clone();
                    Ok::<_, AppError>(view! {
                        <LiveDeployment detail may_roll_back may_manage/>
                        <CanarySection detail=canary may_promote/>
                    })
                })}
            </Results>
            <section class="traffic" id="traffic">
                <h2>"Traffic"</h2>
                <nav class="ranges" aria-label="Range">
                    {move || TrafficRange::ALL.iter().map(|option| {
                        let current = (*option == range.get()).then_some("page");
                        view! { <a href=deployment_traffic_href(&model.get(), *option) aria-current=current>{option.as_str()}</a> }
                    }).collect_view()}
                </nav>
                <Suspense fallback=|| view! { <p class="loading">"Reading the traffic…"</p> }>
                    {move || Suspend::new(async move {
                        match traffic.await {
                            Ok(report) => view! { <LiveTraffic model=model.get_untracked() report/> }.into_any(),
                            Err(err) => view! { <p class="field-error" role="alert">{err.to_string()}</p> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let user = me.await.ok()?;
                    let model = model.get();
                    let may_test = user.may(Action::LoadTest { model: &model });
                    Some(view! { <LoadTestsSection model may_test/> })
                })}
            </Suspense>
            <TryIt model answer detail/>
        </section>
    }
}

/// Status, history and the actions that depend on them, as the server
/// rendered them, then kept current in the browser.
#[island]
fn LiveDeployment(
    detail: DeploymentDetail,
    may_roll_back: bool,
    may_manage: bool,
) -> impl IntoView {
    let model = detail.view.model.clone();
    let current = RwSignal::new(detail);
    keep_fresh(current, move || get_deployment(model.clone()));
    move || view! { <DeploymentBody detail=current.get() may_roll_back may_manage/> }
}

#[component]
fn DeploymentBody(
    detail: DeploymentDetail,
    may_roll_back: bool,
    may_manage: bool,
) -> impl IntoView {
    let view_ = detail.view;
    let can_roll_back = may_roll_back
        && detail.history.iter().any(|event| {
            event.outcome == DeploymentOutcome::Serving
                && event.version.is_some()
                && event.version != view_.serving_version
        });
    view! {
        <header class="page-header">
            <h1>{view_.model.clone()}</h1>
            <span class="live-status" aria-live="polite"><StateBadge state=view_.state/></span>
        </header>
        <p class="reason">{view_.message.clone()}</p>
        <div class="actions">
            <a href=model_href(&view_.model)>"Versions in the registry"</a>
            {may_manage.then(|| view! { <a href=format!("{}/settings", deployment_href(&view_.model))>"Settings"</a> })}
            {can_roll_back.then(|| view! {
                <a class="button danger" href=rollback_href(&view_.model)>"Roll back to the previous version…"</a>
            })}
        </div>
        <table class="data facts">
            <tbody>
                <tr><th scope="row">"Serving"</th><td data-serving>{version_text(&view_.serving_version)}</td></tr>
                <tr><th scope="row">"Production in MLflow"</th><td>{format!("{} ({})", version_text(&view_.desired_version), view_.marker)}</td></tr>
                <tr><th scope="row">"Target"</th><td>{target_text(&view_)}</td></tr>
                <tr><th scope="row">"Address"</th><td><code data-address>{view_.address.clone().unwrap_or_default()}</code></td></tr>
            </tbody>
        </table>
        {(!detail.pending_requests.is_empty()).then(|| view! {
            <h2>"Waiting for approval"</h2>
            <RequestTable requests=detail.pending_requests.clone()/>
        })}
        <h2>"Live versions"</h2>
        <LiveVersions events=detail.history.clone()/>
        <h2>"History"</h2>
        <History model=view_.model.clone() events=detail.history/>
        {detail.example_input.map(|example| {
            let action = format!("{}/try", deployment_href(&view_.model));
            view! {
                <form method="post" action=action class="inline use-example">
                    <input type="hidden" name="input" value=example/>
                    <button type="submit">"Try it with the model's input example"</button>
                </form>
            }
        })}
    }
}

/// The traffic section as the server rendered it, re-read every 10 s.
#[island]
fn LiveTraffic(model: String, report: TrafficReport) -> impl IntoView {
    let range = report.range;
    let current = RwSignal::new(report);
    keep_fresh_every(current, move || get_traffic(model.clone(), range), 10_000);
    move || view! { <TrafficBody report=current.get()/> }
}

#[component]
fn TrafficBody(report: TrafficReport) -> impl IntoView {
    let charts = report
        .charts
        .into_iter()
        .map(|chart| {
            let caption = chart.metric.clone();
            view! {
                <figure class="chart" data-chart=chart.metric>
                    <figcaption>{caption}</figcaption>
                    <div class="chart-svg" inner_html=chart.svg></div>
                </figure>
            }
        })
        .collect_view();
    view! {
        <p class="muted" data-source>"From " {report.source}</p>
        {report.note.map(|note| view! { <p class="notice" data-traffic-note>{note}</p> })}
        {data_table(
            report.versions,
            "data traffic-versions",
            &["Version", "Requests", "Errors", "p50", "p95", "p99"],
            "No requests in this range.",
            |version| view! {
                <tr data-version=version.version.clone()>
                    <td>{format!("v{}", version.version)}</td>
                    <td class="number" data-requests>{format!("{:.0}", version.requests)}</td>
                    <td class="number" data-errors>{format_percent(version.error_percent)}</td>
                    <td class="number">{format_ms(version.p50_ms)}</td>
                    <td class="number">{format_ms(version.p95_ms)}</td>
                    <td class="number" data-p99>{format_ms(version.p99_ms)}</td>
                </tr>
            },
        )}
        <div class="charts">{charts}</div>
    }
}

/// Which version served when: each version that came to serve, from then
/// until the next one did (the history is newest first).
#[component]
fn LiveVersions(events: Vec<DeploymentEvent>) -> impl IntoView {
    let mut served: Vec<&DeploymentEvent> = events
        .iter()
        .filter(|event| event.outcome == DeploymentOutcome::Serving && event.version.is_some())
        .collect();
    served.reverse();
    // Each version from when it came to serve until the next one did.
    let periods: Vec<(String, String, String, String)> = served
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let since = event.ready_ms.unwrap_or(event.started_ms);
            let until = served
                .get(index + 1)
                .map(|next| format_millis(Some(next.ready_ms.unwrap_or(next.started_ms))))
                .unwrap_or_else(|| "now".to_string());
            (
                version_text(&event.version),
                format_millis(Some(since)),
                until,
                format!("{} by {}", event.cause, event.actor),
            )
        })
        .rev()
        .collect();
    data_table(
        periods,
        "data live-versions",
        &["Version", "From", "Until", "Because of"],
        "No version has served yet.",
        |(version, since, until, because)| {
            view! {
                <tr>
                    <td>{version}</td>
                    <td>{since}</td>
                    <td>{until}</td>
                    <td>{because}</td>
                </tr>
            }
        },
    )
}

#[component]
fn History(model: String, events: Vec<DeploymentEvent>) -> impl IntoView {
    data_table(
        events,
        "data history",
        &[
            "When",
            "Version",
            "Before",
            "Trigger",
            "Who",
            "Outcome",
            "Time to ready",
            "Detail",
        ],
        "Nothing deployed yet.",
        |event| {
            let time_to_ready = event
                .ready_ms
                .map(|ready| format!("{:.1} s", (ready - event.started_ms) as f64 / 1000.0))
                .unwrap_or_else(|| "—".into());
            let version = event.version.clone().map(|version| {
                view! { <a href=version_href(&model, &version)>{format!("v{version}")}</a> }
            });
            view! {
                <tr data-cause=event.cause.clone()>
                    <td>{format_millis(Some(event.started_ms))}</td>
                    <td>{version}</td>
                    <td>{version_text(&event.previous_version)}</td>
                    <td>{event.cause.clone()}</td>
                    <td>{event.actor.clone()}</td>
                    <td data-outcome=event.outcome.as_str()>{event.outcome.as_str()}</td>
                    <td class="number">{time_to_ready}</td>
                    <td class="description">{event.message.clone()}</td>
                </tr>
            }
        },
    )
}

/// A plain POST form, so it works before hydration: the server sends the
/// body to the model, keeps the answer and comes back here with `?answer=`.
#[component]
fn TryIt(
    model: Memo<String>,
    answer: Resource<Result<Option<TryAnswer>, AppError>>,
    detail: Resource<Result<DeploymentDetail, AppError>>,
) -> impl IntoView {
    let action = move || format!("{}/try", deployment_href(&model.get()));
    view! {
        <section class="try-it">
            <h2>"Try it"</h2>
            <Suspense fallback=|| view! { <p class="loading">"Reading the answer…"</p> }>
                {move || Suspend::new(async move {
                    // KServe and Seldon Core 2 run MLServer: the open inference protocol.
                    let v2 = detail.await.is_ok_and(|detail| {
                        matches!(detail.view.target.as_str(), "kserve" | "seldon-core-2")
                    });
                    let (label, placeholder) = if v2 {
                        (
                            "Request body (JSON, as /v2/models/…/infer takes it)",
                            r#"{"parameters": {"content_type": "pd"}, "inputs": [{"name": "...", "shape": [1], "datatype": "FP64", "data": [...]}]}"#,
                        )
                    } else {
                        (
                            "Request body (JSON, as /invocations takes it)",
                            r#"{"dataframe_split": {"columns": [...], "data": [[...]]}}"#,
                        )
                    };
                    let (input, shown) = match answer.await {
                        Ok(Some(answer)) => (answer.input, answer_view(answer.outcome)),
                        Ok(None) => (String::new(), view! { <p class="muted">"Send a request to see the model's answer."</p> }.into_any()),
                        Err(err) => (String::new(), view! { <p class="field-error" role="alert">{err.to_string()}</p> }.into_any()),
                    };
                    view! {
                        <form method="post" action=action class="try-form">
                            <label for="input">{label}</label>
                            <textarea id="input" name="input" rows="6" placeholder=placeholder>{input}</textarea>
                            <button type="submit">"Send"</button>
                        </form>
                        {shown}
                    }
                })}
            </Suspense>
        </section>
    }
}

fn answer_view(outcome: Result<Prediction, String>) -> AnyView {
    match outcome {
        Ok(prediction) => view! {
            <div class="prediction" data-status=prediction.status>
                <p>{format!("HTTP {} in {:.1} ms", prediction.status, prediction.latency_ms)}</p>
                <pre>{prediction.body}</pre>
                {prediction.truncated.then(|| view! { <p class="muted">"Only the first 64 KiB of the answer are shown."</p> })}
            </div>
        }
        .into_any(),
        Err(why) => view! { <p class="field-error" role="alert">{why}</p> }.into_any(),
    }
}

#[component]
pub fn PromotePage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let model = Memo::new(move |_| params.with(|params| params.get("model").unwrap_or_default()));
    let version = Memo::new(move |_| query.with(|query| query.get("version").unwrap_or_default()));
    let preview = Resource::new(
        move || (model.get(), version.get()),
        |(model, version)| preview_promotion(model, version),
    );
    let me = use_me();
    view! {
        <Title text="Promote"/>
        <section class="page">
            <super::Notice/>
            <Results loading_text="Comparing versions…">
                {move || Suspend::new(async move {
                    let preview = preview.await?;
                    let user = me.await?;
                    let allowed = authorize(&user, Action::Promote { model: &preview.model }).map_err(|denied| denied.0);
                    Ok::<_, AppError>(view! { <Confirm preview allowed/> })
                })}
            </Results>
        </section>
    }
}

/// `/deployments/{model}/rollback`: the rollback's confirm step — which
/// version comes back, compared with Production now, and why.
#[component]
pub fn RollbackPage() -> impl IntoView {
    let params = use_params_map();
    let model = Memo::new(move |_| params.with(|params| params.get("model").unwrap_or_default()));
    let preview = Resource::new(move || model.get(), preview_rollback);
    let me = use_me();
    view! {
        <Title text="Roll back"/>
        <section class="page">
            <super::Notice/>
            <Results loading_text="Comparing versions…">
                {move || Suspend::new(async move {
                    let user = me.await?;
                    let model = model.get_untracked();
                    let shown = match preview.await? {
                        None => view! {
                            <header class="page-header"><h1>{format!("Roll back {model}")}</h1></header>
                            <p class="empty">{format!("{model} has served no earlier version to roll back to.")}</p>
                            <p><a href=deployment_href(&model)>"Back to the deployment"</a></p>
                        }
                        .into_any(),
                        Some(preview) => {
                            let allowed = authorize(&user, Action::Rollback { model: &model }).map_err(|denied| denied.0);
                            view! { <ConfirmRollback preview allowed/> }.into_any()
                        }
                    };
                    Ok::<_, AppError>(shown)
                })}
            </Results>
        </section>
    }
}

#[component]
fn ConfirmRollback(preview: PromotionPreview, allowed: Result<(), String>) -> impl IntoView {
    let target = preview.candidate.version.clone();
    let now = preview
        .current
        .as_ref()
        .map_or("Nothing is".to_string(), |current| {
            format!("v{} is", current.version)
        });
    let step = Step {
        title: format!("Roll back {} to v{target}?", preview.model),
        explanation: format!(
            "{now} Production now (marked by {}). Rolling back makes v{target}, which served \
             before it, Production again, and Slipway deploys it at once.",
            preview.marker
        ),
        action: rollback_href(&preview.model),
        // The server finds the version again: the one that served before.
        version: None,
        reason_label: "Why (kept in the audit log)",
        button: format!("Confirm: roll back to v{target}"),
        button_class: "danger",
    };
    view! { <ConfirmChange preview allowed step/> }
}

#[component]
fn Confirm(preview: PromotionPreview, allowed: Result<(), String>) -> impl IntoView {
    let (explanation, button, reason_label) = if preview.requires_approval {
        (
            format!(
                "Production is marked by {}. This model needs a second person: your request goes to an \
                 approver with this comparison, and is deployed as soon as they approve it.",
                preview.marker
            ),
            "Request approval",
            "Why this version (the approver reads it)",
        )
    } else {
        (
            format!(
                "Production is marked by {}; Slipway deploys it as soon as you confirm.",
                preview.marker
            ),
            "Confirm: promote and deploy",
            "Why (kept in the audit log)",
        )
    };
    let step = Step {
        title: format!(
            "Promote {} v{} to production?",
            preview.model, preview.candidate.version
        ),
        explanation,
        action: format!("{}/promote", deployment_href(&preview.model)),
        version: Some(preview.candidate.version.clone()),
        reason_label,
        button: button.to_string(),
        button_class: "primary",
    };
    view! { <ConfirmChange preview allowed step/> }
}

/// What a confirm step of a change of Production says and sends.
struct Step {
    title: String,
    explanation: String,
    action: String,
    version: Option<String>,
    reason_label: &'static str,
    button: String,
    button_class: &'static str,
}

/// The confirm step of a change of Production (promote, roll back): the
/// evidence side by side, then a plain form with the reason.
#[component]
fn ConfirmChange(
    preview: PromotionPreview,
    allowed: Result<(), String>,
    step: Step,
) -> impl IntoView {
    // Sent back with the form: if Production moves before it arrives, the
    // server refuses it instead of overriding a change this page never showed.
    let expected = preview
        .current
        .as_ref()
        .map(|current| current.version.clone())
        .unwrap_or_default();
    let cancel = deployment_href(&preview.model);
    let Step {
        title,
        explanation,
        action,
        version,
        reason_label,
        button,
        button_class,
    } = step;
    view! {
        <header class="page-header"><h1>{title}</h1></header>
        <p class="reason">{explanation}</p>
        <Evidence preview/>
        {match allowed {
            Ok(()) => view! {
                <form method="post" action=action class="promote-form">
                    {version.map(|version| view! { <input type="hidden" name="version" value=version/> })}
                    <input type="hidden" name="expected_version" value=expected/>
                    <label for="reason">{reason_label}</label>
                    <textarea id="reason" name="reason" rows="3"></textarea>
                    <div class="actions">
                        <button type="submit" class=button_class>{button}</button>
                        <a href=cancel>"Cancel"</a>
                    </div>
                </form>
            }
            .into_any(),
            Err(reason) => view! { <NotAllowed reason/> }.into_any(),
        }}
    }
}
