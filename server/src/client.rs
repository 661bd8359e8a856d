//! The pipeline commands (`slipway launch`, `promote`, `approve`, …): a
//! client of a running Slipway's API, with a service token from the
//! environment (`SLIPWAY_TOKEN`: never a flag, which every local user
//! could read in `ps`). Each prints what it did (or JSON with `--output
//! json`) on stdout, its progress (a training's log, what it waits for)
//! on stderr, and exits with a code a pipeline can branch on (`Exit`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use app::model::{
    DeploymentDetail, DeploymentView, Launch, LaunchRequest, LaunchStatus, PromotionRequest,
    RequestState, ServingState,
};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::web::api::{ApiErrorBody, PromotionOutcome, Registered, RolledBack};

/// How a command ended, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    /// What it started or waited for failed: a training failed or was
    /// cancelled, a request was rejected, a deployment failed.
    Failed = 1,
    /// What was sent is wrong (also clap's code for bad arguments).
    Invalid = 2,
    /// No token, or the token may not do this.
    Refused = 3,
    NotFound = 4,
    /// The state moved (Production changed, a request was decided): look again.
    Conflict = 5,
    /// Slipway, MLflow or the cluster did not answer or failed.
    Unavailable = 6,
    /// Still not done when `--timeout` ran out.
    TimedOut = 7,
}

/// A command's end: its exit code and the reason, for standard error.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }
}

type Outcome<T> = std::result::Result<T, Failure>;

