//! The whole HTTP surface, in process: server-rendered pages, probes and
//! metrics, with a real MLflow behind them.

use crate::support;

use crate::support::site::{Caller, Site, location};
use crate::support::{MlflowRest, OwnMlflow, config, free_port, mlflow_url, sign_in, unique};
use app::access::Role;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use server::{build_state, web::router};
use tower::ServiceExt;

/// The `href` of the link with this `rel`, unescaped as a browser would.
fn link(html: &str, rel: &str) -> Option<String> {
    let end = html.find(&format!("rel=\"{rel}\""))?;
    let start = html[..end].rfind("href=\"")? + "href=\"".len();
    let href = &html[start..];
    Some(href[..href.find('"')?].replace("&amp;", "&"))
}

/// The text of each `<td class="name">` cell (tags stripped) that starts with `prefix`.
fn listed_names(html: &str, prefix: &str) -> Vec<String> {
    html.split("<td class=\"name\">")
        .skip(1)
        .filter_map(|cell| cell.split("</td>").next())
        .map(strip_tags)
        .filter(|name| name.starts_with(prefix))
        .collect()
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for character in html.chars() {
        match character {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => text.push(character),
            _ => {}
        }
    }
    text.trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn experiments_page_lists_and_pages_through_mlflow() {
    let rest = MlflowRest::new(&mlflow_url());
    let prefix = unique("page");
    for index in 0..5 {
        rest.create_experiment(&format!("{prefix}-{index}"), &[("owner", "ml-team")])
            .await;
    }
    let app = Site::new(&mlflow_url()).await;

    let (status, first) = app.get(&format!("/experiments?q={prefix}&size=3")).await;
    assert_eq!(status, StatusCode::OK);
    let mut names = listed_names(&first, &prefix);
    assert_eq!(names.len(), 3, "{first}");
    assert!(first.contains("owner=ml-team"));
    assert!(link(&first, "prev").is_none());

    let next = link(&first, "next").expect("a next-page link");
    let (status, second) = app.get(&next).await;
    assert_eq!(status, StatusCode::OK);
    names.extend(listed_names(&second, &prefix));
    assert!(
        link(&second, "next").is_none(),
        "5 experiments fill two pages of 3"
    );
    names.sort();
    assert_eq!(
        names,
        (0..5)
            .map(|index| format!("{prefix}-{index}"))
            .collect::<Vec<_>>()
    );

    let (_, back) = app
        .get(&link(&second, "prev").expect("a previous-page link"))
        .await;
    assert_eq!(listed_names(&back, &prefix), listed_names(&first, &prefix));

    // The page size is chosen on the page, back to the first page.
    assert!(
        second.contains(&format!(
            "<a href=\"/experiments?q={prefix}&amp;size=50\">50</a>"
        )),
        "{second}"
    );
    let (_, all) = app.get(&format!("/experiments?q={prefix}&size=25")).await;
    assert_eq!(listed_names(&all, &prefix).len(), 5);
    assert!(all.contains("aria-current=\"true\">25</a>"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_without_matches_says_so() {
    let app = Site::new(&mlflow_url()).await;
    let term = unique("nothing");
    let (status, html) = app.get(&format!("/experiments?q={term}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("No experiments match \"{term}\"")),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_message() {
    let app = Site::new(&mlflow_url()).await;
    let (status, html) = app.get("/experiments?size=5000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("Page size must be a whole number from 1 to 500, not \"5000\""),
        "{html}"
    );
    let (status, html) = app.get("/experiments?page=not-a-token").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("answered 400 INVALID_PARAMETER_VALUE"),
        "{html}"
    );
}

/// No other site can frame a page (a Promote or Approve button under a
/// decoy); and comparing runs is capped where each run is a call to MLflow,
/// the plots' server function too.
#[tokio::test(flavor = "multi_thread")]
async fn pages_refuse_frames_and_comparisons_are_capped() {
    let app = Site::new(&mlflow_url()).await;
    for uri in ["/login", "/experiments", "/deployments"] {
        let response = app.request(Request::get(uri), Body::empty()).await;
        let headers = response.headers().clone();
        assert_eq!(headers["x-frame-options"], "DENY", "{uri}");
        let policy = headers["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(policy.contains("frame-ancestors 'none'"), "{uri}: {policy}");
        // Only the scripts the page itself carries, by this answer's nonce.
        let nonce = policy
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("{uri}: no nonce in {policy}"));
        assert!(nonce.len() >= 16, "{nonce}");
        for directive in [
            "default-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(policy.contains(directive), "{uri}: {policy}");
        }
        let html = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        let scripts: Vec<&str> = html.split("<script").skip(1).collect();
        assert!(!scripts.is_empty(), "{uri}: {html}");
        for script in scripts {
            let tag = script.split('>').next().unwrap();
            assert!(
                tag.contains(&format!("nonce=\"{nonce}\"")),
                "{uri}: a script without this answer's nonce: <script{tag}>"
            );
        }
        assert!(
            headers.get("strict-transport-security").is_none(),
            "plain http: no HSTS"
        );
    }
    let many: Vec<(String, String)> = (0..11)
        .map(|n| (format!("run_ids[{n}]"), format!("r{n}")))
        .collect();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(many)
        .finish();
    use leptos::server_fn::ServerFn;
    let response = app
        .post_form(app::server_fns::ComparisonPlots::PATH, body)
        .await;
    // Refused before any MLflow call, as the page's error.
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    let answer: app::error::AppError = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        answer,
        app::error::AppError::InvalidInput("Choose from 1 to 10 runs, not 11".into())
    );
}

/// What a page says a form did is Slipway's own sentence: a link picks
/// which one and a version number, and can make it say nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn a_done_notice_says_only_slipways_own_words() {
    let app = Site::new(&mlflow_url()).await;
    let (_, html) = app.get("/deployments/m?done=promoted&version=7").await;
    assert!(html.contains("data-done=\"promoted\""), "{html}");
    assert!(
        html.contains(">v7 is Production in MLflow now. Slipway is deploying it"),
        "{html}"
    );
    let (_, html) = app.get("/deployments/m?done=rolled-back&version=3").await;
    assert!(
        html.contains("Rolled back: v3 is Production in MLflow again."),
        "{html}"
    );
    for forged in [
        "done=promoted&version=7%20-%20call%20support%20at%20evil.example",
        "done=promoted&version=",
        "done=hacked&version=7",
    ] {
        let (_, html) = app.get(&format!("/deployments/m?{forged}")).await;
        assert!(!html.contains("data-done"), "{forged}: {html}");
        assert!(!html.contains("evil.example"), "{forged}");
    }
    // A notice is an id the server gave its user: text in a link, or
    // someone else's id, shows nothing.
    let refused = app
        .send(
            Caller::Signed(Role::Admin),
            Method::POST,
            "/deployments/m/rollback",
            "reason=x",
        )
        .await;
    assert!(
        !app.notice(Role::Admin, &refused).await.is_empty(),
        "its sender sees it"
    );
    let mine = location(&refused);
    let id = mine
        .split("notice=")
        .nth(1)
        .expect("a notice id")
        .to_string();
    for (role, page) in [
        (Role::Viewer, format!("/deployments/m?notice={id}")),
        (
            Role::Admin,
            "/deployments/m?notice=Your%20session%20expired%3A%20sign%20in%20at%20evil.example"
                .into(),
        ),
    ] {
        let shown = app.send(Caller::Signed(role), Method::GET, &page, "").await;
        let body = shown.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(!html.contains("form-errors"), "{page}: {html}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_things_that_do_not_exist_answer_404() {
    let app = Site::new(&mlflow_url()).await;
    // Every page the app has that names a thing, with a thing that is not there.
    let mut pages: Vec<String> = server::web::page_routes()
        .iter()
        .map(|route| route.path().to_string())
        .filter(|path| path.contains('{'))
        .map(|path| {
            let filled = if path.starts_with("/runs/") {
                path.replace("{id}", "0123456789abcdef0123456789abcdef")
            } else if path.starts_with("/experiments/") {
                path.replace("{id}", "987654321")
            } else {
                path.replace("{name}", "no-such-model-here")
                    .replace("{model}", "no-such-model-here")
                    .replace("{version}", "1")
                    .replace("{id}", "no-such-thing")
            };
            match filled.rsplit('/').next() {
                Some("promote") => format!("{filled}?version=1"),
                Some("artifact") => format!("{filled}?path=nope.txt"),
                _ => filled,
            }
        })
        .collect();
    assert!(pages.len() >= 9, "{pages:?}");
    pages.push("/no/such/page".into());
    for page in &pages {
        let (status, html) = app.get(page).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{page}: {html}");
        assert!(
            html.contains("role=\"alert\"") || html.contains("Page not found"),
            "{page}: {html}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_metrics() {
    let app = Site::new(&mlflow_url()).await;
    assert_eq!(
        app.get("/healthz").await,
        (StatusCode::OK, "ok".to_string())
    );
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["mlflow"], "ok");

    app.get("/experiments").await;
    assert_eq!(app.get("/no-such-page").await.0, StatusCode::NOT_FOUND);
    let (status, metrics) = app.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains(
            "slipway_http_requests_total{method=\"GET\",route=\"/experiments\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("status=\"404\""), "{metrics}");
    // What an operator needs beyond requests: MLflow's calls by endpoint and
    // outcome, and the reconciler's passes (the first runs at start-up).
    assert!(
        metrics.contains(
            "slipway_mlflow_call_duration_seconds_count{endpoint=\"experiments/search\",outcome=\"ok\"}"
        ),
        "{metrics}"
    );
    let passes = support::eventually(std::time::Duration::from_secs(10), || async {
        let metrics = app.get("/metrics").await.1;
        metrics
            .contains("slipway_reconcile_pass_duration_seconds_count{outcome=\"ok\"}")
            .then_some(())
    })
    .await;
    assert!(passes.is_some(), "reconcile passes are counted");
}

/// MLflow calls Slipway made to `endpoint` so far, as `/metrics` counts them.
async fn mlflow_calls(app: &Site, endpoint: &str) -> u64 {
    let metrics = app.get("/metrics").await.1;
    let series = format!("slipway_mlflow_call_duration_seconds_count{{endpoint=\"{endpoint}\",");
    metrics
        .lines()
        .filter(|line| line.starts_with(&series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Fifty people opening the models page at once cost MLflow one search; a
/// model registered in MLflow directly shows once the kept answer is stale,
/// and until then the page says how old its list is.
#[tokio::test(flavor = "multi_thread")]
async fn many_page_views_at_once_share_one_mlflow_read() {
    let rest = MlflowRest::new(&mlflow_url());
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.mlflow_cache_ms = 3000;
    let app = Site::start(config, data).await;
    let prefix = unique("shared");
    let page = format!("/models?q={prefix}");
    let before = mlflow_calls(&app, "registered-models/search").await;
    let views = futures::future::join_all((0..50).map(|_| app.get(&page))).await;
    assert!(views.iter().all(|(status, _)| *status == StatusCode::OK));
    let searches = mlflow_calls(&app, "registered-models/search").await - before;
    assert_eq!(
        searches, 1,
        "50 identical views, {searches} MLflow searches"
    );

    let first_as_of = as_of(&views[0].1);
    assert!(views.iter().all(|(_, html)| as_of(html) == first_as_of));

    let model = format!("{prefix}-new");
    let creating = chrono::Utc::now();
    rest.create_registered_model(&model).await;
    let created = chrono::Utc::now();
    let cached = app.get(&page).await.1;
    assert!(!cached.contains(&model), "the list kept for 3 s is served");
    assert_eq!(as_of(&cached), first_as_of, "and says it is the older list");
    let shown = support::eventually(std::time::Duration::from_secs(10), || async {
        let html = app.get(&page).await.1;
        if html.contains(&model) {
            return Some(as_of(&html));
        }
        // A list without the model must say it is from before it was made.
        assert!(as_of(&html) < created, "{html}");
        None
    })
    .await;
    let shown_as_of = shown.expect("a model made elsewhere shows once the answer is stale");
    assert!(
        shown_as_of >= creating,
        "{shown_as_of} is before {creating}"
    );
}

/// The instant a list page says its data is from (`<time datetime>`).
fn as_of(html: &str) -> chrono::DateTime<chrono::Utc> {
    let (_, after) = html
        .split_once(", as of <time datetime=\"")
        .unwrap_or_else(|| panic!("no as-of time in {html}"));
    let instant = after.split('"').next().unwrap();
    chrono::DateTime::parse_from_rfc3339(instant)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Made-up methods and paths cannot grow `/metrics`: routes are patterns,
/// and methods outside HTTP's own collapse into `other`.
#[tokio::test(flavor = "multi_thread")]
async fn random_methods_and_paths_keep_the_metrics_the_same_size() {
    let app = Site::new(&mlflow_url()).await;
    let send = |method: String, path: String| {
        app.request(
            Request::builder().method(method.as_str()).uri(path),
            Body::empty(),
        )
    };
    send("FROB0".into(), "/nowhere-0".into()).await;
    // The first read of /metrics counts itself too.
    app.get("/metrics").await;
    let before = app.get("/metrics").await.1;
    for index in 1..300 {
        send(format!("FROB{index}"), format!("/nowhere-{index}")).await;
    }
    let after = app.get("/metrics").await.1;
    assert_eq!(after.lines().count(), before.lines().count(), "{after}");
    assert!(
        after.contains(
            "slipway_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 300"
        ),
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mlflow_outage_is_explained_and_recovered_from_without_a_restart() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let app = Site::new(&url).await;

    let (status, html) = app.get("/experiments").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        html.contains(&format!("Cannot reach MLflow at {url}: Connection refused")),
        "{html}"
    );
    // MLflow down is said, not a reason to leave the Service.
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["leading"], true, "the only process leads");
    assert!(ready["mlflow"].as_str().unwrap().contains(&url), "{body}");

    let _mlflow = OwnMlflow::start(port);
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, html) = app.get("/experiments").await;
    assert_eq!(listed_names(&html, "Default"), vec!["Default"], "{html}");
}

/// A frozen MLflow (SIGSTOP: connections accepted, no answer) costs a page
/// its deadline, not MLflow's timeout three times over: every page answers
/// with what is wrong, and the first page after SIGCONT works again.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_mlflow_costs_a_page_its_deadline_and_then_nothing() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mlflow = OwnMlflow::start(port);
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&url, data.path());
    config.page_deadline_secs = 2;
    // Long enough that a loaded CI machine reads the page again in time.
    config.mlflow_cache_ms = 5000;
    let app = Site::start(config, data).await;
    let (status, html) = app.get("/experiments").await;
    assert_eq!(status, StatusCode::OK, "{html}");

    mlflow.freeze();
    // For the cache's time, what MLflow answered last serves again.
    let (status, html) = app.get("/experiments").await;
    assert_eq!(status, StatusCode::OK, "kept for the cache's time: {html}");
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    for page in [
        "/experiments",
        "/models",
        "/experiments/0",
        "/runs/0123456789abcdef0123456789abcdef",
    ] {
        // Bounded well below MLflow's own timeout (20 s here, 30 s by default).
        let (status, html) =
            tokio::time::timeout(std::time::Duration::from_secs(15), app.get(page))
                .await
                .unwrap_or_else(|_| panic!("{page} waited for MLflow past its deadline"));
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}: {html}");
        assert!(
            html.contains("it is not answering (nothing within 2 s)"),
            "{page}: {html}"
        );
    }
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(ready["mlflow"], "ok", "{body}");

    mlflow.thaw();
    let (status, html) = app.get("/experiments").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the first page after SIGCONT: {html}"
    );
}

/// While MLflow is down, a deployment's page still shows what Slipway
/// knows (the status and history it keeps), with MLflow's last word.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_page_shows_what_slipway_knows_while_mlflow_is_down() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mlflow = OwnMlflow::start(port);
    let rest = MlflowRest::new(&url);
    let model = unique("outage-model");
    let experiment = rest.create_experiment(&unique("outage"), &[]).await;
    let run = rest.create_run(&experiment, "r", &[], &[], &[]).await;
    rest.create_registered_model(&model).await;
    let version = rest
        .register_version(&model, &experiment, &run)
        .await
        .version;
    rest.transition_stage(&model, &version, "Production").await;

    let data = tempfile::tempdir().unwrap();
    let catalog = data.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        format!("[[deployment]]\nmodel = {model:?}\ntarget = \"seldon\"\nnamespace = \"models\"\n"),
    )
    .unwrap();
    let mut config = config(&url, data.path());
    config.catalog = Some(catalog);
    let app = Site::start(config, data).await;
    let page = format!("/deployments/{model}");
    let production = format!("v{version} (stage Production)");
    let seen = support::eventually(std::time::Duration::from_secs(30), || async {
        let (status, html) = app.get(&page).await;
        (status == StatusCode::OK && html.contains(&production)).then_some(())
    })
    .await;
    assert!(seen.is_some(), "the first pass read Production from MLflow");

    drop(mlflow);
    let (status, html) = app.get(&page).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&format!("<h1>{model}</h1>")), "{html}");
    assert!(html.contains(&production), "MLflow's last word: {html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_pages_show_stages_aliases_and_storage() {
    let rest = MlflowRest::new(&mlflow_url());
    let experiment = rest.create_experiment(&unique("registry-pages"), &[]).await;
    let model = unique("Fraud model");
    rest.create_registered_model(&model).await;
    let mut registered = Vec::new();
    let mut run_ids = Vec::new();
    for index in 0..3 {
        let run = rest
            .create_run(&experiment, &format!("train-{index}"), &[], &[], &[])
            .await;
        registered.push(rest.register_version(&model, &experiment, &run).await);
        run_ids.push(run);
    }
    rest.transition_stage(&model, "2", "Production").await;
    rest.transition_stage(&model, "3", "Staging").await;
    rest.set_alias(&model, "champion", "2").await;
    let app = Site::new(&mlflow_url()).await;
    let encoded = model.replace(' ', "%20");

    let (status, list) = app
        .get(&format!(
            "/models?q={}",
            model.to_lowercase().replace(' ', "+")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains(&format!("<a href=\"/models/{encoded}\">{model}</a>")),
        "{list}"
    );
    assert!(list.contains("Production: v2"), "{list}");
    assert!(list.contains("Staging: v3"), "{list}");
    assert!(
        list.contains(&format!(
            "href=\"/models/{encoded}/versions/2\" class=\"alias\">@champion → v2"
        )),
        "{list}"
    );

    let (status, detail) = app.get(&format!("/models/{encoded}")).await;
    assert_eq!(status, StatusCode::OK);
    let versions: Vec<_> = detail
        .match_indices(&format!("/models/{encoded}/versions/"))
        .map(|(at, _)| at)
        .collect();
    assert!(versions.len() >= 3, "{detail}");
    let order: Vec<_> = ["3", "2", "1"]
        .iter()
        .map(|version| {
            let link = format!("/versions/{version}\">v{version}</a>");
            detail
                .find(&link)
                .unwrap_or_else(|| panic!("{link} in {detail}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "newest version first"
    );
    assert!(detail.contains("@champion"), "{detail}");

    let (status, version) = app.get(&format!("/models/{encoded}/versions/2")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        version.contains(&format!("<code>{}</code>", registered[1].source)),
        "{version}"
    );
    // Storage: MLflow 3 resolves a logged model to its folder; MLflow 2's
    // source is the folder.
    let storage = match &registered[1].model_id {
        Some(model_id) => format!("mlflow-artifacts:/{experiment}/models/{model_id}/artifacts"),
        None => registered[1].source.clone(),
    };
    assert!(
        version.contains(&format!("<code>{storage}</code>")),
        "{version}"
    );
    assert!(version.contains("stage-production"), "{version}");
    assert!(
        version.contains(&format!("<a href=\"/runs/{}\">", run_ids[1])),
        "the source run links: {version}"
    );

    let (_, missing) = app.get(&format!("/models/{encoded}/versions/42")).await;
    assert!(
        missing.contains("answered 404 RESOURCE_DOES_NOT_EXIST"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runs_table_filters_and_sorts_with_mlflows_syntax() {
    let rest = MlflowRest::new(&mlflow_url());
    let name = unique("runs-table");
    let experiment = rest.create_experiment(&name, &[]).await;
    for (index, optimizer) in ["adam", "sgd", "adam", "adam"].iter().enumerate() {
        let auc = [0.5, 0.75, 0.625, 0.875][index];
        rest.create_run(
            &experiment,
            &format!("run-{index}"),
            &[("optimizer", optimizer)],
            &[("auc", &[0.25, auc])],
            &[],
        )
        .await;
    }
    let app = Site::new(&mlflow_url()).await;
    let page = format!("/experiments/{experiment}");

    let (status, html) = app.get(&page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&format!("<h1>{name}</h1>")), "{html}");
    assert_eq!(listed_names(&html, "run-").len(), 4, "{html}");
    assert!(
        html.contains("<td class=\"metric\">0.875</td>"),
        "latest metric values: {html}"
    );
    assert!(html.contains("<td class=\"param\">sgd</td>"), "{html}");

    let filtered = format!(
        "{page}?filter=metrics.auc+%3E+0.55+AND+params.optimizer+%3D+%27adam%27&order=metrics.auc&dir=asc"
    );
    let (_, html) = app.get(&filtered).await;
    assert_eq!(listed_names(&html, "run-"), vec!["run-2", "run-3"]);
    // The header of the sorted column offers the other direction.
    assert!(html.contains("aria-sort=\"ascending\""), "{html}");
    assert!(html.contains("order=metrics.auc&amp;dir=desc"), "{html}");

    let (_, html) = app
        .get(&format!("{page}?filter=metrics.auc+%3E%3E+2"))
        .await;
    assert!(
        html.contains(&format!("<h1>{name}</h1>")),
        "the header stays: {html}"
    );
    assert!(
        html.contains("answered 400 INVALID_PARAMETER_VALUE"),
        "{html}"
    );

    let (_, html) = app.get(&format!("{page}?filter=metrics.auc+%3E+2")).await;
    assert!(
        html.contains("No runs match <code>metrics.auc &gt; 2</code>"),
        "{html}"
    );

    for dir in ["asc", "desc"] {
        let (_, html) = app.get(&format!("{page}?order=start_time&dir={dir}")).await;
        let mut expected: Vec<String> = (0..4).map(|index| format!("run-{index}")).collect();
        if dir == "desc" {
            expected.reverse();
        }
        assert_eq!(
            listed_names(&html, "run-"),
            expected,
            "sorted by start time, {dir}"
        );
    }

    let (_, html) = app.get(&format!("{page}?col=metrics.auc")).await;
    assert!(html.contains("<td class=\"metric\">0.875</td>"), "{html}");
    assert!(
        !html.contains("<td class=\"param\">"),
        "params hidden when only auc is chosen: {html}"
    );
    assert!(
        html.contains("name=\"col\" value=\"params.optimizer\""),
        "the chooser still offers it: {html}"
    );

    let (_, html) = app.get(&format!("{page}?order=duration")).await;
    assert!(html.contains("Runs cannot be sorted by"), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_page_charts_the_real_metric_history() {
    let rest = MlflowRest::new(&mlflow_url());
    let experiment = rest.create_experiment(&unique("run-page"), &[]).await;
    let losses: Vec<f64> = (0..12).map(|step| (12 - step) as f64 / 8.0).collect();
    let run = rest
        .create_run(
            &experiment,
            "trained",
            &[("lr", "0.05")],
            &[("loss", losses.as_slice())],
            &[("team", "ml")],
        )
        .await;
    rest.upload_artifact(&experiment, &run, "model/MLmodel", "flavors: {}")
        .await;
    let model = unique("from-run");
    rest.create_registered_model(&model).await;
    let logged_model = rest
        .register_version(&model, &experiment, &run)
        .await
        .model_id;
    if let Some(model_id) = &logged_model {
        rest.upload_model_artifact(&experiment, model_id, "MLmodel", "flavors: {}")
            .await;
    }
    let app = Site::new(&mlflow_url()).await;

    let (status, html) = app.get(&format!("/runs/{run}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<h1>trained</h1>"), "{html}");
    assert!(html.contains("team=ml"), "{html}");
    assert!(
        html.contains(&format!(
            "href=\"/models/{model}/versions/1\">{model} v1</a>"
        )),
        "{html}"
    );
    // One chart, one line through all twelve recorded values.
    assert_eq!(html.matches("class=\"chart\">").count(), 1, "{html}");
    let line = html
        .split("stroke-width=\"2\" points=\"")
        .nth(1)
        .expect("a drawn line");
    let points = line.split('"').next().unwrap().split_whitespace().count();
    assert_eq!(points, losses.len(), "{line}");
    assert!(
        html.contains("href=\"/runs/") && html.contains("dir=model#artifacts\">model/</a>"),
        "{html}"
    );

    let (_, html) = app.get(&format!("/runs/{run}?dir=model")).await;
    assert!(html.contains("MLmodel"), "{html}");
    // MLflow 3 keeps a logged model's files apart from the run's.
    if let Some(model_id) = &logged_model {
        let (_, html) = app.get(&format!("/runs/{run}?model={model_id}")).await;
        assert!(html.contains("Logged model <code>"), "{html}");
        assert!(
            html.contains(&format!(
                "<li class=\"file\"><a href=\"/runs/{run}/artifact?path=MLmodel&amp;model={model_id}\">MLmodel</a>"
            )),
            "{html}"
        );
    }
    let (_, html) = app.get(&format!("/runs/{run}?axis=time")).await;
    assert!(html.contains("seconds since the first value"), "{html}");
    let (status, html) = app.get(&format!("/runs/{run}?axis=sideways")).await;
    assert!(html.contains("The chart axis is step or time"), "{html}");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Every point says its value on hover, with no script.
    let (_, html) = app.get(&format!("/runs/{run}")).await;
    assert!(
        html.contains("<title>trained · step 11: 0.125</title>"),
        "{html}"
    );
    // A log scale and smoothing, chosen by links; a bad choice is the page's error.
    let (_, html) = app.get(&format!("/runs/{run}?scale=log&smooth=60")).await;
    assert!(html.contains("log scale"), "{html}");
    assert!(
        html.contains("aria-current=\"true\">log</a>")
            && html.contains("aria-current=\"true\">0.6</a>"),
        "the choices are marked: {html}"
    );
    assert_eq!(
        html.matches("opacity=\"0.25\"").count(),
        1,
        "the raw line, faded"
    );
    let (status, _) = app.get(&format!("/runs/{run}?smooth=100")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Zoom: the x range from a plain GET form.
    let (_, html) = app.get(&format!("/runs/{run}?from=2&to=5")).await;
    let line = html
        .split("stroke-width=\"2\" points=\"")
        .nth(1)
        .expect("a drawn line");
    let points = line.split('"').next().unwrap().split_whitespace().count();
    assert_eq!(points, 4, "steps 2 to 5: {line}");
    assert!(
        html.contains("name=\"from\" inputmode=\"decimal\" size=\"6\" value=\"2\""),
        "{html}"
    );
    let (status, html) = app.get(&format!("/runs/{run}?from=5&to=2")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("The chart&#x27;s range starts after it ends")
            || html.contains("The chart's range starts after it ends"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compare_marks_differing_params_and_overlays_histories() {
    let rest = MlflowRest::new(&mlflow_url());
    let experiment = rest.create_experiment(&unique("compare"), &[]).await;
    let first = rest
        .create_run(
            &experiment,
            "first",
            &[("lr", "0.1"), ("layers", "2")],
            &[("acc", &[0.5, 0.75])],
            &[],
        )
        .await;
    let second = rest
        .create_run(
            &experiment,
            "second",
            &[("lr", "0.01"), ("layers", "2")],
            &[("acc", &[0.25, 0.5, 0.875])],
            &[],
        )
        .await;
    let app = Site::new(&mlflow_url()).await;

    let (status, html) = app
        .get(&format!("/compare?runs={first}&runs={second}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let row = |key: &str| {
        let start = html
            .find(&format!("<th scope=\"row\">{key}</th>"))
            .unwrap_or_else(|| panic!("{key}: {html}"));
        html[..start]
            .rfind("<tr")
            .map(|tr| html[tr..start].to_string())
            .unwrap()
    };
    assert!(row("lr").contains("differs"), "{}", row("lr"));
    assert!(!row("layers").contains("differs"), "{}", row("layers"));
    // The latest acc: 0.75 and 0.875, the higher one marked as the best.
    assert!(
        html.contains(
            "<th scope=\"row\">acc</th><td class=\"\">0.75</td><td title=\"best: the highest\" class=\"best\">0.875</td>"
        ),
        "{html}"
    );
    let chart = html
        .split("<figure data-metric=\"acc\" class=\"chart\">")
        .nth(1)
        .expect("the acc chart");
    assert_eq!(
        chart
            .split("</figure>")
            .next()
            .unwrap()
            .matches("stroke-width=\"2\"")
            .count(),
        4,
        "two lines and a legend"
    );

    let (_, html) = app.get(&format!("/compare?runs={first}")).await;
    assert!(
        html.contains("Choose from 2 to 10 runs to compare; 1 chosen"),
        "{html}"
    );
    // A parameter against a metric, chosen by a GET form; parallel coordinates.
    let (_, html) = app
        .get(&format!("/compare?runs={first}&runs={second}"))
        .await;
    assert!(html.contains("data-plot=\"scatter\""), "{html}");
    assert!(
        html.contains(&format!(
            "href=\"/compare?runs={first}&amp;runs={second}&amp;axis=time\""
        )),
        "a chart option keeps every run: {html}"
    );
    assert!(html.contains("data-plot=\"parallel\""), "{html}");
    assert!(
        html.contains("<option value=\"params.lr\" selected>params.lr</option>"),
        "the first numeric parameter is x: {html}"
    );
    assert!(
        html.contains("<title>second: params.lr 0.01, metrics.acc 0.875</title>"),
        "{html}"
    );
    let (status, html) = app
        .get(&format!(
            "/compare?runs={first}&runs={second}&x=params.layers&y=metrics.acc"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<title>first: params.layers 2, metrics.acc 0.75</title>"),
        "{html}"
    );
    let (status, _) = app
        .get(&format!(
            "/compare?runs={first}&runs={second}&x=params.nope"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_sort_by_the_column_asked_for() {
    let rest = MlflowRest::new(&mlflow_url());
    let prefix = unique("sorted");
    for name in ["b", "c", "a"] {
        rest.create_experiment(&format!("{prefix}-{name}"), &[])
            .await;
    }
    let app = Site::new(&mlflow_url()).await;
    let names = |html: &str| listed_names(html, &prefix);

    let (_, newest_first) = app.get(&format!("/experiments?q={prefix}")).await;
    let expected = |suffixes: &[&str]| {
        suffixes
            .iter()
            .map(|s| format!("{prefix}{s}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&newest_first),
        expected(&["-a", "-c", "-b"]),
        "last updated first"
    );
    let (_, by_name) = app
        .get(&format!("/experiments?q={prefix}&order=name&dir=asc"))
        .await;
    assert_eq!(names(&by_name), expected(&["-a", "-b", "-c"]));
    assert!(by_name.contains("aria-sort=\"ascending\""), "{by_name}");

    let (_, html) = app.get("/experiments?order=size").await;
    assert!(
        html.contains("This list sorts by name, created, updated, not \"size\""),
        "{html}"
    );
    let (_, html) = app.get("/models?order=name&dir=sideways").await;
    assert!(
        html.contains("Sort direction must be asc or desc"),
        "{html}"
    );
}

/// The launch form end to end over HTTP, as a browser without JavaScript
/// uses it: errors come back per field with the values kept; a good form
/// launches; the events stream follows it to the end.
#[tokio::test(flavor = "multi_thread")]
async fn the_launch_form_sends_back_errors_then_launches_and_the_events_follow_it() {
    let app = Site::with_trainer().await;

    let (status, form) = app.get("/launch").await;
    assert_eq!(status, StatusCode::OK);
    for field in [
        "name=\"param.alpha\"",
        "name=\"param.note\"",
        "name=\"new_experiment\"",
        "value=\"cpu\"",
    ] {
        assert!(form.contains(field), "{field} missing from the form");
    }
    assert!(form.contains("Launch on local"));
    let token = attribute_after(&form, "name=\"submission\"", "value").expect("a submission token");

    let experiment = unique("http-launch");
    let post = |alpha: &str| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("submission", &token)
            .append_pair("project", "trainer")
            .append_pair("entry_point", "main")
            .append_pair("param.alpha", alpha)
            .append_pair("param.note", "")
            .append_pair("experiment", "")
            .append_pair("new_experiment", &experiment)
            .append_pair("profile", "cpu")
            .append_pair("run_name", "")
            .finish();
        app.post_form("/launches", body)
    };
    let forged = app
        .router
        .clone()
        .oneshot(
            Request::post("/launches")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", app.session(Role::Admin).await)
                .header("host", "slipway.test")
                .header("origin", "https://evil.example")
                .body(Body::from(format!("submission={token}&project=trainer&entry_point=main&param.alpha=1&new_experiment=x&profile=cpu")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        StatusCode::FORBIDDEN,
        "a form posted from another site is refused"
    );

    // Not hex: the draft id in the URL is, and must not match it by chance.
    let response = post("twelve").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let back = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        back.starts_with("/launch?draft=") && !back.contains("twelve"),
        "the values stay on the server, not in the URL: {back}"
    );
    let (_, shown) = app.get(&back).await;
    assert!(
        shown.contains("class=\"field-error\">\"twelve\" is not a number</p>"),
        "the field's error is shown: {shown}"
    );
    assert!(
        !shown.contains("out of date"),
        "a form sent back is not stale: {shown}"
    );
    assert!(
        shown.contains("value=\"twelve\""),
        "the value typed is kept"
    );
    assert!(shown.contains("nothing was launched"));
    let (_, list) = app.get("/launches").await;
    assert!(
        list.contains("Nothing launched yet"),
        "an invalid form records nothing"
    );

    // A megabyte in one field: refused before any handler, in words, and
    // never echoed into a header; the same without a length announced.
    let huge = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("submission", &token)
        .append_pair("project", "trainer")
        .append_pair("param.alpha", &"9".repeat(1 << 20))
        .finish();
    for announce_length in [true, false] {
        let mut request = Request::post("/launches")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", app.session(Role::Admin).await)
            .header("sec-fetch-site", "same-origin");
        if announce_length {
            request = request.header("content-length", huge.len());
        }
        let response = app
            .router
            .clone()
            .oneshot(request.body(Body::from(huge.clone())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(response.headers().get("location").is_none());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        if announce_length {
            assert!(
                body.contains("larger than 256 KiB; nothing was saved"),
                "{body}"
            );
        }
    }

    let response = post("0.5").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = response.headers()["location"].to_str().unwrap().to_string();
    let id = page
        .strip_prefix("/launches/")
        .expect("to the launch's page")
        .to_string();
    let again = post("0.5").await;
    assert_eq!(
        again.headers()["location"],
        page.as_str(),
        "the same form again is the same launch"
    );

    let events = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        app.get(&format!("/api/launches/{id}/events")),
    )
    .await
    .expect("the stream ends when the launch has");
    assert_eq!(events.0, StatusCode::OK);
    let events = events.1;
    assert!(events.starts_with("event: reset"), "{events}");
    assert!(events.contains("\"status\":\"Succeeded\""), "{events}");
    assert!(events.contains("event: log\ndata: note=none"), "{events}");
    assert!(events.contains("logged"), "{events}");
    assert!(events.trim_end().ends_with("event: end"), "{events}");

    let (_, detail) = app.get(&page).await;
    assert!(detail.contains("data-status=\"succeeded\""), "{detail}");
    assert!(detail.contains("href=\"/runs/"));
    let (_, list) = app.get("/launches").await;
    assert!(list.contains(&format!("href=\"/launches/{id}\"")));
    let (status, _) = app.get("/api/launches/no-such-launch/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The value of `attribute` in the tag that contains `marker`.
fn attribute_after(html: &str, marker: &str, attribute: &str) -> Option<String> {
    let at = html.find(marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let start = tag.find(&format!("{attribute}=\""))? + attribute.len() + 2;
    Some(tag[start..start + tag[start..].find('"')?].to_string())
}

/// Pages whose data comes straight from the database resolve at once; a
/// leptos effect writing on another thread made their render fail now and
/// then (1 in a few dozen). Two hundred renders caught it every time.
#[tokio::test(flavor = "multi_thread")]
async fn fast_pages_render_reliably_many_times_over() {
    let app = Site::new(&mlflow_url()).await;
    for _ in 0..200 {
        let (status, html) = app.get("/launches").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("Nothing launched yet"));
    }
}

/// The cancel button is a plain POST too: it stops the training and comes
/// back to the launch's page, with a notice when there is nothing to cancel.
#[tokio::test(flavor = "multi_thread")]
async fn the_cancel_button_stops_a_running_launch_and_explains_a_second_click() {
    let app = Site::with_trainer().await;
    let body = format!(
        "submission={}&project=trainer&entry_point=main&param.alpha=1&param.sleep=120&new_experiment={}&profile=cpu",
        uuid::Uuid::new_v4(),
        unique("http-cancel")
    );
    let launched = app.post_form("/launches", body).await;
    let page = launched.headers()["location"].to_str().unwrap().to_string();
    let (_, html) = app.get(&page).await;
    assert!(
        html.contains(&format!("action=\"{page}/cancel\"")),
        "a cancel button while it runs"
    );

    let cancelled = app
        .post_form(&format!("{page}/cancel"), String::new())
        .await;
    assert_eq!(cancelled.status(), StatusCode::SEE_OTHER);
    assert_eq!(cancelled.headers()["location"], page.as_str());
    let (_, html) = app.get(&page).await;
    assert!(html.contains("data-status=\"cancelled\""), "{html}");
    assert!(html.contains("cancelled by admin"));
    assert!(
        !html.contains("/cancel\""),
        "no cancel button once it has ended"
    );

    let again = app
        .post_form(&format!("{page}/cancel"), String::new())
        .await;
    let back = again.headers()["location"].to_str().unwrap().to_string();
    assert!(back.starts_with(&format!("{page}?notice=")), "{back}");
    let (_, html) = app.get(&back).await;
    assert!(
        html.contains("this launch has already ended (cancelled)"),
        "{html}"
    );
}

/// Wrong passwords: each refused alike, audited without the password, and
/// after five the account is held even with the right one.
#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_are_audited_and_then_held() {
    let data = tempfile::tempdir().unwrap();
    let state = build_state(&config(&mlflow_url(), data.path()))
        .await
        .unwrap();
    let store = state.store.clone();
    let router = router(state);
    sign_in(&router, &store, "mallory-target", Role::Viewer).await;
    let attempt = |password: &'static str| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(
                    Request::post("/login")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("sec-fetch-site", "same-origin")
                        .body(Body::from(format!(
                            "name=mallory-target&password={password}&next=%2Fmodels"
                        )))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert!(
                response.headers().get("set-cookie").is_none(),
                "refused: no session"
            );
            response.headers()["location"].to_str().unwrap().to_string()
        }
    };
    for _ in 0..5 {
        assert_eq!(
            attempt("guess-one-two").await,
            "/login?error=invalid&next=%2Fmodels"
        );
    }
    assert_eq!(
        attempt("correct horse battery").await,
        "/login?error=throttled&next=%2Fmodels",
        "held, even with the right password"
    );
    let audit = store
        .recent_events(Some("user:mallory-target"), 20)
        .await
        .unwrap();
    let outcomes: Vec<&str> = audit.iter().map(|event| event.detail.as_str()).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|detail| detail.starts_with("failed"))
            .count(),
        5,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|detail| detail.starts_with("refused"))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        audit
            .iter()
            .all(|event| !event.detail.contains("guess-one-two"))
    );
}

/// 200 wrong passwords for one account sent at once from one client: five
/// are checked (no more, whatever the timing), the rest held without a
/// hash; at most `HASHES_AT_ONCE` hashes run at a time; the burst is six
/// audit entries, not 200; and the same account signs in from another
/// client meanwhile: nobody locks it out by failing on purpose.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_guesses_is_held_after_five_and_locks_nobody_else_out() {
    use axum::extract::ConnectInfo;
    let data = tempfile::tempdir().unwrap();
    let state = build_state(&config(&mlflow_url(), data.path()))
        .await
        .unwrap();
    let store = state.store.clone();
    let accounts = state.gate.accounts.clone();
    let router = router(state);
    sign_in(&router, &store, "burst-target", Role::Admin).await;
    let attempt = |password: &'static str, client: &'static str| {
        let router = router.clone();
        async move {
            let mut request = Request::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "same-origin")
                .body(Body::from(format!("name=burst-target&password={password}")))
                .unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(client.parse::<std::net::SocketAddr>().unwrap()));
            let response = router.oneshot(request).await.unwrap();
            response.headers()["location"].to_str().unwrap().to_string()
        }
    };
    let burst: Vec<_> = (0..200)
        .map(|_| tokio::spawn(attempt("wrong-guess-123", "203.0.113.7:40000")))
        .collect();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for answer in burst {
        *answers.entry(answer.await.unwrap()).or_default() += 1;
    }
    assert_eq!(
        answers.get("/login?error=invalid&next=%2F"),
        Some(&5),
        "{answers:?}"
    );
    assert_eq!(
        answers.get("/login?error=throttled&next=%2F"),
        Some(&195),
        "{answers:?}"
    );
    let peak = accounts.hashing_peak();
    assert!(
        (1..=server::services::accounts::password::HASHES_AT_ONCE).contains(&peak),
        "{peak} hashes at once"
    );
    // The account's owner, elsewhere, is not held.
    assert_eq!(
        attempt("correct horse battery", "198.51.100.4:50000").await,
        "/"
    );
    let audit = store
        .recent_events(Some("user:burst-target"), 50)
        .await
        .unwrap();
    let count = |prefix: &str| {
        audit
            .iter()
            .filter(|event| event.detail.starts_with(prefix))
            .count()
    };
    assert_eq!(count("failed"), 5);
    assert_eq!(count("refused"), 1);
    assert!(
        audit
            .iter()
            .any(|event| event.detail.contains("from 203.0.113.7"))
    );
}

/// Behind a trusted proxy each client is counted by the address the proxy
/// forwards for: one client's guesses hold that client, not everyone the
/// proxy carries; from an untrusted peer the header changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_sign_in_limits_count_each_client() {
    use axum::extract::ConnectInfo;
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    let state = build_state(&config).await.unwrap();
    let store = state.store.clone();
    let router = router(state);
    sign_in(&router, &store, "proxied", Role::Admin).await;
    let attempt = |password: &'static str, peer: &'static str, forwarded: &'static str| {
        let router = router.clone();
        async move {
            let mut request = Request::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "same-origin")
                .header("x-forwarded-for", forwarded)
                .body(Body::from(format!("name=proxied&password={password}")))
                .unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
            let response = router.oneshot(request).await.unwrap();
            response.headers()["location"].to_str().unwrap().to_string()
        }
    };
    for _ in 0..5 {
        assert_eq!(
            attempt("wrong-guess-123", "10.0.0.2:40000", "203.0.113.7").await,
            "/login?error=invalid&next=%2F"
        );
    }
    assert_eq!(
        attempt("wrong-guess-123", "10.0.0.2:40000", "203.0.113.7").await,
        "/login?error=throttled&next=%2F",
        "the guessing client is held"
    );
    assert_eq!(
        attempt("correct horse battery", "10.0.0.2:40000", "198.51.100.4").await,
        "/",
        "another client through the same proxy is not"
    );
    // Claimed by an untrusted peer, the header is nobody's alibi: the peer
    // itself is counted (and the account's own limit is per client too).
    for _ in 0..5 {
        attempt("wrong-guess-123", "192.0.2.50:40000", "198.51.100.4").await;
    }
    assert_eq!(
        attempt("wrong-guess-123", "192.0.2.50:40000", "198.51.100.99").await,
        "/login?error=throttled&next=%2F"
    );
    assert_eq!(
        attempt("correct horse battery", "10.0.0.2:40000", "198.51.100.4").await,
        "/"
    );
    let audit = store.recent_events(Some("user:proxied"), 50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|event| event.detail.contains("from 203.0.113.7")),
        "{audit:?}"
    );
    assert!(
        !audit
            .iter()
            .any(|event| event.detail.contains("from 10.0.0.2")),
        "{audit:?}"
    );
}
