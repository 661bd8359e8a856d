//! A deployment's settings: the form that creates one (`/new-deployment`)
//! and the one that changes or deletes it (`/deployments/{model}/settings`).
//! Plain POST forms: sent back with problems, they come back as a draft kept
//! on the server (`?draft=`), with every problem listed.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::list::Results;
use super::parts::Field;
use super::{NotAllowed, use_me};
use crate::access::{Action, Role, authorize, describe_grants, holds_anywhere};
use crate::error::AppError;
use crate::model::{DeploymentForm, DeploymentSettings};
use crate::routes::{DEPLOYMENTS, deployment_href, settings_href};
use crate::server_fns::load_deployment_form;

#[component]
pub fn DeploymentSettingsPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let model = Memo::new(move |_| params.with(|params| params.get("model")));
    let draft = Memo::new(move |_| query.with(|query| query.get("draft")));
    // A new deployment's model, when the link that led here names it.
    let named = Memo::new(move |_| query.with(|query| query.get("model")));
    let form = Resource::new(
        move || (model.get(), draft.get()),
        |(model, draft)| load_deployment_form(model, draft),
    );
    let me = use_me();
    view! {
        <Title text="Deployment settings"/>
        <section class="page">
            <super::Notice/>
            <Results loading_text="Loading the settings…">
                {move || Suspend::new(async move {
                    let mut form = form.await?;
                    if !form.exists && form.settings.model.is_empty() {
                        form.settings.model = named.get_untracked().unwrap_or_default();
                    }
                    let user = me.await?;
                    // A new deployment's model may not be typed yet: an admin of
                    // any scope gets the form, and the server decides with the name.
                    let allowed = if form.exists || holds_anywhere(&user, Role::Admin) {
                        authorize(&user, Action::ManageDeployment { model: &form.settings.model })
                            .or_else(|denied| if form.exists { Err(denied) } else { Ok(()) })
                            .map_err(|denied| denied.0)
                    } else {
                        Err(format!("Creating a deployment needs the admin role; {} has {}.", user.name, describe_grants(&user)))
                    };
                    Ok::<_, AppError>(view! { <SettingsForm form allowed/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn SettingsForm(form: DeploymentForm, allowed: Result<(), String>) -> impl IntoView {
    let settings = form.settings;
    let title = if form.exists {
        format!("Deployment of {}", settings.model)
    } else {
        "New deployment".to_string()
    };
    let header = view! { <header class="page-header"><h1>{title}</h1></header> };
    if form.from_catalog {
        return view! {
            {header}
            <p class="reason">
                "This deployment comes from the catalog file (SLIPWAY_CATALOG): an admin changes or removes it there, and Slipway takes it up at its next start."
            </p>
            <SettingsSummary settings/>
        }
        .into_any();
    }
    if let Err(reason) = &allowed {
        let summary = form.exists.then(|| view! { <SettingsSummary settings/> });
        return view! { {header} <NotAllowed reason=reason.clone()/> {summary} }.into_any();
    }
    let action = if form.exists {
        settings_href(&settings.model)
    } else {
        DEPLOYMENTS.to_string()
    };
    let button = if form.exists {
        "Save changes"
    } else {
        "Create deployment"
    };
    let cancel = if form.exists {
        deployment_href(&settings.model)
    } else {
        DEPLOYMENTS.to_string()
    };
    let problems = (!form.problems.is_empty()).then(|| {
        let items = form
            .problems
            .iter()
            .map(|problem| view! { <li>{problem.clone()}</li> })
            .collect_view();
        view! {
            <div class="form-errors" role="alert">
                <p>"Nothing was saved; these need a fix:"</p>
                <ul>{items}</ul>
            </div>
        }
    });
    let delete = form
        .exists
        .then(|| view! { <DeleteForm settings=settings.clone()/> });
    view! {
        {header}
        {problems}
        <form class="deployment-form" method="post" action=action novalidate>
            <input type="hidden" name="revision" value=settings.revision.clone()/>
            <fieldset>
                <legend>"What is served"</legend>
                <Field name="model" label="Registered model (its name in MLflow)" error=None>
                    {if form.exists {
                        view! { <input id="model" type="text" value=settings.model.clone() readonly/> }.into_any()
                    } else {
                        view! { <input id="model" name="model" type="text" required value=settings.model.clone()/> }.into_any()
                    }}
                </Field>
                <Field name="production" label="Production is the version marked by" error=None>
                    <select id="production" name="production">
                        {choice("stage", "stage Production", &settings.production)}
                        {choice("alias", "an alias", &settings.production)}
                    </select>
                </Field>
                <Field name="alias" label="Alias (when marked by an alias)" error=None>
                    <input id="alias" name="alias" type="text" value=settings.alias.clone()/>
                </Field>
                <Field name="no_production" label="When no version is in production" error=None>
                    <select id="no_production" name="no_production">
                        {choice("keep", "keep serving what serves", &settings.no_production)}
                        {choice("remove", "stop serving", &settings.no_production)}
                    </select>
                </Field>
                <div class="field checkbox">
                    <label>
                        <input type="checkbox" name="requires_approval" value="yes" checked=settings.requires_approval/>
                        " Promotions need an approver (four eyes)"
                    </label>
                </div>
            </fieldset>
            <fieldset>
                <legend>"Where it serves"</legend>
                <Field name="target" label="Target" error=None>
                    <select id="target" name="target">
                        {choice("local", "local: mlflow models serve on Slipway's machine", &settings.target)}
                        {choice("seldon", "seldon: a SeldonDeployment (Seldon Core v1) in the cluster", &settings.target)}
                        {choice("kserve", "kserve: a KServe InferenceService in the cluster", &settings.target)}
                        {choice("seldon-core-2", "seldon-core-2: a Seldon Core 2 Model in the cluster", &settings.target)}
                    </select>
                </Field>
                <Field name="namespace" label="Namespace (cluster targets)" error=None>
                    <input id="namespace" name="namespace" type="text" value=settings.namespace.clone()/>
                </Field>
                <Field name="name" label="Object name (default: the model's name as a DNS label)" error=None>
                    <input id="name" name="name" type="text" value=settings.name.clone()/>
                </Field>
                <Field name="replicas" label="Replicas" error=None>
                    <input id="replicas" name="replicas" type="text" inputmode="numeric" value=settings.replicas.clone()/>
                </Field>
                <Field name="max_replicas" label="Most replicas (kserve, seldon-core-2; empty: the target's default)" error=None>
                    <input id="max_replicas" name="max_replicas" type="text" inputmode="numeric" value=settings.max_replicas.clone()/>
                </Field>
                <Field name="cpu_request" label="CPU request / limit (e.g. 500m / 1)" error=None>
                    <div class="pair">
                        <input id="cpu_request" name="cpu_request" type="text" value=settings.cpu_request.clone()/>
                        <input name="cpu_limit" type="text" aria-label="CPU limit" value=settings.cpu_limit.clone()/>
                    </div>
                </Field>
                <Field name="memory_request" label="Memory request / limit (e.g. 512Mi / 1Gi)" error=None>
                    <div class="pair">
                        <input id="memory_request" name="memory_request" type="text" value=settings.memory_request.clone()/>
                        <input name="memory_limit" type="text" aria-label="Memory limit" value=settings.memory_limit.clone()/>
                    </div>
                </Field>
                <Field name="storage_secret" label="Secret with the bucket's credentials (seldon, seldon-core-2)" error=None>
                    <input id="storage_secret" name="storage_secret" type="text" value=settings.storage_secret.clone()/>
                </Field>
                <Field name="service_account" label="Service account with the bucket's credentials (kserve)" error=None>
                    <input id="service_account" name="service_account" type="text" value=settings.service_account.clone()/>
                </Field>
                <Field name="server" label="Seldon Core 2 Server to place it on (empty: any that fits)" error=None>
                    <input id="server" name="server" type="text" value=settings.server.clone()/>
                </Field>
                <Field name="artifact_map" label="Artifact map: one line per prefix, MLflow's URI then the bucket's" error=None>
                    <textarea id="artifact_map" name="artifact_map" rows="3"
                        placeholder="mlflow-artifacts:/ s3://mlflow-artifacts/">{settings.artifact_map.clone()}</textarea>
                </Field>
            </fieldset>
            <div class="actions">
                <button type="submit" class="primary">{button}</button>
                <a href=cancel>"Cancel"</a>
            </div>
        </form>
        {delete}
    }
    .into_any()
}

fn choice(value: &'static str, label: &'static str, chosen: &str) -> impl IntoView + use<> {
    view! { <option value=value selected=value == chosen>{label}</option> }
}

/// Deleting stops what serves the model: the name typed again confirms it.
#[component]
fn DeleteForm(settings: DeploymentSettings) -> impl IntoView {
    let action = format!("{}/delete", deployment_href(&settings.model));
    let prompt = format!("Type {} to confirm", settings.model);
    view! {
        <form class="delete-form" method="post" action=action>
            <h2>"Delete this deployment"</h2>
            <p>"What serves the model stops: its model server, or its object in the cluster. The registry and the history stay."</p>
            <input type="hidden" name="revision" value=settings.revision.clone()/>
            <label for="confirm">{prompt}</label>
            <input id="confirm" name="confirm" type="text" autocomplete="off"/>
            <button type="submit" class="danger">"Delete deployment"</button>
        </form>
    }
}

/// The settings, read only.
#[component]
fn SettingsSummary(settings: DeploymentSettings) -> impl IntoView {
    let rows = [
        ("Target", settings.target),
        ("Namespace", settings.namespace),
        ("Object name", settings.name),
        ("Replicas", settings.replicas),
        ("Production", settings.production),
        ("Alias", settings.alias),
        ("When nothing is in production", settings.no_production),
        (
            "Needs an approver",
            if settings.requires_approval {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ),
    ]
    .into_iter()
    .map(|(label, value)| view! { <tr><th scope="row">{label}</th><td>{value}</td></tr> })
    .collect_view();
    view! { <table class="data facts"><tbody>{rows}</tbody></table> }
}
