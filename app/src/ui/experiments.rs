use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::Form, hooks::use_query_map};

use super::{ErrorList, format_millis, paging::ListState};
use crate::model::{Experiment, ExperimentPage};
use crate::server_fns::search_experiments;

#[component]
pub fn ExperimentsPage() -> impl IntoView {
    let params = use_query_map();
    let state = Memo::new(move |_| params.with(ListState::from_params));
    let page = Resource::new(
        move || state.get(),
        |state| async move { search_experiments(state?.query()).await },
    );
    let search_value = move || {
        state
            .get()
            .ok()
            .and_then(|state| state.name_contains)
            .unwrap_or_default()
    };
    let size_value = move || {
        state
            .get()
            .ok()
            .and_then(|state| state.page_size)
            .map(|size| size.to_string())
    };
    // The previous page stays visible, dimmed, while the next one loads.
    let loading = RwSignal::new(false);

    view! {
        <Title text="Experiments"/>
        <section class="page">
            <header class="page-header">
                <h1>"Experiments"</h1>
                <Form method="GET" action="/experiments" attr:class="search" attr:role="search">
                    <input
                        type="search"
                        name="q"
                        placeholder="Filter by name"
                        aria-label="Filter experiments by name"
                        prop:value=search_value
                    />
                    {move || size_value().map(|size| view! { <input type="hidden" name="size" value=size/> })}
                    <button type="submit">"Search"</button>
                </Form>
            </header>
            <div class="results" aria-busy=move || loading.get().to_string()>
                <Transition
                    fallback=|| view! { <p class="loading">"Loading experiments…"</p> }
                    set_pending=loading.write_only()
                >
                    <ErrorBoundary fallback=|errors| view! { <ErrorList errors/> }>
                        {move || Suspend::new(async move {
                            let page = page.await?;
                            let state = state.get_untracked()?;
                            Ok::<_, crate::error::AppError>(view! { <ExperimentList page state/> })
                        })}
                    </ErrorBoundary>
                </Transition>
            </div>
        </section>
    }
}

#[component]
fn ExperimentList(page: ExperimentPage, state: ListState) -> impl IntoView {
    let previous = state.previous_page_href();
    let next = page
        .next_page_token
        .as_deref()
        .map(|token| state.next_page_href(token));
    let on_later_page = previous.is_some();
    let page_number = state.page_number();
    let empty_message = match &state.name_contains {
        Some(name) => format!("No experiments match \"{name}\"."),
        None => "No experiments yet.".to_string(),
    };

    view! {
        <p class="source">"MLflow at " <code>{page.mlflow_url.clone()}</code></p>
        {if page.experiments.is_empty() {
            view! { <p class="empty">{empty_message}</p> }.into_any()
        } else {
            view! { <ExperimentTable experiments=page.experiments/> }.into_any()
        }}
        <nav class="pager" aria-label="Pages">
            {on_later_page.then(|| view! { <a href=state.first_page_href() rel="first">"First"</a> })}
            {previous.map(|href| view! { <a href=href rel="prev">"← Previous"</a> })}
            <span class="page-number">"Page " {page_number}</span>
            {next.map(|href| view! { <a href=href rel="next">"Next →"</a> })}
        </nav>
    }
}

#[component]
fn ExperimentTable(experiments: Vec<Experiment>) -> impl IntoView {
    view! {
        <table class="data">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"ID"</th>
                    <th scope="col">"Created"</th>
                    <th scope="col">"Last updated"</th>
                    <th scope="col">"Tags"</th>
                </tr>
            </thead>
            <tbody>
                {experiments
                    .into_iter()
                    .map(|experiment| {
                        let tags = user_tags(&experiment.tags);
                        view! {
                            <tr>
                                <td class="name">{experiment.name}</td>
                                <td class="mono">{experiment.id}</td>
                                <td>{format_millis(experiment.creation_time)}</td>
                                <td>{format_millis(experiment.last_update_time)}</td>
                                <td class="tags">
                                    {tags
                                        .into_iter()
                                        .map(|(key, value)| view! { <span class="tag">{format!("{key}={value}")}</span> })
                                        .collect_view()}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// MLflow's own `mlflow.*` tags are bookkeeping, not what users tag with.
fn user_tags(tags: &[(String, String)]) -> Vec<(String, String)> {
    tags.iter()
        .filter(|(key, _)| !key.starts_with("mlflow."))
        .cloned()
        .collect()
}
