//! What the cluster targets share: an object per bound model (a
//! SeldonDeployment, an InferenceService, a Seldon Core 2 Model), rendered
//! by its [`ObjectKind`], server-side applied with field manager `slipway`
//! and strict field validation, watched, and read back into a
//! `ServingStatus`. A change's history row stays pending until the
//! object's operator reports it ready.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, ValidationDirective,
};
use kube::{Api, Client};
use serde_json::Value;

use app::model::{DeploymentOutcome, ServingState};

use crate::adapters::cluster::{FIELD_MANAGER, MANAGED_BY, explain};
use crate::catalog::{DeploymentBinding, NoProduction, RequestLimit, ServingTarget as TargetKind};
use crate::config::UnboundObjects;
use crate::error::Result;
use crate::serving::target::{Ledger, Target, Trigger};
use crate::serving::{ServingStatus, failed_status, idle_status};
use crate::store::serving_objects::ServingObject;

pub const MODEL_LABEL: &str = "slipway.dev/model";
pub const VERSION_LABEL: &str = "slipway.dev/model-version";
/// The registered model's exact name (label values cannot hold every name).
pub const MODEL_ANNOTATION: &str = "slipway.dev/registered-model";
/// On an object whose binding is gone and that was left serving: since when.
pub const UNBOUND_ANNOTATION: &str = "slipway.dev/unbound";
/// Which install made the object (`SLIPWAY_INSTALL_ID`): two installs on
/// one cluster never touch each other's objects.
pub const INSTALL_LABEL: &str = "slipway.dev/install";

/// One kind of serving object: how it is rendered and how its status reads.
pub trait ObjectKind: Send + Sync + 'static {
    /// The target bindings name (and `serving_objects` rows record).
    const TARGET: TargetKind;
    /// The object's kind, as sentences name it.
    const KIND: &'static str;
    /// Who reports the object ready, as sentences name it.
    const OPERATOR: &'static str;
    /// What the history says once the operator reports a change ready.
    const READY: &'static str;

    fn api_resource() -> ApiResource;

    /// The object serving `version` of the binding's model from
    /// `storage_uri` (already mapped to what the runtime reads).
    fn render(binding: &DeploymentBinding, version: &str, storage_uri: &str) -> Value;

    /// The operator's own words on the object, and where it answers.
    fn status(object: &DynamicObject) -> ServingStatus;

    /// Whether an aborted canary stays in the object at 0 % until the next
    /// change replaces it: KServe's rollback, which sends every request to
    /// the revision rolled out before at once (a new spec would keep the
    /// split until its own new revision were ready).
    const ABORTED_CANARY_STAYS: bool = false;

    /// Where the canary lives when it is objects of its own (Seldon Core
    /// 2's Experiment); `None`: in the main object, or nowhere.
    fn canary_objects() -> Option<CanaryHooks> {
        None
    }

    /// The object serving `stable` with `canary` taking its share beside
    /// it, for kinds whose operator splits traffic by itself; `None` where
    /// it cannot (a canary is refused for them before it starts).
    fn render_canary(
        _binding: &DeploymentBinding,
        _stable: Served<'_>,
        _canary: Served<'_>,
        _share: Share,
    ) -> Option<Value> {
        None
    }
}

/// Objects of several kinds, each with its resource.
pub type KindedObjects = Vec<(ApiResource, Value)>;

/// How a kind whose canary is objects of its own beside the main one
/// renders and finds them.
#[derive(Clone, Copy)]
pub struct CanaryHooks {
    /// The objects serving `canary` with its share, each with its resource.
    pub render: fn(&DeploymentBinding, Served<'_>, Share) -> KindedObjects,
    /// Where they are, to remove them once the canary has ended.
    pub names: fn(&DeploymentBinding) -> Vec<(ApiResource, String)>,
    /// One of them (as applied, with its status) in the operator's words.
    pub describe: fn(&DynamicObject) -> String,
}

/// A rollout's share of the requests: answered by it, or (a shadow) only
/// copies of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub weight: u8,
    pub shadow: bool,
}

/// A version and where its model is read from (mapped for the runtime).
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    pub version: &'a str,
    pub storage_uri: &'a str,
}

