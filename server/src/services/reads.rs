//! The read side: what pages show, read from MLflow (through the page
//! client, with its deadline and kept answers) and the store. Reading is
//! open to every signed-in user; nothing here changes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use app::access::User;
use app::model::{
    ArtifactEntry, ArtifactOwner, ArtifactPreview, AuditEntry, AuditQuery, DeploymentDetail,
    DeploymentView, Experiment, ExperimentPage, Launch, LaunchForm, ListQuery, MAX_PAGE_SIZE,
    MetricHistory, ModelDetail, ModelSummary, ModelVersionInfo, ModelsPage, PromotionRequest,
    RolloutPanel, RunDetail, RunQuery, RunRow, RunsPage, ServedBy, TrafficRange, TrafficReport,
    TryAnswer, VersionDetail, VersionSummary,
};

use super::artifacts::signature_of;
use super::launches::Launches;
use super::registry::registrable_models;
use crate::adapters::mlflow::{self, MlflowClient, MlflowError, SearchExperiments, SearchRuns};
use crate::catalog::{DeploymentBinding, ProductionMarker};
use crate::error::{Error, Result};
use crate::serving::protocol;
use crate::serving::reconciler::Reconciler;
use crate::store::drafts::DraftForm;
use crate::store::{self, Store};
use crate::traffic::Traffic;

/// MLflow's largest page of model versions; a model has rarely more.
const VERSIONS_PAGE_SIZE: u32 = 1000;
const HISTORY_REQUESTS_IN_FLIGHT: usize = 8;

pub struct Reads {
    /// The page client: a deadline a page can wait, and kept answers.
    mlflow: MlflowClient,
    store: Store,
    launches: Arc<Launches>,
    reconciler: Arc<Reconciler>,
    traffic: Arc<Traffic>,
    example_inputs: ExampleInputs,
}

/// Each model version's input example, read from MLflow once (a version's
/// artifacts never change): a deployment's page, re-read every second,
/// costs MLflow nothing, and still shows while MLflow is down.
#[derive(Default)]
pub struct ExampleInputs(
    std::sync::Mutex<std::collections::HashMap<(String, String), Option<String>>>,
);

/// Deployment events read to mark changes on a traffic chart and to tell
/// which version served when.
const TRAFFIC_HISTORY_READ: i64 = 500;

/// Deployment events a deployment's page shows.
const DEPLOYMENT_HISTORY_SHOWN: i64 = 50;

impl Reads {
    pub fn new(
        mlflow: MlflowClient,
        store: Store,
        launches: Arc<Launches>,
        reconciler: Arc<Reconciler>,
        traffic: Arc<Traffic>,
    ) -> Self {
        Self {
            traffic,
            mlflow,
            store,
            launches,
            reconciler,
            example_inputs: ExampleInputs::default(),
        }
    }

    /// Whether MLflow answers (the readiness probe).
    pub async fn mlflow_health(&self) -> Result<()> {
        Ok(self.mlflow.health().await?)
    }

    /// One artifact file, as MLflow starts sending it (for a download).
    pub async fn open_artifact(
        &self,
        owner: &ArtifactOwner,
        path: &str,
    ) -> Result<reqwest::Response> {
        Ok(self.mlflow.open_artifact(owner, path).await?)
    }
}

/// A version with the latest metrics and parameters of the run it came
/// from, and its signature: one side of a promotion's evidence.
pub async fn version_summary(
    mlflow: &MlflowClient,
    model: &str,
    version: &str,
) -> Result<VersionSummary> {
    let found = mlflow.get_model_version(model, version).await?;
    let (metrics, params) = if found.run_id.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let run = mlflow.get_run(&found.run_id).await?;
        let mut metrics: Vec<_> = run
            .data
            .metrics
            .into_iter()
            .map(|metric| (metric.key, metric.value))
            .collect();
        metrics.sort_by(|a, b| a.0.cmp(&b.0));
        let mut params: Vec<_> = run
            .data
            .params
            .into_iter()
            .map(|param| (param.key, param.value))
            .collect();
        params.sort();
        (metrics, params)
    };
    let uri = mlflow.model_version_download_uri(model, version).await?;
    let signature = mlflow
        .read_artifact_text(&uri, "MLmodel")
        .await?
        .and_then(|text| signature_of(&text));
    Ok(VersionSummary {
        version: found.version,
        run_id: found.run_id,
        stage: found.current_stage,
        metrics,
        params,
        signature,
    })
}

