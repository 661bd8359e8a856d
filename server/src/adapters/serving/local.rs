//! The local serving target (the embedded default): `mlflow models serve`
//! per bound model, on its own port, ready when `/ping` answers. A new
//! version replaces the old one without a gap: the new server starts, and
//! only once it is ready does it take over and the old one stop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::model::{DeploymentOutcome, ServingState};

use crate::adapters::process::{ChildEnv, Children, ServedModel};
use crate::catalog::{DeploymentBinding, NoProduction, ServingTarget as TargetKind};
use crate::error::Result;
use crate::serving::ServingStatus;
use crate::serving::target::{Ledger, Target, Trigger};

/// Seldon-like patience: installing nothing (`--env-manager local`), MLflow
/// still needs 10–20 s to load and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const PING_EVERY: Duration = Duration::from_millis(250);
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Checks of `/ping` in a row a serving model server may miss before it is
/// taken for dead (frozen, wedged) and started again.
const MISSED_PINGS: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalServer {
    pub version: String,
    pub port: u16,
    /// The server's process group.
    pub pgid: i32,
    /// The start that made it (see [`Start`]).
    pub generation: u64,
}

impl LocalServer {
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}/invocations", self.port)
    }
}

#[derive(Default)]
struct ModelServers {
    /// The one answering requests.
    current: Option<LocalServer>,
    /// The newest start asked for, to replace `current` once ready. One
    /// at a time: a newer start supersedes (and stops) an older one.
    starting: Option<Starting>,
    /// The newest start's number, so an older one never replaces a newer one.
    generation: u64,
    /// Why the last start failed, while nothing newer is starting.
    failure: Option<(String, String)>,
    /// Checks of `/ping` the current server has missed in a row.
    missed_pings: u32,
}

impl ModelServers {
    /// The process groups of the server serving and of one still starting.
    fn process_groups(&self) -> impl Iterator<Item = i32> + use<> {
        let current = self.current.as_ref().map(|server| server.pgid);
        let starting = self.starting.as_ref().and_then(|starting| starting.pgid);
        current.into_iter().chain(starting)
    }
}

struct Starting {
    generation: u64,
    version: String,
    /// The server's process group, once spawned.
    pgid: Option<i32>,
}

/// A start asked for with [`LocalServing::begin`], carried out by
/// [`LocalServing::deploy`].
#[derive(Debug)]
pub struct Start {
    model: String,
    version: String,
    generation: u64,
    /// The older start this one supersedes, to be stopped.
    superseded: Option<i32>,
}

/// Why a start did not end up serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotServing {
    /// A newer version was asked for before this one was ready; stopped.
    Superseded(String),
    Failed(String),
}

pub struct LocalServing {
    env: ChildEnv,
    log_dir: PathBuf,
    children: Children,
    models: Arc<Mutex<HashMap<String, ModelServers>>>,
    http: reqwest::Client,
    /// Set by `stop_all`: nothing starts any more, and a server that is
    /// still starting is stopped, so none outlives Slipway.
    stopping: AtomicBool,
    /// Numbers starts across models, so none is ever reused (an undeployed
    /// model's entry goes, and starts again from the default).
    starts: AtomicU64,
    /// Each model's split while a rollout runs; its second server is kept
    /// under [`canary_key`].
    splits: Mutex<HashMap<String, Split>>,
}

/// A rollout's share of a model's requests (percent), whether it only sees
/// copies (a shadow), and the requests routed since it was set: the split
/// is exact, not drawn at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub weight: u8,
    pub shadow: bool,
    routed: u64,
}

impl Split {
    pub fn new(weight: u8, shadow: bool) -> Self {
        Self {
            weight: weight.min(100),
            shadow,
            routed: 0,
        }
    }
}

/// Where the gateway sends a request: the server that answers (if any),
/// the stable side's status, and a server that gets a copy (a shadow's).
pub struct Routed {
    pub server: Option<LocalServer>,
    pub status: ServingStatus,
    pub mirror: Option<LocalServer>,
}

/// Where a model's canary server is kept among the servers: no model name
/// holds a NUL.
pub fn canary_key(model: &str) -> String {
    format!("{model}{CANARY_SUFFIX}")
}

