//! Editing MLflow's model registry: registering a run's model, aliases,
//! stages, descriptions and tags. Each change is audited before it is sent
//! and completed with its outcome. What a deployment serves by (its stage
//! or alias) changes only through Promote and Roll back, so approvals and
//! the deployment history cannot be bypassed from here.

use app::access::{Action, authorize};
use app::error::AppError;
use app::model::{RegistrableModel, User};

use crate::catalog::ProductionMarker;
use crate::control::Slipway;

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

impl RegistryEdit {
    /// The form's fields: `op` says which change, the rest what it needs.
    pub fn from_form<'a>(
        pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
    ) -> Result<Self, AppError> {
        let fields: std::collections::HashMap<String, String> = pairs
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        let field = |name: &str| fields.get(name).map(|value| value.trim().to_string());
        let version = field("version").filter(|version| !version.is_empty());
        let needs_version = || {
            version
                .clone()
                .filter(|version| version.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| AppError::InvalidInput("Choose a version.".into()))
        };
        let tag_key = || {
            let key = field("key").unwrap_or_default();
            if key.is_empty() || key.chars().count() > MAX_TAG_KEY {
                return Err(AppError::InvalidInput(format!(
                    "A tag needs a key of 1 to {MAX_TAG_KEY} characters."
                )));
            }
            Ok(key)
        };
        match field("op").as_deref() {
            Some("set-alias") => Ok(RegistryEdit::SetAlias {
                version: needs_version()?,
                alias: checked_alias(&field("alias").unwrap_or_default())?,
            }),
            Some("remove-alias") => Ok(RegistryEdit::RemoveAlias {
                alias: checked_alias(&field("alias").unwrap_or_default())?,
            }),
            Some("stage") => {
                let stage = field("stage").unwrap_or_default();
                let Some(stage) = STAGES
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(&stage))
                else {
                    return Err(AppError::InvalidInput(format!(
                        "Choose a stage: {}.",
                        STAGES.join(", ")
                    )));
                };
                Ok(RegistryEdit::Transition {
                    version: needs_version()?,
                    stage: stage.to_string(),
                    archive_others: field("archive_others").is_some(),
                })
            }
            Some("describe") => {
                // A description keeps its inner line breaks, not its edges.
                let description = field("description").unwrap_or_default();
                if description.chars().count() > MAX_DESCRIPTION {
                    return Err(AppError::InvalidInput(format!(
                        "A description has at most {MAX_DESCRIPTION} characters."
                    )));
                }
                Ok(RegistryEdit::Describe {
                    version,
                    description,
                })
            }
            Some("set-tag") => {
                let value = field("value").unwrap_or_default();
                if value.chars().count() > MAX_TAG_VALUE {
                    return Err(AppError::InvalidInput(format!(
                        "A tag's value has at most {MAX_TAG_VALUE} characters."
                    )));
                }
                Ok(RegistryEdit::SetTag {
                    version,
                    key: tag_key()?,
                    value,
                })
            }
            Some("delete-tag") => Ok(RegistryEdit::DeleteTag {
                version,
                key: tag_key()?,
            }),
            _ => Err(AppError::InvalidInput(
                "This form does not say what to change.".into(),
            )),
        }
    }

    /// The audit entry's action and detail.
    fn audit(&self) -> (&'static str, String) {
        let of = |version: &Option<String>| {
            version
                .as_ref()
                .map_or("the model".to_string(), |version| format!("v{version}"))
        };
        match self {
            RegistryEdit::SetAlias { version, alias } => {
                ("registry-alias", format!("@{alias} → v{version}"))
            }
            RegistryEdit::RemoveAlias { alias } => ("registry-alias", format!("@{alias} removed")),
            RegistryEdit::Transition {
                version,
                stage,
                archive_others,
            } => (
                "registry-stage",
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
                "registry-description",
                format!("{}: {description}", of(version)),
            ),
            RegistryEdit::SetTag {
                version,
                key,
                value,
            } => ("registry-tag", format!("{}: {key}={value}", of(version))),
            RegistryEdit::DeleteTag { version, key } => {
                ("registry-tag", format!("{}: {key} removed", of(version)))
            }
        }
    }
}

