//! Server functions: the UI's only way into the control plane.

use leptos::prelude::*;

use crate::access::User;
use crate::codec::JsonText;
use crate::error::AppError;
use crate::model::{
    ArtifactEntry, ArtifactOwner, ArtifactPreview, AuditEntry, AuditQuery, ChartOptions,
    ComparePlots, DeploymentDetail, DeploymentForm, DeploymentView, Experiment, ExperimentPage,
    FieldErrors, Launch, LaunchForm, LaunchRequest, ListQuery, LoadTest, LoadTestForm, MetricChart,
    ModelDetail, ModelsPage, NotificationsPage, PromotionPreview, PromotionRequest, RolloutPanel,
    RunDetail, RunQuery, RunsPage, TokensPage, TrafficRange, TrafficReport, TryAnswer,
    VersionDetail,
};

/// Who is signed in (`anonymous` on the sign-in page), so pages show only
/// what the user may do.
#[server(output = JsonText)]
pub async fn who_am_i() -> Result<User, AppError> {
    crate::port::request_user()
}

#[server(output = JsonText)]
pub async fn search_experiments(query: ListQuery) -> Result<ExperimentPage, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.search_experiments(&user, query).await
}

#[server(output = JsonText)]
pub async fn get_experiment(experiment_id: String) -> Result<Experiment, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.get_experiment(&user, experiment_id).await
}

#[server(output = JsonText)]
pub async fn search_runs(query: RunQuery) -> Result<RunsPage, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.search_runs(&user, query).await
}

#[server(output = JsonText)]
pub async fn get_run(run_id: String) -> Result<RunDetail, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.get_run(&user, run_id).await
}

/// A chart per metric, each of the runs a line on it.
#[server(output = JsonText)]
pub async fn run_charts(
    run_ids: Vec<String>,
    options: ChartOptions,
) -> Result<Vec<MetricChart>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    let histories = control_plane()?.metric_histories(&user, run_ids).await?;
    crate::charts::metric_charts(&histories, options)
}

/// A parameter against a metric, and parallel coordinates, of the runs.
#[server(output = JsonText)]
pub async fn comparison_plots(
    run_ids: Vec<String>,
    x: Option<String>,
    y: Option<String>,
) -> Result<ComparePlots, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    crate::model::check_compared_runs(run_ids.len()).map_err(AppError::InvalidInput)?;
    let control_plane = control_plane()?;
    let details = futures::future::try_join_all(
        run_ids
            .into_iter()
            .map(|run_id| control_plane.get_run(&user, run_id)),
    )
    .await?;
    let runs: Vec<_> = details.into_iter().map(|detail| detail.run).collect();
    crate::charts::compare_plots(&runs, x, y)
}

#[server(output = JsonText)]
pub async fn list_artifacts(
    owner: ArtifactOwner,
    path: Option<String>,
) -> Result<Vec<ArtifactEntry>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.list_artifacts(&user, owner, path).await
}

#[server(output = JsonText)]
pub async fn preview_artifact(
    owner: ArtifactOwner,
    path: String,
) -> Result<ArtifactPreview, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.preview_artifact(&user, owner, path).await
}

#[server(output = JsonText)]
pub async fn search_models(query: ListQuery) -> Result<ModelsPage, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.search_models(&user, query).await
}

#[server(output = JsonText)]
pub async fn get_model(name: String) -> Result<ModelDetail, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.get_model(&user, name).await
}

#[server(output = JsonText)]
pub async fn get_model_version(name: String, version: String) -> Result<VersionDetail, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?
        .get_model_version(&user, name, version)
        .await
}

#[server(output = JsonText)]
pub async fn load_launch_form() -> Result<LaunchForm, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.launch_form(&user).await
}

/// A launch form sent back with errors: its values, and the errors.
#[server(output = JsonText)]
pub async fn load_launch_draft(id: String) -> Result<(LaunchRequest, FieldErrors), AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    let control_plane = control_plane()?;
    let request = control_plane.launch_draft(&user, id).await?;
    let errors = control_plane.check_launch(&user, request.clone()).await?;
    Ok((request, errors))
}

