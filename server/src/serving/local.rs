//! The local serving target (the embedded default): `mlflow models serve`
//! per bound model, on its own port, ready when `/ping` answers. A new
//! version replaces the old one without a gap: the new server starts, and
//! only once it is ready does it take over and the old one stop.

use crate::process::ChildEnv;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ServingState, ServingStatus};

/// Seldon-like patience: installing nothing (`--env-manager local`), MLflow
/// still needs 10–20 s to load and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const PING_EVERY: Duration = Duration::from_millis(250);
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalServer {
    pub version: String,
    pub port: u16,
    /// The server's process group.
    pub pgid: i32,
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
    /// Starting, to replace `current` once ready.
    starting: Option<String>,
    /// The starting server's process group, once spawned.
    starting_pgid: Option<i32>,
    /// Why the last start failed, while nothing newer is starting.
    failure: Option<(String, String)>,
}

pub struct LocalServing {
    env: ChildEnv,
    log_dir: PathBuf,
    models: Arc<Mutex<HashMap<String, ModelServers>>>,
    http: reqwest::Client,
    /// Set by `stop_all`: nothing starts any more, and a server that is
    /// still starting is stopped, so none outlives Slipway.
    stopping: AtomicBool,
}

impl LocalServing {
    pub fn new(env: ChildEnv, log_dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&log_dir)?;
        Ok(Self {
            env,
            log_dir,
            models: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("a plain HTTP client"),
            stopping: AtomicBool::new(false),
        })
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
            (Some(version), _, _) => ServingStatus {
                state: ServingState::Creating,
                message: format!("starting version {version}"),
                address: current.as_ref().map(LocalServer::address),
            },
            (None, Some((version, why)), _) => ServingStatus {
                state: ServingState::Failed,
                message: format!("version {version} did not start: {why}"),
                address: current.as_ref().map(LocalServer::address),
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
        let died = servers
            .current
            .as_ref()
            .is_some_and(|server| !crate::process::group_alive(server.pgid));
        if died {
            let gone = servers.current.take().expect("checked");
            tracing::warn!(model, version = %gone.version, "the local model server died; starting it again");
        }
        let wanted = servers.starting.clone().or_else(|| {
            servers
                .current
                .as_ref()
                .map(|server| server.version.clone())
        });
        (wanted, died)
    }

    /// Starts `version` and, once it answers, makes it current and stops the
    /// previous server. Returns when the new one is ready (or failed);
    /// callers run it in the background.
    pub async fn deploy(&self, model: &str, version: &str) -> Result<LocalServer, String> {
        {
            let mut models = self.models.lock().expect("serving map");
            if self.is_stopping() {
                return Err("Slipway is stopping".into());
            }
            let servers = models.entry(model.to_string()).or_default();
            servers.starting = Some(version.to_string());
            servers.failure = None;
        }
        let outcome = self.start_and_wait(model, version).await;
        let previous = {
            let mut models = self.models.lock().expect("serving map");
            if self.is_stopping() {
                // stop_all has taken the map; this server is its to stop too.
                drop(models);
                if let Ok(server) = &outcome {
                    stop(server.pgid).await;
                }
                return Err("Slipway is stopping".into());
            }
            let servers = models.entry(model.to_string()).or_default();
            if servers.starting.as_deref() == Some(version) {
                servers.starting = None;
                servers.starting_pgid = None;
            }
            match &outcome {
                Ok(server) => servers.current.replace(server.clone()),
                Err(why) => {
                    servers.failure = Some((version.to_string(), why.clone()));
                    None
                }
            }
        };
        if let Some(previous) = previous {
            stop(previous.pgid).await;
        }
        outcome
    }

    /// Stops whatever serves the model (nothing in production any more).
    pub async fn undeploy(&self, model: &str) {
        let current = self
            .models
            .lock()
            .expect("serving map")
            .remove(model)
            .and_then(|servers| servers.current);
        if let Some(server) = current {
            stop(server.pgid).await;
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
                .flat_map(|(_, servers)| {
                    servers
                        .current
                        .map(|server| server.pgid)
                        .into_iter()
                        .chain(servers.starting_pgid)
                })
                .collect()
        };
        for pgid in groups {
            stop(pgid).await;
        }
    }

    async fn start_and_wait(&self, model: &str, version: &str) -> Result<LocalServer, String> {
        let port = crate::process::free_port().map_err(|err| format!("no free port: {err}"))?;
        let log_path = self.log_dir.join(format!(
            "{}-v{version}.log",
            crate::catalog::dns_name(model)
        ));
        let model_uri = format!("models:/{model}/{version}");
        let (mut child, pgid) = crate::process::spawn_logged(
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
        )
        .map_err(|err| {
            format!(
                "cannot start `mlflow models serve`: {err} (is MLflow's bin directory on PATH?)"
            )
        })?;
        // Registered under the same lock stop_all takes, so a server is
        // either seen by it or sees that Slipway is stopping.
        let stopping = {
            let mut models = self.models.lock().expect("serving map");
            let stopping = self.is_stopping();
            if !stopping {
                models.entry(model.to_string()).or_default().starting_pgid = Some(pgid);
            }
            stopping
        };
        if stopping {
            stop(pgid).await;
            return Err("Slipway is stopping".into());
        }
        let ping = format!("http://127.0.0.1:{port}/ping");
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(exit)) = child.try_wait() {
                return Err(format!(
                    "the server exited ({exit}): {}",
                    last_lines(&log_path)
                ));
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
                });
            }
            if tokio::time::Instant::now() > deadline {
                stop(pgid).await;
                return Err(format!(
                    "no answer on /ping within {} s: {}",
                    READY_TIMEOUT.as_secs(),
                    last_lines(&log_path)
                ));
            }
            tokio::time::sleep(PING_EVERY).await;
        }
    }
}

fn not_deployed() -> ServingStatus {
    ServingStatus {
        state: ServingState::Creating,
        message: "nothing deployed yet".into(),
        address: None,
    }
}

fn last_lines(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

async fn stop(pgid: i32) {
    crate::process::terminate_group(pgid, STOP_GRACE).await;
}
