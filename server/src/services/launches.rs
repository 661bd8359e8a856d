//! Launching training: the order of steps and the records. Every step is
//! written down before the next begins, so a failure anywhere leaves a launch
//! that says what happened, and nothing half-started.
//!
//! 1. record the launch (`Submitted`);
//! 2. create the MLflow run with its params and tags;
//! 3. hand it to the executor (`Pending`/`Running`), or mark launch and run failed;
//! 4. follow the executor's status reports to the end, finishing the MLflow
//!    run if the training code did not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use app::access::{Action, Grant, Role, User, authorize};
use app::model::{
    AuditAction, FieldErrors, Launch, LaunchCatalog, LaunchRequest, LaunchStatus, Notification,
    NotificationEvent, launch_fields,
};
use tokio::sync::{mpsc, watch};

use super::audit::{Audit, Outcome};
use crate::adapters::executor::{
    Executor, ExecutorEvent, GitCheckout, LogStream, StatusReport, TrainingJob,
};
use crate::adapters::git::Push;
use crate::adapters::mlflow::{MlflowClient, Tag};
use crate::adapters::process::ChildUser;
use crate::catalog::mlproject::PythonEnv;
use crate::catalog::{Catalog, ENV_CONDA, ENV_LOCAL, ENV_VIRTUALENV, Project};
use crate::error::{Error, Invalid, Result};
use crate::store::drafts::DraftForm;
use crate::store::launches::NewLaunch;
use crate::store::{Store, now_ms};

/// Where a launch that names no experiment goes, as with `mlflow run`.
pub const DEFAULT_EXPERIMENT: &str = "Default";
const MAX_NAME_LENGTH: usize = 250;

pub struct Launches {
    store: Store,
    audit: Audit,
    mlflow: MlflowClient,
    catalog: Arc<Catalog>,
    executor: Arc<dyn Executor>,
    /// Bumped whenever a launch changes, so live pages wake up at once.
    changes: watch::Sender<u64>,
    /// Where local launches of projects from git get their commit checked out.
    git_work: Option<PathBuf>,
    /// Whom checkouts are given to: the user trainings run as, when not
    /// Slipway's own.
    git_owner: Option<ChildUser>,
}

/// A form that passed validation.
struct Checked {
    values: BTreeMap<String, String>,
    argv: Vec<String>,
    /// The env manager the launch runs with (`mlflow.project.env`).
    env_manager: String,
    /// The virtualenv to build and run in (local executor, `virtualenv`).
    python_env: Option<PythonEnv>,
}

