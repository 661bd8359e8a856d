//! What serves, seen: model requests through the gateway to real
//! `mlflow models serve` processes, counted by deployment, version and
//! status class; the deployment's numbers and charts from the gateway's own
//! history, and from a real Prometheus (Debian's package) scraping Slipway.

use std::path::Path;
use std::time::{Duration, Instant};

use app::access::Role;
use app::model::{DeploymentView, TrafficRange, TrafficReport};
use leptos::server_fn::ServerFn;
use server::services::promotions::Expected;

use crate::support::binary::{Slipway, SlipwaySettings};
use crate::support::prometheus::Prometheus;
use crate::support::site::Site;
use crate::support::{
    config, eventually, free_port, mlflow_url, register_failing_model,
    register_sklearn_model as register, unique, user,
};

/// A canary of `version` at `weight` %, run by `analysis` if given.
fn canary(
    version: &str,
    weight: u8,
    analysis: Option<app::model::CanaryAnalysis>,
) -> app::model::NewRollout {
    app::model::NewRollout {
        version: version.into(),
        weight,
        mode: app::model::RolloutMode::Canary,
        analysis,
        reason: String::new(),
    }
}

const GOOD: &str = r#"{"inputs": [[1.0, 2.0]]}"#;
/// Not a shape MLflow's scoring server takes: its 400, not Slipway's.
const REJECTED: &str = r#"{"wrong": 1}"#;

fn local_catalog(dir: &Path, model: &str) -> std::path::PathBuf {
    let catalog = dir.join("catalog.toml");
    std::fs::write(
        &catalog,
        format!("[[deployment]]\nmodel = \"{model}\"\ntarget = \"local\"\n"),
    )
    .unwrap();
    catalog
}

async fn serving_view(site: &Site, model: &str, version: &str) -> DeploymentView {
    eventually(Duration::from_secs(180), || async {
        let detail = site
            .services
            .reads
            .get_deployment(model.to_string())
            .await
            .ok()?;
        let view = detail.view;
        assert_ne!(view.state, "Failed", "{view:?}");
        (view.serving_version.as_deref() == Some(version) && view.state == "Available")
            .then_some(view)
    })
    .await
    .unwrap_or_else(|| panic!("{model} v{version} never served"))
}

/// Posts `body` to `address`; the status, the answer and how long it took.
async fn send(http: &reqwest::Client, address: &str, body: &str) -> (u16, String, f64) {
    let started = Instant::now();
    let response = http
        .post(address)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, text, started.elapsed().as_secs_f64())
}

/// With no Prometheus: one stable address across versions, the model's own
/// answers passed through (its 400 included), every request counted under
/// the version that answered it, Try it among them; the numbers per version
/// exact, each promotion marked on the charts, the list's numbers over its
/// window, and `/metrics` saying the same.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_counts_each_versions_requests_and_the_page_charts_them() {
    let model = unique("gated");
    let experiment = unique("gated");
    assert_eq!(register(&model, &experiment, 1.0), "1");
    assert_eq!(register(&model, &experiment, 2.0), "2");
    let data = tempfile::tempdir().unwrap();
    let mut settings = config(&mlflow_url(), data.path());
    settings.catalog = Some(local_catalog(data.path(), &model));
    settings.reconcile_poll_secs = 1;
    // Long enough to hold the whole test's traffic.
    settings.traffic_window_secs = 600;
    let site = Site::start(settings, data).await;
    let deployer = user("deployer", Role::Deployer);
    let promote = |version: &'static str| {
        let (promotions, deployer, model) = (
            site.services.promotions.clone(),
            deployer.clone(),
            model.clone(),
        );
        async move {
            promotions
                .promote(&deployer, &model, version, "", Expected::Any)
                .await
                .unwrap();
        }
    };
    let http = reqwest::Client::new();

    promote("1").await;
    let address = serving_view(&site, &model, "1").await.address.unwrap();
    assert!(
        address.starts_with("http://127.0.0.1:")
            && address.ends_with(&app::routes::gateway_invocations(&model)),
        "{address}"
    );
    for _ in 0..20 {
        let (status, answer, _) = send(&http, &address, GOOD).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("predictions"), "{answer}");
    }
    for _ in 0..5 {
        let (status, answer, _) = send(&http, &address, REJECTED).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer.contains("error_code"),
            "the model's own answer: {answer}"
        );
    }
    // Try it goes through the gateway, and counts.
    let answer_id = site
        .services
        .deployments
        .try_it(&deployer, &model, GOOD.into())
        .await
        .unwrap();
    let tried = site
        .store
        .try_answer(&deployer.name, &answer_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tried.outcome.as_ref().map(|answer| answer.status), Ok(200));

    promote("2").await;
    let after = serving_view(&site, &model, "2").await;
    assert_eq!(
        after.address.as_deref(),
        Some(address.as_str()),
        "one stable address"
    );
    for _ in 0..10 {
        let (status, answer, _) = send(&http, &address, GOOD).await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            answer.contains("6.0") || answer.contains("5.99"),
            "v2 answers: {answer}"
        );
    }

    // Once v2's history row is complete (just after it serves), both
    // promotions are marked.
    let report: TrafficReport = eventually(Duration::from_secs(10), || async {
        let report = site
            .services
            .reads
            .get_traffic(model.clone(), TrafficRange::Hour)
            .await
            .unwrap();
        (report.changes.len() == 2).then_some(report)
    })
    .await
    .expect("both promotions marked");
    let numbers: Vec<(String, f64, Option<f64>)> = report
        .versions
        .iter()
        .map(|version| {
            (
                version.version.clone(),
                version.requests,
                version.error_percent,
            )
        })
        .collect();
    assert_eq!(
        numbers,
        vec![
            ("1".to_string(), 26.0, Some(5.0 / 26.0 * 100.0)),
            ("2".to_string(), 10.0, Some(0.0)),
        ]
    );
    assert!(
        report
            .versions
            .iter()
            .all(|version| version.p99_ms.is_some_and(|ms| ms > 0.0))
    );
    assert!(report.source.contains("gateway"), "{}", report.source);
    assert_eq!(report.note, None);
    let marks: Vec<&str> = report
        .changes
        .iter()
        .map(|(_, label)| label.as_str())
        .collect();
    assert_eq!(marks, ["v2 · promote", "v1 · promote"]);
    let charts = app::charts::traffic_charts(&report).unwrap();
    let titles: Vec<&str> = charts.iter().map(|chart| chart.metric.as_str()).collect();
    assert_eq!(titles, ["Requests per second", "Errors", "Latency"]);
    for chart in &charts {
        for label in ["v1", "v2", "v2 · promote", "v1 · promote"] {
            assert!(chart.svg.contains(label), "{} lacks {label}", chart.metric);
        }
    }

    let listed = site.services.reads.list_deployments().await.unwrap();
    let now = listed
        .iter()
        .find(|view| view.model == model)
        .and_then(|view| view.traffic.clone())
        .unwrap();
    assert_eq!(now.requests_per_second, 36.0 / 600.0);
    assert_eq!(now.error_percent, Some(5.0 / 36.0 * 100.0));
    assert!(now.p99_ms.is_some());

    let (status, page) = site.get(&format!("/deployments/{model}?range=1h")).await;
    assert_eq!(status, 200);
    for shown in [
        "data-version=\"1\"",
        "data-version=\"2\"",
        "data-chart=\"Latency\"",
        "<svg",
    ] {
        assert!(page.contains(shown), "the page lacks {shown}");
    }
    let (_, list) = site.get("/deployments").await;
    assert!(list.contains("0.06"), "the list shows 0.06 requests/s");

    let (_, metrics) = site.get("/metrics").await;
    for line in [
        format!(
            "slipway_serve_requests_total{{deployment=\"{model}\",version=\"1\",code=\"2xx\"}} 21"
        ),
        format!(
            "slipway_serve_requests_total{{deployment=\"{model}\",version=\"1\",code=\"4xx\"}} 5"
        ),
        format!(
            "slipway_serve_requests_total{{deployment=\"{model}\",version=\"2\",code=\"2xx\"}} 10"
        ),
    ] {
        assert!(metrics.contains(&line), "/metrics lacks {line}");
    }

    load_tests_against_the_gateway(&site, &model).await;

    // Nothing by that name serves: a sentence, not a Slipway failure.
    let elsewhere = address.replace(
        &app::routes::gateway_invocations(&model),
        &app::routes::gateway_invocations("nothing-here"),
    );
    let (status, answer, _) = send(&http, &elsewhere, GOOD).await;
    assert_eq!(
        (status, answer.as_str()),
        (
            503,
            "No deployment named nothing-here is served here (local serving)."
        )
    );
}

