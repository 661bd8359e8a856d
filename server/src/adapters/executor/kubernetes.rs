//! Training as Kubernetes Jobs: rendered from k8s-openapi types, created
//! through the API, followed by watching the Jobs and Pods Slipway labelled,
//! logs streamed from the pod, cancelled by deleting the Job.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use app::model::LaunchStatus;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, Event, Pod, PodSpec, PodTemplateSpec, ResourceRequirements,
    SecretKeySelector, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::time::Instant;

use super::{
    Executor, ExecutorEvent, GitCheckout, LogStream, StatusReport, StatusSink, TrainingJob,
};
use crate::adapters::cluster::explain;
use crate::adapters::cluster::{FIELD_MANAGER, MANAGED_BY};
use crate::catalog::Catalog;
use crate::error::{Error, Result};

pub const LAUNCH_LABEL: &str = "slipway.dev/launch-id";
pub const RUN_LABEL: &str = "slipway.dev/run-id";
pub const PROFILE_LABEL: &str = "slipway.dev/profile";
pub const PROJECT_LABEL: &str = "slipway.dev/project";
const CONTAINER: &str = "training";

#[derive(Debug, Clone)]
pub struct JobSettings {
    pub namespace: String,
    /// MLflow as the training pod reaches it (often an in-cluster Service).
    pub tracking_uri: String,
    pub ttl_seconds_after_finished: i32,
    pub service_account: Option<String>,
    /// Secret the training container takes its MLflow credentials from.
    pub mlflow_secret: Option<String>,
    /// The image of the step that fetches a git project's commit (it runs
    /// `sh` and `git`).
    pub git_image: String,
}

/// Where a git project's commit is fetched to, in both containers.
const WORKSPACE: &str = "/workspace";
const WORKSPACE_VOLUME: &str = "workspace";
/// The fetch step. Constant: the URL and the commit come as environment
/// variables, so no shell ever parses them. Credentials, when the project
/// names a Secret, go to git through a helper that reads them from the
/// environment (never the command line or the URL).
const FETCH_SCRIPT: &str = r#"set -eu
cd /workspace
git init -q .
if [ -n "${GIT_USERNAME:-}" ]; then
  git config credential.helper '!f() { echo "username=$GIT_USERNAME"; echo "password=$GIT_PASSWORD"; }; f'
fi
git fetch -q --depth 1 -- "$GIT_URL" "$GIT_COMMIT"
git checkout -q FETCH_HEAD
echo "fetched $GIT_COMMIT"
"#;

/// What a training pod may take from the MLflow Secret; each key is optional.
const MLFLOW_SECRET_KEYS: [&str; 3] = [
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
];