/// Launches the list page shows.
const LAUNCHES_LISTED: i64 = 200;

impl Reads {
    pub async fn search_experiments(&self, query: ListQuery) -> Result<ExperimentPage> {
        let request = SearchExperiments {
            max_results: checked_page_size(&query)?,
            filter: name_filter(&query)?,
            order_by: vec![
                list_order(
                    &query,
                    &[
                        ("name", "name"),
                        ("created", "creation_time"),
                        ("updated", "last_update_time"),
                    ],
                )?,
                "name ASC".into(),
            ],
            page_token: query.page_token,
        };
        let (response, as_of) =
            mlflow::cache::with_age(self.mlflow.search_experiments(&request)).await;
        let response = response?;
        Ok(ExperimentPage {
            experiments: response
                .experiments
                .into_iter()
                .map(to_experiment)
                .collect(),
            next_page_token: response.next_page_token,
            mlflow_url: self.mlflow.url(),
            as_of: store::epoch_ms(as_of),
        })
    }

    pub async fn get_experiment(&self, experiment_id: String) -> Result<Experiment> {
        let experiment = self.mlflow.get_experiment(&experiment_id).await?;
        Ok(to_experiment(experiment))
    }

    pub async fn search_runs(&self, query: RunQuery) -> Result<RunsPage> {
        let max_results = checked_size(query.page_size)?;
        // MLflow itself breaks ties (start time, then run id) and sorts by
        // start time, newest first, when nothing else is asked for.
        let order_by = match query.order_by.as_deref() {
            Some(column) => vec![mlflow::run_order_clause(column, query.descending)?],
            None => Vec::new(),
        };
        let request = SearchRuns {
            experiment_ids: vec![query.experiment_id],
            filter: query.filter.filter(|filter| !filter.trim().is_empty()),
            order_by,
            max_results,
            page_token: query.page_token,
        };
        let response = self.mlflow.search_runs(&request).await?;
        let runs: Vec<RunRow> = response.runs.into_iter().map(to_run_row).collect();
        let param_keys = sorted_keys(runs.iter().flat_map(|run| &run.params).map(|(key, _)| key));
        let metric_keys = sorted_keys(runs.iter().flat_map(|run| &run.metrics).map(|(key, _)| key));
        Ok(RunsPage {
            param_keys,
            metric_keys,
            runs,
            next_page_token: response.next_page_token,
        })
    }

    pub async fn get_run(&self, run_id: String) -> Result<RunDetail> {
        let versions_filter = format!("run_id = '{}'", checked_run_id(&run_id)?);
        let (run, versions) = tokio::join!(
            self.mlflow.get_run(&run_id),
            self.all_versions(&versions_filter)
        );
        let run = run?;
        let registrable = registrable_models(&self.mlflow, &run).await;
        let mut registered_versions: Vec<ModelVersionInfo> =
            versions?.into_iter().map(to_version_info).collect();
        registered_versions.sort_by(|a, b| {
            (&a.model, version_number(&a.version)).cmp(&(&b.model, version_number(&b.version)))
        });
        // For the breadcrumb only: the page shows without it.
        let experiment_name = self
            .mlflow
            .get_experiment(&run.info.experiment_id)
            .await
            .ok()
            .map(|experiment| experiment.name);
        Ok(RunDetail {
            experiment_id: run.info.experiment_id.clone(),
            experiment_name,
            artifact_uri: run.info.artifact_uri.clone(),
            tags: run
                .data
                .tags
                .iter()
                .map(|tag| (tag.key.clone(), tag.value.clone()))
                .collect(),
            logged_models: run
                .outputs
                .model_outputs
                .iter()
                .map(|output| output.model_id.clone())
                .collect(),
            registrable,
            run: to_run_row(run),
            registered_versions,
        })
    }

