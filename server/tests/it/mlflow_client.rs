//! The MLflow client against a real MLflow server.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{MlflowRest, free_port, mlflow_url, unique};
use server::adapters::mlflow::MlflowAuth;
use server::adapters::mlflow::{
    MlflowClient, MlflowError, SearchExperiments, SearchRegisteredModelsResponse, SearchRuns,
    name_contains_filter,
};

fn client(url: &str) -> MlflowClient {
    MlflowClient::new(
        &url.parse().unwrap(),
        MlflowAuth::None,
        Duration::from_secs(20),
    )
    .unwrap()
}

fn search(filter: String, max_results: u32, page_token: Option<String>) -> SearchExperiments {
    SearchExperiments {
        max_results,
        filter: Some(filter),
        order_by: vec!["name ASC".into()],
        page_token,
    }
}

#[tokio::test]
async fn paging_visits_every_matching_experiment_once() {
    let rest = MlflowRest::new(&mlflow_url());
    let prefix = unique("paging");
    let mut created = BTreeSet::new();
    for index in 0..7 {
        let name = format!("{prefix}-{index}");
        rest.create_experiment(&name, &[("team", "paging")]).await;
        created.insert(name);
    }

    let client = client(&mlflow_url());
    let filter = name_contains_filter(&prefix).unwrap();
    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .search_experiments(&search(filter.clone(), 3, token))
            .await
            .unwrap();
        page_sizes.push(page.experiments.len());
        seen.extend(page.experiments.into_iter().map(|experiment| {
            assert_eq!(
                experiment
                    .tags
                    .iter()
                    .find(|tag| tag.key == "team")
                    .unwrap()
                    .value,
                "paging"
            );
            experiment.name
        }));
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(page_sizes, vec![3, 3, 1]);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), created);
    assert_eq!(seen.len(), created.len(), "no experiment twice: {seen:?}");
}