#[server(output = JsonText)]
pub async fn list_launches() -> Result<Vec<Launch>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.list_launches(&user).await
}

#[server(output = JsonText)]
pub async fn get_launch(id: String) -> Result<Launch, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.get_launch(&user, id).await
}

#[server(output = JsonText)]
pub async fn list_deployments() -> Result<Vec<DeploymentView>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.list_deployments(&user).await
}

#[server(output = JsonText)]
pub async fn load_deployment_form(
    model: Option<String>,
    draft: Option<String>,
) -> Result<DeploymentForm, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.deployment_form(&user, model, draft).await
}

#[server(output = JsonText)]
pub async fn get_deployment(model: String) -> Result<DeploymentDetail, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.get_deployment(&user, model).await
}

/// A deployment's canary panel, polled while its page is open.
#[server(output = JsonText)]
pub async fn get_rollout_panel(model: String) -> Result<Option<RolloutPanel>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.get_rollout_panel(&user, model).await
}

/// A deployment's load test form: a sent-back draft, or the defaults.
#[server(output = JsonText)]
pub async fn get_load_test_form(
    model: String,
    draft: Option<String>,
) -> Result<LoadTestForm, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.load_test_form(&user, model, draft).await
}

#[server(output = JsonText)]
pub async fn get_load_test(id: String) -> Result<LoadTest, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.get_load_test(&user, id).await
}

/// A deployment's latest load tests, newest first.
#[server(output = JsonText)]
pub async fn list_load_tests(model: String) -> Result<Vec<LoadTest>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.list_load_tests(&user, model).await
}

/// A deployment's traffic over `range`, with its charts.
#[server(output = JsonText)]
pub async fn get_traffic(model: String, range: TrafficRange) -> Result<TrafficReport, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    let mut report = control_plane()?.get_traffic(&user, model, range).await?;
    report.charts = crate::charts::traffic_charts(&report)?;
    Ok(report)
}

#[server(output = JsonText)]
pub async fn preview_promotion(
    model: String,
    version: String,
) -> Result<PromotionPreview, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?
        .promotion_preview(&user, model, version)
        .await
}

/// Production now and the version a rollback would make Production again.
#[server(output = JsonText)]
pub async fn preview_rollback(model: String) -> Result<Option<PromotionPreview>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.rollback_preview(&user, model).await
}

#[server(output = JsonText)]
pub async fn get_notice(id: String) -> Result<Option<String>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.notice(&user, id).await
}

#[server(output = JsonText)]
pub async fn get_try_answer(id: String) -> Result<TryAnswer, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.try_answer(&user, id).await
}

#[server(output = JsonText)]
pub async fn list_promotion_requests() -> Result<Vec<PromotionRequest>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.list_promotion_requests(&user).await
}

#[server(output = JsonText)]
pub async fn get_promotion_request(id: String) -> Result<PromotionRequest, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.get_promotion_request(&user, id).await
}

/// The audit page's entries (the exports have their own routes).
#[server(output = JsonText)]
pub async fn search_audit(query: AuditQuery) -> Result<Vec<AuditEntry>, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?
        .search_audit(&user, query, crate::model::AUDIT_PAGE_LIMIT)
        .await
}

/// What the sign-in page offers; answered without a session.
#[server(endpoint = "login_options", output = JsonText)]
pub async fn login_options() -> Result<Option<String>, AppError> {
    Ok(crate::port::control_plane()?.single_sign_on())
}

/// The tokens page; `created` names a new token whose secret it shows, once.
#[server(output = JsonText)]
pub async fn get_tokens_page(created: Option<String>) -> Result<TokensPage, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.tokens_page(&user, created).await
}

/// The notification channels and the delivery log (admins).
#[server(output = JsonText)]
pub async fn get_notifications_page() -> Result<NotificationsPage, AppError> {
    use crate::port::{control_plane, current_user};
    let user = current_user()?;
    control_plane()?.notifications_page(&user).await
}