/// On an object serving a canary beside its stable version: the canary's
/// version and share, `version:weight` (a change of it is Slipway's, not
/// an edit to put back).
pub const CANARY_ANNOTATION: &str = "slipway.dev/canary";

/// The [`CANARY_ANNOTATION`] value.
pub fn canary_annotation(canary: Served<'_>, share: Share) -> String {
    let mode = if share.shadow { ":shadow" } else { "" };
    format!("{}:{}{mode}", canary.version, share.weight)
}

fn share_of(rollout: &app::model::Rollout) -> Share {
    Share {
        weight: rollout.weight,
        shadow: rollout.mode == app::model::RolloutMode::Shadow,
    }
}

/// The metadata every serving object carries: Slipway's labels (which
/// watches select by), the version it serves, the model's exact name.
pub fn metadata(binding: &DeploymentBinding, version: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(binding.object_name()),
        namespace: binding.namespace.clone(),
        labels: Some(BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (MODEL_LABEL.to_string(), binding.object_name()),
            (VERSION_LABEL.to_string(), version.to_string()),
        ])),
        annotations: Some(BTreeMap::from([(
            MODEL_ANNOTATION.to_string(),
            binding.model.clone(),
        )])),
        ..Default::default()
    }
}

/// The binding's CPU and memory requests and limits, if it sets any.
pub fn resources(binding: &DeploymentBinding) -> Option<ResourceRequirements> {
    let quantities = |pick: fn(&RequestLimit) -> &Option<String>| {
        let map: BTreeMap<String, Quantity> = [("cpu", &binding.cpu), ("memory", &binding.memory)]
            .into_iter()
            .filter_map(|(resource, pair)| {
                let value = pick(pair.as_ref()?).clone()?;
                Some((resource.to_string(), Quantity(value)))
            })
            .collect();
        (!map.is_empty()).then_some(map)
    };
    let requirements = ResourceRequirements {
        requests: quantities(|pair| &pair.request),
        limits: quantities(|pair| &pair.limit),
        ..Default::default()
    };
    (requirements.requests.is_some() || requirements.limits.is_some()).then_some(requirements)
}

/// The first condition of `types` that is `False`, in its own words.
pub fn false_condition<'a>(status: &'a Value, types: &[&str]) -> Option<&'a str> {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|condition| condition["status"] == "False")
        .filter(|condition| {
            types.is_empty()
                || condition["type"]
                    .as_str()
                    .is_some_and(|kind| types.contains(&kind))
        })
        .find_map(|condition| {
            condition["message"]
                .as_str()
                .filter(|text| !text.is_empty())
                .or(condition["reason"].as_str())
        })
}

/// Whether the condition `kind` is `True`.
pub fn condition_true(status: &Value, kind: &str) -> bool {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == kind && condition["status"] == "True")
}

pub struct ObjectTarget<K: ObjectKind> {
    kind: PhantomData<K>,
    client: Client,
    unbound: UnboundObjects,
    install_id: String,
    /// Each bound model's object as the last pass saw it: version, status.
    observed: Mutex<HashMap<String, (Option<String>, ServingStatus)>>,
    /// Each model's canary objects of their own, as the last pass applied
    /// them, in the operator's words.
    canary_observed: Mutex<HashMap<String, String>>,
    /// Changes applied and not yet reported ready by the operator, by model:
    /// their history rows stay `pending` until its own signal ends them.
    awaiting: Mutex<HashMap<String, Awaited>>,
    /// Models whose pending change, left by a replica that led before
    /// (or by this one before a restart), was looked for since the last
    /// `forget`: a new leader waits on them as if it had applied them.
    adopted: Mutex<std::collections::HashSet<String>>,
}

/// How a change ends that another took over from before it was ready.
const SUPERSEDED: &str = "a newer change took over before it was reported ready";

/// An applied change whose history row waits for the operator's ready signal.
#[derive(Debug, Clone)]
struct Awaited {
    event_id: String,
    version: String,
    applied_ms: i64,
    /// The spec's generation the apply made, where known: a status about
    /// an older one says nothing about this change.
    generation: Option<i64>,
    /// What the apply did (`applied`, `put back: …`).
    applied: &'static str,
}

