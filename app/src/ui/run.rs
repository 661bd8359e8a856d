use std::collections::BTreeSet;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::list::Results;
use super::parts::{ParamsAndMetrics, SignatureTable};
use super::{format_duration, format_metric, format_millis, user_tags};
use crate::access::{Role, holds_anywhere};
use crate::error::AppError;
use crate::model::{
    ArtifactEntry, ArtifactOwner, ArtifactPreview, ChartOptions, ComparePlots, MetricChart,
    PreviewContent, RegistrableModel, RunDetail, signature_columns,
};
use crate::routes::{
    ARTIFACTS_ANCHOR, artifact_href, experiment_href, logged_model_href, run_href, version_href,
};
use crate::server_fns::{comparison_plots, get_run, list_artifacts, preview_artifact, run_charts};

pub const MAX_COMPARED: usize = 10;

/// The charts' options, as the page's query sets them.
fn chart_options() -> Memo<Result<ChartOptions, AppError>> {
    let query = use_query_map();
    Memo::new(move |_| {
        query.with(|query| {
            ChartOptions::from_query(
                query.get("axis").as_deref(),
                query.get("scale").as_deref(),
                query.get("smooth").as_deref(),
                (query.get("from").as_deref(), query.get("to").as_deref()),
            )
        })
    })
}

/// `/runs/{id}`: one run — params, metrics and their charts, tags, artifacts,
/// and what it produced (logged models, registry versions).
#[component]
pub fn RunPage() -> impl IntoView {
    let path_params = use_params_map();
    let query = use_query_map();
    let run_id =
        Memo::new(move |_| path_params.with(|params| params.get("id").unwrap_or_default()));
    let options = chart_options();
    let dir =
        Memo::new(move |_| query.with(|query| query.get("dir").filter(|dir| !dir.is_empty())));
    // `?model=m-…` browses a logged model's artifacts instead of the run's.
    let model = Memo::new(move |_| {
        query.with(|query| query.get("model").filter(|model| !model.is_empty()))
    });
    let detail = Resource::new(move || run_id.get(), get_run);
    let me = super::use_me();
    let charts = Resource::new(
        move || (run_id.get(), options.get()),
        |(id, options)| async move { run_charts(vec![id], options?).await },
    );
    let artifacts = Resource::new(
        move || (run_id.get(), model.get(), dir.get()),
        |(id, model, dir)| {
            let owner = model.map_or(ArtifactOwner::Run(id), ArtifactOwner::LoggedModel);
            list_artifacts(owner, dir)
        },
    );

    view! {
        // Read once: the head is rendered after the page, when its reactive
        // values may be disposed (a closure here panicked), and no page is
        // routed in the browser, so a title never has to change.
        <Title text=format!("Run {}", run_id.get_untracked())/>
        <section class="page">
            <super::Notice/>
            <Results loading_text="Loading the run…">
                {move || Suspend::new(async move {
                    let detail = detail.await?;
                    // The model's name is typed in the form: the server
                    // decides for that name.
                    let may_register = holds_anywhere(&me.await?, Role::Trainer);
                    Ok::<_, AppError>(view! { <RunSummary detail may_register/> })
                })}
            </Results>
            <h2>"Metric charts"</h2>
            <Results loading_text="Drawing charts…">
                {move || Suspend::new(async move {
                    charts.await.map(|charts| view! { <Charts charts base=move || run_href(&run_id.get())/> })
                })}
            </Results>
            <h2 id=ARTIFACTS_ANCHOR>"Artifacts"</h2>
            <Results loading_text="Listing artifacts…">
                {move || Suspend::new(async move {
                    let entries = artifacts.await?;
                    Ok::<_, AppError>(view! {
                        <Artifacts
                            run_id=run_id.get_untracked()
                            model=model.get_untracked()
                            dir=dir.get_untracked()
                            entries
                        />
                    })
                })}
            </Results>
        </section>
    }
}