    pub async fn metric_histories(&self, run_ids: Vec<String>) -> Result<Vec<MetricHistory>> {
        app::model::check_compared_runs(run_ids.len()).map_err(Error::invalid)?;
        let runs =
            futures::future::try_join_all(run_ids.iter().map(|run_id| self.mlflow.get_run(run_id)))
                .await?;
        let wanted: Vec<(&mlflow::Run, &str)> = runs
            .iter()
            .flat_map(|run| {
                run.data
                    .metrics
                    .iter()
                    .map(move |metric| (run, metric.key.as_str()))
            })
            .collect();
        // A bounded number in flight: a comparison can ask for hundreds of
        // histories, and MLflow may run a single worker.
        let requests: Vec<_> = wanted
            .iter()
            .map(|(run, key)| self.mlflow.metric_history(&run.info.run_id, key))
            .collect();
        let histories: Vec<Vec<mlflow::Metric>> = futures::stream::iter(requests)
            .buffered(HISTORY_REQUESTS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(wanted
            .into_iter()
            .zip(histories)
            .map(|((run, key), history)| {
                let mut points: Vec<(i64, i64, f64)> = history
                    .into_iter()
                    .map(|metric| (metric.step, metric.timestamp, metric.value))
                    .collect();
                points.sort_by_key(|(step, timestamp, _)| (*step, *timestamp));
                MetricHistory {
                    run_id: run.info.run_id.clone(),
                    run_name: display_name(&run.info),
                    key: key.to_string(),
                    points,
                }
            })
            .collect())
    }

    pub async fn list_artifacts(
        &self,
        owner: ArtifactOwner,
        path: Option<String>,
    ) -> Result<Vec<ArtifactEntry>> {
        let path = path.filter(|path| !path.is_empty());
        if path
            .as_deref()
            .is_some_and(|path| path.split('/').any(|part| part == ".."))
        {
            return Err(Error::invalid("An artifact path cannot go up with \"..\""));
        }
        let listing = match &owner {
            ArtifactOwner::Run(run_id) => {
                self.mlflow
                    .list_run_artifacts(run_id, path.as_deref())
                    .await
            }
            ArtifactOwner::LoggedModel(model_id) => {
                self.mlflow
                    .list_logged_model_artifacts(model_id, path.as_deref())
                    .await
            }
        }?;
        let mut entries: Vec<ArtifactEntry> = listing
            .files
            .into_iter()
            .map(|file| ArtifactEntry {
                path: file.path,
                is_dir: file.is_dir,
                size: file.file_size,
            })
            .collect();
        entries.sort_by(|a, b| (!a.is_dir, &a.path).cmp(&(!b.is_dir, &b.path)));
        Ok(entries)
    }

    pub async fn preview_artifact(
        &self,
        owner: ArtifactOwner,
        path: String,
    ) -> Result<ArtifactPreview> {
        super::artifacts::preview(&self.mlflow, owner, path).await
    }

    pub async fn search_models(&self, query: ListQuery) -> Result<ModelsPage> {
        let page_size = checked_page_size(&query)?;
        let filter = name_filter(&query)?;
        let order = list_order(
            &query,
            &[("name", "name"), ("updated", "last_updated_timestamp")],
        )?;
        let (response, as_of) = mlflow::cache::with_age(self.mlflow.search_registered_models(
            filter.as_deref(),
            &order,
            page_size,
            query.page_token.as_deref(),
        ))
        .await;
        let response = response?;
        Ok(ModelsPage {
            models: response
                .registered_models
                .into_iter()
                .map(|model| {
                    let mut summary = to_model_summary(model);
                    summary.served_by =
                        self.served_by(&summary.name, &summary.aliases, &summary.latest_by_stage);
                    summary
                })
                .collect(),
            next_page_token: response.next_page_token,
            mlflow_url: self.mlflow.url(),
            as_of: store::epoch_ms(as_of),
        })
    }

    pub async fn get_model(&self, name: String) -> Result<ModelDetail> {
        let filter = mlflow::name_equals_filter(&name)?;
        let (model, versions) = tokio::join!(
            self.mlflow.get_registered_model(&name),
            self.all_versions(&filter)
        );
        let (model, versions) = (model?, versions?);
        let aliases = aliases_by_version(&model.aliases);
        let mut versions: Vec<ModelVersionInfo> = versions
            .into_iter()
            .map(|mut version| {
                version.aliases = aliases.get(&version.version).cloned().unwrap_or_default();
                to_version_info(version)
            })
            .collect();
        versions.sort_by_key(|version| std::cmp::Reverse(version_number(&version.version)));
        let latest_production: Vec<(String, String)> = versions
            .iter()
            .find(|version| version.stage == "Production")
            .map(|version| ("Production".to_string(), version.version.clone()))
            .into_iter()
            .collect();
        let served_by = self.served_by(
            &model.name,
            &sorted_aliases(&model.aliases),
            &latest_production,
        );
        Ok(ModelDetail {
            served_by,
            name: model.name,
            description: model.description,
            created: model.creation_timestamp,
            last_updated: model.last_updated_timestamp,
            aliases: sorted_aliases(&model.aliases),
            tags: model
                .tags
                .into_iter()
                .map(|tag| (tag.key, tag.value))
                .collect(),
            versions,
        })
    }

    pub async fn get_model_version(&self, name: String, version: String) -> Result<VersionDetail> {
        let (detail, storage_uri, summary, input_example) = tokio::join!(
            self.mlflow.get_model_version(&name, &version),
            self.mlflow.model_version_download_uri(&name, &version),
            version_summary(&self.mlflow, &name, &version),
            self.example_input(&name, &version)
        );
        let bindings = self.reconciler.bindings();
        let binding = bindings.iter().find(|binding| binding.model == name);
        Ok(VersionDetail {
            version: to_version_info(detail?),
            storage_uri: storage_uri?,
            summary: summary
                .inspect_err(
                    |err| tracing::debug!(%name, %version, error = %err, "version summary"),
                )
                .ok(),
            input_example,
            stage_bound: binding
                .is_some_and(|binding| binding.production == ProductionMarker::Stage),
            deployed: binding.is_some(),
        })
    }

    pub async fn launch_form(&self) -> Result<LaunchForm> {
        let experiments = self
            .mlflow
            .search_experiments(&SearchExperiments {
                max_results: MAX_PAGE_SIZE,
                filter: None,
                order_by: vec!["name ASC".into()],
                page_token: None,
            })
            .await?;
        Ok(LaunchForm {
            catalog: self.launches.catalog(),
            experiments: experiments
                .experiments
                .into_iter()
                .map(|experiment| (experiment.experiment_id, experiment.name))
                .collect(),
            submission: uuid::Uuid::new_v4().to_string(),
        })
    }

    pub async fn list_launches(&self) -> Result<Vec<Launch>> {
        self.launches.recent(LAUNCHES_LISTED).await
    }

    pub async fn get_launch(&self, id: String) -> Result<Launch> {
        self.launches.launch(&id).await
    }

    pub async fn list_deployments(&self) -> Result<Vec<DeploymentView>> {
        let bindings = self.reconciler.bindings();
        futures::future::try_join_all(bindings.iter().map(|binding| async move {
            let mut view = self.reconciler.view(&binding.model)?;
            let latest = self.store.deployment_history(&binding.model, 1).await?;
            view.last_change_ms = latest.first().map(|event| event.started_ms);
            view.traffic = self.traffic.now(binding).await;
            Ok::<_, Error>(view)
        }))
        .await
    }

    /// A deployment's traffic over `range` by version, and every change of
    /// version in it (the server function draws the charts).
    pub async fn get_traffic(&self, model: String, range: TrafficRange) -> Result<TrafficReport> {
        let binding = self.reconciler.binding(&model)?;
        let history = self
            .store
            .deployment_history(&model, TRAFFIC_HISTORY_READ)
            .await?;
        Ok(self.traffic.report(&binding, range, &history).await)
    }

    pub async fn get_deployment(&self, model: String) -> Result<DeploymentDetail> {
        let view = self.reconciler.view(&model)?;
        let history = self
            .store
            .deployment_history(&model, DEPLOYMENT_HISTORY_SHOWN)
            .await?;
        let example_version = view
            .serving_version
            .clone()
            .or(view.desired_version.clone());
        let binding = self.reconciler.binding(&model)?;
        let example_input = match example_version {
            Some(version) => self.example_request(&binding, &version).await,
            None => None,
        };
        Ok(DeploymentDetail {
            rollout: self.rollout_panel(&model).await?,
            requires_approval: binding.requires_approval,
            pending_requests: self
                .store
                .promotion_requests(Some(&model), true, 50)
                .await?,
            view,
            history,
            example_input,
        })
    }

    /// The deployment's active canary, else its newest, with its checks;
    /// while active, stable and canary side by side.
    pub async fn rollout_panel(&self, model: &str) -> Result<Option<RolloutPanel>> {
        let Some(rollout) = self.store.rollouts(model, 1).await?.into_iter().next() else {
            return Ok(None);
        };
        let checks = self
            .store
            .rollout_checks(&rollout.id, crate::store::rollouts::CHECKS_SHOWN)
            .await?;
        let (sides, canary_objects) = if rollout.state.is_active() {
            let binding = self.reconciler.binding(model)?;
            (
                self.traffic.sides(&binding, &rollout).await,
                self.reconciler.view(model)?.canary_status,
            )
        } else {
            (crate::traffic::Sides::default(), None)
        };
        Ok(Some(RolloutPanel {
            rollout,
            checks,
            stable: sides.stable,
            canary: sides.canary,
            sides_note: sides.note,
            canary_objects,
        }))
    }

    pub async fn list_promotion_requests(&self) -> Result<Vec<PromotionRequest>> {
        self.store.promotion_requests(None, false, 200).await
    }

    pub async fn search_audit(&self, query: AuditQuery, limit: i64) -> Result<Vec<AuditEntry>> {
        let day = |text: &str, field: &str| -> Result<Option<i64>> {
            if text.is_empty() {
                return Ok(None);
            }
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|date| {
                    Some(
                        date.and_time(chrono::NaiveTime::MIN)
                            .and_utc()
                            .timestamp_millis(),
                    )
                })
                .map_err(|_| {
                    Error::invalid(format!("{field}: {text:?} is not a date (YYYY-MM-DD)"))
                })
        };
        const DAY_MS: i64 = 86_400_000;
        let from_ms = day(&query.from, "from")?.unwrap_or(i64::MIN);
        let until_ms = day(&query.to, "to")?.map_or(i64::MAX, |to| to + DAY_MS);
        let subject = if query.model.is_empty() {
            String::new()
        } else {
            format!("model:{}", query.model)
        };
        self.store
            .search_events(
                &query.actor,
                &query.action,
                &subject,
                from_ms,
                until_ms,
                limit,
            )
            .await
    }

