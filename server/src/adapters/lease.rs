//! Who leads: one replica runs the background work (the reconciler, the
//! training watchers, settling what a dead replica left, the webhook's
//! registration); every replica serves pages. In a cluster the leader holds
//! a `coordination.k8s.io/v1` Lease; without one the single process leads.
//!
//! The election is client-go's protocol, written here on kube's `Api`
//! rather than taken from a crate: every write is a `replace` carrying the
//! `resourceVersion` read, so two replicas racing for the Lease cannot both
//! win (the API server refuses the second with 409), and expiry is judged by
//! how long this replica has seen the record unchanged, never by comparing
//! clocks across machines. RBAC: leases get, create, update.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Whether this replica leads, as it changes; and its name.
#[derive(Clone)]
pub struct Leadership {
    identity: String,
    leading: watch::Receiver<bool>,
    /// Set on shutdown: the elector releases the Lease and stops.
    stop: watch::Sender<bool>,
    released: watch::Receiver<bool>,
    /// Solo: the senders, kept so the channels stay open.
    solo: Option<std::sync::Arc<(watch::Sender<bool>, watch::Sender<bool>)>>,
}

impl Leadership {
    /// The one process there is leads, always (the embedded default).
    pub fn solo(identity: &str) -> Self {
        let (leads, leading) = watch::channel(true);
        let (stop, _) = watch::channel(false);
        let (done, released) = watch::channel(true);
        Self {
            identity: identity.into(),
            leading,
            stop,
            released,
            solo: Some(std::sync::Arc::new((leads, done))),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Chosen among replicas (others may be running), not the only one.
    pub fn elected(&self) -> bool {
        self.solo.is_none()
    }

    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Stops leading and hands the Lease back, so another replica takes
    /// over at once rather than after the Lease runs out.
    pub async fn release(&self) {
        self.stop.send_replace(true);
        let mut released = self.released.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            released.wait_for(|released| *released),
        )
        .await;
    }
}

pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// The pod's name in a cluster.
    pub identity: String,
    /// How long a Lease not renewed stays its holder's.
    pub duration: Duration,
}

/// Campaigns for the Lease in the background for as long as Slipway runs.
pub fn elect(client: kube::Client, settings: LeaseSettings) -> Leadership {
    let (leading_tx, leading) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let (released_tx, released) = watch::channel(false);
    let identity = settings.identity.clone();
    let elector = Elector {
        api: Api::namespaced(client, &settings.namespace),
        settings,
        observed: None,
        last_renewed: None,
        leading: leading_tx,
    };
    tokio::spawn(async move {
        elector.campaign(stop_rx).await;
        released_tx.send_replace(true);
    });
    Leadership {
        identity,
        leading,
        stop,
        released,
        solo: None,
    }
}

/// What identifies one state of the Lease: a renewal changes it.
#[derive(PartialEq)]
struct Record {
    holder: Option<String>,
    renewed: Option<MicroTime>,
}

struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The Lease as last read, and when this replica first saw it so.
    observed: Option<(Record, Instant)>,
    last_renewed: Option<Instant>,
    leading: watch::Sender<bool>,
}

impl Elector {
    /// Tries every fifth of the Lease's duration (2 s for 10 s): a holder
    /// renews well before it runs out, and a waiting replica notices a
    /// dead one within that much of the expiry.
    fn retry_every(&self) -> Duration {
        self.settings.duration / 5
    }

    /// A leader that could not renew for this long stops leading: before
    /// the others may take the Lease (client-go's renew deadline, 2/3).
    fn renew_deadline(&self) -> Duration {
        self.settings.duration * 2 / 3
    }

    async fn campaign(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let leads = match self.acquire_or_renew().await {
                Ok(holds) => holds,
                Err(err) => {
                    let still_in_time = self
                        .last_renewed
                        .is_some_and(|renewed| renewed.elapsed() < self.renew_deadline());
                    tracing::warn!(error = %err, lease = %self.settings.name, "reading or renewing the leader Lease");
                    *self.leading.borrow() && still_in_time
                }
            };
            if leads {
                self.last_renewed = Some(Instant::now());
            }
            self.set_leading(leads);
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                () = tokio::time::sleep(self.retry_every()) => {}
            }
        }
        let was_leading = *self.leading.borrow();
        self.set_leading(false);
        if was_leading && let Err(err) = self.release().await {
            tracing::warn!(error = %err, "handing the leader Lease back");
        }
    }

    fn set_leading(&self, leads: bool) {
        let changed = self.leading.send_if_modified(|leading| {
            let changed = *leading != leads;
            *leading = leads;
            changed
        });
        if changed {
            if leads {
                tracing::info!(replica = %self.settings.identity, lease = %self.settings.name, "this replica leads");
            } else {
                tracing::warn!(replica = %self.settings.identity, lease = %self.settings.name, "this replica no longer leads");
            }
        }
    }

    /// `true`: this replica holds the Lease now.
    async fn acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let name = &self.settings.name;
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(lease) = self.api.get_opt(name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some([("app.kubernetes.io/name".into(), "slipway".into())].into()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(now, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(err) => Err(err),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec
            .holder_identity
            .clone()
            .filter(|holder| !holder.is_empty());
        let record = Record {
            holder: holder.clone(),
            renewed: spec.renew_time.clone(),
        };
        let seen_since = match &self.observed {
            Some((seen, since)) if *seen == record => *since,
            _ => Instant::now(),
        };
        self.observed = Some((record, seen_since));
        let mine = holder.as_deref() == Some(self.settings.identity.as_str());
        if !mine && holder.is_some() {
            let term = spec
                .lease_duration_seconds
                .map_or(self.settings.duration, |secs| {
                    Duration::from_secs(secs.max(1) as u64)
                });
            if seen_since.elapsed() < term {
                return Ok(false);
            }
            tracing::info!(previous = ?holder, "the leader Lease ran out; taking it");
        }
        let spec = if mine {
            LeaseSpec {
                renew_time: Some(now),
                lease_duration_seconds: Some(self.settings.duration.as_secs() as i32),
                ..spec
            }
        } else {
            self.held_spec(now, Some(spec.lease_transitions.unwrap_or(0) + 1))
        };
        let lease = Lease {
            metadata: lease.metadata,
            spec: Some(spec),
        };
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            // Someone else wrote it since our read: theirs, for now.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn held_spec(&self, now: MicroTime, transitions: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.duration.as_secs() as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: transitions.or(Some(0)),
            ..LeaseSpec::default()
        }
    }

    /// Empties the holder, so the next replica need not wait it out.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        let lease = Lease {
            metadata: lease.metadata,
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
                ..spec
            }),
        };
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
            .map(drop)
    }
}
