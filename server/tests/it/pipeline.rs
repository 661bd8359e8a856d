//! Slipway driven from a pipeline, as CI does it: the `slipway` binary
//! serving, service tokens made on the tokens page, and the CLI talking to
//! the API with them — against the real MLflow and `mlflow models serve`.
//! Every step's exit code is checked, failures included; the OpenAPI
//! document is checked against the routes that answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::binary::{Slipway, SlipwaySettings};
use crate::support::{mlflow_url, trainer_catalog, unique};

/// What a `slipway` command printed, and how it exited.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn cli_command(slipway: &Slipway, token: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SLIPWAY_URL", &slipway.url)
        .env("SLIPWAY_TOKEN", token)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn finished(child: tokio::process::Child) -> Ran {
    let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the command ends within 5 minutes")
        .unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn cli(slipway: &Slipway, token: &str, args: &[&str]) -> Ran {
    finished(cli_command(slipway, token, args).spawn().unwrap()).await
}

async fn api_get(slipway: &Slipway, token: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", slipway.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn start(catalog_more: &str, data: &std::path::Path) -> Slipway {
    let catalog = trainer_catalog(data, catalog_more);
    Slipway::start(SlipwaySettings {
        namespace: None,
        catalog: &catalog,
        data_dir: data,
        mlflow_url: mlflow_url(),
        // Notifications not delivered are tried again after 1, 2, 4… s.
        extra_env: vec![("SLIPWAY_NOTIFY_RETRY_SECS", "1".into())],
        run_as: None,
    })
    .await
}

/// A notification receiver: keeps what it is sent (headers and body) and
/// answers 503 to the first `fail_first` requests, as one that is down.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receiver(fail_first: usize) -> Receiver {
    let got: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let kept = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let kept = kept.clone();
            async move {
                let mut got = kept.lock().unwrap();
                got.push((headers, body));
                if got.len() <= fail_first {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver { url, got, server }
}

/// What `receiver` was sent, once it has `count` requests (or 60 s passed).
async fn received(receiver: &Receiver, count: usize) -> Vec<(axum::http::HeaderMap, String)> {
    for _ in 0..600 {
        if receiver.got.lock().unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.got.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_trains_registers_asks_is_approved_by_another_and_serves_through_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let model = unique("pipeline");
    let slipway = start(
        &format!(
            "[[deployment]]\nmodel = {model:?}\ntarget = \"local\"\nrequires_approval = true\n"
        ),
        data.path(),
    )
    .await;
    // Where the team hears of it: a signed webhook, and a Slack-compatible
    // one that is down for its first three requests.
    let hook = receiver(0).await;
    let chat = receiver(3).await;
    let events = [
        "launch.succeeded",
        "promotion.requested",
        "promotion.approved",
        "deployment.serving",
    ];
    let mut fields = vec![
        ("name", "ci-hook"),
        ("kind", "webhook"),
        ("url", hook.url.as_str()),
        ("secret", "hook-secret"),
    ];
    fields.extend(events.iter().map(|event| ("events", *event)));
    assert_eq!(
        slipway.post_form("/notifications", &fields).await,
        "/notifications"
    );
    let fields = [
        ("name", "team-chat"),
        ("kind", "slack"),
        ("url", chat.url.as_str()),
        ("events", "promotion.requested"),
    ];
    assert_eq!(
        slipway.post_form("/notifications", &fields).await,
        "/notifications"
    );

    slipway.add_user("ci", "deployer").await;
    slipway.add_user("gatekeeper", "approver").await;
    let ci = slipway.sign_in("ci").await;
    let gatekeeper = slipway.sign_in("gatekeeper").await;

    // A token is made within its owner's role, never above it.
    let above = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/tokens", slipway.url))
        .header("cookie", &ci)
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("name", "too-much"),
            ("role", "admin"),
            ("expires_days", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(above.status(), reqwest::StatusCode::FORBIDDEN);
    let scope = format!("trainer, {model}");
    let ci_token = slipway
        .make_token(
            &ci,
            &[
                ("name", "train-and-ship"),
                ("role", "deployer"),
                ("scope", &scope),
                ("expires_days", "7"),
            ],
        )
        .await;
    let gate_token = slipway
        .make_token(&gatekeeper, &[("name", "gate"), ("role", "approver")])
        .await;
    let (status, me) = api_get(&slipway, &ci_token, "/api/v1/whoami").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["name"], "ci");
    assert_eq!(me["token"], "train-and-ship");
    assert_eq!(me["grants"][0]["role"], "deployer");

    // A bad parameter: nothing launched, the field named, exit 2.
    let experiment = unique("pipeline");
    let launch = |scale: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "launch",
            "trainer",
            "model",
            "--profile",
            "cpu",
            "-P",
            scale,
            "--new-experiment",
            &experiment,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let args = launch("scale=abc", &[]);
    let refused = cli(
        &slipway,
        &ci_token,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("param.scale"), "{refused:?}");

    // Launch and wait: the log comes on stderr, the launch as JSON on stdout.
    let args = launch("scale=3", &["--wait", "--output", "json"]);
    let trained = cli(
        &slipway,
        &ci_token,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(trained.code, 0, "{trained:?}");
    assert!(trained.stderr.contains("model logged"), "{trained:?}");
    let launch: Value = serde_json::from_str(&trained.stdout).unwrap();
    assert_eq!(launch["status"], "Succeeded", "{launch}");
    let run_id = launch["run_id"].as_str().unwrap().to_string();

    let registered = cli(&slipway, &ci_token, &["register", &run_id, &model]).await;
    assert_eq!(registered.code, 0, "{registered:?}");
    assert_eq!(registered.stdout.trim(), "1");

    // The promotion asks, and waits for an approver and then for serving.
    let mut promoting = cli_command(
        &slipway,
        &ci_token,
        &[
            "promote",
            &model,
            "1",
            "--reason",
            "evaluation passed",
            "--wait-serving",
            "--timeout",
            "240",
        ],
    )
    .spawn()
    .unwrap();
    let request_id = loop {
        let (_, requests) = api_get(&slipway, &gate_token, "/api/v1/promotion-requests").await;
        let pending =
            requests.as_array().unwrap().iter().find(|request| {
                request["model"] == model.as_str() && request["state"] == "Pending"
            });
        if let Some(request) = pending {
            break request["id"].as_str().unwrap().to_string();
        }
        if let Ok(Some(status)) = promoting.try_wait() {
            panic!("promote ended with {status} before asking");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Four eyes hold for tokens: the requester's own token cannot approve.
    let own = cli(&slipway, &ci_token, &["approve", &request_id]).await;
    assert_eq!(own.code, 3, "{own:?}");
    assert!(
        own.stderr.contains("someone else has to approve"),
        "{own:?}"
    );
    let approved = cli(
        &slipway,
        &gate_token,
        &["approve", &request_id, "--comment", "numbers look right"],
    )
    .await;
    assert_eq!(approved.code, 0, "{approved:?}");
    assert!(approved.stdout.contains("v1: approved"), "{approved:?}");
    let served = finished(promoting).await;
    assert_eq!(served.code, 0, "{served:?}");
    assert!(
        served.stderr.contains("waiting for an approver"),
        "{served:?}"
    );
    assert!(
        served.stdout.contains("v1 Available at http://"),
        "{served:?}"
    );

    // Decided already: a conflict, exit 5.
    let again = cli(&slipway, &gate_token, &["approve", &request_id]).await;
    assert_eq!(again.code, 5, "{again:?}");

    // Call it where the list says it serves.
    let listed = cli(&slipway, &gate_token, &["deployments", "--output", "json"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    let deployments: Value = serde_json::from_str(&listed.stdout).unwrap();
    let ours = deployments
        .as_array()
        .unwrap()
        .iter()
        .find(|view| view["model"] == model.as_str())
        .unwrap();
    assert_eq!(ours["serving_version"], "1");
    let address = ours["address"].as_str().unwrap();
    let prediction: Value = reqwest::Client::new()
        .post(address)
        .json(&serde_json::json!({"inputs": [[1.0, 2.0]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let predicted = prediction["predictions"][0].as_f64().unwrap();
    assert!((predicted - 9.0).abs() < 1e-6, "{prediction}");

    // Try it, a short load test and the traffic they made, through the API.
    let post = |path: String, body: Value| {
        reqwest::Client::new()
            .post(format!("{}{path}", slipway.url))
            .bearer_auth(&ci_token)
            .json(&body)
            .send()
    };
    let tried: Value = post(
        format!("/api/v1/deployments/{model}/try"),
        serde_json::json!({"input": "{\"inputs\": [[2.0, 2.0]]}"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(tried["prediction"]["status"], 200, "{tried}");
    let answer: Value =
        serde_json::from_str(tried["prediction"]["body"].as_str().unwrap()).unwrap();
    assert!(
        (answer["predictions"][0].as_f64().unwrap() - 12.0).abs() < 1e-6,
        "{tried}"
    );
    let started = post(
        format!("/api/v1/deployments/{model}/load-tests"),
        serde_json::json!({"users": "1", "rate": "10", "duration_secs": "2", "ramp_up_secs": "0",
            "body": "{\"inputs\": [[1.0, 1.0]]}"}),
    )
    .await
    .unwrap();
    assert_eq!(started.status(), 201);
    let test: Value = started.json().await.unwrap();
    let test_id = test["id"].as_str().unwrap().to_string();
    let finished = loop {
        let (_, test) = api_get(
            &slipway,
            &ci_token,
            &format!("/api/v1/load-tests/{test_id}"),
        )
        .await;
        if test["state"] != "Running" {
            break test;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(finished["state"], "Finished", "{finished}");
    assert_eq!(finished["results"]["errors"], 0, "{finished}");
    let (_, traffic) = api_get(
        &slipway,
        &ci_token,
        &format!("/api/v1/deployments/{model}/traffic?range=1h"),
    )
    .await;
    let served: f64 = traffic["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|version| version["requests"].as_f64().unwrap_or(0.0))
        .sum();
    let load = finished["results"]["requests"].as_f64().unwrap();
    // The prediction above, Try it, and the load test: all through the gateway.
    assert_eq!(served, load + 2.0, "{traffic}");

    // The webhook heard each step, signed; the chat heard the request once
    // it was up again, after three failed attempts, as the log says.
    let heard = received(&hook, events.len()).await;
    let mut names = Vec::new();
    for (headers, body) in &heard {
        let signed = headers["x-slipway-signature-256"].to_str().unwrap();
        assert_eq!(
            signed,
            server::services::notifications::signature("hook-secret", body.as_bytes())
        );
        let notification: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            headers["x-slipway-event"],
            notification["event"].as_str().unwrap()
        );
        assert_eq!(
            headers["x-slipway-delivery"],
            notification["delivery"].as_str().unwrap()
        );
        names.push(notification["event"].as_str().unwrap().to_string());
        if notification["event"] != "launch.succeeded" {
            assert_eq!(notification["model"], model.as_str(), "{notification}");
            assert_eq!(notification["version"], "1", "{notification}");
        }
    }
    names.sort();
    let mut expected: Vec<String> = events.iter().map(|event| event.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
    let chatted = received(&chat, 4).await;
    assert_eq!(chatted.len(), 4, "three refused, then delivered");
    let message: Value = serde_json::from_str(&chatted[3].1).unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("asks to promote {model} v1")),
        "{text}"
    );
    let log = slipway.get("/notifications").await.text().await.unwrap();
    let row = log
        .split("data-delivery=")
        .skip(1)
        .find(|row| row.contains("team-chat"))
        .unwrap();
    assert!(row.contains("data-state=\"delivered\""), "{row}");
    assert!(row.contains("data-attempts=\"4\""), "{row}");
    assert!(row.contains("HTTP 503"), "{row}");

    // The audit log names the token and the person behind it.
    let (_, entries) = api_get(
        &slipway,
        &gate_token,
        &format!("/api/v1/audit?model={model}"),
    )
    .await;
    let entry = |action: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["action"] == action)
            .unwrap_or_else(|| panic!("no {action} entry in {entries}"))
            .clone()
    };
    assert_eq!(
        entry("promotion-request")["actor"],
        "ci (token train-and-ship)"
    );
    assert_eq!(entry("approve")["actor"], "gatekeeper (token gate)");
    assert_eq!(
        entry("registry-register")["actor"],
        "ci (token train-and-ship)"
    );

    // A token is for the API only: on a page it is nobody.
    let page = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/deployments", slipway.url))
        .bearer_auth(&gate_token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::SEE_OTHER);

    // Revoked on the tokens page: refused at once, exit 3, saying why.
    let tokens_page = slipway.get("/tokens").await.text().await.unwrap();
    // The operator (an account admin) sees every token; revoke ci's.
    let ci_row = tokens_page
        .split("data-token=\"train-and-ship\"")
        .nth(1)
        .unwrap();
    let ci_revoke = ci_row
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert!(ci_revoke.ends_with("/revoke"), "{ci_revoke}");
    assert_eq!(slipway.post_form(&ci_revoke, &[]).await, "/tokens");
    let revoked = cli(&slipway, &ci_token, &["deployments"]).await;
    assert_eq!(revoked.code, 3, "{revoked:?}");
    assert!(
        revoked.stderr.contains("train-and-ship was revoked"),
        "{revoked:?}"
    );
    let no_token = cli(&slipway, "", &["deployments"]).await;
    assert_eq!(no_token.code, 3, "{no_token:?}");
    assert!(slipway.log().contains("API token refused"));
}

/// Every operation in the document answers at its path and method (never
/// the API's "no such route", never 405), with the API's error shape;
/// a path that is not in it answers "no such route"; and nothing answers
/// without a token.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_and_the_routes_that_answer_are_the_same() {
    let data = tempfile::tempdir().unwrap();
    let slipway = start("", data.path()).await;
    let document: Value = slipway
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let docs = slipway.get("/api/v1/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));
    let anonymous = reqwest::Client::new()
        .get(format!("{}/api/v1/openapi.json", slipway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    slipway.add_user("robot-owner", "admin").await;
    let owner = slipway.sign_in("robot-owner").await;
    let token = slipway
        .make_token(&owner, &[("name", "walker"), ("role", "viewer")])
        .await;
    let http = reqwest::Client::new();
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = path
            .split('/')
            .map(|part| {
                if part.starts_with('{') {
                    "no-such-thing"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let url = format!("{}{concrete}", slipway.url);
            let request = match method {
                "get" => http.get(&url),
                "post" => http.post(&url).json(&serde_json::json!({})),
                "put" => http.put(&url).json(&serde_json::json!({})),
                _ => http.delete(&url),
            };
            let response = request.bearer_auth(&token).send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert!(!body.contains("no_such_route"), "{method} {path}: {body}");
            if status >= 400 {
                let error: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("{method} {path} answered {status}: {body}"));
                assert_eq!(error["error"]["status"], status, "{method} {path}: {body}");
            }
            // A viewer's token reads; every change is refused by role.
            if method != "get" && status != 400 && status != 404 {
                assert_eq!(status, 403, "{method} {path}: {body}");
            }
        }
    }
    assert!(operations >= 35, "{operations}");

    let (status, missing) = api_get(&slipway, &token, "/api/v1/no-such-route").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "no_such_route");
    let (status, refused) = api_get(&slipway, "slp_forged", "/api/v1/deployments").await;
    assert_eq!(status, 401);
    assert_eq!(refused["error"]["message"], "This token is not known here.");
    let bare = http
        .get(format!("{}/api/v1/deployments", slipway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    assert_eq!(bare.headers()["www-authenticate"], "Bearer");
    // A session is not a token: the API does not read cookies.
    let session_only = http
        .get(format!("{}/api/v1/deployments", slipway.url))
        .header("cookie", &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(session_only.status(), 401);
}
