//! The admin's catalog: hardware profiles and launchable training projects,
//! one TOML file read and checked once at start-up. Every problem is reported
//! with the item it belongs to, all at once.

pub mod mlproject;
pub mod quantity;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use app::model::{ProfileSpec, ProjectSpec};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use mlproject::MlProject;

pub const DEFAULT_GPU_RESOURCE: &str = "nvidia.com/gpu";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default, rename = "profile")]
    profiles: Vec<HardwareProfile>,
    #[serde(default, rename = "project")]
    projects: Vec<ProjectEntry>,
    #[serde(default, rename = "deployment")]
    deployments: Vec<DeploymentBinding>,
    #[serde(default, rename = "serving_scope")]
    serving_scopes: Vec<ServingScope>,
}

/// Where admins whose grant is scoped to some models may serve them in a
/// cluster: an unscoped admin names any namespace, secret and object; a
/// scoped one only what an entry covering the model allows (and local
/// serving).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingScope {
    /// Model name patterns (`fraud-*`) this entry is for.
    pub models: Vec<String>,
    pub namespaces: Vec<String>,
    /// Patterns for `storage_secret` and `service_account`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Patterns for object names; default: the `models` patterns.
    #[serde(default)]
    pub names: Vec<String>,
}

impl ServingScope {
    /// What a scoped admin may not name for `binding`, this entry being
    /// the one for its model.
    fn refusals(&self, binding: &DeploymentBinding) -> Vec<String> {
        let matches = |patterns: &[String], name: &str| {
            patterns
                .iter()
                .any(|pattern| app::access::glob_match(pattern, name))
        };
        let mut refused = Vec::new();
        let namespace = binding.namespace.as_deref().unwrap_or_default();
        if !self.namespaces.iter().any(|allowed| allowed == namespace) {
            refused.push(format!(
                "namespace {namespace:?} is not one your scope may serve in ({})",
                self.namespaces.join(", ")
            ));
        }
        for (field, value) in [
            ("storage_secret", &binding.storage_secret),
            ("service_account", &binding.service_account),
        ] {
            if let Some(value) = value
                && !matches(&self.secrets, value)
            {
                refused.push(format!("{field} {value:?} is not one your scope may use"));
            }
        }
        let names = if self.names.is_empty() {
            &self.models
        } else {
            &self.names
        };
        let name = binding.object_name();
        if !matches(names, &name) {
            refused.push(format!(
                "object name {name:?} is not one your scope may use ({})",
                names.join(", ")
            ));
        }
        refused
    }
}

/// Which registered model is served, where, and how it gets there. Kept
/// in the database as JSON (`store::bindings`), so it serialises the way the
/// catalog file reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentBinding {
    /// The registered model's name in MLflow.
    pub model: String,
    pub target: ServingTarget,
    /// The serving object's name; default: the model's name as a DNS label.
    pub name: Option<String>,
    /// Required for cluster targets.
    pub namespace: Option<String>,
    /// Replicas (the least, where the target scales: kserve, seldon-core-2).
    #[serde(default = "one")]
    pub replicas: i32,
    /// The most replicas the target may scale to (kserve, seldon-core-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    pub cpu: Option<RequestLimit>,
    pub memory: Option<RequestLimit>,
    /// Secret with the bucket credentials the serving runtime reads the
    /// model with (seldon: environment; seldon-core-2: rclone configuration).
    pub storage_secret: Option<String>,
    /// The service account whose secrets give KServe the bucket credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The Seldon Core 2 Server to place the model on (default: any that fits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// How MLflow marks the version to serve.
    #[serde(default)]
    pub production: ProductionMarker,
    /// The alias, when `production = "alias"`.
    #[serde(default = "default_alias")]
    pub alias: String,
    /// From MLflow's artifact URIs to what the serving runtime can read.
    #[serde(default)]
    pub artifact_map: Vec<UriMapping>,
    /// What serving does while MLflow marks no version Production.
    #[serde(default)]
    pub no_production: NoProduction,
    /// Four eyes: a deployer's "Promote" asks for an approver's approval
    /// instead of promoting.
    #[serde(default)]
    pub requires_approval: bool,
}

app::text_enum! {
    #[derive(Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum NoProduction {
        /// Keep serving what serves, and say so: taking a model out of
        /// production in MLflow does not stop its traffic by accident.
        #[default]
        Keep => "keep",
        /// Stop serving: the model server stops, the cluster object is deleted.
        Remove => "remove",
    }
}

