//! A deployment's canary: its state, stable and canary side by side, its
//! checks (kept current in the browser), and the plain POST forms that
//! start, re-weight, promote and abort it (they work before hydration; they
//! sit outside the live part so a refresh never clears what is typed).

use leptos::prelude::*;

use super::list::data_table;
use super::live::keep_fresh;
use super::{format_millis, format_ms, format_percent};
use crate::model::{
    CanaryAnalysis, DeploymentDetail, RolloutCheck, RolloutMode, RolloutPanel, RolloutState,
    SideNumbers,
};
use crate::routes::canary_href;
use crate::server_fns::get_rollout_panel;

/// The canary section: what the deployment's canary is doing, and what
/// the user may do about it.
#[component]
pub fn CanarySection(detail: DeploymentDetail, may_promote: bool) -> impl IntoView {
    let model = detail.view.model.clone();
    let active = detail
        .rollout
        .as_ref()
        .filter(|panel| panel.rollout.state.is_active())
        .map(|panel| panel.rollout.clone());
    let forms = match (may_promote, active) {
        (false, _) => None,
        (true, Some(rollout)) if rollout.state == RolloutState::Progressing => {
            Some(view! { <ActiveForms model=model.clone() weight=rollout.weight canary=rollout.canary_version/> }.into_any())
        }
        (true, Some(_)) => None,
        (true, None) => Some(view! { <StartForm model=model.clone() requires_approval=detail.requires_approval/> }.into_any()),
    };
    view! {
        <section class="canary" id="canary">
            <h2>"Canary"</h2>
            <LiveCanary model panel=detail.rollout/>
            {forms}
        </section>
    }
}

#[island]
fn LiveCanary(model: String, panel: Option<RolloutPanel>) -> impl IntoView {
    let current = RwSignal::new(panel);
    keep_fresh(current, move || {
        let model = model.clone();
        async move { get_rollout_panel(model).await }
    });
    move || {
        match current.get() {
        None => view! { <p class="muted" data-canary-state="none">"No canary yet: start one below to send a share of the requests to another version."</p> }.into_any(),
        Some(panel) => view! { <PanelBody panel/> }.into_any(),
    }
    }
}

#[component]
fn PanelBody(panel: RolloutPanel) -> impl IntoView {
    let rollout = panel.rollout;
    let stable = version_words(rollout.stable_version.as_deref());
    let sentence = match rollout.state {
        RolloutState::Progressing if rollout.mode == RolloutMode::Shadow => format!(
            "v{} sees a copy of {} % of the requests as a shadow while {stable} answers them all (its answers go nowhere); started by {} at {}.",
            rollout.canary_version,
            rollout.weight,
            rollout.started_by,
            format_millis(Some(rollout.started_ms))
        ),
        RolloutState::Progressing => format!(
            "v{} takes {} % of the requests beside {stable}; started by {} at {}.",
            rollout.canary_version,
            rollout.weight,
            rollout.started_by,
            format_millis(Some(rollout.started_ms))
        ),
        RolloutState::Promoting => format!(
            "v{} is Production now; the split holds until the stable side serves it.",
            rollout.canary_version
        ),
        RolloutState::Succeeded | RolloutState::Aborted => format!(
            "The last canary, v{} beside {stable}, {}: {}",
            rollout.canary_version, rollout.state, rollout.outcome
        ),
    };
    let analysis = rollout.analysis.as_ref().map(|analysis| {
        view! {
            <p class="muted" data-canary-analysis>
                {analysis_words(analysis)}
                {format!(" Failed checks so far: {} of {} allowed.", rollout.failed_checks, analysis.failed_checks_limit)}
            </p>
        }
    });
    let sides: Vec<(&'static str, SideNumbers)> = [
        ("stable", panel.stable),
        (rollout.mode.as_str(), panel.canary),
    ]
    .into_iter()
    .filter_map(|(side, numbers)| numbers.map(|numbers| (side, numbers)))
    .collect();
    let sides_table = (!sides.is_empty()).then(|| {
        data_table(
            sides,
            "data canary-sides",
            &[
                "",
                "Version",
                "Requests",
                "Requests/s",
                "Errors",
                "p50",
                "p95",
                "p99",
            ],
            "",
            |(side, numbers)| {
                view! {
                    <tr data-side=side>
                        <th scope="row">{side}</th>
                        <td>{format!("v{}", numbers.version)}</td>
                        <td class="number" data-requests>{numbers.requests}</td>
                        <td class="number">{format!("{:.2}", numbers.over_window.requests_per_second)}</td>
                        <td class="number" data-errors>{format_percent(numbers.over_window.error_percent)}</td>
                        <td class="number">{format_ms(numbers.over_window.p50_ms)}</td>
                        <td class="number">{format_ms(numbers.over_window.p95_ms)}</td>
                        <td class="number" data-p99>{format_ms(numbers.over_window.p99_ms)}</td>
                    </tr>
                }
            },
        )
    });
    let active = rollout.state.is_active();
    view! {
        <p class="reason" data-canary-state=rollout.state.as_str() data-canary-weight=rollout.weight>{sentence}</p>
        {analysis}
        {panel.canary_objects.map(|said| view! { <p class="muted" data-canary-objects>{format!("The operator: {said}.")}</p> })}
        {sides_table}
        {active.then(|| view! { <p class="muted" data-canary-sides-note>{panel.sides_note}</p> })}
        {(!panel.checks.is_empty()).then(|| view! { <Checks checks=panel.checks/> })}
    }
}