#[component]
fn RunSummary(detail: RunDetail, may_register: bool) -> impl IntoView {
    let run = detail.run;
    let register = (may_register && !detail.registrable.is_empty()).then(|| {
        let suggested = detail
            .registered_versions
            .first()
            .map(|version| version.model.clone())
            .unwrap_or_default();
        view! { <RegisterForm run_id=run.run_id.clone() models=detail.registrable.clone() suggested/> }
    });
    let name = run.display_name().to_string();
    let tag = |key: &str| {
        detail
            .tags
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
    };
    // What `mlflow run` (or a Slipway launch) records of the project it ran.
    let project = tag("mlflow.source.name")
        .filter(|_| tag("mlflow.source.type").as_deref() == Some("PROJECT"))
        .map(|project| match tag("mlflow.project.entryPoint") {
            Some(entry_point) => format!("{project} · {entry_point}"),
            None => project,
        });
    let environment = tag("mlflow.project.env");
    let versions = detail
        .registered_versions
        .iter()
        .map(|version| {
            let href = version_href(&version.model, &version.version);
            view! { <li><a href=href>{format!("{} v{}", version.model, version.version)}</a> " " <span class="muted">{version.stage.clone()}</span></li> }
        })
        .collect_view();
    view! {
        <Title text=name.clone()/>
        <nav class="crumbs"><a href="/experiments">"Experiments"</a> " / " <a href=experiment_href(&detail.experiment_id)>{detail.experiment_name.clone().unwrap_or_else(|| format!("Experiment {}", detail.experiment_id))}</a></nav>
        <header class="page-header"><h1>{name}</h1></header>
        <dl class="facts">
            <dt>"Status"</dt><dd><span class=format!("status status-{}", run.status.to_ascii_lowercase())>{run.status.clone()}</span></dd>
            <dt>"Run ID"</dt><dd class="mono">{run.run_id.clone()}</dd>
            <dt>"User"</dt><dd>{run.user.clone()}</dd>
            {project.map(|project| view! { <dt>"Project"</dt><dd>{project}</dd> })}
            {environment.map(|environment| view! { <dt>"Environment"</dt><dd>{environment}</dd> })}
            <dt>"Started"</dt><dd>{format_millis(run.start_time)}</dd>
            <dt>"Duration"</dt><dd>{format_duration(run.start_time, run.end_time)}</dd>
            <dt>"Artifacts at"</dt><dd><code>{detail.artifact_uri.clone()}</code></dd>
            <dt>"Tags"</dt><dd>{user_tags(&detail.tags)}</dd>
            <dt>"Logged models"</dt>
            <dd class="mono">
                {detail
                    .logged_models
                    .iter()
                    .map(|model| {
                        let href = logged_model_href(&run.run_id, model);
                        view! { <a href=href>{model.clone()}</a> " " }
                    })
                    .collect_view()}
            </dd>
            <dt>"Registered as"</dt><dd><ul class="plain">{versions}</ul></dd>
        </dl>
        {register}
        <ParamsAndMetrics
            params=run.params.clone()
            metrics=run.metrics.clone()
            titles=("Parameters", "Metrics (latest)")
        />
    }
}

/// Makes a registry version of one of the run's models, in a new or an
/// existing registered model.
#[component]
fn RegisterForm(run_id: String, models: Vec<RegistrableModel>, suggested: String) -> impl IntoView {
    let action = format!("{}/register", run_href(&run_id));
    let choices = models
        .into_iter()
        .map(|model| view! { <option value=model.source>{model.label}</option> })
        .collect_view();
    view! {
        <form method="post" action=action class="inline register" data-register-form>
            <label for="register-source">"Register"</label>
            <select id="register-source" name="source">{choices}</select>
            <label for="register-model">"as a version of"</label>
            <input id="register-model" name="model" value=suggested placeholder="registered model name" required maxlength="256"/>
            <button type="submit" class="primary">"Register model"</button>
        </form>
    }
}

