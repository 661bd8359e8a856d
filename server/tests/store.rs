//! The store on both databases it supports.

mod support;

use server::store::Store;
use support::{postgres_url, unique};

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

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("nested/dir/slipway.db").display()
    );
    records_and_lists_events_newest_first(&url).await;
}

#[tokio::test]
async fn postgres() {
    records_and_lists_events_newest_first(&postgres_url()).await;
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