/// MLflow's alias rules: word characters and dashes, and neither `latest`
/// nor `v<number>`, which name versions.
fn checked_alias(alias: &str) -> Result<String, AppError> {
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
        return Err(AppError::InvalidInput(
            "An alias is letters, digits, '_' and '-' (at most 256).".into(),
        ));
    }
    if reserved {
        return Err(AppError::InvalidInput(format!(
            "\"{alias}\" names versions in MLflow; choose another alias."
        )));
    }
    Ok(alias.to_string())
}

impl Slipway {
    /// Makes one change to `model` in MLflow, audited.
    pub async fn edit_registry(
        &self,
        user: &User,
        model: &str,
        edit: &RegistryEdit,
    ) -> Result<(), AppError> {
        authorize(user, Action::EditRegistry { model })?;
        self.refuse_what_promotion_owns(model, edit).await?;
        let (action, detail) = edit.audit();
        let audit = self
            .store
            .begin_event(&user.name, action, &format!("model:{model}"), &detail)
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
        self.finish(&audit, outcome).await?;
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
    ) -> Result<String, AppError> {
        let model = model.trim();
        if model.is_empty() || model.chars().count() > MAX_NAME || model.contains('/') {
            return Err(AppError::InvalidInput(format!(
                "A registered model needs a name of 1 to {MAX_NAME} characters, without '/'."
            )));
        }
        authorize(user, Action::EditRegistry { model })?;
        let run = self.mlflow.get_run(run_id).await?;
        let offered = self.registrable_models(&run).await;
        let Some(chosen) = offered.iter().find(|offered| offered.source == source) else {
            return Err(AppError::InvalidInput(
                "Choose one of the models this run logged.".into(),
            ));
        };
        let audit = self
            .store
            .begin_event(
                &user.name,
                "registry-register",
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
        self.store
            .complete_event(
                &audit,
                &match &version {
                    Ok(version) => format!("done: v{version}"),
                    Err(err) => format!("failed: {err}"),
                },
            )
            .await?;
        let version = version?;
        tracing::info!(%model, %version, run = %run_id, user = %user.name, "run's model registered");
        Ok(version)
    }

    /// The models a run logged: MLflow 3's logged models, else the artifact
    /// folders MLflow 2 lists in the run's `mlflow.log-model.history` tag.
    pub async fn registrable_models(&self, run: &crate::mlflow::Run) -> Vec<RegistrableModel> {
        if !run.outputs.model_outputs.is_empty() {
            let named = run.outputs.model_outputs.iter().map(|output| async move {
                // The name is for people; the id alone still registers.
                let name = self
                    .mlflow
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

    /// The stage or alias a deployment serves by moves only through
    /// Promote and Roll back: they keep approvals and the history.
    async fn refuse_what_promotion_owns(
        &self,
        model: &str,
        edit: &RegistryEdit,
    ) -> Result<(), AppError> {
        let bindings = self.reconciler.bindings();
        let Some(binding) = bindings.iter().find(|binding| binding.model == model) else {
            return Ok(());
        };
        let refused = || {
            Err(AppError::Conflict(format!(
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

    async fn finish(
        &self,
        audit: &str,
        outcome: Result<(), crate::mlflow::MlflowError>,
    ) -> Result<(), AppError> {
        let recorded = match &outcome {
            Ok(()) => "done".to_string(),
            Err(err) => format!("failed: {err}"),
        };
        self.store.complete_event(audit, &recorded).await?;
        Ok(outcome?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(form: &str) -> Result<RegistryEdit, AppError> {
        RegistryEdit::from_form(url::form_urlencoded::parse(form.as_bytes()))
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