/// Links that redraw the charts: x axis, y scale, smoothing. Links, so
/// they work without JavaScript; the current choice is marked.
#[component]
fn ChartSwitches(base: impl Fn() -> String + Send + Sync + Copy + 'static) -> impl IntoView {
    let query = use_query_map();
    let switch = move |label: &'static str,
                       param: &'static str,
                       choices: &'static [(&'static str, &'static str)]| {
        let links = choices
            .iter()
            .enumerate()
            .map(|(index, (value, text))| {
                let href = move || {
                    query.with(|query| {
                        let mut pairs = form_urlencoded::Serializer::new(String::new());
                        for (key, value) in query.into_iter().filter(|(key, _)| *key != param) {
                            pairs.append_pair(key, value);
                        }
                        pairs.append_pair(param, value);
                        format!("{}?{}", base(), pairs.finish())
                    })
                };
                // The first choice is what no parameter means.
                let current = move || {
                    query.with(|query| match query.get(param) {
                        Some(chosen) => chosen == *value,
                        None => index == 0,
                    })
                };
                view! { <a href=href aria-current=move || current().then_some("true")>{*text}</a> }
            })
            .collect_view();
        view! { <span class="switch-group">{label} ": " {links}</span> }
    };
    // Zoom: a plain GET form for the x range, carrying everything else.
    let zoom = move || {
        query.with(|query| {
            let carried = query
                .into_iter()
                .filter(|(key, _)| !matches!(key.as_ref(), "from" | "to"))
                .map(|(key, value)| view! { <input type="hidden" name=key.to_string() value=value.to_string()/> })
                .collect_view();
            let (from, to) = (query.get("from").unwrap_or_default(), query.get("to").unwrap_or_default());
            view! {
                <form method="get" action=base() class="inline zoom">
                    {carried}
                    <label for="chart-from">"x from"</label>
                    <input id="chart-from" name="from" inputmode="decimal" size="6" value=from/>
                    <label for="chart-to">"to"</label>
                    <input id="chart-to" name="to" inputmode="decimal" size="6" value=to/>
                    <button type="submit">"Zoom"</button>
                </form>
            }
        })
    };
    view! {
        <nav class="switch" aria-label="Chart options">
            {switch("x axis", "axis", &[("step", "step"), ("time", "time")])}
            {switch("y scale", "scale", &[("linear", "linear"), ("log", "log")])}
            {switch("smoothing", "smooth", &[("0", "none"), ("60", "0.6"), ("90", "0.9")])}
            {zoom}
        </nav>
    }
}

#[component]
fn Charts(
    charts: Vec<MetricChart>,
    base: impl Fn() -> String + Send + Sync + Copy + 'static,
) -> impl IntoView {
    if charts.is_empty() {
        return view! { <p class="empty">"No metrics were logged."</p> }.into_any();
    }
    // Single values are shown as numbers: nothing to switch.
    let drawn = charts.iter().any(|chart| !chart.svg.is_empty());
    view! {
        {drawn.then(|| view! { <ChartSwitches base/> })}
        <div class="charts">
            {charts
                .into_iter()
                .map(|chart| {
                    let caption = chart.metric.clone();
                    // One value per run: the numbers themselves.
                    let body = if chart.svg.is_empty() {
                        let values = chart
                            .values
                            .into_iter()
                            .map(|(run, value)| view! { <div class="single-value"><span class="value">{format_metric(value)}</span> <span class="muted">{run}</span></div> })
                            .collect_view();
                        view! { <div class="single-values">{values}</div> }.into_any()
                    } else {
                        view! { <div class="chart-svg" inner_html=chart.svg></div> }.into_any()
                    };
                    view! {
                    <figure class="chart" data-metric=chart.metric>
                        <figcaption>{caption}</figcaption>
                        {chart.note.map(|note| view! { <p class="muted chart-note">{note}</p> })}
                        {body}
                    </figure>
                    }
                })
                .collect_view()}
        </div>
    }
    .into_any()
}