impl Launches {
    pub fn new(
        store: Store,
        mlflow: MlflowClient,
        catalog: Arc<Catalog>,
        executor: Arc<dyn Executor>,
    ) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
            mlflow,
            catalog,
            executor,
            changes: watch::channel(0).0,
            git_work: None,
            git_owner: None,
        }
    }

    /// Local launches of projects from git check their commit out under
    /// `root`, emptied now: what is there is from a Slipway that stopped
    /// (its trainings stopped with it).
    /// Trainings running as `owner` get their checkouts, and may pass
    /// through `root` (not list it) to reach them.
    pub fn checking_out_into(mut self, root: PathBuf, owner: Option<ChildUser>) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::create_dir_all(&root)?;
        if owner.is_some() {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))?;
        }
        self.git_work = Some(root);
        self.git_owner = owner;
        Ok(self)
    }

    pub fn backend(&self) -> &'static str {
        self.executor.backend()
    }

    /// Slipway stops: the trainings that are its children stop with it.
    pub async fn shutdown(&self) {
        self.executor.stop_all().await;
    }

    pub fn catalog(&self) -> LaunchCatalog {
        let mut profiles = self.catalog.profile_specs();
        if self.backend() == "local" {
            // A process here sees this machine's GPUs, whatever the profile says.
            let present = crate::adapters::executor::local::gpus_present();
            for profile in profiles.iter_mut().filter(|profile| profile.gpus > present) {
                profile.warning = Some(format!(
                    "This machine has {present} GPU{}: a launch on {} runs without the {} it asks for.",
                    if present == 1 { "" } else { "s" },
                    profile.name,
                    if profile.gpus == 1 {
                        "GPU".to_string()
                    } else {
                        format!("{} GPUs", profile.gpus)
                    }
                ));
            }
        }
        LaunchCatalog {
            backend: self.backend().into(),
            projects: self.catalog.project_specs(),
            profiles,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Applies what the executor sees as it comes, until every sender is gone.
    pub fn follow(self: &Arc<Self>, mut events: mpsc::UnboundedReceiver<ExecutorEvent>) {
        let launcher = self.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Err(err) = launcher.observe(event).await {
                    tracing::error!(error = %err, "recording what the executor saw");
                }
            }
        });
    }

    async fn observe(&self, event: ExecutorEvent) -> Result<()> {
        match event {
            ExecutorEvent::Status(report) => self.apply(&report).await.map(drop),
            ExecutorEvent::Gone { launch_id, reason } => self.end_gone(&launch_id, &reason).await,
            ExecutorEvent::Lost { launch_id, reason } => {
                let ended = self
                    .apply(&StatusReport {
                        launch_id: launch_id.clone(),
                        status: LaunchStatus::Failed,
                        reason,
                    })
                    .await?;
                if ended
                    && let Some(launch) = self.store.launch(&launch_id).await?
                    && let Some(executor_ref) = &launch.executor_ref
                    && let Err(err) = self.executor.cancel(&launch_id, executor_ref).await
                {
                    tracing::warn!(launch = %launch_id, error = %err, "stopping a training that lost its pod");
                }
                Ok(())
            }
            ExecutorEvent::Listed { present, reason } => {
                for launch in self.store.unfinished_launches(self.backend()).await? {
                    let Some(executor_ref) = &launch.executor_ref else {
                        continue;
                    };
                    if present.contains(&launch.id) {
                        continue;
                    }
                    // The listing may predate a Job created since: ask again.
                    match self.executor.is_present(&launch.id, executor_ref).await {
                        Ok(false) => self.end_gone(&launch.id, &reason).await?,
                        Ok(true) => {}
                        Err(err) => {
                            tracing::warn!(launch = %launch.id, error = %err, "checking a launch's training")
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// A training that is gone without a word of its end: the MLflow run
    /// says whether the code finished it.
    async fn end_gone(&self, launch_id: &str, reason: &str) -> Result<()> {
        let Some(launch) = self.store.launch(launch_id).await? else {
            return Ok(());
        };
        if launch.status.is_terminal() {
            return Ok(());
        }
        let run_status = match &launch.run_id {
            Some(run_id) => match self.mlflow.get_run(run_id).await {
                Ok(run) => Some(run.info.status),
                Err(err) => {
                    tracing::warn!(launch = %launch_id, error = %err, "reading the run of a launch that is gone");
                    None
                }
            },
            None => None,
        };
        let (status, reason) = match run_status.as_deref() {
            Some("FINISHED") => (
                LaunchStatus::Succeeded,
                format!("{reason}; the MLflow run had finished"),
            ),
            Some("KILLED") => (
                LaunchStatus::Cancelled,
                format!("{reason}; the MLflow run was killed"),
            ),
            _ => (LaunchStatus::Failed, reason.to_string()),
        };
        self.apply(&StatusReport {
            launch_id: launch_id.into(),
            status,
            reason,
        })
        .await?;
        Ok(())
    }

    /// The env manager a launch of `project` runs with, and the virtualenv
    /// to build for it. On Kubernetes the image is the environment.
    fn env_manager(
        &self,
        project: &Project,
        asked: &str,
    ) -> Result<(String, Option<PythonEnv>), String> {
        if self.backend() != "local" {
            return Ok(("docker".into(), None));
        }
        let offered = project.env_managers();
        let chosen = match asked.trim() {
            "" => offered[0].as_str(),
            ENV_CONDA if project.mlproject.conda_env.is_some() => {
                return Err(project.env_note().expect("a conda_env"));
            }
            asked => offered
                .iter()
                .map(String::as_str)
                .find(|offered| *offered == asked)
                .ok_or_else(|| {
                    format!(
                        "{asked:?} is not an environment for {:?}; choose {}",
                        project.name,
                        offered.join(" or ")
                    )
                })?,
        };
        match chosen {
            ENV_VIRTUALENV => Ok((chosen.into(), project.python_env.clone())),
            _ => Ok((ENV_LOCAL.into(), None)),
        }
    }

    /// The errors a form sent back shows next to its fields. The form
    /// always gets a fresh submission token, so that one is not checked.
    pub fn check(&self, request: &LaunchRequest) -> FieldErrors {
        let mut errors = self.checked(request).err().unwrap_or_default();
        errors.remove(launch_fields::SUBMISSION);
        errors
    }

    fn checked(&self, request: &LaunchRequest) -> Result<Checked, FieldErrors> {
        let mut errors = FieldErrors::new();
        let valid_token = !request.submission.is_empty()
            && request.submission.len() <= 64
            && request
                .submission
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid_token {
            errors.insert(
                "submission".into(),
                "this form is out of date; reload the page".into(),
            );
        }
        let mut checked = None;
        match self.catalog.project(&request.project) {
            None => {
                errors.insert(
                    "project".into(),
                    format!("no project named {:?}", request.project),
                );
            }
            Some(project)
                if self.backend() == "local" && project.mlproject.docker_image.is_some() =>
            {
                errors.insert(
                    "project".into(),
                    format!(
                        "{:?} declares docker_env: it runs in a container, and this Slipway runs \
                         trainings as processes on its own machine, with no container runtime. \
                         Launch it from a Slipway that runs trainings on Kubernetes (or give the \
                         project its image in the catalog instead of in MLproject).",
                        request.project
                    ),
                );
            }
            Some(project) => match project.mlproject.entry_point(&request.entry_point) {
                None => {
                    errors.insert(
                        "entry_point".into(),
                        format!(
                            "{:?} has no entry point {:?}",
                            request.project, request.entry_point
                        ),
                    );
                }
                Some(entry) => match (
                    entry.resolve(&request.params),
                    self.env_manager(project, &request.env_manager),
                ) {
                    (Ok(values), Ok((env_manager, python_env))) => {
                        checked = Some(Checked {
                            argv: entry.argv(&values),
                            values,
                            env_manager,
                            python_env,
                        })
                    }
                    (params, env) => {
                        if let Err(param_errors) = params {
                            errors.extend(
                                param_errors
                                    .into_iter()
                                    .map(|(name, message)| (format!("param.{name}"), message)),
                            );
                        }
                        if let Err(message) = env {
                            errors.insert(launch_fields::ENV_MANAGER.into(), message);
                        }
                    }
                },
            },
        }
        if self.catalog.profile(&request.profile).is_none() {
            let message = if request.profile.is_empty() {
                "choose a hardware profile".to_string()
            } else {
                format!("no hardware profile named {:?}", request.profile)
            };
            errors.insert("profile".into(), message);
        }
        let new_experiment = request.new_experiment.trim();
        if new_experiment.is_empty() {
            // Neither: MLflow's Default experiment, as `mlflow run` uses.
            let id = request.experiment_id.trim();
            if !id.chars().all(|c| c.is_ascii_digit()) {
                errors.insert(
                    "experiment".into(),
                    "choose an experiment or name a new one".into(),
                );
            }
        } else if new_experiment.chars().count() > MAX_NAME_LENGTH {
            errors.insert(
                "experiment".into(),
                format!("at most {MAX_NAME_LENGTH} characters"),
            );
        }
        if request.run_name.trim().chars().count() > MAX_NAME_LENGTH {
            errors.insert(
                "run_name".into(),
                format!("at most {MAX_NAME_LENGTH} characters"),
            );
        }
        match checked {
            Some(checked) if errors.is_empty() => Ok(checked),
            _ => Err(errors),
        }
    }

    /// Launches what the form asks for: the launch as recorded (perhaps
    /// earlier, for the same form; it may have failed). A form with errors
    /// records nothing: `Error::Invalid` with an error per field.
    pub async fn submit(&self, user: &User, request: &LaunchRequest) -> Result<Launch> {
        authorize(
            user,
            Action::Launch {
                project: &request.project,
            },
        )?;
        let checked = self.checked(request).map_err(|fields| {
            Error::Invalid(Invalid {
                fields,
                ..Invalid::default()
            })
        })?;
        let git_commit = self.pinned_commit(request).await?;
        let run_name = match request.run_name.trim() {
            "" => format!("{}-{}", request.project, request.entry_point),
            name => name.to_string(),
        };
        let (launch, new) = self
            .store
            .insert_launch(&NewLaunch {
                submission: request.submission.clone(),
                project: request.project.clone(),
                entry_point: request.entry_point.clone(),
                params: checked.values.clone(),
                profile: request.profile.clone(),
                backend: self.backend().into(),
                run_name: run_name.clone(),
                env_manager: checked.env_manager.clone(),
                launched_by: user.name.clone(),
                git_commit,
            })
            .await?;
        if !new {
            return Ok(launch);
        }
        let audit = self
            .audit
            .begin(
                &user.actor(),
                AuditAction::Launch,
                &launch_subject(&launch.id),
                &format!(
                    "{} {} on {}",
                    launch.project, launch.entry_point, launch.profile
                ),
            )
            .await?;
        self.bump();
        let started = self
            .prepare_and_start(user, request, &launch, checked, &run_name)
            .await;
        let outcome = match &started {
            Err(err) => Outcome::failed(err),
            Ok(launch) => launch_outcome(launch),
        };
        // A training that ended meanwhile has written how.
        audit.complete_unless_settled(outcome).await?;
        started
    }

    /// Launches what the catalog says a push to this branch of this
    /// repository launches, at the pushed commit. A delivery made again
    /// finds the launches of the first (one submission per project, entry
    /// point and commit).
    pub async fn on_push(&self, push: &Push) -> Result<Vec<Launch>> {
        let mut launched = Vec::new();
        for project in &self.catalog.projects {
            let Some(git) = &project.git else { continue };
            let same = push
                .repository_urls
                .iter()
                .any(|url| crate::adapters::git::same_repository(url, &git.url));
            if !same || git.branch != push.branch {
                continue;
            }
            // Not an account (names have no spaces): the push, as the log says who made it.
            let pusher = User {
                name: format!("git push by {}", clean(&push.pusher)),
                authenticated: true,
                grants: vec![Grant {
                    role: Role::Trainer,
                    scope: vec![project.name.clone()],
                }],
                token: None,
            };
            for on_push in &git.on_push {
                let request = LaunchRequest {
                    submission: push_submission(&project.name, &on_push.entry_point, &push.commit),
                    project: project.name.clone(),
                    entry_point: on_push.entry_point.clone(),
                    params: on_push.params.clone(),
                    experiment_id: String::new(),
                    new_experiment: on_push.experiment.clone(),
                    profile: on_push.profile.clone(),
                    run_name: format!(
                        "{}-{}-{}",
                        project.name,
                        on_push.entry_point,
                        &push.commit[..8]
                    ),
                    env_manager: String::new(),
                    commit: push.commit.clone(),
                };
                launched.push(self.submit(&pusher, &request).await?);
            }
        }
        Ok(launched)
    }

    /// The commit a launch of a project from git runs: the one asked for,
    /// or the branch's newest now. `None` for a project from a directory.
    async fn pinned_commit(&self, request: &LaunchRequest) -> Result<Option<String>> {
        let asked = request.commit.trim();
        let invalid = |problem: String| {
            Error::Invalid(Invalid {
                fields: FieldErrors::from([("commit".to_string(), problem)]),
                ..Invalid::default()
            })
        };
        let git = self
            .catalog
            .project(&request.project)
            .and_then(|project| project.git.as_ref());
        match (git, asked) {
            (None, "") => Ok(None),
            (None, _) => Err(invalid(format!(
                "{} is not a project from git: it has no commits to choose",
                request.project
            ))),
            (Some(_), commit) if !commit.is_empty() => {
                if crate::adapters::git::is_commit(commit) {
                    Ok(Some(commit.to_ascii_lowercase()))
                } else {
                    Err(invalid("a commit's full id: 40 hexadecimal digits".into()))
                }
            }
            (Some(git), _) => Ok(Some(
                crate::adapters::git::branch_head(&git.url, &git.branch).await?,
            )),
        }
    }

    /// Keeps a form that was refused as invalid, for the user to fix: its
    /// id (the values stay on the server: a URL of them could be megabytes).
    pub async fn keep_draft(&self, user: &User, request: &LaunchRequest) -> Result<String> {
        self.store
            .insert_draft(&user.name, DraftForm::Launch, request)
            .await
    }

    /// A launch form the user sent that came back with errors.
    pub async fn draft(&self, user: &User, id: &str) -> Result<LaunchRequest> {
        self.store
            .draft(&user.name, DraftForm::Launch, id)
            .await?
            .ok_or_else(|| {
                Error::NotFound("no such launch form (sent-back forms are kept for an hour)".into())
            })
    }

    async fn prepare_and_start(
        &self,
        user: &User,
        request: &LaunchRequest,
        launch: &Launch,
        checked: Checked,
        run_name: &str,
    ) -> Result<Launch> {
        let experiment_id = match (request.new_experiment.trim(), request.experiment_id.trim()) {
            ("", "") => self.mlflow.ensure_experiment(DEFAULT_EXPERIMENT).await,
            ("", id) => Ok(id.to_string()),
            (name, _) => self.mlflow.ensure_experiment(name).await,
        };
        let experiment_id = match experiment_id {
            Ok(id) => id,
            Err(err) => {
                return self
                    .fail(launch, None, &format!("creating the experiment: {err}"))
                    .await;
            }
        };
        let project = self.catalog.project(&launch.project).expect("checked");
        let code = match (&project.git, &launch.git_commit) {
            (Some(git), Some(commit)) => vec![
                ("mlflow.source.git.commit", commit.clone()),
                (
                    "mlflow.source.git.repoURL",
                    crate::adapters::git::without_credentials(&git.url),
                ),
                ("mlflow.source.git.branch", git.branch.clone()),
            ],
            _ => code_version(&project.directory).await,
        };
        let mut tags: Vec<Tag> = [
            ("mlflow.source.type", "PROJECT"),
            ("mlflow.source.name", launch.project.as_str()),
            ("mlflow.project.entryPoint", launch.entry_point.as_str()),
            ("mlflow.project.backend", self.backend()),
            ("mlflow.project.env", checked.env_manager.as_str()),
            ("mlflow.user", user.name.as_str()),
            ("slipway.launch_id", launch.id.as_str()),
            ("slipway.profile", launch.profile.as_str()),
        ]
        .map(|(key, value)| Tag {
            key: key.into(),
            value: value.into(),
        })
        .into();
        tags.extend(code.into_iter().map(|(key, value)| Tag {
            key: key.into(),
            value,
        }));
        let run = match self
            .mlflow
            .create_run(&experiment_id, run_name, &user.name, now_ms(), &tags)
            .await
        {
            Ok(run) => run,
            Err(err) => {
                return self
                    .fail(launch, None, &format!("creating the MLflow run: {err}"))
                    .await;
            }
        };
        self.store
            .set_launch_run(&launch.id, &experiment_id, &run.run_id)
            .await?;
        let params: Vec<_> = checked.values.into_iter().collect();
        if let Err(err) = self.mlflow.log_params(&run.run_id, &params).await {
            return self
                .fail(
                    launch,
                    Some(&run.run_id),
                    &format!("logging the parameters: {err}"),
                )
                .await;
        }
        let profile = self.catalog.profile(&launch.profile).expect("checked");
        let git = match (&project.git, &launch.git_commit) {
            (Some(git), Some(commit)) => Some(GitCheckout {
                url: git.url.clone(),
                commit: commit.clone(),
                path: git.path.clone(),
                secret: git.secret.clone(),
            }),
            _ => None,
        };
        // Here the commit is fetched into a directory of its own; a Job
        // fetches it itself.
        let directory = match &git {
            Some(checkout) if self.backend() == "local" => {
                match self.check_out(&launch.id, checkout).await {
                    Ok(directory) => directory,
                    Err(err) => {
                        return self.fail(launch, Some(&run.run_id), &err.to_string()).await;
                    }
                }
            }
            _ => project.directory.clone(),
        };
        let job = TrainingJob {
            launch_id: launch.id.clone(),
            run_id: run.run_id.clone(),
            experiment_id,
            project: project.name.clone(),
            entry_point: launch.entry_point.clone(),
            directory,
            image: project.image.clone(),
            argv: checked.argv,
            profile: profile.clone(),
            python_env: checked.python_env,
            git,
        };
        match self.executor.start(&job).await {
            Ok(executor_ref) => {
                self.store
                    .set_launch_executor_ref(&launch.id, &executor_ref)
                    .await?;
                // Cancelled while it was being set up: stop what just started.
                let current = self.store.launch(&launch.id).await?;
                if current.is_some_and(|current| current.status == LaunchStatus::Cancelled)
                    && let Err(err) = self.executor.cancel(&launch.id, &executor_ref).await
                {
                    tracing::warn!(launch = %launch.id, error = %err, "stopping a launch cancelled during set-up");
                }
                if self
                    .store
                    .mark_launch_started(&launch.id, &format!("started on {}", self.backend()))
                    .await?
                {
                    self.bump();
                }
                Ok(self.store.launch(&launch.id).await?.expect("recorded"))
            }
            Err(err) => self.fail(launch, Some(&run.run_id), &err.to_string()).await,
        }
    }

    /// Marks the launch failed and its MLflow run (if any) FAILED, with why.
    async fn fail(&self, launch: &Launch, run_id: Option<&str>, reason: &str) -> Result<Launch> {
        tracing::warn!(launch = %launch.id, reason, "launch failed");
        self.transition(&launch.id, LaunchStatus::Failed, reason)
            .await?;
        if let Some(run_id) = run_id {
            self.end_mlflow_run(run_id, LaunchStatus::Failed, reason)
                .await;
        }
        Ok(self.store.launch(&launch.id).await?.expect("recorded"))
    }

    /// Records a status; returns whether it ended the launch just now.
    async fn apply(&self, report: &StatusReport) -> Result<bool> {
        let Some((launch, changed)) = self
            .transition(&report.launch_id, report.status, &report.reason)
            .await?
        else {
            // Another Slipway's launch in the same namespace, or a forgotten one.
            tracing::debug!(launch = %report.launch_id, "status for an unknown launch");
            return Ok(false);
        };
        let ended = changed && launch.status.is_terminal();
        if ended && let Some(run_id) = &launch.run_id {
            self.end_mlflow_run(run_id, launch.status, &launch.reason)
                .await;
        }
        Ok(ended)
    }

    /// Moves the launch forward: never back from running to pending, never
    /// out of an end state.
    async fn transition(
        &self,
        id: &str,
        status: LaunchStatus,
        reason: &str,
    ) -> Result<Option<(Launch, bool)>> {
        let outcome = self.store.update_launch_status(id, status, reason).await?;
        if let Some((launch, true)) = &outcome {
            self.bump();
            if launch.status.is_terminal() {
                self.audit
                    .settle(
                        AuditAction::Launch,
                        &launch_subject(id),
                        launch_outcome(launch),
                    )
                    .await?;
                self.tell_ended(launch).await;
                self.forget_checkout(id).await;
            }
        }
        Ok(outcome)
    }

    /// A launch's own copy of its commit (`git_work/<launch id>`); the
    /// directory its `MLproject` is in.
    async fn check_out(&self, launch_id: &str, checkout: &GitCheckout) -> Result<PathBuf> {
        let root = self.git_work.as_ref().ok_or_else(|| {
            Error::Unavailable("no work directory for checking out git projects".into())
        })?;
        let into = root.join(launch_id);
        crate::adapters::git::check_out(&checkout.url, &checkout.commit, &into).await?;
        if let Some(owner) = self.git_owner {
            let given = into.clone();
            tokio::task::spawn_blocking(move || crate::adapters::process::give_to(&given, owner))
                .await
                .map_err(|err| Error::Internal(format!("giving a checkout away: {err}")))??;
        }
        Ok(into.join(&checkout.path))
    }

    /// Removes an ended launch's checkout, if it had one.
    async fn forget_checkout(&self, launch_id: &str) {
        let Some(root) = &self.git_work else { return };
        let checkout = root.join(launch_id);
        if tokio::fs::metadata(&checkout).await.is_ok()
            && let Err(err) = tokio::fs::remove_dir_all(&checkout).await
        {
            tracing::warn!(launch = launch_id, error = %err, "removing a launch's checkout");
        }
    }

    /// Tells the channels how a training ended (a cancel is someone's act, not news).
    async fn tell_ended(&self, launch: &Launch) {
        let (event, how) = match launch.status {
            LaunchStatus::Succeeded => {
                (NotificationEvent::LaunchSucceeded, "succeeded".to_string())
            }
            LaunchStatus::Failed => (
                NotificationEvent::LaunchFailed,
                format!("failed: {}", launch.reason),
            ),
            _ => return,
        };
        let notification = Notification {
            event,
            at_ms: crate::store::now_ms(),
            text: format!(
                "{} {} on {} by {} {how}",
                launch.project, launch.entry_point, launch.profile, launch.launched_by
            ),
            link: app::routes::launch_href(&launch.id),
            model: None,
            version: None,
            launch_id: Some(launch.id.clone()),
            request_id: None,
            run_id: launch.run_id.clone(),
            actor: Some(launch.launched_by.clone()),
        };
        super::notifications::tell(&self.store, notification).await;
    }

    /// Writes the end to the MLflow run unless the training code already did.
    async fn end_mlflow_run(&self, run_id: &str, status: LaunchStatus, reason: &str) {
        let mlflow_status = match status {
            LaunchStatus::Succeeded => "FINISHED",
            LaunchStatus::Cancelled => "KILLED",
            _ => "FAILED",
        };
        let still_open = match self.mlflow.get_run(run_id).await {
            Ok(run) => matches!(run.info.status.as_str(), "RUNNING" | "SCHEDULED"),
            Err(err) => {
                tracing::warn!(run_id, error = %err, "reading the run to finish it");
                true
            }
        };
        if !still_open {
            return;
        }
        if status != LaunchStatus::Succeeded
            && let Err(err) = self
                .mlflow
                .set_run_tag(run_id, "slipway.end_reason", reason)
                .await
        {
            tracing::warn!(run_id, error = %err, "tagging the run with its end");
        }
        if let Err(err) = self.mlflow.end_run(run_id, mlflow_status, now_ms()).await {
            tracing::warn!(run_id, error = %err, "finishing the MLflow run");
        }
    }

    pub async fn cancel(&self, user: &User, id: &str) -> Result<Launch> {
        let launch = self.launch(id).await?;
        authorize(
            user,
            Action::Cancel {
                project: &launch.project,
                launched_by: &launch.launched_by,
            },
        )?;
        if launch.status.is_terminal() {
            return Err(Error::invalid(format!(
                "this launch has already ended ({})",
                launch.status.as_str()
            )));
        }
        let reason = format!("cancelled by {}", user.name);
        let audit = self
            .audit
            .begin(
                &user.actor(),
                AuditAction::Cancel,
                &launch_subject(&launch.id),
                &reason,
            )
            .await?;
        if let Some(executor_ref) = &launch.executor_ref
            && let Err(err) = self.executor.cancel(&launch.id, executor_ref).await
        {
            return audit.finish(Err(err)).await;
        }
        self.apply(&StatusReport {
            launch_id: launch.id.clone(),
            status: LaunchStatus::Cancelled,
            reason: reason.clone(),
        })
        .await?;
        audit.complete(Outcome::Done).await?;
        self.launch(id).await
    }

    pub async fn launch(&self, id: &str) -> Result<Launch> {
        self.store
            .launch(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no launch {id:?}")))
    }

    pub async fn recent(&self, limit: i64) -> Result<Vec<Launch>> {
        self.store.recent_launches(limit).await
    }

    pub async fn logs(&self, launch: &Launch) -> Result<LogStream> {
        match &launch.executor_ref {
            Some(executor_ref) => self.executor.logs(&launch.id, executor_ref).await,
            None => Ok(Box::pin(futures::stream::empty())),
        }
    }

    /// Launches whose start was under way in a process that is gone (not
    /// seen since `alive_since`, ms) are closed with that reason; those
    /// that were started are settled by the executor's first listing
    /// (`ExecutorEvent::Listed`).
    pub async fn settle_interrupted(&self, alive_since: i64) -> Result<usize> {
        let left = self
            .store
            .launches_left_starting(self.backend(), alive_since)
            .await?;
        for launch in &left {
            self.fail(
                launch,
                launch.run_id.as_deref(),
                "Slipway stopped while it was starting this training",
            )
            .await?;
        }
        Ok(left.len())
    }

    fn bump(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }
}

/// The code a launch runs, as `mlflow run` records it: the git commit of
/// the project's directory (and the repository's origin), when it is in a
/// git checkout; nothing otherwise. `git` is run without a shell and may
/// take at most two seconds.
async fn code_version(directory: &std::path::Path) -> Vec<(&'static str, String)> {
    let git = |args: &'static [&'static str]| async move {
        let output = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::process::Command::new("git")
                // Git needs none of Slipway's settings or secrets.
                .env_clear()
                .envs(
                    ["PATH", "HOME"]
                        .iter()
                        .filter_map(|name| std::env::var_os(name).map(|value| (name, value))),
                )
                .arg("-C")
                .arg(directory)
                .args(args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .ok()?
        .ok()?;
        let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
        (output.status.success() && !text.is_empty()).then_some(text)
    };
    let mut tags = Vec::new();
    if let Some(commit) = git(&["rev-parse", "HEAD"]).await {
        tags.push(("mlflow.source.git.commit", commit));
        if let Some(origin) = git(&["remote", "get-url", "origin"]).await {
            tags.push((
                "mlflow.source.git.repoURL",
                crate::adapters::git::without_credentials(&origin),
            ));
        }
    }
    tags
}

/// The audit log's subject for a launch.
fn launch_subject(id: &str) -> String {
    format!("launch:{id}")
}

/// What the audit log says of a launch as it now is.
fn launch_outcome(launch: &Launch) -> Outcome {
    match launch.status {
        LaunchStatus::Failed => Outcome::failed(&launch.reason),
        status => Outcome::DoneWith(status.as_str().into()),
    }
}

/// A name from a push payload, fit for a log line: printable, short.
fn clean(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    if name.is_empty() {
        "someone".into()
    } else {
        name
    }
}

/// One submission per project, entry point and commit (the form's token
/// alphabet: letters, digits and '-').
fn push_submission(project: &str, entry_point: &str, commit: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{project}\0{entry_point}\0{commit}").as_bytes());
    let hex: String = digest
        .iter()
        .take(20)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("push-{hex}")
}
