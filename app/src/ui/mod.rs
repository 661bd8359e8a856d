mod approvals;
mod audit;
mod canary;
mod deployment_settings;
mod deployments;
mod experiments;
mod launch;
mod list;
mod live;
mod load_tests;
mod login;
mod models;
mod notifications;
pub mod paging;
mod parts;
mod run;
mod runs;
mod tokens;

use leptos::prelude::*;
use leptos_meta::{Link, MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    components::{Route, Router, Routes},
    path,
};

use crate::access::User;
use crate::access::{Role, describe_grants, holds_anywhere};
use crate::error::AppError;
use approvals::{ApprovalPage, ApprovalsPage};
use audit::AuditPage;
use deployment_settings::DeploymentSettingsPage;
use deployments::{DeploymentPage, DeploymentsPage, PromotePage, RollbackPage};
use experiments::ExperimentsPage;
use launch::{LaunchFormPage, LaunchPage, LaunchesPage};
use load_tests::{CompareLoadTestsPage, LoadTestFormPage, LoadTestPage};
use login::LoginPage;
use models::{ModelPage, ModelsPage, VersionPage};
use notifications::NotificationsPage;
use run::{ArtifactPage, ComparePage, RunPage};
use runs::ExperimentRunsPage;
use tokens::TokensPage;

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options islands=true/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Pages run only the scripts Slipway put there: its inline hydration
/// scripts carry this response's nonce, and what they load follows
/// ('strict-dynamic'); no plugins, no `<base>`, forms post to Slipway only,
/// no frames of it elsewhere. Styles and images are Slipway's own (charts
/// style their SVG inline).
#[cfg(feature = "ssr")]
fn content_security_policy() {
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(Me(StoredValue::new(signed_in_user())));

    view! {
        <Stylesheet id="slipway" href="/pkg/slipway.css"/>
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg"/>
        <Title formatter=|page: String| format!("{page} · Slipway")/>
        <Router>
            <header class="topbar">
                <a class="brand" href="/experiments">"Slipway"</a>
                // Read at once, not in a Suspense: it waits on nothing.
                {use_me().0.get_value().ok().filter(|user| user.authenticated).map(|user| view! { <TopNav user/> })}
            </header>
            <main>
                <Routes fallback=NotFound>
                    <Route path=path!("/login") view=LoginPage/>
                    <Route path=path!("/experiments") view=ExperimentsPage/>
                    <Route path=path!("/experiments/:id") view=ExperimentRunsPage/>
                    <Route path=path!("/runs/:id") view=RunPage/>
                    <Route path=path!("/runs/:id/artifact") view=ArtifactPage/>
                    <Route path=path!("/compare") view=ComparePage/>
                    <Route path=path!("/models") view=ModelsPage/>
                    <Route path=path!("/models/:name") view=ModelPage/>
                    <Route path=path!("/models/:name/versions/:version") view=VersionPage/>
                    <Route path=path!("/deployments") view=DeploymentsPage/>
                    <Route path=path!("/deployments/:model") view=DeploymentPage/>
                    <Route path=path!("/deployments/:model/promote") view=PromotePage/>
                    <Route path=path!("/deployments/:model/rollback") view=RollbackPage/>
                    <Route path=path!("/deployments/:model/settings") view=DeploymentSettingsPage/>
                    <Route path=path!("/deployments/:model/load-test") view=LoadTestFormPage/>
                    <Route path=path!("/deployments/:model/load-tests/:id") view=LoadTestPage/>
                    <Route path=path!("/deployments/:model/compare-load-tests") view=CompareLoadTestsPage/>
                    <Route path=path!("/new-deployment") view=DeploymentSettingsPage/>
                    <Route path=path!("/approvals") view=ApprovalsPage/>
                    <Route path=path!("/audit") view=AuditPage/>
                    <Route path=path!("/approvals/:id") view=ApprovalPage/>
                    <Route path=path!("/launch") view=LaunchFormPage/>
                    <Route path=path!("/launches") view=LaunchesPage/>
                    <Route path=path!("/launches/:id") view=LaunchPage/>
                    <Route path=path!("/tokens") view=TokensPage/>
                    <Route path=path!("/notifications") view=NotificationsPage/>
                </Routes>
            </main>
            <HydratedMark/>
        </Router>
    }
}

/// What a page shows in place of an action the user may not take.
#[component]
pub fn NotAllowed(reason: String) -> impl IntoView {
    view! { <p class="not-allowed" data-not-allowed>{reason}</p> }
}