#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The Slipway to talk to.
    #[arg(long, env = "SLIPWAY_URL", default_value = "http://127.0.0.1:3000")]
    pub server: String,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// How long `--wait` and `--wait-serving` wait, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Launches an entry point of a catalog project.
    Launch {
        project: String,
        entry_point: String,
        #[arg(long)]
        profile: String,
        /// A parameter, `name=value`; repeat for each.
        #[arg(short = 'P', long = "param", value_parser = parse_pair)]
        params: Vec<(String, String)>,
        /// An existing experiment's id.
        #[arg(long, conflicts_with = "new_experiment")]
        experiment: Option<String>,
        /// A new experiment's name.
        #[arg(long)]
        new_experiment: Option<String>,
        #[arg(long)]
        run_name: Option<String>,
        /// The commit to run, for a project from git; default: its branch's newest.
        #[arg(long)]
        commit: Option<String>,
        /// An idempotency key: running the same command again with the
        /// same key finds the first launch instead of starting another.
        #[arg(long)]
        submission: Option<String>,
        /// Follows the training's log (on stderr) until it ends; fails
        /// unless it succeeded.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Registers a run's model as a new version of MODEL.
    Register {
        run_id: String,
        model: String,
        /// Which of the run's models, when it logged several.
        #[arg(long, default_value = "")]
        source: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Makes VERSION Production (and deploys it), or asks for approval
    /// where the deployment requires it.
    Promote {
        model: String,
        version: String,
        #[arg(long)]
        reason: String,
        /// The Production version you saw ("" for none); refused if it moved.
        #[arg(long)]
        expected_version: Option<String>,
        /// Waits until the version serves (through the approval, if one is needed).
        #[arg(long)]
        wait_serving: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Approves a promotion request (someone else's).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Rejects a promotion request.
    Reject {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Makes the previously served version Production again.
    Rollback {
        model: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        expected_version: Option<String>,
        #[arg(long)]
        wait_serving: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Every deployment: what should serve, what serves, where.
    Deployments {
        #[command(flatten)]
        remote: Remote,
    },
}

fn parse_pair(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?}: expected name=value")),
    }
}

impl ClientCommand {
    fn remote(&self) -> &Remote {
        match self {
            ClientCommand::Launch { remote, .. }
            | ClientCommand::Register { remote, .. }
            | ClientCommand::Promote { remote, .. }
            | ClientCommand::Approve { remote, .. }
            | ClientCommand::Reject { remote, .. }
            | ClientCommand::Rollback { remote, .. }
            | ClientCommand::Deployments { remote } => remote,
        }
    }
}

/// Runs a pipeline command: what to print on stdout, or why it failed.
pub async fn run(command: ClientCommand, token: Option<String>) -> Outcome<String> {
    let remote = command.remote().clone();
    let token = token
        .filter(|token| !token.trim().is_empty())
        .ok_or_else(|| {
            Failure::new(
                Exit::Refused,
                "Set SLIPWAY_TOKEN to a service token (made on Slipway's Tokens page).",
            )
        })?;
    let api = Api::new(&remote, token)?;
    let deadline = Instant::now() + Duration::from_secs(remote.timeout);
    match command {
        ClientCommand::Launch {
            project,
            entry_point,
            profile,
            params,
            experiment,
            new_experiment,
            run_name,
            commit,
            submission,
            wait,
            ..
        } => {
            let request = LaunchRequest {
                submission: submission.unwrap_or_default(),
                project,
                entry_point,
                params: params.into_iter().collect::<BTreeMap<_, _>>(),
                experiment_id: experiment.unwrap_or_default(),
                new_experiment: new_experiment.unwrap_or_default(),
                profile,
                run_name: run_name.unwrap_or_default(),
                env_manager: String::new(),
                commit: commit.unwrap_or_default(),
            };
            let launch: Launch = api.post("/launches", &request).await?;
            eprintln!("launch {} {}", launch.id, launch.status);
            let launch = if wait {
                api.follow_launch(&launch.id, deadline).await?
            } else {
                launch
            };
            let shown = show(&remote, &launch, || {
                format!(
                    "{} {} run {}",
                    launch.id,
                    launch.status,
                    launch.run_id.as_deref().unwrap_or("-")
                )
            });
            match launch.status {
                LaunchStatus::Failed | LaunchStatus::Cancelled if wait => Err(Failure::new(
                    Exit::Failed,
                    format!(
                        "{shown}\nlaunch {} {}: {}",
                        launch.id, launch.status, launch.reason
                    ),
                )),
                _ => Ok(shown),
            }
        }
        ClientCommand::Register {
            run_id,
            model,
            source,
            ..
        } => {
            let registered: Registered = api
                .post(
                    &format!("/runs/{}/register", segment(&run_id)),
                    &json!({ "model": model, "source": source }),
                )
                .await?;
            Ok(show(&remote, &registered, || registered.version.clone()))
        }
        ClientCommand::Promote {
            model,
            version,
            reason,
            expected_version,
            wait_serving,
            ..
        } => {
            let outcome: PromotionOutcome = api
                .post(
                    &format!("/deployments/{}/promotions", segment(&model)),
                    &json!({ "version": version, "reason": reason, "expected_version": expected_version }),
                )
                .await?;
            if let Some(id) = &outcome.request_id {
                eprintln!("approval required: promotion request {id}");
                if wait_serving {
                    api.wait_decided(id, deadline).await?;
                }
            }
            if wait_serving {
                let detail = api.wait_serving(&model, &version, deadline).await?;
                return Ok(show(&remote, &detail.view, || serving_line(&detail.view)));
            }
            Ok(show(&remote, &outcome, || match &outcome.request_id {
                Some(id) => id.clone(),
                None => format!("v{} is Production; deploying", outcome.version),
            }))
        }
        ClientCommand::Approve { id, comment, .. } => {
            decide(&api, &remote, &id, "approve", &comment).await
        }
        ClientCommand::Reject { id, comment, .. } => {
            decide(&api, &remote, &id, "reject", &comment).await
        }
        ClientCommand::Rollback {
            model,
            reason,
            expected_version,
            wait_serving,
            ..
        } => {
            let rolled: RolledBack = api
                .post(
                    &format!("/deployments/{}/rollback", segment(&model)),
                    &json!({ "reason": reason, "expected_version": expected_version }),
                )
                .await?;
            if wait_serving {
                let detail = api.wait_serving(&model, &rolled.version, deadline).await?;
                return Ok(show(&remote, &detail.view, || serving_line(&detail.view)));
            }
            Ok(show(&remote, &rolled, || {
                format!("v{} is Production again; deploying", rolled.version)
            }))
        }
        ClientCommand::Deployments { .. } => {
            let deployments: Vec<DeploymentView> = api.get("/deployments").await?;
            Ok(show(&remote, &deployments, || {
                let mut out = format!(
                    "{:<28} {:<7} {:<8} {:<8} {:<10} {}\n",
                    "MODEL", "TARGET", "DESIRED", "SERVING", "STATE", "ADDRESS"
                );
                for view in &deployments {
                    out.push_str(&format!(
                        "{:<28} {:<7} {:<8} {:<8} {:<10} {}\n",
                        view.model,
                        view.target,
                        view.desired_version.as_deref().unwrap_or("-"),
                        view.serving_version.as_deref().unwrap_or("-"),
                        view.state.as_str(),
                        view.address.as_deref().unwrap_or("-")
                    ));
                }
                out.trim_end().to_string()
            }))
        }
    }
}

async fn decide(
    api: &Api,
    remote: &Remote,
    id: &str,
    verb: &str,
    comment: &str,
) -> Outcome<String> {
    let request: PromotionRequest = api
        .post(
            &format!("/promotion-requests/{}/{verb}", segment(id)),
            &json!({ "comment": comment }),
        )
        .await?;
    let shown = show(remote, &request, || {
        format!(
            "{} {} v{}: {}{}",
            request.id,
            request.model,
            request.version,
            request.state,
            if request.outcome.is_empty() {
                String::new()
            } else {
                format!(" ({})", request.outcome)
            }
        )
    });
    match request.state {
        RequestState::Approved | RequestState::Approving | RequestState::Rejected => Ok(shown),
        // Approved, but it could not be carried out.
        RequestState::Stale | RequestState::Failed | RequestState::Pending => {
            Err(Failure::new(Exit::Failed, shown))
        }
    }
}

fn serving_line(view: &DeploymentView) -> String {
    format!(
        "{} v{} {} at {}",
        view.model,
        view.serving_version.as_deref().unwrap_or("-"),
        view.state,
        view.address.as_deref().unwrap_or("-")
    )
}

/// The value as JSON, or the text line.
fn show<T: Serialize>(remote: &Remote, value: &T, text: impl FnOnce() -> String) -> String {
    match remote.output {
        Output::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
        Output::Text => text(),
    }
}

fn segment(text: &str) -> String {
    app::routes::segment(text)
}

/// A Slipway's API, with a token.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

const POLL_EVERY: Duration = Duration::from_secs(1);

impl Api {
    fn new(remote: &Remote, token: String) -> Outcome<Self> {
        let base = format!("{}/api/v1", remote.server.trim_end_matches('/'));
        url::Url::parse(&base).map_err(|err| {
            Failure::new(Exit::Invalid, format!("--server {}: {err}", remote.server))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| Failure::new(Exit::Unavailable, format!("an HTTP client: {err}")))?;
        Ok(Self { http, base, token })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Outcome<T> {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .timeout(Duration::from_secs(60)),
        )
        .await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Outcome<T> {
        // A promotion or a launch can take as long as MLflow takes to answer.
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .json(body)
                .timeout(Duration::from_secs(300)),
        )
        .await
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Outcome<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|err| unreachable_slipway(&self.base, &err))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|err| unreachable_slipway(&self.base, &err))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|err| {
                Failure::new(
                    Exit::Unavailable,
                    format!("{}: an answer this CLI does not read ({err})", self.base),
                )
            });
        }
        Err(api_failure(status.as_u16(), &body))
    }

    /// Prints the training's log to stderr as it comes, until it ends.
    async fn follow_launch(&self, id: &str, deadline: Instant) -> Outcome<Launch> {
        let path = format!("/launches/{}", segment(id));
        let events = self
            .http
            .get(format!("{}{path}/events", self.base))
            .bearer_auth(&self.token)
            .send()
            .await;
        if let Ok(response) = events.and_then(|response| response.error_for_status()) {
            let mut stream = response.bytes_stream();
            let mut parser = EventParser::default();
            loop {
                let next = tokio::time::timeout_at(deadline.into(), stream.next()).await;
                let chunk = match next {
                    Err(_) => return Err(timed_out("the launch to end")),
                    Ok(None) | Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(chunk))) => chunk,
                };
                let mut ended = false;
                for (event, data) in parser.feed(&chunk) {
                    match event.as_str() {
                        "log" => eprint!("{data}"),
                        "status" => {
                            if let Ok(update) = serde_json::from_str::<Value>(&data) {
                                eprintln!(
                                    "[{}] {}",
                                    update["status"].as_str().unwrap_or("?"),
                                    update["reason"].as_str().unwrap_or("")
                                );
                            }
                        }
                        "end" => ended = true,
                        _ => {}
                    }
                }
                if ended {
                    break;
                }
            }
        }
        // The stream ended (or broke): the launch's own state decides.
        loop {
            let launch: Launch = self.get(&path).await?;
            if launch.status.is_terminal() {
                return Ok(launch);
            }
            if Instant::now() >= deadline {
                return Err(timed_out("the launch to end"));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Until an approver decides the request and it is carried out.
    async fn wait_decided(&self, id: &str, deadline: Instant) -> Outcome<()> {
        let path = format!("/promotion-requests/{}", segment(id));
        let mut said = false;
        loop {
            let request: PromotionRequest = self.get(&path).await?;
            match request.state {
                RequestState::Approved => return Ok(()),
                RequestState::Rejected | RequestState::Stale | RequestState::Failed => {
                    return Err(Failure::new(
                        Exit::Failed,
                        format!(
                            "promotion request {id}: {}{}{}",
                            request.state,
                            request
                                .decided_by
                                .map(|by| format!(" by {by}"))
                                .unwrap_or_default(),
                            [request.comment, request.outcome]
                                .iter()
                                .filter(|text| !text.is_empty())
                                .map(|text| format!(": {text}"))
                                .collect::<String>()
                        ),
                    ));
                }
                RequestState::Pending | RequestState::Approving => {}
            }
            if !said {
                eprintln!("waiting for an approver to decide request {id}");
                said = true;
            }
            if Instant::now() >= deadline {
                return Err(timed_out(&format!("a decision on request {id}")));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Until `version` serves `model` (or its deployment fails).
    async fn wait_serving(
        &self,
        model: &str,
        version: &str,
        deadline: Instant,
    ) -> Outcome<DeploymentDetail> {
        let path = format!("/deployments/{}", segment(model));
        let mut last = String::new();
        loop {
            let detail: DeploymentDetail = self.get(&path).await?;
            let view = &detail.view;
            let this_version = view.desired_version.as_deref() == Some(version);
            if this_version
                && view.serving_version.as_deref() == Some(version)
                && view.state == ServingState::Available
            {
                return Ok(detail);
            }
            if this_version && view.state == ServingState::Failed {
                return Err(Failure::new(
                    Exit::Failed,
                    format!("{model} v{version} failed to serve: {}", view.message),
                ));
            }
            let now = format!("{} {}", view.state, view.message);
            if now != last {
                eprintln!("{model}: {now}");
                last = now;
            }
            if Instant::now() >= deadline {
                return Err(timed_out(&format!("{model} v{version} to serve")));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

fn unreachable_slipway(base: &str, err: &reqwest::Error) -> Failure {
    Failure::new(
        Exit::Unavailable,
        format!("Cannot reach Slipway at {base}: {err}"),
    )
}

fn timed_out(what: &str) -> Failure {
    Failure::new(
        Exit::TimedOut,
        format!("Gave up waiting for {what} (--timeout)."),
    )
}

/// An API error answer as the exit code and the reason.
fn api_failure(status: u16, body: &[u8]) -> Failure {
    let exit = match status {
        400 | 413 | 422 => Exit::Invalid,
        401 | 403 => Exit::Refused,
        404 => Exit::NotFound,
        409 => Exit::Conflict,
        _ => Exit::Unavailable,
    };
    let message = match serde_json::from_slice::<ApiErrorBody>(body) {
        Ok(ApiErrorBody { error }) => {
            let fields: Vec<String> = error
                .fields
                .iter()
                .map(|(field, problem)| format!("\n  {field}: {problem}"))
                .collect();
            format!(
                "{} ({status} {}){}",
                error.message,
                error.code,
                fields.concat()
            )
        }
        Err(_) => format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(body)
                .chars()
                .take(500)
                .collect::<String>()
        ),
    };
    Failure::new(exit, message)
}

/// Server-sent events, from the bytes as they come.
#[derive(Default)]
struct EventParser {
    buffer: String,
    event: String,
    data: Vec<String>,
}

impl EventParser {
    fn feed(&mut self, chunk: &[u8]) -> Vec<(String, String)> {
        self.buffer.push_str(&String::from_utf8_lossy(chunk));
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.event.is_empty() || !self.data.is_empty() {
                    events.push((std::mem::take(&mut self.event), self.data.join("\n")));
                    self.data.clear();
                }
            } else if let Some(event) = line.strip_prefix("event:") {
                self.event = event.trim_start().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                self.data
                    .push(data.strip_prefix(' ').unwrap_or(data).to_string());
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunks() {
        let mut parser = EventParser::default();
        assert!(parser.feed(b"event: log\ndata: line one").is_empty());
        let events = parser.feed(b"\ndata: line two\n\nevent: end\ndata:\n\n");
        assert_eq!(
            events,
            vec![
                ("log".to_string(), "line one\nline two".to_string()),
                ("end".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn api_errors_become_exit_codes_with_their_reasons() {
        let body = br#"{"error":{"status":400,"code":"invalid","message":"alpha: a number","fields":{"param.alpha":"a number"}}}"#;
        let failure = api_failure(400, body);
        assert_eq!(failure.exit, Exit::Invalid);
        assert!(
            failure.message.contains("param.alpha: a number"),
            "{}",
            failure.message
        );
        assert_eq!(api_failure(409, b"{}").exit, Exit::Conflict);
        assert_eq!(api_failure(403, b"").exit, Exit::Refused);
        assert_eq!(api_failure(502, b"").exit, Exit::Unavailable);
    }
}
