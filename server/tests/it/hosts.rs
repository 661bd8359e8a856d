//! Allowed hosts: a request naming a host Slipway does not answer to (what
//! a DNS-rebinding page sends) is refused before any handler; probes and
//! metrics, which name the pod's address, are not checked.

use crate::support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use server::{build_state, web::router};
use tower::ServiceExt;

use crate::support::{config, mlflow_url};

async fn send(
    router: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String, bool) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let sets_cookie = response.headers().contains_key("set-cookie");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        sets_cookie,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn with_nothing_configured_only_this_machines_names_are_served() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.allowed_hosts.clear();
    let state = build_state(&config).await.unwrap();
    let store = state.store.clone();
    let router = router(state);
    // An account, signed in once the ordinary way (no Host named).
    support::sign_in(&router, &store, "admin", app::access::Role::Admin).await;
    let logins = || async {
        store
            .search_events("admin", "login", "", 0, i64::MAX, 10)
            .await
            .unwrap()
            .len()
    };
    let before = logins().await;
    assert!(
        before >= 1,
        "sign-ins are audited, so a refused one would show"
    );

    // The DNS-rebinding case: the attacker's host in Host and Origin alike.
    let evil = [
        ("host", "evil.example:3601"),
        ("origin", "http://evil.example:3601"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let (status, body, sets_cookie) = send(
        &router,
        "POST",
        "/login",
        &evil,
        &format!("name=admin&password={}", support::TEST_PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(body, "Refused: Slipway is not served under this host name.");
    assert!(!sets_cookie, "no session for a refused host");
    assert_eq!(
        logins().await,
        before,
        "the handler never ran: nothing audited"
    );
    let (status, _, _) = send(&router, "GET", "/login", &[("host", "evil.example")], "").await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);

    for host in ["127.0.0.1:3601", "localhost:3000", "[::1]:3000"] {
        let (status, body, _) = send(&router, "GET", "/login", &[("host", host)], "").await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    // Probes and scrapers name the pod's address.
    for path in ["/healthz", "/metrics"] {
        let (status, body, _) = send(&router, "GET", path, &[("host", "10.1.2.3:3000")], "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_external_url_and_the_allowed_list_are_the_names_served() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.external_url = Some("https://slipway.example.com".parse().unwrap());
    config.allowed_hosts = vec!["slipway.internal:8080".parse().unwrap()];
    let router = router(build_state(&config).await.unwrap());
    for (host, expected) in [
        ("slipway.example.com", StatusCode::OK),
        ("slipway.internal:8080", StatusCode::OK),
        ("slipway.internal:9090", StatusCode::MISDIRECTED_REQUEST),
        ("127.0.0.1:3000", StatusCode::MISDIRECTED_REQUEST),
        ("localhost", StatusCode::MISDIRECTED_REQUEST),
    ] {
        let (status, body, _) = send(&router, "GET", "/login", &[("host", host)], "").await;
        assert_eq!(status, expected, "{host}: {body}");
    } // Reached over https: browsers are told to keep to it.
    let response = router
        .clone()
        .oneshot(
            Request::get("/login")
                .header("host", "slipway.example.com")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}