impl<K: ObjectKind> ObjectTarget<K> {
    /// The canary to serve beside Production `version` in the main object:
    /// a progressing rollout's version, where it mapped, and its share (an
    /// aborted one's at 0 %, where it stays). A rollout begun beside another
    /// version than Production now serves none; kinds whose canary is
    /// objects of their own have none here.
    async fn canary(
        &self,
        ledger: &Arc<Ledger>,
        binding: &DeploymentBinding,
        version: &str,
    ) -> Result<Option<(String, String, Share)>> {
        if K::canary_objects().is_some() {
            return Ok(None);
        }
        let Some(rollout) = ledger
            .store()
            .rollouts(&binding.model, 1)
            .await?
            .into_iter()
            .find(|rollout| {
                let served = match rollout.state {
                    app::model::RolloutState::Progressing => true,
                    app::model::RolloutState::Aborted => K::ABORTED_CANARY_STAYS,
                    _ => false,
                };
                served && rollout.stable_version.as_deref() == Some(version)
            })
        else {
            return Ok(None);
        };
        let share = match rollout.state {
            app::model::RolloutState::Aborted => Share {
                weight: 0,
                shadow: false,
            },
            _ => share_of(&rollout),
        };
        Ok(mapped_storage_uri(ledger, binding, &rollout.canary_version)
            .await?
            .ok()
            .map(|uri| (rollout.canary_version.clone(), uri, share)))
    }

    pub fn new(client: Client, unbound: UnboundObjects, install_id: &str) -> Self {
        Self {
            kind: PhantomData,
            client,
            unbound,
            install_id: install_id.to_string(),
            observed: Mutex::default(),
            canary_observed: Mutex::default(),
            awaiting: Mutex::default(),
            adopted: Mutex::default(),
        }
    }

    /// Once per term: the model's newest history row, if pending and not
    /// this replica's to end, is awaited here from now on.
    async fn adopt_pending(&self, store: &crate::store::Store, model: &str) -> Result<()> {
        if !self
            .adopted
            .lock()
            .expect("adopted")
            .insert(model.to_string())
            || self.awaiting.lock().expect("awaiting").contains_key(model)
        {
            return Ok(());
        }
        let newest = store.deployment_history(model, 1).await?;
        if let Some(event) = newest.into_iter().next()
            && event.outcome == DeploymentOutcome::Pending
            && let Some(version) = event.version
        {
            tracing::info!(model, version, "waiting on a change another leader applied");
            self.awaiting.lock().expect("awaiting").insert(
                model.to_string(),
                Awaited {
                    event_id: event.id,
                    version,
                    applied_ms: event.started_ms,
                    generation: None,
                    applied: "applied",
                },
            );
        }
        Ok(())
    }

