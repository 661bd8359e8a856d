//! The `slipway` binary, run as an operator runs it: SLIPWAY_* variables,
//! an admin account made with `slipway users add`, a data directory that
//! survives restarts; with a namespace, on the Kubernetes executor as that
//! namespace's ServiceAccount, without one on the local executor.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::cluster::TestNamespace;
use super::free_port;

/// The Slipway binary, as an operator runs it: SLIPWAY_* variables, the
/// ServiceAccount's kubeconfig, a data directory that survives restarts.
/// Killed when dropped.
pub struct Slipway {
    child: tokio::process::Child,
    pub url: String,
    log: PathBuf,
    http: reqwest::Client,
    /// The session of the `operator` admin account, made with the CLI.
    cookie: String,
    /// What `slipway users …` needs to find the same database.
    operator_env: Vec<(String, String)>,
}

pub struct SlipwaySettings<'a> {
    /// `None`: the local executor.
    pub namespace: Option<&'a TestNamespace>,
    pub catalog: &'a Path,
    pub data_dir: &'a Path,
    pub mlflow_url: String,
    pub extra_env: Vec<(&'a str, String)>,
    /// Another user to run it as (the data directory is given to it), as
    /// a service user runs it; `None`: the test's own.
    pub run_as: Option<u32>,
}

impl Slipway {
    pub async fn start(settings: SlipwaySettings<'_>) -> Self {
        match Self::try_start(settings).await {
            Ok(slipway) => slipway,
            Err(log) => panic!("Slipway did not start:\n{log}"),
        }
    }

