//! MLflow webhooks end to end: Slipway registers its receiver with a real
//! MLflow, MLflow signs and delivers an alias event, Slipway accepts it; and
//! every kind of bad delivery is refused over HTTP.

use std::time::Duration;

use crate::support::{MlflowRest, config, mlflow_url, unique};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use serde_json::json;
use server::{build_state, web::router};
use sha2::Sha256;
use tower::ServiceExt;

const SECRET: &str = "a-webhook-secret-of-some-length";

fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn config_without_webhooks(data: &std::path::Path) -> server::config::Config {
    config(&mlflow_url(), data)
}

async fn deliver(
    router: &axum::Router,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &str,
) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(
            Request::post("/webhooks/mlflow")
                .header("content-type", "application/json")
                .header("x-mlflow-delivery-id", id)
                .header("x-mlflow-timestamp", timestamp.to_string())
                .header("x-mlflow-signature", signature)
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_are_accepted_once_and_only_when_signed_recent_and_well_formed() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.webhook_secret = Some(SECRET.into());
    let app = router(build_state(&config).await.unwrap());
    let body = json!({"entity": "model_version_alias", "action": "created", "timestamp": "2026-11-26T09:00:00+00:00",
                      "data": {"name": "iris", "alias": "production", "version": "3"}})
    .to_string();
    let id = uuid::Uuid::new_v4().to_string();

    let (status, text) = deliver(&app, &id, now(), &sign(SECRET, &id, now(), &body), &body).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "accepted"));
    let (status, text) = deliver(&app, &id, now(), &sign(SECRET, &id, now(), &body), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a replay");
    assert!(text.contains("already received"), "{text}");

    let fresh = uuid::Uuid::new_v4().to_string();
    let (status, _) = deliver(
        &app,
        &fresh,
        now(),
        &sign("not-the-secret", &fresh, now(), &body),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a bad signature");
    let stale = now() - 600;
    let (status, text) = deliver(
        &app,
        &fresh,
        stale,
        &sign(SECRET, &fresh, stale, &body),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "stale");
    assert!(text.contains("outside the 300 s window"), "{text}");
    let malformed = "{\"entity\": \"model_version_alias\", ";
    let (status, text) = deliver(
        &app,
        &fresh,
        now(),
        &sign(SECRET, &fresh, now(), malformed),
        malformed,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "malformed JSON");
    assert!(text.contains("malformed payload"), "{text}");
    // None of the refused ones used up the id: signed properly, it is accepted.
    let (status, _) = deliver(
        &app,
        &fresh,
        now(),
        &sign(SECRET, &fresh, now(), &body),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let unsigned = app
        .clone()
        .oneshot(
            Request::post("/webhooks/mlflow")
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

    let elsewhere = tempfile::tempdir().unwrap();
    let without = router(
        build_state(&config_without_webhooks(elsewhere.path()))
            .await
            .unwrap(),
    );
    let (status, _) = deliver(
        &without,
        &id,
        now(),
        &sign(SECRET, &id, now(), &body),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not configured, not there");
}

/// The real thing: Slipway registers itself with MLflow, then an alias set
/// through MLflow's API arrives as a signed delivery Slipway accepts. MLflow 2
/// has no webhooks: Slipway finds that out instead of retrying for ever.
#[tokio::test(flavor = "multi_thread")]
async fn slipway_registers_with_mlflow_and_accepts_what_mlflow_delivers() {
    let rest = MlflowRest::new(&mlflow_url());
    if rest.major_version().await < 3 {
        let mlflow = server::adapters::mlflow::MlflowClient::new(
            &mlflow_url().parse().unwrap(),
            server::adapters::mlflow::MlflowAuth::None,
            Duration::from_secs(20),
        )
        .unwrap();
        let registration = server::adapters::mlflow::webhook::Registration::new(
            "default",
            &"http://slipway.test/".parse().unwrap(),
            SECRET,
        );
        let registered = server::adapters::mlflow::webhook::register(&mlflow, &registration)
            .await
            .unwrap();
        assert_eq!(
            registered,
            server::adapters::mlflow::webhook::Registered::Unsupported
        );
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let mut config = config(&mlflow_url(), data.path());
    config.webhook_secret = Some(SECRET.into());
    config.public_url = Some(public.parse().unwrap());
    let state = build_state(&config).await.unwrap();
    let store = state.store.clone();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });

    let client = reqwest::Client::new();
    let hooks_url = format!("{}/api/2.0/mlflow/webhooks", mlflow_url());
    let mut registered = None;
    for _ in 0..100 {
        let hooks: serde_json::Value = client
            .get(&hooks_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        registered = hooks["webhooks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|hook| {
                hook["name"] == "slipway-default"
                    && hook["url"] == format!("{public}/webhooks/mlflow").as_str()
            })
            .cloned();
        if registered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let registered = registered.expect("Slipway registered its webhook");
    let events: Vec<String> = registered["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            format!(
                "{}/{}",
                event["entity"].as_str().unwrap(),
                event["action"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        events
            .iter()
            .any(|event| event.eq_ignore_ascii_case("model_version_alias/created")),
        "{events:?}"
    );

    let model = unique("hooked");
    rest.create_registered_model(&model).await;
    let experiment = rest.create_experiment(&unique("hooked"), &[]).await;
    let run = rest.create_run(&experiment, "r", &[], &[], &[]).await;
    let version = rest
        .register_version(&model, &experiment, &run)
        .await
        .version;
    // MLflow caches its webhook list for up to 60 s per event type: keep
    // moving the alias until a delivery for this model comes in.
    let mut delivered = 0;
    for attempt in 0..40 {
        rest.set_alias(&model, &format!("try{attempt}"), &version)
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        delivered = store.deliveries_for(&model).await.unwrap();
        if delivered > 0 {
            break;
        }
    }
    client
        .delete(format!(
            "{hooks_url}/{}",
            registered["webhook_id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert!(delivered > 0, "no delivery from MLflow for {model}");
}

/// Two installs of Slipway on one MLflow (staging, production) each keep
/// their own webhook, found again by name at every start; a webhook from
/// before install ids (named `slipway`, same URL) is taken over, not
/// duplicated. MLflow 2 has none to keep.
#[tokio::test(flavor = "multi_thread")]
async fn two_installs_on_one_mlflow_keep_their_own_webhooks() {
    use server::adapters::mlflow::webhook::{Registered, Registration, register};
    let mlflow = server::adapters::mlflow::MlflowClient::new(
        &mlflow_url().parse().unwrap(),
        server::adapters::mlflow::MlflowAuth::None,
        Duration::from_secs(20),
    )
    .unwrap();
    let install = |id: &str, port: u16| {
        Registration::new(
            id,
            &format!("http://127.0.0.1:{port}/").parse().unwrap(),
            SECRET,
        )
    };
    let staging_id = unique("staging");
    let production_id = unique("production");
    if MlflowRest::new(&mlflow_url()).major_version().await < 3 {
        let answer = register(&mlflow, &install(&staging_id, 1)).await.unwrap();
        assert_eq!(answer, Registered::Unsupported);
        return;
    }
    let id_of = |answer: Registered| match answer {
        Registered::Webhook(id) => id,
        Registered::Unsupported => panic!("MLflow 3 has webhooks"),
    };
    let staging = id_of(register(&mlflow, &install(&staging_id, 1)).await.unwrap());
    let production = id_of(
        register(&mlflow, &install(&production_id, 2))
            .await
            .unwrap(),
    );
    assert_ne!(staging, production);
    // Staging starts again, at another address: its own webhook changes.
    let again = id_of(register(&mlflow, &install(&staging_id, 3)).await.unwrap());
    assert_eq!(again, staging);
    let hooks = mlflow.list_webhooks().await.unwrap();
    let find = |id: &str| hooks.iter().find(|hook| hook.webhook_id == id).unwrap();
    assert_eq!(find(&staging).name, format!("slipway-{staging_id}"));
    assert_eq!(find(&staging).url, "http://127.0.0.1:3/webhooks/mlflow");
    assert_eq!(find(&production).name, format!("slipway-{production_id}"));
    assert_eq!(find(&production).url, "http://127.0.0.1:2/webhooks/mlflow");

    // One made before install ids, delivering to this install's address.
    let legacy_id = unique("legacy");
    let legacy_url = "http://127.0.0.1:4/webhooks/mlflow";
    let legacy = mlflow
        .create_webhook(&serde_json::json!({
            "name": "slipway",
            "url": legacy_url,
            "events": [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}],
            "secret": SECRET,
        }))
        .await
        .unwrap();
    let taken = id_of(register(&mlflow, &install(&legacy_id, 4)).await.unwrap());
    assert_eq!(taken, legacy, "the old webhook is taken over");
    let hooks = mlflow.list_webhooks().await.unwrap();
    let renamed = hooks.iter().find(|hook| hook.webhook_id == legacy).unwrap();
    assert_eq!(renamed.name, format!("slipway-{legacy_id}"));
    for id in [staging, production, legacy] {
        reqwest::Client::new()
            .delete(format!("{}/api/2.0/mlflow/webhooks/{id}", mlflow_url()))
            .send()
            .await
            .unwrap();
    }
}
