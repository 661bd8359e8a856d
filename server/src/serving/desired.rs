//! The desired state: which version each bound model should serve, as MLflow
//! says — the version in stage Production, or the one the binding's alias
//! points at. Read from one page of registered models.

use std::collections::BTreeMap;

use crate::adapters::mlflow::RegisteredModel;
use crate::catalog::{DeploymentBinding, ProductionMarker};

/// Bound model → the version that should serve (`None`: nothing is in
/// production, or the model does not exist).
pub fn desired_versions(
    bindings: &[DeploymentBinding],
    models: &[RegisteredModel],
) -> BTreeMap<String, Option<String>> {
    let by_name: BTreeMap<&str, &RegisteredModel> = models
        .iter()
        .map(|model| (model.name.as_str(), model))
        .collect();
    bindings
        .iter()
        .map(|binding| {
            let version =
                by_name
                    .get(binding.model.as_str())
                    .and_then(|model| match binding.production {
                        ProductionMarker::Stage => model
                            .latest_versions
                            .iter()
                            .find(|version| version.current_stage == "Production")
                            .map(|version| version.version.clone()),
                        ProductionMarker::Alias => model
                            .aliases
                            .iter()
                            .find(|alias| alias.alias == binding.alias)
                            .map(|alias| alias.version.clone()),
                    });
            (binding.model.clone(), version)
        })
        .collect()
}
