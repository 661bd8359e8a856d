//! Server functions: the UI's only way into the control plane.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{ExperimentPage, ExperimentQuery};

#[server]
pub async fn search_experiments(query: ExperimentQuery) -> Result<ExperimentPage, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.search_experiments(&user, query).await
}
