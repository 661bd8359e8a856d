//! The audit log (`/audit`): who did what, when, with what outcome. The
//! filters are a GET form, so a filtered view is a URL and works without
//! JavaScript; the same filters export CSV and JSON.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::format_millis;
use super::list::{Results, data_table};
use crate::error::AppError;
use crate::model::{AuditAction, AuditEntry, AuditQuery};
use crate::server_fns::search_audit;

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let filters = Memo::new(move |_| query.with(|query| AuditQuery::from_pairs(query)));
    let entries = Resource::new(move || filters.get(), search_audit);
    let export = move |format: &str| {
        let query = filters.get().to_query_string();
        if query.is_empty() {
            format!("/audit.{format}")
        } else {
            format!("/audit.{format}?{query}")
        }
    };
    view! {
        <Title text="Audit log"/>
        <section class="page">
            <header class="page-header">
                <h1>"Audit log"</h1>
                <div class="actions">
                    // Plain links: the browser downloads them.
                    <a href=move || export("csv") rel="external" download>"Export CSV"</a>
                    <a href=move || export("json") rel="external" download>"Export JSON"</a>
                </div>
            </header>
            <AuditFilters filters/>
            <Results loading_text="Loading the audit log…">
                {move || Suspend::new(async move {
                    let entries = entries.await?;
                    Ok::<_, AppError>(view! { <AuditTable entries/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn AuditFilters(filters: Memo<AuditQuery>) -> impl IntoView {
    let value = move |pick: fn(&AuditQuery) -> String| move || filters.with(pick);
    let actions = AuditAction::ALL
        .iter()
        .map(|action| {
            let text = action.as_str();
            let selected = move || filters.with(|filters| filters.action == text);
            view! { <option value=text selected=selected>{text}</option> }
        })
        .collect_view();
    view! {
        <form method="get" action="/audit" class="audit-filters">
            <label>"Who" <input name="actor" value=value(|f| f.actor.clone())/></label>
            <label>"What"
                <select name="action">
                    <option value="">"anything"</option>
                    {actions}
                </select>
            </label>
            <label>"Model" <input name="model" value=value(|f| f.model.clone())/></label>
            <label>"From" <input type="date" name="from" value=value(|f| f.from.clone())/></label>
            <label>"To" <input type="date" name="to" value=value(|f| f.to.clone())/></label>
            <button type="submit">"Filter"</button>
        </form>
    }
}

#[component]
fn AuditTable(entries: Vec<AuditEntry>) -> impl IntoView {
    data_table(
        entries,
        "data audit",
        &["When", "Who", "What", "On", "Detail", "Outcome"],
        "Nothing recorded matches.",
        |entry| {
            let (action, outcome) = (entry.action.clone(), entry.outcome.clone());
            view! {
                <tr data-action=action>
                    <td>{format_millis(Some(entry.at_ms))}</td>
                    <td>{entry.actor}</td>
                    <td>{entry.action}</td>
                    <td>{entry.subject}</td>
                    <td class="description">{entry.detail}</td>
                    <td data-outcome=outcome>{entry.outcome}</td>
                </tr>
            }
        },
    )
}