/// The Job for one launch. Pure: everything comes from the arguments.
pub fn render_job(job: &TrainingJob, settings: &JobSettings) -> Result<Job> {
    let image = job.image.clone().ok_or_else(|| {
        Error::Unavailable(format!("project {:?} has no training image", job.project))
    })?;
    let profile = &job.profile;
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (LAUNCH_LABEL.to_string(), job.launch_id.clone()),
        (RUN_LABEL.to_string(), job.run_id.clone()),
        (PROFILE_LABEL.to_string(), profile.name.clone()),
        (PROJECT_LABEL.to_string(), label_value(&job.project)),
    ]);
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for (resource, pair) in [("cpu", &profile.cpu), ("memory", &profile.memory)] {
        if let Some(pair) = pair {
            if let Some(request) = &pair.request {
                requests.insert(resource.to_string(), Quantity(request.clone()));
            }
            if let Some(limit) = &pair.limit {
                limits.insert(resource.to_string(), Quantity(limit.clone()));
            }
        }
    }
    if profile.gpus() > 0 {
        let gpus = Quantity(profile.gpus().to_string());
        requests.insert(profile.gpu_resource().to_string(), gpus.clone());
        limits.insert(profile.gpu_resource().to_string(), gpus);
    }
    let mut env: Vec<EnvVar> = [
        ("MLFLOW_TRACKING_URI", settings.tracking_uri.as_str()),
        ("MLFLOW_RUN_ID", job.run_id.as_str()),
        ("MLFLOW_EXPERIMENT_ID", job.experiment_id.as_str()),
    ]
    .into_iter()
    .map(|(name, value)| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    })
    .collect();
    // By reference: a value here would be readable by anyone who may read Jobs.
    if let Some(secret) = &settings.mlflow_secret {
        env.extend(MLFLOW_SECRET_KEYS.map(|key| EnvVar {
            name: key.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: key.into(),
                    optional: Some(true),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    let workspace = job
        .git
        .as_ref()
        .map(|git| fetch_step(git, &settings.git_image));
    let tolerations = profile
        .tolerations
        .iter()
        .map(|toleration| Toleration {
            key: toleration.key.clone(),
            operator: toleration.operator.clone(),
            value: toleration.value.clone(),
            effect: toleration.effect.clone(),
            toleration_seconds: toleration.toleration_seconds,
        })
        .collect::<Vec<_>>();
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&job.project, &job.launch_id)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                "slipway.dev/entry-point".to_string(),
                job.entry_point.clone(),
            )])),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // One attempt: a retry would log into the same MLflow run.
            backoff_limit: Some(0),
            active_deadline_seconds: profile.max_runtime_secs,
            ttl_seconds_after_finished: Some(settings.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: settings.service_account.clone(),
                    node_selector: (!profile.node_selector.is_empty())
                        .then(|| profile.node_selector.clone()),
                    tolerations: (!tolerations.is_empty()).then_some(tolerations),
                    priority_class_name: profile.priority_class.clone(),
                    init_containers: workspace.as_ref().map(|(fetch, _)| vec![fetch.clone()]),
                    volumes: workspace.as_ref().map(|_| {
                        vec![Volume {
                            name: WORKSPACE_VOLUME.into(),
                            empty_dir: Some(Default::default()),
                            ..Default::default()
                        }]
                    }),
                    containers: vec![Container {
                        name: CONTAINER.into(),
                        image: Some(image),
                        // The argv as is: `command` replaces the entrypoint and
                        // no shell ever parses a parameter.
                        command: Some(job.argv.clone()),
                        env: Some(env),
                        working_dir: workspace.as_ref().map(|(_, directory)| directory.clone()),
                        volume_mounts: workspace.as_ref().map(|_| vec![workspace_mount()]),
                        resources: Some(ResourceRequirements {
                            requests: (!requests.is_empty()).then_some(requests),
                            limits: (!limits.is_empty()).then_some(limits),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    })
}

fn workspace_mount() -> VolumeMount {
    VolumeMount {
        name: WORKSPACE_VOLUME.into(),
        mount_path: WORKSPACE.into(),
        ..Default::default()
    }
}

/// The init container that fetches the commit, and the training's working
/// directory in what it fetched.
fn fetch_step(git: &GitCheckout, image: &str) -> (Container, String) {
    let plain = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let mut env = vec![plain("GIT_URL", &git.url), plain("GIT_COMMIT", &git.commit)];
    if let Some(secret) = &git.secret {
        env.extend(
            [("GIT_USERNAME", "username"), ("GIT_PASSWORD", "password")].map(|(name, key)| {
                EnvVar {
                    name: name.into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.clone(),
                            key: key.into(),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            }),
        );
    }
    let fetch = Container {
        name: "fetch-code".into(),
        image: Some(image.to_string()),
        command: Some(vec!["sh".into(), "-c".into(), FETCH_SCRIPT.into()]),
        env: Some(env),
        volume_mounts: Some(vec![workspace_mount()]),
        ..Default::default()
    };
    let directory = if git.path.is_empty() {
        WORKSPACE.to_string()
    } else {
        format!("{WORKSPACE}/{}", git.path)
    };
    (fetch, directory)
}

/// `<project>-<launch id prefix>`, DNS-1123 safe and at most 63 characters,
/// so the pods' generated names fit too.
pub fn job_name(project: &str, launch_id: &str) -> String {
    let mut stem = crate::catalog::dns_name(project);
    stem.truncate(40);
    let stem = stem.trim_end_matches('-');
    let suffix: String = launch_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let suffix = suffix.to_ascii_lowercase();
    if stem.is_empty() {
        format!("train-{suffix}")
    } else {
        format!("{stem}-{suffix}")
    }
}

/// Label values allow `[A-Za-z0-9._-]`, 63 characters, alphanumeric ends.
fn label_value(text: &str) -> String {
    let mut value: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    while value.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        value.pop();
    }
    value
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

pub struct KubernetesExecutor {
    client: Client,
    settings: JobSettings,
}

impl KubernetesExecutor {
    pub fn new(client: Client, settings: JobSettings) -> Self {
        Self { client, settings }
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    fn events(&self) -> Api<Event> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    /// Follows every Job and Pod Slipway created, and the Job controller's
    /// `FailedCreate` events, until the receiver is gone. Watches, not polls:
    /// the API server pushes. Each watch starts with a full listing (and
    /// starts over after a gap), so a Job deleted while nobody watched is
    /// reported too.
    pub async fn watch_status(&self, sink: StatusSink) {
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let labelled = watcher::Config::default().labels(&selector);
        let jobs = watcher::watcher(self.jobs(), labelled.clone())
            .default_backoff()
            .map_ok(|event| Seen::Job(Box::new(event)));
        let pods = watcher::watcher(self.pods(), labelled)
            .default_backoff()
            .map_ok(|event| Seen::Pod(Box::new(event)));
        let failed_creates =
            watcher::Config::default().fields("involvedObject.kind=Job,reason=FailedCreate");
        let events = watcher::watcher(self.events(), failed_creates)
            .default_backoff()
            .map_ok(|event| Seen::Event(Box::new(event)));
        let mut seen = std::pin::pin!(futures::stream::select_all([
            jobs.boxed(),
            pods.boxed(),
            events.boxed()
        ]));
        let mut tracker = Tracker::default();
        loop {
            let next_due = tracker.next_due();
            let outcome = tokio::select! {
                item = seen.next() => match item {
                    Some(Ok(event)) => tracker.observe(event),
                    Some(Err(err)) => {
                        // The watcher starts over by itself (with back-off).
                        tracing::warn!(error = %err, "watching training Jobs");
                        Vec::new()
                    }
                    None => return,
                },
                _ = sleep_until(next_due) => tracker.due(Instant::now()),
            };
            for event in outcome {
                if sink.send(event).is_err() {
                    return;
                }
            }
        }
    }

    /// Asks the API server whether it would accept each profile's Job,
    /// creating nothing (`dryRun=All`): validation and admission that a
    /// start-up check of the catalog cannot see. One problem per refused
    /// profile, in the API server's words. An unreachable cluster refuses
    /// nothing (each launch then says why it failed).
    pub async fn dry_run_profiles(&self, catalog: &Catalog) -> Vec<String> {
        let image = catalog
            .projects
            .iter()
            .find_map(|project| project.image.clone())
            .unwrap_or_else(|| "registry.invalid/slipway-dry-run:0".into());
        let params = PostParams {
            dry_run: true,
            ..post_params()
        };
        let mut problems = Vec::new();
        for profile in &catalog.profiles {
            let probe = TrainingJob {
                launch_id: format!("dry-run-{}", profile.name),
                run_id: "dry-run".into(),
                experiment_id: "0".into(),
                project: "slipway-dry-run".into(),
                entry_point: "main".into(),
                directory: Default::default(),
                image: Some(image.clone()),
                argv: vec!["true".into()],
                profile: profile.clone(),
                python_env: None,
                git: None,
            };
            let job = match render_job(&probe, &self.settings) {
                Ok(job) => job,
                Err(err) => {
                    problems.push(format!("profile {}: {err}", profile.name));
                    continue;
                }
            };
            match self.jobs().create(&params, &job).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if matches!(status.code, 400 | 403 | 422) => {
                    problems.push(format!(
                        "profile {}: the Kubernetes API server refuses its Job: {}",
                        profile.name, status.message
                    ));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot dry-run the profiles' Jobs");
                    break;
                }
            }
        }
        problems
    }

    async fn pod_of(&self, launch_id: &str) -> Result<Option<Pod>> {
        let pods = self
            .pods()
            .list(&ListParams::default().labels(&format!("{LAUNCH_LABEL}={launch_id}")))
            .await
            .map_err(|err| explain(err, "list the training's pods", &self.settings.namespace))?;
        Ok(pods.items.into_iter().next())
    }
}

#[async_trait::async_trait]
impl Executor for KubernetesExecutor {
    fn backend(&self) -> &'static str {
        "kubernetes"
    }

    async fn start(&self, job: &TrainingJob) -> Result<String> {
        let manifest = render_job(job, &self.settings)?;
        let created = self
            .jobs()
            .create(&post_params(), &manifest)
            .await
            .map_err(|err| explain(err, "create the training Job", &self.settings.namespace))?;
        Ok(created.metadata.name.unwrap_or_default())
    }

    async fn cancel(&self, _launch_id: &str, job_name: &str) -> Result<()> {
        // Background: the Job goes at once and the garbage collector takes
        // its pods, so no controller has to confirm.
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.jobs().delete(job_name, &params).await {
            Ok(_) => Ok(()),
            // Already gone (finished and collected): cancelled all the same.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(explain(
                err,
                "delete the training Job",
                &self.settings.namespace,
            )),
        }
    }

    async fn logs(&self, launch_id: &str, _job_name: &str) -> Result<LogStream> {
        let Some(pod) = self.pod_of(launch_id).await? else {
            return Ok(futures::stream::empty().boxed());
        };
        let name = pod.metadata.name.unwrap_or_default();
        let params = LogParams {
            follow: true,
            container: Some(CONTAINER.into()),
            ..Default::default()
        };
        let reader = match self.pods().log_stream(&name, &params).await {
            Ok(reader) => reader,
            // "container … is waiting to start": no logs yet.
            Err(kube::Error::Api(status)) if status.code == 400 => {
                return Ok(futures::stream::empty().boxed());
            }
            Err(err) => {
                return Err(explain(
                    err,
                    "read the training's logs",
                    &self.settings.namespace,
                ));
            }
        };
        Ok(reader
            .lines()
            .map(|line| {
                line.map(|line| line + "\n")
                    .map_err(|err| Error::Unavailable(format!("reading the logs: {err}")))
            })
            .boxed())
    }

    async fn is_present(&self, _launch_id: &str, job_name: &str) -> Result<bool> {
        match self.jobs().get_opt(job_name).await {
            Ok(job) => Ok(job.is_some()),
            Err(err) => Err(explain(
                err,
                "read the training Job",
                &self.settings.namespace,
            )),
        }
    }
}

