//! Every route and server function, tried as anonymous, as each role and
//! from another site (with and without `Origin`), against the exact set of
//! callers that may use it. Refused requests change nothing: MLflow and the
//! database are checked after them. Each kind of change is a scenario of
//! its own, on a Slipway of its own.

use std::collections::BTreeMap;

use crate::support::site::{CROSS_SITE, Caller, Site, everyone, location, refused};
use crate::support::{MlflowRest, config, mlflow_url, trainer_catalog, unique};
use app::access::Role;
use axum::http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use server::services::deployments::Saved;

/// A Slipway with the trainer project, a run to look at, and two bound
/// models: `model` (any deployer promotes it) and `guarded` (an approver
/// must decide), each with version 1.
struct Access {
    site: Site,
    mlflow: MlflowRest,
    experiment: String,
    run: String,
    other_run: String,
    model: String,
    version: String,
    guarded: String,
}

async fn access() -> Access {
    let mlflow = MlflowRest::new(&mlflow_url());
    let model = unique("access-model");
    let experiment = mlflow.create_experiment(&unique("access"), &[]).await;
    let run = mlflow.create_run(&experiment, "r", &[], &[], &[]).await;
    let other_run = mlflow.create_run(&experiment, "s", &[], &[], &[]).await;
    mlflow.create_registered_model(&model).await;
    let version = mlflow
        .register_version(&model, &experiment, &run)
        .await
        .version;
    let guarded = unique("access-guarded");
    mlflow.create_registered_model(&guarded).await;
    mlflow.register_version(&guarded, &experiment, &run).await;

    let data = tempfile::tempdir().unwrap();
    let catalog = trainer_catalog(
        data.path(),
        &format!(
            "[[deployment]]\nmodel = {model:?}\ntarget = \"local\"\n\n\
             [[deployment]]\nmodel = {guarded:?}\ntarget = \"local\"\nrequires_approval = true\n"
        ),
    );
    let mut config = config(&mlflow_url(), data.path());
    config.catalog = Some(catalog);
    // No pass of its own during the test: what changes, a request changed.
    config.reconcile_poll_secs = 3600;
    Access {
        site: Site::start(config, data).await,
        mlflow,
        experiment,
        run,
        other_run,
        model,
        version,
        guarded,
    }
}

/// The launch form for the trainer project, into a new `experiment`; its
/// training sleeps `sleep` seconds.
fn launch_form(experiment: &str, sleep: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("submission", &uuid::Uuid::new_v4().to_string())
        .append_pair("project", "trainer")
        .append_pair("entry_point", "main")
        .append_pair("param.alpha", "1")
        .append_pair("param.sleep", sleep)
        .append_pair("new_experiment", experiment)
        .append_pair("profile", "cpu")
        .finish()
}

/// A launch of the trainer's; its id.
async fn trainers_launch(site: &Site, sleep: &str) -> String {
    let launched = site
        .send(
            Caller::Signed(Role::Trainer),
            Method::POST,
            "/launches",
            &launch_form(&unique("access-run"), sleep),
        )
        .await;
    location(&launched)
        .strip_prefix("/launches/")
        .expect("launched")
        .to_string()
}