#[component]
fn Artifacts(
    run_id: String,
    model: Option<String>,
    dir: Option<String>,
    entries: Vec<ArtifactEntry>,
) -> impl IntoView {
    let base = run_href(&run_id);
    let href = |dir: Option<&str>| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(model) = &model {
            query.append_pair("model", model);
        }
        if let Some(dir) = dir {
            query.append_pair("dir", dir);
        }
        // Folders open where the list is, not at the top of the run.
        let query = query.finish();
        if query.is_empty() {
            format!("{base}#{ARTIFACTS_ANCHOR}")
        } else {
            format!("{base}?{query}#{ARTIFACTS_ANCHOR}")
        }
    };
    let dir_href = |path: &str| href(Some(path));
    let up = dir
        .as_deref()
        .map(|dir| href(dir.rsplit_once('/').map(|(parent, _)| parent)));
    let owner = match &model {
        Some(model) => view! { "Logged model " <code>{model.clone()}</code> " · " <a href=format!("{base}#{ARTIFACTS_ANCHOR}")>"the run's own artifacts"</a> }.into_any(),
        None => view! { "The run's artifacts" }.into_any(),
    };
    let rows = entries
        .iter()
        .map(|entry| {
            let name = entry.path.rsplit('/').next().unwrap_or(&entry.path).to_string();
            if entry.is_dir {
                view! { <li class="dir"><a href=dir_href(&entry.path)>{format!("{name}/")}</a></li> }.into_any()
            } else {
                let size = entry.size.map(|size| format!("{size} B")).unwrap_or_default();
                let href = artifact_href(&run_id, model.as_deref(), &entry.path, "");
                view! { <li class="file"><a href=href>{name}</a> " " <span class="muted">{size}</span></li> }.into_any()
            }
        })
        .collect_view();
    view! {
        <div class="artifacts">
            <p class="muted">{owner} " · " {format!("/{}", dir.clone().unwrap_or_default())}</p>
            {up.map(|href| view! { <p><a href=href>"↑ up"</a></p> })}
            {entries.is_empty().then(|| {
                // MLflow 3 keeps a logged model's files with the model, not the run.
                let hint = (model.is_none() && dir.is_none())
                    .then_some(" Models the run logged keep their files with them: see “Logged models” above.");
                view! { <p class="empty">"No artifacts here." {hint}</p> }
            })}
            <ul class="plain">{rows}</ul>
        </div>
    }
}

