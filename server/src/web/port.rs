//! The UI's port (`app::port::ControlPlane`), served by the use-case
//! services: each method calls one service and turns its error into what
//! the page shows.

use app::access::User;
use app::error::AppError;
use app::model::{
    ArtifactEntry, ArtifactOwner, ArtifactPreview, AuditEntry, AuditQuery, DeploymentDetail,
    DeploymentForm, DeploymentView, Experiment, ExperimentPage, FieldErrors, Launch, LaunchForm,
    LaunchRequest, ListQuery, LoadTest, LoadTestForm, MetricHistory, ModelDetail, ModelsPage,
    NotificationsPage, PromotionPreview, PromotionRequest, RolloutPanel, RunDetail, RunQuery,
    RunsPage, TokensPage, TrafficRange, TrafficReport, TryAnswer, VersionDetail,
};
use app::port::ControlPlane;

use crate::services::Services;

pub struct Port(pub Services);

#[async_trait::async_trait]
impl ControlPlane for Port {
    async fn search_experiments(
        &self,
        _user: &User,
        query: ListQuery,
    ) -> Result<ExperimentPage, AppError> {
        Ok(self.0.reads.search_experiments(query).await?)
    }

    async fn get_experiment(
        &self,
        _user: &User,
        experiment_id: String,
    ) -> Result<Experiment, AppError> {
        Ok(self.0.reads.get_experiment(experiment_id).await?)
    }

    async fn search_runs(&self, _user: &User, query: RunQuery) -> Result<RunsPage, AppError> {
        Ok(self.0.reads.search_runs(query).await?)
    }

    async fn get_run(&self, _user: &User, run_id: String) -> Result<RunDetail, AppError> {
        Ok(self.0.reads.get_run(run_id).await?)
    }

    async fn metric_histories(
        &self,
        _user: &User,
        run_ids: Vec<String>,
    ) -> Result<Vec<MetricHistory>, AppError> {
        Ok(self.0.reads.metric_histories(run_ids).await?)
    }

    async fn list_artifacts(
        &self,
        _user: &User,
        owner: ArtifactOwner,
        path: Option<String>,
    ) -> Result<Vec<ArtifactEntry>, AppError> {
        Ok(self.0.reads.list_artifacts(owner, path).await?)
    }

    async fn preview_artifact(
        &self,
        _user: &User,
        owner: ArtifactOwner,
        path: String,
    ) -> Result<ArtifactPreview, AppError> {
        Ok(self.0.reads.preview_artifact(owner, path).await?)
    }

    async fn search_models(&self, _user: &User, query: ListQuery) -> Result<ModelsPage, AppError> {
        Ok(self.0.reads.search_models(query).await?)
    }

    async fn get_model(&self, _user: &User, name: String) -> Result<ModelDetail, AppError> {
        Ok(self.0.reads.get_model(name).await?)
    }

    async fn get_model_version(
        &self,
        _user: &User,
        name: String,
        version: String,
    ) -> Result<VersionDetail, AppError> {
        Ok(self.0.reads.get_model_version(name, version).await?)
    }

    async fn launch_form(&self, _user: &User) -> Result<LaunchForm, AppError> {
        Ok(self.0.reads.launch_form().await?)
    }

    async fn launch_draft(&self, user: &User, id: String) -> Result<LaunchRequest, AppError> {
        Ok(self.0.launches.draft(user, &id).await?)
    }

    async fn check_launch(
        &self,
        _user: &User,
        request: LaunchRequest,
    ) -> Result<FieldErrors, AppError> {
        Ok(self.0.launches.check(&request))
    }

    async fn list_launches(&self, _user: &User) -> Result<Vec<Launch>, AppError> {
        Ok(self.0.reads.list_launches().await?)
    }

    async fn get_launch(&self, _user: &User, id: String) -> Result<Launch, AppError> {
        Ok(self.0.launches.launch(&id).await?)
    }

    async fn list_deployments(&self, _user: &User) -> Result<Vec<DeploymentView>, AppError> {
        Ok(self.0.reads.list_deployments().await?)
    }

    async fn get_deployment(
        &self,
        _user: &User,
        model: String,
    ) -> Result<DeploymentDetail, AppError> {
        Ok(self.0.reads.get_deployment(model).await?)
    }

    async fn get_rollout_panel(
        &self,
        _user: &User,
        model: String,
    ) -> Result<Option<RolloutPanel>, AppError> {
        Ok(self.0.reads.rollout_panel(&model).await?)
    }

    async fn load_test_form(
        &self,
        user: &User,
        model: String,
        draft: Option<String>,
    ) -> Result<LoadTestForm, AppError> {
        Ok(self
            .0
            .load_tests
            .form(user, &model, draft.as_deref())
            .await?)
    }

    async fn get_load_test(&self, _user: &User, id: String) -> Result<LoadTest, AppError> {
        Ok(self.0.load_tests.test(&id).await?)
    }

    async fn list_load_tests(
        &self,
        _user: &User,
        model: String,
    ) -> Result<Vec<LoadTest>, AppError> {
        Ok(self.0.load_tests.of_deployment(&model).await?)
    }

    async fn get_traffic(
        &self,
        _user: &User,
        model: String,
        range: TrafficRange,
    ) -> Result<TrafficReport, AppError> {
        Ok(self.0.reads.get_traffic(model, range).await?)
    }

    async fn deployment_form(
        &self,
        user: &User,
        model: Option<String>,
        draft: Option<String>,
    ) -> Result<DeploymentForm, AppError> {
        let deployments = &self.0.deployments;
        Ok(match draft {
            Some(id) => deployments.draft(user, &id).await?,
            None => deployments.form(model.as_deref()).await?,
        })
    }

    async fn promotion_preview(
        &self,
        _user: &User,
        model: String,
        version: String,
    ) -> Result<PromotionPreview, AppError> {
        Ok(self.0.promotions.preview_for(&model, &version).await?)
    }

    async fn rollback_preview(
        &self,
        _user: &User,
        model: String,
    ) -> Result<Option<PromotionPreview>, AppError> {
        Ok(self.0.promotions.rollback_preview(&model).await?)
    }

    async fn list_promotion_requests(
        &self,
        _user: &User,
    ) -> Result<Vec<PromotionRequest>, AppError> {
        Ok(self.0.reads.list_promotion_requests().await?)
    }

    async fn tokens_page(
        &self,
        user: &User,
        created: Option<String>,
    ) -> Result<TokensPage, AppError> {
        Ok(self.0.tokens.page(user, created.as_deref()).await?)
    }

    async fn notifications_page(&self, user: &User) -> Result<NotificationsPage, AppError> {
        Ok(self.0.notifications.page(user).await?)
    }

    async fn get_promotion_request(
        &self,
        _user: &User,
        id: String,
    ) -> Result<PromotionRequest, AppError> {
        Ok(self.0.promotions.request(&id).await?)
    }

    fn single_sign_on(&self) -> Option<String> {
        self.0.accounts.single_sign_on()
    }

    async fn search_audit(
        &self,
        _user: &User,
        query: AuditQuery,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, AppError> {
        Ok(self.0.reads.search_audit(query, limit).await?)
    }

    async fn try_answer(&self, user: &User, id: String) -> Result<TryAnswer, AppError> {
        Ok(self.0.reads.try_answer(user, id).await?)
    }

    async fn notice(&self, user: &User, id: String) -> Result<Option<String>, AppError> {
        Ok(self.0.reads.notice(user, &id).await?)
    }
}