app::text_enum! {
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum ServingTarget {
        /// SeldonDeployment (Seldon Core v1), MLflow server implementation.
        Seldon => "seldon",
        /// KServe InferenceService, MLflow model format over protocol v2.
        Kserve => "kserve",
        /// Seldon Core 2 Model with the `mlflow` requirement.
        #[serde(rename = "seldon-core-2")]
        SeldonCore2 => "seldon-core-2",
        /// `mlflow models serve` on this machine (the embedded default).
        Local => "local",
    }
}

app::text_enum! {
    #[derive(Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum ProductionMarker {
        /// The version in stage `Production` (transitions archive the previous one).
        #[default]
        Stage => "stage",
        /// The version the alias points at (MLflow ≥ 2.9).
        Alias => "alias",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UriMapping {
    /// A prefix of MLflow's URI, e.g. `mlflow-artifacts:/`.
    pub from: String,
    /// What replaces it, e.g. `s3://mlflow-artifacts/`.
    pub to: String,
}

fn one() -> i32 {
    1
}

fn default_alias() -> String {
    "production".into()
}

/// Schemes a serving runtime in a cluster can read a model from.
const BUCKET_SCHEMES: &[&str] = &[
    "s3://",
    "gs://",
    "pvc://",
    "https://",
    "http://",
    "azureblob://",
    "hdfs://",
];

impl DeploymentBinding {
    /// How MLflow marks the version to serve, in words: `stage Production`
    /// or `alias @champion`.
    pub fn marker(&self) -> String {
        match self.production {
            ProductionMarker::Stage => "stage Production".into(),
            ProductionMarker::Alias => format!("alias @{}", self.alias),
        }
    }

    /// The serving object's name.
    pub fn object_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| dns_name(&self.model))
    }

    /// Where the serving runtime reads the model: MLflow's storage URI
    /// through the first matching mapping. A URI the runtime cannot read
    /// (`mlflow-artifacts:`, `models:`, `runs:`) without a mapping is an error.
    pub fn storage_uri(&self, mlflow_uri: &str) -> Result<String, String> {
        let mapped = self
            .artifact_map
            .iter()
            .find(|mapping| mlflow_uri.starts_with(&mapping.from))
            .map(|mapping| format!("{}{}", mapping.to, &mlflow_uri[mapping.from.len()..]));
        match mapped {
            Some(uri) => Ok(uri),
            None if self.target == ServingTarget::Local => Ok(mlflow_uri.to_string()),
            None if BUCKET_SCHEMES
                .iter()
                .any(|scheme| mlflow_uri.starts_with(scheme)) =>
            {
                Ok(mlflow_uri.to_string())
            }
            None => Err(format!(
                "{mlflow_uri} is not readable by the serving runtime; add an artifact_map entry for model {:?} \
                 that maps it to the bucket MLflow stores artifacts in",
                self.model
            )),
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.model.trim().is_empty() {
            problems.push("`model` is empty".into());
        }
        if !is_dns_label(&self.object_name()) {
            problems.push(format!(
                "name {:?} is not a DNS label (set `name`)",
                self.object_name()
            ));
        }
        let in_cluster = self.target != ServingTarget::Local;
        match &self.namespace {
            None if in_cluster => problems.push(format!(
                "a {} target needs a `namespace`",
                self.target.as_str()
            )),
            Some(namespace) if in_cluster && !is_dns_label(namespace) => {
                problems.push(format!("namespace {namespace:?} is not a DNS label"))
            }
            _ => {}
        }
        if self.replicas < 0 {
            problems.push("replicas must not be negative".into());
        }
        let scales = matches!(
            self.target,
            ServingTarget::Kserve | ServingTarget::SeldonCore2
        );
        match self.max_replicas {
            Some(_) if !scales => problems.push(format!(
                "max_replicas is for the kserve and seldon-core-2 targets, not {}",
                self.target.as_str()
            )),
            Some(most) if most < self.replicas.max(1) => problems.push(format!(
                "max_replicas {most} is below replicas {}",
                self.replicas.max(1)
            )),
            _ => {}
        }
        match (&self.service_account, self.target) {
            (Some(_), ServingTarget::Kserve) | (None, _) => {}
            (Some(_), other) => problems.push(format!(
                "service_account is for the kserve target, not {}",
                other.as_str()
            )),
        }
        if self.target == ServingTarget::Kserve && self.storage_secret.is_some() {
            problems.push(
                "KServe reads bucket credentials through a service account: set service_account instead of storage_secret"
                    .into(),
            );
        }
        match (&self.server, self.target) {
            (Some(_), ServingTarget::SeldonCore2) | (None, _) => {}
            (Some(_), other) => problems.push(format!(
                "server is for the seldon-core-2 target, not {}",
                other.as_str()
            )),
        }
        for (field, value) in [
            ("service_account", &self.service_account),
            ("server", &self.server),
            ("storage_secret", &self.storage_secret),
        ] {
            if let Some(value) = value
                && !is_dns_subdomain(value)
            {
                problems.push(format!("{field} {value:?} is not a Kubernetes object name"));
            }
        }
        problems.extend(quantity_problems(&[
            ("cpu", &self.cpu),
            ("memory", &self.memory),
        ]));
        if self.production == ProductionMarker::Alias
            && (self.alias.is_empty() || self.alias == "latest" || is_version_alias(&self.alias))
        {
            problems.push(format!(
                "alias {:?} is reserved by MLflow or empty",
                self.alias
            ));
        }
        for mapping in &self.artifact_map {
            if !BUCKET_SCHEMES
                .iter()
                .any(|scheme| mapping.to.starts_with(scheme))
            {
                problems.push(format!(
                    "artifact_map target {:?} is not a bucket URI ({})",
                    mapping.to,
                    BUCKET_SCHEMES.join(", ")
                ));
            }
        }
        problems
    }
}

