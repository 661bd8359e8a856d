//! Deployments made, changed and deleted from the app: the form's text
//! turned into a binding and checked as the catalog checks its own, then
//! written (audited, and in the deployment's history) and converged at once.

use app::access::{Action, authorize};
use app::error::AppError;
use app::model::{DeploymentForm, DeploymentSettings, User};

use super::reconciler::{Reconciler, Trigger};
use crate::catalog::{
    DeploymentBinding, NoProduction, ProductionMarker, RequestLimit, ServingTarget, UriMapping,
    binding_problems,
};
use crate::store::{BindingRecord, ManagedBy};

/// What a save came to.
#[derive(Debug)]
pub enum Saved {
    Done,
    /// Nothing was written; the form says why.
    Invalid(Vec<String>),
}

/// A binding's settings as its form shows them.
pub fn settings_of(record: &BindingRecord) -> DeploymentSettings {
    let binding = &record.binding;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let (cpu_request, cpu_limit) = request_limit_text(&binding.cpu);
    let (memory_request, memory_limit) = request_limit_text(&binding.memory);
    DeploymentSettings {
        model: binding.model.clone(),
        target: target_name(binding.target).into(),
        name: text(&binding.name),
        namespace: text(&binding.namespace),
        replicas: binding.replicas.to_string(),
        cpu_request,
        cpu_limit,
        memory_request,
        memory_limit,
        storage_secret: text(&binding.storage_secret),
        production: match binding.production {
            ProductionMarker::Stage => "stage".into(),
            ProductionMarker::Alias => "alias".into(),
        },
        alias: binding.alias.clone(),
        no_production: match binding.no_production {
            NoProduction::Keep => "keep".into(),
            NoProduction::Remove => "remove".into(),
        },
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

pub fn target_name(target: ServingTarget) -> &'static str {
    match target {
        ServingTarget::Local => "local",
        ServingTarget::Seldon => "seldon",
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
    let target = match settings.target.as_str() {
        "local" => ServingTarget::Local,
        "seldon" => ServingTarget::Seldon,
        other => {
            problems.push(format!("target {other:?} is neither local nor seldon"));
            ServingTarget::Local
        }
    };
    let replicas = settings.replicas.trim().parse::<i32>().unwrap_or_else(|_| {
        problems.push(format!(
            "replicas {:?} is not a whole number",
            settings.replicas
        ));
        1
    });
    let request_limit = |request: &str, limit: &str| {
        let (request, limit) = (optional(request), optional(limit));
        (request.is_some() || limit.is_some()).then_some(RequestLimit { request, limit })
    };
    let production = match settings.production.as_str() {
        "stage" => ProductionMarker::Stage,
        "alias" => ProductionMarker::Alias,
        other => {
            problems.push(format!("production {other:?} is neither stage nor alias"));
            ProductionMarker::Stage
        }
    };
    let no_production = match settings.no_production.as_str() {
        "keep" => NoProduction::Keep,
        "remove" => NoProduction::Remove,
        other => {
            problems.push(format!(
                "\"when nothing is in production\" {other:?} is neither keep nor remove"
            ));
            NoProduction::Keep
        }
    };
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
        cpu: request_limit(&settings.cpu_request, &settings.cpu_limit),
        memory: request_limit(&settings.memory_request, &settings.memory_limit),
        storage_secret: optional(&settings.storage_secret),
        production,
        alias: settings.alias.trim().to_string(),
        artifact_map,
        no_production,
        requires_approval: settings.requires_approval,
    })
}

