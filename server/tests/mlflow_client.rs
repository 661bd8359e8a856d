//! The MLflow client against a real MLflow server.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use server::config::MlflowAuth;
use server::mlflow::{MlflowClient, MlflowError, SearchExperiments, name_contains_filter};
use support::{MlflowRest, free_port, mlflow_url, unique};

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