    /// Keeps why a form of `user`'s did not do what it asked; its id, for
    /// the page the form goes back to (`?notice=`).
    pub async fn keep_notice(&self, user: &User, text: &str) -> Result<String> {
        self.store
            .insert_draft(&user.name, DraftForm::Notice, &text)
            .await
    }

    /// The notice `id`, if `user` was given it: a link cannot make a page
    /// say anything.
    pub async fn notice(&self, user: &User, id: &str) -> Result<Option<String>> {
        self.store.draft(&user.name, DraftForm::Notice, id).await
    }

    pub async fn try_answer(&self, user: &User, id: String) -> Result<TryAnswer> {
        self.store
            .try_answer(&user.name, &id)
            .await?
            .ok_or_else(|| {
                Error::NotFound("no such Try it answer (they are kept for an hour)".into())
            })
    }
}

impl Reads {
    /// The version's input example as the binding's model servers take it
    /// (the open inference protocol's form for KServe and Seldon Core 2).
    pub async fn example_request(
        &self,
        binding: &DeploymentBinding,
        version: &str,
    ) -> Option<String> {
        let example = self.example_input(&binding.model, version).await?;
        protocol::example_request(binding, &example)
    }

    /// The version's input example, if it has one; `None` while MLflow
    /// cannot say (asked again next time).
    pub async fn example_input(&self, model: &str, version: &str) -> Option<String> {
        let key = (model.to_string(), version.to_string());
        if let Some(known) = self
            .example_inputs
            .0
            .lock()
            .expect("example inputs")
            .get(&key)
        {
            return known.clone();
        }
        let read = async {
            let uri = self
                .mlflow
                .model_version_download_uri(model, version)
                .await?;
            self.mlflow
                .read_artifact_text(&uri, "serving_input_example.json")
                .await
        };
        match read.await {
            Ok(example) => {
                self.example_inputs
                    .0
                    .lock()
                    .expect("example inputs")
                    .insert(key, example.clone());
                example
            }
            Err(err) => {
                tracing::debug!(%model, %version, error = %err, "reading the input example");
                None
            }
        }
    }