    /// Ends the history row of the change `model` waits on, if any, as
    /// superseded: another change took over before it was ready.
    async fn supersede_awaited(&self, store: &crate::store::Store, model: &str) -> Result<()> {
        let awaited = self.awaiting.lock().expect("awaiting").remove(model);
        match awaited {
            Some(awaited) => {
                store
                    .finish_deployment(&awaited.event_id, DeploymentOutcome::Superseded, SUPERSEDED)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Ends the history row of the change `model` waits on once the
    /// operator reports it ready (at the time it says it became so) or failed;
    /// a change to another version ends it as superseded.
    async fn settle_awaited(
        &self,
        store: &crate::store::Store,
        model: &str,
        version: &str,
        observed: &Observed,
    ) -> Result<()> {
        let Some(awaited) = self.awaiting.lock().expect("awaiting").get(model).cloned() else {
            return Ok(());
        };
        if awaited.version != version {
            return self.supersede_awaited(store, model).await;
        }
        if !observed.reports_on(awaited.generation) {
            return Ok(());
        }
        let ended = if let Some(ready_ms) = observed.ready_since(awaited.applied_ms) {
            store
                .finish_deployment_ready_at(
                    &awaited.event_id,
                    ready_ms.max(awaited.applied_ms),
                    &format!("{}; {}", awaited.applied, K::READY),
                )
                .await?;
            true
        } else if observed.status.state == ServingState::Failed {
            store
                .finish_deployment(
                    &awaited.event_id,
                    DeploymentOutcome::Failed,
                    &observed.status.message,
                )
                .await?;
            true
        } else {
            false
        };
        if ended {
            self.awaiting.lock().expect("awaiting").remove(model);
        }
        Ok(())
    }

    fn api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &K::api_resource())
    }

    /// Server-side apply as field manager `slipway` with strict field
    /// validation, so a field the CRD does not know fails instead of
    /// vanishing (1.25+). `force` takes over fields others set: only on an
    /// object this install made (an edit by someone else is drift and is
    /// corrected); a create does not force, so an object someone made
    /// meanwhile conflicts instead of being taken over.
    pub async fn apply(&self, object: &Value, force: bool) -> Result<Observed> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            force,
            field_validation: Some(ValidationDirective::Strict),
            ..Default::default()
        };
        let applied = self
            .api(&namespace)
            .patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(|err| explain(err, &format!("apply the {} {name}", K::KIND), &namespace))?;
        Ok(Observed::read::<K>(&applied))
    }

    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<Observed>> {
        match self.api(namespace).get_opt(name).await {
            Ok(found) => Ok(found.as_ref().map(Observed::read::<K>)),
            Err(err) => Err(explain(
                err,
                &format!("read the {} {name}", K::KIND),
                namespace,
            )),
        }
    }

    /// Deletes the object with uid `uid` (the one read and judged this
    /// install's, not one made since under its name); one already gone is
    /// no error.
    pub async fn delete(&self, namespace: &str, name: &str, uid: Option<&str>) -> Result<()> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match self.api(namespace).delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(explain(
                err,
                &format!("delete the {} {name}", K::KIND),
                namespace,
            )),
        }
    }

    /// Leaves the object serving and says on it that no binding manages it
    /// any more; one already gone is no error.
    pub async fn mark_unbound(&self, namespace: &str, name: &str) -> Result<()> {
        let patch = serde_json::json!({
            "metadata": {"annotations": {UNBOUND_ANNOTATION: chrono::Utc::now().to_rfc3339()}}
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self
            .api(namespace)
            .patch(name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(explain(
                err,
                &format!("mark the {} {name} as unbound", K::KIND),
                namespace,
            )),
        }
    }
}

/// A serving object as the cluster has it: the version its label names
/// (labels live in `metadata`, not in the object's data), its spec's
/// generation, and its operator's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub version: Option<String>,
    /// Which object this is: one deleted and made again has another.
    pub uid: Option<String>,
    pub generation: Option<i64>,
    pub status: ServingStatus,
    /// When the `Ready` condition last turned `True` (epoch ms).
    pub ready_condition_ms: Option<i64>,
    /// Its `app.kubernetes.io/managed-by` and `slipway.dev/install` labels.
    pub managed_by: Option<String>,
    pub install: Option<String>,
    /// The generation the operator's status is about (`status.observedGeneration`).
    pub observed_generation: Option<i64>,
    /// The canary it serves beside its version (`version:weight[:shadow]`), if any.
    pub canary: Option<String>,
}

impl Observed {
    /// Whether the operator's status is about `generation` of the spec
    /// (or a later one): its `observedGeneration`, where it writes one.
    fn reports_on(&self, generation: Option<i64>) -> bool {
        match (self.observed_generation, generation) {
            (Some(observed), Some(applied)) => observed >= applied,
            _ => true,
        }
    }

    /// When the object became ready, if it is ready for a change applied
    /// at `applied_ms`: the `Ready` condition turned `True` since
    /// (its times are whole seconds). Without conditions, `Available` is
    /// the only signal there is.
    fn ready_since(&self, applied_ms: i64) -> Option<i64> {
        if self.status.state != ServingState::Available {
            return None;
        }
        match self.ready_condition_ms {
            Some(since) if since >= applied_ms - 1000 => Some(since),
            Some(_) => None,
            None => Some(crate::store::now_ms()),
        }
    }
}

impl Observed {
    fn read<K: ObjectKind>(object: &DynamicObject) -> Self {
        let ready_condition_ms = object.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|condition| condition["type"] == "Ready" && condition["status"] == "True")
            .and_then(|condition| condition["lastTransitionTime"].as_str())
            .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
            .map(|time| time.timestamp_millis());
        let label = |key: &str| {
            object
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(key))
                .cloned()
        };
        Self {
            version: label(VERSION_LABEL),
            managed_by: label(MANAGED_BY.0),
            install: label(INSTALL_LABEL),
            uid: object.metadata.uid.clone(),
            generation: object.metadata.generation,
            observed_generation: object.data["status"]["observedGeneration"].as_i64(),
            canary: object
                .metadata
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(CANARY_ANNOTATION))
                .cloned(),
            status: K::status(object),
            ready_condition_ms,
        }
    }
}

