//! Deployments (bindings of a model to where it serves): made, changed
//! and deleted in the app, or by the catalog file. The form's text is
//! turned into a binding and checked as the catalog checks its own, then
//! written (audited, and in the deployment's history) and converged at
//! once. Also Try it: one request to what serves a deployment.

use std::sync::Arc;

use app::access::{Action, User, authorize};
use app::model::{
    AuditAction, DeploymentForm, DeploymentSettings, PromotionPreview, PromotionRequest,
    SettingsChange, TryAnswer,
};

use super::audit::Audit;
use super::reads::version_summary;
use crate::adapters::mlflow::{MlflowClient, MlflowError, RegisteredModel};
use crate::adapters::serving::caller::{MAX_INPUT_BYTES, ModelCaller};
use crate::catalog::{
    Catalog, DeploymentBinding, NoProduction, ProductionMarker, RequestLimit, ServingTarget,
    UriMapping, binding_problems,
};
use crate::error::{Error, Invalid, Result};
use crate::serving::protocol;
use crate::serving::reconciler::Reconciler;
use crate::serving::target::Trigger;
use crate::store::Store;
use crate::store::bindings::{BindingRecord, Edit, ManagedBy, Seeded};
use crate::store::deliveries::Delivery;
use crate::store::deployments::SETTINGS_CAUSE;
use crate::store::drafts::DraftForm;
use crate::store::requests::NewRequest;

/// Why a settings change waits for a second person, and the version it
/// would make serve (`None`: none).
struct Hold {
    why: String,
    serving: Option<String>,
}

/// What saving a deployment's settings did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Saved and converging.
    Now,
    /// Held for a second person: the request's id.
    Requested(String),
}

/// A binding's settings as its form shows them.
pub fn settings_of(record: &BindingRecord) -> DeploymentSettings {
    let binding = &record.binding;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let (cpu_request, cpu_limit) = request_limit_text(&binding.cpu);
    let (memory_request, memory_limit) = request_limit_text(&binding.memory);
    DeploymentSettings {
        model: binding.model.clone(),
        target: binding.target.as_str().into(),
        name: text(&binding.name),
        namespace: text(&binding.namespace),
        replicas: binding.replicas.to_string(),
        max_replicas: binding
            .max_replicas
            .map(|most| most.to_string())
            .unwrap_or_default(),
        cpu_request,
        cpu_limit,
        memory_request,
        memory_limit,
        storage_secret: text(&binding.storage_secret),
        service_account: text(&binding.service_account),
        server: text(&binding.server),
        production: binding.production.as_str().into(),
        alias: binding.alias.clone(),
        no_production: binding.no_production.as_str().into(),
        requires_approval: binding.requires_approval,
        artifact_map: binding
            .artifact_map
            .iter()
            .map(|mapping| format!("{} {}", mapping.from, mapping.to))
            .collect::<Vec<_>>()
            .join("\n"),
        revision: record.revision.to_string(),
    }
}

