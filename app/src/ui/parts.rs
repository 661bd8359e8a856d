//! Parts several pages show: a promotion's evidence, the promotion
//! requests table, a run's parameters and metrics, a signature, a form field.

use leptos::prelude::*;

use super::list::data_table;
use super::{format_metric, format_millis};
use crate::model::{PromotionPreview, PromotionRequest, RequestState, VersionSummary};
use crate::routes::{approval_href, deployment_href, run_href, version_href};

#[component]
pub fn RequestTable(requests: Vec<PromotionRequest>) -> impl IntoView {
    let mut requests = requests;
    requests.sort_by_key(|request| request.state != RequestState::Pending);
    data_table(
        requests,
        "data requests",
        &[
            "Asked",
            "Model",
            "Version",
            "Asks for",
            "By",
            "Why",
            "State",
            "Decided by",
        ],
        "No promotion requests.",
        |request| {
            view! {
                <tr data-request=request.id.clone()>
                    <td><a href=approval_href(&request.id)>{format_millis(Some(request.requested_ms))}</a></td>
                    <td><a href=deployment_href(&request.model)>{request.model.clone()}</a></td>
                    <td>{(!request.version.is_empty()).then(|| view! {
                        <a href=version_href(&request.model, &request.version)>{format!("v{}", request.version)}</a>
                    })}</td>
                    <td data-asks-for>{match (&request.settings, &request.rollout) {
                        (Some(_), _) => "a settings change".to_string(),
                        (None, Some(asked)) => format!("a {} at {} %", asked.mode, asked.weight),
                        (None, None) => "a promotion".to_string(),
                    }}</td>
                    <td>{request.requested_by.clone()}</td>
                    <td class="description">{request.reason.clone()}</td>
                    <td><RequestBadge state=request.state/></td>
                    <td>{request.decided_by.clone().unwrap_or_default()}</td>
                </tr>
            }
        },
    )
}

#[component]
pub fn RequestBadge(state: RequestState) -> impl IntoView {
    let class = format!("status request-{}", state.as_str());
    view! { <span class=class data-request-state=state.as_str()>{state.as_str()}</span> }
}

/// The candidate against what is in production: metrics, parameters,
/// signature and runs. Shown before a promotion, and frozen in a request.
#[component]
pub fn Evidence(preview: PromotionPreview) -> impl IntoView {
    let current = preview.current.as_ref();
    let candidate = Some(&preview.candidate);
    let metric_keys = sorted_keys(
        preview
            .candidate
            .metrics
            .iter()
            .chain(current.iter().flat_map(|current| current.metrics.iter()))
            .map(|(key, _)| key.clone()),
    );
    let param_keys = sorted_keys(
        preview
            .candidate
            .params
            .iter()
            .chain(current.iter().flat_map(|current| current.params.iter()))
            .map(|(key, _)| key.clone()),
    );
    let metric = |summary: &Option<&VersionSummary>, key: &str| {
        summary
            .and_then(|summary| summary.metrics.iter().find(|(name, _)| name == key))
            .map_or("—".to_string(), |(_, value)| format!("{value:.4}"))
    };
    let param = |summary: &Option<&VersionSummary>, key: &str| {
        summary
            .and_then(|summary| summary.params.iter().find(|(name, _)| name == key))
            .map_or("—".to_string(), |(_, value)| value.clone())
    };
    let metric_rows = metric_keys
        .iter()
        .map(|key| {
            view! {
                <tr>
                    <th scope="row">{key.clone()}</th>
                    <td class="metric">{metric(&current, key)}</td>
                    <td class="metric">{metric(&candidate, key)}</td>
                </tr>
            }
        })
        .collect_view();
    let param_rows = param_keys
        .iter()
        .map(|key| {
            let (before, after) = (param(&current, key), param(&candidate, key));
            let class = if current.is_some() && before != after {
                "differs"
            } else {
                ""
            };
            view! {
                <tr class=class>
                    <th scope="row">{key.clone()}</th>
                    <td>{before}</td>
                    <td>{after}</td>
                </tr>
            }
        })
        .collect_view();
    let run_link = |summary: Option<&VersionSummary>| {
        summary
            .filter(|summary| !summary.run_id.is_empty())
            .map(|summary| {
                view! { <a href=run_href(&summary.run_id)>"run"</a> }
            })
    };
    let signature = |summary: Option<&VersionSummary>| {
        summary
            .and_then(|summary| summary.signature.clone())
            .unwrap_or_else(|| "—".to_string())
    };
    let now_heading = current.map_or("Now: nothing".to_string(), |c| {
        format!("Now: v{} ({})", c.version, c.stage)
    });
    let new_heading = format!(
        "New: v{} ({})",
        preview.candidate.version, preview.candidate.stage
    );
    view! {
        <table class="data compare confirm evidence">
            <thead>
                <tr>
                    <th scope="col">"Metric"</th>
                    <th scope="col">{now_heading.clone()} " " {run_link(current)}</th>
                    <th scope="col">{new_heading.clone()} " " {run_link(candidate)}</th>
                </tr>
            </thead>
            <tbody>{metric_rows}</tbody>
            <thead>
                <tr><th scope="col">"Parameter"</th><th scope="col"></th><th scope="col"></th></tr>
            </thead>
            <tbody>{param_rows}</tbody>
            <tbody>
                <tr class="signature">
                    <th scope="row">"Signature"</th>
                    <td><pre>{signature(current)}</pre></td>
                    <td><pre>{signature(candidate)}</pre></td>
                </tr>
            </tbody>
        </table>
    }
}

fn sorted_keys(keys: impl Iterator<Item = String>) -> Vec<String> {
    let mut keys: Vec<String> = keys.collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A run's parameters and latest metrics side by side, under `titles`.
#[component]
pub fn ParamsAndMetrics(
    params: Vec<(String, String)>,
    metrics: Vec<(String, f64)>,
    titles: (&'static str, &'static str),
) -> impl IntoView {
    let params = params
        .into_iter()
        .map(|(key, value)| view! { <tr><th scope="row">{key}</th><td>{value}</td></tr> })
        .collect_view();
    let metrics = metrics
        .into_iter()
        .map(|(key, value)| view! { <tr><th scope="row">{key}</th><td class="metric">{format_metric(value)}</td></tr> })
        .collect_view();
    view! {
        <div class="two-columns">
            <div>
                <h2>{titles.0}</h2>
                <table class="data kv"><tbody>{params}</tbody></table>
            </div>
            <div>
                <h2>{titles.1}</h2>
                <table class="data kv"><tbody>{metrics}</tbody></table>
            </div>
        </div>
    }
}

/// A model signature's columns with their types (`signature_columns`).
#[component]
pub fn SignatureTable(columns: Vec<(String, String, String)>) -> impl IntoView {
    let rows = columns
        .into_iter()
        .map(|(part, name, kind)| view! { <tr><td>{part}</td><th scope="row">{name}</th><td class="mono">{kind}</td></tr> })
        .collect_view();
    view! {
        <table class="data signature">
            <thead><tr><th scope="col">""</th><th scope="col">"Column"</th><th scope="col">"Type"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// A labelled form field with its error underneath.
#[component]
pub fn Field(
    #[prop(into)] name: String,
    #[prop(into)] label: String,
    error: Option<String>,
    children: Children,
) -> impl IntoView {
    let error_id = format!("{name}-error");
    let invalid = error.is_some();
    view! {
        <div class="field" class:invalid=invalid data-field=name.clone()>
            <label for=name.clone()>{label}</label>
            {children()}
            {error.map(|error| view! { <p class="field-error" id=error_id>{error}</p> })}
        </div>
    }
}