/// The row that remembers an object Slipway created for `binding`.
/// Where the runtime reads `version` of the binding's model from: MLflow's
/// download URI through the binding's artifact map, or why it cannot.
async fn mapped_storage_uri(
    ledger: &Ledger,
    binding: &DeploymentBinding,
    version: &str,
) -> Result<std::result::Result<String, String>> {
    let download = ledger
        .mlflow()
        .model_version_download_uri(&binding.model, version)
        .await?;
    Ok(binding.storage_uri(&download))
}

fn serving_object(binding: &DeploymentBinding) -> ServingObject {
    ServingObject {
        target: binding.target.as_str().into(),
        namespace: binding.namespace.clone().unwrap_or_default(),
        name: binding.object_name(),
        model: binding.model.clone(),
    }
}

#[async_trait::async_trait]
impl<K: ObjectKind> Target for ObjectTarget<K> {
    fn kind(&self) -> TargetKind {
        K::TARGET
    }

    /// For kinds whose canary is objects of their own: applied while a
    /// rollout is active, deleted (if this install's) once none is.
    async fn converge_canary(
        &self,
        ledger: &Arc<Ledger>,
        binding: &DeploymentBinding,
        canary: Option<&app::model::Rollout>,
    ) -> Result<()> {
        let Some(hooks) = K::canary_objects() else {
            return Ok(());
        };
        let namespace = binding.namespace.clone().unwrap_or_default();
        let Some(rollout) = canary else {
            self.canary_observed
                .lock()
                .expect("canary observed")
                .remove(&binding.model);
            for (resource, name) in (hooks.names)(binding) {
                let api = Api::namespaced_with(self.client.clone(), &namespace, &resource);
                let found = api.get_opt(&name).await;
                let Some(found) =
                    found.map_err(|err| explain(err, "reading a canary's object", &namespace))?
                else {
                    continue;
                };
                if self.made_here(&found) {
                    api.delete(&name, &DeleteParams::default())
                        .await
                        .map_err(|err| explain(err, "deleting a canary's object", &namespace))?;
                    tracing::info!(model = %binding.model, %name, kind = %resource.kind, "removed the canary's object");
                }
            }
            return Ok(());
        };
        let storage_uri = match mapped_storage_uri(ledger, binding, &rollout.canary_version).await?
        {
            Ok(uri) => uri,
            Err(why) => {
                tracing::warn!(model = %binding.model, "the canary cannot be served: {why}");
                return Ok(());
            }
        };
        let served = Served {
            version: &rollout.canary_version,
            storage_uri: &storage_uri,
        };
        let mut said = Vec::new();
        for (resource, mut object) in (hooks.render)(binding, served, share_of(rollout)) {
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            object["metadata"]["labels"][INSTALL_LABEL] = Value::from(self.install_id.as_str());
            let api = Api::namespaced_with(self.client.clone(), &namespace, &resource);
            let found = api
                .get_opt(&name)
                .await
                .map_err(|err| explain(err, "reading a canary's object", &namespace))?;
            if found.as_ref().is_some_and(|found| !self.made_here(found)) {
                tracing::warn!(model = %binding.model, %name, kind = %resource.kind,
                    "the canary's object exists and is not this Slipway's: left alone");
                continue;
            }
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                force: found.is_some(),
                field_validation: Some(ValidationDirective::Strict),
                ..Default::default()
            };
            let applied = api
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .map_err(|err| explain(err, "applying a canary's object", &namespace))?;
            said.push((hooks.describe)(&applied));
        }
        self.canary_observed
            .lock()
            .expect("canary observed")
            .insert(binding.model.clone(), said.join("; "));
        Ok(())
    }

    fn canary_status(&self, binding: &DeploymentBinding) -> Option<String> {
        self.canary_observed
            .lock()
            .expect("canary observed")
            .get(&binding.model)
            .cloned()
    }

    async fn converge(
        &self,
        ledger: &Arc<Ledger>,
        binding: &DeploymentBinding,
        version: Option<String>,
        trigger: &Trigger,
    ) -> Result<()> {
        let model = &binding.model;
        let object = serving_object(binding);
        let actual = match self.get(&object.namespace, &object.name).await {
            Ok(actual) => actual,
            Err(err) => {
                self.observe(binding, None, failed_status(&err.to_string()));
                return Ok(());
            }
        };
        if let Some(found) = &actual
            && let Some(why) = self.not_ours(ledger.store(), &object, found).await?
        {
            self.observe(binding, None, failed_status(&why));
            if let Some(version) = &version {
                ledger
                    .record_failure(model, version, None, trigger, &why)
                    .await?;
            }
            return Ok(());
        }
        let serving = actual.as_ref().and_then(|actual| actual.version.clone());
        let Some(version) = version else {
            return self
                .no_production(ledger, binding, &object, actual, trigger)
                .await;
        };
        let canary = self.canary(ledger, binding, &version).await?;
        let mut rendered = match mapped_storage_uri(ledger, binding, &version).await? {
            Ok(uri) => canary
                .and_then(|(canary, canary_uri, share)| {
                    let stable = Served {
                        version: &version,
                        storage_uri: &uri,
                    };
                    let canary = Served {
                        version: &canary,
                        storage_uri: &canary_uri,
                    };
                    K::render_canary(binding, stable, canary, share)
                })
                .unwrap_or_else(|| K::render(binding, &version, &uri)),
            Err(why) => {
                ledger
                    .record_failure(model, &version, serving.as_deref(), trigger, &why)
                    .await?;
                self.observe(binding, serving, failed_status(&why));
                return Ok(());
            }
        };
        let store = ledger.store();
        self.adopt_pending(store, model).await?;
        // Written before the first apply, so that an object whose binding
        // goes away can always be found again.
        let created_before = !store.remember_serving_object(&object).await?;
        // Level-triggered: apply every pass, so an object deleted or edited
        // by someone else is put back. Only real changes are recorded.
        let change = match &actual {
            None if created_before => Some(("drift".to_string(), "slipway".to_string())),
            None => Some(ledger.attribution(model, Some(&version), trigger).await?),
            Some(_) if serving.as_deref() != Some(version.as_str()) => {
                Some(ledger.attribution(model, Some(&version), trigger).await?)
            }
            Some(_) => None,
        };
        let already_failed = ledger.failed_version(model).as_deref() == Some(version.as_str());
        let pending = match &change {
            Some((cause, actor)) if !already_failed => Some(
                store
                    .begin_deployment(model, Some(&version), serving.as_deref(), cause, actor)
                    .await?,
            ),
            _ => None,
        };
        rendered["metadata"]["labels"][INSTALL_LABEL] = Value::from(self.install_id.as_str());
        match self.apply(&rendered, actual.is_some()).await {
            Ok(applied) => {
                ledger.forget_failure(model);
                // Deleted between this pass's read and its apply (a watch
                // event and someone's delete can meet): the apply made it
                // anew, and what served before is gone.
                let recreated = actual
                    .as_ref()
                    .is_some_and(|actual| actual.uid != applied.uid);
                let edited = change.is_none()
                    && !recreated
                    && actual
                        .as_ref()
                        .is_some_and(|actual| actual.canary == applied.canary)
                    && actual
                        .as_ref()
                        .is_some_and(|actual| actual.generation != applied.generation);
                let message = match &actual {
                    None if created_before => "put back: deleted outside Slipway",
                    Some(_) if recreated && change.is_none() => "put back: deleted outside Slipway",
                    _ if edited => "put back: edited outside Slipway",
                    _ => "applied",
                };
                let previous = if recreated { None } else { serving.as_deref() };
                // Recorded as any re-creation is: pending until reported ready.
                let pending = match pending {
                    None if recreated && change.is_none() => Some(
                        store
                            .begin_deployment(model, Some(&version), None, "drift", "slipway")
                            .await?,
                    ),
                    pending => pending,
                };
                match (pending, &change) {
                    // Served once the operator says so, not when applied: its
                    // time to ready is the target's own.
                    (Some(id), _) => {
                        let awaited = Awaited {
                            event_id: id,
                            version: version.clone(),
                            applied_ms: crate::store::now_ms(),
                            generation: applied.generation,
                            applied: message,
                        };
                        self.supersede_awaited(store, model).await?;
                        self.awaiting
                            .lock()
                            .expect("awaiting")
                            .insert(model.clone(), awaited);
                    }
                    // A change that had failed before and went through now.
                    (None, Some((cause, actor))) => {
                        ledger
                            .record(
                                model,
                                &version,
                                previous,
                                (cause, actor),
                                DeploymentOutcome::Serving,
                                message,
                            )
                            .await?
                    }
                    (None, None) if edited => {
                        ledger
                            .record(
                                model,
                                &version,
                                previous,
                                ("drift", "slipway"),
                                DeploymentOutcome::Serving,
                                message,
                            )
                            .await?
                    }
                    (None, None) => {}
                }
                self.settle_awaited(store, model, &version, &applied)
                    .await?;
                let mut status = applied.status;
                if self.awaiting.lock().expect("awaiting").contains_key(model) {
                    // What the operator says until then is about the previous spec.
                    status.state = ServingState::Creating;
                    status.message = format!(
                        "v{version} applied; waiting for {} to report it ready",
                        K::OPERATOR
                    );
                }
                self.observe(binding, Some(version), status);
            }
            Err(err) => {
                let why = err.to_string();
                match pending {
                    Some(id) => {
                        store
                            .finish_deployment(&id, DeploymentOutcome::Failed, &why)
                            .await?;
                        ledger.set_failed(model, &version);
                    }
                    None => {
                        ledger
                            .record_failure(model, &version, serving.as_deref(), trigger, &why)
                            .await?
                    }
                }
                self.observe(binding, serving, failed_status(&why));
            }
        }
        Ok(())
    }

    fn status(&self, binding: &DeploymentBinding) -> (Option<String>, ServingStatus) {
        self.observed
            .lock()
            .expect("observed")
            .get(&binding.model)
            .cloned()
            .unwrap_or((None, failed_status("not reconciled yet")))
    }

    /// Objects Slipway created for bindings that are gone: deleted, or left
    /// serving and marked, as configured.
    async fn remove_unbound(
        &self,
        ledger: &Arc<Ledger>,
        bindings: &[DeploymentBinding],
        _trigger: &Trigger,
    ) -> Result<()> {
        let bound: Vec<ServingObject> = bindings
            .iter()
            .filter(|binding| binding.target == K::TARGET)
            .map(serving_object)
            .collect();
        for object in ledger.store().serving_objects().await? {
            if object.target != K::TARGET.as_str() || bound.contains(&object) {
                continue;
            }
            // A failure is logged by `explain` and tried again next pass.
            let Ok(found) = self.get(&object.namespace, &object.name).await else {
                continue;
            };
            let outcome = match &found {
                None => Ok("already gone"),
                Some(found) => match self.not_ours(ledger.store(), &object, found).await? {
                    // Replaced by someone else's since: theirs to keep.
                    Some(why) => {
                        tracing::warn!(model = %object.model, "{why}");
                        Ok("left alone")
                    }
                    None => match self.unbound {
                        UnboundObjects::Delete => self
                            .delete(&object.namespace, &object.name, found.uid.as_deref())
                            .await
                            .map(|()| "deleted"),
                        UnboundObjects::Keep => self
                            .mark_unbound(&object.namespace, &object.name)
                            .await
                            .map(|()| "left serving and marked"),
                    },
                },
            };
            if let Ok(what) = outcome {
                ledger.store().forget_serving_object(&object).await?;
                self.observed
                    .lock()
                    .expect("observed")
                    .remove(&object.model);
                tracing::info!(model = %object.model, namespace = %object.namespace, name = %object.name,
                    "the binding is gone: its {} was {what}", K::KIND);
            }
        }
        Ok(())
    }

    fn forget(&self, model: &str) {
        self.observed.lock().expect("observed").remove(model);
        self.adopted.lock().expect("adopted").remove(model);
    }

    /// Slipway's objects of this kind in `namespace` (by their managed-by
    /// label), watched: list, then watch, re-listing after a gap. The
    /// initial listing asks for nothing; every later change asks for a pass.
    fn watch(&self, namespace: &str) -> Option<futures::stream::BoxStream<'static, ()>> {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let selector = format!(
            "{}={},{INSTALL_LABEL}={}",
            MANAGED_BY.0, MANAGED_BY.1, self.install_id
        );
        let namespace = namespace.to_string();
        let changes = watcher::watcher(
            self.api(&namespace),
            watcher::Config::default().labels(&selector),
        )
        .default_backoff()
        .filter_map(move |event| {
            let changed = match event {
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Some(()),
                Ok(_) => None,
                Err(err) => {
                    tracing::warn!(%namespace, kind = K::KIND, error = %err, "watching serving objects");
                    None
                }
            };
            std::future::ready(changed)
        });
        Some(changes.boxed())
    }
}

