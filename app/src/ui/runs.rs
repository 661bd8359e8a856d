use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::list::{Pager, Results, SearchForm, SortHeader};
use super::run::MAX_COMPARED;
use super::{format_duration, format_metric, format_millis, paging::ListState};
use crate::error::AppError;
use crate::model::{RunQuery, RunRow, RunsPage};
use crate::routes::{experiment_href, run_href};
use crate::server_fns::{get_experiment, search_runs};

const KEPT: &[&str] = &["filter", "order", "dir", "col"];

/// `/experiments/{id}`: the experiment's runs. The header and the runs load
/// separately, so a slow sort or a bad filter never blanks the page.
#[component]
pub fn ExperimentRunsPage() -> impl IntoView {
    let path_params = use_params_map();
    let query_params = use_query_map();
    let experiment_id =
        Memo::new(move |_| path_params.with(|params| params.get("id").unwrap_or_default()));
    let state = Memo::new(move |_| {
        let path = experiment_href(&experiment_id.get());
        query_params.with(|params| ListState::from_params(path, KEPT, params))
    });
    let experiment = Resource::new(move || experiment_id.get(), get_experiment);
    let runs = Resource::new(
        move || (experiment_id.get(), state.get()),
        |(id, state)| async move { search_runs(run_query(id, &state?)?).await },
    );

    view! {
        <Title text=format!("Experiment {}", experiment_id.get_untracked())/>
        <section class="page">
            <nav class="crumbs"><a href="/experiments">"Experiments"</a></nav>
            <Suspense fallback=move || view! { <h1>{move || format!("Experiment {}", experiment_id.get())}</h1> }>
                <ErrorBoundary fallback=|errors| view! { <super::ErrorList errors/> }>
                    {move || Suspend::new(async move {
                        experiment.await.map(|experiment| {
                            let deleted = experiment.lifecycle_stage == "deleted";
                            view! {
                                <Title text=experiment.name.clone()/>
                                <h1>{experiment.name}</h1>
                                {deleted.then(|| view! { <p class="notice">"This experiment is deleted."</p> })}
                            }
                        })
                    })}
                </ErrorBoundary>
            </Suspense>
            <SearchForm state param="filter" placeholder="metrics.auc > 0.9 AND params.optimizer = 'adam'"/>
            <Results loading_text="Loading runs…">
                {move || Suspend::new(async move {
                    let page = runs.await?;
                    let state = state.get_untracked()?;
                    Ok::<_, AppError>(view! { <RunList page state/> })
                })}
            </Results>
        </section>
    }
}

fn run_query(experiment_id: String, state: &ListState) -> Result<RunQuery, AppError> {
    let descending = match state.get("dir") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(AppError::InvalidInput(format!(
                "Sort direction must be asc or desc, not \"{other}\""
            )));
        }
    };
    Ok(RunQuery {
        experiment_id,
        filter: state.get("filter").map(str::to_string),
        order_by: state.get("order").map(str::to_string),
        descending,
        page_token: state.page_token.clone(),
        page_size: state.page_size(),
    })
}