/// Load tests of the served deployment `model` (v2 serving): caps and
/// bad input refused field by field; one at a time; the numbers of a paced
/// run, stored with the version it hit and audited; a body the model
/// rejects reported as the model's errors; a cancel that stops it; the
/// gateway counting every request.
async fn load_tests_against_the_gateway(site: &Site, model: &str) {
    use app::model::{AuditQuery, LoadTestRequest, LoadTestState};
    use server::error::{Error, Invalid};
    let deployer = user("deployer", Role::Deployer);
    let load_tests = &site.services.load_tests;
    let request = |users: &str, rate: &str, secs: &str, body: &str| LoadTestRequest {
        users: users.into(),
        rate: rate.into(),
        duration_secs: secs.into(),
        ramp_up_secs: "0".into(),
        body: body.into(),
        confirm: String::new(),
    };
    let Err(Error::Invalid(Invalid { fields, .. })) = load_tests
        .start(&deployer, model, &request("51", "", "3", "{nope"))
        .await
    else {
        panic!("over the caps");
    };
    assert_eq!(fields["users"], "at most 50 users (the admin's cap)");
    assert!(fields["body"].starts_with("not JSON"), "{fields:?}");
    let viewer = user("viewer", Role::Viewer);
    assert!(matches!(
        load_tests
            .start(&viewer, model, &request("1", "", "1", GOOD))
            .await,
        Err(Error::Forbidden(_))
    ));
    let before = site
        .services
        .reads
        .get_traffic(model.to_string(), TrafficRange::Hour)
        .await
        .unwrap()
        .versions[1]
        .requests;

    let paced = load_tests
        .start(&deployer, model, &request("2", "20", "3", GOOD))
        .await
        .unwrap();
    let second = load_tests
        .start(&deployer, model, &request("1", "", "1", GOOD))
        .await;
    assert!(matches!(second, Err(Error::Conflict(_))), "{second:?}");
    let ended = |id: String| async move {
        eventually(Duration::from_secs(30), || async {
            let test = site.services.load_tests.test(&id).await.unwrap();
            (test.state != LoadTestState::Running).then_some(test)
        })
        .await
        .expect("the test ends")
    };
    let test = ended(paced.clone()).await;
    assert_eq!(test.state, LoadTestState::Finished);
    assert_eq!(test.version.as_deref(), Some("2"));
    // Paced: never above 20 a second (the first at once); how close to
    // it depends on how fast the model server answers on this machine, a
    // benchmark's question (the generator's own pacing is a unit test).
    assert!(
        (1..=65).contains(&test.results.requests),
        "{} requests",
        test.results.requests
    );
    assert_eq!(
        (test.results.errors, test.results.first_error.as_deref()),
        (0, None)
    );
    assert!(test.results.p99_ms.is_some() && test.results.seconds.len() >= 3);
    let entries = site
        .services
        .reads
        .search_audit(
            AuditQuery {
                action: "load-test".into(),
                model: model.to_string(),
                ..AuditQuery::default()
            },
            10,
        )
        .await
        .unwrap();
    let entry = entries
        .iter()
        .find(|entry| entry.outcome.starts_with("done: finished: "))
        .unwrap();
    assert_eq!(entry.actor, "deployer");
    assert!(
        entry.detail.starts_with("2 users for 3 s"),
        "{}",
        entry.detail
    );
    let after = site
        .services
        .reads
        .get_traffic(model.to_string(), TrafficRange::Hour)
        .await
        .unwrap()
        .versions[1]
        .requests;
    assert_eq!(
        after - before,
        test.results.requests as f64,
        "the gateway counted each request"
    );

    let rejected = load_tests
        .start(&deployer, model, &request("1", "10", "2", REJECTED))
        .await
        .unwrap();
    let test = ended(rejected).await;
    assert!(test.results.requests > 0);
    assert_eq!(test.results.errors, test.results.requests);
    let said = test.results.first_error.unwrap();
    assert!(
        said.starts_with("HTTP 400: ") && said.contains("error_code"),
        "{said}"
    );

    let long = load_tests
        .start(&deployer, model, &request("1", "5", "120", GOOD))
        .await
        .unwrap();
    load_tests.cancel(&deployer, &long).await.unwrap();
    let test = ended(long.clone()).await;
    assert_eq!(test.state, LoadTestState::Cancelled);
    assert!(
        test.results.seconds.len() < 30,
        "stopped soon after the cancel"
    );
    let again = load_tests.cancel(&deployer, &long).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    let listed = load_tests.of_deployment(model).await.unwrap();
    assert_eq!(listed.len(), 3);
    let (status, page) = site
        .get(&format!(
            "/deployments/{model}/compare-load-tests?a={paced}&b={long}"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("data-row=\"p99\""),
        "the comparison lists p99"
    );
}

/// In the embedded default's place, a real Prometheus scrapes Slipway while
/// traffic flows through the gateway to a real model server: the list's
/// rate, errors and p99, and the page's numbers per version, all read
/// through Prometheus' API, are what the test sent, within the error a
/// one-second scrape and the histogram's cells allow.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_numbers_match_what_was_sent() {
    let model = unique("scraped");
    let experiment = unique("scraped");
    assert_eq!(register(&model, &experiment, 1.0), "1");
    let data = tempfile::tempdir().unwrap();
    let catalog = local_catalog(data.path(), &model);
    let prometheus_port = free_port();
    const WINDOW_SECS: f64 = 20.0;
    let slipway = Slipway::start(SlipwaySettings {
        namespace: None,
        catalog: &catalog,
        data_dir: &data.path().join("slipway"),
        mlflow_url: mlflow_url(),
        extra_env: vec![
            (
                "SLIPWAY_PROMETHEUS_URL",
                format!("http://127.0.0.1:{prometheus_port}"),
            ),
            ("SLIPWAY_TRAFFIC_WINDOW_SECS", format!("{WINDOW_SECS}")),
        ],
        run_as: None,
    })
    .await;
    slipway
        .post_form(
            &format!("/deployments/{model}/promote"),
            &[("version", "1")],
        )
        .await;
    let address = eventually(Duration::from_secs(180), || async {
        let detail: app::model::DeploymentDetail = slipway
            .server_fn(app::server_fns::GetDeployment::PATH, &[("model", &model)])
            .await;
        (detail.view.state == "Available" && detail.view.serving_version.as_deref() == Some("1"))
            .then_some(detail.view.address)
            .flatten()
    })
    .await
    .expect("v1 serves");
    // Prometheus on the port Slipway was told, scraping Slipway.
    let prometheus =
        Prometheus::start(slipway.url.trim_start_matches("http://"), prometheus_port).await;
    // Its first scrape comes seconds after it is ready; the version's
    // counters are there before its first request, at zero.
    prometheus.scraped_again().await;
    let metrics = slipway.get("/metrics").await.text().await.unwrap();
    let zero = format!(
        "slipway_serve_requests_total{{deployment=\"{model}\",version=\"1\",code=\"2xx\"}} 0"
    );
    assert!(metrics.contains(&zero), "/metrics lacks {zero}");

    // Twenty requests a second for longer than the window, every fifth one
    // rejected by the model; what Slipway's /metrics says, every second.
    let http = reqwest::Client::new();
    let mut sent: Vec<(Instant, u16, f64)> = Vec::new();
    let mut snapshots: Vec<(Instant, Vec<(f64, f64)>)> = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(50));
    let started = Instant::now();
    let mut index = 0;
    while started.elapsed() < Duration::from_secs_f64(WINDOW_SECS + 6.0) {
        every.tick().await;
        let body = if index % 5 == 4 { REJECTED } else { GOOD };
        let (status, answer, seconds) = send(&http, &address, body).await;
        assert!(status == 200 || status == 400, "{status}: {answer}");
        sent.push((Instant::now(), status, seconds));
        if index % 20 == 0 {
            snapshots.push((Instant::now(), latency_buckets(&slipway, &model).await));
        }
        index += 1;
    }
    prometheus.scraped_again().await;
    prometheus.scraped_again().await;
    let read_at = Instant::now();
    let last = latency_buckets(&slipway, &model).await;
    let listed: Vec<DeploymentView> = slipway
        .server_fn(app::server_fns::ListDeployments::PATH, &[])
        .await;
    let now = listed
        .into_iter()
        .find(|view| view.model == model)
        .and_then(|view| view.traffic)
        .expect("the list shows the deployment's traffic");
    let in_window: Vec<&(Instant, u16, f64)> = sent
        .iter()
        .filter(|(at, _, _)| read_at.duration_since(*at).as_secs_f64() <= WINDOW_SECS)
        .collect();
    let expected_rate = in_window.len() as f64 / WINDOW_SECS;
    // Two scrapes' worth of requests either way.
    let slack = 20.0 * 2.0 / WINDOW_SECS + 0.1;
    assert!(
        (now.requests_per_second - expected_rate).abs() <= slack,
        "rate {} vs {expected_rate} sent",
        now.requests_per_second
    );
    let error_percent = now.error_percent.expect("requests in the window");
    assert!(
        (error_percent - 20.0).abs() <= 5.0,
        "errors {error_percent} %"
    );
    // The window's p99 from Slipway's own counters, as the test read them
    // at the window's start and end; a scrape's misalignment moves a few
    // requests, so within a cell either way (a cell is a quarter wide).
    let (_, first) = snapshots
        .iter()
        .min_by_key(|(at, _)| {
            let start = read_at - Duration::from_secs_f64(WINDOW_SECS);
            if *at > start {
                *at - start
            } else {
                start - *at
            }
        })
        .unwrap();
    let expected_p99 = p99_between(first, &last);
    let p99 = now.p99_ms.expect("a p99");
    assert!(
        p99 / expected_p99 <= 1.25 * 1.25 && expected_p99 / p99 <= 1.25 * 1.25,
        "p99 {p99} ms, {expected_p99} ms from the counters"
    );

    let report: TrafficReport = slipway
        .server_fn(
            app::server_fns::GetTraffic::PATH,
            &[("model", &model), ("range", "1h")],
        )
        .await;
    assert!(
        report.source.starts_with("Prometheus at http://127.0.0.1:"),
        "{}",
        report.source
    );
    assert_eq!(report.note, None);
    let [version] = report.versions.as_slice() else {
        panic!("one version: {:?}", report.versions);
    };
    assert_eq!(version.version, "1");
    let total = sent.len() as f64;
    assert!(
        (version.requests - total).abs() <= total * 0.05,
        "{} requests counted, {total} sent",
        version.requests
    );
    let rejected = sent.iter().filter(|(_, status, _)| *status == 400).count() as f64;
    let percent = version.error_percent.unwrap();
    assert!(
        (percent - rejected / total * 100.0).abs() <= 5.0,
        "{percent} % vs {rejected} of {total}"
    );
    assert!(!version.points.is_empty());
    let titles: Vec<&str> = report
        .charts
        .iter()
        .map(|chart| chart.metric.as_str())
        .collect();
    assert_eq!(titles, ["Requests per second", "Errors", "Latency"]);
    assert!(report.charts[0].svg.contains("v1 · promote"));
}