/// What is wrong with a set of bindings, each problem with its model: each
/// binding's own, a model bound twice, and two cluster bindings that would
/// name the same object.
pub fn binding_problems(bindings: &[DeploymentBinding]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut models = HashSet::new();
    let mut objects = HashMap::new();
    for binding in bindings {
        if !models.insert(binding.model.as_str()) {
            problems.push(format!("model {:?} has two deployments", binding.model));
        }
        problems.extend(
            binding
                .problems()
                .into_iter()
                .map(|problem| format!("deployment of {:?}: {problem}", binding.model)),
        );
        if binding.target == ServingTarget::Local {
            continue;
        }
        let object = (binding.namespace.clone(), binding.object_name());
        if let Some(other) = objects.insert(object, binding.model.as_str())
            && other != binding.model
        {
            problems.push(format!(
                "deployment of {:?}: its object {:?} in namespace {:?} is already the one of model {other:?} (set `name`)",
                binding.model,
                binding.object_name(),
                binding.namespace.as_deref().unwrap_or_default()
            ));
        }
    }
    problems
}

/// `v1`, `v2`, …: MLflow reserves these alias names.
fn is_version_alias(alias: &str) -> bool {
    alias
        .strip_prefix('v')
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// The SeldonDeployment predictor serving Production.
pub const SELDON_STABLE_PREDICTOR: &str = "default";
/// The label Seldon's executor names the predictor with in its metrics.
pub const SELDON_PREDICTOR_LABEL: &str = "predictor_name";

/// The SeldonDeployment predictor serving a canary (or a shadow) beside
/// the stable one; the executor's metrics tell the two apart by it.
pub fn seldon_canary_predictor(shadow: bool) -> &'static str {
    if shadow { "shadow" } else { "canary" }
}

/// A model name as a DNS label: lower case, `-` for anything else.
pub fn dns_name(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut name = name
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareProfile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub cpu: Option<RequestLimit>,
    pub memory: Option<RequestLimit>,
    pub gpu: Option<Gpu>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    pub priority_class: Option<String>,
    /// The Job's `activeDeadlineSeconds`; the local executor enforces it too.
    pub max_runtime_secs: Option<i64>,
}

