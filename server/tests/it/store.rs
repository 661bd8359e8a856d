//! The store on both databases it supports.

use crate::support;

use crate::support::{postgres_url, unique};
use server::store::Store;
use server::store::bindings::Edit;

async fn records_and_lists_events_newest_first(url: &str) {
    // Connecting runs the migrations; a second connect must find them done.
    Store::connect(url).await.unwrap();
    let store = Store::connect(url).await.unwrap();
    store.ping().await.unwrap();

    let subject = unique("model");
    let mut recorded = Vec::new();
    for action in ["promote", "rollback", "promote"] {
        recorded.push(
            store
                .record_event("alice", action, &subject, "{\"version\":\"2\"}")
                .await
                .unwrap(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    store
        .record_event("bob", "launch", &unique("other"), "")
        .await
        .unwrap();

    let listed = store.recent_events(Some(&subject), 10).await.unwrap();
    recorded.reverse();
    assert_eq!(listed, recorded);

    let newest_two = store.recent_events(Some(&subject), 2).await.unwrap();
    assert_eq!(newest_two, recorded[..2]);

    let everything = store.recent_events(None, 1000).await.unwrap();
    assert!(everything.len() >= 4);
    assert!(
        everything
            .windows(2)
            .all(|pair| pair[0].at_ms >= pair[1].at_ms)
    );
}

/// Deployment events a stopped Slipway left pending are ended as
/// `interrupted`; one younger than the cut-off (another replica's change
/// under way) is left alone.
async fn ends_deployment_events_a_stop_left_pending(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let model = unique("model");
    let left = store
        .begin_deployment(&model, Some("2"), Some("1"), "promote", "alice")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cut_off = server::store::now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let under_way = store
        .begin_deployment(&model, Some("3"), Some("2"), "promote", "bob")
        .await
        .unwrap();
    assert!(store.settle_stale_deployments(cut_off).await.unwrap() >= 1);
    let history = store.deployment_history(&model, 10).await.unwrap();
    let outcome = |id: &str| {
        history
            .iter()
            .find(|event| event.id == id)
            .map(|event| event.outcome)
            .unwrap()
    };
    assert_eq!(outcome(&left), "interrupted");
    assert_eq!(outcome(&under_way), "pending");
}

/// A settings change and its history row are one write: a pass that sees
/// the change finds who made it on top of the history; a refused change
/// leaves no row. Events begun within one millisecond keep their order.
async fn settings_changes_carry_their_author_into_the_history(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let model = unique("bound");
    let binding: server::catalog::DeploymentBinding =
        toml::from_str(&format!("model = \"{model}\"\ntarget = \"local\"")).unwrap();
    let edit = |by, detail| Edit { by, detail };
    let newest = |history: &[app::model::DeploymentEvent]| {
        let event = &history[0];
        (
            event.cause.clone(),
            event.actor.clone(),
            event.message.clone(),
        )
    };

    assert!(
        store
            .insert_binding(&binding, edit("ann", "created"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_binding(&binding, edit("bob", "again"))
            .await
            .unwrap()
    );
    let history = store.deployment_history(&model, 10).await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(
        newest(&history),
        ("settings".into(), "ann".into(), "created".into())
    );
    assert_eq!(history[0].outcome, "changed");
    assert_eq!(
        store
            .settings_changed_last_by(&model)
            .await
            .unwrap()
            .as_deref(),
        Some("ann")
    );

    // Once something else happened, a pass has no settings change to credit.
    let promoted = store
        .begin_deployment(&model, Some("1"), None, "promote", "carl")
        .await
        .unwrap();
    assert_eq!(store.settings_changed_last_by(&model).await.unwrap(), None);

    // Stale: refused and unrecorded; fresh: recorded with its author.
    assert!(
        !store
            .delete_binding(&model, 7, edit("bob", "deleted"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.deployment_history(&model, 10).await.unwrap()[0].id,
        promoted
    );
    assert!(
        store
            .delete_binding(&model, 1, edit("bob", "deleted"))
            .await
            .unwrap()
    );
    let history = store.deployment_history(&model, 10).await.unwrap();
    assert_eq!(
        newest(&history),
        ("settings".into(), "bob".into(), "deleted".into())
    );
    assert_eq!(
        store
            .settings_changed_last_by(&model)
            .await
            .unwrap()
            .as_deref(),
        Some("bob")
    );
    assert!(store.binding(&model).await.unwrap().is_none());

    // Begun together, they share a millisecond: the history still lists
    // them newest first (each takes its id and time when first polled, in
    // order).
    let burst = unique("burst");
    let versions: Vec<String> = (0..40).map(|version| version.to_string()).collect();
    let mut begun = futures::future::try_join_all(
        versions
            .iter()
            .map(|version| store.begin_deployment(&burst, Some(version), None, "poll", "slipway")),
    )
    .await
    .unwrap();
    begun.reverse();
    let listed: Vec<String> = store
        .deployment_history(&burst, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(listed, begun);
}

/// Two replicas on one database: what one was starting is left alone while
/// it is heard from, and settled once it is not; what the leader saw is
/// read back as it wrote it.
async fn replicas_and_what_they_left(url: &str) {
    let leader = Store::connect(url).await.unwrap();
    let other = Store::connect(url).await.unwrap();
    assert_ne!(leader.instance(), other.instance());
    let backend = unique("backend");
    let (started, _) = other
        .insert_launch(&server::store::launches::NewLaunch {
            submission: unique("form"),
            project: "p".into(),
            entry_point: "main".into(),
            params: Default::default(),
            profile: "cpu".into(),
            backend: backend.clone(),
            run_name: String::new(),
            env_manager: "local".into(),
            launched_by: "alice".into(),
            git_commit: None,
        })
        .await
        .unwrap();
    other.heartbeat().await.unwrap();
    let alive_since = server::store::now_ms() - 15_000;
    let left = leader
        .launches_left_starting(&backend, alive_since)
        .await
        .unwrap();
    assert!(left.is_empty(), "its replica is alive: {left:?}");
    // Its own starts are never another's leftovers.
    let own = other
        .launches_left_starting(&backend, i64::MAX)
        .await
        .unwrap();
    assert!(own.is_empty(), "{own:?}");
    // Not heard from since: gone.
    let left = leader
        .launches_left_starting(&backend, server::store::now_ms() + 1)
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|launch| &launch.id).collect::<Vec<_>>(),
        [&started.id]
    );
    assert_eq!(
        leader
            .forget_replicas(server::store::now_ms() + 1)
            .await
            .unwrap(),
        1
    );

    let view = app::model::DeploymentView {
        model: unique("model"),
        target: "seldon".into(),
        namespace: Some("models".into()),
        marker: "stage Production".into(),
        desired_version: Some("3".into()),
        serving_version: Some("2".into()),
        state: app::model::ServingState::Creating,
        message: "v3 applied; waiting".into(),
        address: None,
        last_change_ms: None,
        reconciled_by: String::new(),
        traffic: None,
        canary_status: Some("its Experiment fraud-canary is ready".into()),
    };
    leader
        .publish_views(std::slice::from_ref(&view), "replica-a")
        .await
        .unwrap();
    let published = other.published_views().await.unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].view, view);
    assert_eq!(published[0].replica, "replica-a");
    // The next publication replaces it all: an unbound model's view goes.
    leader.publish_views(&[], "replica-a").await.unwrap();
    assert!(other.published_views().await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("nested/dir/slipway.db").display()
    );
    records_and_lists_events_newest_first(&url).await;
    ends_deployment_events_a_stop_left_pending(&url).await;
    settings_changes_carry_their_author_into_the_history(&url).await;
    replicas_and_what_they_left(&url).await;
}

#[tokio::test]
async fn postgres() {
    records_and_lists_events_newest_first(&postgres_url()).await;
    ends_deployment_events_a_stop_left_pending(&postgres_url()).await;
    settings_changes_carry_their_author_into_the_history(&postgres_url()).await;
    // A database of its own: views are published for the whole database.
    replicas_and_what_they_left(&support::fresh_postgres_database().await).await;
}

#[tokio::test]
async fn a_database_that_is_down_is_reported() {
    let url = format!(
        "postgres://slipway@127.0.0.1:{}/postgres",
        support::free_port()
    );
    let err = Store::connect(&url)
        .await
        .err()
        .expect("no database listens there");
    assert!(err.to_string().starts_with("database: "), "{err}");
}