#[tokio::test]
async fn name_search_ignores_case_and_treats_quotes_as_text() {
    let rest = MlflowRest::new(&mlflow_url());
    let prefix = unique("Quoted");
    let name = format!("{prefix} it's Mixed");
    rest.create_experiment(&name, &[]).await;
    let client = client(&mlflow_url());

    let found = client
        .search_experiments(&search(
            name_contains_filter(&prefix.to_lowercase()).unwrap(),
            10,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(
        found
            .experiments
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        vec![name.as_str()]
    );

    let quoted = client
        .search_experiments(&search(
            name_contains_filter("it's mixed").unwrap(),
            1000,
            None,
        ))
        .await
        .unwrap();
    assert!(quoted.experiments.iter().any(|e| e.name == name));

    // Filter syntax inside the term is only text: no error, no match.
    let injected = client
        .search_experiments(&search(
            name_contains_filter("x' OR name LIKE '%").unwrap(),
            10,
            None,
        ))
        .await
        .unwrap();
    assert!(
        injected.experiments.is_empty(),
        "{:?}",
        injected.experiments
    );
}

#[tokio::test]
async fn deleted_experiments_are_not_listed() {
    let rest = MlflowRest::new(&mlflow_url());
    let prefix = unique("deleted");
    let kept = rest.create_experiment(&format!("{prefix}-kept"), &[]).await;
    let gone = rest.create_experiment(&format!("{prefix}-gone"), &[]).await;
    rest.delete_experiment(&gone).await;

    let page = client(&mlflow_url())
        .search_experiments(&search(name_contains_filter(&prefix).unwrap(), 10, None))
        .await
        .unwrap();
    let ids: Vec<_> = page
        .experiments
        .iter()
        .map(|e| e.experiment_id.clone())
        .collect();
    assert_eq!(ids, vec![kept]);
}

#[tokio::test]
async fn mlflows_own_error_reaches_the_caller() {
    let err = client(&mlflow_url())
        .search_experiments(&search("name = 'x'".into(), 10, Some("not-a-token".into())))
        .await
        .unwrap_err();
    match err {
        MlflowError::Api {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(status, 400);
            assert_eq!(code, "INVALID_PARAMETER_VALUE");
            assert!(!message.is_empty());
        }
        other => panic!("expected MLflow's API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_named_with_the_cause() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let client = client(&url);
    let err = client.health().await.unwrap_err();
    assert!(matches!(err, MlflowError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot reach MLflow at {url}: Connection refused (os error 111)")
    );

    self::client(&mlflow_url()).health().await.unwrap();
}

#[tokio::test]
async fn runs_are_filtered_ordered_and_paged_by_mlflow() {
    let rest = MlflowRest::new(&mlflow_url());
    let experiment = rest.create_experiment(&unique("runs"), &[]).await;
    for (index, optimizer) in ["adam", "sgd", "adam", "adam", "sgd"].iter().enumerate() {
        let auc = 0.1 * (index + 1) as f64;
        rest.create_run(
            &experiment,
            &format!("run-{index}"),
            &[("optimizer", optimizer)],
            &[("auc", &[auc])],
            &[],
        )
        .await;
    }
    let client = client(&mlflow_url());
    let mut request = SearchRuns {
        experiment_ids: vec![experiment.clone()],
        filter: Some("metrics.auc > 0.25 AND params.optimizer = 'adam'".into()),
        order_by: vec!["metrics.auc DESC".into()],
        max_results: 1,
        page_token: None,
    };
    let mut names = Vec::new();
    loop {
        let page = client.search_runs(&request).await.unwrap();
        assert!(page.runs.len() <= 1);
        names.extend(page.runs.into_iter().map(|run| {
            assert_eq!(run.info.status, "FINISHED");
            assert_eq!(run.info.experiment_id, experiment);
            run.info.run_name
        }));
        request.page_token = page.next_page_token;
        if request.page_token.is_none() {
            break;
        }
    }
    assert_eq!(names, vec!["run-3", "run-2"]);

    request.filter = Some("metrics.auc >> 2".into());
    let err = client.search_runs(&request).await.unwrap_err();
    assert!(
        matches!(&err, MlflowError::Api { status: 400, code, .. } if code == "INVALID_PARAMETER_VALUE"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_run_brings_its_data_and_full_metric_history() {
    let rest = MlflowRest::new(&mlflow_url());
    let experiment = rest.create_experiment(&unique("history"), &[]).await;
    let losses: Vec<f64> = (0..25).map(|step| (25 - step) as f64 / 4.0).collect();
    let run_id = rest
        .create_run(
            &experiment,
            "long",
            &[("lr", "0.01")],
            &[("loss", losses.as_slice()), ("acc", &[0.5, 0.9])],
            &[("team", "x")],
        )
        .await;
    rest.upload_artifact(&experiment, &run_id, "model/MLmodel", "flavors: {}")
        .await;
    rest.upload_artifact(&experiment, &run_id, "notes.txt", "hello")
        .await;
    let client = client(&mlflow_url());

    let run = client.get_run(&run_id).await.unwrap();
    assert_eq!(run.info.run_name, "long");
    assert_eq!(
        run.data
            .params
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect::<Vec<_>>(),
        vec![("lr", "0.01")]
    );
    let latest_loss = run
        .data
        .metrics
        .iter()
        .find(|metric| metric.key == "loss")
        .unwrap();
    assert_eq!((latest_loss.step, latest_loss.value), (24, 0.25));
    assert!(
        run.data
            .tags
            .iter()
            .any(|tag| tag.key == "team" && tag.value == "x")
    );

    let first = client
        .metric_history_page(&run_id, "loss", 10, None)
        .await
        .unwrap();
    if rest.major_version().await >= 3 {
        assert_eq!(first.metrics.len(), 10);
        assert!(first.next_page_token.is_some());
    } else {
        // MLflow 2 ignores the page size and sends the whole history.
        assert_eq!(first.metrics.len(), losses.len());
        assert!(first.next_page_token.is_none());
    }
    let history = client.metric_history(&run_id, "loss").await.unwrap();
    let mut by_step: Vec<(i64, f64)> = history
        .iter()
        .map(|metric| (metric.step, metric.value))
        .collect();
    by_step.sort_by_key(|(step, _)| *step);
    assert_eq!(
        by_step,
        losses
            .iter()
            .enumerate()
            .map(|(step, loss)| (step as i64, *loss))
            .collect::<Vec<_>>()
    );
    assert!(
        client
            .metric_history(&run_id, "no-such-metric")
            .await
            .unwrap()
            .is_empty()
    );

    let root = client.list_run_artifacts(&run_id, None).await.unwrap();
    let entries: Vec<_> = root
        .files
        .iter()
        .map(|file| (file.path.as_str(), file.is_dir, file.file_size))
        .collect();
    assert_eq!(
        entries,
        vec![("model", true, None), ("notes.txt", false, Some(5))]
    );
    let model_dir = client
        .list_run_artifacts(&run_id, Some("model"))
        .await
        .unwrap();
    assert_eq!(
        model_dir
            .files
            .iter()
            .map(|file| file.path.as_str())
            .collect::<Vec<_>>(),
        vec!["model/MLmodel"]
    );
    // A file that is there is read; one that is not is None on either MLflow
    // (MLflow 2's artifact proxy answers 500 for it).
    let artifacts = &run.info.artifact_uri;
    assert_eq!(
        client
            .read_artifact_text(artifacts, "model/MLmodel")
            .await
            .unwrap()
            .as_deref(),
        Some("flavors: {}")
    );
    for missing in ["model/input_example.json", "nowhere/MLmodel", "absent.txt"] {
        assert_eq!(
            client.read_artifact_text(artifacts, missing).await.unwrap(),
            None,
            "{missing}"
        );
    }

    let err = client
        .get_run("0123456789abcdef0123456789abcdef")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MlflowError::Api { status: 404, code, .. } if code == "RESOURCE_DOES_NOT_EXIST"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_registry_gives_stages_aliases_and_sources() {
    let rest = MlflowRest::new(&mlflow_url());
    let experiment_name = unique("registry");
    let experiment = rest.create_experiment(&experiment_name, &[]).await;
    let model = unique("model");
    rest.create_registered_model(&model).await;
    let mut made = Vec::new();
    for index in 0..3 {
        let run = rest
            .create_run(&experiment, &format!("train-{index}"), &[], &[], &[])
            .await;
        let version = rest.register_version(&model, &experiment, &run).await;
        assert_eq!(version.version, (index + 1).to_string());
        made.push(version);
    }
    rest.transition_stage(&model, "1", "Archived").await;
    rest.transition_stage(&model, "2", "Production").await;
    rest.set_alias(&model, "production", "2").await;
    rest.set_alias(&model, "challenger", "3").await;
    let client = client(&mlflow_url());

    let search = client
        .search_registered_models(Some(&format!("name = '{model}'")), "name ASC", 1000, None)
        .await
        .unwrap();
    assert_eq!(search.registered_models.len(), 1);
    let registered = &search.registered_models[0];
    let mut stages: Vec<_> = registered
        .latest_versions
        .iter()
        .map(|v| (v.version.as_str(), v.current_stage.as_str()))
        .collect();
    stages.sort();
    assert_eq!(
        stages,
        vec![("1", "Archived"), ("2", "Production"), ("3", "None")]
    );
    let mut aliases: Vec<_> = registered
        .aliases
        .iter()
        .map(|a| (a.alias.as_str(), a.version.as_str()))
        .collect();
    aliases.sort();
    assert_eq!(aliases, vec![("challenger", "3"), ("production", "2")]);
    assert_eq!(
        client.get_registered_model(&model).await.unwrap().name,
        model
    );

    let filter = format!("name = '{model}'");
    let first = client
        .search_model_versions(&filter, 2, None)
        .await
        .unwrap();
    assert_eq!(first.model_versions.len(), 2);
    let rest_page = client
        .search_model_versions(&filter, 2, first.next_page_token.as_deref())
        .await
        .unwrap();
    let mut versions: Vec<_> = first
        .model_versions
        .iter()
        .chain(&rest_page.model_versions)
        .map(|v| v.version.clone())
        .collect();
    versions.sort();
    assert_eq!(versions, vec!["1", "2", "3"]);

    let production = client.get_model_version(&model, "2").await.unwrap();
    assert_eq!(production.aliases, vec!["production"]);
    assert_eq!(production.current_stage, "Production");
    assert_eq!(production.source, made[1].source);
    let err = client.get_model_version(&model, "99").await.unwrap_err();
    assert!(
        matches!(&err, MlflowError::Api { status: 404, .. }),
        "{err:?}"
    );

    let download = client
        .model_version_download_uri(&model, "2")
        .await
        .unwrap();
    let Some(model_id) = &made[1].model_id else {
        // MLflow 2: the files are where the source says, in the run's artifacts.
        assert_eq!(download, made[1].source);
        return;
    };
    assert_eq!(
        download,
        format!("mlflow-artifacts:/{experiment}/models/{model_id}/artifacts")
    );

    rest.upload_model_artifact(&experiment, model_id, "MLmodel", "flavors: {}")
        .await;
    rest.upload_model_artifact(&experiment, model_id, "data/model.pkl", "bytes")
        .await;
    let listing = client
        .list_logged_model_artifacts(model_id, None)
        .await
        .unwrap();
    let entries: Vec<_> = listing
        .files
        .iter()
        .map(|file| (file.path.as_str(), file.is_dir))
        .collect();
    assert_eq!(entries, vec![("MLmodel", false), ("data", true)]);
    let data = client
        .list_logged_model_artifacts(model_id, Some("data"))
        .await
        .unwrap();
    assert_eq!(
        data.files
            .iter()
            .map(|file| file.path.as_str())
            .collect::<Vec<_>>(),
        vec!["data/model.pkl"]
    );
}

#[tokio::test]
async fn an_experiment_is_fetched_by_id_and_a_missing_one_is_mlflows_404() {
    let rest = MlflowRest::new(&mlflow_url());
    let name = unique("single");
    let id = rest.create_experiment(&name, &[("k", "v")]).await;
    let client = client(&mlflow_url());
    let experiment = client.get_experiment(&id).await.unwrap();
    assert_eq!(
        (experiment.name.as_str(), experiment.tags.len()),
        (name.as_str(), 1)
    );
    let err = client.get_experiment("987654321").await.unwrap_err();
    assert!(
        matches!(&err, MlflowError::Api { status: 404, code, .. } if code == "RESOURCE_DOES_NOT_EXIST"),
        "{err:?}"
    );
}

/// Pages read through the cache; a write by any client sharing it (the
/// background one, say) drops what it kept, so Slipway's own changes show at
/// once, while one made in MLflow directly waits for the answer to go stale.
#[tokio::test]
async fn a_write_through_a_client_sharing_the_cache_drops_its_answers() {
    let rest = MlflowRest::new(&mlflow_url());
    let cache = std::sync::Arc::new(server::adapters::mlflow::cache::ReadCache::new(
        Duration::from_secs(60),
    ));
    let pages = client(&mlflow_url()).reading_through(cache.clone());
    let background = client(&mlflow_url()).invalidating(cache);
    let prefix = unique("cached");
    let filter = format!("name LIKE '{prefix}%'");
    let names = |found: SearchRegisteredModelsResponse| -> Vec<String> {
        found
            .registered_models
            .into_iter()
            .map(|model| model.name)
            .collect()
    };
    let search = || pages.search_registered_models(Some(&filter), "name ASC", 100, None);
    assert!(names(search().await.unwrap()).is_empty());

    rest.create_registered_model(&format!("{prefix}-a")).await;
    assert!(
        names(search().await.unwrap()).is_empty(),
        "made elsewhere: the kept answer still serves"
    );
    let experiment = rest.create_experiment(&prefix, &[]).await;
    background
        .create_run(&experiment, "a write", "tester", 0, &[])
        .await
        .unwrap();
    assert_eq!(
        names(search().await.unwrap()),
        vec![format!("{prefix}-a")],
        "after Slipway's own write, MLflow is asked again"
    );
}
