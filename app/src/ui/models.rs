use leptos::prelude::*;

use crate::access::Action;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::list::{Pager, Results, SearchForm, SortHeader, segment};
use super::run::run_href;
use super::{format_millis, paging::ListState, user_tags};
use crate::error::AppError;
use crate::model::{ModelDetail, ModelSummary, ModelVersionInfo, ModelsPage, VersionDetail};
use crate::server_fns::{get_model, get_model_version, search_models};

const PATH: &str = "/models";

pub fn model_href(name: &str) -> String {
    format!("/models/{}", segment(name))
}

pub fn version_href(name: &str, version: &str) -> String {
    format!("/models/{}/versions/{}", segment(name), segment(version))
}

#[component]
pub fn ModelsPage() -> impl IntoView {
    let params = use_query_map();
    let state = Memo::new(move |_| {
        params.with(|params| ListState::from_params(PATH, &["q", "order", "dir"], params))
    });
    let page = Resource::new(
        move || state.get(),
        |state| async move { search_models(state?.query()?).await },
    );

    view! {
        <Title text="Models"/>
        <section class="page">
            <header class="page-header">
                <h1>"Registered models"</h1>
                <SearchForm state param="q" placeholder="Filter models by name"/>
            </header>
            <Results loading_text="Loading models…">
                {move || Suspend::new(async move {
                    let page = page.await?;
                    let state = state.get_untracked()?;
                    Ok::<_, AppError>(view! { <ModelList page state/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn ModelList(page: ModelsPage, state: ListState) -> impl IntoView {
    let empty_message = match state.get("q") {
        Some(name) => format!("No registered models match \"{name}\"."),
        None => "No registered models yet.".to_string(),
    };
    let table = if page.models.is_empty() {
        view! { <p class="empty">{empty_message}</p> }.into_any()
    } else {
        view! {
            <table class="data">
                <thead>
                    <tr>
                        <SortHeader state=state.clone() label="Name".to_string() column="name".to_string() default_column="updated"/>
                        <th scope="col">"Latest by stage"</th>
                        <th scope="col">"Aliases"</th>
                        <SortHeader
                            state=state.clone()
                            label="Last updated".to_string()
                            column="updated".to_string()
                            default_column="updated"
                            descending_first=true
                        />
                        <th scope="col">"Description"</th>
                    </tr>
                </thead>
                <tbody>{page.models.into_iter().map(model_row).collect_view()}</tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <p class="source">"MLflow at " <code>{page.mlflow_url}</code></p>
        {table}
        <Pager state next_page_token=page.next_page_token/>
    }
}

fn model_row(model: ModelSummary) -> impl IntoView {
    let stages = model
        .latest_by_stage
        .iter()
        .map(|(stage, version)| {
            let href = version_href(&model.name, version);
            view! { <a class=stage_class(stage) href=href>{format!("{stage}: v{version}")}</a> }
        })
        .collect_view();
    let aliases = alias_chips(&model.name, &model.aliases);
    view! {
        <tr>
            <td class="name"><a href=model_href(&model.name)>{model.name.clone()}</a></td>
            <td class="stages">{stages}</td>
            <td>{aliases}</td>
            <td>{format_millis(model.last_updated)}</td>
            <td class="description">{model.description}</td>
        </tr>
    }
}

#[component]
pub fn ModelPage() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| params.with(|params| params.get("name").unwrap_or_default()));
    let detail = Resource::new(move || name.get(), get_model);
    view! {
        <Title text=move || name.get()/>
        <section class="page">
            <nav class="crumbs"><a href=PATH>"Models"</a></nav>
            <Results loading_text="Loading the model…">
                {move || Suspend::new(async move { detail.await.map(|model| view! { <ModelView model/> }) })}
            </Results>
        </section>
    }
}

#[component]
fn ModelView(model: ModelDetail) -> impl IntoView {
    let name = model.name.clone();
    let rows = model.versions.into_iter().map(version_row).collect_view();
    view! {
        <header class="page-header"><h1>{model.name.clone()}</h1></header>
        {(!model.description.is_empty()).then(|| view! { <p class="description">{model.description.clone()}</p> })}
        <dl class="facts">
            <dt>"Aliases"</dt><dd>{alias_chips(&name, &model.aliases)}</dd>
            <dt>"Created"</dt><dd>{format_millis(model.created)}</dd>
            <dt>"Last updated"</dt><dd>{format_millis(model.last_updated)}</dd>
            <dt>"Tags"</dt><dd>{user_tags(&model.tags)}</dd>
        </dl>
        <h2>"Versions"</h2>
        <table class="data">
            <thead>
                <tr>
                    <th scope="col">"Version"</th>
                    <th scope="col">"Stage"</th>
                    <th scope="col">"Aliases"</th>
                    <th scope="col">"Status"</th>
                    <th scope="col">"Source run"</th>
                    <th scope="col">"Created"</th>
                    <th scope="col">"Tags"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

fn version_row(version: ModelVersionInfo) -> impl IntoView {
    let href = version_href(&version.model, &version.version);
    view! {
        <tr>
            <td class="name"><a href=href>{format!("v{}", version.version)}</a></td>
            <td><span class=stage_class(&version.stage)>{version.stage.clone()}</span></td>
            <td>{version.aliases.iter().map(|alias| view! { <span class="alias">{format!("@{alias}")}</span> }).collect_view()}</td>
            <td>{version.status.clone()}</td>
            <td class="mono">{source_run(&version.run_id)}</td>
            <td>{format_millis(version.created)}</td>
            <td class="tags">{user_tags(&version.tags)}</td>
        </tr>
    }
}

#[component]
pub fn VersionPage() -> impl IntoView {
    let params = use_params_map();
    let key = Memo::new(move |_| {
        params.with(|params| {
            (
                params.get("name").unwrap_or_default(),
                params.get("version").unwrap_or_default(),
            )
        })
    });
    let detail = Resource::new(
        move || key.get(),
        |(name, version)| get_model_version(name, version),
    );
    let me = super::use_me();
    view! {
        <Title text=move || { let (name, version) = key.get(); format!("{name} v{version}") }/>
        <section class="page">
            <nav class="crumbs">
                <a href=PATH>"Models"</a>
                " / "
                <a href=move || model_href(&key.get().0)>{move || key.get().0}</a>
            </nav>
            <Results loading_text="Loading the version…">
                {move || Suspend::new(async move {
                    let detail = detail.await?;
                    let user = me.await?;
                    let may_promote = user.may(Action::Promote { model: &detail.version.model });
                    let may_deploy = user.may(Action::ManageDeployment { model: &detail.version.model });
                    Ok::<_, AppError>(view! { <VersionView detail may_promote may_deploy/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn VersionView(detail: VersionDetail, may_promote: bool, may_deploy: bool) -> impl IntoView {
    let version = detail.version;
    let promote = super::deployments::promote_href(&version.model, &version.version);
    let deployment = super::deployments::deployment_href(&version.model);
    let new_deployment = format!(
        "/new-deployment?model={}",
        super::list::segment(&version.model)
    );
    // Promoting a model nothing serves would deploy nothing: offer to make
    // the deployment first.
    let serving = if detail.deployed {
        view! { <p class="source"><a href=deployment>"Deployment of this model"</a></p> }.into_any()
    } else {
        view! {
            <p class="source" data-undeployed>
                "No deployment serves this model yet. "
                {may_deploy.then(|| view! { <a href=new_deployment>"Create a deployment…"</a> })}
            </p>
        }
        .into_any()
    };
    view! {
        <header class="page-header">
            <h1>{format!("{} v{}", version.model, version.version)}</h1>
            {(may_promote && detail.deployed).then(|| view! { <a class="button primary" href=promote>"Promote to production…"</a> })}
        </header>
        {serving}
        {(!version.description.is_empty()).then(|| view! { <p class="description">{version.description.clone()}</p> })}
        <dl class="facts">
            <dt>"Stage"</dt><dd><span class=stage_class(&version.stage)>{version.stage.clone()}</span></dd>
            <dt>"Aliases"</dt>
            <dd>{version.aliases.iter().map(|alias| view! { <span class="alias">{format!("@{alias}")}</span> }).collect_view()}</dd>
            <dt>"Status"</dt><dd>{version.status.clone()}</dd>
            <dt>"Source"</dt><dd><code>{version.source.clone()}</code></dd>
            <dt>"Stored at"</dt><dd><code>{detail.storage_uri}</code></dd>
            <dt>"Source run"</dt><dd class="mono">{source_run(&version.run_id)}</dd>
            <dt>"Created"</dt><dd>{format_millis(version.created)}</dd>
            <dt>"Last updated"</dt><dd>{format_millis(version.last_updated)}</dd>
            <dt>"Tags"</dt><dd>{user_tags(&version.tags)}</dd>
        </dl>
    }
}

fn alias_chips(model: &str, aliases: &[(String, String)]) -> impl IntoView + use<> {
    aliases
        .iter()
        .map(|(alias, version)| {
            let href = version_href(model, version);
            view! { <a class="alias" href=href>{format!("@{alias} → v{version}")}</a> }
        })
        .collect_view()
}

/// A link to the run a version came from; versions registered from a bare
/// storage URI have none.
fn source_run(run_id: &str) -> impl IntoView + use<> {
    (!run_id.is_empty()).then(|| view! { <a href=run_href(run_id)>{run_id.to_string()}</a> })
}

fn stage_class(stage: &str) -> String {
    format!("stage stage-{}", stage.to_ascii_lowercase())
}