/// The user the gate decided this request comes from; pages await it to
/// show only what the user may do (the server decides again on every
/// request). Pages render on the server only (islands get what they need
/// as props), so it is read once, at once, not as a resource: one resource
/// read in several `Suspense`s made a few responses hang (leptos #4851).
#[derive(Clone, Copy)]
pub struct Me(StoredValue<Result<User, AppError>>);

impl std::future::IntoFuture for Me {
    type Output = Result<User, AppError>;
    type IntoFuture = std::future::Ready<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        std::future::ready(self.0.get_value())
    }
}

pub fn use_me() -> Me {
    expect_context::<Me>()
}

fn signed_in_user() -> Result<User, AppError> {
    #[cfg(feature = "ssr")]
    return crate::port::request_user();
    #[cfg(not(feature = "ssr"))]
    Err(AppError::Unauthenticated)
}

#[component]
fn TopNav(user: User) -> impl IntoView {
    let may_launch = holds_anywhere(&user, Role::Trainer);
    view! {
        <nav>
            <a href="/experiments">"Experiments"</a>
            <a href="/models">"Models"</a>
            <a href="/launches">"Launches"</a>
            <a href="/deployments">"Deployments"</a>
            <a href="/approvals">"Approvals"</a>
            <a href="/audit">"Audit"</a>
            {user.may(crate::access::Action::ManageNotifications).then(|| view! { <a href="/notifications">"Notifications"</a> })}
            {may_launch.then(|| view! { <a href="/launch">"Launch"</a> })}
        </nav>
        <div class="who">
            <span data-user=user.name.clone() title=describe_grants(&user)>{user.name.clone()}</span>
            <a href="/tokens">"Tokens"</a>
            <form method="post" action="/logout" class="inline">
                <button type="submit" class="link">"Sign out"</button>
            </form>
        </div>
    }
}

/// The last island on every page: islands hydrate in document order, so
/// when its effect runs the live parts above it are live, and the attribute
/// tells people and browser tests so.
#[island]
fn HydratedMark() -> impl IntoView {
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found"/>
        <section class="empty">
            <h1>"Page not found"</h1>
            <p><a href="/experiments">"Go to the experiments"</a></p>
        </section>
    }
}

/// What an `ErrorBoundary` shows: every error, in words a user can act on.
/// The page answers with the first error's status (a missing run is a 404,
/// MLflow down a 502), which the server can still set: pages are rendered
/// whole before they are sent.
#[component]
pub fn ErrorList(errors: ArcRwSignal<Errors>) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        let status = errors.with_untracked(|errors| {
            errors
                .iter()
                .find_map(|(_, error)| (**error).downcast_ref::<AppError>().map(AppError::status))
        });
        if let Some(status) = status.and_then(|status| http::StatusCode::from_u16(status).ok()) {
            response.set_status(status);
        }
    }
    view! {
        <div class="error-panel" role="alert">
            <For
                each=move || errors.get().into_iter()
                key=|(id, _)| id.clone()
                children=|(_, error)| view! { <p>{error.to_string()}</p> }
            />
        </div>
    }
}

/// Why the last form sent back here did not do what it asked (`?notice=`),
/// or what it did (`?done=`).
#[component]
pub fn Notice() -> impl IntoView {
    use crate::routes::{DONE, DONE_VERSION, Done};
    let query = leptos_router::hooks::use_query_map();
    let notice_id = Memo::new(move |_| query.with(|query| query.get("notice")));
    // The id of a sentence the server kept for this user: a link cannot
    // make the page say anything.
    let notice = Resource::new(
        move || notice_id.get(),
        |id| async move {
            match id {
                Some(id) => crate::server_fns::get_notice(id).await.ok().flatten(),
                None => None,
            }
        },
    );
    let done = Memo::new(move |_| {
        query.with(|query| {
            let done = Done::parse(&query.get(DONE)?)?;
            // Version numbers only: the sentence is ours, not the link's.
            let version = query.get(DONE_VERSION).filter(|version| {
                !version.is_empty()
                    && version.len() <= 20
                    && version.chars().all(|c| c.is_ascii_alphanumeric())
            })?;
            Some((done, version))
        })
    });
    move || {
        let failed = view! {
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    notice.await.map(|notice| view! { <p class="form-errors" role="alert">{notice}</p> })
                })}
            </Suspense>
        };
        let done = done.get().map(|(done, version)| {
            let text = match done {
                Done::Promoted => format!(
                    "v{version} is Production in MLflow now. Slipway is deploying it; this page follows the change."
                ),
                Done::RolledBack => format!(
                    "Rolled back: v{version} is Production in MLflow again. Slipway is deploying it; this page follows the change."
                ),
            };
            view! { <p class="done-notice" role="status" data-done=done.as_str()>{text}</p> }
        });
        (failed, done)
    }
}