/// Quantities as Kubernetes writes them (`500m`, `4Gi`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLimit {
    pub request: Option<String>,
    pub limit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub request: u32,
    /// Must equal the request: Kubernetes does not overcommit GPUs.
    pub limit: Option<u32>,
    pub resource: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    pub key: Option<String>,
    pub operator: Option<String>,
    pub value: Option<String>,
    pub effect: Option<String>,
    pub toleration_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectEntry {
    name: String,
    #[serde(default)]
    description: String,
    /// The directory holding the `MLproject` file, relative to the catalog file.
    directory: Option<PathBuf>,
    /// Or a git repository's URL: each launch runs one commit of `branch`.
    git: Option<String>,
    branch: Option<String>,
    /// The repository's directory holding the `MLproject` file; default: its top.
    #[serde(default)]
    path: String,
    /// Kubernetes Secret (keys `username`, `password`) for a private
    /// repository over https, read by the Job's fetch step.
    git_secret: Option<String>,
    /// What a push to the branch launches (`/webhooks/git`).
    #[serde(default)]
    on_push: Vec<PushLaunch>,
    /// The training image; default: the project's `docker_env.image`.
    image: Option<String>,
}

/// One launch a push starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushLaunch {
    pub entry_point: String,
    pub profile: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The experiment's name; default: Slipway's default experiment.
    #[serde(default)]
    pub experiment: String,
}

/// Where a git project's code comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct GitSource {
    pub url: String,
    pub branch: String,
    /// The directory in the repository holding `MLproject` ("" for its top).
    pub path: String,
    pub secret: Option<String>,
    pub on_push: Vec<PushLaunch>,
    /// The commit whose `MLproject` the catalog read (at start-up).
    pub read_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub name: String,
    pub description: String,
    pub directory: PathBuf,
    pub image: Option<String>,
    /// Set for a project from git: `directory` is then a copy of the
    /// branch as of start-up, read for its `MLproject`; launches run the
    /// commit they pin, fetched for each.
    pub git: Option<GitSource>,
    pub mlproject: MlProject,
    /// Its `python_env` file, read when the catalog is.
    pub python_env: Option<mlproject::PythonEnv>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub profiles: Vec<HardwareProfile>,
    pub projects: Vec<Project>,
    pub deployments: Vec<DeploymentBinding>,
    pub serving_scopes: Vec<ServingScope>,
}

impl Catalog {
    /// Reads the catalog file; projects from git are checked out under
    /// `git_checkouts` (their branch as of now) to read their `MLproject`.
    pub fn load(path: &Path, git_checkouts: Option<&Path>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            Error::Config(format!("cannot read the catalog {}: {err}", path.display()))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_with(&text, base, git_checkouts).map_err(|problems| {
            Error::Config(format!(
                "catalog {}: {}",
                path.display(),
                problems.join("; ")
            ))
        })
    }

    /// `base` resolves project directories. All problems are returned together.
    pub fn parse(text: &str, base: &Path) -> std::result::Result<Self, Vec<String>> {
        Self::parse_with(text, base, None)
    }

    fn parse_with(
        text: &str,
        base: &Path,
        git_checkouts: Option<&Path>,
    ) -> std::result::Result<Self, Vec<String>> {
        let file: CatalogFile = toml::from_str(text).map_err(|err| vec![err.to_string()])?;
        let mut problems = Vec::new();
        let mut names = HashSet::new();
        for profile in &file.profiles {
            if !names.insert(profile.name.as_str()) {
                problems.push(format!("profile {:?} is defined twice", profile.name));
            }
            problems.extend(
                profile
                    .problems()
                    .into_iter()
                    .map(|problem| format!("profile {:?}: {problem}", profile.name)),
            );
        }
        let mut names = HashSet::new();
        let mut projects = Vec::new();
        for entry in file.projects {
            if !names.insert(entry.name.clone()) {
                problems.push(format!("project {:?} is defined twice", entry.name));
                continue;
            }
            let (directory, git) = match source(&entry, base, git_checkouts) {
                Ok(found) => found,
                Err(problem) => {
                    problems.push(format!("project {:?}: {problem}", entry.name));
                    continue;
                }
            };
            let loaded = MlProject::load(&directory.join("MLproject")).and_then(|mlproject| {
                let python_env = match &mlproject.python_env {
                    None => None,
                    Some(file) => {
                        let path = directory.join(file);
                        let text = std::fs::read_to_string(&path)
                            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
                        Some(
                            mlproject::PythonEnv::parse(&text)
                                .map_err(|err| format!("{}: {err}", path.display()))?,
                        )
                    }
                };
                Ok((mlproject, python_env))
            });
            match loaded {
                Ok((mlproject, python_env)) => {
                    for push in git.iter().flat_map(|git| &git.on_push) {
                        if mlproject.entry_point(&push.entry_point).is_none() {
                            problems.push(format!(
                                "project {:?}: on_push names entry point {:?}, which its MLproject lacks",
                                entry.name, push.entry_point
                            ));
                        }
                        if !file
                            .profiles
                            .iter()
                            .any(|profile| profile.name == push.profile)
                        {
                            problems.push(format!(
                                "project {:?}: on_push names profile {:?}, which the catalog lacks",
                                entry.name, push.profile
                            ));
                        }
                    }
                    projects.push(Project {
                        image: entry.image.or_else(|| mlproject.docker_image.clone()),
                        name: entry.name,
                        description: entry.description,
                        directory,
                        git,
                        mlproject,
                        python_env,
                    })
                }
                Err(err) => problems.push(format!("project {:?}: {err}", entry.name)),
            }
        }
        problems.extend(binding_problems(&file.deployments));
        if problems.is_empty() {
            Ok(Self {
                profiles: file.profiles,
                projects,
                deployments: file.deployments,
                serving_scopes: file.serving_scopes,
            })
        } else {
            Err(problems)
        }
    }

