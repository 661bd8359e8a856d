//! Background work, and which replica does it: the leader reconciles,
//! follows trainings, settles what a stopped replica left, registers the
//! webhook and sweeps; the others show what the leader saw; where there
//! are several, every one says it is alive. A duty starts when its replica takes the lead and is
//! dropped, mid-step if need be, the moment it loses it: what a duty does
//! is level-triggered or recorded before it is done, so the next leader
//! finishes it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::lease::Leadership;
use crate::services::launches::Launches;
use crate::services::load_tests::LoadTests;
use crate::services::promotions::Promotions;
use crate::store::{self, Store};

/// How often a replica that does not lead reads what the leader saw.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// How often every replica says it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// A replica not heard from for this long is gone: what it was doing may
/// be settled. Well above the heartbeat, so a slow database is not death.
const GONE_AFTER: Duration = Duration::from_secs(15);

/// How often the leader looks for what a stopped replica left.
const SETTLE_EVERY: Duration = Duration::from_secs(10);

/// Runs `duty` whenever this replica leads, from the moment it takes the
/// lead; drops it the moment it stops leading. A duty that ends by itself
/// (a one-time registration) runs again at the next term.
pub fn while_leading<F, Fut>(leadership: &Leadership, duty: &'static str, start: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_in_terms(leadership, duty, true, start);
}

/// Runs `duty` whenever this replica does not lead.
pub fn while_following<F, Fut>(leadership: &Leadership, duty: &'static str, start: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_in_terms(leadership, duty, false, start);
}

fn run_in_terms<F, Fut>(leadership: &Leadership, duty: &'static str, leading: bool, start: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut changes = leadership.subscribe();
    tokio::spawn(async move {
        loop {
            // Closed: Slipway is stopping, and the duty with it.
            if changes.wait_for(|now| *now == leading).await.is_err() {
                return;
            }
            tracing::debug!(duty, leading, "starting");
            let finished = tokio::select! {
                () = start() => true,
                _ = changes.wait_for(|now| *now != leading) => false,
            };
            if !finished {
                tracing::debug!(duty, leading, "stopped: the lead changed");
            } else if changes.wait_for(|now| *now != leading).await.is_err() {
                return;
            }
        }
    });
}

/// Every replica of several: its row in `replicas`, renewed every few
/// seconds.
pub fn heartbeat(store: Store) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            every.tick().await;
            if let Err(err) = store.heartbeat().await {
                tracing::warn!(error = %err, "saying this replica is alive");
            }
        }
    });
}

/// The leader's, every few seconds: changes of Production a crash left
/// half done (once the model's lock is free, so never one under way), and
/// launches whose start was under way and load tests running in a replica
/// that is gone — every replica but this one when `elected` is false (the
/// only process there is).
pub async fn settle_interrupted(
    promotions: Arc<Promotions>,
    launches: Arc<Launches>,
    load_tests: Arc<LoadTests>,
    elected: bool,
) {
    let mut every = tokio::time::interval(SETTLE_EVERY);
    loop {
        every.tick().await;
        // Promotions need MLflow, which may not be up: the next round
        // tries again.
        if let Err(err) = promotions.settle_interrupted().await {
            tracing::warn!(error = %err, "settling interrupted promotions");
        }
        let alive_since = if elected {
            store::now_ms() - GONE_AFTER.as_millis() as i64
        } else {
            i64::MAX
        };
        if let Err(err) = launches.settle_interrupted(alive_since).await {
            tracing::warn!(error = %err, "settling launches a stopped replica was starting");
        }
        if let Err(err) = load_tests.settle_interrupted(alive_since).await {
            tracing::warn!(error = %err, "settling load tests a stopped replica was running");
        }
    }
}
