//! Slipway's children stop with it: on SIGTERM (Ctrl-C of `make run`, or
//! Kubernetes stopping a pod) a model server that is still starting and a
//! local training meant to run for minutes are gone once Slipway has exited.

mod support;

use std::time::Duration;

use support::binary::{Slipway, SlipwaySettings};
use support::{MlflowRest, mlflow_url, register_sklearn_model, trainer_catalog, unique};

/// Live processes whose command line contains `text` (a zombie's is empty).
fn processes_with(text: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let words: Vec<String> = cmdline
                .split(|byte| *byte == 0)
                .map(|word| String::from_utf8_lossy(word).into_owned())
                .collect();
            words.join(" ").contains(text)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_child_outlives_slipway() {
    let model = unique("shutdown");
    assert_eq!(register_sklearn_model(&model, &unique("shutdown"), 1.0), "1");
    MlflowRest::new(&mlflow_url())
        .transition_stage(&model, "1", "Production")
        .await;
    let data = tempfile::tempdir().unwrap();
    let catalog = trainer_catalog(
        data.path(),
        &format!("[[deployment]]\nmodel = {model:?}\ntarget = \"local\"\n"),
    );
    let slipway = Slipway::start(SlipwaySettings {
        namespace: None,
        catalog: &catalog,
        data_dir: data.path(),
        mlflow_url: mlflow_url(),
        extra_env: Vec::new(),
    })
    .await;
    // A value no other process has on its command line.
    let alpha = format!("0.{}", uuid::Uuid::new_v4().as_u128() % 1_000_000_007);
    slipway
        .post_form(
            "/launches",
            &[
                ("submission", &uuid::Uuid::new_v4().to_string()),
                ("project", "trainer"),
                ("entry_point", "main"),
                ("param.alpha", &alpha),
                ("param.sleep", "600"),
                ("new_experiment", &unique("shutdown")),
                ("profile", "cpu"),
            ],
        )
        .await;
    let served = format!("models:/{model}/1");
    let training = format!("--alpha {alpha}");
    let both_running = support::eventually(Duration::from_secs(60), || async {
        (processes_with(&served) > 0 && processes_with(&training) > 0).then_some(())
    })
    .await;
    assert!(
        both_running.is_some(),
        "the model server and the training started:\n{}",
        slipway.log()
    );

    let status = slipway.stop().await;
    assert!(status.success(), "{status}");
    assert_eq!(processes_with(&served), 0, "the model server outlived Slipway");
    assert_eq!(processes_with(&training), 0, "the training outlived Slipway");
}