    /// What `grants` (an admin's, scoped to some models) may not name for
    /// `binding` in a cluster; nothing for an unscoped admin or local serving.
    pub fn serving_refusals(
        &self,
        grants: &[app::access::Grant],
        binding: &DeploymentBinding,
    ) -> Vec<String> {
        let unscoped = grants
            .iter()
            .any(|grant| grant.role >= app::access::Role::Admin && grant.scope.is_empty());
        if unscoped || binding.target == ServingTarget::Local {
            return Vec::new();
        }
        let entry = self.serving_scopes.iter().find(|entry| {
            entry
                .models
                .iter()
                .any(|pattern| app::access::glob_match(pattern, &binding.model))
        });
        match entry {
            Some(entry) => entry.refusals(binding),
            None => vec![format!(
                "no serving_scope in the catalog covers {}: an admin scoped to some models \
                 serves them locally, or where the catalog allows",
                binding.model
            )],
        }
    }

    /// The Kubernetes executor needs an image for every project.
    pub fn check_images(&self) -> Result<()> {
        let missing: Vec<_> = self
            .projects
            .iter()
            .filter(|project| project.image.is_none())
            .map(|project| project.name.as_str())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "projects without an image (set `image` in the catalog or `docker_env.image` in MLproject): {}",
                missing.join(", ")
            )))
        }
    }

    pub fn profile(&self, name: &str) -> Option<&HardwareProfile> {
        self.profiles.iter().find(|profile| profile.name == name)
    }

    pub fn project(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|project| project.name == name)
    }

    pub fn project_specs(&self) -> Vec<ProjectSpec> {
        self.projects
            .iter()
            .map(|project| ProjectSpec {
                name: project.name.clone(),
                description: project.description.clone(),
                env_managers: project.env_managers(),
                env_note: project.env_note(),
                entry_points: project
                    .mlproject
                    .entry_points
                    .iter()
                    .map(|entry| entry.spec())
                    .collect(),
            })
            .collect()
    }

    pub fn profile_specs(&self) -> Vec<ProfileSpec> {
        self.profiles.iter().map(HardwareProfile::spec).collect()
    }
}

/// Where a project's `MLproject` is read: its directory, or a copy of its
/// git branch (made now, under `git_checkouts`).
fn source(
    entry: &ProjectEntry,
    base: &Path,
    git_checkouts: Option<&Path>,
) -> std::result::Result<(PathBuf, Option<GitSource>), String> {
    match (&entry.directory, &entry.git) {
        (Some(directory), None) => {
            if entry.branch.is_some() || entry.git_secret.is_some() || !entry.on_push.is_empty() {
                return Err("branch, git_secret and on_push are for projects from git".into());
            }
            Ok((base.join(directory), None))
        }
        (None, Some(url)) => {
            let path = entry.path.trim_matches('/').to_string();
            if Path::new(&path)
                .components()
                .any(|part| !matches!(part, std::path::Component::Normal(_)))
            {
                return Err(format!(
                    "path {:?} must stay inside the repository",
                    entry.path
                ));
            }
            let branch = entry.branch.clone().unwrap_or_else(|| "main".into());
            let checkouts = git_checkouts
                .ok_or("a project from git needs Slipway's data directory to read it")?;
            let checkout = checkouts.join(&entry.name);
            let read_at = crate::adapters::git::check_out_branch_blocking(url, &branch, &checkout)
                .map_err(|err| err.to_string())?;
            Ok((
                checkout.join(&path),
                Some(GitSource {
                    url: url.clone(),
                    branch,
                    path,
                    secret: entry.git_secret.clone(),
                    on_push: entry.on_push.clone(),
                    read_at,
                }),
            ))
        }
        _ => Err("give either `directory` or `git`".into()),
    }
}