/// Where a list came from and how current it is: lists are served from a
/// short cache, so a change made elsewhere can take a few seconds to show.
#[component]
pub fn DataSource(mlflow_url: String, as_of: i64) -> impl IntoView {
    view! {
        <p class="source">
            "MLflow at " <code>{mlflow_url}</code> ", as of "
            <time datetime=format_instant(as_of)>{format_clock(as_of)}</time>
        </p>
    }
}

pub use crate::time::{format_clock, format_instant, format_millis};

/// A percentage to a tenth; a dash for none.
pub fn format_percent(percent: Option<f64>) -> String {
    percent.map_or("—".into(), |percent| format!("{percent:.1} %"))
}

/// Milliseconds, to a hundredth below 10.
pub fn format_ms(ms: Option<f64>) -> String {
    ms.map_or("—".into(), |ms| {
        if ms < 10.0 {
            format!("{ms:.2} ms")
        } else {
            format!("{ms:.0} ms")
        }
    })
}

/// Four significant figures, scientific notation for very large or small values.
pub fn format_metric(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || !value.is_finite() {
        value.to_string()
    } else if !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.3e}")
    } else {
        let decimals = (3 - magnitude.log10().floor() as i32).max(0) as usize;
        let text = format!("{value:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }
}

/// How long a finished run took; `—` while it runs (the server cannot know
/// what "now" is in the browser, so nothing time-relative is rendered).
pub fn format_duration(start: Option<i64>, end: Option<i64>) -> String {
    let (Some(start), Some(end)) = (start, end) else {
        return "—".to_string();
    };
    let millis = (end - start).max(0);
    let seconds = millis / 1000;
    match seconds {
        0..60 => format!("{:.1}s", millis as f64 / 1000.0),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// Chips for the tags users set; MLflow's own `mlflow.*` tags are bookkeeping.
pub fn user_tags(tags: &[(String, String)]) -> impl IntoView + use<> {
    tags.iter()
        .filter(|(key, _)| !key.starts_with("mlflow."))
        .map(|(key, value)| view! { <span class="tag">{format!("{key}={value}")}</span> })
        .collect_view()
}

#[cfg(test)]
mod tests {
    use super::{format_clock, format_duration, format_instant, format_metric, format_millis};

    #[test]
    fn clock_times_read_as_utc_seconds() {
        assert_eq!(format_clock(0), "00:00:00 UTC");
        assert_eq!(format_clock(1_796_083_199_999), "23:59:59 UTC");
        assert_eq!(format_clock(3_723_000), "01:02:03 UTC");
        assert_eq!(format_clock(-1), "23:59:59 UTC");
        assert_eq!(
            format_instant(1_796_083_199_999),
            "2026-11-30T23:59:59.999Z"
        );
        assert_eq!(format_instant(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn timestamps_read_as_utc_dates_and_minutes() {
        assert_eq!(format_millis(None), "—");
        assert_eq!(format_millis(Some(0)), "1970-01-01 00:00 UTC");
        assert_eq!(format_millis(Some(951_782_400_000)), "2000-02-29 00:00 UTC");
        assert_eq!(
            format_millis(Some(1_796_083_199_999)),
            "2026-11-30 23:59 UTC"
        );
        assert_eq!(
            format_millis(Some(4_107_542_400_000)),
            "2100-03-01 00:00 UTC"
        );
        assert_eq!(format_millis(Some(-1)), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn metrics_show_four_significant_figures() {
        assert_eq!(format_metric(0.97777777), "0.9778");
        assert_eq!(format_metric(12.5), "12.5");
        assert_eq!(format_metric(1234.5678), "1235");
        assert_eq!(format_metric(0.0), "0");
        assert_eq!(format_metric(123456.0), "1.235e5");
        assert_eq!(format_metric(0.00012), "1.200e-4");
        assert_eq!(format_metric(-0.5), "-0.5");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Some(1_000), Some(4_200)), "3.2s");
        assert_eq!(format_duration(Some(0), Some(62_000)), "1m 02s");
        assert_eq!(format_duration(Some(0), Some(7_500_000)), "2h 05m");
        assert_eq!(format_duration(Some(0), None), "—");
    }
}
