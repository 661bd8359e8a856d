//! The port between the UI and the control plane. `app` cannot depend on the
//! `server` crate, so it defines what it needs here and the server provides an
//! implementation through Leptos context; server functions stay thin: find the
//! user, find the control plane, call one method.

use std::sync::Arc;

use leptos::prelude::use_context;

use crate::access::User;
use crate::error::AppError;
use crate::model::{
    ArtifactEntry, ArtifactOwner, ArtifactPreview, AuditEntry, AuditQuery, DeploymentDetail,
    DeploymentForm, DeploymentView, Experiment, ExperimentPage, FieldErrors, Launch, LaunchForm,
    LaunchRequest, ListQuery, LoadTest, LoadTestForm, MetricHistory, ModelDetail, ModelsPage,
    NotificationsPage, PromotionPreview, PromotionRequest, RolloutPanel, RunDetail, RunQuery,
    RunsPage, TokensPage, TrafficRange, TrafficReport, TryAnswer, VersionDetail,
};

#[async_trait::async_trait]
pub trait ControlPlane: Send + Sync + 'static {
    async fn search_experiments(
        &self,
        user: &User,
        query: ListQuery,
    ) -> Result<ExperimentPage, AppError>;

    async fn get_experiment(
        &self,
        user: &User,
        experiment_id: String,
    ) -> Result<Experiment, AppError>;

    async fn search_runs(&self, user: &User, query: RunQuery) -> Result<RunsPage, AppError>;

    async fn get_run(&self, user: &User, run_id: String) -> Result<RunDetail, AppError>;

    /// Every metric of each run, with its whole history.
    async fn metric_histories(
        &self,
        user: &User,
        run_ids: Vec<String>,
    ) -> Result<Vec<MetricHistory>, AppError>;

    /// One directory of a run's or a logged model's artifacts (`None`: the root).
    async fn list_artifacts(
        &self,
        user: &User,
        owner: ArtifactOwner,
        path: Option<String>,
    ) -> Result<Vec<ArtifactEntry>, AppError>;

    /// The start of one artifact file, for its viewer.
    async fn preview_artifact(
        &self,
        user: &User,
        owner: ArtifactOwner,
        path: String,
    ) -> Result<ArtifactPreview, AppError>;

    async fn search_models(&self, user: &User, query: ListQuery) -> Result<ModelsPage, AppError>;

    async fn get_model(&self, user: &User, name: String) -> Result<ModelDetail, AppError>;

    async fn get_model_version(
        &self,
        user: &User,
        name: String,
        version: String,
    ) -> Result<VersionDetail, AppError>;

    async fn launch_form(&self, user: &User) -> Result<LaunchForm, AppError>;

    /// A launch form the user sent that came back with errors.
    async fn launch_draft(&self, user: &User, id: String) -> Result<LaunchRequest, AppError>;

    /// The errors the launch form would get, without launching anything.
    async fn check_launch(
        &self,
        user: &User,
        request: LaunchRequest,
    ) -> Result<FieldErrors, AppError>;

    /// Newest first.
    async fn list_launches(&self, user: &User) -> Result<Vec<Launch>, AppError>;

    async fn get_launch(&self, user: &User, id: String) -> Result<Launch, AppError>;

    async fn list_deployments(&self, user: &User) -> Result<Vec<DeploymentView>, AppError>;

    async fn get_deployment(
        &self,
        user: &User,
        model: String,
    ) -> Result<DeploymentDetail, AppError>;

    /// The deployment's active canary, else its newest; `None` if it has
    /// had none.
    async fn get_rollout_panel(
        &self,
        user: &User,
        model: String,
    ) -> Result<Option<RolloutPanel>, AppError>;

    async fn load_test_form(
        &self,
        user: &User,
        model: String,
        draft: Option<String>,
    ) -> Result<LoadTestForm, AppError>;

    async fn get_load_test(&self, user: &User, id: String) -> Result<LoadTest, AppError>;

    /// Newest first.
    async fn list_load_tests(&self, user: &User, model: String) -> Result<Vec<LoadTest>, AppError>;

    /// A deployment's traffic over `range`, by version (no charts yet).
    async fn get_traffic(
        &self,
        user: &User,
        model: String,
        range: TrafficRange,
    ) -> Result<TrafficReport, AppError>;

    /// The deployment form: a sent-back draft (with its problems), an
    /// existing deployment's settings, or a new deployment's defaults.
    async fn deployment_form(
        &self,
        user: &User,
        model: Option<String>,
        draft: Option<String>,
    ) -> Result<DeploymentForm, AppError>;

    /// The Production version now and `version`, side by side, before a promotion.
    async fn promotion_preview(
        &self,
        user: &User,
        model: String,
        version: String,
    ) -> Result<PromotionPreview, AppError>;

    /// Production now and the version a rollback would make Production again.
    /// `None`: it has served no earlier version.
    async fn rollback_preview(
        &self,
        user: &User,
        model: String,
    ) -> Result<Option<PromotionPreview>, AppError>;

    /// Newest first: pending ones and recent decisions.
    async fn list_promotion_requests(&self, user: &User)
    -> Result<Vec<PromotionRequest>, AppError>;

    /// The user's service tokens (an account admin's: everyone's); the
    /// secret of the one `created` names, once.
    async fn tokens_page(
        &self,
        user: &User,
        created: Option<String>,
    ) -> Result<TokensPage, AppError>;

    async fn notifications_page(&self, user: &User) -> Result<NotificationsPage, AppError>;

    async fn get_promotion_request(
        &self,
        user: &User,
        id: String,
    ) -> Result<PromotionRequest, AppError>;

    /// The single sign-on provider's name, if it is configured.
    fn single_sign_on(&self) -> Option<String>;

    /// The audit log, newest first, as filtered; at most `limit` entries.
    async fn search_audit(
        &self,
        user: &User,
        query: AuditQuery,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, AppError>;

    /// A Try it request the user sent, with its answer.
    async fn try_answer(&self, user: &User, id: String) -> Result<TryAnswer, AppError>;
    /// Why the last form sent back here did not do what it asked (`?notice=`).
    async fn notice(&self, user: &User, id: String) -> Result<Option<String>, AppError>;
}

pub type SharedControlPlane = Arc<dyn ControlPlane>;

pub fn control_plane() -> Result<SharedControlPlane, AppError> {
    use_context::<SharedControlPlane>().ok_or_else(|| missing_context("control plane"))
}

/// The signed-in user the server's auth gate put on this request. Fails
/// closed: a request that did not pass the gate, or passed it without a
/// session (the sign-in page), has no user and is refused.
pub fn current_user() -> Result<User, AppError> {
    Some(request_user()?)
        .filter(|user| user.authenticated)
        .ok_or(AppError::Unauthenticated)
}

/// Whoever the gate decided this request comes from, `anonymous` included.
pub fn request_user() -> Result<User, AppError> {
    let parts = use_context::<http::request::Parts>().ok_or_else(|| missing_context("request"))?;
    parts
        .extensions
        .get::<User>()
        .cloned()
        .ok_or(AppError::Unauthenticated)
}

fn missing_context(what: &str) -> AppError {
    tracing::error!("{what} missing from the Leptos context");
    AppError::Internal {
        reference: format!("missing-{}", what.replace(' ', "-")),
    }
}
