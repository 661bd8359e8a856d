//! Editing MLflow's model registry: registering a run's model, aliases,
//! stages, descriptions and tags. Each change is audited before it is sent
//! and completed with its outcome. What a deployment serves by (its stage
//! or alias) changes only through Promote and Roll back, so approvals and
//! the deployment history cannot be bypassed from here.

use app::access::{Action, User, authorize};
use app::model::{AuditAction, RegistrableModel};

use super::audit::{Audit, Outcome};
use crate::adapters::mlflow::MlflowClient;
use crate::catalog::ProductionMarker;
use crate::error::{Error, Result};
use crate::store::Store;

/// MLflow's stages.
pub const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

const MAX_NAME: usize = 256;
const MAX_TAG_KEY: usize = 250;
const MAX_TAG_VALUE: usize = 5000;
const MAX_DESCRIPTION: usize = 5000;

/// One change to a registered model (`version: None`) or to a version, as
/// the model and version pages' forms send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEdit {
    SetAlias {
        version: String,
        alias: String,
    },
    RemoveAlias {
        alias: String,
    },
    Transition {
        version: String,
        stage: String,
        archive_others: bool,
    },
    Describe {
        version: Option<String>,
        description: String,
    },
    SetTag {
        version: Option<String>,
        key: String,
        value: String,
    },
    DeleteTag {
        version: Option<String>,
        key: String,
    },
}

/// The model and version pages' registry forms as sent: `op` says which
/// change, the other fields what it needs.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct RegistryForm {
    pub op: String,
    pub version: Option<String>,
    pub alias: Option<String>,
    pub stage: Option<String>,
    /// A checkbox: present when ticked.
    pub archive_others: Option<String>,
    pub description: Option<String>,
    pub key: Option<String>,
    pub value: Option<String>,
}

impl RegistryEdit {
    /// The one change a form asks for, checked.
    pub fn from_form(form: &RegistryForm) -> Result<Self> {
        let trimmed =
            |value: &Option<String>| value.as_deref().map(|value| value.trim().to_string());
        let version = trimmed(&form.version).filter(|version| !version.is_empty());
        let needs_version = || {
            version
                .clone()
                .filter(|version| version.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| Error::invalid("Choose a version."))
        };
        let tag_key = || {
            let key = trimmed(&form.key).unwrap_or_default();
            if key.is_empty() || key.chars().count() > MAX_TAG_KEY {
                return Err(Error::invalid(format!(
                    "A tag needs a key of 1 to {MAX_TAG_KEY} characters."
                )));
            }
            Ok(key)
        };
        let field = |value: &Option<String>| trimmed(value).unwrap_or_default();
        match form.op.trim() {
            "set-alias" => Ok(RegistryEdit::SetAlias {
                version: needs_version()?,
                alias: checked_alias(&field(&form.alias))?,
            }),
            "remove-alias" => Ok(RegistryEdit::RemoveAlias {
                alias: checked_alias(&field(&form.alias))?,
            }),
            "stage" => {
                let stage = field(&form.stage);
                let Some(stage) = STAGES
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(&stage))
                else {
                    return Err(Error::invalid(format!(
                        "Choose a stage: {}.",
                        STAGES.join(", ")
                    )));
                };
                Ok(RegistryEdit::Transition {
                    version: needs_version()?,
                    stage: stage.to_string(),
                    archive_others: form.archive_others.is_some(),
                })
            }
            "describe" => {
                // A description keeps its inner line breaks, not its edges.
                let description = field(&form.description);
                if description.chars().count() > MAX_DESCRIPTION {
                    return Err(Error::invalid(format!(
                        "A description has at most {MAX_DESCRIPTION} characters."
                    )));
                }
                Ok(RegistryEdit::Describe {
                    version,
                    description,
                })
            }
            "set-tag" => {
                let value = field(&form.value);
                if value.chars().count() > MAX_TAG_VALUE {
                    return Err(Error::invalid(format!(
                        "A tag's value has at most {MAX_TAG_VALUE} characters."
                    )));
                }
                Ok(RegistryEdit::SetTag {
                    version,
                    key: tag_key()?,
                    value,
                })
            }
            "delete-tag" => Ok(RegistryEdit::DeleteTag {
                version,
                key: tag_key()?,
            }),
            _ => Err(Error::invalid("This form does not say what to change.")),
        }
    }

    /// The audit entry's action and detail.
    fn audit(&self) -> (AuditAction, String) {
        let of = |version: &Option<String>| {
            version
                .as_ref()
                .map_or("the model".to_string(), |version| format!("v{version}"))
        };
        match self {
            RegistryEdit::SetAlias { version, alias } => {
                (AuditAction::RegistryAlias, format!("@{alias} → v{version}"))
            }
            RegistryEdit::RemoveAlias { alias } => {
                (AuditAction::RegistryAlias, format!("@{alias} removed"))
            }
            RegistryEdit::Transition {
                version,
                stage,
                archive_others,
            } => (
                AuditAction::RegistryStage,
                format!(
                    "v{version} → {stage}{}",
                    if *archive_others {
                        ", the others in it archived"
                    } else {
                        ""
                    }
                ),
            ),
            RegistryEdit::Describe {
                version,
                description,
            } => (
                AuditAction::RegistryDescription,
                format!("{}: {description}", of(version)),
            ),
            RegistryEdit::SetTag {
                version,
                key,
                value,
            } => (
                AuditAction::RegistryTag,
                format!("{}: {key}={value}", of(version)),
            ),
            RegistryEdit::DeleteTag { version, key } => (
                AuditAction::RegistryTag,
                format!("{}: {key} removed", of(version)),
            ),
        }
    }
}