/// The gateway's latency buckets of `model` on /metrics: (bound in s, count).
async fn latency_buckets(slipway: &Slipway, model: &str) -> Vec<(f64, f64)> {
    let text = slipway.get("/metrics").await.text().await.unwrap();
    let deployment = format!("deployment=\"{model}\"");
    text.lines()
        .filter(|line| {
            line.starts_with("slipway_serve_request_duration_seconds_bucket")
                && line.contains(&deployment)
        })
        .filter_map(|line| {
            let bound = line.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            let count = line.rsplit(' ').next()?.parse().ok()?;
            Some((bound, count))
        })
        .collect()
}

/// The p99 in ms of the requests between two readings of the buckets,
/// interpolated within its cell as Prometheus does.
fn p99_between(first: &[(f64, f64)], last: &[(f64, f64)]) -> f64 {
    let before = |bound: f64| {
        first
            .iter()
            .find(|(b, _)| *b == bound)
            .map_or(0.0, |(_, count)| *count)
    };
    let cumulative: Vec<(f64, f64)> = last
        .iter()
        .map(|(bound, count)| (*bound, count - before(*bound)))
        .collect();
    let total = cumulative.last().unwrap().1;
    let rank = 0.99 * total;
    let mut lower = (0.0, 0.0);
    for (bound, count) in cumulative {
        if count >= rank {
            let within = (rank - lower.1) / (count - lower.1);
            return (lower.0 + (bound - lower.0) * within) * 1000.0;
        }
        lower = (bound, count);
    }
    unreachable!("the +Inf bucket holds every request")
}