const CANARY_SUFFIX: &str = "\u{0}canary";

fn is_canary_key(key: &str) -> bool {
    key.ends_with(CANARY_SUFFIX)
}

impl LocalServing {
    pub fn new(env: ChildEnv, log_dir: PathBuf, children: Children) -> std::io::Result<Self> {
        std::fs::create_dir_all(&log_dir)?;
        Ok(Self {
            env,
            log_dir,
            children,
            models: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("a plain HTTP client"),
            stopping: AtomicBool::new(false),
            starts: AtomicU64::new(0),
            splits: Mutex::default(),
        })
    }

    /// The rollout of `model` takes its split of the requests once its
    /// server serves; `None`: all go to the stable one.
    pub fn set_split(&self, model: &str, split: Option<Split>) {
        let mut splits = self.splits.lock().expect("splits");
        match split {
            Some(split)
                if splits
                    .get(model)
                    .is_none_or(|now| (now.weight, now.shadow) != (split.weight, split.shadow)) =>
            {
                splits.insert(model.to_string(), split);
            }
            Some(_) => {}
            None => {
                splits.remove(model);
            }
        }
    }

    /// Where a request to `model` goes: of every 100, exactly the
    /// rollout's weight (spread evenly) go to its server while it serves —
    /// a canary answers them, a shadow gets a copy while the stable one
    /// answers.
    pub fn route(&self, model: &str) -> Routed {
        let (stable, status) = self.status(model);
        let (Some(second), _) = self.status(&canary_key(model)) else {
            return Routed {
                server: stable,
                status,
                mirror: None,
            };
        };
        let (chosen, shadow) = {
            let mut splits = self.splits.lock().expect("splits");
            splits.get_mut(model).map_or((false, false), |split| {
                let n = split.routed % 100;
                split.routed += 1;
                let weight = u64::from(split.weight);
                // Request n is the rollout's where its running share steps
                // up: `weight` of every 100, evenly spread.
                ((n + 1) * weight / 100 > n * weight / 100, split.shadow)
            })
        };
        match (shadow, chosen) {
            (true, chosen) => Routed {
                server: stable,
                status,
                mirror: chosen.then_some(second),
            },
            (false, chosen) if chosen || stable.is_none() => Routed {
                server: Some(second),
                status,
                mirror: None,
            },
            (false, _) => Routed {
                server: stable,
                status,
                mirror: None,
            },
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// What serves this model now, and its status.
    pub fn status(&self, model: &str) -> (Option<LocalServer>, ServingStatus) {
        let models = self.models.lock().expect("serving map");
        let Some(servers) = models.get(model) else {
            return (None, not_deployed());
        };
        let current = servers.current.clone();
        let status = match (&servers.starting, &servers.failure, &current) {
            (Some(starting), _, _) => ServingStatus {
                state: ServingState::Creating,
                message: format!("starting version {}", starting.version),
                address: current.as_ref().map(LocalServer::address),
            },
            (None, Some((version, why)), _) => ServingStatus {
                state: ServingState::Failed,
                message: format!("version {version} did not start: {why}"),
                address: current.as_ref().map(LocalServer::address),
            },
            (None, None, Some(server)) if !crate::adapters::process::group_alive(server.pgid) => {
                ServingStatus {
                    state: ServingState::Failed,
                    message: format!(
                        "version {}'s server has exited; it is started again",
                        server.version
                    ),
                    address: None,
                }
            }
            (None, None, Some(server)) if servers.missed_pings > 0 => ServingStatus {
                state: ServingState::Failed,
                message: format!(
                    "version {} is not answering /ping; it is started again if it misses the next check",
                    server.version
                ),
                address: Some(server.address()),
            },
            (None, None, Some(server)) => ServingStatus {
                state: ServingState::Available,
                message: format!("version {} on port {}", server.version, server.port),
                address: Some(server.address()),
            },
            (None, None, None) => not_deployed(),
        };
        (current, status)
    }

    /// The version serving or starting, so a converge does not start twice,
    /// and whether the serving one had died: such a server is forgotten here
    /// (drift), so the converge starts it again.
    pub fn wanted_version(&self, model: &str) -> (Option<String>, bool) {
        let mut models = self.models.lock().expect("serving map");
        let Some(servers) = models.get_mut(model) else {
            return (None, false);
        };
        let died = servers.current.as_ref().is_some_and(|server| {
            !crate::adapters::process::group_alive(server.pgid)
                || servers.missed_pings >= MISSED_PINGS
        });
        if died {
            let gone = servers.current.take().expect("checked");
            servers.missed_pings = 0;
            // A frozen one is still there: it answers nothing, so no grace.
            crate::adapters::process::kill_group_now(gone.pgid);
            self.children.forget(gone.pgid);
            tracing::warn!(model, version = %gone.version, "the local model server died or stopped answering; starting it again");
        }
        let wanted = servers
            .starting
            .as_ref()
            .map(|starting| starting.version.clone())
            .or_else(|| {
                servers
                    .current
                    .as_ref()
                    .map(|server| server.version.clone())
            });
        (wanted, died)
    }

    /// Asks the serving server of `model` for `/ping` (2 s at most) and
    /// counts a miss; [`Self::wanted_version`] replaces a server that missed
    /// `MISSED_PINGS` checks in a row.
    pub async fn check_liveness(&self, model: &str) {
        let Some(server) = self.status(model).0 else {
            return;
        };
        let answered = self
            .http
            .get(format!("http://127.0.0.1:{}/ping", server.port))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        let mut models = self.models.lock().expect("serving map");
        let Some(servers) = models.get_mut(model) else {
            return;
        };
        // Counted only for the server that was asked.
        if servers.current.as_ref().map(|current| current.pgid) != Some(server.pgid) {
            return;
        }
        servers.missed_pings = if answered {
            0
        } else {
            servers.missed_pings + 1
        };
    }

    /// Records that `version` is starting, at once (so the next pass sees
    /// it), superseding any older start; [`Self::deploy`] then carries it out.
    pub fn begin(&self, model: &str, version: &str) -> Result<Start, NotServing> {
        let mut models = self.models.lock().expect("serving map");
        if self.is_stopping() {
            return Err(NotServing::Failed("Slipway is stopping".into()));
        }
        let servers = models.entry(model.to_string()).or_default();
        servers.generation = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
        let superseded = servers.starting.take().and_then(|older| older.pgid);
        servers.starting = Some(Starting {
            generation: servers.generation,
            version: version.to_string(),
            pgid: None,
        });
        servers.failure = None;
        Ok(Start {
            model: model.to_string(),
            version: version.to_string(),
            generation: servers.generation,
            superseded,
        })
    }

    /// Where `version` serves and another version is starting (a rollback
    /// to what serves, before the newer one was ready): the start is given
    /// up, and stopped, and the serving server stays. Whether it was so.
    pub async fn keep_serving(&self, model: &str, version: &str) -> bool {
        let given_up = {
            let mut models = self.models.lock().expect("serving map");
            let Some(servers) = models.get_mut(model) else {
                return false;
            };
            let serves = servers
                .current
                .as_ref()
                .is_some_and(|current| current.version == version);
            if !serves || servers.starting.is_none() {
                return false;
            }
            // Newer than the start given up, which then ends superseded by it.
            let generation = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
            servers.generation = generation;
            if let Some(current) = servers.current.as_mut() {
                current.generation = generation;
            }
            servers.starting.take().and_then(|starting| starting.pgid)
        };
        if let Some(pgid) = given_up {
            self.stop(pgid).await;
        }
        true
    }

    /// Starts the server and, once it answers, makes it current and stops
    /// the previous one, unless a newer start has superseded it meanwhile:
    /// then it is stopped instead. Returns when the server is ready or not
    /// serving; callers run it in the background.
    pub async fn deploy(&self, start: Start) -> Result<LocalServer, NotServing> {
        if let Some(older) = start.superseded {
            self.stop(older).await;
        }
        let outcome = self.start_and_wait(&start).await;
        // Decided under the lock, carried out after it: (stop, answer).
        let (to_stop, answer) = {
            let mut models = self.models.lock().expect("serving map");
            let servers = models.entry(start.model.clone()).or_default();
            let newest = servers.generation == start.generation;
            if newest {
                servers.starting = None;
            }
            match outcome {
                // stop_all has taken the map; this server is its to stop too.
                Ok(server) if self.is_stopping() => (
                    Some(server.pgid),
                    Err(NotServing::Failed("Slipway is stopping".into())),
                ),
                Ok(server) if newest => {
                    servers.missed_pings = 0;
                    (
                        servers.current.replace(server.clone()).map(|old| old.pgid),
                        Ok(server),
                    )
                }
                Ok(server) => (
                    Some(server.pgid),
                    Err(NotServing::Superseded(String::new())),
                ),
                Err(NotServing::Failed(why)) if newest => {
                    servers.failure = Some((start.version.clone(), why.clone()));
                    (None, Err(NotServing::Failed(why)))
                }
                Err(not_serving) => (None, Err(not_serving)),
            }
        };
        if let Ok(server) = &answer {
            let served = ServedModel {
                model: start.model.clone(),
                version: server.version.clone(),
                port: server.port,
            };
            self.children.mark_serving(server.pgid, &served);
        }
        if let Some(pgid) = to_stop {
            self.stop(pgid).await;
        }
        match answer {
            Err(NotServing::Superseded(_)) => Err(self.superseded(&start)),
            answer => answer,
        }
    }

    fn superseded(&self, start: &Start) -> NotServing {
        // The newer start, still starting or already serving.
        let newer = self
            .models
            .lock()
            .expect("serving map")
            .get(&start.model)
            .and_then(|servers| {
                let starting = servers.starting.as_ref().map(|newer| newer.version.clone());
                let serving = servers
                    .current
                    .as_ref()
                    .filter(|current| current.generation > start.generation)
                    .map(|current| current.version.clone());
                starting.or(serving)
            });
        NotServing::Superseded(match newer {
            Some(newer) => format!("version {newer} was asked for before this one was ready"),
            None => "a newer version was asked for before this one was ready".into(),
        })
    }

    /// Whether `start` is still the newest start of its model.
    fn is_newest(&self, start: &Start) -> bool {
        self.models
            .lock()
            .expect("serving map")
            .get(&start.model)
            .is_some_and(|servers| servers.generation == start.generation)
    }

    /// Takes over the model servers a killed Slipway left serving: per
    /// model, one that answers `/ping` becomes its serving server (the
    /// passes then keep, replace or remove it like any other); the rest stop.
    pub async fn adopt(&self, leftovers: Vec<(i32, ServedModel)>) {
        for (pgid, served) in leftovers {
            let taken = self
                .models
                .lock()
                .expect("serving map")
                .get(&served.model)
                .is_some_and(|servers| servers.current.is_some());
            let answers = !taken
                && self
                    .http
                    .get(format!("http://127.0.0.1:{}/ping", served.port))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
            if !answers {
                tracing::warn!(pgid, model = %served.model, "stopping a model server a previous Slipway left running");
                self.stop(pgid).await;
                continue;
            }
            let server = LocalServer {
                version: served.version.clone(),
                port: served.port,
                pgid,
                generation: self.starts.fetch_add(1, Ordering::SeqCst) + 1,
            };
            let mut models = self.models.lock().expect("serving map");
            let servers = models.entry(served.model.clone()).or_default();
            servers.generation = server.generation;
            servers.current = Some(server);
            tracing::info!(pgid, model = %served.model, version = %served.version, port = served.port,
                "adopted a model server a previous Slipway left serving");
        }
    }

    /// The models with a server serving, starting or failed (canaries are
    /// their model's).
    pub fn models(&self) -> Vec<String> {
        self.models
            .lock()
            .expect("serving map")
            .keys()
            .filter(|key| !is_canary_key(key))
            .cloned()
            .collect()
    }

    /// Stops whatever serves the model (nothing in production any more),
    /// its canary too.
    pub async fn undeploy(&self, model: &str) {
        self.undeploy_canary(model).await;
        self.remove(model).await;
    }

    /// Stops the model's canary server; all its requests go to the stable one.
    pub async fn undeploy_canary(&self, model: &str) {
        self.set_split(model, None);
        self.remove(&canary_key(model)).await;
    }

    /// Forgets `key` and stops its servers: the one serving, and one still
    /// starting (whose start then ends superseded, without stopping it).
    async fn remove(&self, key: &str) {
        let groups: Vec<i32> = self
            .models
            .lock()
            .expect("serving map")
            .remove(key)
            .map(|servers| servers.process_groups().collect())
            .unwrap_or_default();
        for pgid in groups {
            self.stop(pgid).await;
        }
    }

    /// Stops every server, those still starting too, and starts none after:
    /// Slipway shuts down.
    pub async fn stop_all(&self) {
        let groups: Vec<i32> = {
            let mut models = self.models.lock().expect("serving map");
            self.stopping.store(true, Ordering::SeqCst);
            models
                .drain()
                .flat_map(|(_, servers)| servers.process_groups())
                .collect()
        };
        for pgid in groups {
            self.stop(pgid).await;
        }
    }

    async fn start_and_wait(&self, start: &Start) -> Result<LocalServer, NotServing> {
        let (model, version) = (start.model.as_str(), start.version.as_str());
        let port = crate::adapters::process::free_port()
            .map_err(|err| NotServing::Failed(format!("no free port: {err}")))?;
        // A canary's server serves its model's version like any other.
        let registered_name = model.strip_suffix(CANARY_SUFFIX).unwrap_or(model);
        let log_path = self.log_dir.join(format!(
            "{}-v{version}{}.log",
            crate::catalog::dns_name(registered_name),
            if is_canary_key(model) { "-canary" } else { "" }
        ));
        let model_uri = format!("models:/{registered_name}/{version}");
        let (mut child, pgid) = crate::adapters::process::spawn_logged(
            self.env
                .apply(&mut tokio::process::Command::new("mlflow"))
                .args([
                    "models",
                    "serve",
                    "-m",
                    &model_uri,
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                ])
                .arg(port.to_string()),
            &log_path,
            &self.children,
        )
        .map_err(|err| {
            NotServing::Failed(format!(
                "cannot start `mlflow models serve`: {err} (is MLflow's bin directory on PATH?)"
            ))
        })?;
        // Registered under the same lock stop_all and begin take, so a
        // server is either seen by them or sees that it is not wanted.
        let registered = {
            let mut models = self.models.lock().expect("serving map");
            let starting = models
                .get_mut(model)
                .and_then(|servers| servers.starting.as_mut())
                .filter(|starting| starting.generation == start.generation);
            match starting {
                Some(starting) if !self.is_stopping() => {
                    starting.pgid = Some(pgid);
                    Ok(())
                }
                _ if self.is_stopping() => Err(NotServing::Failed("Slipway is stopping".into())),
                _ => Err(NotServing::Superseded(String::new())),
            }
        };
        if let Err(not_serving) = registered {
            self.stop(pgid).await;
            return Err(match not_serving {
                NotServing::Superseded(_) => self.superseded(start),
                failed => failed,
            });
        }
        let ping = format!("http://127.0.0.1:{port}/ping");
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_newest(start) {
                // `begin` or `remove` took it over and stops it; no use waiting.
                return Err(self.superseded(start));
            }
            if let Ok(Some(exit)) = child.try_wait() {
                self.children.forget(pgid);
                return Err(NotServing::Failed(format!(
                    "the server exited ({exit}): {}",
                    last_lines(&log_path)
                )));
            }
            if let Ok(response) = self.http.get(&ping).send().await
                && response.status().is_success()
            {
                // Reaped later by stop(); the task keeps the child from being a zombie.
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                return Ok(LocalServer {
                    version: version.to_string(),
                    port,
                    pgid,
                    generation: start.generation,
                });
            }
            if tokio::time::Instant::now() > deadline {
                self.stop(pgid).await;
                return Err(NotServing::Failed(format!(
                    "no answer on /ping within {} s: {}",
                    READY_TIMEOUT.as_secs(),
                    last_lines(&log_path)
                )));
            }
            tokio::time::sleep(PING_EVERY).await;
        }
    }
}

impl Drop for LocalServing {
    /// The last resort, when `stop_all` never ran (a panic, a failed test):
    /// the servers are Slipway's children and must not outlive it.
    fn drop(&mut self) {
        let models = self
            .models
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for servers in models.values() {
            for pgid in servers.process_groups() {
                crate::adapters::process::kill_group_now(pgid);
                self.children.forget(pgid);
            }
        }
    }
}

fn not_deployed() -> ServingStatus {
    ServingStatus {
        state: ServingState::Idle,
        message: "nothing deployed yet".into(),
        address: None,
    }
}

fn last_lines(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

impl LocalServing {
    async fn stop(&self, pgid: i32) {
        crate::adapters::process::terminate_group(pgid, STOP_GRACE).await;
        self.children.forget(pgid);
    }
}

/// Local serving as a [`Target`]: one `mlflow models serve` per binding.
/// A start runs in the background; its history row ends when the server is
/// ready (or not), so the history shows the time to ready.
pub struct LocalTarget {
    serving: Arc<LocalServing>,
    /// The gateway's base URL: each deployment's address is there, stable
    /// across versions. `None`: the model server's own address.
    gateway: Option<String>,
}

impl LocalTarget {
    pub fn new(serving: Arc<LocalServing>, gateway: Option<String>) -> Self {
        Self { serving, gateway }
    }
}

#[async_trait::async_trait]
impl Target for LocalTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Local
    }