impl<K: ObjectKind> ObjectTarget<K> {
    /// Nothing is Production in MLflow: the binding says whether what
    /// serves keeps serving (the default) or is removed.
    async fn no_production(
        &self,
        ledger: &Arc<Ledger>,
        binding: &DeploymentBinding,
        object: &ServingObject,
        actual: Option<Observed>,
        trigger: &Trigger,
    ) -> Result<()> {
        let serving = actual.as_ref().and_then(|actual| actual.version.clone());
        match (binding.no_production, actual) {
            (NoProduction::Keep, Some(actual)) => {
                if let Some(version) = &serving {
                    self.settle_awaited(ledger.store(), &binding.model, version, &actual)
                        .await?;
                }
                self.observe(binding, serving, actual.status);
            }
            (_, None) => self.observe(binding, None, idle_status()),
            (NoProduction::Remove, Some(actual)) => {
                let store = ledger.store();
                self.supersede_awaited(store, &binding.model).await?;
                let (cause, actor) = ledger.attribution(&binding.model, None, trigger).await?;
                let id = store
                    .begin_deployment(&binding.model, None, serving.as_deref(), &cause, &actor)
                    .await?;
                match self
                    .delete(&object.namespace, &object.name, actual.uid.as_deref())
                    .await
                {
                    Ok(()) => {
                        store
                            .finish_deployment(
                                &id,
                                DeploymentOutcome::Removed,
                                "nothing is in production",
                            )
                            .await?;
                        store.forget_serving_object(object).await?;
                        self.observe(binding, None, idle_status());
                    }
                    Err(err) => {
                        let why = err.to_string();
                        store
                            .finish_deployment(&id, DeploymentOutcome::Failed, &why)
                            .await?;
                        self.observe(binding, serving, failed_status(&why));
                    }
                }
            }
        }
        Ok(())
    }