    /// Started and answering, or what it wrote before it exited.
    pub async fn try_start(settings: SlipwaySettings<'_>) -> Result<Self, String> {
        let port = free_port();
        let log = settings.data_dir.join(format!("slipway-{port}.log"));
        std::fs::create_dir_all(settings.data_dir).unwrap();
        let output = std::fs::File::create(&log).unwrap();
        if let Some(uid) = settings.run_as {
            std::os::unix::fs::chown(settings.data_dir, Some(uid), Some(uid)).unwrap();
        }
        let environment = |command: &mut tokio::process::Command| {
            if let Some(uid) = settings.run_as {
                command.uid(uid).gid(uid);
            }
            command
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("SLIPWAY_MLFLOW_URI", &settings.mlflow_url)
                .env("SLIPWAY_DATA_DIR", settings.data_dir)
                .envs(settings.extra_env.iter().cloned());
        };
        // An operator's first step: an admin account, its password on stdin.
        let mut add_user = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
        environment(&mut add_user);
        users_add(add_user, &["operator", "--role", "admin", "--exists-ok"]).await?;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
        environment(&mut command);
        command
            .env("RUST_LOG", "info,server=debug")
            .env("SLIPWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("SLIPWAY_GATEWAY_LISTEN", "127.0.0.1:0")
            .env("SLIPWAY_CATALOG", settings.catalog)
            .env("SLIPWAY_RECONCILE_POLL_SECS", "1")
            .env("SLIPWAY_SITE_ROOT", settings.data_dir.join("site"))
            // One name across restarts, as a pod's container restarted in
            // place keeps its pod's: it takes its own Lease back at once.
            .env(
                "SLIPWAY_REPLICA_NAME",
                format!(
                    "replica-{}",
                    settings.data_dir.file_name().unwrap().to_string_lossy()
                ),
            )
            .envs(settings.extra_env.iter().cloned())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .kill_on_drop(true);
        if let Some(namespace) = settings.namespace {
            command
                .env("SLIPWAY_EXECUTOR", "kubernetes")
                .env("SLIPWAY_KUBECONFIG", &namespace.kubeconfig)
                .env("SLIPWAY_KUBE_NAMESPACE", &namespace.name);
        }
        let mut child = command.spawn().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!(
                    "exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if http
                .get(format!("{url}/healthz"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
            {
                let signed_in = http
                    .post(format!("{url}/login"))
                    .header("sec-fetch-site", "same-origin")
                    .form(&[("name", "operator"), ("password", super::TEST_PASSWORD)])
                    .send()
                    .await
                    .unwrap();
                let cookie = signed_in
                    .headers()
                    .get("set-cookie")
                    .and_then(|cookie| cookie.to_str().ok())
                    .and_then(|cookie| cookie.split(';').next())
                    .ok_or_else(|| format!("sign-in answered {}", signed_in.status()))?
                    .to_string();
                let mut operator_env = vec![
                    (
                        "SLIPWAY_MLFLOW_URI".to_string(),
                        settings.mlflow_url.clone(),
                    ),
                    (
                        "SLIPWAY_DATA_DIR".to_string(),
                        settings.data_dir.display().to_string(),
                    ),
                ];
                operator_env.extend(
                    settings
                        .extra_env
                        .iter()
                        .map(|(name, value)| (name.to_string(), value.clone())),
                );
                return Ok(Self {
                    child,
                    url,
                    log,
                    http,
                    cookie,
                    operator_env,
                });
            }
            assert!(
                Instant::now() < deadline,
                "Slipway did not answer within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a crash would: nothing of Slipway's shutdown runs.
    pub async fn crash(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        self.assert_no_panic();
    }

    /// A panic in Slipway (a handler, a background task) is a bug, whatever
    /// the test was about.
    fn assert_no_panic(&self) {
        let log = self.log();
        assert!(!log.contains("panicked at"), "Slipway panicked:\n{log}");
    }

    /// SIGTERM, as Ctrl-C or Kubernetes stops it; its exit status.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("Slipway stops within a minute of SIGTERM")
            .unwrap();
        self.assert_no_panic();
        status
    }

    /// Adds a local account with `slipway users add`, as an operator does.
    pub async fn add_user(&self, name: &str, role: &str) {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.operator_env.iter().cloned());
        if let Err(why) = users_add(command, &[name, "--role", role]).await {
            panic!("{why}");
        }
    }

    /// Signs `name` in through `/login`; its session's `Cookie` value.
    pub async fn sign_in(&self, name: &str) -> String {
        let signed_in = self
            .http
            .post(format!("{}/login", self.url))
            .header("sec-fetch-site", "same-origin")
            .form(&[("name", name), ("password", super::TEST_PASSWORD)])
            .send()
            .await
            .unwrap();
        signed_in
            .headers()
            .get("set-cookie")
            .and_then(|cookie| cookie.to_str().ok())
            .and_then(|cookie| cookie.split(';').next())
            .unwrap_or_else(|| panic!("{name} could not sign in: {}", signed_in.status()))
            .to_string()
    }

    /// Makes a service token on the tokens page as the person signed in
    /// with `cookie`, as a browser does; the secret the page shows once.
    pub async fn make_token(&self, cookie: &str, fields: &[(&str, &str)]) -> String {
        let made = self
            .http
            .post(format!("{}/tokens", self.url))
            .header("cookie", cookie)
            .header("sec-fetch-site", "same-origin")
            .form(fields)
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), reqwest::StatusCode::SEE_OTHER);
        let shown = made.headers()["location"].to_str().unwrap().to_string();
        assert!(shown.starts_with("/tokens?created="), "{shown}");
        let page = |cookie: String| {
            let request = self
                .http
                .get(format!("{}{shown}", self.url))
                .header("cookie", cookie);
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(
                    response
                        .headers()
                        .get("cache-control")
                        .map(|value| value.to_str().unwrap()),
                    Some("no-store")
                );
                response.text().await.unwrap()
            }
        };
        let html = page(cookie.to_string()).await;
        let secret = html
            .split("data-secret")
            .nth(1)
            .and_then(|rest| rest.split_once('>'))
            .and_then(|(_, rest)| rest.split('<').next())
            .unwrap_or_else(|| panic!("no secret on the page:\n{html}"))
            .to_string();
        // Shown once: the same link again shows no secret.
        assert!(!page(cookie.to_string()).await.contains(&secret));
        secret
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A form POST as the browser sends it; returns the `Location` it
    /// redirects to.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> String {
        let response = self.post(path, fields).await;
        assert_eq!(
            response.status(),
            reqwest::StatusCode::SEE_OTHER,
            "POST {path}: {}",
            response.text().await.unwrap_or_default()
        );
        response.headers()["location"].to_str().unwrap().to_string()
    }

    /// Calls a server function the way the hydrated UI does.
    pub async fn server_fn<T: DeserializeOwned>(&self, path: &str, fields: &[(&str, &str)]) -> T {
        let response = self.post(path, fields).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{path} answered {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("{path}: {err}: {body}"))
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .header("sec-fetch-site", "same-origin")
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// A server-sent events stream, read as the browser's EventSource does.
    pub async fn events(&self, path: &str) -> EventStream {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        EventStream {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }
}

pub struct EventStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl EventStream {
    /// The next (event name, data); None when the stream has ended.
    pub async fn next(&mut self) -> Option<(String, String)> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value).to_string());
                    }
                }
                if data.is_empty() && name == "message" {
                    continue; // a keep-alive comment
                }
                return Some((name, data.join("\n")));
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads until an event matches; panics with what came instead.
    pub async fn until(
        &mut self,
        within: Duration,
        wanted: impl Fn(&(String, String)) -> bool,
    ) -> (String, String) {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(within, async {
            while let Some(event) = self.next().await {
                if wanted(&event) {
                    return Some(event);
                }
                seen.push(event);
            }
            None
        })
        .await;
        match found {
            Ok(Some(event)) => event,
            _ => panic!("no such event within {within:?}; saw {seen:?}"),
        }
    }

    /// Everything until the `end` event (excluded).
    pub async fn until_end(&mut self, within: Duration) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        let ended = tokio::time::timeout(within, async {
            while let Some(event) = self.next().await {
                if event.0 == "end" {
                    return true;
                }
                seen.push(event);
            }
            false
        })
        .await;
        assert_eq!(
            ended,
            Ok(true),
            "the stream did not end with `end`: {seen:?}"
        );
        seen
    }
}

/// A test that fails midway drops its Slipway without `stop`: SIGTERM, so
/// that Slipway stops its own model servers and trainings (a SIGKILL, from
/// `kill_on_drop`, would leave them running), then SIGKILL after 10 s.
impl Drop for Slipway {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return; // Stopped, crashed or reaped already.
        }
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `slipway users add ARGS…`, the test password on its standard input.
async fn users_add(mut command: tokio::process::Command, args: &[&str]) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    command
        .args(["users", "add"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut adding = command.spawn().unwrap();
    let mut stdin = adding.stdin.take().unwrap();
    stdin
        .write_all(format!("{}\n", super::TEST_PASSWORD).as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let added = adding.wait_with_output().await.unwrap();
    if added.status.success() {
        Ok(())
    } else {
        Err(format!(
            "slipway users add {args:?}: {}{}",
            String::from_utf8_lossy(&added.stdout),
            String::from_utf8_lossy(&added.stderr)
        ))
    }
}