    async fn all_versions(&self, filter: &str) -> Result<Vec<mlflow::ModelVersion>, MlflowError> {
        let mut versions = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let page = self
                .mlflow
                .search_model_versions(filter, VERSIONS_PAGE_SIZE, page_token.as_deref())
                .await?;
            versions.extend(page.model_versions);
            page_token = page.next_page_token;
            if page_token.is_none() {
                return Ok(versions);
            }
        }
    }
}

fn checked_page_size(query: &ListQuery) -> Result<u32> {
    checked_size(query.page_size)
}

fn checked_size(page_size: u32) -> Result<u32> {
    if (1..=MAX_PAGE_SIZE).contains(&page_size) {
        Ok(page_size)
    } else {
        Err(Error::invalid(format!(
            "Page size must be from 1 to {MAX_PAGE_SIZE}, not {page_size}"
        )))
    }
}

/// The MLflow `order_by` clause for a list's `order` (one of `columns`, as
/// (our name, MLflow's name)); the last column when none is asked for.
fn list_order(query: &ListQuery, columns: &[(&str, &str)]) -> Result<String> {
    let wanted = query
        .order_by
        .as_deref()
        .unwrap_or(columns[columns.len() - 1].0);
    let (_, mlflow_column) = columns
        .iter()
        .find(|(ours, _)| *ours == wanted)
        .ok_or_else(|| {
            let known: Vec<&str> = columns.iter().map(|(ours, _)| *ours).collect();
            Error::invalid(format!(
                "This list sorts by {}, not \"{wanted}\"",
                known.join(", ")
            ))
        })?;
    Ok(format!(
        "{mlflow_column} {}",
        if query.descending { "DESC" } else { "ASC" }
    ))
}