    /// Why the object found under the binding's name is not this install's
    /// to change or delete, if it is not: made by someone else, or by
    /// another install. One without an install label (made before there
    /// was one) is this install's if it wrote it down when it made it.
    async fn not_ours(
        &self,
        store: &crate::store::Store,
        object: &ServingObject,
        found: &Observed,
    ) -> Result<Option<String>> {
        let whose = match (found.managed_by.as_deref(), found.install.as_deref()) {
            (Some(manager), Some(install)) if manager == MANAGED_BY.1 => {
                if install == self.install_id {
                    return Ok(None);
                }
                format!("another Slipway install ({install:?})")
            }
            (Some(manager), None) if manager == MANAGED_BY.1 => {
                if store.serving_objects().await?.contains(object) {
                    return Ok(None);
                }
                "a Slipway that does not say which install".into()
            }
            (Some(manager), _) => format!("{manager:?} (its {} label)", MANAGED_BY.0),
            (None, _) => format!("someone else (it has no {} label)", MANAGED_BY.0),
        };
        Ok(Some(format!(
            "the {} {} in namespace {} was made by {whose}, not by this Slipway, which leaves it \
             alone: give this deployment another object name",
            K::KIND,
            object.name,
            object.namespace
        )))
    }

    /// Whether this install made `object` (its labels say so).
    fn made_here(&self, object: &DynamicObject) -> bool {
        let labels = object.metadata.labels.as_ref();
        let label = |key: &str| {
            labels
                .and_then(|labels| labels.get(key))
                .map(String::as_str)
        };
        label(MANAGED_BY.0) == Some(MANAGED_BY.1)
            && label(INSTALL_LABEL) == Some(self.install_id.as_str())
    }

    /// What the view shows until the next pass.
    fn observe(&self, binding: &DeploymentBinding, version: Option<String>, status: ServingStatus) {
        self.observed
            .lock()
            .expect("observed")
            .insert(binding.model.clone(), (version, status));
    }
}
