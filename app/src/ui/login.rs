//! The sign-in page: a plain POST form to `/login`, so it works without
//! JavaScript. The server redirects back here with `error=` (a code, never
//! free text) when a sign-in is refused.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::server_fns::login_options;

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let sso = Resource::new_blocking(|| (), |_| login_options());
    let next = move || query.with(|query| query.get("next").unwrap_or_else(|| "/".into()));
    let message = move || {
        query.with(|query| {
            if query.get("signed_out").is_some() {
                return Some(("notice", "You have signed out."));
            }
            match query.get("error").as_deref() {
                Some("invalid") => Some(("form-errors", "Wrong name or password.")),
                Some("sso") => Some((
                    "form-errors",
                    "Single sign-on failed; the server log says why.",
                )),
                Some("throttled") => Some((
                    "form-errors",
                    "Too many failed sign-ins; wait a few minutes and try again.",
                )),
                Some(_) => Some(("form-errors", "Sign-in failed.")),
                None => None,
            }
        })
    };
    view! {
        <Title text="Sign in"/>
        <section class="page login">
            <h1>"Sign in to Slipway"</h1>
            {move || message().map(|(class, text)| view! { <p class=class role="alert">{text}</p> })}
            <form method="post" action="/login" class="login-form">
                <input type="hidden" name="next" value=next/>
                <label for="name">"Name"</label>
                <input id="name" name="name" autocomplete="username" required autofocus/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                <button type="submit" class="primary">"Sign in"</button>
            </form>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    sso.await.ok().flatten().map(|provider| {
                        let href = crate::routes::sso_href(&next());
                        view! {
                            <p class="sso">
                                <a class="button" href=href rel="external">{format!("Sign in with {provider}")}</a>
                            </p>
                        }
                    })
                })}
            </Suspense>
        </section>
    }
}