    async fn converge(
        &self,
        ledger: &Arc<Ledger>,
        binding: &DeploymentBinding,
        version: Option<String>,
        trigger: &Trigger,
    ) -> Result<()> {
        let model = &binding.model;
        if self.serving.is_stopping() {
            // A pass that was under way when Slipway began to stop.
            return Ok(());
        }
        self.serving.check_liveness(model).await;
        let (wanted, died) = self.serving.wanted_version(model);
        let failed = ledger.failed_version(model);
        if version == wanted || (version.is_some() && version == failed) {
            return Ok(());
        }
        let previous = self.serving.status(model).0.map(|server| server.version);
        let (cause, actor) = if died {
            if let Some(metrics) = ledger.metrics() {
                metrics.count_restart(model);
            }
            ("drift".to_string(), "slipway".to_string())
        } else {
            ledger
                .attribution(model, version.as_deref(), trigger)
                .await?
        };
        let store = ledger.store();
        let Some(version) = version else {
            if binding.no_production == NoProduction::Keep {
                // What serves keeps serving; the view says why.
                return Ok(());
            }
            let id = store
                .begin_deployment(model, None, previous.as_deref(), &cause, &actor)
                .await?;
            self.serving.undeploy(model).await;
            store
                .finish_deployment(&id, DeploymentOutcome::Removed, "nothing is in production")
                .await?;
            return Ok(());
        };
        let id = store
            .begin_deployment(model, Some(&version), previous.as_deref(), &cause, &actor)
            .await?;
        if !died && self.serving.keep_serving(model, &version).await {
            let kept = format!(
                "v{version} was still serving: kept, and the newer version's start stopped"
            );
            return store
                .finish_deployment(&id, DeploymentOutcome::Serving, &kept)
                .await;
        }
        // Marked starting now, before the server is spawned, so the next
        // pass sees it and does not start a second one.
        let start = match self.serving.begin(model, &version) {
            Ok(start) => start,
            Err(NotServing::Superseded(why) | NotServing::Failed(why)) => {
                return store
                    .finish_deployment(&id, DeploymentOutcome::Failed, &why)
                    .await;
            }
        };
        let serving = self.serving.clone();
        let ledger = ledger.clone();
        let model = model.clone();
        tokio::spawn(async move {
            let (outcome, message) = match serving.deploy(start).await {
                Ok(server) => {
                    if let Some(metrics) = ledger.metrics() {
                        metrics.prepare_serve(&model, &server.version);
                    }
                    (
                        DeploymentOutcome::Serving,
                        format!("ready on {}", server.address()),
                    )
                }
                Err(NotServing::Superseded(why)) => (DeploymentOutcome::Superseded, why),
                Err(NotServing::Failed(why)) => {
                    ledger.set_failed(&model, &version);
                    (DeploymentOutcome::Failed, why)
                }
            };
            if let Err(err) = ledger
                .store()
                .finish_deployment(&id, outcome, &message)
                .await
            {
                tracing::error!(error = %err, "recording a deployment's end");
            }
        });
        Ok(())
    }

