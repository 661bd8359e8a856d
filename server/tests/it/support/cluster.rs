//! The real Kubernetes API server `make test` starts (scripts/kube.sh), a
//! namespace per test with `deploy/base/rbac.yaml` applied as a cluster admin
//! would, and Slipway run as the binary, with that ServiceAccount's token:
//! never as admin. The admin client plays the people and controllers that
//! are not there: someone deleting a Job, the kubelet reporting a pod's
//! state, Seldon's operator reporting a deployment's.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{eventually, repo_root, required_env, unique};

pub fn admin_kubeconfig() -> PathBuf {
    PathBuf::from(required_env("SLIPWAY_TEST_KUBE_ADMIN"))
}

pub async fn admin_client() -> Client {
    let file = Kubeconfig::read_from(admin_kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

pub async fn create_namespace(admin: &Client, name: &str) {
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
}

/// A namespace of its own, with what `deploy/base/rbac.yaml` grants Slipway's
/// ServiceAccount there.
pub struct TestNamespace {
    pub name: String,
    pub admin: Client,
    /// Slipway's ServiceAccount's kubeconfig (its token, the cluster's CA).
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let admin = admin_client().await;
        let name = unique(prefix);
        create_namespace(&admin, &name).await;
        let text = std::fs::read_to_string(repo_root().join("deploy/base/rbac.yaml")).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let object: Value = serde::Deserialize::deserialize(document).unwrap();
            match object["kind"].as_str().unwrap() {
                "ServiceAccount" => create::<ServiceAccount>(&admin, &name, object).await,
                "Role" => create::<Role>(&admin, &name, object).await,
                "RoleBinding" => create::<RoleBinding>(&admin, &name, object).await,
                other => panic!("deploy/base/rbac.yaml holds a {other} the test does not apply"),
            }
        }
        let token = service_account_token(&admin, &name, "slipway").await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("slipway.kubeconfig");
        std::fs::write(&kubeconfig, token_kubeconfig(&token, &name)).unwrap();
        Self {
            name,
            admin,
            kubeconfig,
            _dir: dir,
        }
    }

    /// Removes the namespace's pods at once: with no kubelet, a deleted pod
    /// stays Terminating (holding its share of the one node) until forced.
    pub async fn release_node(&self) {
        let pods = self.api::<k8s_openapi::api::core::v1::Pod>();
        let force = kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        pods.delete_collection(&force, &Default::default())
            .await
            .unwrap();
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.admin.clone(), &self.name)
    }

    /// PATCHes an object's status subresource, as its controller would.
    pub async fn patch_status<K>(&self, name: &str, status: Value)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .unwrap();
    }
}

async fn create<K>(admin: &Client, namespace: &str, object: Value)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object).unwrap();
    Api::<K>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// Kubernetes 1.20 still gives every ServiceAccount a token Secret, once
/// the token controller has made it.
async fn service_account_token(admin: &Client, namespace: &str, account: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let token = eventually(Duration::from_secs(30), || async {
        let account = accounts.get(account).await.ok()?;
        let secret_name = account.secrets?.first()?.name.clone()?;
        let secret = secrets.get(&secret_name).await.ok()?;
        let token = secret.data?.get("token")?.0.clone();
        Some(String::from_utf8(token).unwrap())
    })
    .await;
    token.unwrap_or_else(|| panic!("no token for {namespace}/{account} within 30 s"))
}

fn token_kubeconfig(token: &str, namespace: &str) -> String {
    let admin = Kubeconfig::read_from(admin_kubeconfig()).unwrap();
    let cluster = admin.clusters[0].cluster.as_ref().unwrap();
    let ca_path = cluster.certificate_authority.as_ref().unwrap();
    serde_json::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": cluster.server.as_ref().unwrap(),
            "certificate-authority": ca_path,
        }}],
        "users": [{"name": "slipway", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "slipway", "namespace": namespace}}],
        "current-context": "test",
    }))
    .unwrap()
}
