//! The control plane behind the UI's port: what each server function asks
//! for, done against MLflow and the store.

use app::error::AppError;
use app::model::{Experiment, ExperimentPage, ExperimentQuery, MAX_PAGE_SIZE, User};
use app::port::ControlPlane;

use crate::mlflow::{self, MlflowClient, SearchExperiments};
use crate::store::Store;

pub struct Slipway {
    pub mlflow: MlflowClient,
    pub store: Store,
}

#[async_trait::async_trait]
impl ControlPlane for Slipway {
    async fn search_experiments(
        &self,
        _user: &User,
        query: ExperimentQuery,
    ) -> Result<ExperimentPage, AppError> {
        if !(1..=MAX_PAGE_SIZE).contains(&query.page_size) {
            return Err(AppError::InvalidInput(format!(
                "Page size must be from 1 to {MAX_PAGE_SIZE}, not {}",
                query.page_size
            )));
        }
        let filter = query
            .name_contains
            .as_deref()
            .map(str::trim)
            .filter(|term| !term.is_empty())
            .map(mlflow::name_contains_filter)
            .transpose()?;
        let request = SearchExperiments {
            max_results: query.page_size,
            filter,
            order_by: vec!["last_update_time DESC".into(), "name ASC".into()],
            page_token: query.page_token,
        };
        let response = self
            .mlflow
            .search_experiments(&request)
            .await
            .map_err(|err| err.to_app_error())?;
        Ok(ExperimentPage {
            experiments: response
                .experiments
                .into_iter()
                .map(to_experiment)
                .collect(),
            next_page_token: response.next_page_token.filter(|token| !token.is_empty()),
            mlflow_url: self.mlflow.url(),
        })
    }
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
