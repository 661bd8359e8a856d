use leptos::prelude::*;

use crate::access::Action;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::list::{Pager, Results, SearchForm, SortHeader};
use super::parts::{ParamsAndMetrics, SignatureTable};
use super::{DataSource, format_millis, paging::ListState, user_tags};
use crate::error::AppError;
use crate::model::{
    ModelDetail, ModelSummary, ModelVersionInfo, ModelsPage, ServedBy, VersionDetail,
    VersionSummary, signature_columns,
};
use crate::routes::{
    deployment_href, logged_model_href, model_href, new_deployment_href, promote_href,
    registry_edit_href, run_href, version_href,
};
use crate::server_fns::{get_model, get_model_version, search_models};

const PATH: &str = "/models";

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
                        <th scope="col">"Deployed"</th>
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
        <DataSource mlflow_url=page.mlflow_url as_of=page.as_of/>
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
            <td class="served-by">{model.served_by.map(|served_by| served_by_link(&model.name, served_by))}</td>
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
    let me = super::use_me();
    view! {
        <Title text=name.get_untracked()/>
        <section class="page">
            <nav class="crumbs"><a href=PATH>"Models"</a></nav>
            <super::Notice/>
            <Results loading_text="Loading the model…">
                {move || Suspend::new(async move {
                    let model = detail.await?;
                    let may_edit = me.await?.may(Action::EditRegistry { model: &model.name });
                    Ok::<_, AppError>(view! { <ModelView model may_edit/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn ModelView(model: ModelDetail, may_edit: bool) -> impl IntoView {
    let name = model.name.clone();
    let editor = may_edit.then(|| {
        view! {
            <RegistryEditor
                model=name.clone()
                version=None
                description=model.description.clone()
                tags=model.tags.clone()
            />
        }
    });
    let rows = model.versions.into_iter().map(version_row).collect_view();
    view! {
        <header class="page-header"><h1>{model.name.clone()}</h1></header>
        {(!model.description.is_empty()).then(|| view! { <p class="description">{model.description.clone()}</p> })}
        <dl class="facts">
            <dt>"Aliases"</dt><dd>{alias_chips(&name, &model.aliases)}</dd>
            {model.served_by.clone().map(|served_by| view! {
                <dt>"Deployed"</dt>
                <dd class="served-by">{served_by_link(&name, served_by)}</dd>
            })}
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
        {editor}
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
        <Title text={ let (name, version) = key.get_untracked(); format!("{name} v{version}") }/>
        <section class="page">
            <nav class="crumbs">
                <a href=PATH>"Models"</a>
                " / "
                <a href=move || model_href(&key.get().0)>{move || key.get().0}</a>
            </nav>
            <super::Notice/>
            <Results loading_text="Loading the version…">
                {move || Suspend::new(async move {
                    let detail = detail.await?;
                    let user = me.await?;
                    let model = detail.version.model.as_str();
                    let may_promote = user.may(Action::Promote { model });
                    let may_deploy = user.may(Action::ManageDeployment { model });
                    let may_edit = user.may(Action::EditRegistry { model });
                    Ok::<_, AppError>(view! { <VersionView detail may_promote may_deploy may_edit/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn VersionView(
    detail: VersionDetail,
    may_promote: bool,
    may_deploy: bool,
    may_edit: bool,
) -> impl IntoView {
    let version = detail.version;
    let editor = may_edit.then(|| {
        view! {
            <AliasEditor model=version.model.clone() version=version.version.clone() aliases=version.aliases.clone()/>
            <StageEditor
                model=version.model.clone()
                version=version.version.clone()
                stage=version.stage.clone()
                stage_bound=detail.stage_bound
                may_promote
            />
            <RegistryEditor
                model=version.model.clone()
                version=Some(version.version.clone())
                description=version.description.clone()
                tags=version.tags.clone()
            />
        }
    });
    let promote = promote_href(&version.model, &version.version);
    let deployment = deployment_href(&version.model);
    let new_deployment = new_deployment_href(&version.model);
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
            <dt>"Source"</dt><dd><code>{version.source.clone()}</code>{logged_model_link(&version.run_id, &version.source)}</dd>
            <dt>"Stored at"</dt><dd><code>{detail.storage_uri}</code></dd>
            <dt>"Source run"</dt><dd class="mono">{source_run(&version.run_id)}</dd>
            <dt>"Created"</dt><dd>{format_millis(version.created)}</dd>
            <dt>"Last updated"</dt><dd>{format_millis(version.last_updated)}</dd>
            <dt>"Tags"</dt><dd>{user_tags(&version.tags)}</dd>
        </dl>
        {detail.summary.map(|summary| view! { <VersionEvidence summary/> })}
        {detail.input_example.map(|example| view! {
            <h2>"Input example"</h2>
            <pre class="input-example">{example}</pre>
        })}
        {editor}
    }
}

/// A version's signature and the params and metrics of the run it came from.
#[component]
fn VersionEvidence(summary: VersionSummary) -> impl IntoView {
    view! {
        <h2>"Signature"</h2>
        {match summary.signature.as_deref().map(signature_columns).filter(|columns| !columns.is_empty()) {
            Some(columns) => view! { <SignatureTable columns/> }.into_any(),
            None => view! { <p class="empty">"No signature was logged with this model."</p> }.into_any(),
        }}
        <ParamsAndMetrics
            params=summary.params
            metrics=summary.metrics
            titles=("Run parameters", "Run metrics (latest)")
        />
    }
}

/// Lineage of an MLflow 3 version: the logged model it was made from,
/// browsable on its run's page.
fn logged_model_link(run_id: &str, source: &str) -> impl IntoView + use<> {
    let model_id = source
        .strip_prefix("models:/")
        .filter(|id| id.starts_with("m-"));
    model_id.filter(|_| !run_id.is_empty()).map(|id| {
        let href = logged_model_href(run_id, id);
        view! { " · " <a href=href>"the logged model's files"</a> }
    })
}

/// A version's aliases: set one (moving it here if it points elsewhere) or
/// remove one. Plain forms: they work without JavaScript.
#[component]
fn AliasEditor(model: String, version: String, aliases: Vec<String>) -> impl IntoView {
    let action = registry_edit_href(&model);
    let removals = aliases
        .into_iter()
        .map(|alias| {
            view! {
                <form method="post" action=action.clone() class="inline" data-remove-alias=alias.clone()>
                    <input type="hidden" name="op" value="remove-alias"/>
                    <input type="hidden" name="version" value=version.clone()/>
                    <input type="hidden" name="alias" value=alias.clone()/>
                    <button type="submit" class="link">{format!("Remove @{alias}")}</button>
                </form>
            }
        })
        .collect_view();
    view! {
        <section class="registry-edit">
            <h2>"Aliases"</h2>
            {removals}
            <form method="post" action=action.clone() class="inline" data-set-alias>
                <input type="hidden" name="op" value="set-alias"/>
                <input type="hidden" name="version" value=version.clone()/>
                <label for="alias">"Alias"</label>
                <input id="alias" name="alias" placeholder="challenger" required maxlength="256"/>
                <button type="submit">"Set alias on this version"</button>
            </form>
        </section>
    }
}

#[component]
fn StageEditor(
    model: String,
    version: String,
    stage: String,
    stage_bound: bool,
    may_promote: bool,
) -> impl IntoView {
    // Where a deployment serves the Production stage, Production comes and
    // goes by Promote and Roll back (which deploy it), never by this form.
    let by_promotion = stage_bound.then(|| {
        let promote = promote_href(&model, &version);
        let deployment = deployment_href(&model);
        if stage == "Production" {
            view! {
                <p class="muted" data-stage-bound>
                    "This version is in Production, which a deployment serves: it leaves Production by a \
                     promotion of another version or a rollback, on "
                    <a href=deployment>"the deployment's page"</a>"."
                </p>
            }
            .into_any()
        } else {
            view! {
                <p class="muted" data-stage-bound>
                    "A deployment serves the Production stage: "
                    {if may_promote {
                        view! { <a href=promote>"promote this version"</a> }.into_any()
                    } else {
                        view! { "a deployer promotes a version" }.into_any()
                    }}
                    " to put it in Production and deploy it."
                </p>
            }
            .into_any()
        }
    });
    if stage_bound && stage == "Production" {
        return view! { <section class="registry-edit"><h2>"Stage"</h2>{by_promotion}</section> }
            .into_any();
    }
    let options = ["None", "Staging", "Production", "Archived"]
        .into_iter()
        .filter(|option| !(stage_bound && *option == "Production"))
        .map(|option| view! { <option value=option selected=option == stage>{option}</option> })
        .collect_view();
    view! {
        <section class="registry-edit">
            <h2>"Stage"</h2>
            {by_promotion}
            <form method="post" action=registry_edit_href(&model) class="inline" data-stage-form>
                <input type="hidden" name="op" value="stage"/>
                <input type="hidden" name="version" value=version/>
                <label for="stage">"Stage"</label>
                <select id="stage" name="stage">{options}</select>
                <label class="check">
                    <input type="checkbox" name="archive_others"/>
                    " Archive the versions now in that stage"
                </label>
                <button type="submit">"Change stage"</button>
            </form>
        </section>
    }
    .into_any()
}

/// The description and tags of a registered model (`version: None`) or of
/// one of its versions.
#[component]
fn RegistryEditor(
    model: String,
    version: Option<String>,
    description: String,
    tags: Vec<(String, String)>,
) -> impl IntoView {
    let action = registry_edit_href(&model);
    let version_field = version
        .clone()
        .map(|version| view! { <input type="hidden" name="version" value=version/> });
    let tag_rows = tags
        .into_iter()
        .filter(|(key, _)| !key.starts_with("mlflow."))
        .map(|(key, value)| {
            let version_field = version_field.clone();
            let (row_key, shown_key) = (key.clone(), key.clone());
            view! {
                <tr data-tag=row_key>
                    <th scope="row">{shown_key}</th>
                    <td>{value}</td>
                    <td>
                        <form method="post" action=action.clone() class="inline">
                            <input type="hidden" name="op" value="delete-tag"/>
                            {version_field}
                            <input type="hidden" name="key" value=key/>
                            <button type="submit" class="link">"Remove"</button>
                        </form>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="registry-edit">
            <h2>"Description"</h2>
            <form method="post" action=action.clone() data-description-form>
                <input type="hidden" name="op" value="describe"/>
                {version_field.clone()}
                <textarea name="description" rows="3" maxlength="5000" aria-label="Description">{description}</textarea>
                <button type="submit">"Save description"</button>
            </form>
            <h2>"Tags"</h2>
            <table class="data kv"><tbody>{tag_rows}</tbody></table>
            <form method="post" action=action class="inline" data-tag-form>
                <input type="hidden" name="op" value="set-tag"/>
                {version_field}
                <input name="key" placeholder="key" aria-label="Tag key" required maxlength="250"/>
                <input name="value" placeholder="value" aria-label="Tag value" maxlength="5000"/>
                <button type="submit">"Set tag"</button>
            </form>
        </section>
    }
}

/// What a deployment serves and why: the version its marker picks, linked
/// to the deployment. With an alias it is the alias that rules, not the
/// stages listed beside it.
fn served_by_link(model: &str, served_by: ServedBy) -> impl IntoView + use<> {
    let text = match &served_by.version {
        Some(version) => format!("v{version} by {}", served_by.marker),
        None => format!("nothing at {}", served_by.marker),
    };
    view! { <a href=deployment_href(model)>{text}</a> }
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
