//! Service tokens (`/tokens`): the user's own (an account admin sees
//! everyone's), a plain POST form to make one within the user's role, its
//! secret shown once on the page the form leads to, and revoke buttons.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::list::{Results, data_table};
use super::parts::Field;
use super::{format_millis, use_me};
use crate::access::Action;
use crate::error::AppError;
use crate::model::{CreatedToken, ServiceToken, TokensPage};
use crate::routes::{TOKENS, revoke_token_href};
use crate::server_fns::get_tokens_page;

#[component]
pub fn TokensPage() -> impl IntoView {
    let query = use_query_map();
    let created = Memo::new(move |_| query.with(|query| query.get("created")));
    let page = Resource::new(move || created.get(), get_tokens_page);
    let me = use_me();
    view! {
        <Title text="Service tokens"/>
        <section class="page">
            <header class="page-header"><h1>"Service tokens"</h1></header>
            <super::Notice/>
            <p class="reason">
                "A token lets a pipeline or the " <code>"slipway"</code> " command use the API ("
                <a href="/api/v1/docs/">"reference"</a>
                ") on your behalf, with at most your role. Its actions are audited as yours, with its name."
            </p>
            <Results loading_text="Loading tokens…">
                {move || Suspend::new(async move {
                    let page = page.await?;
                    let user = me.await?;
                    let everyone = user.may(Action::ManageAccounts);
                    Ok::<_, AppError>(view! { <TokensView page everyone/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn TokensView(page: TokensPage, everyone: bool) -> impl IntoView {
    let TokensPage {
        tokens,
        roles,
        created,
        as_of_ms,
    } = page;
    let roles = roles
        .into_iter()
        .map(|role| view! { <option value=role.as_str()>{role.as_str()}</option> })
        .collect_view();
    view! {
        {created.map(|created| view! { <NewSecret created/> })}
        <h2>{if everyone { "Every account's tokens" } else { "Your tokens" }}</h2>
        {token_table(tokens, as_of_ms)}
        <h2>"New token"</h2>
        <form class="token-form" method="post" action=TOKENS>
            <Field name="name" label="Name (the pipeline it is for)" error=None>
                <input id="name" name="name" required maxlength="64" pattern="[A-Za-z0-9._\\-]+"/>
            </Field>
            <Field name="role" label="Role (at most yours)" error=None>
                <select id="role" name="role">{roles}</select>
            </Field>
            <Field name="scope" label="Only these models and projects (name patterns with *, separated by commas; empty: all your role covers)" error=None>
                <input id="scope" name="scope" maxlength="2000"/>
            </Field>
            <Field name="expires_days" label="Expires after (days)" error=None>
                <input id="expires_days" name="expires_days" type="number" min="1" max="366" value="90"/>
            </Field>
            <button type="submit">"Make the token"</button>
        </form>
    }
}

/// The secret, this once: it is stored only as a hash.
#[component]
fn NewSecret(created: CreatedToken) -> impl IntoView {
    view! {
        <div class="done-notice" role="status" data-new-token=created.name.clone()>
            <p>{format!("Token {} is made. Copy it now: it is not shown again.", created.name)}</p>
            <pre class="secret"><code data-secret>{created.secret}</code></pre>
            <p>"In a pipeline: " <code>"export SLIPWAY_TOKEN=…"</code> " (from the pipeline's secrets), then " <code>"slipway deployments --server …"</code></p>
        </div>
    }
}

fn token_table(tokens: Vec<ServiceToken>, now: i64) -> AnyView {
    data_table(
        tokens,
        "tokens",
        &[
            "Name",
            "Owner",
            "May",
            "Made",
            "Expires",
            "Last used",
            "State",
            "",
        ],
        "No tokens yet.",
        move |token| {
            let state = if token.revoked_ms.is_some() {
                "revoked"
            } else if token.expires_ms <= now {
                "expired"
            } else {
                "active"
            };
            let revoke = (state == "active").then(|| {
                view! {
                    <form method="post" action=revoke_token_href(&token.id) class="inline">
                        <button type="submit" class="danger">"Revoke"</button>
                    </form>
                }
            });
            view! {
                <tr data-token=token.name.clone()>
                    <td>{token.name.clone()}</td>
                    <td>{token.owner.clone()}</td>
                    <td>{token.grant.to_string()}</td>
                    <td>{format_millis(Some(token.created_ms))}</td>
                    <td>{format_millis(Some(token.expires_ms))}</td>
                    <td>{format_millis(token.last_used_ms)}</td>
                    <td data-state=state>{state}</td>
                    <td>{revoke}</td>
                </tr>
            }
        },
    )
}