/// Every write names Slipway as its field manager, so `managedFields` say
/// who set what.
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// One item from the three watches.
enum Seen {
    Job(Box<watcher::Event<Job>>),
    Pod(Box<watcher::Event<Pod>>),
    Event(Box<watcher::Event<Event>>),
}

/// Pods and Jobs come through separate watches, and the first end a launch
/// records is the one it keeps. The most telling end should come first:
/// - a Job's verdict waits this long for its pod's own end (an exit code
///   says more than `BackoffLimitExceeded`);
const VERDICT_GRACE: Duration = Duration::from_secs(1);
/// - a pod gone before its training ended waits this long for the Job's
///   verdict: when a Job runs past its deadline the Job controller deletes
///   the pod first and writes `DeadlineExceeded` just after.
const LOSS_GRACE: Duration = Duration::from_secs(2);

/// An end held back for a grace period.
enum Deferred {
    Verdict(StatusReport),
    Loss(String),
}

/// What the watches have seen so far, turned into executor events.
#[derive(Default)]
struct Tracker {
    /// The last status reported per launch: only changes are sent.
    last: HashMap<String, (LaunchStatus, String)>,
    /// Launch of each Job seen, by Job name (events name the Job only).
    launch_of_job: HashMap<String, String>,
    /// `FailedCreate` messages for Jobs not seen yet.
    early_events: HashMap<String, String>,
    /// Launches whose Job has ended or gone: their pods' ends say nothing new.
    ended: HashSet<String>,
    /// Launches present in a Job listing under way.
    listing: Option<BTreeSet<String>>,
    /// Ends held back: launch → (when to report, what).
    deferred: HashMap<String, (Instant, Deferred)>,
}

