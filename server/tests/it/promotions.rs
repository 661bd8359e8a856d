//! Changes of Production as durable, serialised state, against a real
//! MLflow, SQLite and PostgreSQL: many concurrent promotions leave exactly
//! one Production version per model (also across two replicas), a change
//! that expected another Production version is refused, and a crash in the
//! middle of a change is settled on the next start.
//!
//! The bindings target Seldon with no cluster configured, so the reconciler
//! starts nothing: what is checked here is MLflow and the database.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{MlflowRest, mlflow_url, postgres_url, unique, user};
use app::access::Role;
use server::error::Error;
use server::services::promotions::{Expected, Promoted, Promotions};
use server::store::Store;
use server::store::promotions::{NewPromotion, PromotionRecord, PromotionState};

const VERSIONS: usize = 5;
const CLICKS: usize = 50;

/// A registered model with `VERSIONS` versions, none in Production.
async fn model_with_versions(rest: &MlflowRest) -> String {
    let model = unique("promoted");
    let experiment = rest.create_experiment(&unique("promoted"), &[]).await;
    rest.create_registered_model(&model).await;
    for _ in 0..VERSIONS {
        let run = rest
            .create_run(&experiment, "candidate", &[], &[], &[])
            .await;
        rest.register_version(&model, &experiment, &run).await;
    }
    model
}

async fn replica(store: &Store, data: &Path, models: &[String]) -> Arc<Promotions> {
    let catalog: String = models
        .iter()
        .map(|model| {
            format!(
                "[[deployment]]\nmodel = {model:?}\ntarget = \"seldon\"\nnamespace = \"models\"\n"
            )
        })
        .collect();
    support::serving(store, data, &catalog, Duration::from_secs(3600))
        .await
        .promotions
}

