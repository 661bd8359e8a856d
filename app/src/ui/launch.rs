//! Launching training: the form (`/launch`), the list (`/launches`) and one
//! launch with live status and logs (`/launches/{id}`).
//!
//! The form is a plain POST to `/launches`, so it works without JavaScript.
//! Sent back with errors, it arrives here as `?draft=…`: the values kept on
//! the server, which the page loads with their errors.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::list::{Results, data_table};
use super::live::keep_fresh;
use super::parts::Field;
use super::{NotAllowed, format_millis, use_me};
use crate::access::User;
use crate::access::{Action, Role, authorize, holds_anywhere};
use crate::error::AppError;
use crate::model::launch_fields::*;
use crate::model::{
    EntryPointSpec, FieldErrors, Launch, LaunchForm, LaunchRequest, LaunchStatus, LaunchUpdate,
    ParamKind, ProfileSpec, ProjectSpec,
};
use crate::routes::{
    LAUNCH_FORM, LAUNCHES, experiment_href, launch_form_href, launch_href, relaunch_href, run_href,
};
use crate::server_fns::{get_launch, list_launches, load_launch_draft, load_launch_form};

#[component]
pub fn LaunchFormPage() -> impl IntoView {
    let query = use_query_map();
    // Values in the URL fill the form ("launch again"); a form sent back
    // with errors comes as a draft kept on the server, with its errors.
    let request = Memo::new(move |_| query.with(|query| LaunchRequest::from_pairs(query)));
    let draft = Memo::new(move |_| query.with(|query| query.get("draft")));
    let form = Resource::new(|| (), |_| load_launch_form());
    let me = use_me();
    let sent_back = Resource::new(
        move || draft.get(),
        |draft| async move {
            match draft {
                Some(id) => load_launch_draft(id).await.map(Some),
                None => Ok(None),
            }
        },
    );

    view! {
        <Title text="Launch training"/>
        <section class="page">
            <header class="page-header">
                <h1>"Launch training"</h1>
            </header>
            <Results loading_text="Loading the catalog…">
                {move || Suspend::new(async move {
                    let form = form.await?;
                    let user = me.await?;
                    let (request, errors) = sent_back
                        .await?
                        .unwrap_or_else(|| (request.get_untracked(), FieldErrors::new()));
                    Ok::<_, AppError>(view! { <LaunchFormBody form request errors user/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn LaunchFormBody(
    form: LaunchForm,
    request: LaunchRequest,
    errors: FieldErrors,
    user: User,
) -> impl IntoView {
    if form.catalog.projects.is_empty() {
        return view! {
            <p class="empty">
                "No training projects are configured. An admin lists them, with the hardware profiles, \
                 in the catalog file named by SLIPWAY_CATALOG."
            </p>
        }
        .into_any();
    }
    let project = form
        .catalog
        .projects
        .iter()
        .find(|project| project.name == request.project)
        .or(form.catalog.projects.first())
        .cloned()
        .expect("at least one project");
    let entry_point = project
        .entry_points
        .iter()
        .find(|entry| entry.name == request.entry_point)
        .or(project.entry_points.first())
        .cloned()
        .expect("MLproject files have entry points");
    let chooser = project_chooser(&form.catalog.projects, &project.name, &entry_point.name);
    if let Err(denied) = authorize(
        &user,
        Action::Launch {
            project: &project.name,
        },
    ) {
        return view! { {chooser} <NotAllowed reason=denied.0/> }.into_any();
    }
    let form_error = errors
        .get(SUBMISSION)
        .or(errors.get(PROJECT))
        .or(errors.get(ENTRY_POINT))
        .cloned();
    let has_errors = !errors.is_empty();
    view! {
        {chooser}
        <form class="launch-form" method="post" action=LAUNCHES novalidate>
            {has_errors.then(|| view! {
                <p class="form-errors" role="alert">
                    {form_error.unwrap_or_else(|| "Some fields need a fix; nothing was launched.".into())}
                </p>
            })}
            <input type="hidden" name=SUBMISSION value=form.submission/>
            <input type="hidden" name=PROJECT value=project.name.clone()/>
            <input type="hidden" name=ENTRY_POINT value=entry_point.name.clone()/>
            <fieldset>
                <legend>{format!("Parameters of {} · {}", project.name, entry_point.name)}</legend>
                <p class="command"><code>{entry_point.command.clone()}</code></p>
                {param_fields(&entry_point, &request, &errors)}
                {extra_params_field(&entry_point, &request, &errors)}
            </fieldset>
            <fieldset>
                <legend>"Where it runs"</legend>
                {experiment_fields(&form.experiments, &request, &errors)}
                {(form.catalog.backend == "local" && project.env_managers.len() > 1)
                    .then(|| env_manager_field(&project.env_managers, &request, &errors))}
                {(form.catalog.backend == "local")
                    .then(|| project.env_note.clone())
                    .flatten()
                    .map(|note| view! { <p class="muted" data-env-note>{note}</p> })}
                {profile_choices(&form.catalog.profiles, &request.profile, errors.get(PROFILE).cloned())}
                <Field name=RUN_NAME label="Run name" error=errors.get(RUN_NAME).cloned()>
                    <input
                        id=RUN_NAME
                        name=RUN_NAME
                        type="text"
                        value=request.run_name.clone()
                        placeholder=format!("{}-{}", project.name, entry_point.name)
                    />
                </Field>
            </fieldset>
            <button type="submit" class="primary">{format!("Launch on {}", form.catalog.backend)}</button>
        </form>
    }
    .into_any()
}

fn project_chooser(
    projects: &[ProjectSpec],
    project: &str,
    entry_point: &str,
) -> impl IntoView + use<> {
    let cards = projects
        .iter()
        .map(|spec| {
            let links = spec
                .entry_points
                .iter()
                .map(|entry| {
                    let current = spec.name == project && entry.name == entry_point;
                    view! {
                        <a
                            href=launch_form_href(&spec.name, &entry.name)
                            class:current=current
                            aria-current=current.then_some("page")
                        >
                            {entry.name.clone()}
                        </a>
                    }
                })
                .collect_view();
            view! {
                <li class="project" class:current=spec.name == project>
                    <strong>{spec.name.clone()}</strong>
                    <span class="description">{spec.description.clone()}</span>
                    <nav class="entry-points" aria-label=format!("Entry points of {}", spec.name)>{links}</nav>
                </li>
            }
        })
        .collect_view();
    view! { <ul class="projects">{cards}</ul> }
}

fn param_fields(
    entry: &EntryPointSpec,
    request: &LaunchRequest,
    errors: &FieldErrors,
) -> impl IntoView + use<> {
    if entry.params.is_empty() {
        return view! { <p class="empty">"This entry point takes no parameters."</p> }.into_any();
    }
    entry
        .params
        .iter()
        .map(|param| {
            let field = format!("{PARAM_PREFIX}{}", param.name);
            // A value sent back with errors wins over the default.
            let value = request
                .params
                .get(&param.name)
                .cloned()
                .or_else(|| param.default.clone())
                .unwrap_or_default();
            let input_mode = match param.kind {
                ParamKind::Float => "decimal",
                ParamKind::Int => "numeric",
                _ => "text",
            };
            let label = format!("{} ({})", param.name, param.kind.label());
            let placeholder = param.default.clone().unwrap_or_else(|| "required".into());
            let kind = param.kind.label();
            let error = errors.get(&field).cloned();
            let invalid = error.is_some().then_some("true");
            let described_by = format!("{field}-error");
            view! {
                <Field name=field.clone() label error>
                    <input
                        id=field.clone()
                        name=field.clone()
                        type="text"
                        inputmode=input_mode
                        value=value
                        placeholder=placeholder
                        data-kind=kind
                        aria-invalid=invalid
                        aria-describedby=described_by
                    />
                </Field>
            }
        })
        .collect_view()
        .into_any()
}

/// Parameters the entry point does not declare, one `name=value` a line,
/// passed on as `--name value` the way `mlflow run -P` does.
fn extra_params_field(
    entry: &EntryPointSpec,
    request: &LaunchRequest,
    errors: &FieldErrors,
) -> impl IntoView + use<> {
    let undeclared = |name: &str| !entry.params.iter().any(|param| param.name == name);
    let text = request
        .params
        .iter()
        .filter(|(name, _)| undeclared(name))
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("\n");
    let error = errors
        .iter()
        .filter_map(|(field, message)| {
            field
                .strip_prefix(PARAM_PREFIX)
                .filter(|name| undeclared(name))
                .map(|_| message.clone())
        })
        .collect::<Vec<_>>();
    let error = (!error.is_empty()).then(|| error.join(" "));
    view! {
        <Field name=EXTRA_PARAMS label="Other parameters (name=value, one a line; passed on as --name value)" error>
            <textarea id=EXTRA_PARAMS name=EXTRA_PARAMS rows="2" placeholder="max_iter=200">{text}</textarea>
        </Field>
    }
}

/// How a local launch sets up its Python, as `mlflow run --env-manager`.
fn env_manager_field(
    managers: &[String],
    request: &LaunchRequest,
    errors: &FieldErrors,
) -> impl IntoView + use<> {
    let options = managers
        .iter()
        .enumerate()
        .map(|(index, manager)| {
            let selected =
                request.env_manager == *manager || (request.env_manager.is_empty() && index == 0);
            let label = match manager.as_str() {
                "virtualenv" => "virtualenv: the project's python_env, built once and reused",
                _ => "local: Slipway's own Python environment",
            };
            view! { <option value=manager.clone() selected=selected>{label}</option> }
        })
        .collect_view();
    view! {
        <Field name=ENV_MANAGER label="Python environment" error=errors.get(ENV_MANAGER).cloned()>
            <select id=ENV_MANAGER name=ENV_MANAGER>{options}</select>
        </Field>
    }
}

fn experiment_fields(
    experiments: &[(String, String)],
    request: &LaunchRequest,
    errors: &FieldErrors,
) -> impl IntoView + use<> {
    // Nothing chosen is MLflow's "Default" experiment, as with `mlflow run`.
    let has_default = experiments.iter().any(|(_, name)| name == "Default");
    let options = experiments
        .iter()
        .map(|(id, name)| {
            let selected = *id == request.experiment_id
                || (request.experiment_id.is_empty() && name == "Default");
            view! { <option value=id.clone() selected=selected>{name.clone()}</option> }
        })
        .collect_view();
    let new_experiment = request.new_experiment.clone();
    view! {
        <Field name=EXPERIMENT label="Experiment" error=errors.get(EXPERIMENT).cloned()>
            <div class="experiment-choice">
                <select id=EXPERIMENT name=EXPERIMENT aria-label="Existing experiment">
                    {(!has_default).then(|| view! { <option value="">"Default (made on launch)"</option> })}
                    {options}
                </select>
                <span>"or new:"</span>
                <input
                    name=NEW_EXPERIMENT
                    type="text"
                    aria-label="New experiment name"
                    placeholder="new experiment name"
                    value=new_experiment
                />
            </div>
        </Field>
    }
}

fn profile_choices(
    profiles: &[ProfileSpec],
    chosen: &str,
    error: Option<String>,
) -> impl IntoView + use<> {
    let first = profiles
        .first()
        .map(|profile| profile.name.clone())
        .unwrap_or_default();
    let chosen = if chosen.is_empty() {
        first
    } else {
        chosen.to_string()
    };
    let cards = profiles
        .iter()
        .map(|profile| {
            let gpus = (profile.gpus > 0).then(|| format!(" · {} × {}", profile.gpus, profile.gpu_resource));
            let placement = (!profile.node_selector.is_empty() || !profile.tolerations.is_empty()).then(|| {
                let selectors = profile.node_selector.iter().map(|(key, value)| format!("{key}={value}"));
                let tolerations = profile.tolerations.iter().map(|toleration| format!("tolerates {toleration}"));
                selectors.chain(tolerations).collect::<Vec<_>>().join(", ")
            });
            let limits = [
                profile.priority_class.as_ref().map(|class| format!("priority {class}")),
                profile.max_runtime_secs.map(|seconds| format!("at most {}", format_duration_secs(seconds))),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ");
            view! {
                <label class="profile">
                    <input type="radio" name=PROFILE value=profile.name.clone() checked=profile.name == chosen/>
                    <strong>{profile.name.clone()}</strong>
                    <span class="description">{profile.description.clone()}</span>
                    <span class="resources">{format!("CPU {} · memory {}", profile.cpu, profile.memory)}{gpus}</span>
                    {placement.map(|text| view! { <span class="placement">{text}</span> })}
                    {(!limits.is_empty()).then(|| view! { <span class="placement">{limits}</span> })}
                    {profile.warning.clone().map(|warning| view! { <span class="warning" data-profile-warning>{warning}</span> })}
                </label>
            }
        })
        .collect_view();
    view! {
        <Field name=PROFILE label="Hardware profile" error>
            <div class="profiles" role="radiogroup">{cards}</div>
        </Field>
    }
}

#[component]
pub fn LaunchesPage() -> impl IntoView {
    let launches = Resource::new(|| (), |_| list_launches());
    let me = use_me();
    view! {
        <Title text="Launches"/>
        <section class="page">
            <header class="page-header">
                <h1>"Launches"</h1>
                {me.0.with_value(|user| user.as_ref().is_ok_and(|user| holds_anywhere(user, Role::Trainer)))
                    .then(|| view! { <a class="button primary" href=LAUNCH_FORM>"Launch training"</a> })}
            </header>
            <Results loading_text="Loading launches…">
                {move || Suspend::new(async move {
                    let launches = launches.await?;
                    Ok::<_, AppError>(view! { <LiveLaunches launches/> })
                })}
            </Results>
        </section>
    }
}

/// The list as the server rendered it, then kept current in the browser.
#[island]
fn LiveLaunches(launches: Vec<Launch>) -> impl IntoView {
    let current = RwSignal::new(launches);
    keep_fresh(current, list_launches);
    move || view! { <LaunchTable launches=current.get()/> }
}

#[component]
fn LaunchTable(launches: Vec<Launch>) -> impl IntoView {
    data_table(
        launches,
        "data",
        &[
            "Launched",
            "By",
            "Project · entry point",
            "Profile",
            "Status",
            "Duration",
            "MLflow run",
        ],
        "Nothing launched yet.",
        |launch| {
            let run = launch
                .run_id
                .clone()
                .map(|run_id| view! { <a href=run_href(&run_id)>{launch.run_name.clone()}</a> });
            view! {
                <tr data-launch=launch.id.clone()>
                    <td><a href=launch_href(&launch.id)>{format_millis(Some(launch.created_ms))}</a></td>
                    <td>{launch.launched_by.clone()}</td>
                    <td>{format!("{} · {}", launch.project, launch.entry_point)}</td>
                    <td>{launch.profile.clone()}</td>
                    <td><StatusBadge status=launch.status/></td>
                    <td class="number">{duration_text(&launch)}</td>
                    <td>{run}</td>
                </tr>
            }
        },
    )
}

#[component]
fn StatusBadge(status: LaunchStatus) -> impl IntoView {
    view! { <span class=format!("status status-{}", status.as_str()) data-status=status.as_str()>{status.as_str()}</span> }
}

fn duration_text(launch: &Launch) -> String {
    match launch.finished_ms {
        Some(finished) => format_duration_secs((finished - launch.created_ms) / 1000),
        None => "—".into(),
    }
}

fn format_duration_secs(seconds: i64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    match (hours, minutes, seconds) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

#[component]
pub fn LaunchPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|params| params.get("id").unwrap_or_default()));
    let query = use_query_map();
    let notice = Memo::new(move |_| query.with(|query| query.get("notice")));
    let launch = Resource::new(move || id.get(), get_launch);
    let me = use_me();

    view! {
        <Title text="Launch"/>
        <section class="page">
            <Results loading_text="Loading the launch…">
                {move || Suspend::new(async move {
                    let launch = launch.await?;
                    let user = me.await?;
                    let may_cancel = user.may(Action::Cancel {
                        project: &launch.project,
                        launched_by: &launch.launched_by,
                    });
                    // An id the server kept the sentence under, for this user.
                    let notice = match notice.get_untracked() {
                        Some(id) => crate::server_fns::get_notice(id).await.ok().flatten(),
                        None => None,
                    };
                    Ok::<_, AppError>(view! { <LiveLaunch launch notice may_cancel/> })
                })}
            </Results>
        </section>
    }
}

/// The launch as the server rendered it; in the browser its status and logs
/// then follow the launch live.
#[island]
fn LiveLaunch(launch: Launch, notice: Option<String>, may_cancel: bool) -> impl IntoView {
    let live = RwSignal::new(None::<LaunchUpdate>);
    let logs = RwSignal::new(String::new());
    // Whether the stream has said all there is (a finished launch's log).
    let complete = RwSignal::new(false);
    follow_launch(launch.id.clone(), live, logs, complete);
    view! { <LaunchDetail launch live logs complete notice may_cancel/> }.into_any()
}

#[component]
fn LaunchDetail(
    launch: Launch,
    live: RwSignal<Option<LaunchUpdate>>,
    logs: RwSignal<String>,
    complete: RwSignal<bool>,
    notice: Option<String>,
    may_cancel: bool,
) -> impl IntoView {
    let initial = launch.update();
    let current = Memo::new(move |_| {
        live.get()
            .filter(|update| update.updated_ms >= initial.updated_ms)
            .unwrap_or_else(|| initial.clone())
    });
    let status = move || current.with(|current| current.status);
    let reason = move || current.with(|current| current.reason.clone());
    let run_id = move || current.with(|current| current.run_id.clone());
    let finished = move || format_millis(current.with(|current| current.finished_ms));
    let params = if launch.params.is_empty() {
        view! { <tr><td colspan="2" class="empty">"none"</td></tr> }.into_any()
    } else {
        launch
            .params
            .iter()
            .map(|(name, value)| view! { <tr><th scope="row">{name.clone()}</th><td><code>{value.clone()}</code></td></tr> })
            .collect_view()
            .into_any()
    };
    let experiment = launch
        .experiment_id
        .clone()
        .map(|id| view! { <a href=experiment_href(&id)>{format!("Experiment {id}")}</a> });
    // A plain POST, like the launch form: it works before hydration, and
    // the answer is this page again (with a notice if it failed).
    let cancel_action = format!("{}/cancel", launch_href(&launch.id));
    let cancel_form = move || {
        view! {
            <form method="post" action=cancel_action.clone() class="cancel">
                <button type="submit" class="danger">"Cancel"</button>
            </form>
        }
    };
    let title = format!("{} · {}", launch.project, launch.entry_point);
    let relaunch = relaunch_href(&launch);
    view! {
        <header class="page-header">
            <h1>{title}</h1>
            <span class="live-status" aria-live="polite">
                {move || view! { <StatusBadge status=status()/> }}
            </span>
        </header>
        <p class="reason" data-reason>{reason}</p>
        <div class="actions">
            <Show when=move || may_cancel && !status().is_terminal()>{cancel_form.clone()}</Show>
            <a href=relaunch>"Launch again with these values"</a>
        </div>
        {notice.map(|notice| view! { <p class="field-error" role="alert">{notice}</p> })}
        <div class="launch-facts">
            <table class="data facts">
                <tbody>
                    <tr><th scope="row">"Launched"</th><td>{format!("{} by {}", format_millis(Some(launch.created_ms)), launch.launched_by)}</td></tr>
                    <tr><th scope="row">"Finished"</th><td>{finished}</td></tr>
                    <tr><th scope="row">"Run name"</th><td>{launch.run_name.clone()}</td></tr>
                    <tr><th scope="row">"Experiment"</th><td>{experiment}</td></tr>
                    <tr><th scope="row">"Profile"</th><td>{launch.profile.clone()}</td></tr>
                    <tr><th scope="row">"Environment"</th><td data-env>{launch.env_manager.clone()}</td></tr>
                    {launch.git_commit.clone().map(|commit| view! {
                        <tr><th scope="row">"Commit"</th><td><code data-commit=commit.clone()>{commit.clone()}</code></td></tr>
                    })}
                    <tr><th scope="row">"Executor"</th><td>{launch.backend.clone()} " " <code>{launch.executor_ref.clone().unwrap_or_default()}</code></td></tr>
                    <tr>
                        <th scope="row">"MLflow run"</th>
                        <td>
                            {move || match run_id() {
                                Some(run_id) => view! { <a href=run_href(&run_id) data-run=run_id.clone()>{run_id.clone()}</a> }.into_any(),
                                None => view! { <span>"not created"</span> }.into_any(),
                            }}
                        </td>
                    </tr>
                </tbody>
            </table>
            <table class="data params">
                <thead><tr><th scope="col">"Parameter"</th><th scope="col">"Value"</th></tr></thead>
                <tbody>{params}</tbody>
            </table>
        </div>
        <h2>"Logs"</h2>
        <pre class="logs" id="logs" aria-live="off">
            {move || {
                let text = logs.get();
                match (text.is_empty(), complete.get(), status().is_terminal()) {
                    (false, _, _) => text,
                    (true, true, _) => "The training wrote no output.".to_string(),
                    // Its log is on its way, not its output.
                    (true, false, true) => "Reading the log…".to_string(),
                    (true, false, false) => "Waiting for output…".to_string(),
                }
            }}
        </pre>
    }
}

/// Server-sent events keep the status and logs current without a reload.
/// Browser only: on the server the page shows the launch as it is.
#[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
fn follow_launch(
    id: String,
    live: RwSignal<Option<LaunchUpdate>>,
    logs: RwSignal<String>,
    complete: RwSignal<bool>,
) {
    #[cfg(feature = "hydrate")]
    {
        use crate::routes::launch_events_href;
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;

        /// Keeps the page light on long trainings: only the newest output.
        const MAX_LOG_CHARS: usize = 200_000;

        Effect::new(move |_| {
            let url = launch_events_href(&id);
            let Ok(source) = web_sys::EventSource::new(&url) else {
                return;
            };
            let data = |event: web_sys::Event| {
                event
                    .dyn_into::<web_sys::MessageEvent>()
                    .ok()
                    .and_then(|event| event.data().as_string())
                    .unwrap_or_default()
            };
            let closer = source.clone();
            type Handler = Closure<dyn Fn(web_sys::Event)>;
            let handlers: Vec<(&str, Handler)> = vec![
                ("reset", Closure::new(move |_| logs.set(String::new()))),
                (
                    "status",
                    Closure::new(move |event| {
                        if let Ok(update) = serde_json::from_str::<LaunchUpdate>(&data(event)) {
                            live.set(Some(update));
                        }
                    }),
                ),
                (
                    "log",
                    Closure::new(move |event| {
                        let chunk = data(event);
                        logs.update(|text| {
                            text.push_str(&chunk);
                            if text.len() > MAX_LOG_CHARS {
                                let cut = text.len() - MAX_LOG_CHARS;
                                let cut = (cut..text.len())
                                    .find(|&index| text.is_char_boundary(index))
                                    .unwrap_or(cut);
                                text.drain(..cut);
                            }
                        });
                    }),
                ),
                // Ended: no reconnect, which would replay the whole log.
                (
                    "end",
                    Closure::new(move |_| {
                        complete.set(true);
                        closer.close();
                    }),
                ),
            ];
            for (name, handler) in &handlers {
                let _ =
                    source.add_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
            }
            // Closed (and the handlers dropped) when the page goes.
            let live_source = send_wrapper::SendWrapper::new((source, handlers));
            on_cleanup(move || live_source.0.close());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::format_duration_secs;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration_secs(42), "42 s");
        assert_eq!(format_duration_secs(1800), "30 min");
        assert_eq!(format_duration_secs(95), "1 min 35 s");
        assert_eq!(format_duration_secs(14_400), "4 h");
        assert_eq!(format_duration_secs(5_460), "1 h 31 min");
    }
}
