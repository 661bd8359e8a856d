use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::list::{Pager, Results, SearchForm, SortHeader};
use super::{DataSource, format_millis, paging::ListState, user_tags};
use crate::error::AppError;
use crate::model::{Experiment, ExperimentPage};
use crate::routes::experiment_href;
use crate::server_fns::search_experiments;

const PATH: &str = "/experiments";

#[component]
pub fn ExperimentsPage() -> impl IntoView {
    let params = use_query_map();
    let state = Memo::new(move |_| {
        params.with(|params| ListState::from_params(PATH, &["q", "order", "dir"], params))
    });
    let page = Resource::new(
        move || state.get(),
        |state| async move { search_experiments(state?.query()?).await },
    );

    view! {
        <Title text="Experiments"/>
        <section class="page">
            <header class="page-header">
                <h1>"Experiments"</h1>
                <SearchForm state param="q" placeholder="Filter experiments by name"/>
            </header>
            <Results loading_text="Loading experiments…">
                {move || Suspend::new(async move {
                    let page = page.await?;
                    let state = state.get_untracked()?;
                    Ok::<_, AppError>(view! { <ExperimentList page state/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn ExperimentList(page: ExperimentPage, state: ListState) -> impl IntoView {
    let empty_message = match state.get("q") {
        Some(name) => format!("No experiments match \"{name}\"."),
        None => "No experiments yet.".to_string(),
    };
    view! {
        <DataSource mlflow_url=page.mlflow_url.clone() as_of=page.as_of/>
        {if page.experiments.is_empty() {
            view! { <p class="empty">{empty_message}</p> }.into_any()
        } else {
            view! { <ExperimentTable experiments=page.experiments state=state.clone()/> }.into_any()
        }}
        <Pager state next_page_token=page.next_page_token/>
    }
}

#[component]
fn ExperimentTable(experiments: Vec<Experiment>, state: ListState) -> impl IntoView {
    let sortable = |label: &str, column: &str, descending_first: bool| {
        view! {
            <SortHeader
                state=state.clone()
                label=label.to_string()
                column=column.to_string()
                default_column="updated"
                descending_first
            />
        }
    };
    view! {
        <table class="data">
            <thead>
                <tr>
                    {sortable("Name", "name", false)}
                    <th scope="col">"ID"</th>
                    {sortable("Created", "created", true)}
                    {sortable("Last updated", "updated", true)}
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
                                <td class="name">
                                    <a href=experiment_href(&experiment.id)>{experiment.name}</a>
                                </td>
                                <td class="mono">{experiment.id}</td>
                                <td>{format_millis(experiment.creation_time)}</td>
                                <td>{format_millis(experiment.last_update_time)}</td>
                                <td class="tags">{tags}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}