#[component]
fn Checks(checks: Vec<RolloutCheck>) -> impl IntoView {
    view! {
        <h3>"Checks"</h3>
        {data_table(
            checks,
            "data canary-checks",
            &["When", "Share", "Answers", "Success", "p99", "Query", "Verdict", "Detail"],
            "",
            |check| view! {
                <tr data-verdict=check.verdict.as_str()>
                    <td>{format_millis(Some(check.at_ms))}</td>
                    <td class="number">{format!("{} %", check.weight)}</td>
                    <td class="number">{check.requests}</td>
                    <td class="number">{format_percent(check.success_percent)}</td>
                    <td class="number">{format_ms(check.p99_ms)}</td>
                    <td class="number" data-query-value>{check.query_value.map(|value| value.to_string()).unwrap_or_else(|| "—".into())}</td>
                    <td>{check.verdict.as_str()}</td>
                    <td class="description">{check.detail}</td>
                </tr>
            },
        )}
    }
}

/// Re-weight, promote fully, abort.
#[component]
fn ActiveForms(model: String, weight: u8, canary: String) -> impl IntoView {
    let base = canary_href(&model);
    view! {
        <div class="canary-forms">
            <form method="post" action=format!("{base}/weight") class="inline">
                <label for="canary-weight">"Share of the requests (%)"</label>
                <input id="canary-weight" name="weight" type="number" min="1" max="99" value=weight.to_string()/>
                <button type="submit">"Set the share"</button>
            </form>
            <form method="post" action=format!("{base}/promote") class="inline">
                <label for="canary-promote-reason">"Why (kept in the audit log)"</label>
                <input id="canary-promote-reason" name="reason" type="text"/>
                <button type="submit" class="primary">{format!("Promote v{canary} fully")}</button>
            </form>
            <form method="post" action=format!("{base}/abort") class="inline">
                <label for="canary-abort-reason">"Why abort (required)"</label>
                <input id="canary-abort-reason" name="reason" type="text"/>
                <button type="submit" class="danger">"Abort the canary"</button>
            </form>
        </div>
    }
}

/// A version and its share; with a check interval, the analysis the
/// leader runs it by.
#[component]
fn StartForm(model: String, requires_approval: bool) -> impl IntoView {
    let field = |id: &'static str, label: &'static str, hint: &'static str| {
        view! {
            <div class="field">
                <label for=id>{label}</label>
                <input id=id name=id type="text" inputmode="decimal" placeholder=hint/>
            </div>
        }
    };
    view! {
        <form method="post" action=canary_href(&model) class="canary-start">
            <div class="field">
                <label for="version">"Version"</label>
                <input id="version" name="version" type="text" placeholder="7"/>
            </div>
            <div class="field">
                <label for="mode">"How"</label>
                <select id="mode" name="mode">
                    <option value="canary" selected>"Canary: it answers its share"</option>
                    <option value="shadow">"Shadow: it sees a copy of its share; the stable version answers"</option>
                </select>
            </div>
            <div class="field">
                <label for="weight">"Its share of the requests (%)"</label>
                <input id="weight" name="weight" type="number" min="1" max="100" value="20"/>
            </div>
            <fieldset>
                <legend>"Analysis (optional: leave the interval empty to step, promote and abort by hand)"</legend>
                {field("interval_secs", "Check every (seconds)", "60")}
                {field("step_weight", "Step by (%) after each passed check; 0 holds the share", "0")}
                {field("max_weight", "Largest share (%), promoted after a passed check there", "50")}
                {field("min_success_percent", "Least success rate (%)", "99")}
                {field("max_p99_ms", "p99 at most (ms)", "no limit")}
                {field("failed_checks_limit", "Failed checks before it is aborted", "3")}
                <div class="field wide">
                    <label for="query">"A gate of your own: a PromQL query giving one number (needs Prometheus)"</label>
                    <input id="query" name="query" type="text" spellcheck="false"
                        placeholder=r#"sum(rate(my_errors_total{version="{{version}}"}[{{interval}}]))"#/>
                </div>
                {field("query_min", "Its least value", "none")}
                {field("query_max", "Its largest value", "none")}
                <p class="muted">"In the query, {{version}} is the canary's version, {{interval}} the check interval, {{namespace}} and {{name}} the deployment's object's."</p>
            </fieldset>
            <div class="field wide">
                <label for="canary-reason">{if requires_approval {
                    "Why (required: this deployment requires approval, so an approver decides whether it starts)"
                } else {
                    "Why (kept in the audit log)"
                }}</label>
                <input id="canary-reason" name="reason" type="text"/>
            </div>
            <button type="submit" class="primary">{if requires_approval { "Ask to start the canary" } else { "Start the canary" }}</button>
        </form>
    }
}

fn version_words(version: Option<&str>) -> String {
    version.map_or("no version".into(), |version| format!("v{version}"))
}

pub(super) fn analysis_words(analysis: &CanaryAnalysis) -> String {
    let schedule = if analysis.step_weight > 0 {
        format!(
            "Checked every {} s; each passed check adds {} % up to {} %, where a passed check promotes it.",
            analysis.interval_secs, analysis.step_weight, analysis.max_weight
        )
    } else {
        format!(
            "Checked every {} s; the share stays as set.",
            analysis.interval_secs
        )
    };
    let p99 = analysis
        .max_p99_ms
        .map(|ms| format!(" and a p99 of at most {ms} ms"))
        .unwrap_or_default();
    let query = analysis
        .query
        .as_ref()
        .map(|gate| {
            let bounds = match (gate.min, gate.max) {
                (Some(min), Some(max)) => format!("between {min} and {max}"),
                (Some(min), None) => format!("at least {min}"),
                (None, Some(max)) => format!("at most {max}"),
                (None, None) => String::new(),
            };
            format!(" The query {} {bounds}.", gate.query)
        })
        .unwrap_or_default();
    format!(
        "{schedule} Gates: a success rate of at least {} %{p99}.{query}",
        analysis.min_success_percent
    )
}