    async fn converge_canary(
        &self,
        ledger: &Arc<Ledger>,
        binding: &DeploymentBinding,
        canary: Option<&app::model::Rollout>,
    ) -> Result<()> {
        let model = &binding.model;
        let key = canary_key(model);
        if self.serving.is_stopping() {
            return Ok(());
        }
        let Some(rollout) = canary else {
            if self.serving.wanted_version(&key).0.is_some() {
                self.serving.undeploy_canary(model).await;
                tracing::info!(%model, "stopped the canary's model server");
            }
            self.serving.set_split(model, None);
            return Ok(());
        };
        let version = &rollout.canary_version;
        self.serving.check_liveness(&key).await;
        let (wanted, _) = self.serving.wanted_version(&key);
        let failed = ledger.failed_version(&key);
        if wanted.as_ref() != Some(version) && failed.as_ref() != Some(version) {
            let start = match self.serving.begin(&key, version) {
                Ok(start) => start,
                Err(NotServing::Superseded(_) | NotServing::Failed(_)) => return Ok(()),
            };
            let serving = self.serving.clone();
            let ledger = ledger.clone();
            let (model, version) = (model.clone(), version.clone());
            tokio::spawn(async move {
                match serving.deploy(start).await {
                    Ok(server) => {
                        if let Some(metrics) = ledger.metrics() {
                            metrics.prepare_serve(&model, &server.version);
                        }
                        tracing::info!(%model, %version, "the canary serves");
                    }
                    Err(NotServing::Failed(why)) => {
                        ledger.set_failed(&canary_key(&model), &version);
                        tracing::warn!(%model, %version, %why, "the canary did not start");
                    }
                    Err(NotServing::Superseded(_)) => {}
                }
            });
        }
        let shadow = rollout.mode == app::model::RolloutMode::Shadow;
        self.serving
            .set_split(model, Some(Split::new(rollout.weight, shadow)));
        Ok(())
    }

