//! Load tests of a deployment: the form (`/deployments/{model}/load-test`,
//! a plain POST form, sent back as a draft with each field's problem), a
//! test's live page (`…/load-tests/{id}`, re-read every second, with its
//! cancel button), the list on the deployment's page, and two tests side
//! by side (`…/compare-load-tests?a=…&b=…`).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::list::{Results, data_table};
use super::live::keep_fresh;
use super::parts::Field;
use super::{NotAllowed, format_millis, format_ms, format_percent, use_me};
use crate::access::Action;
use crate::error::AppError;
use crate::model::{LoadTest, LoadTestForm, LoadTestState};
use crate::routes::{
    compare_load_tests_href, deployment_href, load_test_form_href, load_test_href, load_tests_href,
};
use crate::server_fns::{get_load_test, get_load_test_form, list_load_tests};

#[component]
pub fn LoadTestFormPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let model = Memo::new(move |_| params.with(|params| params.get("model").unwrap_or_default()));
    let draft = Memo::new(move |_| query.with(|query| query.get("draft")));
    let form = Resource::new(
        move || (model.get(), draft.get()),
        |(model, draft)| get_load_test_form(model, draft),
    );
    let me = use_me();
    view! {
        <Title text="Load test"/>
        <section class="page">
            <super::Notice/>
            <Results loading_text="Loading the form…">
                {move || Suspend::new(async move {
                    let form = form.await?;
                    let user = me.await?;
                    let allowed = user.may(Action::LoadTest { model: &form.model });
                    Ok::<_, AppError>(view! { <LoadTestFormView form allowed/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn LoadTestFormView(form: LoadTestForm, allowed: bool) -> impl IntoView {
    let model = form.model.clone();
    let header = view! {
        <header class="page-header">
            <h1>{format!("Load test of {model}")}</h1>
            <a href=deployment_href(&model)>"Back to the deployment"</a>
        </header>
    };
    if !allowed {
        return view! { {header} <NotAllowed reason="Load tests need the deployer role for this model.".to_string()/> }.into_any();
    }
    let Some(address) = form.address.clone() else {
        return view! {
            {header}
            <p class="field-error" role="alert">{format!("{model} has nothing serving yet: nothing to test.")}</p>
        }
        .into_any();
    };
    let error = |field: &str| form.problems.get(field).cloned();
    let request = form.request.clone();
    let caps = form.caps;
    let version = form
        .serving_version
        .clone()
        .map(|version| format!("v{version}"))
        .unwrap_or_default();
    let problems = (!form.problems.is_empty()).then(|| {
        view! { <div class="form-errors" role="alert"><p>"Nothing was started; fix the fields marked below."</p></div> }
    });
    view! {
        {header}
        <p class="reason">
            "Requests go to " <code data-address>{address}</code> " (" {version} "). Every answer that is not 2xx counts as an error; the first one is kept."
        </p>
        {problems}
        <form class="load-test-form" method="post" action=load_tests_href(&model) novalidate>
            <Field name="users" label=format!("Concurrent users (at most {})", caps.max_users) error=error("users")>
                <input id="users" name="users" type="number" min="1" value=request.users.clone()/>
            </Field>
            <Field name="rate" label=format!("Requests per second in all (empty: as fast as the users can; at most {})", caps.max_rate) error=error("rate")>
                <input id="rate" name="rate" type="number" min="1" value=request.rate.clone()/>
            </Field>
            <Field name="duration_secs" label=format!("Duration in seconds (at most {})", caps.max_duration_secs) error=error("duration_secs")>
                <input id="duration_secs" name="duration_secs" type="number" min="1" value=request.duration_secs.clone()/>
            </Field>
            <Field name="ramp_up_secs" label="Ramp-up in seconds (users start one after another)" error=error("ramp_up_secs")>
                <input id="ramp_up_secs" name="ramp_up_secs" type="number" min="0" value=request.ramp_up_secs.clone()/>
            </Field>
            <Field name="body" label="Request body (JSON, as the model takes it; the version's input example by default)" error=error("body")>
                <textarea id="body" name="body" rows="6" spellcheck="false">{request.body.clone()}</textarea>
            </Field>
            {form.needs_confirmation.then(|| view! {
                <Field name="confirm" label="This deployment serves production in the cluster: the test loads it" error=error("confirm")>
                    <label class="check"><input id="confirm" name="confirm" type="checkbox" value="yes"/> " Yes, load it"</label>
                </Field>
            })}
            <button type="submit">"Start the load test"</button>
        </form>
    }
    .into_any()
}

#[component]
pub fn LoadTestPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|params| params.get("id").unwrap_or_default()));
    let test = Resource::new(move || id.get(), get_load_test);
    let me = use_me();
    view! {
        <Title text="Load test"/>
        <section class="page">
            <super::Notice/>
            <Results loading_text="Loading the load test…">
                {move || Suspend::new(async move {
                    let test = test.await?;
                    let user = me.await?;
                    let may_cancel = user.may(Action::LoadTest { model: &test.model });
                    Ok::<_, AppError>(view! { <LiveLoadTest test may_cancel/> })
                })}
            </Results>
        </section>
    }
}

/// The test as the server rendered it, re-read every second while it runs.
#[island]
fn LiveLoadTest(test: LoadTest, may_cancel: bool) -> impl IntoView {
    let id = test.id.clone();
    let current = RwSignal::new(test);
    keep_fresh(current, move || get_load_test(id.clone()));
    move || view! { <LoadTestBody test=current.get() may_cancel/> }
}

#[component]
fn LoadTestBody(test: LoadTest, may_cancel: bool) -> impl IntoView {
    let running = test.state == LoadTestState::Running;
    let cancel = (running && may_cancel).then(|| {
        let action = format!("{}/cancel", load_test_href(&test.model, &test.id));
        view! {
            <form method="post" action=action class="inline">
                <button type="submit" class="danger">"Cancel the test"</button>
            </form>
        }
    });
    let elapsed = test.results.seconds.len();
    let mut seconds = test.results.seconds.clone();
    seconds.reverse();
    view! {
        <header class="page-header">
            <h1>{format!("Load test of {}", test.model)}</h1>
            <span class="live-status" aria-live="polite">
                <span class=format!("status load-{}", test.state.as_str()) data-state=test.state.as_str()>{test.state.as_str()}</span>
            </span>
        </header>
        <div class="actions">
            <a href=deployment_href(&test.model)>"Back to the deployment"</a>
            {cancel}
        </div>
        <LoadTestFacts test=test.clone()/>
        {running.then(|| view! { <p class="muted" data-elapsed>{format!("{elapsed} of {} s", test.duration_secs)}</p> })}
        <h2>"Second by second"</h2>
        {data_table(
            seconds,
            "data load-seconds",
            &["Second", "Requests", "Errors", "p50", "p95", "p99"],
            "No second has passed yet.",
            |second| view! {
                <tr>
                    <td class="number">{second.second + 1}</td>
                    <td class="number">{second.requests}</td>
                    <td class="number">{second.errors}</td>
                    <td class="number">{format_ms(second.p50_ms)}</td>
                    <td class="number">{format_ms(second.p95_ms)}</td>
                    <td class="number">{format_ms(second.p99_ms)}</td>
                </tr>
            },
        )}
    }
}

/// A test's settings and numbers, as a table of facts.
#[component]
fn LoadTestFacts(test: LoadTest) -> impl IntoView {
    let results = &test.results;
    let error_percent = format_percent(results.error_percent());
    let latency = format!(
        "{} / {} / {}",
        format_ms(results.p50_ms),
        format_ms(results.p95_ms),
        format_ms(results.p99_ms)
    );
    view! {
        <table class="data facts load-facts">
            <tbody>
                <tr><th scope="row">"Version"</th><td data-version>{version_text(&test.version)}</td></tr>
                <tr><th scope="row">"Users"</th><td>{settings_text(&test)}</td></tr>
                <tr><th scope="row">"Started"</th><td>{format!("{} by {}", format_millis(Some(test.started_ms)), test.started_by)}</td></tr>
                <tr><th scope="row">"Requests"</th><td data-requests>{test.results.requests}</td></tr>
                <tr><th scope="row">"Requests/s"</th><td data-rate>{format!("{:.1}", test.results.requests_per_second)}</td></tr>
                <tr><th scope="row">"Errors"</th><td data-errors>{format!("{} ({error_percent})", test.results.errors)}</td></tr>
                <tr><th scope="row">"Latency p50 / p95 / p99"</th><td data-latency>{latency}</td></tr>
                <tr><th scope="row">"First error"</th><td class="description" data-first-error>{test.results.first_error.clone().unwrap_or_else(|| "—".into())}</td></tr>
            </tbody>
        </table>
    }
}

/// The deployment page's section: the form's link and the latest tests,
/// two of which can be compared.
#[component]
pub fn LoadTestsSection(model: String, may_test: bool) -> impl IntoView {
    let tests = Resource::new(
        {
            let model = model.clone();
            move || model.clone()
        },
        list_load_tests,
    );
    let start = may_test
        .then(|| view! { <a class="button" href=load_test_form_href(&model)>"New load test…"</a> });
    let compare_action = compare_load_tests_href(&model);
    view! {
        <section class="load-tests" id="load-tests">
            <h2>"Load tests"</h2>
            {start}
            <Suspense fallback=|| view! { <p class="loading">"Loading the load tests…"</p> }>
                {move || {
                    let compare_action = compare_action.clone();
                    Suspend::new(async move {
                        let tests = match tests.await {
                            Ok(tests) => tests,
                            Err(err) => return view! { <p class="field-error" role="alert">{err.to_string()}</p> }.into_any(),
                        };
                        let options = |selected: usize| {
                            tests
                                .iter()
                                .enumerate()
                                .map(|(index, test)| {
                                    let label = format!("{} · {} · {}", format_millis(Some(test.started_ms)), version_text(&test.version), test.state.as_str());
                                    view! { <option value=test.id.clone() selected=index == selected>{label}</option> }
                                })
                                .collect_view()
                        };
                        let compare = (tests.len() >= 2).then(|| view! {
                            <form method="get" action=compare_action class="inline compare-load-tests">
                                <select name="a" aria-label="Before">{options(1)}</select>
                                " against "
                                <select name="b" aria-label="After">{options(0)}</select>
                                <button type="submit">"Compare"</button>
                            </form>
                        });
                        view! {
                            {compare}
                            {data_table(
                                tests,
                                "data load-tests",
                                &["Started", "Version", "Settings", "State", "Requests", "Requests/s", "Errors", "p99", "By"],
                                "No load test yet.",
                                |test| view! {
                                    <tr data-load-test=test.id.clone()>
                                        <td><a href=load_test_href(&test.model, &test.id)>{format_millis(Some(test.started_ms))}</a></td>
                                        <td>{version_text(&test.version)}</td>
                                        <td>{settings_text(&test)}</td>
                                        <td data-state=test.state.as_str()>{test.state.as_str()}</td>
                                        <td class="number">{test.results.requests}</td>
                                        <td class="number">{format!("{:.1}", test.results.requests_per_second)}</td>
                                        <td class="number">{test.results.errors}</td>
                                        <td class="number">{format_ms(test.results.p99_ms)}</td>
                                        <td>{test.started_by.clone()}</td>
                                    </tr>
                                },
                            )}
                        }
                        .into_any()
                    })
                }}
            </Suspense>
        </section>
    }
}

#[component]
pub fn CompareLoadTestsPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let model = Memo::new(move |_| params.with(|params| params.get("model").unwrap_or_default()));
    let ids = Memo::new(move |_| {
        query.with(|query| {
            (
                query.get("a").unwrap_or_default(),
                query.get("b").unwrap_or_default(),
            )
        })
    });
    let tests = Resource::new(
        move || ids.get(),
        |(a, b)| async move {
            let (a, b) = futures::join!(get_load_test(a), get_load_test(b));
            Ok::<_, AppError>((a?, b?))
        },
    );
    view! {
        <Title text="Load tests compared"/>
        <section class="page">
            <header class="page-header">
                <h1>"Load tests side by side"</h1>
                <a href=move || deployment_href(&model.get())>"Back to the deployment"</a>
            </header>
            <Results loading_text="Loading the load tests…">
                {move || Suspend::new(async move {
                    let (a, b) = tests.await?;
                    Ok::<_, AppError>(view! { <Comparison a b/> })
                })}
            </Results>
        </section>
    }
}

#[component]
fn Comparison(a: LoadTest, b: LoadTest) -> impl IntoView {
    let change = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(before), Some(after)) if before > 0.0 => {
            format!("{:+.0} %", (after - before) / before * 100.0)
        }
        _ => String::new(),
    };
    let rows: Vec<(&str, String, String, String)> = vec![
        (
            "Version",
            version_text(&a.version),
            version_text(&b.version),
            String::new(),
        ),
        (
            "Started",
            format_millis(Some(a.started_ms)),
            format_millis(Some(b.started_ms)),
            String::new(),
        ),
        (
            "Settings",
            settings_text(&a),
            settings_text(&b),
            String::new(),
        ),
        (
            "State",
            a.state.as_str().into(),
            b.state.as_str().into(),
            String::new(),
        ),
        (
            "Requests",
            a.results.requests.to_string(),
            b.results.requests.to_string(),
            String::new(),
        ),
        (
            "Requests/s",
            format!("{:.1}", a.results.requests_per_second),
            format!("{:.1}", b.results.requests_per_second),
            change(
                Some(a.results.requests_per_second),
                Some(b.results.requests_per_second),
            ),
        ),
        (
            "Errors",
            format_percent(a.results.error_percent()),
            format_percent(b.results.error_percent()),
            String::new(),
        ),
        (
            "p50",
            format_ms(a.results.p50_ms),
            format_ms(b.results.p50_ms),
            change(a.results.p50_ms, b.results.p50_ms),
        ),
        (
            "p95",
            format_ms(a.results.p95_ms),
            format_ms(b.results.p95_ms),
            change(a.results.p95_ms, b.results.p95_ms),
        ),
        (
            "p99",
            format_ms(a.results.p99_ms),
            format_ms(b.results.p99_ms),
            change(a.results.p99_ms, b.results.p99_ms),
        ),
    ];
    view! {
        <table class="data compare load-compare">
            <thead>
                <tr>
                    <th scope="col"></th>
                    <th scope="col"><a href=load_test_href(&a.model, &a.id)>"Before"</a></th>
                    <th scope="col"><a href=load_test_href(&b.model, &b.id)>"After"</a></th>
                    <th scope="col">"Change"</th>
                </tr>
            </thead>
            <tbody>
                {rows.into_iter().map(|(name, before, after, change)| view! {
                    <tr data-row=name>
                        <th scope="row">{name}</th>
                        <td>{before}</td>
                        <td>{after}</td>
                        <td class="number">{change}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

fn version_text(version: &Option<String>) -> String {
    version
        .as_ref()
        .map_or("—".to_string(), |version| format!("v{version}"))
}

fn settings_text(test: &LoadTest) -> String {
    let rate = test
        .rate
        .map(|rate| format!(", ≤ {rate}/s"))
        .unwrap_or_default();
    format!(
        "{} users, {} s (ramp-up {} s{rate})",
        test.users, test.duration_secs, test.ramp_up_secs
    )
}