/// A Prometheus that is down, or that never answers, costs the page a
/// sentence within its deadline, not the page.
#[tokio::test]
async fn a_prometheus_down_or_silent_is_a_sentence_on_the_page() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap();
    // Accepts, reads nothing, answers nothing.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let down = free_port();
    for (prometheus, said) in [
        (format!("http://127.0.0.1:{down}"), "nothing answers there"),
        (format!("http://{silent_address}"), "no answer in time"),
    ] {
        let model = unique("unwatched");
        let data = tempfile::tempdir().unwrap();
        let mut settings = config(&mlflow_url(), data.path());
        settings.catalog = Some(local_catalog(data.path(), &model));
        settings.prometheus_url = Some(prometheus.parse().unwrap());
        settings.page_deadline_secs = 2;
        let site = Site::start(settings, data).await;
        let report = site
            .services
            .reads
            .get_traffic(model.clone(), TrafficRange::Day)
            .await
            .unwrap();
        assert_eq!(
            report.note.as_deref(),
            Some(format!("No traffic numbers: Prometheus at {prometheus}: {said}.").as_str())
        );
        assert!(report.versions.is_empty());
        let (status, page) = site.get(&format!("/deployments/{model}")).await;
        assert_eq!(status, 200);
        assert!(page.contains(said), "the page says {said}");
        let listed = site.services.reads.list_deployments().await.unwrap();
        assert_eq!(listed[0].traffic, None);
        // Nothing serves it: a load test has nothing to test.
        let refused = site
            .services
            .load_tests
            .start(
                &user("deployer", Role::Deployer),
                &model,
                &app::model::LoadTestRequest {
                    users: "1".into(),
                    duration_secs: "1".into(),
                    body: "{}".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!("{model} has nothing serving to test")),
            "{refused}"
        );
    }
}