#[component]
fn RunList(page: RunsPage, state: ListState) -> impl IntoView {
    if page.runs.is_empty() {
        let message = match state.get("filter") {
            Some(filter) => view! { <p class="empty">"No runs match " <code>{filter.to_string()}</code> "."</p> }.into_any(),
            None => view! { <p class="empty">"No runs in this experiment yet."</p> }.into_any(),
        };
        return view! { {message} <Pager state next_page_token=page.next_page_token/> }.into_any();
    }
    // `col` names the param and metric columns to show; none means all.
    let chosen: Vec<&str> = state.get_all("col").collect();
    let shown = |prefix: &str, keys: &[String]| -> Vec<String> {
        keys.iter()
            .filter(|key| chosen.is_empty() || chosen.contains(&format!("{prefix}{key}").as_str()))
            .cloned()
            .collect()
    };
    let (shown_params, shown_metrics) = (
        shown("params.", &page.param_keys),
        shown("metrics.", &page.metric_keys),
    );
    let chooser = view! {
        <ColumnChooser state=state.clone() param_keys=page.param_keys.clone() metric_keys=page.metric_keys.clone() shown_params=shown_params.clone() shown_metrics=shown_metrics.clone()/>
    };
    let attribute_headers = [("Run", "run_name"), ("Status", "status"), ("User", "user_id"), ("Started", "start_time")]
        .into_iter()
        .map(|(label, column)| view! { <SortHeader state=state.clone() label=label.to_string() column=column.to_string() default_column="start_time" descending_first=column.ends_with("_time")/> })
        .collect_view();
    let param_headers = shown_params
        .iter()
        .map(|key| view! { <SortHeader state=state.clone() label=key.clone() column=format!("params.{key}") default_column="start_time" class="param"/> })
        .collect_view();
    let metric_headers = shown_metrics
        .iter()
        .map(|key| view! { <SortHeader state=state.clone() label=key.clone() column=format!("metrics.{key}") default_column="start_time" descending_first=true class="metric"/> })
        .collect_view();
    let rows = page
        .runs
        .iter()
        .map(|run| run_row(run, &shown_params, &shown_metrics))
        .collect_view();
    view! {
        {chooser}
        <form method="get" action="/compare" class="compare-form">
            <p class="actions">
                <button type="submit">"Compare selected"</button>
                <span class="muted">{format!(" 2 to {MAX_COMPARED} runs")}</span>
            </p>
        <div class="table-scroll">
            <table class="data runs">
                <thead>
                    <tr>
                        <th scope="col" class="select"><span class="visually-hidden">"Select"</span></th>
                        {attribute_headers}
                        <th scope="col">"Duration"</th>
                        {param_headers}
                        {metric_headers}
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        </form>
        <Pager state next_page_token=page.next_page_token/>
    }
    .into_any()
}

/// Which param and metric columns the table shows: a GET form, so it works
/// before hydration, that keeps the filter and sort.
#[component]
fn ColumnChooser(
    state: ListState,
    param_keys: Vec<String>,
    metric_keys: Vec<String>,
    shown_params: Vec<String>,
    shown_metrics: Vec<String>,
) -> impl IntoView {
    let carried = state.carried_except("col");
    let boxes = |prefix: &'static str, keys: Vec<String>, shown: Vec<String>| {
        keys.into_iter()
            .map(|key| {
                let checked = shown.contains(&key);
                view! {
                    <label class="column-choice">
                        <input type="checkbox" name="col" value=format!("{prefix}{key}") checked=checked/>
                        {key}
                    </label>
                }
            })
            .collect_view()
    };
    view! {
        <details class="columns">
            <summary>"Columns"</summary>
            <form method="get" action=state.path.clone()>
                {carried.into_iter().map(|(key, value)| view! { <input type="hidden" name=key value=value/> }).collect_view()}
                <fieldset><legend>"Parameters"</legend>{boxes("params.", param_keys, shown_params)}</fieldset>
                <fieldset><legend>"Metrics"</legend>{boxes("metrics.", metric_keys, shown_metrics)}</fieldset>
                <button type="submit">"Show columns"</button>
            </form>
        </details>
    }
}

fn run_row(run: &RunRow, param_keys: &[String], metric_keys: &[String]) -> impl IntoView + use<> {
    let params = param_keys
        .iter()
        .map(|key| {
            let value = run
                .params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            view! { <td class="param">{value}</td> }
        })
        .collect_view();
    let metrics = metric_keys
        .iter()
        .map(|key| {
            let value = run
                .metrics
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| format_metric(*v))
                .unwrap_or_default();
            view! { <td class="metric">{value}</td> }
        })
        .collect_view();
    let name = run.display_name().to_string();
    view! {
        <tr>
            <td class="select">
                <input type="checkbox" name="runs" value=run.run_id.clone() aria-label=format!("Select {name}")/>
            </td>
            <td class="name"><a href=run_href(&run.run_id)>{name.clone()}</a></td>
            <td><span class=format!("status status-{}", run.status.to_ascii_lowercase())>{run.status.clone()}</span></td>
            <td>{run.user.clone()}</td>
            <td>{format_millis(run.start_time)}</td>
            <td>{format_duration(run.start_time, run.end_time)}</td>
            {params}
            {metrics}
        </tr>
    }
}