fn name_filter(query: &ListQuery) -> Result<Option<String>> {
    query
        .name_contains
        .as_deref()
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .map(mlflow::name_contains_filter)
        .transpose()
        .map_err(Error::from)
}

/// Versions are decimal strings; compare them as numbers ("10" after "9").
fn version_number(version: &str) -> u64 {
    version.parse().unwrap_or(0)
}

fn aliases_by_version(aliases: &[mlflow::Alias]) -> BTreeMap<String, Vec<String>> {
    let mut by_version: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for alias in aliases {
        by_version
            .entry(alias.version.clone())
            .or_default()
            .push(alias.alias.clone());
    }
    by_version.values_mut().for_each(|names| names.sort());
    by_version
}

fn sorted_aliases(aliases: &[mlflow::Alias]) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = aliases
        .iter()
        .map(|alias| (alias.alias.clone(), alias.version.clone()))
        .collect();
    pairs.sort();
    pairs
}

fn to_experiment(experiment: mlflow::Experiment) -> Experiment {
    Experiment {
        id: experiment.experiment_id,
        name: experiment.name,
        lifecycle_stage: experiment.lifecycle_stage,
        artifact_location: experiment.artifact_location,
        creation_time: experiment.creation_time,
        last_update_time: experiment.last_update_time,
        tags: experiment
            .tags
            .into_iter()
            .map(|tag| (tag.key, tag.value))
            .collect(),
    }
}