/// A test whose Slipway stopped while it ran is settled as interrupted,
/// its audit entry too.
#[tokio::test]
async fn a_load_test_whose_slipway_stopped_is_settled_as_interrupted() {
    let model = unique("orphaned");
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/other.db?mode=rwc", data.path().display());
    let mut settings = config(&mlflow_url(), data.path());
    settings.database_url = Some(database.clone());
    settings.catalog = Some(local_catalog(data.path(), &model));
    let site = Site::start(settings, data).await;
    // Another process's store: another instance, which no heartbeat keeps.
    let other = server::store::Store::connect(&database).await.unwrap();
    let begun = other
        .begin_event("deployer", "load-test", &format!("model:{model}"), "1 user")
        .await
        .unwrap();
    let test = app::model::LoadTest {
        id: unique("test"),
        model: model.clone(),
        version: Some("1".into()),
        address: "http://127.0.0.1:9/".into(),
        users: 1,
        rate: None,
        duration_secs: 60,
        ramp_up_secs: 0,
        body: "{}".into(),
        state: app::model::LoadTestState::Running,
        started_by: "deployer".into(),
        started_ms: server::store::now_ms(),
        finished_ms: None,
        results: Default::default(),
    };
    assert!(other.begin_load_test(&test, &begun).await.unwrap());
    site.services
        .load_tests
        .settle_interrupted(i64::MAX)
        .await
        .unwrap();
    let settled = site.services.load_tests.test(&test.id).await.unwrap();
    assert_eq!(settled.state, app::model::LoadTestState::Interrupted);
    let entries = site
        .services
        .reads
        .search_audit(
            app::model::AuditQuery {
                model: model.clone(),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert!(
        entries[0].outcome.starts_with("failed: interrupted: "),
        "{:?}",
        entries[0]
    );
}

/// Seldon Core v1's executor metrics, read through a real Prometheus. No
/// Seldon runs here: a stand-in exposes the series a SeldonDeployment's
/// executor does (its histogram by deployment, namespace, predictor and
/// code). The rate and errors are what it counted, and the numbers are
/// split by version where the history says v2 came to serve.
#[tokio::test(flavor = "multi_thread")]
async fn seldon_executor_metrics_are_read_per_version_through_prometheus() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    // (successes, failures) so far; every request takes 20 ms.
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let exposed = counts.clone();
    let exporter = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let counts = exposed.clone();
            async move {
                let mut text = String::new();
                for (code, count) in [
                    ("200", counts.0.load(Ordering::SeqCst)),
                    ("500", counts.1.load(Ordering::SeqCst)),
                ] {
                    let labels = format!(
                        "deployment_name=\"fraud\",namespace=\"models\",predictor_name=\"default\",model_name=\"classifier\",method=\"post\",service=\"predictions\",code=\"{code}\""
                    );
                    for le in ["0.01", "0.025", "0.05", "+Inf"] {
                        let within = if le == "0.01" { 0 } else { count };
                        text.push_str(&format!(
                            "seldon_api_executor_server_requests_seconds_bucket{{{labels},le=\"{le}\"}} {within}\n"
                        ));
                    }
                    text.push_str(&format!(
                        "seldon_api_executor_server_requests_seconds_count{{{labels}}} {count}\n\
                         seldon_api_executor_server_requests_seconds_sum{{{labels}}} {}\n",
                        count as f64 * 0.02
                    ));
                }
                text
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exporter_address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, exporter).await.unwrap() });
    let port = free_port();
    let prometheus = Prometheus::start(&exporter_address, port).await;
    prometheus.scraped_again().await;

    // Ten requests a second, every fifth one failing; v2 serves from the
    // middle on.
    let started = server::store::now_ms();
    let mut every = tokio::time::interval(Duration::from_millis(100));
    for index in 0..150u64 {
        every.tick().await;
        if index % 5 == 4 {
            counts.1.fetch_add(1, Ordering::SeqCst);
        } else {
            counts.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    prometheus.scraped_again().await;
    prometheus.scraped_again().await;
    let middle = started + 7_500;
    let event = |version: &str, at: i64| app::model::DeploymentEvent {
        id: unique("event"),
        model: "fraud-model".into(),
        version: Some(version.into()),
        previous_version: None,
        cause: "promote".into(),
        actor: "deployer".into(),
        started_ms: at,
        ready_ms: Some(at),
        outcome: app::model::DeploymentOutcome::Serving,
        message: String::new(),
    };
    let history = vec![event("2", middle), event("1", started - 3_600_000)];
    let binding: server::catalog::DeploymentBinding = toml::from_str(
        "model = \"fraud-model\"\ntarget = \"seldon\"\nnamespace = \"models\"\nname = \"fraud\"",
    )
    .unwrap();
    let traffic = server::traffic::Traffic::new(
        server::metrics::Metrics::new(),
        Some((
            server::adapters::prometheus::Prometheus::new(
                &prometheus.url.parse().unwrap(),
                Duration::from_secs(5),
            )
            .unwrap(),
            server::traffic::SeldonLabels::default(),
        )),
        Duration::from_secs(10),
    );
    let now = traffic
        .now(&binding)
        .await
        .expect("numbers from Prometheus");
    assert!(
        (now.requests_per_second - 10.0).abs() <= 2.5,
        "{} requests/s",
        now.requests_per_second
    );
    let errors = now.error_percent.unwrap();
    assert!((errors - 20.0).abs() <= 5.0, "{errors} % errors");
    assert!(
        now.p99_ms.is_some_and(|ms| (10.0..=25.0).contains(&ms)),
        "{:?}",
        now.p99_ms
    );
    let report = traffic.report(&binding, TrafficRange::Hour, &history).await;
    assert_eq!(report.note, None);
    // A chart's step is 30 s over an hour: the points after v2 came are
    // v2's, any before it v1's.
    assert!(
        report.versions.iter().any(|version| version.version == "2"),
        "{:?}",
        report.versions
    );
    let counted: f64 = report.versions.iter().map(|v| v.requests).sum();
    assert!(
        (counted - 150.0).abs() <= 150.0 * 0.2,
        "{counted} requests counted, 150 sent"
    );
    for version in &report.versions {
        assert!(
            version.points.iter().all(|point| {
                let v1 = point.at_ms < middle;
                v1 == (version.version == "1")
            }),
            "v{}'s points lie in its period",
            version.version
        );
    }
}

/// A canary on local serving: v2 beside v1 takes exactly its share of the
/// gateway's requests (every answer says which version gave it: v1 doubles
/// nothing, v2 doubles), re-weighted at once; aborted, every request is
/// v1's again and the canary's server is gone; started again and promoted,
/// v2 serves everything, the rollout has succeeded, and one server is left.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_canary_takes_exactly_its_share_and_is_aborted_or_promoted() {
    use app::model::RolloutState;
    let model = unique("canary");
    let experiment = unique("canary");
    assert_eq!(register(&model, &experiment, 1.0), "1");
    assert_eq!(register(&model, &experiment, 2.0), "2");
    let data = tempfile::tempdir().unwrap();
    let mut settings = config(&mlflow_url(), data.path());
    settings.catalog = Some(local_catalog(data.path(), &model));
    settings.reconcile_poll_secs = 1;
    let site = Site::start(settings, data).await;
    let deployer = user("deployer", Role::Deployer);
    let rollouts = &site.services.rollouts;
    site.services
        .promotions
        .promote(&deployer, &model, "1", "", Expected::Any)
        .await
        .unwrap();
    let address = serving_view(&site, &model, "1").await.address.unwrap();
    let http = reqwest::Client::new();
    // Which version answered: [1, 2] × 1 or × 2.
    let answered_by = |answer: &str| -> &'static str {
        let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
        let prediction = answer["predictions"][0].as_f64().unwrap();
        if (prediction - 6.0).abs() < 0.01 {
            "2"
        } else if (prediction - 3.0).abs() < 0.01 {
            "1"
        } else {
            panic!("{answer}")
        }
    };
    let canary_answers = |count: usize| {
        let (http, address) = (http.clone(), address.clone());
        async move {
            let mut by_canary = 0;
            for _ in 0..count {
                let (status, answer, _) = send(&http, &address, GOOD).await;
                assert_eq!(status, 200, "{answer}");
                by_canary += usize::from(answered_by(&answer) == "2");
            }
            by_canary
        }
    };

    // Refused: a weight out of range, the version already in production.
    assert!(
        rollouts
            .start(&deployer, &model, canary("2", 0, None))
            .await
            .is_err()
    );
    let same = rollouts
        .start(&deployer, &model, canary("1", 20, None))
        .await
        .unwrap_err();
    assert!(same.to_string().contains("already in production"), "{same}");
    let viewer = user("viewer", Role::Viewer);
    assert!(matches!(
        rollouts.start(&viewer, &model, canary("2", 20, None)).await,
        Err(server::error::Error::Forbidden(_))
    ));

    rollouts
        .start(&deployer, &model, canary("2", 25, None))
        .await
        .unwrap();
    let second = rollouts
        .start(&deployer, &model, canary("2", 25, None))
        .await
        .unwrap_err();
    assert!(
        matches!(second, server::error::Error::Conflict(_)),
        "{second}"
    );
    // Once the canary serves, any 100 requests in a row give it 25.
    let serving = eventually(Duration::from_secs(180), || async {
        (canary_answers(4).await > 0).then_some(())
    })
    .await;
    assert!(serving.is_some(), "the canary never answered");
    rollouts.set_weight(&deployer, &model, 60).await.unwrap();
    let reweighted = eventually(Duration::from_secs(30), || async {
        // The new weight takes effect with the next pass.
        let share = canary_answers(100).await;
        (share == 60).then_some(share)
    })
    .await;
    assert_eq!(reweighted, Some(60));
    assert_eq!(canary_answers(100).await, 60, "exactly its share");

    // Aborted: every request v1's, the canary's server stopped.
    assert!(
        rollouts.abort(&deployer, &model, "").await.is_err(),
        "a reason is needed"
    );
    let aborted = rollouts
        .abort(&deployer, &model, "p99 too high")
        .await
        .unwrap();
    assert_eq!(aborted.state, RolloutState::Aborted);
    let gone = eventually(Duration::from_secs(30), || async {
        (crate::support::model_servers(&model, Some("2")) == 0).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the canary's server outlived its rollout");
    assert_eq!(canary_answers(20).await, 0);

    // Started again and promoted: v2 serves alone, the rollout succeeded.
    rollouts
        .start(&deployer, &model, canary("2", 10, None))
        .await
        .unwrap();
    let serving = eventually(Duration::from_secs(180), || async {
        (canary_answers(10).await > 0).then_some(())
    })
    .await;
    assert!(serving.is_some(), "the canary never answered");
    rollouts
        .promote(&deployer, &model, "good numbers")
        .await
        .unwrap();
    let succeeded = eventually(Duration::from_secs(180), || async {
        let newest = site.store.rollouts(&model, 1).await.unwrap().remove(0);
        (newest.state == RolloutState::Succeeded).then_some(newest)
    })
    .await
    .expect("the rollout ended");
    assert_eq!(succeeded.outcome, "v2 serves all requests");
    let alone = eventually(Duration::from_secs(30), || async {
        (crate::support::model_servers(&model, None) == 1).then_some(())
    })
    .await;
    assert!(alone.is_some(), "one server is left");
    assert_eq!(canary_answers(20).await, 20);
    let audit: Vec<String> = site
        .store
        .recent_events(Some(&format!("model:{model}")), 20)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.action == "rollout")
        .map(|event| event.detail)
        .collect();
    assert!(
        audit
            .iter()
            .any(|detail| detail == "v2 aborted at 60 %: p99 too high"),
        "{audit:?}"
    );

    // The API, with a deployer's token: the newest rollout; a bad weight
    // is a 400 in the API's shape.
    let api = deployer_api(&site).await;
    let rollout_path = format!("/api/v1/deployments/{model}/rollout");
    let (status, newest) = api("GET", rollout_path.clone(), serde_json::json!(null)).await;
    assert_eq!(status, 200, "{newest}");
    assert_eq!(newest["state"], "succeeded");
    assert_eq!(newest["canary_version"], "2");
    let (status, refused) = api(
        "POST",
        rollout_path.clone(),
        serde_json::json!({"version": "1", "weight": 150}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]["message"].as_str().is_some(), "{refused}");
    // An analysis that cannot run is refused with what is wrong with it.
    let (status, refused) = api(
        "POST",
        rollout_path.clone(),
        serde_json::json!({"version": "1", "weight": 20, "analysis": {
            "interval_secs": 0, "max_weight": 10, "min_success_percent": 120.0,
            "failed_checks_limit": 3}}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    for problem in ["interval", "largest share", "success rate"] {
        assert!(message.contains(problem), "{message}");
    }
    // No analysis, no checks.
    let (status, checks) = api(
        "GET",
        format!("{rollout_path}/checks"),
        serde_json::json!(null),
    )
    .await;
    assert_eq!(status, 200, "{checks}");
    assert_eq!(checks, serde_json::json!([]));
}

/// Canaries with an analysis, run by the leader: one that fails every
/// request is aborted after its allowed failed checks, with the numbers
/// recorded and a notification queued; a good one is stepped up on each
/// passed check and promoted at its largest share.
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_is_stepped_by_its_passed_checks_and_aborted_by_its_failed_ones() {
    use app::model::{CanaryAnalysis, CheckVerdict, NotificationEvent, RolloutState};
    let model = unique("gated");
    let experiment = unique("gated");
    assert_eq!(register(&model, &experiment, 1.0), "1");
    assert_eq!(register(&model, &experiment, 2.0), "2");
    assert_eq!(register_failing_model(&model, &experiment), "3");
    let data = tempfile::tempdir().unwrap();
    let mut settings = config(&mlflow_url(), data.path());
    settings.catalog = Some(local_catalog(data.path(), &model));
    settings.reconcile_poll_secs = 1;
    let site = Site::start(settings, data).await;
    let (deployer, admin) = (user("deployer", Role::Deployer), user("admin", Role::Admin));
    site.services
        .notifications
        .add_channel(
            &admin,
            &app::model::ChannelRequest {
                name: "canaries".into(),
                kind: "webhook".into(),
                url: format!("http://127.0.0.1:{}/hook", free_port()),
                secret: String::new(),
                events: vec!["rollout.aborted".into()],
            },
        )
        .await
        .unwrap();
    let rollouts = &site.services.rollouts;
    site.services
        .promotions
        .promote(&deployer, &model, "1", "", Expected::Any)
        .await
        .unwrap();
    let address = serving_view(&site, &model, "1").await.address.unwrap();
    // Steady traffic for the whole test, as a client would send it.
    let steady = address.clone();
    let sending = tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            send(&http, &steady, GOOD).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let ended = |state: RolloutState| {
        let store = site.store.clone();
        let model = model.clone();
        async move {
            eventually(Duration::from_secs(240), || async {
                let newest = store.rollouts(&model, 1).await.unwrap().remove(0);
                (newest.state == state).then_some(newest)
            })
            .await
        }
    };

    // v3 fails every request: two failed checks and it is aborted.
    let gates = CanaryAnalysis {
        interval_secs: 2,
        step_weight: 0,
        max_weight: 20,
        min_success_percent: 95.0,
        max_p99_ms: None,
        failed_checks_limit: 2,
        query: None,
    };
    rollouts
        .start(&deployer, &model, canary("3", 20, Some(gates)))
        .await
        .unwrap();
    let aborted = ended(RolloutState::Aborted)
        .await
        .expect("aborted by its checks");
    assert!(
        aborted.outcome.starts_with(
            "aborted by its analysis after 2 failed checks; the last: success 0.0 % below 95 %"
        ),
        "{}",
        aborted.outcome
    );
    assert_eq!(aborted.failed_checks, 2);
    let checks = rollouts.checks(&aborted).await.unwrap();
    let failed: Vec<_> = checks
        .iter()
        .filter(|check| check.verdict == CheckVerdict::Failed)
        .collect();
    assert_eq!(failed.len(), 2, "{checks:?}");
    assert!(
        failed.iter().all(|check| check.requests > 0
            && check.success_percent == Some(0.0)
            && check.weight == 20),
        "{failed:?}"
    );
    // Nothing but idle checks (before the canary answered) besides.
    assert!(
        checks
            .iter()
            .all(|check| check.verdict != CheckVerdict::Passed),
        "{checks:?}"
    );
    let gone = eventually(Duration::from_secs(30), || async {
        (crate::support::model_servers(&model, Some("3")) == 0).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the failed canary's server outlived its rollout"
    );
    let deliveries = site.store.recent_deliveries(20).await.unwrap();
    assert!(
        deliveries.iter().any(
            |delivery| delivery.event == NotificationEvent::RolloutAborted
                && delivery.text.contains(&model)
                && delivery.text.contains("2 failed checks")
        ),
        "{deliveries:?}"
    );

    // v2 is good: 20 → 50 → 80 %, then promoted by its analysis.
    let schedule = CanaryAnalysis {
        interval_secs: 2,
        step_weight: 30,
        max_weight: 80,
        min_success_percent: 95.0,
        max_p99_ms: Some(5_000.0),
        failed_checks_limit: 2,
        query: None,
    };
    rollouts
        .start(&deployer, &model, canary("2", 20, Some(schedule)))
        .await
        .unwrap();
    let succeeded = ended(RolloutState::Succeeded)
        .await
        .expect("promoted by its checks");
    assert_eq!(succeeded.failed_checks, 0);
    let passed: Vec<u8> = rollouts
        .checks(&succeeded)
        .await
        .unwrap()
        .iter()
        .rev()
        .filter(|check| check.verdict == CheckVerdict::Passed)
        .map(|check| check.weight)
        .collect();
    assert_eq!(passed, [20, 50, 80]);
    let steps: Vec<(String, String)> = site
        .store
        .recent_events(Some(&format!("model:{model}")), 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.action == "rollout" && event.actor == "canary analysis")
        .map(|event| (event.detail, event.outcome))
        .collect();
    assert!(
        steps
            .iter()
            .any(|(detail, _)| detail.starts_with("v2 from 20 % to 50 %: its check passed")),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|(detail, _)| detail.starts_with("v2 from 50 % to 80 %")),
        "{steps:?}"
    );
    let production = site
        .store
        .deployment_history(&model, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(production.version.as_deref(), Some("2"));
    assert!(
        production
            .actor
            .starts_with("canary analysis (started by deployer)"),
        "{production:?}"
    );

    // v1 as a shadow of v2: every answer is v2's, while copies reach v1,
    // whose checks count them.
    assert!(
        rollouts
            .start(&deployer, &model, canary("1", 100, None))
            .await
            .is_err(),
        "a canary at 100 % is a promotion"
    );
    let watched = CanaryAnalysis {
        interval_secs: 2,
        step_weight: 0,
        max_weight: 100,
        min_success_percent: 95.0,
        max_p99_ms: None,
        failed_checks_limit: 2,
        query: None,
    };
    let shadow = app::model::NewRollout {
        mode: app::model::RolloutMode::Shadow,
        ..canary("1", 100, Some(watched))
    };
    let server::services::rollouts::Started::Now(started) =
        rollouts.start(&deployer, &model, shadow).await.unwrap()
    else {
        panic!("started at once: the deployment requires no approval");
    };
    let http = reqwest::Client::new();
    let seen = eventually(Duration::from_secs(240), || async {
        for _ in 0..10 {
            let (status, answer, _) = send(&http, &address, GOOD).await;
            assert_eq!(status, 200, "{answer}");
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            let prediction = answer["predictions"][0].as_f64().unwrap();
            assert!((prediction - 6.0).abs() < 0.01, "only v2 answers: {answer}");
        }
        let checks = rollouts.checks(&started).await.unwrap();
        checks
            .iter()
            .any(|check| check.verdict == CheckVerdict::Passed && check.requests > 0)
            .then_some(())
    })
    .await;
    assert!(seen.is_some(), "the shadow's answers were never checked");
    let aborted = rollouts
        .abort(&deployer, &model, "seen enough")
        .await
        .unwrap();
    assert_eq!(aborted.mode, app::model::RolloutMode::Shadow);
    sending.abort();
}

/// Calls `site`'s API with a deployer's token: (status, JSON body).
async fn deployer_api(
    site: &Site,
) -> impl Fn(
    &str,
    String,
    serde_json::Value,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = (u16, serde_json::Value)> + Send>>
+ '_ {
    site.session(Role::Deployer).await;
    let (_, secret) = site
        .services
        .tokens
        .create(
            &user("deployer", Role::Deployer),
            &app::model::TokenRequest {
                name: unique("api"),
                role: "deployer".into(),
                scope: String::new(),
                expires_days: "1".into(),
            },
        )
        .await
        .unwrap();
    move |method: &str, path: String, body: serde_json::Value| {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "slipway.test")
            .header("authorization", format!("Bearer {secret}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let router = site.router.clone();
        Box::pin(async move {
            use http_body_util::BodyExt;
            use tower::ServiceExt;
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        })
    }
}

/// Where the deployment requires approval, a canary is a request too: the
/// deployer's start waits (nothing serves the canary) until someone else
/// approves it, which starts it on the deployer's behalf; promoting it
/// fully is a request of its own, and once approved the rollout follows
/// Production to the canary and succeeds. Production moved to a third
/// version while a canary runs ends the canary.
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_where_approval_is_required_starts_and_ends_through_requests() {
    use app::model::{RequestState, RolloutState};
    use server::services::promotions::Promoted;
    use server::services::rollouts::Started;
    let model = unique("approved-canary");
    let experiment = unique("approved-canary");
    for (scale, version) in [(1.0, "1"), (2.0, "2"), (3.0, "3")] {
        assert_eq!(register(&model, &experiment, scale), version);
    }
    let data = tempfile::tempdir().unwrap();
    let catalog = data.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "[[deployment]]\nmodel = \"{model}\"\ntarget = \"local\"\nrequires_approval = true\n"
        ),
    )
    .unwrap();
    let mut settings = config(&mlflow_url(), data.path());
    settings.catalog = Some(catalog);
    settings.reconcile_poll_secs = 1;
    let site = Site::start(settings, data).await;
    let (deployer, approver) = (
        user("deployer", Role::Deployer),
        user("approver", Role::Approver),
    );
    let (promotions, rollouts) = (&site.services.promotions, &site.services.rollouts);
    let approver = &approver;
    let approve = |id: String| async move {
        promotions
            .approve(approver, &id, "looked", &**rollouts)
            .await
            .unwrap()
    };
    let requested = |promoted: Promoted| match promoted {
        Promoted::Requested(id) => id,
        Promoted::Now => panic!("promoted without an approver"),
    };
    let id = requested(
        promotions
            .promote(&deployer, &model, "1", "first", Expected::Any)
            .await
            .unwrap(),
    );
    approve(id).await;
    serving_view(&site, &model, "1").await;

    // No reason, no request; with one, a request and nothing started.
    let refused = rollouts
        .start(&deployer, &model, canary("2", 20, None))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("say why"), "{refused}");
    let asked = app::model::NewRollout {
        reason: "try it on a fifth".into(),
        ..canary("2", 20, None)
    };
    let Started::Requested(id) = rollouts.start(&deployer, &model, asked).await.unwrap() else {
        panic!("a canary started without an approver");
    };
    assert!(rollouts.active(&model).await.unwrap().is_none());
    let request = promotions.request(&id).await.unwrap();
    assert_eq!(request.rollout.as_ref().map(|asked| asked.weight), Some(20));
    assert_eq!(request.base_version.as_deref(), Some("1"));
    // Never by the one who asked.
    let own = promotions
        .approve(&user("deployer", Role::Approver), &id, "", &**rollouts)
        .await
        .unwrap_err();
    assert!(matches!(own, server::error::Error::Forbidden(_)), "{own:?}");
    let decided = approve(id).await;
    assert_eq!(decided.state, RequestState::Approved);
    assert_eq!(decided.outcome, "the canary starts");
    let running = rollouts.active(&model).await.unwrap().expect("started");
    assert_eq!(running.started_by, "deployer (approved by approver)");
    assert_eq!((running.canary_version.as_str(), running.weight), ("2", 20));
    // Never above what the approver saw; below it, as the deployer likes.
    let above = rollouts
        .set_weight(&deployer, &model, 50)
        .await
        .unwrap_err();
    assert!(
        above.to_string().contains("approved for at most 20 %"),
        "{above}"
    );
    assert_eq!(
        rollouts
            .set_weight(&deployer, &model, 10)
            .await
            .unwrap()
            .weight,
        10
    );
    assert_eq!(
        rollouts
            .set_weight(&deployer, &model, 20)
            .await
            .unwrap()
            .weight,
        20
    );
    let served = eventually(Duration::from_secs(180), || async {
        (crate::support::model_servers(&model, Some("2")) == 1).then_some(())
    })
    .await;
    assert!(served.is_some(), "the approved canary never served");

    // Promoted fully: a request; approved, the rollout follows Production.
    let id = requested(rollouts.promote(&deployer, &model, "good").await.unwrap());
    assert_eq!(
        rollouts.active(&model).await.unwrap().map(|r| r.state),
        Some(RolloutState::Progressing)
    );
    approve(id).await;
    let succeeded = eventually(Duration::from_secs(180), || async {
        let newest = rollouts.newest(&model).await.unwrap();
        (newest.state == RolloutState::Succeeded).then_some(newest)
    })
    .await
    .expect("the promoted canary's rollout succeeds");
    assert_eq!(succeeded.outcome, "v2 serves all requests");

    // A canary of v1 beside v2 through the API (a 202 with the request),
    // then v3 made Production: the canary ends.
    let api = deployer_api(&site).await;
    let (status, request) = api(
        "POST",
        format!("/api/v1/deployments/{model}/rollout"),
        serde_json::json!({"version": "1", "weight": 10, "reason": "compare"}),
    )
    .await;
    assert_eq!(status, 202, "{request}");
    assert_eq!(request["state"], "Pending");
    assert_eq!(request["rollout"]["weight"], 10);
    approve(request["id"].as_str().unwrap().to_string()).await;
    let id = requested(
        promotions
            .promote(&deployer, &model, "3", "newer", Expected::Any)
            .await
            .unwrap(),
    );
    approve(id).await;
    let ended = eventually(Duration::from_secs(60), || async {
        let newest = rollouts.newest(&model).await.unwrap();
        (newest.state == RolloutState::Aborted).then_some(newest)
    })
    .await
    .expect("the canary ends when Production moves past it");
    assert_eq!(ended.outcome, "v3 became Production meanwhile");
    let gone = eventually(Duration::from_secs(60), || async {
        (crate::support::model_servers(&model, Some("1")) == 0).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the ended canary's server outlived it");
}