/// `/runs/{id}/artifact?path=…[&model=m-…]`: one artifact file — text,
/// JSON, YAML (MLmodel with its signature), CSV as a table, or an image —
/// and its download.
#[component]
pub fn ArtifactPage() -> impl IntoView {
    let path_params = use_params_map();
    let query = use_query_map();
    let key = Memo::new(move |_| {
        let run_id = path_params.with(|params| params.get("id").unwrap_or_default());
        query.with(|query| {
            (
                run_id,
                query.get("model").filter(|model| !model.is_empty()),
                query.get("path").unwrap_or_default(),
            )
        })
    });
    let preview = Resource::new(
        move || key.get(),
        |(run_id, model, path)| {
            let owner = model.map_or(ArtifactOwner::Run(run_id), ArtifactOwner::LoggedModel);
            preview_artifact(owner, path)
        },
    );
    view! {
        <Title text=key.get_untracked().2/>
        <section class="page">
            {move || {
                let (run_id, model, path) = key.get();
                let folder = path.rsplit_once('/').map(|(folder, _)| folder.to_string());
                let mut back = form_urlencoded::Serializer::new(String::new());
                if let Some(model) = &model {
                    back.append_pair("model", model);
                }
                if let Some(folder) = &folder {
                    back.append_pair("dir", folder);
                }
                let back = format!("{}?{}#{ARTIFACTS_ANCHOR}", run_href(&run_id), back.finish());
                view! {
                    <nav class="crumbs"><a href=back>{match &model {
                        Some(model) => format!("Logged model {model}'s files"),
                        None => format!("Run {run_id} artifacts"),
                    }}</a></nav>
                    <header class="page-header">
                        <h1 class="mono">{path.clone()}</h1>
                        <a class="button" href=artifact_href(&run_id, model.as_deref(), &path, "/raw") download>"Download"</a>
                    </header>
                }
            }}
            <Results loading_text="Reading the file…">
                {move || Suspend::new(async move {
                    let preview = preview.await?;
                    let (run_id, model, _) = key.get_untracked();
                    let raw = artifact_href(&run_id, model.as_deref(), &preview.path, "/raw");
                    Ok::<_, AppError>(view! { <ArtifactContent preview raw/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn ArtifactContent(preview: ArtifactPreview, raw: String) -> impl IntoView {
    let signature = preview
        .signature
        .as_deref()
        .map(signature_columns)
        .filter(|columns| !columns.is_empty())
        .map(|columns| view! { <h2>"Signature"</h2> <SignatureTable columns/> });
    let content = match preview.content {
        PreviewContent::Text(text) => view! { <pre class="artifact-text">{text}</pre> }.into_any(),
        PreviewContent::Table { header, rows } => {
            let header = header.into_iter().map(|cell| view! { <th scope="col">{cell}</th> }).collect_view();
            let rows = rows
                .into_iter()
                .map(|row| view! { <tr>{row.into_iter().map(|cell| view! { <td>{cell}</td> }).collect_view()}</tr> })
                .collect_view();
            view! { <div class="table-scroll"><table class="data artifact-table"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table></div> }.into_any()
        }
        PreviewContent::Image => view! { <img class="artifact-image" src=raw alt=preview.path.clone()/> }.into_any(),
        PreviewContent::Binary => view! { <p class="empty">"This file is not text or an image: download it to open it."</p> }.into_any(),
    };
    view! {
        {signature}
        {content}
        {preview.truncated.then(|| view! { <p class="muted" data-truncated>"Only the start of the file is shown; the download has all of it."</p> })}
    }
}

/// The best of a metric's values across runs: the lowest for what reads
/// as a cost (loss, error, …), else the highest; none while fewer than two
/// runs have it or all agree.
fn best_value(metric: &str, values: &[Option<f64>]) -> Option<f64> {
    let present: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let (low, high) = present
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| {
            (low.min(*v), high.max(*v))
        });
    if present.len() < 2 || low == high {
        return None;
    }
    Some(if lower_is_better(metric) { low } else { high })
}

/// Whether a smaller value of this metric is better, by its name.
fn lower_is_better(metric: &str) -> bool {
    let name = metric.to_ascii_lowercase();
    [
        "loss",
        "error",
        "err",
        "mse",
        "mae",
        "mape",
        "rmse",
        "perplexity",
        "latency",
        "time",
        "cost",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// `/compare?runs=…&runs=…`: 2–10 runs side by side — params with the
/// differences marked, latest metrics, and each metric's histories overlaid.
#[component]
pub fn ComparePage() -> impl IntoView {
    let query = use_query_map();
    let run_ids = Memo::new(move |_| {
        query.with(|query| {
            let mut ids = query.get_all("runs").unwrap_or_default();
            let mut seen = BTreeSet::new();
            ids.retain(|id| !id.is_empty() && seen.insert(id.clone()));
            if (2..=MAX_COMPARED).contains(&ids.len()) {
                Ok(ids)
            } else {
                Err(AppError::InvalidInput(format!(
                    "Choose from 2 to {MAX_COMPARED} runs to compare; {} chosen",
                    ids.len()
                )))
            }
        })
    });
    let options = chart_options();
    let details = Resource::new(
        move || run_ids.get(),
        |ids| async move { futures::future::try_join_all(ids?.into_iter().map(get_run)).await },
    );
    let charts = Resource::new(
        move || (run_ids.get(), options.get()),
        |(ids, options)| async move { run_charts(ids?, options?).await },
    );
    let axes = Memo::new(move |_| query.with(|query| (query.get("x"), query.get("y"))));
    let plots = Resource::new(
        move || (run_ids.get(), axes.get()),
        |(ids, (x, y))| async move { comparison_plots(ids?, x, y).await },
    );
    view! {
        <Title text="Compare runs"/>
        <section class="page">
            <header class="page-header"><h1>"Compare runs"</h1></header>
            <Results loading_text="Loading the runs…">
                {move || Suspend::new(async move { details.await.map(|runs| view! { <Comparison runs/> }) })}
            </Results>
            <h2>"Metric charts"</h2>
            <Results loading_text="Drawing charts…">
                {move || Suspend::new(async move {
                    charts.await.map(|charts| view! { <Charts charts base=|| "/compare".to_string()/> })
                })}
            </Results>
            <Results loading_text="Drawing plots…">
                {move || Suspend::new(async move {
                    let plots = plots.await?;
                    let runs = run_ids.get_untracked()?;
                    Ok::<_, AppError>(view! { <ComparisonPlots plots runs/> })
                })}
            </Results>
        </section>
    }
}

/// A parameter (or metric) against a metric, chosen with a plain GET form,
/// and every numeric column as parallel coordinates.
#[component]
fn ComparisonPlots(plots: ComparePlots, runs: Vec<String>) -> impl IntoView {
    let choices = |selected: Option<String>| {
        plots
            .columns
            .iter()
            .map(|column| {
                let chosen = selected.as_deref() == Some(column.as_str());
                view! { <option value=column.clone() selected=chosen>{column.clone()}</option> }
            })
            .collect_view()
    };
    let carried = runs
        .into_iter()
        .map(|run| view! { <input type="hidden" name="runs" value=run/> })
        .collect_view();
    view! {
        <h2>"Parameters against metrics"</h2>
        <form method="get" action="/compare" class="inline plot-axes">
            {carried}
            <label for="plot-x">"x"</label>
            <select id="plot-x" name="x">{choices(plots.x.clone())}</select>
            <label for="plot-y">"y"</label>
            <select id="plot-y" name="y">{choices(plots.y.clone())}</select>
            <button type="submit">"Plot"</button>
        </form>
        {if plots.scatter.is_empty() {
            view! { <p class="empty">"These runs have no numeric parameter and metric to plot."</p> }.into_any()
        } else {
            view! { <figure class="chart" data-plot="scatter"><div class="chart-svg" inner_html=plots.scatter></div></figure> }.into_any()
        }}
        {(!plots.parallel.is_empty()).then(|| view! {
            <h2>"Parallel coordinates"</h2>
            <figure class="chart wide" data-plot="parallel"><div class="chart-svg" inner_html=plots.parallel></div></figure>
        })}
    }
}

#[component]
fn Comparison(runs: Vec<RunDetail>) -> impl IntoView {
    let param_keys: BTreeSet<&String> = runs
        .iter()
        .flat_map(|detail| detail.run.params.iter().map(|(key, _)| key))
        .collect();
    let metric_keys: BTreeSet<&String> = runs
        .iter()
        .flat_map(|detail| detail.run.metrics.iter().map(|(key, _)| key))
        .collect();
    let heads = runs
        .iter()
        .map(|detail| {
            let name = detail.run.display_name().to_string();
            view! { <th scope="col"><a href=run_href(&detail.run.run_id)>{name}</a></th> }
        })
        .collect_view();
    let param_rows = param_keys
        .iter()
        .map(|key| {
            let values: Vec<Option<String>> = runs
                .iter()
                .map(|detail| detail.run.params.iter().find(|(k, _)| k == *key).map(|(_, v)| v.clone()))
                .collect();
            let differs = values.iter().collect::<BTreeSet<_>>().len() > 1;
            view! {
                <tr class:differs=differs>
                    <th scope="row">{(*key).clone()}</th>
                    {values.into_iter().map(|value| view! { <td>{value.unwrap_or_else(|| "—".into())}</td> }).collect_view()}
                </tr>
            }
        })
        .collect_view();
    let metric_rows = metric_keys
        .iter()
        .map(|key| {
            let values: Vec<Option<f64>> = runs
                .iter()
                .map(|detail| {
                    detail
                        .run
                        .metrics
                        .iter()
                        .find(|(k, _)| k == *key)
                        .map(|(_, v)| *v)
                })
                .collect();
            let best = best_value(key, &values);
            let direction = if lower_is_better(key) { "lowest" } else { "highest" };
            let cells = values
                .into_iter()
                .map(|value| {
                    let is_best = value.is_some() && value == best;
                    let text = value.map_or_else(|| "—".into(), format_metric);
                    view! {
                        <td class=is_best.then_some("best") title=is_best.then(|| format!("best: the {direction}"))>
                            {text}
                        </td>
                    }
                })
                .collect_view();
            view! { <tr><th scope="row">{(*key).clone()}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <div class="table-scroll">
            <table class="data compare">
                <thead><tr><th scope="col"></th>{heads}</tr></thead>
                <tbody>
                    <tr class="group"><th colspan="99">"Parameters"</th></tr>
                    {param_rows}
                    <tr class="group"><th colspan="99">"Metrics (latest)"</th></tr>
                    {metric_rows}
                </tbody>
            </table>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::{best_value, lower_is_better};

    #[test]
    fn the_best_value_is_the_lowest_cost_or_the_highest_score() {
        assert!(lower_is_better("val_loss") && lower_is_better("RMSE"));
        assert!(!lower_is_better("accuracy") && !lower_is_better("r2"));
        assert_eq!(best_value("loss", &[Some(0.3), None, Some(0.1)]), Some(0.1));
        assert_eq!(best_value("auc", &[Some(0.3), Some(0.9)]), Some(0.9));
        assert_eq!(
            best_value("auc", &[Some(0.5), Some(0.5)]),
            None,
            "a tie marks nothing"
        );
        assert_eq!(
            best_value("auc", &[Some(0.5), None]),
            None,
            "one value is not a comparison"
        );
    }
}