/// Run ids are hex; checking keeps them from ever becoming filter syntax.
fn checked_run_id(run_id: &str) -> Result<&str> {
    if !run_id.is_empty()
        && run_id.len() <= 64
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        Ok(run_id)
    } else {
        Err(Error::invalid(format!("\"{run_id}\" is not a run id")))
    }
}

fn display_name(info: &mlflow::RunInfo) -> String {
    if info.run_name.is_empty() {
        info.run_id.clone()
    } else {
        info.run_name.clone()
    }
}

fn sorted_keys<'a>(keys: impl Iterator<Item = &'a String>) -> Vec<String> {
    keys.collect::<BTreeSet<_>>().into_iter().cloned().collect()
}

fn to_run_row(run: mlflow::Run) -> RunRow {
    // Runs made over the REST API without a user id name theirs in a tag.
    let user = if run.info.user_id.is_empty() {
        run.data
            .tags
            .iter()
            .find(|tag| tag.key == "mlflow.user")
            .map(|tag| tag.value.clone())
            .unwrap_or_default()
    } else {
        run.info.user_id
    };
    RunRow {
        run_id: run.info.run_id,
        run_name: run.info.run_name,
        status: run.info.status,
        user,
        start_time: run.info.start_time,
        end_time: run.info.end_time,
        params: run
            .data
            .params
            .into_iter()
            .map(|param| (param.key, param.value))
            .collect(),
        metrics: run
            .data
            .metrics
            .into_iter()
            .map(|metric| (metric.key, metric.value))
            .collect(),
    }
}

impl Reads {
    /// What a deployment of `model` serves by, and the version that marks
    /// now (from the aliases and latest version per stage MLflow gave).
    fn served_by(
        &self,
        model: &str,
        aliases: &[(String, String)],
        latest_by_stage: &[(String, String)],
    ) -> Option<ServedBy> {
        let bindings = self.reconciler.bindings();
        let binding = bindings.iter().find(|binding| binding.model == model)?;
        let (marked, wanted) = match binding.production {
            ProductionMarker::Stage => (latest_by_stage, "Production"),
            ProductionMarker::Alias => (aliases, binding.alias.as_str()),
        };
        Some(ServedBy {
            marker: binding.marker(),
            version: marked
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, version)| version.clone()),
        })
    }
}

fn to_model_summary(model: mlflow::RegisteredModel) -> ModelSummary {
    let mut latest_by_stage: Vec<(String, String)> = model
        .latest_versions
        .iter()
        .map(|version| (version.current_stage.clone(), version.version.clone()))
        .collect();
    latest_by_stage.sort_by_key(|(stage, _)| stage_order(stage));
    ModelSummary {
        aliases: sorted_aliases(&model.aliases),
        name: model.name,
        description: model.description,
        last_updated: model.last_updated_timestamp,
        latest_by_stage,
        served_by: None,
    }
}

/// Production first: what serves matters most.
fn stage_order(stage: &str) -> u8 {
    match stage {
        "Production" => 0,
        "Staging" => 1,
        "None" => 2,
        _ => 3,
    }
}

fn to_version_info(version: mlflow::ModelVersion) -> ModelVersionInfo {
    ModelVersionInfo {
        model: version.name,
        version: version.version,
        stage: version.current_stage,
        aliases: version.aliases,
        status: version.status,
        source: version.source,
        run_id: version.run_id,
        created: version.creation_timestamp,
        last_updated: version.last_updated_timestamp,
        description: version.description,
        tags: version
            .tags
            .into_iter()
            .map(|tag| (tag.key, tag.value))
            .collect(),
    }
}