    fn status(&self, binding: &DeploymentBinding) -> (Option<String>, ServingStatus) {
        let (server, mut status) = self.serving.status(&binding.model);
        if let (Some(gateway), Some(_)) = (&self.gateway, &status.address) {
            status.address = Some(format!(
                "{gateway}{}",
                app::routes::gateway_invocations(&binding.model)
            ));
        }
        (server.map(|server| server.version), status)
    }

    async fn remove_unbound(
        &self,
        ledger: &Arc<Ledger>,
        bindings: &[DeploymentBinding],
        trigger: &Trigger,
    ) -> Result<()> {
        for model in self.serving.models() {
            let bound_here = bindings
                .iter()
                .any(|binding| binding.model == model && binding.target == TargetKind::Local);
            if bound_here || self.serving.is_stopping() {
                continue;
            }
            let (server, status) = self.serving.status(&model);
            if server.is_none() && status.state != ServingState::Creating {
                // Only a failure is remembered: nothing to stop or record.
                self.serving.undeploy(&model).await;
                continue;
            }
            let serving = server.map(|server| server.version);
            let (cause, actor) = ledger.settings_attribution(&model, trigger).await?;
            let id = ledger
                .store()
                .begin_deployment(&model, None, serving.as_deref(), &cause, &actor)
                .await?;
            self.serving.undeploy(&model).await;
            ledger
                .store()
                .finish_deployment(
                    &id,
                    DeploymentOutcome::Removed,
                    "the deployment was deleted or moved to another target",
                )
                .await?;
            tracing::info!(%model, "stopped the local model server of a model no longer bound to it");
        }
        Ok(())
    }

    async fn shutdown(&self) {
        self.serving.stop_all().await;
    }
}