impl Project {
    /// How a local launch may set up its Python, the default first: the
    /// project's python_env where it declares one, else Slipway's own. A
    /// conda environment is not offered: Slipway does not build them.
    pub fn env_managers(&self) -> Vec<String> {
        let mut managers = Vec::new();
        if self.python_env.is_some() {
            managers.push(ENV_VIRTUALENV.to_string());
        }
        managers.push(ENV_LOCAL.to_string());
        managers
    }

    /// Why a local launch does not use the environment the project declares.
    pub fn env_note(&self) -> Option<String> {
        let conda_env = self.mlproject.conda_env.as_deref()?;
        Some(format!(
            "{:?} declares a conda environment ({conda_env}). Slipway builds python_env \
             virtualenvs, not conda environments, so it runs in Slipway's own Python \
             (\"local\"); give the project a python_env.yaml to pin its packages.",
            self.name
        ))
    }
}

/// `--env-manager` values, as `mlflow run` names them.
pub const ENV_VIRTUALENV: &str = "virtualenv";
pub const ENV_CONDA: &str = "conda";
pub const ENV_LOCAL: &str = "local";

impl HardwareProfile {
    pub fn gpus(&self) -> u32 {
        self.gpu.as_ref().map_or(0, |gpu| gpu.request)
    }

    pub fn gpu_resource(&self) -> &str {
        self.gpu
            .as_ref()
            .and_then(|gpu| gpu.resource.as_deref())
            .unwrap_or(DEFAULT_GPU_RESOURCE)
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name.is_empty() || !is_dns_label(&self.name) {
            problems.push(
                "the name must be lower-case letters, digits and '-' (it becomes a label value)"
                    .into(),
            );
        }
        problems.extend(quantity_problems(&[
            ("cpu", &self.cpu),
            ("memory", &self.memory),
        ]));
        if let Some(gpu) = &self.gpu
            && let Some(limit) = gpu.limit
            && limit != gpu.request
        {
            problems.push(format!(
                "GPU request {} must equal its limit {}: Kubernetes does not overcommit GPUs",
                gpu.request, limit
            ));
        }
        if let Some(seconds) = self.max_runtime_secs
            && seconds <= 0
        {
            problems.push("max_runtime_secs must be positive".into());
        }
        if let Some(gpu) = &self.gpu
            && !is_extended_resource_name(self.gpu_resource())
        {
            problems.push(format!(
                "GPU resource {:?} is not an extended resource name: it needs a domain, like {DEFAULT_GPU_RESOURCE:?}",
                gpu.resource.as_deref().unwrap_or_default()
            ));
        }
        for (key, value) in &self.node_selector {
            if !is_qualified_name(key) {
                problems.push(format!(
                    "node selector key {key:?} is not a label key ([prefix/]name)"
                ));
            }
            if !is_label_value(value) {
                problems.push(format!(
                    "node selector value {value:?} is not a label value: at most 63 letters, \
                     digits, '-', '_' or '.', beginning and ending with a letter or digit"
                ));
            }
        }
        for toleration in &self.tolerations {
            match toleration.operator.as_deref() {
                None | Some("Equal") => {}
                Some("Exists") if toleration.value.as_deref().is_some_and(|v| !v.is_empty()) => {
                    problems.push(format!(
                        "toleration {:?} with operator Exists must not have a value",
                        toleration.key.as_deref().unwrap_or_default()
                    ))
                }
                Some("Exists") => {}
                Some(other) => problems.push(format!(
                    "toleration operator {other:?} is neither Equal nor Exists"
                )),
            }
            match toleration.effect.as_deref() {
                None | Some("NoSchedule") | Some("PreferNoSchedule") | Some("NoExecute") => {}
                Some(other) => problems.push(format!("toleration effect {other:?} is unknown")),
            }
            if toleration.toleration_seconds.is_some()
                && toleration.effect.as_deref() != Some("NoExecute")
            {
                problems.push(format!(
                    "toleration {:?}: toleration_seconds needs effect NoExecute",
                    toleration.key.as_deref().unwrap_or_default()
                ));
            }
            if let Some(key) = &toleration.key
                && !is_qualified_name(key)
            {
                problems.push(format!("toleration key {key:?} is not a label key"));
            }
        }
        problems
    }