fn request_limit_text(pair: &Option<RequestLimit>) -> (String, String) {
    match pair {
        Some(pair) => (
            pair.request.clone().unwrap_or_default(),
            pair.limit.clone().unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    }
}

/// The form's text as a binding; every field that cannot be read is a
/// problem (what the catalog checks beyond reading is `binding_problems`).
pub fn binding_of(settings: &DeploymentSettings) -> Result<DeploymentBinding, Vec<String>> {
    let mut problems = Vec::new();
    let optional = |text: &str| {
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    };
    let target = ServingTarget::parse(&settings.target).unwrap_or_else(|| {
        problems.push(format!(
            "target {:?} is none of local, seldon, kserve, seldon-core-2",
            settings.target
        ));
        ServingTarget::Local
    });
    let replicas = settings.replicas.trim().parse::<i32>().unwrap_or_else(|_| {
        problems.push(format!(
            "replicas {:?} is not a whole number",
            settings.replicas
        ));
        1
    });
    let max_replicas = optional(&settings.max_replicas).and_then(|text| {
        text.parse::<i32>()
            .map_err(|_| problems.push(format!("max replicas {text:?} is not a whole number")))
            .ok()
    });
    let request_limit = |request: &str, limit: &str| {
        let (request, limit) = (optional(request), optional(limit));
        (request.is_some() || limit.is_some()).then_some(RequestLimit { request, limit })
    };
    let production = ProductionMarker::parse(&settings.production).unwrap_or_else(|| {
        problems.push(format!(
            "production {:?} is neither stage nor alias",
            settings.production
        ));
        ProductionMarker::Stage
    });
    let no_production = NoProduction::parse(&settings.no_production).unwrap_or_else(|| {
        problems.push(format!(
            "\"when nothing is in production\" {:?} is neither keep nor remove",
            settings.no_production
        ));
        NoProduction::Keep
    });
    let mut artifact_map = Vec::new();
    for line in settings
        .artifact_map
        .lines()
        .filter(|line| !line.trim().is_empty())
    {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [from, to] => artifact_map.push(UriMapping {
                from: from.into(),
                to: to.into(),
            }),
            _ => problems.push(format!(
                "artifact map line {line:?} is not two URIs separated by a space"
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(DeploymentBinding {
        model: settings.model.trim().to_string(),
        target,
        name: optional(&settings.name),
        namespace: optional(&settings.namespace),
        replicas,
        max_replicas,
        cpu: request_limit(&settings.cpu_request, &settings.cpu_limit),
        memory: request_limit(&settings.memory_request, &settings.memory_limit),
        storage_secret: optional(&settings.storage_secret),
        service_account: optional(&settings.service_account),
        server: optional(&settings.server),
        production,
        alias: settings.alias.trim().to_string(),
        artifact_map,
        no_production,
        requires_approval: settings.requires_approval,
    })
}

/// What changed between two versions of a form, for the history.
fn changes(before: &DeploymentSettings, after: &DeploymentSettings) -> String {
    let fields: [(&str, &str, &str); 17] = [
        ("target", &before.target, &after.target),
        ("name", &before.name, &after.name),
        ("namespace", &before.namespace, &after.namespace),
        ("replicas", &before.replicas, &after.replicas),
        ("max replicas", &before.max_replicas, &after.max_replicas),
        (
            "service account",
            &before.service_account,
            &after.service_account,
        ),
        ("server", &before.server, &after.server),
        ("cpu request", &before.cpu_request, &after.cpu_request),
        ("cpu limit", &before.cpu_limit, &after.cpu_limit),
        (
            "memory request",
            &before.memory_request,
            &after.memory_request,
        ),
        ("memory limit", &before.memory_limit, &after.memory_limit),
        (
            "storage secret",
            &before.storage_secret,
            &after.storage_secret,
        ),
        ("production", &before.production, &after.production),
        ("alias", &before.alias, &after.alias),
        ("no production", &before.no_production, &after.no_production),
        ("artifact map", &before.artifact_map, &after.artifact_map),
        (
            "requires approval",
            if before.requires_approval {
                "yes"
            } else {
                "no"
            },
            if after.requires_approval { "yes" } else { "no" },
        ),
    ];
    let shown = |text: &str| {
        if text.is_empty() {
            "—".to_string()
        } else {
            text.replace('\n', "; ")
        }
    };
    let changed: Vec<String> = fields
        .iter()
        .filter(|(_, before, after)| before != after)
        .map(|(field, before, after)| format!("{field} {} → {}", shown(before), shown(after)))
        .collect();
    if changed.is_empty() {
        "nothing changed".into()
    } else {
        changed.join(", ")
    }
}

pub struct Deployments {
    store: Store,
    audit: Audit,
    reconciler: Arc<Reconciler>,
    /// MLflow as it is now (never a kept answer): what a marker marks.
    mlflow: MlflowClient,
    /// The pages' MLflow client: its kept answers go when MLflow changes.
    pages: MlflowClient,
    /// For Try it: requests to what serves a model.
    caller: ModelCaller,
    /// Where admins scoped to some models may serve them.
    catalog: Arc<Catalog>,
}

impl Deployments {
    pub fn new(
        store: Store,
        reconciler: Arc<Reconciler>,
        (mlflow, pages): (MlflowClient, MlflowClient),
        caller: ModelCaller,
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
            reconciler,
            mlflow,
            pages,
            caller,
            catalog,
        }
    }

    /// MLflow says its registry changed (a verified webhook delivery):
    /// pages read afresh and a pass deploys what it marks now. `false`: the
    /// delivery was seen before (a replay) and nothing happens.
    pub async fn mlflow_changed(&self, delivery: &Delivery, replay_window_ms: i64) -> Result<bool> {
        if !self
            .store
            .record_delivery(delivery, replay_window_ms)
            .await?
        {
            return Ok(false);
        }
        self.pages.forget_reads();
        self.reconciler.trigger(Trigger::new("webhook", "mlflow"));
        Ok(true)
    }

    /// Slipway stops: passes stop, then what serves locally (model
    /// servers are Slipway's children); cluster objects serve on.
    pub async fn shutdown(&self) {
        self.reconciler.shutdown().await;
    }

    /// Makes the catalog file's bindings the file-managed ones in the
    /// database, each change audited as the catalog's.
    pub async fn seed_from_catalog(&self, catalog: &[DeploymentBinding]) -> Result<()> {
        for (model, seeded) in self.store.seed_bindings(catalog).await? {
            let what = match seeded {
                Seeded::Added => "bound by the catalog file",
                Seeded::Changed => "changed by the catalog file",
                Seeded::Removed => "no longer in the catalog file: deleted",
            };
            self.audit
                .record(
                    "catalog",
                    AuditAction::DeploymentSettings,
                    &subject(&model),
                    what,
                )
                .await?;
        }
        self.reconciler.reload_bindings().await?;
        Ok(())
    }

    /// The form for a new deployment (`model` None) or an existing one.
    pub async fn form(&self, model: Option<&str>) -> Result<DeploymentForm> {
        let Some(model) = model else {
            return Ok(DeploymentForm {
                settings: DeploymentSettings::new_deployment(),
                ..DeploymentForm::default()
            });
        };
        let record = self.record(model).await?;
        Ok(DeploymentForm {
            settings: settings_of(&record),
            exists: true,
            from_catalog: record.managed_by == ManagedBy::Catalog,
            problems: Vec::new(),
        })
    }

    /// A form the user sent that came back with problems: its values with
    /// what is wrong with them now.
    pub async fn draft(&self, user: &User, id: &str) -> Result<DeploymentForm> {
        let sent: DeploymentForm = self
            .store
            .draft(&user.name, DraftForm::Deployment, id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(
                    "no such deployment form (sent-back forms are kept for an hour)".into(),
                )
            })?;
        let problems = match self.check(user, &sent.settings, sent.exists).await? {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        };
        Ok(DeploymentForm {
            problems,
            from_catalog: false,
            ..sent
        })
    }

    /// Keeps a form that was refused as invalid, for the user to fix: its id.
    pub async fn keep_draft(
        &self,
        user: &User,
        settings: DeploymentSettings,
        exists: bool,
    ) -> Result<String> {
        let draft = DeploymentForm {
            settings,
            exists,
            ..DeploymentForm::default()
        };
        self.store
            .insert_draft(&user.name, DraftForm::Deployment, &draft)
            .await
    }

    /// Creates an app-managed deployment and converges it at once, or
    /// asks a second person where four eyes hold (`second_person`).
    pub async fn create(&self, user: &User, settings: &DeploymentSettings) -> Result<Saved> {
        authorize(
            user,
            Action::ManageDeployment {
                model: settings.model.trim(),
            },
        )?;
        let binding = self.check(user, settings, false).await?.map_err(invalid)?;
        let detail = format!(
            "created: {}, serving by {}, approval {}",
            binding.target.as_str(),
            binding.marker(),
            if binding.requires_approval {
                "required"
            } else {
                "not required"
            }
        );
        if let Some(hold) = self.second_person(None, &binding).await? {
            let change = SettingsChange {
                create: true,
                settings: settings.clone(),
                changes: detail,
            };
            return self.ask(user, &binding, change, hold).await;
        }
        let edit = Edit {
            by: &user.actor(),
            detail: &detail,
        };
        if !self.store.insert_binding(&binding, edit).await? {
            return Err(invalid(vec![format!(
                "{} already has a deployment",
                binding.model
            )]));
        }
        self.changed(user, &binding.model, AuditAction::CreateDeployment, &detail)
            .await?;
        Ok(Saved::Now)
    }

    /// Changes an app-managed deployment, if nobody changed it since the
    /// form was read (`settings.revision`); or asks a second person, as
    /// `create`.
    pub async fn update(
        &self,
        user: &User,
        model: &str,
        settings: &DeploymentSettings,
    ) -> Result<Saved> {
        authorize(user, Action::ManageDeployment { model })?;
        let record = self.editable(model).await?;
        let settings = DeploymentSettings {
            model: model.into(),
            ..settings.clone()
        };
        let binding = self.check(user, &settings, true).await?.map_err(invalid)?;
        self.marker_moves_nothing(&record.binding, &binding).await?;
        let revision = form_revision(&settings.revision)?;
        if revision != record.revision {
            return Err(changed_meanwhile(model));
        }
        let detail = changes(&settings_of(&record), &settings);
        if let Some(hold) = self.second_person(Some(&record.binding), &binding).await? {
            let change = SettingsChange {
                create: false,
                settings,
                changes: detail,
            };
            return self.ask(user, &binding, change, hold).await;
        }
        let edit = Edit {
            by: &user.actor(),
            detail: &detail,
        };
        if !self.store.update_binding(&binding, revision, edit).await? {
            return Err(changed_meanwhile(model));
        }
        self.changed(user, model, AuditAction::EditDeployment, &detail)
            .await?;
        Ok(Saved::Now)
    }

    /// Why saving `after` (over `before`, or as a new deployment) needs a
    /// second person, if it does, with the version it would make serve: it
    /// turns approval off for a model that has it on (its deployment, or its
    /// last one if deleted), or it is a new deployment requiring approval
    /// whose marker already marks a version, which would start serving with
    /// nobody having approved it.
    async fn second_person(
        &self,
        before: Option<&DeploymentBinding>,
        after: &DeploymentBinding,
    ) -> Result<Option<Hold>> {
        let approval_on = match before {
            Some(before) => before.requires_approval,
            None => self.store.approval_required(&after.model).await?,
        };
        if approval_on && !after.requires_approval {
            return Ok(Some(Hold {
                why: format!(
                    "{} requires approval: turning it off needs a second person",
                    after.model
                ),
                serving: self.marked_version(after).await?,
            }));
        }
        if before.is_none()
            && after.requires_approval
            && let Some(version) = self.marked_version(after).await?
        {
            return Ok(Some(Hold {
                why: format!(
                    "its {} already marks v{version}, which would start serving with nobody having approved it",
                    after.marker()
                ),
                serving: Some(version),
            }));
        }
        Ok(None)
    }

    /// Holds `change` for a second person: a request with the version it
    /// would make serve as evidence. The request's id.
    async fn ask(
        &self,
        user: &User,
        binding: &DeploymentBinding,
        change: SettingsChange,
        hold: Hold,
    ) -> Result<Saved> {
        let model = binding.model.as_str();
        let Hold {
            why,
            serving: version,
        } = hold;
        let evidence = match &version {
            Some(version) => Some(PromotionPreview {
                model: model.to_string(),
                marker: binding.marker(),
                current: None,
                candidate: version_summary(&self.pages, model, version).await?,
                requires_approval: true,
            }),
            None => None,
        };
        let reason = format!("{}: {why}", change.changes);
        let request = super::requests::file(
            &self.store,
            user,
            &NewRequest {
                model,
                version: version.as_deref().unwrap_or_default(),
                reason: &reason,
                requested_by: &user.name,
                base_version: version.as_deref(),
                evidence: evidence.as_ref(),
                settings: Some(&change),
                rollout: None,
            },
            &format!("settings: {reason}"),
            format!(
                "{} asks to change the deployment of {model}: {reason}",
                user.actor()
            ),
        )
        .await?;
        Ok(Saved::Requested(request.id))
    }

    /// Saves an approved settings change as its requester asked for it,
    /// if nothing it was decided on moved meanwhile: the deployment is
    /// still absent (new) or at the same revision, and the marker still
    /// marks the version the request showed. The caller has recorded the
    /// decision; `Err` is why it could not be saved.
    pub async fn apply_approved(
        &self,
        approver: &User,
        request: &PromotionRequest,
        change: &SettingsChange,
    ) -> Result<()> {
        let binding = binding_of(&change.settings).map_err(invalid)?;
        let now = self.marked_version(&binding).await?;
        let then = (!request.version.is_empty()).then(|| request.version.clone());
        if now != then {
            return Err(Error::Conflict(format!(
                "its {} marks {} now, not {} as when this was asked for; nothing was saved",
                binding.marker(),
                version_words(now.as_deref()),
                version_words(then.as_deref())
            )));
        }
        let by = format!(
            "{} (approved by {})",
            request.requested_by,
            approver.actor()
        );
        let model = binding.model.as_str();
        let detail = format!(
            "{}; asked by {} in request {}",
            change.changes, request.requested_by, request.id
        );
        let edit = Edit {
            by: &by,
            detail: &detail,
        };
        if change.create {
            if !self.store.insert_binding(&binding, edit).await? {
                return Err(Error::Conflict(format!(
                    "{model} has a deployment made since; nothing was saved"
                )));
            }
        } else {
            let revision = form_revision(&change.settings.revision)?;
            if !self.store.update_binding(&binding, revision, edit).await? {
                return Err(changed_meanwhile(model));
            }
        }
        let action = if change.create {
            AuditAction::CreateDeployment
        } else {
            AuditAction::EditDeployment
        };
        self.changed(approver, model, action, &detail).await
    }

    /// What the binding's marker marks in MLflow right now; `None` for a
    /// model MLflow does not have (yet).
    async fn marked_version(&self, binding: &DeploymentBinding) -> Result<Option<String>> {
        let model = self.registered(&binding.model).await?;
        Ok(marks(binding, model.as_ref()))
    }

    /// The model as MLflow has it right now; `None`: it has no such model.
    async fn registered(&self, model: &str) -> Result<Option<RegisteredModel>> {
        match self.mlflow.get_registered_model(model).await {
            Ok(found) => Ok(Some(found)),
            Err(MlflowError::Api { status: 404, .. }) => Ok(None),
            Err(err) => Err(Error::Unavailable(format!(
                "reading {model} in MLflow: {err}"
            ))),
        }
    }

    /// Deletes an app-managed deployment once its name is typed again
    /// (`confirm`); the next pass removes what it served (the model
    /// server, or the cluster object).
    pub async fn delete(
        &self,
        user: &User,
        model: &str,
        confirm: &str,
        revision: &str,
    ) -> Result<()> {
        authorize(user, Action::ManageDeployment { model })?;
        if confirm.trim() != model {
            return Err(Error::invalid(format!(
                "Type {model} to confirm the deletion; nothing was deleted."
            )));
        }
        self.editable(model).await?;
        let revision = form_revision(revision)?;
        let edit = Edit {
            by: &user.actor(),
            detail: "deleted",
        };
        if !self.store.delete_binding(model, revision, edit).await? {
            return Err(changed_meanwhile(model));
        }
        self.changed(user, model, AuditAction::DeleteDeployment, "deleted")
            .await
    }

    /// Sends a Try it request to what serves `model` and keeps it with its
    /// answer (or why there was none) for the user to read; the answer's id.
    pub async fn try_it(&self, user: &User, model: &str, input: String) -> Result<String> {
        if !user.authenticated {
            return Err(Error::Unauthenticated);
        }
        if input.len() > MAX_INPUT_BYTES {
            return Err(Error::invalid(format!(
                "the request body is larger than {} KiB",
                MAX_INPUT_BYTES / 1024
            )));
        }
        let view = self.reconciler.view(model)?;
        let headers = protocol::request_headers(&self.reconciler.binding(model)?);
        let outcome = match (
            serde_json::from_str::<serde_json::Value>(&input),
            view.address,
        ) {
            (Err(err), _) => Err(format!("The request body is not JSON: {err}.")),
            (Ok(_), None) => Err(format!("{model} is not serving yet.")),
            (Ok(body), Some(address)) => self
                .caller
                .ask(&address, &headers, &body)
                .await
                .map_err(|err| err.to_string()),
        };
        let answer = TryAnswer {
            model: model.to_string(),
            input,
            outcome,
        };
        self.store.insert_try_answer(&user.name, &answer).await
    }

    /// Four eyes hold for settings too: where a deployment needs an
    /// approver (before or after the change), its marker (stage or alias)
    /// may change only to one that marks the same version in MLflow, so no
    /// one ships another version alone by switching markers.
    async fn marker_moves_nothing(
        &self,
        before: &DeploymentBinding,
        after: &DeploymentBinding,
    ) -> Result<()> {
        let moved = before.production != after.production
            || (after.production == ProductionMarker::Alias && before.alias != after.alias);
        if !moved || !(before.requires_approval || after.requires_approval) {
            return Ok(());
        }
        let model = self.registered(&after.model).await?;
        let (now, then) = (marks(before, model.as_ref()), marks(after, model.as_ref()));
        if now == then {
            return Ok(());
        }
        let shown = |version: &Option<String>| version_words(version.as_deref());
        Err(invalid(vec![format!(
            "{} needs an approver: its marker may change only to one that marks the same version \
             ({} marks {}, {} marks {}); a new version goes out through a promotion request.",
            after.model,
            before.marker(),
            shown(&now),
            after.marker(),
            shown(&then),
        )]))
    }

    async fn record(&self, model: &str) -> Result<BindingRecord> {
        self.store
            .binding(model)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{model} has no deployment")))
    }

    /// The binding the form describes, checked against every other one,
    /// and against where `user` may serve (an admin scoped to some models
    /// names only the namespaces, secrets and object names the catalog's
    /// `serving_scope` allows them).
    async fn check(
        &self,
        user: &User,
        settings: &DeploymentSettings,
        exists: bool,
    ) -> Result<std::result::Result<DeploymentBinding, Vec<String>>> {
        let binding = match binding_of(settings) {
            Ok(binding) => binding,
            Err(problems) => return Ok(Err(problems)),
        };
        let records = self.store.bindings().await?;
        let mut problems = Vec::new();
        if !exists
            && records
                .iter()
                .any(|record| record.binding.model == binding.model)
        {
            problems.push(format!("{} already has a deployment", binding.model));
        }
        if !self.reconciler.has_target(binding.target) {
            problems.push(format!(
                "the {} target needs Slipway to run with a cluster (SLIPWAY_EXECUTOR=kubernetes)",
                binding.target.as_str()
            ));
        }
        let mut all: Vec<DeploymentBinding> = records
            .into_iter()
            .map(|record| record.binding)
            .filter(|other| other.model != binding.model)
            .collect();
        all.push(binding.clone());
        problems.extend(binding_problems(&all));
        problems.extend(self.catalog.serving_refusals(&user.grants, &binding));
        Ok(if problems.is_empty() {
            Ok(binding)
        } else {
            Err(problems)
        })
    }

    /// The record of an app-managed deployment.
    async fn editable(&self, model: &str) -> Result<BindingRecord> {
        let record = self.record(model).await?;
        if record.managed_by == ManagedBy::Catalog {
            return Err(Error::invalid(format!(
                "{model} is deployed by the catalog file: change it there and restart Slipway"
            )));
        }
        Ok(record)
    }

    /// Audits a saved change of settings (the store put it in the history
    /// with the change) and converges at once.
    async fn changed(
        &self,
        user: &User,
        model: &str,
        action: AuditAction,
        detail: &str,
    ) -> Result<()> {
        self.audit
            .record(&user.actor(), action, &subject(model), detail)
            .await?;
        self.reconciler.forget_failure(model);
        self.reconciler.reload_bindings().await?;
        self.reconciler.trigger(Trigger {
            cause: SETTINGS_CAUSE.into(),
            actor: user.actor(),
            retry_model: Some(model.into()),
        });
        Ok(())
    }
}

fn subject(model: &str) -> String {
    format!("model:{model}")
}

fn invalid(problems: Vec<String>) -> Error {
    Error::Invalid(Invalid {
        problems,
        ..Invalid::default()
    })
}

fn form_revision(revision: &str) -> Result<i64> {
    revision
        .parse()
        .map_err(|_| Error::invalid("the form lacks its revision"))
}

/// The version `binding`'s marker marks on `model` (`None`: none, or no model).
fn marks(binding: &DeploymentBinding, model: Option<&RegisteredModel>) -> Option<String> {
    let models = model.map(std::slice::from_ref).unwrap_or_default();
    crate::serving::desired::desired_versions(std::slice::from_ref(binding), models)
        .remove(&binding.model)
        .flatten()
}

fn version_words(version: Option<&str>) -> String {
    version.map_or("no version".to_string(), |version| format!("v{version}"))
}

fn changed_meanwhile(model: &str) -> Error {
    Error::Conflict(format!(
        "the deployment of {model} was changed or deleted since you opened this form; nothing was saved. Look again, then decide."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(binding: DeploymentBinding) -> BindingRecord {
        BindingRecord {
            binding,
            managed_by: ManagedBy::App,
            revision: 3,
            changed_by: "alice".into(),
            changed_ms: 0,
        }
    }

    #[test]
    fn a_binding_survives_its_form() {
        let catalog = crate::catalog::Catalog::parse(
            r#"
[[deployment]]
model = "Fraud Model"
target = "seldon"
namespace = "models"
replicas = 2
cpu = { request = "500m", limit = "1" }
memory = { limit = "2Gi" }
storage_secret = "bucket"
production = "alias"
alias = "champion"
no_production = "remove"
requires_approval = true
artifact_map = [{ from = "mlflow-artifacts:/", to = "s3://mlflow/" }, { from = "runs:/", to = "s3://runs/" }]
"#,
            std::path::Path::new("."),
        )
        .unwrap();
        let binding = catalog.deployments[0].clone();
        let settings = settings_of(&record(binding.clone()));
        assert_eq!(settings.revision, "3");
        assert_eq!(binding_of(&settings).unwrap(), binding);
        let new = DeploymentSettings {
            model: "m".into(),
            ..DeploymentSettings::new_deployment()
        };
        let plain = binding_of(&new).unwrap();
        assert_eq!(plain.target, ServingTarget::Local);
        assert_eq!(plain.cpu, None);
        assert_eq!(settings_of(&record(plain)).artifact_map, "");
    }

    #[test]
    fn what_cannot_be_read_is_said_field_by_field() {
        let settings = DeploymentSettings {
            model: "m".into(),
            target: "gke".into(),
            replicas: "two".into(),
            artifact_map: "s3://only-one".into(),
            ..DeploymentSettings::new_deployment()
        };
        let problems = binding_of(&settings).unwrap_err();
        assert_eq!(
            problems,
            [
                "target \"gke\" is none of local, seldon, kserve, seldon-core-2",
                "replicas \"two\" is not a whole number",
                "artifact map line \"s3://only-one\" is not two URIs separated by a space",
            ]
        );
    }

    #[test]
    fn a_change_is_described_field_by_field() {
        let before = DeploymentSettings::new_deployment();
        let after = DeploymentSettings {
            replicas: "3".into(),
            requires_approval: true,
            ..before.clone()
        };
        assert_eq!(
            changes(&before, &after),
            "replicas 1 → 3, requires approval no → yes"
        );
        assert_eq!(changes(&before, &before), "nothing changed");
    }
}
