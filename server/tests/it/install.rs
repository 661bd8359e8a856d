//! The cluster install (`deploy/overlays/*`) against the real API server:
//! each overlay renders with `kubectl kustomize`, every object is accepted
//! by a server-side dry run and then for real in a namespace of its own, and
//! the ServiceAccount it installs may do exactly what `deploy/base/rbac.yaml`
//! grants — which `tests/rbac.rs` proves is what the code did, from the API
//! server's audit log — and nothing else.

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use serde_json::{Value, json};

use crate::support::cluster::{admin_client, create_namespace};
use crate::support::roles::{Permission, granted};
use crate::support::{repo_root, unique};

/// `kubectl kustomize` of `dir` (relative to the repository), with every
/// object moved into `namespace` as an operator's own overlay would.
fn render(dir: &str, namespace: &str, components: &[&str]) -> Vec<Value> {
    // Kustomize takes relative paths only: the operator's overlay is made
    // three levels below the repository.
    let parent = repo_root().join("target/kustomize");
    std::fs::create_dir_all(&parent).unwrap();
    let own = tempfile::tempdir_in(&parent).unwrap();
    let up = |path: &str| format!("../../../{path}");
    let components: Vec<String> = components.iter().map(|component| up(component)).collect();
    std::fs::write(
        own.path().join("kustomization.yaml"),
        serde_json::to_string(&json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": namespace,
            "resources": [up(dir)],
            "components": components,
        }))
        .unwrap(),
    )
    .unwrap();
    let output = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(own.path())
        .output()
        .expect("kubectl (with Kustomize) on PATH");
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml::Deserializer::from_slice(&output.stdout)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect()
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|object| object["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Server-side applies `object` (dry run first) as a cluster admin would.
async fn apply(client: &kube::Client, namespace: &str, mut object: Value) {
    // The test server is 1.20, which has PodDisruptionBudget only as
    // policy/v1beta1 (v1 came in 1.21 with the same fields); what the
    // overlay ships is policy/v1, for current clusters.
    if object["kind"] == "PodDisruptionBudget" {
        assert_eq!(object["apiVersion"], "policy/v1");
        object["apiVersion"] = json!("policy/v1beta1");
    }
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, version)) => (group.to_string(), version.to_string()),
        None => (String::new(), object["apiVersion"].as_str().unwrap().into()),
    };
    let kind = object["kind"].as_str().unwrap().to_string();
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    let (resource, _) = pinned_kind(client, &GroupVersionKind::gvk(&group, &version, &kind))
        .await
        .unwrap_or_else(|err| panic!("{kind} {group}/{version}: {err}"));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    for dry_run in [true, false] {
        let mut params = PatchParams::apply("install-test").force();
        params.dry_run = dry_run;
        if let Err(err) = api.patch(&name, &params, &Patch::Apply(&object)).await {
            panic!("{kind} {name} (dry run: {dry_run}) refused: {err}");
        }
    }
}

/// What the API server answers to "may `user` do `verb` on `resource`".
async fn may(
    client: &kube::Client,
    user: &str,
    namespace: &str,
    (group, resource, verb): &Permission,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, subresource)) => (resource, subresource),
        None => (resource.as_str(), ""),
    };
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}")],
            "resourceAttributes": {
                "namespace": namespace,
                "group": group,
                "resource": resource,
                "subresource": subresource,
                "verb": verb,
            }
        }
    }))
    .unwrap();
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap()
        .allowed
}

#[tokio::test(flavor = "multi_thread")]
async fn both_overlays_install_on_the_api_server_and_grant_exactly_what_the_code_uses() {
    let admin = admin_client().await;
    let granted = granted();
    for overlay in ["single", "ha"] {
        let namespace = unique(&format!("install-{overlay}"));
        create_namespace(&admin, &namespace).await;
        let objects = render(&format!("deploy/overlays/{overlay}"), &namespace, &[]);
        let mut expected: BTreeSet<String> = [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Service",
            "Deployment",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        expected.insert(
            match overlay {
                "single" => "PersistentVolumeClaim",
                _ => "PodDisruptionBudget",
            }
            .into(),
        );
        assert_eq!(kinds(&objects), expected, "{overlay}");
        let deployment = objects
            .iter()
            .find(|object| object["kind"] == "Deployment")
            .unwrap();
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap();
        assert_eq!(replicas, if overlay == "ha" { 3 } else { 1 }, "{overlay}");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let container = &pod["containers"][0];
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        // Every secret by reference, none by value.
        for variable in container["env"].as_array().unwrap() {
            let name = variable["name"].as_str().unwrap();
            let secret = name.ends_with("PASSWORD")
                || name.ends_with("SECRET")
                || name.ends_with("TOKEN")
                || name == "SLIPWAY_DATABASE_URL";
            if secret {
                assert!(
                    variable["valueFrom"]["secretKeyRef"].is_object(),
                    "{overlay}: {variable}"
                );
            }
        }
        for object in objects {
            apply(&admin, &namespace, object).await;
        }

        let user = format!("system:serviceaccount:{namespace}:slipway");
        for permission in &granted {
            assert!(
                may(&admin, &user, &namespace, permission).await,
                "{overlay}: the ServiceAccount may not {permission:?}"
            );
        }
        // Nothing more: every other verb on the same resources, and what
        // Slipway never touches.
        let verbs = [
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ];
        let mut resources: BTreeSet<(String, String)> = granted
            .iter()
            .map(|(group, resource, _)| (group.clone(), resource.clone()))
            .collect();
        resources.extend(
            [
                ("", "secrets"),
                ("", "configmaps"),
                ("", "serviceaccounts"),
                ("apps", "deployments"),
                ("rbac.authorization.k8s.io", "roles"),
            ]
            .map(|(group, resource)| (group.to_string(), resource.to_string())),
        );
        for (group, resource) in resources {
            for verb in verbs {
                let permission = (group.clone(), resource.clone(), verb.to_string());
                if granted.contains(&permission) {
                    continue;
                }
                assert!(
                    !may(&admin, &user, &namespace, &permission).await,
                    "{overlay}: the ServiceAccount may {permission:?}, which the code never does"
                );
            }
        }
    }
    // The optional components render on top of either overlay.
    let namespace = unique("install-policy");
    create_namespace(&admin, &namespace).await;
    let with_components = render(
        "deploy/overlays/ha",
        &namespace,
        &[
            "deploy/components/network-policy",
            "deploy/components/service-monitor",
        ],
    );
    let kinds = kinds(&with_components);
    assert!(kinds.contains("NetworkPolicy") && kinds.contains("ServiceMonitor"));
    let policy = with_components
        .into_iter()
        .find(|object| object["kind"] == "NetworkPolicy")
        .unwrap();
    apply(&admin, &namespace, policy).await;
}