    pub fn spec(&self) -> ProfileSpec {
        let range = |pair: &Option<RequestLimit>| match pair {
            None => "—".to_string(),
            Some(RequestLimit { request, limit }) => match (request, limit) {
                (Some(request), Some(limit)) if request != limit => format!("{request}–{limit}"),
                (Some(value), _) | (None, Some(value)) => value.clone(),
                (None, None) => "—".into(),
            },
        };
        ProfileSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            cpu: range(&self.cpu),
            memory: range(&self.memory),
            gpus: self.gpus(),
            gpu_resource: self.gpu_resource().into(),
            node_selector: self
                .node_selector
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            tolerations: self.tolerations.iter().map(Toleration::describe).collect(),
            priority_class: self.priority_class.clone(),
            max_runtime_secs: self.max_runtime_secs,
            warning: None,
        }
    }
}

impl Toleration {
    fn describe(&self) -> String {
        let key = self.key.as_deref().unwrap_or("*");
        let condition = match (self.operator.as_deref(), &self.value) {
            (Some("Exists"), _) | (None, None) => key.to_string(),
            (_, Some(value)) => format!("{key}={value}"),
            (_, None) => key.to_string(),
        };
        match &self.effect {
            Some(effect) => format!("{condition}:{effect}"),
            None => condition,
        }
    }
}

