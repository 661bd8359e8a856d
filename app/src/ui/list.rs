//! The parts every searchable, paged list shares: the search form, the
//! results area that stays usable while the next page loads, and the pager.

use leptos::prelude::*;

use super::ErrorList;
use super::paging::ListState;
use crate::error::AppError;

/// A plain GET form.
/// It sets `param` and carries the list's other parameters along, starting
/// again from the first page.
#[component]
pub fn SearchForm(
    state: Memo<Result<ListState, AppError>>,
    param: &'static str,
    placeholder: &'static str,
) -> impl IntoView {
    let current = move || state.get().ok();
    let action = move || current().map(|state| state.path).unwrap_or_default();
    let value = move || {
        current()
            .and_then(|state| state.get(param).map(str::to_string))
            .unwrap_or_default()
    };
    let carried = move || {
        current()
            .map(|state| state.carried_except(param))
            .unwrap_or_default()
    };
    view! {
        <form method="get" action=action class="search" role="search">
            <input type="search" name=param placeholder=placeholder aria-label=placeholder value=value/>
            {move || {
                carried()
                    .into_iter()
                    .map(|(key, value)| view! { <input type="hidden" name=key value=value/> })
                    .collect_view()
            }}
            <button type="submit">"Search"</button>
        </form>
    }
}

/// The page's data, or every error in its place. Pages are rendered whole on
/// the server (no client-side navigation), so there is no "next page loading"
/// state to show.
#[component]
pub fn Results(loading_text: &'static str, children: ChildrenFn) -> impl IntoView {
    view! {
        <div class="results">
            <Suspense fallback=move || view! { <p class="loading">{loading_text}</p> }>
                <ErrorBoundary fallback=|errors| view! { <ErrorList errors/> }>{children()}</ErrorBoundary>
            </Suspense>
        </div>
    }
}

#[component]
pub fn Pager(state: ListState, next_page_token: Option<String>) -> impl IntoView {
    let previous = state.previous_page_href();
    let next = next_page_token
        .as_deref()
        .map(|token| state.next_page_href(token));
    let first = previous.is_some().then(|| state.first_page_href());
    view! {
        <nav class="pager" aria-label="Pages">
            {first.map(|href| view! { <a href=href rel="first">"First"</a> })}
            {previous.map(|href| view! { <a href=href rel="prev">"← Previous"</a> })}
            <span class="page-number">"Page " {state.page_number()}</span>
            {next.map(|href| view! { <a href=href rel="next">"Next →"</a> })}
            <span class="page-sizes">
                "Rows per page:"
                {PAGE_SIZES
                    .into_iter()
                    .map(|size| {
                        let current = (state.page_size() == size).then_some("true");
                        view! { <a href=state.page_size_href(size) aria-current=current>{size}</a> }
                    })
                    .collect_view()}
            </span>
        </nav>
    }
}

/// The page sizes the pager offers (any from 1 to the maximum works in the URL).
const PAGE_SIZES: [u32; 4] = [25, 50, 100, 500];

/// A column header that sorts the list by its column; a second click flips
/// the order. `default_column` is what the list is sorted by (descending)
/// when the URL names no order.
#[component]
pub fn SortHeader(
    state: ListState,
    label: String,
    column: String,
    default_column: &'static str,
    /// Whether a first click sorts descending (numbers, times) or ascending (names).
    #[prop(optional)]
    descending_first: bool,
    #[prop(optional)] class: &'static str,
) -> impl IntoView {
    let active = state.get("order").unwrap_or(default_column) == column;
    let descending = state.get("dir") != Some("asc");
    let next_descending = if active {
        !descending
    } else {
        descending_first
    };
    let href = state
        .with("order", Some(column))
        .with(
            "dir",
            Some(if next_descending { "desc" } else { "asc" }.to_string()),
        )
        .first_page_href();
    let marker = active.then_some(if descending { " ▼" } else { " ▲" });
    let sort = match (active, descending) {
        (false, _) => "none",
        (true, true) => "descending",
        (true, false) => "ascending",
    };
    view! {
        <th scope="col" class=class aria-sort=sort>
            <a href=href>{label}{marker}</a>
        </th>
    }
}

/// A table of records: a header per column and a row per record, or
/// `empty` when there are none. Every list of records a page shows takes
/// this shape.
pub fn data_table<T, V: IntoView + 'static>(
    records: Vec<T>,
    class: &'static str,
    headers: &[&'static str],
    empty: &'static str,
    row: impl FnMut(T) -> V,
) -> AnyView {
    if records.is_empty() {
        return view! { <p class="empty">{empty}</p> }.into_any();
    }
    let headers = headers
        .iter()
        .map(|header| view! { <th scope="col">{*header}</th> })
        .collect_view();
    let rows = records.into_iter().map(row).collect_view();
    view! {
        <table class=class>
            <thead><tr>{headers}</tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}
