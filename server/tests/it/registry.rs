//! Editing the registry from Slipway's pages: registering a run's model,
//! aliases, stages, descriptions and tags — by trainers and up, each change
//! audited, and what a deployment serves by moved only through Promote.

use crate::support;

use crate::support::site::{Caller, Site, everyone, location, refused};
use crate::support::{MlflowRest, config, mlflow_url, trainer_catalog, unique};
use app::access::Role;
use axum::http::Method;
use http_body_util::BodyExt;
use serde_json::Value;

async fn page(site: &Site, uri: &str) -> String {
    let response = site
        .send(Caller::Signed(Role::Trainer), Method::GET, uri, "")
        .await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

async fn version_of(mlflow: &MlflowRest, model: &str, version: &str) -> Value {
    let (status, answer) = mlflow
        .get(
            "model-versions/get",
            &[("name", model), ("version", version)],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["model_version"].clone()
}

async fn model_of(mlflow: &MlflowRest, model: &str) -> Value {
    let (status, answer) = mlflow
        .get("registered-models/get", &[("name", model)])
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["registered_model"].clone()
}

fn tags(entity: &Value) -> Vec<(String, String)> {
    entity["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tag| {
            (
                tag["key"].as_str().unwrap().to_string(),
                tag["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A Slipway, and a registered model nothing serves (`free`) with two
/// versions; `edit` is where the registry forms post.
struct Registry {
    site: Site,
    mlflow: MlflowRest,
    free: String,
    v1: String,
    v2: String,
    edit: String,
    version_page: String,
}

async fn registry() -> Registry {
    let mlflow = MlflowRest::new(&mlflow_url());
    let experiment = mlflow.create_experiment(&unique("registry"), &[]).await;
    let run = mlflow.create_run(&experiment, "r", &[], &[], &[]).await;
    let free = unique("registry-free");
    mlflow.create_registered_model(&free).await;
    let v1 = mlflow
        .register_version(&free, &experiment, &run)
        .await
        .version;
    let v2 = mlflow
        .register_version(&free, &experiment, &run)
        .await
        .version;
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.reconcile_poll_secs = 3600;
    let site = Site::start(config, data).await;
    let edit = format!("/models/{free}/edit");
    let version_page = format!("/models/{free}/versions/{v1}");
    Registry {
        site,
        mlflow,
        free,
        v1,
        v2,
        edit,
        version_page,
    }
}

/// Every change to `model` in the audit log, oldest first: (actor, action,
/// detail, outcome).
async fn audited(site: &Site, model: &str) -> Vec<(String, String, String, String)> {
    let audit = site
        .store
        .recent_events(Some(&format!("model:{model}")), 100)
        .await
        .unwrap();
    audit
        .iter()
        .rev()
        .map(|event| {
            (
                event.actor.clone(),
                event.action.clone(),
                event.detail.clone(),
                event.outcome.clone(),
            )
        })
        .collect()
}

fn expect(
    actor: &str,
    action: &str,
    detail: String,
    outcome: &str,
) -> (String, String, String, String) {
    (
        actor.to_string(),
        action.to_string(),
        detail,
        outcome.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn trainers_and_up_edit_the_registry_and_a_viewer_sees_no_forms() {
    let Registry {
        site,
        mlflow,
        free,
        v1,
        edit,
        version_page,
        ..
    } = registry().await;
    // Who may: trainers and up, from Slipway's own pages. A refusal changes
    // nothing in MLflow.
    let set_alias = |alias: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("op", "set-alias"), ("version", &v1), ("alias", alias)])
            .finish()
    };
    let mut allowed = Vec::new();
    // Each caller its own alias, so a refusal that set one shows.
    for (index, caller) in everyone().into_iter().enumerate() {
        let alias = format!("a{index}");
        let response = site
            .send(caller, Method::POST, &edit, &set_alias(&alias))
            .await;
        let aliases = version_of(&mlflow, &free, &v1).await["aliases"].clone();
        let has_alias = aliases
            .as_array()
            .into_iter()
            .flatten()
            .any(|set| set == alias.as_str());
        if refused(&response) {
            assert!(!has_alias, "{caller:?} was refused yet set @{alias}");
        } else {
            assert_eq!(location(&response), version_page, "{caller:?}");
            assert!(has_alias, "{caller:?}: {aliases}");
            allowed.push(caller);
        }
    }
    assert_eq!(
        allowed,
        [Role::Trainer, Role::Deployer, Role::Approver, Role::Admin].map(Caller::Signed),
        "who may edit the registry"
    );

    // The version page shows the aliases with their remove buttons; a
    // viewer's shows no forms.
    let html = page(&site, &version_page).await;
    assert!(html.contains("data-remove-alias=\"a2\""), "{html}");
    assert!(html.contains("data-set-alias"), "{html}");
    let viewer_html = {
        let response = site
            .send(Caller::Signed(Role::Viewer), Method::GET, &version_page, "")
            .await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    };
    assert!(viewer_html.contains("@a2"), "the viewer sees the alias");
    assert!(!viewer_html.contains("data-set-alias"), "but no forms");

    // Each accepted change is in the audit log, by whom, with its outcome.
    let described = audited(&site, &free).await;
    assert_eq!(
        described[..4],
        [
            expect("trainer", "registry-alias", format!("@a2 → v{v1}"), "done"),
            expect("deployer", "registry-alias", format!("@a3 → v{v1}"), "done"),
            expect("approver", "registry-alias", format!("@a4 → v{v1}"), "done"),
            expect("admin", "registry-alias", format!("@a5 → v{v1}"), "done"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn aliases_stages_descriptions_and_tags_change_in_mlflow_and_are_audited() {
    let Registry {
        site,
        mlflow,
        free,
        v1,
        v2,
        edit,
        version_page,
    } = registry().await;
    // @a2 on v1, as a trainer set it.
    site.post(
        Role::Trainer,
        &edit,
        &[("op", "set-alias"), ("version", &v1), ("alias", "a2")],
    )
    .await;
    // Moving an alias is setting it on another version; removing it.
    site.post(
        Role::Trainer,
        &edit,
        &[("op", "set-alias"), ("version", &v2), ("alias", "a2")],
    )
    .await;
    let (_, by_alias) = mlflow
        .get(
            "registered-models/alias",
            &[("name", free.as_str()), ("alias", "a2")],
        )
        .await;
    assert_eq!(by_alias["model_version"]["version"], v2.as_str());
    let removed = site
        .post(
            Role::Trainer,
            &edit,
            &[("op", "remove-alias"), ("version", &v2), ("alias", "a2")],
        )
        .await;
    assert_eq!(location(&removed), format!("/models/{free}/versions/{v2}"));
    let (status, answer) = mlflow
        .get(
            "registered-models/alias",
            &[("name", free.as_str()), ("alias", "a2")],
        )
        .await;
    assert!(
        status >= 400 && answer["model_version"].is_null(),
        "@a2 is gone: {status} {answer}"
    );

    // Stages, with and without archiving the others.
    for (version, archive) in [(&v1, false), (&v2, true)] {
        let mut form = vec![
            ("op", "stage"),
            ("version", version.as_str()),
            ("stage", "Staging"),
        ];
        if archive {
            form.push(("archive_others", "on"));
        }
        site.post(Role::Trainer, &edit, &form).await;
    }
    assert_eq!(mlflow.stage(&free, &v2).await, "Staging");
    assert_eq!(
        mlflow.stage(&free, &v1).await,
        "Archived",
        "archived by v2's move"
    );

    // Descriptions and tags, of the model and of a version.
    site.post(
        Role::Trainer,
        &edit,
        &[
            ("op", "describe"),
            ("description", "Predicts the sum.\nScaled."),
        ],
    )
    .await;
    site.post(
        Role::Trainer,
        &edit,
        &[
            ("op", "describe"),
            ("version", &v1),
            ("description", "first try"),
        ],
    )
    .await;
    for version in [None, Some(v1.as_str())] {
        let mut form = vec![("op", "set-tag"), ("key", "team"), ("value", "fraud")];
        form.extend(version.map(|version| ("version", version)));
        site.post(Role::Trainer, &edit, &form).await;
    }
    assert_eq!(
        model_of(&mlflow, &free).await["description"],
        "Predicts the sum.\nScaled."
    );
    let first = version_of(&mlflow, &free, &v1).await;
    assert_eq!(first["description"], "first try");
    assert_eq!(tags(&first), [("team".to_string(), "fraud".to_string())]);
    assert_eq!(
        tags(&model_of(&mlflow, &free).await),
        [("team".to_string(), "fraud".to_string())]
    );
    let html = page(&site, &version_page).await;
    assert!(html.contains("data-tag=\"team\""), "{html}");
    assert!(html.contains("first try"), "{html}");
    site.post(
        Role::Trainer,
        &edit,
        &[("op", "delete-tag"), ("version", &v1), ("key", "team")],
    )
    .await;
    assert!(tags(&version_of(&mlflow, &free, &v1).await).is_empty());

    let described = audited(&site, &free).await;
    assert!(described.contains(&expect(
        "trainer",
        "registry-stage",
        format!("v{v2} → Staging, the others in it archived"),
        "done"
    )));
    assert!(described.contains(&expect(
        "trainer",
        "registry-tag",
        format!("v{v1}: team removed"),
        "done"
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_come_back_as_a_notice_and_change_nothing() {
    let Registry {
        site,
        free,
        v1,
        edit,
        version_page,
        ..
    } = registry().await;
    // Mistakes come back as a notice on the same page, and change nothing.
    let reserved = site
        .post(
            Role::Trainer,
            &edit,
            &[("op", "set-alias"), ("version", &v1), ("alias", "latest")],
        )
        .await;
    assert!(location(&reserved).starts_with(&format!("{version_page}?notice=")));
    assert_eq!(
        site.notice(Role::Trainer, &reserved).await,
        "\"latest\" names versions in MLflow; choose another alias."
    );
    let missing = site
        .post(
            Role::Trainer,
            &edit,
            &[("op", "set-alias"), ("version", "999"), ("alias", "ghost")],
        )
        .await;
    let refusal = site.notice(Role::Trainer, &missing).await;
    assert!(
        refusal.contains("MLflow"),
        "MLflow's own refusal: {refusal}"
    );

    let described = audited(&site, &free).await;
    let failed = described.last().unwrap();
    assert_eq!(
        (failed.1.as_str(), failed.2.as_str()),
        ("registry-alias", "@ghost → v999")
    );
    assert!(failed.3.starts_with("failed: MLflow"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_deployment_serves_by_moves_only_through_promote() {
    let mlflow = MlflowRest::new(&mlflow_url());
    let experiment = mlflow.create_experiment(&unique("registry"), &[]).await;
    let run = mlflow.create_run(&experiment, "r", &[], &[], &[]).await;
    let by_stage = unique("registry-stage");
    let by_alias = unique("registry-alias");
    for model in [&by_stage, &by_alias] {
        mlflow.create_registered_model(model).await;
        mlflow.register_version(model, &experiment, &run).await;
        mlflow.register_version(model, &experiment, &run).await;
    }
    mlflow.transition_stage(&by_stage, "1", "Production").await;
    mlflow.set_alias(&by_alias, "champion", "1").await;
    let data = tempfile::tempdir().unwrap();
    let catalog = trainer_catalog(
        data.path(),
        &format!(
            "[[deployment]]\nmodel = {by_stage:?}\ntarget = \"local\"\n\n\
             [[deployment]]\nmodel = {by_alias:?}\ntarget = \"local\"\n\
             production = \"alias\"\nalias = \"champion\"\n"
        ),
    );
    let mut config = config(&mlflow_url(), data.path());
    config.catalog = Some(catalog);
    config.reconcile_poll_secs = 3600;
    let site = Site::start(config, data).await;

    let stage_edit = format!("/models/{by_stage}/edit");
    for form in [
        [("op", "stage"), ("version", "2"), ("stage", "Production")],
        [("op", "stage"), ("version", "1"), ("stage", "Archived")],
    ] {
        let response = site.post(Role::Admin, &stage_edit, &form).await;
        assert_eq!(
            site.notice(Role::Admin, &response).await,
            format!(
                "A deployment serves {by_stage} by stage Production: change it with Promote or Roll back on the deployment's page."
            )
        );
    }
    assert_eq!(mlflow.stage(&by_stage, "1").await, "Production");
    assert_eq!(mlflow.stage(&by_stage, "2").await, "None");
    // Other stages are the team's own.
    site.post(
        Role::Trainer,
        &stage_edit,
        &[("op", "stage"), ("version", "2"), ("stage", "Staging")],
    )
    .await;
    assert_eq!(mlflow.stage(&by_stage, "2").await, "Staging");

    let alias_edit = format!("/models/{by_alias}/edit");
    for form in [
        [("op", "set-alias"), ("version", "2"), ("alias", "champion")],
        [
            ("op", "remove-alias"),
            ("version", "1"),
            ("alias", "champion"),
        ],
    ] {
        let response = site.post(Role::Admin, &alias_edit, &form).await;
        let refusal = site.notice(Role::Admin, &response).await;
        assert!(refusal.contains("by alias @champion"), "{refusal}");
    }
    let (_, champion) = mlflow
        .get(
            "registered-models/alias",
            &[("name", by_alias.as_str()), ("alias", "champion")],
        )
        .await;
    assert_eq!(champion["model_version"]["version"], "1");
    // Another alias is fine, and a stage too: the alias rules.
    let challenger = site
        .post(
            Role::Trainer,
            &alias_edit,
            &[
                ("op", "set-alias"),
                ("version", "2"),
                ("alias", "challenger"),
            ],
        )
        .await;
    assert_eq!(
        location(&challenger),
        format!("/models/{by_alias}/versions/2")
    );

    // The pages say what rules: with a stage Production elsewhere, the
    // alias still picks what serves.
    mlflow.transition_stage(&by_alias, "2", "Production").await;
    for (model, rules) in [
        (&by_stage, "v1 by stage Production"),
        (&by_alias, "v1 by alias @champion"),
    ] {
        let list = page(&site, &format!("/models?q={model}"))
            .await
            .replace("<!>", "");
        assert!(
            list.contains(&format!("<a href=\"/deployments/{model}\">{rules}</a>")),
            "{rules} in {list}"
        );
        let detail = page(&site, &format!("/models/{model}"))
            .await
            .replace("<!>", "");
        assert!(detail.contains(&format!(">{rules}</a>")), "{detail}");
    }
    assert!(
        site.store
            .recent_events(Some(&format!("model:{by_stage}")), 100)
            .await
            .unwrap()
            .iter()
            .filter(|event| event.action.starts_with("registry-"))
            .all(|event| event.detail.contains("Staging")),
        "refused changes are not in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runs_logged_model_is_registered_from_the_run_page() {
    let mlflow = MlflowRest::new(&mlflow_url());
    let experiment_name = unique("registry-register");
    let run = support::log_sklearn_model(&experiment_name);
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.reconcile_poll_secs = 3600;
    let site = Site::start(config, data).await;

    let html = page(&site, &format!("/runs/{run}")).await;
    assert!(html.contains("data-register-form"), "{html}");
    let (_, after) = html
        .split_once("<select id=\"register-source\" name=\"source\"><option value=\"")
        .unwrap_or_else(|| panic!("no model offered in {html}"));
    let source = after.split('"').next().unwrap().to_string();
    // MLflow 3: the logged model, by name and id; MLflow 2: its folder.
    if mlflow.major_version().await >= 3 {
        let id = source.strip_prefix("models:/").expect("a logged model");
        assert!(after.contains(&format!(">model ({id})")), "{after}");
    } else {
        let (_, got) = mlflow.get("runs/get", &[("run_id", run.as_str())]).await;
        let artifacts = got["run"]["info"]["artifact_uri"].as_str().unwrap();
        assert_eq!(source, format!("{artifacts}/model"));
    }

    let model = unique("registry-registered");
    let register = format!("/runs/{run}/register");
    for role in [Role::Viewer] {
        let response = site
            .post(role, &register, &[("source", &source), ("model", &model)])
            .await;
        assert!(refused(&response), "{role:?}");
    }
    let (status, _) = mlflow
        .get("registered-models/get", &[("name", model.as_str())])
        .await;
    assert_eq!(status, 404, "a refused registration made no model");

    // A new registered model, then a second version of the existing one.
    for expected in ["1", "2"] {
        let response = site
            .post(
                Role::Trainer,
                &register,
                &[("source", &source), ("model", &model)],
            )
            .await;
        assert_eq!(
            location(&response),
            format!("/models/{model}/versions/{expected}")
        );
        let version = version_of(&mlflow, &model, expected).await;
        assert_eq!(version["run_id"], run.as_str());
        assert_eq!(version["source"], source.as_str());
    }
    // The version's page: its signature with types, input example, and the
    // run's metrics, with the way back to what it was made from.
    let html = page(&site, &format!("/models/{model}/versions/1"))
        .await
        .replace("<!>", "");
    for shown in [
        "<td>inputs</td><th scope=\"row\">#0</th><td class=\"mono\">tensor float64 [-1,2]</td>",
        "<h2>Input example</h2>",
        "<th scope=\"row\">scale</th><td class=\"metric\">1</td>",
        &format!("<a href=\"/runs/{run}\">{run}</a>"),
    ] {
        assert!(html.contains(shown), "{shown} in {html}");
    }
    if let Some(id) = source.strip_prefix("models:/") {
        assert!(
            html.contains(&format!(
                "</code> · <a href=\"/runs/{run}?model={id}#artifacts\">the logged model's files</a>"
            )),
            "{html}"
        );
    }

    // Only what the run logged: not any storage location.
    let foreign = site
        .post(
            Role::Trainer,
            &register,
            &[("source", "s3://elsewhere/model"), ("model", &model)],
        )
        .await;
    assert_eq!(
        site.notice(Role::Trainer, &foreign).await,
        "Choose one of the models this run logged."
    );
    let (_, versions) = mlflow
        .get(
            "model-versions/search",
            &[("filter", &format!("name = '{model}'"))],
        )
        .await;
    assert_eq!(versions["model_versions"].as_array().unwrap().len(), 2);
    let audit = site
        .store
        .recent_events(Some(&format!("model:{model}")), 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|event| event.action == "registry-register"
        && event.actor == "trainer"
        && event.detail.starts_with(&format!("run {run}: "))));
    assert_eq!(audit[0].outcome, "done: v2");
}