/// Pages, server functions and a launch's events: every signed-in role
/// reads; anonymous goes to the sign-in page (401 for the API).
#[tokio::test(flavor = "multi_thread")]
async fn every_page_and_server_function_admits_everyone_signed_in() {
    let Access {
        site,
        experiment,
        run,
        other_run,
        model,
        version,
        ..
    } = access().await;
    // A launch of the trainer's to look at (it ends at once).
    let own_launch = trainers_launch(&site, "0").await;

    // A form sent back with errors is kept for its sender alone.
    let sent_back = site
        .send(
            Caller::Signed(Role::Trainer),
            Method::POST,
            "/launches",
            &launch_form(&unique("access-run"), "not-a-number"),
        )
        .await;
    let draft = location(&sent_back);
    assert!(draft.starts_with("/launch?draft="), "{draft}");
    for (role, expected) in [
        (Role::Trainer, StatusCode::OK),
        (Role::Admin, StatusCode::NOT_FOUND),
    ] {
        let response = site
            .send(Caller::Signed(role), Method::GET, &draft, "")
            .await;
        assert_eq!(response.status(), expected, "GET {draft} as {role:?}");
        let html = response.into_body().collect().await.unwrap().to_bytes();
        let shows_value = String::from_utf8_lossy(&html).contains("value=\"not-a-number\"");
        assert_eq!(shows_value, role == Role::Trainer, "{role:?}");
    }

    // Pages: the sign-in page for anonymous (except the sign-in page itself),
    // the page for every role. Every route the app has is tried.
    let mut values = BTreeMap::new();
    values.insert("id", experiment.clone());
    values.insert("name", model.clone());
    values.insert("version", version.clone());
    values.insert("model", model.clone());
    let pages: Vec<String> = server::web::page_routes()
        .iter()
        .map(|route| route.path().to_string())
        .collect();
    assert!(pages.len() >= 14, "{pages:?}");
    for page in &pages {
        let mut uri = page
            .split('/')
            .map(
                |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => values
                        .get(name)
                        .unwrap_or_else(|| panic!("no value for {{{name}}} in {page}: add one"))
                        .clone(),
                    None => segment.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        if page.starts_with("/runs/") {
            uri = format!("/runs/{run}");
        }
        if page.starts_with("/launches/") {
            uri = format!("/launches/{own_launch}");
        }
        if page.ends_with("/promote") {
            uri = format!("{uri}?version={version}");
        }
        if page == "/compare" {
            uri = format!("/compare?runs={run}&runs={other_run}");
        }
        for caller in everyone() {
            let response = site.send(caller, Method::GET, &uri, "").await;
            let status = response.status();
            let redirect = location(&response);
            // Read to the end: the whole page renders, not just its status.
            let html = response.into_body().collect().await.unwrap().to_bytes();
            if caller == Caller::Anonymous && page != "/login" {
                let next: String = url::form_urlencoded::byte_serialize(uri.as_bytes()).collect();
                assert_eq!(status, StatusCode::SEE_OTHER, "GET {uri}");
                assert_eq!(redirect, format!("/login?next={next}"), "GET {uri}");
            } else {
                // No request or load test exists yet: the page says so,
                // with its status.
                let expected = if page == "/approvals/{id}"
                    || page.starts_with("/deployments/{model}/load-tests/")
                    || page.ends_with("/compare-load-tests")
                {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                };
                assert_eq!(status, expected, "GET {uri} as {caller:?}");
                let html = String::from_utf8_lossy(&html);
                assert!(html.contains("</html>"), "GET {uri} as {caller:?}");
            }
        }
    }

    for caller in everyone() {
        let response = site.send(caller, Method::GET, "/", "").await;
        let expected = if caller == Caller::Anonymous {
            "/login?next=%2F"
        } else {
            "/experiments"
        };
        assert_eq!(location(&response), expected, "GET / as {caller:?}");
    }

    // Server functions: 401 without a session (but the sign-in page's
    // options), refused from another site, let through for every role (the answer itself may be an error about
    // the empty arguments; it is not a refusal).
    let functions: Vec<(&str, Method)> = leptos::server_fn::axum::server_fn_paths().collect();
    assert!(functions.len() >= 18, "{functions:?}");
    for (path, method) in &functions {
        for caller in everyone() {
            let response = site.send(caller, method.clone(), path, "").await;
            let let_through = !refused(&response);
            // What the sign-in page offers is the one answer given without a session.
            let public = *path == "/api/login_options";
            let expected = matches!(caller, Caller::Signed(_))
                || (public && caller == Caller::Anonymous)
                || (*method == Method::GET && matches!(caller, Caller::CrossSite(_)));
            assert_eq!(
                let_through,
                expected,
                "{method} {path} as {caller:?}: {}",
                response.status()
            );
            if caller == Caller::Anonymous && !public {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
            }
        }
    }

    // The live events of a launch: read access.
    let events = format!("/api/launches/{own_launch}/events");
    for caller in everyone() {
        let response = site.send(caller, Method::GET, &events, "").await;
        let expected = if caller == Caller::Anonymous {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(response.status(), expected, "events as {caller:?}");
    }
}

/// Launch: trainers and up. Cancel: the trainer their own, an admin anyone's.
#[tokio::test(flavor = "multi_thread")]
async fn launches_admit_trainers_and_up_and_cancels_their_own_or_an_admin() {
    let Access { site, mlflow, .. } = access().await;
    // A launch of the trainer's (to cancel later).
    let own_launch = trainers_launch(&site, "120").await;

    // Launch: trainers and up. Each refused attempt names a new experiment,
    // which must not exist in MLflow afterwards, and adds no launch.
    let launches_before = site.store.recent_launches(1000).await.unwrap().len();
    let mut allowed = Vec::new();
    for caller in everyone() {
        let experiment_name = unique("access-launch");
        let response = site
            .send(
                caller,
                Method::POST,
                "/launches",
                &launch_form(&experiment_name, "0"),
            )
            .await;
        if refused(&response) {
            let (status, _) = mlflow
                .get(
                    "experiments/get-by-name",
                    &[("experiment_name", &experiment_name)],
                )
                .await;
            assert_eq!(
                status, 404,
                "a refused launch made no experiment ({caller:?})"
            );
        } else {
            assert!(
                location(&response).starts_with("/launches/"),
                "{caller:?}: {}",
                location(&response)
            );
            allowed.push(caller);
        }
    }
    assert_eq!(
        allowed,
        [Role::Trainer, Role::Deployer, Role::Approver, Role::Admin].map(Caller::Signed),
        "who may launch"
    );
    assert_eq!(
        site.store.recent_launches(1000).await.unwrap().len(),
        launches_before + allowed.len(),
        "refused launches recorded nothing"
    );

    // Cancel: the trainer their own, an admin anyone's; nobody else. One
    // launch is cancelled by its trainer, the other by an admin.
    let other_launch = location(
        &site
            .send(
                Caller::Signed(Role::Trainer),
                Method::POST,
                "/launches",
                &launch_form(&unique("access-run"), "120"),
            )
            .await,
    )
    .strip_prefix("/launches/")
    .unwrap()
    .to_string();
    for (launch, permitted) in [(&own_launch, Role::Trainer), (&other_launch, Role::Admin)] {
        let cancel = format!("/launches/{launch}/cancel");
        let may_cancel = [Caller::Signed(Role::Trainer), Caller::Signed(Role::Admin)];
        for caller in everyone()
            .into_iter()
            .filter(|caller| !may_cancel.contains(caller))
        {
            let response = site.send(caller, Method::POST, &cancel, "").await;
            assert!(
                refused(&response),
                "cancel as {caller:?}: {}",
                response.status()
            );
            let status = site.store.launch(launch).await.unwrap().unwrap().status;
            assert!(
                !status.is_terminal(),
                "a refused cancel left it running ({caller:?})"
            );
        }
        let response = site
            .send(Caller::Signed(permitted), Method::POST, &cancel, "")
            .await;
        assert_eq!(
            location(&response),
            format!("/launches/{launch}"),
            "{permitted:?} cancels"
        );
        let status = site.store.launch(launch).await.unwrap().unwrap().status;
        assert_eq!(status, app::model::LaunchStatus::Cancelled);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_and_roll_back_admit_deployers_and_up() {
    let Access {
        site,
        mlflow,
        model,
        version,
        ..
    } = access().await;
    // Promote and roll back: deployers and up. A refused promotion leaves
    // MLflow's stage and the audit log as they were.
    let promote = format!("/deployments/{model}/promote");
    let rollback = format!("/deployments/{model}/rollback");
    let form = format!("version={version}");
    let audit_before = site
        .store
        .recent_events(Some(&format!("model:{model}")), 100)
        .await
        .unwrap();
    let mut allowed = Vec::new();
    // Those expected to be refused go first, while nothing is in production.
    let mut callers = everyone();
    callers.sort_by_key(|caller| matches!(caller, Caller::Signed(role) if *role >= Role::Deployer));
    for caller in callers {
        let response = site.send(caller, Method::POST, &promote, &form).await;
        if refused(&response) {
            assert_eq!(
                mlflow.stage(&model, &version).await,
                "None",
                "a refused promotion changed nothing ({caller:?})"
            );
            let audit = site
                .store
                .recent_events(Some(&format!("model:{model}")), 100)
                .await
                .unwrap();
            assert_eq!(audit, audit_before, "nor the audit log ({caller:?})");
        } else {
            assert_eq!(
                location(&response),
                format!("/deployments/{model}?done=promoted&version={version}"),
                "{caller:?}"
            );
            allowed.push(caller);
        }
    }
    let deployers = [Role::Deployer, Role::Approver, Role::Admin].map(Caller::Signed);
    assert_eq!(allowed, deployers, "who may promote");
    assert_eq!(mlflow.stage(&model, &version).await, "Production");
    let mut allowed = Vec::new();
    for caller in everyone() {
        let response = site.send(caller, Method::POST, &rollback, "").await;
        if !refused(&response) {
            // Allowed, though there is nothing earlier to go back to.
            assert!(
                location(&response).starts_with(&format!("{rollback}?notice=")),
                "{caller:?}"
            );
            allowed.push(caller);
        }
    }
    assert_eq!(allowed, deployers, "who may roll back");
}

#[tokio::test(flavor = "multi_thread")]
async fn deployments_are_created_changed_and_deleted_by_admins_alone() {
    let Access { site, .. } = access().await;
    // Deployments are created, changed and deleted by admins alone; a
    // refused change changes nothing.
    let made = unique("access-made");
    let settings = |extra: &str| {
        format!(
            "model={made}&target=local&replicas=1&production=stage&alias=production&no_production=keep{extra}"
        )
    };
    let admins = [Caller::Signed(Role::Admin)];
    let mut allowed = Vec::new();
    for caller in everyone() {
        let response = site
            .send(caller, Method::POST, "/deployments", &settings(""))
            .await;
        if !refused(&response) {
            assert_eq!(location(&response), format!("/deployments/{made}"));
            allowed.push(caller);
        }
    }
    assert_eq!(allowed, admins, "who may create a deployment");
    let edit = format!("/deployments/{made}/settings");
    let mut allowed = Vec::new();
    for caller in everyone() {
        let revision = site.store.binding(&made).await.unwrap().unwrap().revision;
        let form = settings(&format!("&requires_approval=yes&revision={revision}"));
        let response = site.send(caller, Method::POST, &edit, &form).await;
        let after = site.store.binding(&made).await.unwrap().unwrap();
        if refused(&response) {
            assert_eq!(
                after.revision, revision,
                "a refused edit changed nothing ({caller:?})"
            );
        } else {
            assert_eq!(location(&response), format!("/deployments/{made}"));
            assert!(after.binding.requires_approval);
            allowed.push(caller);
        }
    }
    assert_eq!(allowed, admins, "who may change a deployment");
    let delete = format!("/deployments/{made}/delete");
    let mut allowed = Vec::new();
    for caller in everyone() {
        let Some(record) = site.store.binding(&made).await.unwrap() else {
            break;
        };
        let form = format!("confirm={made}&revision={}", record.revision);
        let response = site.send(caller, Method::POST, &delete, &form).await;
        if !refused(&response) {
            assert_eq!(location(&response), "/deployments");
            allowed.push(caller);
        }
    }
    assert_eq!(allowed, admins, "who may delete a deployment");
    assert!(site.store.binding(&made).await.unwrap().is_none());

    // It required approval when deleted: made again without, the form
    // leads to a request another person approves, and nothing is saved
    // before that.
    let again = site
        .send(
            Caller::Signed(Role::Admin),
            Method::POST,
            "/deployments",
            &settings(""),
        )
        .await;
    let request_page = location(&again);
    assert!(request_page.starts_with("/approvals/"), "{request_page}");
    assert!(site.store.binding(&made).await.unwrap().is_none());
    let (status, html) = site.get(&request_page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("Make the deployment of {made}?")),
        "{html}"
    );
    assert!(html.contains("approval not required"), "{html}");
    assert!(html.contains("It makes no version serve"), "{html}");
    let approve = format!("{request_page}/approve");
    site.send(
        Caller::Signed(Role::Admin),
        Method::POST,
        &approve,
        "comment=",
    )
    .await;
    assert!(
        site.store.binding(&made).await.unwrap().is_none(),
        "the requester cannot approve it"
    );
    site.send(
        Caller::Signed(Role::Approver),
        Method::POST,
        &approve,
        "comment=ok",
    )
    .await;
    let saved = site.store.binding(&made).await.unwrap().unwrap();
    assert!(!saved.binding.requires_approval);
}

#[tokio::test(flavor = "multi_thread")]
async fn four_eyes_admit_approvers_and_admins_but_never_the_requester() {
    let Access {
        site,
        mlflow,
        guarded,
        ..
    } = access().await;
    // Four eyes: a deployer asks; approvers and admins (never the one who
    // asked) decide. A refused decision leaves the request pending and
    // MLflow as it was.
    let requested = site
        .post(
            Role::Deployer,
            &format!("/deployments/{guarded}/promote"),
            &[("version", "1"), ("reason", "better")],
        )
        .await;
    let request_page = location(&requested);
    let request_id = request_page
        .strip_prefix("/approvals/")
        .unwrap_or_else(|| panic!("to the request: {request_page}"))
        .to_string();
    for caller in everyone() {
        let response = site.send(caller, Method::GET, &request_page, "").await;
        let expected = match caller {
            Caller::Anonymous => StatusCode::SEE_OTHER,
            _ => StatusCode::OK,
        };
        assert_eq!(
            response.status(),
            expected,
            "GET {request_page} as {caller:?}"
        );
    }
    // Rejecting first, with no comment: those allowed get "say why" and
    // decide nothing, so the request is still pending for the approve round.
    for (decision, body) in [("reject", "comment="), ("approve", "comment=looked+at+it")] {
        let path = format!("{request_page}/{decision}");
        let mut callers = everyone();
        callers.sort_by_key(
            |caller| matches!(caller, Caller::Signed(role) if *role >= Role::Approver),
        );
        let mut allowed = Vec::new();
        for caller in callers {
            let response = site.send(caller, Method::POST, &path, body).await;
            if refused(&response) {
                let request = site
                    .store
                    .promotion_request(&request_id)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    request.state,
                    app::model::RequestState::Pending,
                    "{decision} as {caller:?}"
                );
                assert_eq!(
                    mlflow.stage(&guarded, "1").await,
                    "None",
                    "{decision} as {caller:?}"
                );
            } else {
                allowed.push(caller);
            }
        }
        let deciders = [Role::Approver, Role::Admin].map(Caller::Signed);
        assert_eq!(allowed, deciders, "who may {decision}");
    }
    let request = site
        .store
        .promotion_request(&request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.state, app::model::RequestState::Approved);
    assert_eq!(request.decided_by.as_deref(), Some("approver"));
    assert_eq!(mlflow.stage(&guarded, "1").await, "Production");
    // Asking again for what is in production goes nowhere, for anyone.
    for role in Role::ALL {
        let response = site
            .post(
                role,
                &format!("/deployments/{guarded}/promote"),
                &[("version", "1")],
            )
            .await;
        let back = location(&response);
        assert!(
            refused(&response) || back.contains("notice="),
            "{role:?}: {back}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn try_it_admits_every_role_and_keeps_each_answer_for_its_sender() {
    let Access { site, model, .. } = access().await;
    // Try it: any signed-in role, from Slipway's own pages. The answer (here,
    // why there was none) is kept for its sender alone.
    let try_it = format!("/deployments/{model}/try");
    let mut allowed = Vec::new();
    for caller in everyone() {
        let response = site
            .send(caller, Method::POST, &try_it, "input=not+json")
            .await;
        if refused(&response) {
            continue;
        }
        let Caller::Signed(role) = caller else {
            panic!("Try it let {caller:?} through");
        };
        let back = location(&response);
        let id = back
            .strip_prefix(&format!("/deployments/{model}?answer="))
            .unwrap_or_else(|| panic!("{back}"));
        let answer = site.store.try_answer(role.as_str(), id).await.unwrap();
        let answer = answer.expect("kept for its sender");
        assert_eq!(answer.input, "not json");
        let why = answer.outcome.expect_err("not JSON");
        assert!(why.starts_with("The request body is not JSON"), "{why}");
        let other = if role == Role::Admin {
            Role::Viewer
        } else {
            Role::Admin
        };
        assert_eq!(
            site.store.try_answer(other.as_str(), id).await.unwrap(),
            None
        );
        allowed.push(caller);
    }
    assert_eq!(allowed, Role::ALL.map(Caller::Signed), "who may use Try it");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_needs_slipways_own_pages_and_probes_need_no_session() {
    let Access { site, .. } = access().await;
    // Signing in and out: anyone on Slipway's own pages, nobody from another site.
    for caller in CROSS_SITE {
        for path in ["/login", "/logout"] {
            let response = site
                .send(caller, Method::POST, path, "name=admin&password=x")
                .await;
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{path} as {caller:?}"
            );
        }
    }

    // Probes, metrics and the webhook need no session and are never redirected.
    for caller in everyone() {
        for path in ["/healthz", "/metrics"] {
            let response = site.send(caller, Method::GET, path, "").await;
            assert_eq!(response.status(), StatusCode::OK, "{path} as {caller:?}");
        }
        let response = site
            .send(
                caller,
                Method::POST,
                "/webhooks/mlflow",
                &json!({}).to_string(),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "webhooks are not configured here"
        );
    }
}

/// An admin scoped to some models serves them only where the catalog's
/// `serving_scope` says: its namespaces, secrets and object names; an
/// unscoped admin names any, and local serving needs no entry.
#[tokio::test(flavor = "multi_thread")]
async fn a_scoped_admin_names_only_the_namespaces_secrets_and_objects_its_scope_allows() {
    let data = tempfile::tempdir().unwrap();
    let catalog = data.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[[serving_scope]]\nmodels = [\"fraud-*\"]\nnamespaces = [\"fraud\"]\n\
         secrets = [\"fraud-*\"]\n",
    )
    .unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.catalog = Some(catalog);
    let state = server::build_state(&config).await.unwrap();
    let deployments = &state.services.deployments;
    let person = |scope: &[&str]| app::access::User {
        name: "fraud-lead".into(),
        authenticated: true,
        grants: vec![app::access::Grant {
            role: Role::Admin,
            scope: scope.iter().map(|pattern| pattern.to_string()).collect(),
        }],
        token: None,
    };
    let settings =
        |model: &str, namespace: &str, secret: &str, name: &str| app::model::DeploymentSettings {
            model: model.into(),
            target: "seldon".into(),
            namespace: namespace.into(),
            storage_secret: secret.into(),
            name: name.into(),
            ..app::model::DeploymentSettings::new_deployment()
        };
    let problems = |outcome: server::error::Result<Saved>| match outcome {
        Err(server::error::Error::Invalid(invalid)) => invalid.problems.join("\n"),
        other => panic!("{other:?}"),
    };
    let scoped = person(&["fraud-*"]);
    let sent = problems(
        deployments
            .create(
                &scoped,
                &settings("fraud-model", "payments", "payments-bucket", "payments-api"),
            )
            .await,
    );
    for refused in [
        "namespace \"payments\" is not one your scope may serve in (fraud)",
        "storage_secret \"payments-bucket\" is not one your scope may use",
        "object name \"payments-api\" is not one your scope may use (fraud-*)",
    ] {
        assert!(sent.contains(refused), "{refused:?} missing from:\n{sent}");
    }
    // Within its scope only the cluster's absence is in the way here.
    let allowed = problems(
        deployments
            .create(
                &scoped,
                &settings("fraud-model", "fraud", "fraud-bucket", ""),
            )
            .await,
    );
    assert!(!allowed.contains("scope"), "{allowed}");
    assert!(
        allowed.contains("needs Slipway to run with a cluster"),
        "{allowed}"
    );
    // A model no serving_scope covers: no cluster at all for this admin.
    let uncovered = problems(
        deployments
            .create(
                &person(&["risk-*"]),
                &settings("risk-model", "fraud", "", ""),
            )
            .await,
    );
    assert!(
        uncovered.contains("no serving_scope in the catalog covers risk-model"),
        "{uncovered}"
    );
    // An unscoped admin is not held to any entry.
    let unscoped = problems(
        deployments
            .create(
                &person(&[]),
                &settings("fraud-model", "payments", "payments-bucket", "payments-api"),
            )
            .await,
    );
    assert!(!unscoped.contains("scope"), "{unscoped}");
    // Local serving is within every scope.
    let local = app::model::DeploymentSettings {
        model: "fraud-local".into(),
        ..app::model::DeploymentSettings::new_deployment()
    };
    deployments.create(&scoped, &local).await.unwrap();
}

/// Four eyes hold for settings. Where a deployment needs an approver, its
/// marker may change only to one that marks the same version, so an admin
/// alone cannot ship another version by switching stage for alias (or one
/// alias for another), even while turning approval off in the same form.
/// Turning approval off, making a deployment requiring approval whose
/// marker already marks a version (a trainer may have set it), and making
/// again without approval a deployment that had it, are each held for a
/// second person, and saved as asked once approved, unless they went stale.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_alone_cannot_switch_markers_turn_approval_off_or_serve_a_preset_marker() {
    let mlflow = MlflowRest::new(&mlflow_url());
    let model = unique("four-eyes-marker");
    mlflow.create_registered_model(&model).await;
    let experiment = mlflow.create_experiment(&unique("marker"), &[]).await;
    for name in ["v1", "v2"] {
        let run = mlflow.create_run(&experiment, name, &[], &[], &[]).await;
        mlflow.register_version(&model, &experiment, &run).await;
    }
    mlflow.transition_stage(&model, "1", "Production").await;
    mlflow.set_alias(&model, "challenger", "2").await;
    mlflow.set_alias(&model, "same", "1").await;

    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.reconcile_poll_secs = 3600;
    let state = server::build_state(&config).await.unwrap();
    let deployments = &state.services.deployments;
    let promotions = &state.services.promotions;
    let rollouts = &*state.services.rollouts;
    let person = |name: &str, role: Role| app::access::User {
        name: name.into(),
        authenticated: true,
        grants: vec![app::access::Grant::global(role)],
        token: None,
    };
    let admin = person("solo-admin", Role::Admin);
    let approver = person("second", Role::Approver);
    // The deployment of `model` as stored now.
    let stored = || async { state.store.binding(&model).await.unwrap().unwrap() };
    let requested = |saved: server::error::Result<Saved>| match saved {
        Ok(Saved::Requested(id)) => id,
        other => panic!("held for a second person, not {other:?}"),
    };

    // A new deployment requiring approval whose stage Production already
    // marks v1: nothing is saved until someone else approves.
    let guarded = app::model::DeploymentSettings {
        model: model.clone(),
        requires_approval: true,
        ..app::model::DeploymentSettings::new_deployment()
    };
    let id = requested(deployments.create(&admin, &guarded).await);
    assert!(state.store.binding(&model).await.unwrap().is_none());
    let request = promotions.request(&id).await.unwrap();
    assert_eq!(request.version, "1", "the version it would serve");
    assert_eq!(request.evidence.as_ref().unwrap().candidate.version, "1");
    assert!(
        request
            .reason
            .contains("stage Production already marks v1, which would start serving"),
        "{}",
        request.reason
    );
    let own = promotions
        .approve(&admin, &id, "", rollouts)
        .await
        .unwrap_err();
    assert!(matches!(own, server::error::Error::Forbidden(_)), "{own:?}");
    promotions
        .approve(&approver, &id, "looked", rollouts)
        .await
        .unwrap();
    let saved = stored().await;
    assert!(saved.binding.requires_approval);
    assert_eq!(saved.changed_by, "solo-admin (approved by second)");
    assert_eq!(
        promotions.request(&id).await.unwrap().state,
        app::model::RequestState::Approved
    );

    let revision = || async { stored().await.revision.to_string() };
    let to_alias = |alias: &str, approval: bool, revision: String| app::model::DeploymentSettings {
        production: "alias".into(),
        alias: alias.into(),
        requires_approval: approval,
        revision,
        ..guarded.clone()
    };
    for approval in [true, false] {
        let refused = deployments
            .update(
                &admin,
                &model,
                &to_alias("challenger", approval, revision().await),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("stage Production marks v1, alias @challenger marks v2"),
            "{refused}"
        );
    }
    // To a marker of the same version: nothing else starts serving.
    assert_eq!(
        deployments
            .update(&admin, &model, &to_alias("same", true, revision().await))
            .await
            .unwrap(),
        Saved::Now
    );
    assert_eq!(stored().await.binding.alias, "same");

    // Turning approval off is held; a change made meanwhile makes it stale.
    let id = requested(
        deployments
            .update(&admin, &model, &to_alias("same", false, revision().await))
            .await,
    );
    assert!(stored().await.binding.requires_approval);
    let replicas = app::model::DeploymentSettings {
        replicas: "2".into(),
        ..to_alias("same", true, revision().await)
    };
    assert_eq!(
        deployments.update(&admin, &model, &replicas).await.unwrap(),
        Saved::Now
    );
    let stale = promotions
        .approve(&approver, &id, "", rollouts)
        .await
        .unwrap_err()
        .to_string();
    assert!(stale.contains("stale"), "{stale}");
    assert_eq!(
        promotions.request(&id).await.unwrap().state,
        app::model::RequestState::Stale
    );
    assert!(stored().await.binding.requires_approval);
    // Asked again and approved: off.
    let off = app::model::DeploymentSettings {
        replicas: "2".into(),
        ..to_alias("same", false, revision().await)
    };
    let id = requested(deployments.update(&admin, &model, &off).await);
    promotions
        .approve(&approver, &id, "ok", rollouts)
        .await
        .unwrap();
    assert!(!stored().await.binding.requires_approval);

    // Deleted while it required approval, it cannot come back without.
    let held = unique("four-eyes-again");
    mlflow.create_registered_model(&held).await;
    let run = mlflow.create_run(&experiment, "v1", &[], &[], &[]).await;
    mlflow.register_version(&held, &experiment, &run).await;
    let with_approval = app::model::DeploymentSettings {
        model: held.clone(),
        requires_approval: true,
        ..app::model::DeploymentSettings::new_deployment()
    };
    // Nothing in Production: nothing would start serving, nothing to ask.
    assert_eq!(
        deployments.create(&admin, &with_approval).await.unwrap(),
        Saved::Now
    );
    let revision = state.store.binding(&held).await.unwrap().unwrap().revision;
    deployments
        .delete(&admin, &held, &held, &revision.to_string())
        .await
        .unwrap();
    let without = app::model::DeploymentSettings {
        requires_approval: false,
        ..with_approval.clone()
    };
    let id = requested(deployments.create(&admin, &without).await);
    let request = promotions.request(&id).await.unwrap();
    assert!(request.evidence.is_none(), "no version would serve");
    assert!(
        request
            .reason
            .contains("turning it off needs a second person"),
        "{}",
        request.reason
    );
    assert!(state.store.binding(&held).await.unwrap().is_none());

    // Without an approver to begin with, the admin's change is the admin's.
    let free = unique("no-approval");
    mlflow.create_registered_model(&free).await;
    let run = mlflow.create_run(&experiment, "v1", &[], &[], &[]).await;
    mlflow.register_version(&free, &experiment, &run).await;
    mlflow.set_alias(&free, "challenger", "1").await;
    let open = app::model::DeploymentSettings {
        model: free.clone(),
        ..app::model::DeploymentSettings::new_deployment()
    };
    assert_eq!(deployments.create(&admin, &open).await.unwrap(), Saved::Now);
    let revision = state.store.binding(&free).await.unwrap().unwrap().revision;
    let switched = deployments
        .update(
            &admin,
            &free,
            &app::model::DeploymentSettings {
                production: "alias".into(),
                alias: "challenger".into(),
                revision: revision.to_string(),
                ..open.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(switched, Saved::Now);
}