impl Tracker {
    fn observe(&mut self, seen: Seen) -> Vec<ExecutorEvent> {
        match seen {
            Seen::Job(event) => self.observe_job(*event),
            Seen::Pod(event) => self.observe_pod(*event),
            Seen::Event(event) => match *event {
                watcher::Event::Apply(event) | watcher::Event::InitApply(event) => {
                    self.observe_failed_create(&event)
                }
                _ => Vec::new(),
            },
        }
    }

    fn observe_job(&mut self, event: watcher::Event<Job>) -> Vec<ExecutorEvent> {
        match event {
            watcher::Event::Init => {
                self.listing = Some(BTreeSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(job) => {
                if let (Some(listing), Some(launch_id)) = (&mut self.listing, launch_of(&job)) {
                    listing.insert(launch_id);
                }
                self.job_seen(&job)
            }
            watcher::Event::InitDone => match self.listing.take() {
                Some(present) => vec![ExecutorEvent::Listed {
                    present,
                    reason: "its Job no longer exists: deleted, or removed after it ended, \
                             while Slipway was not watching"
                        .into(),
                }],
                None => Vec::new(),
            },
            watcher::Event::Apply(job) => self.job_seen(&job),
            watcher::Event::Delete(job) => {
                let (Some(launch_id), Some(name)) = (launch_of(&job), job.metadata.name.clone())
                else {
                    return Vec::new();
                };
                // A Job that had ended says so at once; one that had not is gone.
                let held = match self.deferred.remove(&launch_id) {
                    Some((_, Deferred::Verdict(report))) => Some(report),
                    _ => None,
                };
                let mut events = Vec::new();
                match job_report(&job).or(held) {
                    Some(verdict) => events.extend(self.status(verdict)),
                    None if !self.ended.contains(&launch_id) => events.push(ExecutorEvent::Gone {
                        launch_id: launch_id.clone(),
                        reason: format!("its Job {name} was deleted outside Slipway"),
                    }),
                    None => {}
                }
                self.ended.insert(launch_id.clone());
                // Nothing more will be said of this Job.
                self.last.remove(&launch_id);
                self.launch_of_job.remove(&name);
                events
            }
        }
    }

    fn job_seen(&mut self, job: &Job) -> Vec<ExecutorEvent> {
        let (Some(launch_id), Some(name)) = (launch_of(job), job.metadata.name.clone()) else {
            return Vec::new();
        };
        self.launch_of_job.insert(name.clone(), launch_id.clone());
        let mut events = Vec::new();
        if let Some(message) = self.early_events.remove(&name) {
            events.extend(self.status(StatusReport {
                launch_id: launch_id.clone(),
                status: LaunchStatus::Pending,
                reason: message,
            }));
        }
        if let Some(report) = job_report(job)
            && self.ended.insert(launch_id.clone())
        {
            // Replaces a pending loss: the verdict says more.
            self.deferred.insert(
                launch_id,
                (Instant::now() + VERDICT_GRACE, Deferred::Verdict(report)),
            );
        }
        events
    }

    fn observe_pod(&mut self, event: watcher::Event<Pod>) -> Vec<ExecutorEvent> {
        let (pod, deleted) = match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => (pod, false),
            watcher::Event::Delete(pod) => (pod, true),
            watcher::Event::Init | watcher::Event::InitDone => return Vec::new(),
        };
        let Some(report) = pod_report(&pod) else {
            return Vec::new();
        };
        let going = deleted || pod.metadata.deletion_timestamp.is_some();
        if going && !report.status.is_terminal() {
            if !self.ended.contains(&report.launch_id) {
                let reason = format!(
                    "its pod {} was deleted before the training ended (evicted, preempted or \
                     removed by hand); Slipway stopped the Job so that no second attempt logs \
                     into the same MLflow run",
                    pod.metadata.name.as_deref().unwrap_or_default()
                );
                self.deferred
                    .entry(report.launch_id)
                    .or_insert((Instant::now() + LOSS_GRACE, Deferred::Loss(reason)));
            }
            return Vec::new();
        }
        if report.status.is_terminal() {
            // The pod's own end: whatever was held back says less.
            self.deferred.remove(&report.launch_id);
        }
        self.status(report)
    }

    fn observe_failed_create(&mut self, event: &Event) -> Vec<ExecutorEvent> {
        let Some(job_name) = event.involved_object.name.clone() else {
            return Vec::new();
        };
        let message = join_reason(event.reason.as_deref(), event.message.as_deref());
        match self.launch_of_job.get(&job_name).cloned() {
            Some(launch_id) => self.status(StatusReport {
                launch_id,
                status: LaunchStatus::Pending,
                reason: message,
            }),
            None => {
                self.early_events.insert(job_name, message);
                Vec::new()
            }
        }
    }

    fn status(&mut self, report: StatusReport) -> Vec<ExecutorEvent> {
        let current = (report.status, report.reason.clone());
        if self.last.get(&report.launch_id) == Some(&current) {
            return Vec::new();
        }
        self.last.insert(report.launch_id.clone(), current);
        vec![ExecutorEvent::Status(report)]
    }

    fn next_due(&self) -> Option<Instant> {
        self.deferred.values().map(|(at, _)| *at).min()
    }

    /// The held-back ends whose grace is over.
    fn due(&mut self, now: Instant) -> Vec<ExecutorEvent> {
        let due: Vec<String> = self
            .deferred
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(launch_id, _)| launch_id.clone())
            .collect();
        let mut events = Vec::new();
        for launch_id in due {
            match self.deferred.remove(&launch_id) {
                Some((_, Deferred::Verdict(report))) => events.extend(self.status(report)),
                Some((_, Deferred::Loss(reason))) => {
                    self.ended.insert(launch_id.clone());
                    events.push(ExecutorEvent::Lost { launch_id, reason });
                }
                None => {}
            }
        }
        events
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn launch_of<K: kube::Resource>(object: &K) -> Option<String> {
    object.meta().labels.as_ref()?.get(LAUNCH_LABEL).cloned()
}

/// The Job's own verdict: finished or failed, with Kubernetes' reason.
pub fn job_report(job: &Job) -> Option<StatusReport> {
    let launch_id = job.metadata.labels.as_ref()?.get(LAUNCH_LABEL)?.clone();
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let terminal = conditions
        .iter()
        .filter(|condition| condition.status == "True")
        .find_map(|condition| match condition.type_.as_str() {
            "Complete" => Some((LaunchStatus::Succeeded, "Job complete".to_string())),
            "Failed" => Some((
                LaunchStatus::Failed,
                join_reason(condition.reason.as_deref(), condition.message.as_deref()),
            )),
            _ => None,
        })?;
    Some(StatusReport {
        launch_id,
        status: terminal.0,
        reason: terminal.1,
    })
}

/// What the pod says while the Job runs: scheduling, image pulls, running,
/// or how its container ended.
pub fn pod_report(pod: &Pod) -> Option<StatusReport> {
    let launch_id = pod.metadata.labels.as_ref()?.get(LAUNCH_LABEL)?.clone();
    let status = pod.status.as_ref()?;
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|statuses| statuses.iter().find(|status| status.name == CONTAINER));
    let state = container.and_then(|container| container.state.as_ref());
    let phase = status.phase.as_deref().unwrap_or_default();
    let (status, reason) =
        if let Some(terminated) = state.and_then(|state| state.terminated.as_ref()) {
            if terminated.exit_code == 0 {
                (
                    LaunchStatus::Succeeded,
                    "the training exited with code 0".to_string(),
                )
            } else {
                let how = terminated.reason.as_deref().unwrap_or("Error");
                (
                    LaunchStatus::Failed,
                    format!(
                        "{how}: the training exited with code {}",
                        terminated.exit_code
                    ),
                )
            }
        } else if phase == "Failed" {
            // Evicted pods end without container statuses: the pod says why.
            let reason = join_reason(status.reason.as_deref(), status.message.as_deref());
            (
                LaunchStatus::Failed,
                if reason.is_empty() {
                    "the pod failed".to_string()
                } else {
                    reason
                },
            )
        } else if phase == "Succeeded" {
            (LaunchStatus::Succeeded, "the pod succeeded".to_string())
        } else if let Some(waiting) = state.and_then(|state| state.waiting.as_ref()) {
            (
                LaunchStatus::Pending,
                join_reason(waiting.reason.as_deref(), waiting.message.as_deref()),
            )
        } else if state.and_then(|state| state.running.as_ref()).is_some() {
            (LaunchStatus::Running, String::new())
        } else {
            let unscheduled =
                status.conditions.iter().flatten().find(|condition| {
                    condition.type_ == "PodScheduled" && condition.status == "False"
                });
            match unscheduled {
                Some(condition) => (
                    LaunchStatus::Pending,
                    join_reason(condition.reason.as_deref(), condition.message.as_deref()),
                ),
                None => (
                    LaunchStatus::Pending,
                    status.phase.clone().unwrap_or_default(),
                ),
            }
        };
    Some(StatusReport {
        launch_id,
        status,
        reason,
    })
}

fn join_reason(reason: Option<&str>, message: Option<&str>) -> String {
    match (reason, message) {
        (Some(reason), Some(message)) if !message.is_empty() => format!("{reason}: {message}"),
        (Some(reason), _) => reason.to_string(),
        (None, Some(message)) => message.to_string(),
        (None, None) => String::new(),
    }
}
