//! Training from git, on push: a catalog project from a local repository
//! (served over `file://`), a push delivery signed as GitHub signs it that
//! launches the pushed commit with the catalog's entry point, against the
//! real MLflow, on the local executor; forged, repeated and unlistened-to
//! deliveries launch nothing.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::binary::{Slipway, SlipwaySettings};
use crate::support::{MlflowRest, mlflow_url, run_pairs, trainer_catalog, unique};

const SECRET: &str = "push-secret";

fn git(directory: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(directory)
        .args([
            "-c",
            "user.name=Pipeline",
            "-c",
            "user.email=pipeline@example.invalid",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A bare repository holding the trainer project under `trainer/`, and a
/// clone to commit to; the repository's URL.
fn repository(root: &Path) -> (String, std::path::PathBuf) {
    let bare = root.join("repo.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(
        &bare,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    );
    let url = format!("file://{}", bare.display());
    let work = root.join("work");
    std::fs::create_dir_all(work.join("trainer")).unwrap();
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trainer");
    for file in ["MLproject", "train.py", "log_model.py"] {
        std::fs::copy(fixture.join(file), work.join("trainer").join(file)).unwrap();
    }
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "the trainer"]);
    git(&work, &["push", "--quiet", &url, "main"]);
    (url, work)
}

fn signed(body: &str, secret: &str) -> String {
    server::services::notifications::signature(secret, body.as_bytes())
}

async fn deliver(slipway: &Slipway, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/webhooks/git", slipway.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn push_body(url: &str, branch: &str, commit: &str) -> String {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0".repeat(40),
        "after": commit,
        "repository": {"clone_url": url, "full_name": "team/trainer"},
        "pusher": {"name": "alice"},
    })
    .to_string()
}

async fn api(slipway: &Slipway, token: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", slipway.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn launches_of(slipway: &Slipway, token: &str, project: &str) -> Vec<Value> {
    api(slipway, token, "/api/v1/launches")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|launch| launch["project"] == project)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_push_launches_the_pushed_commit_and_nothing_else_launches_anything() {
    let root = tempfile::tempdir().unwrap();
    let (url, work) = repository(root.path());
    let experiment = unique("from-git");
    let data = root.path().join("data");
    let catalog = trainer_catalog(
        root.path(),
        &format!(
            "[[project]]\nname = \"from-git\"\ngit = {url:?}\nbranch = \"main\"\npath = \"trainer\"\n\n\
             [[project.on_push]]\nentry_point = \"main\"\nprofile = \"cpu\"\nexperiment = {experiment:?}\n\
             params = {{ alpha = \"0.5\", note = \"pushed\" }}\n"
        ),
    );
    let slipway = Slipway::start(SlipwaySettings {
        namespace: None,
        catalog: &catalog,
        data_dir: &data,
        mlflow_url: mlflow_url(),
        extra_env: vec![("SLIPWAY_GIT_WEBHOOK_SECRET", SECRET.into())],
        run_as: None,
    })
    .await;
    let token = slipway
        .make_token(
            &slipway.sign_in("operator").await,
            &[("name", "reader"), ("role", "admin")],
        )
        .await;

    // A second commit, pushed: its code prints a marker the first lacks.
    let train = work.join("trainer/train.py");
    let code = std::fs::read_to_string(&train).unwrap();
    std::fs::write(
        &train,
        format!("print(\"code of the second commit\", flush=True)\n{code}"),
    )
    .unwrap();
    git(&work, &["commit", "--quiet", "-am", "the second"]);
    git(&work, &["push", "--quiet", &url, "main"]);
    let pushed = git(&work, &["rev-parse", "HEAD"]);

    // Forged: nothing launches.
    let body = push_body(&url, "main", &pushed);
    let forged = signed(&body, "a guess");
    let (status, said) = deliver(
        &slipway,
        &[("x-github-event", "push"), ("x-hub-signature-256", &forged)],
        &body,
    )
    .await;
    assert_eq!(status, 401, "{said}");
    let (status, _) = deliver(
        &slipway,
        &[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "a guess"),
        ],
        &body,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = deliver(&slipway, &[("x-github-event", "push")], &body).await;
    assert_eq!(status, 401);
    // A branch no project follows: signed, and nothing to do.
    let other = push_body(&url, "experiments", &pushed);
    let (status, said) = deliver(
        &slipway,
        &[
            ("x-github-event", "push"),
            ("x-hub-signature-256", &signed(&other, SECRET)),
        ],
        &other,
    )
    .await;
    assert_eq!(status, 200, "{said}");
    assert!(said.contains("\"launched\":[]"), "{said}");
    assert!(launches_of(&slipway, &token, "from-git").await.is_empty());

    // Signed as GitHub signs it: one launch, of the pushed commit.
    let headers = [
        ("x-github-event", "push"),
        ("x-github-delivery", "delivery-1"),
        ("x-hub-signature-256", &signed(&body, SECRET)),
    ];
    let (status, said) = deliver(&slipway, &headers, &body).await;
    assert_eq!(status, 202, "{said}");
    let launched: Value = serde_json::from_str(&said).unwrap();
    let id = launched["launched"][0].as_str().unwrap().to_string();
    // Delivered again (a retry): the same launch, no second one.
    let (status, again) = deliver(&slipway, &headers, &body).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap()["launched"][0],
        id.as_str()
    );
    assert_eq!(launches_of(&slipway, &token, "from-git").await.len(), 1);

    let mut events = slipway.events(&format!("/api/launches/{id}/events")).await;
    let log: String = events
        .until_end(Duration::from_secs(180))
        .await
        .into_iter()
        .filter(|(event, _)| event == "log")
        .map(|(_, data)| data)
        .collect();
    assert!(log.contains("code of the second commit"), "{log}");
    assert!(log.contains("note=pushed"), "{log}");
    let launch = api(&slipway, &token, &format!("/api/v1/launches/{id}")).await;
    assert_eq!(launch["status"], "Succeeded", "{launch}");
    assert_eq!(launch["git_commit"], pushed.as_str());
    assert!(
        launch["launched_by"].as_str().unwrap().contains("alice"),
        "{launch}"
    );
    let run = MlflowRest::new(&mlflow_url())
        .get_run(launch["run_id"].as_str().unwrap())
        .await;
    let tags = run_pairs(&run, "tags");
    assert_eq!(tags["mlflow.source.git.commit"], pushed);
    assert_eq!(tags["mlflow.source.git.repoURL"], url);
    assert_eq!(tags["mlflow.source.git.branch"], "main");
    // Its checkout goes with it.
    let checkout = data.join("git-work").join(&id);
    for _ in 0..50 {
        if !checkout.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!checkout.exists(), "{} is left", checkout.display());

    // Launched by hand it pins the branch's newest commit; a made-up one is refused.
    let launch_by_api = |commit: &str| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/launches", slipway.url))
            .bearer_auth(&token)
            .json(&json!({
                "submission": "", "project": "from-git", "entry_point": "main",
                "params": {"alpha": "1"}, "experiment_id": "", "new_experiment": experiment,
                "profile": "cpu", "run_name": "", "commit": commit,
            }))
            .send()
    };
    let refused = launch_by_api("abc").await.unwrap();
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert!(error["error"]["fields"]["commit"].is_string(), "{error}");
    let by_hand: Value = launch_by_api("").await.unwrap().json().await.unwrap();
    assert_eq!(by_hand["git_commit"], pushed.as_str(), "{by_hand}");
}