/// What changed between two versions of a form, for the history.
fn changes(before: &DeploymentSettings, after: &DeploymentSettings) -> String {
    let fields: [(&str, &str, &str); 14] = [
        ("target", &before.target, &after.target),
        ("name", &before.name, &after.name),
        ("namespace", &before.namespace, &after.namespace),
        ("replicas", &before.replicas, &after.replicas),
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

impl Reconciler {
    /// The form for a new deployment (`model` None) or an existing one.
    pub async fn deployment_form(&self, model: Option<&str>) -> Result<DeploymentForm, AppError> {
        let Some(model) = model else {
            return Ok(DeploymentForm {
                settings: DeploymentSettings::new_deployment(),
                ..DeploymentForm::default()
            });
        };
        let record = self
            .store()
            .binding(model)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("{model} has no deployment")))?;
        Ok(DeploymentForm {
            settings: settings_of(&record),
            exists: true,
            from_catalog: record.managed_by == ManagedBy::Catalog,
            problems: Vec::new(),
        })
    }

    /// A form sent back: its values with what is wrong with them now.
    pub async fn checked_form(
        &self,
        settings: DeploymentSettings,
        exists: bool,
    ) -> Result<DeploymentForm, AppError> {
        let problems = match self.check(&settings, exists).await? {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        };
        Ok(DeploymentForm {
            settings,
            exists,
            from_catalog: false,
            problems,
        })
    }

    /// The binding the form describes, checked against every other one.
    async fn check(
        &self,
        settings: &DeploymentSettings,
        exists: bool,
    ) -> Result<Result<DeploymentBinding, Vec<String>>, AppError> {
        let binding = match binding_of(settings) {
            Ok(binding) => binding,
            Err(problems) => return Ok(Err(problems)),
        };
        let records = self.store().bindings().await?;
        let mut problems = Vec::new();
        if !exists
            && records
                .iter()
                .any(|record| record.binding.model == binding.model)
        {
            problems.push(format!("{} already has a deployment", binding.model));
        }
        if binding.target == ServingTarget::Seldon && self.target(ServingTarget::Seldon).is_none() {
            problems.push(
                "the seldon target needs Slipway to run with a cluster (SLIPWAY_EXECUTOR=kubernetes)"
                    .into(),
            );
        }
        let mut all: Vec<DeploymentBinding> = records
            .into_iter()
            .map(|record| record.binding)
            .filter(|other| other.model != binding.model)
            .collect();
        all.push(binding.clone());
        problems.extend(binding_problems(&all));
        Ok(if problems.is_empty() {
            Ok(binding)
        } else {
            Err(problems)
        })
    }

    /// Creates an app-managed deployment and converges it at once.
    pub async fn create_deployment(
        &self,
        user: &User,
        settings: &DeploymentSettings,
    ) -> Result<Saved, AppError> {
        authorize(
            user,
            Action::ManageDeployment {
                model: settings.model.trim(),
            },
        )?;
        let binding = match self.check(settings, false).await? {
            Ok(binding) => binding,
            Err(problems) => return Ok(Saved::Invalid(problems)),
        };
        if !self.store().insert_binding(&binding, &user.name).await? {
            return Ok(Saved::Invalid(vec![format!(
                "{} already has a deployment",
                binding.model
            )]));
        }
        let detail = format!("created: {}", target_name(binding.target));
        self.settings_changed(user, &binding.model, "create-deployment", &detail)
            .await?;
        Ok(Saved::Done)
    }

    /// Changes an app-managed deployment, if nobody changed it since the
    /// form was read (`settings.revision`).
    pub async fn update_deployment(
        &self,
        user: &User,
        model: &str,
        settings: &DeploymentSettings,
    ) -> Result<Saved, AppError> {
        authorize(user, Action::ManageDeployment { model })?;
        let record = self.editable(model).await?;
        let settings = DeploymentSettings {
            model: model.into(),
            ..settings.clone()
        };
        let binding = match self.check(&settings, true).await? {
            Ok(binding) => binding,
            Err(problems) => return Ok(Saved::Invalid(problems)),
        };
        let revision = form_revision(&settings)?;
        if !self
            .store()
            .update_binding(&binding, revision, &user.name)
            .await?
        {
            return Err(changed_meanwhile(model));
        }
        let detail = changes(&settings_of(&record), &settings);
        self.settings_changed(user, model, "edit-deployment", &detail)
            .await?;
        Ok(Saved::Done)
    }

    /// Deletes an app-managed deployment; the next pass removes what it
    /// served (the model server, or the cluster object).
    pub async fn delete_deployment(
        &self,
        user: &User,
        model: &str,
        revision: &str,
    ) -> Result<(), AppError> {
        authorize(user, Action::ManageDeployment { model })?;
        self.editable(model).await?;
        let revision = revision
            .parse()
            .map_err(|_| AppError::InvalidInput("the form lacks its revision".into()))?;
        if !self.store().delete_binding(model, revision).await? {
            return Err(changed_meanwhile(model));
        }
        self.settings_changed(user, model, "delete-deployment", "deleted")
            .await
    }

    /// The record of an app-managed deployment.
    async fn editable(&self, model: &str) -> Result<BindingRecord, AppError> {
        let record = self
            .store()
            .binding(model)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("{model} has no deployment")))?;
        if record.managed_by == ManagedBy::Catalog {
            return Err(AppError::InvalidInput(format!(
                "{model} is deployed by the catalog file: change it there and restart Slipway"
            )));
        }
        Ok(record)
    }

    /// Audits a change of settings, puts it in the deployment's history,
    /// and converges at once.
    async fn settings_changed(
        &self,
        user: &User,
        model: &str,
        action: &str,
        detail: &str,
    ) -> Result<(), AppError> {
        self.store()
            .record_event(&user.name, action, &format!("model:{model}"), detail)
            .await?;
        let id = self
            .store()
            .begin_deployment(model, None, None, "settings", &user.name)
            .await?;
        self.store()
            .finish_deployment(&id, "changed", detail)
            .await?;
        self.forget_failure(model);
        self.reload_bindings().await?;
        self.trigger(Trigger {
            cause: "settings".into(),
            actor: user.name.clone(),
            retry_model: Some(model.into()),
        });
        Ok(())
    }
}

fn form_revision(settings: &DeploymentSettings) -> Result<i64, AppError> {
    settings
        .revision
        .parse()
        .map_err(|_| AppError::InvalidInput("the form lacks its revision".into()))
}

fn changed_meanwhile(model: &str) -> AppError {
    AppError::Conflict(format!(
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
                "target \"gke\" is neither local nor seldon",
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