/// Versions in stage Production, as MLflow lists them.
async fn production_versions(rest: &MlflowRest, model: &str) -> Vec<String> {
    let filter = format!("name = '{model}'");
    let (status, found) = rest
        .get("model-versions/search", &[("filter", filter.as_str())])
        .await;
    assert_eq!(status, 200, "{found}");
    let mut versions: Vec<String> = found["model_versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|version| version["current_stage"] == "Production")
        .map(|version| version["version"].as_str().unwrap().to_string())
        .collect();
    versions.sort();
    versions
}

/// Two fresh models, bound on one replica per store; `CLICKS` promotions
/// at once, spread over the models and the replicas. Then each model has
/// exactly one Production version, the last change's, and each change found
/// the one before it in Production.
async fn concurrent_clicks_leave_one_production_version(stores: &[Store], data: &Path) {
    let rest = MlflowRest::new(&mlflow_url());
    let models = [
        model_with_versions(&rest).await,
        model_with_versions(&rest).await,
    ];
    let mut replicas = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        replicas.push(replica(store, &data.join(index.to_string()), &models).await);
    }
    // Every model gets clicks through every replica.
    let plan: Vec<(usize, usize, String)> = (0..CLICKS)
        .map(|click| {
            let replica = click % replicas.len();
            let model = (click / replicas.len()) % models.len();
            (replica, model, (1 + (click * 7) % VERSIONS).to_string())
        })
        .collect();
    let clicks: Vec<_> = plan
        .iter()
        .map(|(replica, model, version)| {
            let promotions = replicas[*replica].clone();
            let (model, version) = (models[*model].clone(), version.clone());
            tokio::spawn(async move {
                promotions
                    .promote(
                        &user("deployer", Role::Deployer),
                        &model,
                        &version,
                        "",
                        Expected::Any,
                    )
                    .await
            })
        })
        .collect();
    for click in clicks {
        click.await.unwrap().unwrap();
    }

    for (index, model) in models.iter().enumerate() {
        let changes = stores[0].promotions(model, 100).await.unwrap();
        let clicked = plan.iter().filter(|(_, model, _)| *model == index).count();
        assert_eq!(changes.len(), clicked, "{changes:?}");
        assert!(
            changes.iter().all(|change| change.state == "marked"),
            "{changes:?}"
        );
        assert_eq!(
            production_versions(&rest, model).await,
            vec![changes[0].version.clone()],
            "one Production version, the last change's"
        );
        for pair in changes.windows(2) {
            let (later, earlier) = (&pair[0], &pair[1]);
            assert_eq!(
                later.previous_version.as_ref(),
                Some(&earlier.version),
                "{changes:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_promotions_on_one_replica_leave_one_production_version() {
    let data = tempfile::tempdir().unwrap();
    let store = sqlite(data.path()).await;
    concurrent_clicks_leave_one_production_version(&[store], data.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_promotions_on_two_replicas_take_turns_through_postgres() {
    let data = tempfile::tempdir().unwrap();
    let first = Store::connect(&postgres_url()).await.unwrap();
    let second = Store::connect(&postgres_url()).await.unwrap();
    concurrent_clicks_leave_one_production_version(&[first, second], data.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_that_expected_another_production_version_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let store = sqlite(data.path()).await;
    let rest = MlflowRest::new(&mlflow_url());
    let model = model_with_versions(&rest).await;
    let promotions = replica(&store, data.path(), std::slice::from_ref(&model)).await;
    promotions
        .promote(
            &user("deployer", Role::Deployer),
            &model,
            "1",
            "",
            Expected::Version(None),
        )
        .await
        .unwrap();

    // Two people looked at v1 in Production and chose differently.
    let seen = || Expected::Version(Some("1".into()));
    let (first, second) = (
        user("deployer", Role::Deployer),
        user("deployer", Role::Deployer),
    );
    let (to_two, to_three) = tokio::join!(
        promotions.promote(&first, &model, "2", "", seen()),
        promotions.promote(&second, &model, "3", "", seen()),
    );
    let (winner, refusal) = match (to_two, to_three) {
        (Ok(Promoted::Now), Err(refusal)) => ("2", refusal),
        (Err(refusal), Ok(Promoted::Now)) => ("3", refusal),
        other => panic!("exactly one may win: {other:?}"),
    };
    let Error::Conflict(why) = refusal else {
        panic!("a conflict, not {refusal:?}");
    };
    assert!(
        why.starts_with(&format!(
            "Production is v{winner} now, not v1 as when you looked"
        )),
        "{why}"
    );
    assert_eq!(
        production_versions(&rest, &model).await,
        vec![winner.to_string()]
    );
    let states: Vec<PromotionState> = store
        .promotions(&model, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|change| change.state)
        .collect();
    assert_eq!(states, ["refused", "marked", "marked"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_a_crash_left_half_done_are_settled_on_the_next_start() {
    let data = tempfile::tempdir().unwrap();
    let store = sqlite(data.path()).await;
    let rest = MlflowRest::new(&mlflow_url());
    let model = model_with_versions(&rest).await;
    rest.transition_stage(&model, "1", "Production").await;

    // Crashed after writing the change, before MLflow was asked.
    let never_asked = half_done(&store, &model, "2").await;
    // Crashed after MLflow made the change, before it was recorded.
    let asked = half_done(&store, &model, "3").await;
    rest.transition_stage(&model, "1", "Archived").await;
    rest.transition_stage(&model, "3", "Production").await;

    let promotions = replica(&store, data.path(), std::slice::from_ref(&model)).await;
    assert_eq!(promotions.settle_interrupted().await.unwrap(), 2);
    assert!(store.unfinished_promotions().await.unwrap().is_empty());
    let settled = |id: &str, changes: &[PromotionRecord]| {
        changes
            .iter()
            .find(|change| change.id == id)
            .map(|change| (change.state, change.message.clone()))
            .unwrap()
    };
    let changes = store.promotions(&model, 10).await.unwrap();
    let (state, message) = settled(&never_asked, &changes);
    assert_eq!(state, "interrupted");
    assert!(message.contains("nothing changed"), "{message}");
    assert_eq!(settled(&asked, &changes).0, "marked");
    // Each audit entry of the promotions has its outcome, not `pending`.
    let outcomes: Vec<String> = store
        .search_events("", "promote", &format!("model:{model}"), 0, i64::MAX, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.outcome)
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|outcome| outcome != "pending"),
        "{outcomes:?}"
    );
    // Settling twice finds nothing left.
    assert_eq!(promotions.settle_interrupted().await.unwrap(), 0);
}

/// What a crash between writing a change and completing it leaves.
async fn half_done(store: &Store, model: &str, version: &str) -> String {
    let audit = store
        .begin_event(
            "deployer",
            "promote",
            &format!("model:{model}"),
            &format!("→ v{version}"),
        )
        .await
        .unwrap();
    store
        .begin_promotion(&NewPromotion {
            model,
            cause: "promote",
            version,
            previous_version: Some("1"),
            expected_version: None,
            actor: "deployer",
            audit_id: Some(&audit),
        })
        .await
        .unwrap()
}

async fn sqlite(data: &Path) -> Store {
    Store::connect(&format!("sqlite://{}/s.db?mode=rwc", data.display()))
        .await
        .unwrap()
}