/// MLflow's alias rules: word characters and dashes, and neither `latest`
/// nor `v<number>`, which name versions.
fn checked_alias(alias: &str) -> Result<String> {
    let alias = alias.trim().trim_start_matches('@');
    let reserved = alias.eq_ignore_ascii_case("latest")
        || alias
            .strip_prefix(['v', 'V'])
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
    let valid = !alias.is_empty()
        && alias.len() <= MAX_NAME
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(Error::invalid(
            "An alias is letters, digits, '_' and '-' (at most 256).",
        ));
    }
    if reserved {
        return Err(Error::invalid(format!(
            "\"{alias}\" names versions in MLflow; choose another alias."
        )));
    }
    Ok(alias.to_string())
}

pub struct Registry {
    store: Store,
    audit: Audit,
    mlflow: MlflowClient,
}

impl Registry {
    pub fn new(store: Store, mlflow: MlflowClient) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
            mlflow,
        }
    }

    /// Makes one change to `model` in MLflow, audited.
    pub async fn edit(&self, user: &User, model: &str, edit: &RegistryEdit) -> Result<()> {
        authorize(user, Action::EditRegistry { model })?;
        self.refuse_what_promotion_owns(model, edit).await?;
        let (action, detail) = edit.audit();
        let audit = self
            .audit
            .begin(&user.actor(), action, &format!("model:{model}"), &detail)
            .await?;
        let outcome = match edit {
            RegistryEdit::SetAlias { version, alias } => {
                self.mlflow.set_alias(model, alias, version).await
            }
            RegistryEdit::RemoveAlias { alias } => self.mlflow.delete_alias(model, alias).await,
            RegistryEdit::Transition {
                version,
                stage,
                archive_others,
            } => {
                self.mlflow
                    .transition_stage(model, version, stage, *archive_others)
                    .await
            }
            RegistryEdit::Describe {
                version,
                description,
            } => {
                self.mlflow
                    .set_description(model, version.as_deref(), description)
                    .await
            }
            RegistryEdit::SetTag {
                version,
                key,
                value,
            } => {
                self.mlflow
                    .set_registry_tag(model, version.as_deref(), key, value)
                    .await
            }
            RegistryEdit::DeleteTag { version, key } => {
                self.mlflow
                    .delete_registry_tag(model, version.as_deref(), key)
                    .await
            }
        };
        audit.finish(outcome.map_err(Error::from)).await?;
        tracing::info!(%model, user = %user.name, %detail, "registry changed");
        Ok(())
    }

    /// Registers the run's model `source` (one the run logged) as a new
    /// version of `model`, creating the registered model if needed; the
    /// new version's number.
    pub async fn register_run_model(
        &self,
        user: &User,
        run_id: &str,
        source: &str,
        model: &str,
    ) -> Result<String> {
        let model = model.trim();
        if model.is_empty() || model.chars().count() > MAX_NAME || model.contains('/') {
            return Err(Error::invalid(format!(
                "A registered model needs a name of 1 to {MAX_NAME} characters, without '/'."
            )));
        }
        authorize(user, Action::EditRegistry { model })?;
        let run = self.mlflow.get_run(run_id).await?;
        let offered = registrable_models(&self.mlflow, &run).await;
        let Some(chosen) = offered.iter().find(|offered| offered.source == source) else {
            return Err(Error::invalid("Choose one of the models this run logged."));
        };
        let audit = self
            .audit
            .begin(
                &user.actor(),
                AuditAction::RegistryRegister,
                &format!("model:{model}"),
                &format!("run {run_id}: {}", chosen.label),
            )
            .await?;
        let created = async {
            self.mlflow.create_registered_model(model).await?;
            self.mlflow
                .create_model_version(model, &chosen.source, run_id, chosen.model_id.as_deref())
                .await
        }
        .await;
        let version = created.map(|created| created.version);
        audit
            .complete(match &version {
                Ok(version) => Outcome::DoneWith(format!("v{version}")),
                Err(err) => Outcome::failed(err),
            })
            .await?;
        let version = version?;
        tracing::info!(%model, %version, run = %run_id, user = %user.name, "run's model registered");
        Ok(version)
    }

    /// The stage or alias a deployment serves by moves only through
    /// Promote and Roll back: they keep approvals and the history.
    async fn refuse_what_promotion_owns(&self, model: &str, edit: &RegistryEdit) -> Result<()> {
        let Some(binding) = self
            .store
            .binding(model)
            .await?
            .map(|record| record.binding)
        else {
            return Ok(());
        };
        let refused = || {
            Err(Error::Conflict(format!(
                "A deployment serves {model} by {}: change it with Promote or Roll back on the deployment's page.",
                binding.marker()
            )))
        };
        match (binding.production, edit) {
            (
                ProductionMarker::Alias,
                RegistryEdit::SetAlias { alias, .. } | RegistryEdit::RemoveAlias { alias },
            ) if *alias == binding.alias => refused(),
            (ProductionMarker::Stage, RegistryEdit::Transition { stage, .. })
                if stage == "Production" =>
            {
                refused()
            }
            (ProductionMarker::Stage, RegistryEdit::Transition { version, .. }) => {
                let current = self.mlflow.get_model_version(model, version).await?;
                if current.current_stage == "Production" {
                    refused()
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// The models a run logged: MLflow 3's logged models, else the artifact
/// folders MLflow 2 lists in the run's `mlflow.log-model.history` tag.
pub async fn registrable_models(
    mlflow: &MlflowClient,
    run: &crate::adapters::mlflow::Run,
) -> Vec<RegistrableModel> {
    if !run.outputs.model_outputs.is_empty() {
        let named = run.outputs.model_outputs.iter().map(|output| async move {
            // The name is for people; the id alone still registers.
            let name = mlflow
                .logged_model_name(&output.model_id)
                .await
                .unwrap_or_default();
            RegistrableModel {
                label: if name.is_empty() {
                    output.model_id.clone()
                } else {
                    format!("{name} ({})", output.model_id)
                },
                source: format!("models:/{}", output.model_id),
                model_id: Some(output.model_id.clone()),
            }
        });
        return futures::future::join_all(named).await;
    }
    let history = run
        .data
        .tags
        .iter()
        .find(|tag| tag.key == "mlflow.log-model.history")
        .and_then(|tag| serde_json::from_str::<Vec<serde_json::Value>>(&tag.value).ok())
        .unwrap_or_default();
    let mut paths: Vec<String> = history
        .iter()
        .filter_map(|entry| entry["artifact_path"].as_str())
        .filter(|path| !path.is_empty() && !path.split('/').any(|part| part == ".."))
        .map(str::to_string)
        .collect();
    paths.sort();
    paths.dedup();
    let artifacts = run.info.artifact_uri.trim_end_matches('/');
    paths
        .into_iter()
        .map(|path| RegistrableModel {
            source: format!("{artifacts}/{path}"),
            label: path,
            model_id: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(form: &str) -> Result<RegistryEdit> {
        RegistryEdit::from_form(&serde_urlencoded::from_str(form).unwrap())
    }

    #[test]
    fn forms_read_as_one_change_each() {
        assert_eq!(
            parse("op=set-alias&version=3&alias=%40challenger").unwrap(),
            RegistryEdit::SetAlias {
                version: "3".into(),
                alias: "challenger".into()
            }
        );
        assert_eq!(
            parse("op=stage&version=2&stage=staging&archive_others=on").unwrap(),
            RegistryEdit::Transition {
                version: "2".into(),
                stage: "Staging".into(),
                archive_others: true
            }
        );
        assert_eq!(
            parse("op=describe&description=+two%0Alines+").unwrap(),
            RegistryEdit::Describe {
                version: None,
                description: "two\nlines".into()
            }
        );
        assert_eq!(
            parse("op=delete-tag&version=1&key=team").unwrap(),
            RegistryEdit::DeleteTag {
                version: Some("1".into()),
                key: "team".into()
            }
        );
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        let message = |form| parse(form).unwrap_err().to_string();
        assert_eq!(message("op=frob"), "This form does not say what to change.");
        assert_eq!(message("op=set-alias&alias=x"), "Choose a version.");
        assert_eq!(
            message("op=set-alias&version=1+or+2&alias=x"),
            "Choose a version."
        );
        assert_eq!(
            message("op=set-alias&version=1&alias=v12"),
            "\"v12\" names versions in MLflow; choose another alias."
        );
        assert_eq!(
            message("op=remove-alias&alias=a+b"),
            "An alias is letters, digits, '_' and '-' (at most 256)."
        );
        assert_eq!(
            message("op=stage&version=1&stage=Live"),
            "Choose a stage: None, Staging, Production, Archived."
        );
        assert_eq!(
            message("op=set-tag&key=&value=x"),
            "A tag needs a key of 1 to 250 characters."
        );
    }
}