/// Bad quantities, and requests above their limits.
fn quantity_problems(pairs: &[(&str, &Option<RequestLimit>)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (resource, pair) in pairs {
        let Some(pair) = pair else { continue };
        let parsed = |text: &Option<String>, which: &str, problems: &mut Vec<String>| {
            let text = text.as_ref()?;
            quantity::parse(text)
                .map_err(|err| problems.push(format!("{resource} {which}: {err}")))
                .ok()
        };
        let request = parsed(&pair.request, "request", &mut problems);
        let limit = parsed(&pair.limit, "limit", &mut problems);
        if let (Some(request), Some(limit)) = (request, limit)
            && request > limit
        {
            problems.push(format!(
                "{resource} request {} is above its limit {}",
                pair.request.as_deref().unwrap_or_default(),
                pair.limit.as_deref().unwrap_or_default()
            ));
        }
    }
    problems
}

/// A label value: empty, or up to 63 of `[A-Za-z0-9._-]` with alphanumeric ends.
pub fn is_label_value(text: &str) -> bool {
    text.is_empty()
        || (text.len() <= 63
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A label key: `[DNS-subdomain/]name`, the name a non-empty label value.
pub fn is_qualified_name(text: &str) -> bool {
    let (prefix, name) = match text.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, text),
    };
    !name.is_empty() && is_label_value(name) && prefix.is_none_or(is_dns_subdomain)
}

/// An extended resource (a GPU, say): a label key with a domain outside
/// `kubernetes.io`.
pub fn is_extended_resource_name(text: &str) -> bool {
    is_qualified_name(text)
        && text
            .split_once('/')
            .is_some_and(|(domain, _)| !domain.ends_with("kubernetes.io"))
}

fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// RFC 1123 label: what Kubernetes accepts in names and label values.
pub fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("p")).unwrap();
        std::fs::write(
            dir.path().join("p/MLproject"),
            "docker_env:\n  image: img:1\nentry_points:\n  main:\n    parameters: {alpha: float}\n    command: python train.py {alpha}\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn the_demo_catalog_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/catalog.toml");
        let catalog = Catalog::load(&path, None).unwrap();
        let names: Vec<_> = catalog.profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cpu-small", "cpu-large", "gpu-1"]);
        assert_eq!(catalog.profile("gpu-1").unwrap().gpus(), 1);
        catalog.check_images().unwrap();
        let project = catalog.project("diabetes").unwrap();
        assert!(project.mlproject.entry_point("main").is_some());
    }

    #[test]
    fn every_problem_is_reported_with_its_item() {
        let dir = project_dir();
        let text = r#"
[[profile]]
name = "a"
cpu = { request = "2", limit = "1" }
memory = { request = "4GB" }

[[profile]]
name = "a"
gpu = { request = 1, limit = 2 }

[[profile]]
name = "Bad_Name"
tolerations = [{ key = "k", operator = "Maybe" }]
max_runtime_secs = 0

[[project]]
name = "p"
directory = "p"

[[project]]
name = "missing"
directory = "nowhere"
"#;
        let problems = Catalog::parse(text, dir.path()).unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "profile \"a\": cpu request 2 is above its limit 1",
            "profile \"a\": memory request: \"4GB\" is not a Kubernetes quantity",
            "profile \"a\" is defined twice",
            "GPU request 1 must equal its limit 2",
            "profile \"Bad_Name\": the name must be lower-case",
            "toleration operator \"Maybe\"",
            "max_runtime_secs must be positive",
            "project \"missing\": cannot read",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert_eq!(problems.len(), 8, "{all}");
    }

    #[test]
    fn two_cluster_bindings_may_not_name_the_same_object() {
        let text = r#"
[[deployment]]
model = "Fraud Model"
target = "seldon"
namespace = "models"

[[deployment]]
model = "fraud-model"
target = "seldon"
namespace = "models"

[[deployment]]
model = "fraud_model"
target = "seldon"
namespace = "staging"

[[deployment]]
model = "fraud.model"
target = "local"
"#;
        let problems = Catalog::parse(text, Path::new(".")).unwrap_err();
        assert_eq!(
            problems,
            [
                "deployment of \"fraud-model\": its object \"fraud-model\" in namespace \"models\" is already the one of model \"Fraud Model\" (set `name`)"
            ]
        );
    }

    /// The four profiles a real API server refused with 422 although the
    /// start-up check had passed them.
    #[test]
    fn what_the_api_server_refuses_is_refused_at_start_up() {
        let text = r#"
[[profile]]
name = "exists-with-value"
tolerations = [{ key = "gpu", operator = "Exists", value = "yes", effect = "NoSchedule" }]

[[profile]]
name = "bad-selector"
node_selector = { "pool" = "batch pool!" }

[[profile]]
name = "gpu-without-domain"
gpu = { request = 1, limit = 1, resource = "gpu" }

[[profile]]
name = "seconds-on-noschedule"
tolerations = [{ key = "gpu", operator = "Exists", effect = "NoSchedule", toleration_seconds = 60 }]
"#;
        let problems = Catalog::parse(text, Path::new(".")).unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "profile \"exists-with-value\": toleration \"gpu\" with operator Exists must not have a value",
            "profile \"bad-selector\": node selector value \"batch pool!\" is not a label value",
            "profile \"gpu-without-domain\": GPU resource \"gpu\" is not an extended resource name",
            "profile \"seconds-on-noschedule\": toleration \"gpu\": toleration_seconds needs effect NoExecute",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert_eq!(problems.len(), 4, "{all}");
        assert!(is_extended_resource_name("nvidia.com/gpu"));
        assert!(!is_extended_resource_name("kubernetes.io/gpu"));
        assert!(is_label_value("") && is_label_value("a.b_c-1") && !is_label_value("-a"));
        assert!(is_qualified_name("slipway.dev/pool") && !is_qualified_name("a/b/c"));
    }

    #[test]
    fn unknown_keys_are_refused_rather_than_ignored() {
        let err =
            Catalog::parse("[[profile]]\nname = \"a\"\ngpus = 1\n", Path::new(".")).unwrap_err();
        assert!(err[0].contains("unknown field `gpus`"), "{err:?}");
    }

    #[test]
    fn the_image_falls_back_to_the_projects_docker_env() {
        let dir = project_dir();
        let catalog =
            Catalog::parse("[[project]]\nname = \"p\"\ndirectory = \"p\"\n", dir.path()).unwrap();
        assert_eq!(
            catalog.project("p").unwrap().image.as_deref(),
            Some("img:1")
        );
        let catalog = Catalog::parse(
            "[[project]]\nname = \"p\"\ndirectory = \"p\"\nimage = \"other:2\"\n",
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            catalog.project("p").unwrap().image.as_deref(),
            Some("other:2")
        );
    }
}
