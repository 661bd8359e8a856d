//! Every link to a page of Slipway's, built in one place: the pages use
//! these, and so does the server when a form sends the browser on.

use crate::model::{Launch, LaunchRequest, launch_fields};

/// One path segment, percent-encoded, for names that may hold any character.
pub fn segment(text: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

fn with_query<'a>(path: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

pub fn experiment_href(id: &str) -> String {
    format!("/experiments/{}", segment(id))
}

pub fn run_href(run_id: &str) -> String {
    format!("/runs/{}", segment(run_id))
}

/// A logged model's files, browsed on its run's page (at its artifact list).
pub fn logged_model_href(run_id: &str, model_id: &str) -> String {
    format!(
        "{}#{ARTIFACTS_ANCHOR}",
        with_query(&run_href(run_id), [("model", model_id)])
    )
}

/// The id of the run page's artifact list.
pub const ARTIFACTS_ANCHOR: &str = "artifacts";

/// An artifact file's viewer page (`view = ""`) or the file itself
/// (`"/raw"`), of the run or of one of its logged models.
pub fn artifact_href(run_id: &str, model: Option<&str>, path: &str, view: &str) -> String {
    let model = model.map(|model| ("model", model));
    with_query(
        &format!("{}/artifact{view}", run_href(run_id)),
        [("path", path)].into_iter().chain(model),
    )
}

pub fn model_href(name: &str) -> String {
    format!("/models/{}", segment(name))
}

pub fn version_href(name: &str, version: &str) -> String {
    format!("{}/versions/{}", model_href(name), segment(version))
}

/// Where the model and version pages' registry forms post.
pub fn registry_edit_href(model: &str) -> String {
    format!("{}/edit", model_href(model))
}

pub fn deployment_href(model: &str) -> String {
    format!("/deployments/{}", segment(model))
}

/// A deployment's traffic over `range` on its page.
pub fn deployment_traffic_href(model: &str, range: crate::model::TrafficRange) -> String {
    format!(
        "{}#traffic",
        with_query(&deployment_href(model), [("range", range.as_str())])
    )
}

/// A deployment's load test form (GET), and where it posts (`…/load-tests`).
pub fn load_test_form_href(model: &str) -> String {
    format!("{}/load-test", deployment_href(model))
}

pub fn load_tests_href(model: &str) -> String {
    format!("{}/load-tests", deployment_href(model))
}

/// A load test's live page (GET); `…/cancel` (POST) stops it.
pub fn load_test_href(model: &str, id: &str) -> String {
    format!("{}/{}", load_tests_href(model), segment(id))
}

/// Two load tests side by side, `?a=…&b=…` (the list's GET form).
pub fn compare_load_tests_href(model: &str) -> String {
    format!("{}/compare-load-tests", deployment_href(model))
}

/// A locally served deployment's address on the gateway (its own listener).
pub fn gateway_invocations(model: &str) -> String {
    format!("/serve/{}/invocations", segment(model))
}

/// Where the deployment's canary forms post (`…/canary`, then `/weight`,
/// `/promote`, `/abort`).
pub fn canary_href(model: &str) -> String {
    format!("{}/canary", deployment_href(model))
}

/// A rollback's confirm step.
pub fn rollback_href(model: &str) -> String {
    format!("{}/rollback", deployment_href(model))
}

crate::text_enum! {
    /// What a form did, said on the page it comes back to (`?done=`): a
    /// fixed sentence, so a link cannot make the page say anything else.
    pub enum Done {
        Promoted => "promoted",
        RolledBack => "rolled-back",
    }
}

pub const DONE: &str = "done";
pub const DONE_VERSION: &str = "version";

/// `page`, saying that `done` happened to `version`.
pub fn done_href(page: &str, done: Done, version: &str) -> String {
    let joint = if page.contains('?') { "&" } else { "?" };
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([(DONE, done.as_str()), (DONE_VERSION, version)])
        .finish();
    format!("{page}{joint}{query}")
}

/// The confirm step of a promotion.
pub fn promote_href(model: &str, version: &str) -> String {
    with_query(
        &format!("{}/promote", deployment_href(model)),
        [("version", version)],
    )
}

pub fn settings_href(model: &str) -> String {
    format!("{}/settings", deployment_href(model))
}

pub const DEPLOYMENTS: &str = "/deployments";
pub const NEW_DEPLOYMENT: &str = "/new-deployment";
pub const TOKENS: &str = "/tokens";
pub const NOTIFICATIONS: &str = "/notifications";

pub fn delete_channel_href(id: &str) -> String {
    format!("{NOTIFICATIONS}/{}/delete", segment(id))
}

/// The tokens page showing a new token's secret, kept under `id` until shown.
pub fn created_token_href(id: &str) -> String {
    with_query(TOKENS, [("created", id)])
}

pub fn revoke_token_href(id: &str) -> String {
    format!("{TOKENS}/{}/revoke", segment(id))
}

/// The new deployment form, for `model`.
pub fn new_deployment_href(model: &str) -> String {
    with_query(NEW_DEPLOYMENT, [("model", model)])
}

/// A deployment form sent back with its problems (`form` is the form's
/// own page: the settings, or the new deployment form).
pub fn deployment_draft_href(form: &str, draft: &str) -> String {
    with_query(form, [("draft", draft)])
}

/// A deployment's page showing the answer to a Try it request.
pub fn try_answer_href(model: &str, answer: &str) -> String {
    with_query(&deployment_href(model), [("answer", answer)])
}

pub fn approval_href(id: &str) -> String {
    format!("/approvals/{}", segment(id))
}

pub const LAUNCH_FORM: &str = "/launch";
/// Where the launch form posts.
pub const LAUNCHES: &str = "/launches";

pub fn launch_href(id: &str) -> String {
    format!("/launches/{}", segment(id))
}

/// The live status and logs of a launch (server-sent events).
pub fn launch_events_href(id: &str) -> String {
    format!("/api/launches/{}/events", segment(id))
}

/// The launch form with a project and entry point chosen.
pub fn launch_form_href(project: &str, entry_point: &str) -> String {
    with_query(
        LAUNCH_FORM,
        [
            (launch_fields::PROJECT, project),
            (launch_fields::ENTRY_POINT, entry_point),
        ],
    )
}

/// The launch form sent back with its errors.
pub fn launch_draft_href(draft: &str) -> String {
    with_query(LAUNCH_FORM, [("draft", draft)])
}

/// The form, filled in as this launch was.
pub fn relaunch_href(launch: &Launch) -> String {
    // Every choice the launch had; on Kubernetes the image is the
    // environment, which the form does not offer.
    let env_manager = match launch.env_manager.as_str() {
        "docker" => String::new(),
        chosen => chosen.to_string(),
    };
    let request = LaunchRequest {
        project: launch.project.clone(),
        entry_point: launch.entry_point.clone(),
        params: launch.params.clone(),
        experiment_id: launch.experiment_id.clone().unwrap_or_default(),
        profile: launch.profile.clone(),
        run_name: launch.run_name.clone(),
        env_manager,
        ..LaunchRequest::default()
    };
    let pairs = request.to_pairs();
    with_query(
        LAUNCH_FORM,
        pairs
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.as_str(), value.as_str())),
    )
}

/// Single sign-on, then `next`.
pub fn sso_href(next: &str) -> String {
    with_query("/login/oidc", [("next", next)])
}

/// The sign-in page after a refused password (`error`: invalid,
/// throttled), then `next`.
pub fn login_refused_href(error: &str, next: &str) -> String {
    with_query("/login", [("error", error), ("next", next)])
}

/// The sign-in page after single sign-on failed (the details are logged).
pub const SSO_FAILED: &str = "/login?error=sso";

/// The sign-in page after signing out.
pub const SIGNED_OUT: &str = "/login?signed_out=1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_segment_and_queries_are_encoded() {
        assert_eq!(model_href("a/b c"), "/models/a%2Fb%20c");
        assert_eq!(version_href("m", "3"), "/models/m/versions/3");
        assert_eq!(promote_href("m", "3"), "/deployments/m/promote?version=3");
        assert_eq!(
            artifact_href("r1", Some("m-1"), "a b/c.csv", "/raw"),
            "/runs/r1/artifact/raw?path=a+b%2Fc.csv&model=m-1"
        );
        assert_eq!(new_deployment_href("x&y"), "/new-deployment?model=x%26y");
    }
}
