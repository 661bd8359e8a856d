//! Configuration: one typed struct, read once at start-up. Every flag is also
//! an environment variable `SLIPWAY_…`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use url::Url;

use crate::adapters::mlflow::MlflowAuth;
use crate::error::{Error, Result};

#[derive(Clone, Parser)]
#[command(name = "slipway")]
pub struct Config {
    /// Address the web UI and API listen on.
    #[arg(long, env = "SLIPWAY_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Address the gateway listens on: each locally served deployment's
    /// stable address, `/serve/{model}/invocations`, without sign-in (for
    /// programs on this machine; keep it on loopback).
    #[arg(long, env = "SLIPWAY_GATEWAY_LISTEN", default_value = "127.0.0.1:3001")]
    pub gateway_listen: SocketAddr,

    /// Prometheus to read deployments' traffic from (its HTTP API). Without
    /// one, local deployments show what the gateway kept (24 hours) and
    /// cluster deployments show no traffic.
    #[arg(long, env = "SLIPWAY_PROMETHEUS_URL")]
    pub prometheus_url: Option<Url>,

    /// The label naming a SeldonDeployment on its executor's metrics, as the
    /// cluster's scrape configuration sets it.
    #[arg(
        long,
        env = "SLIPWAY_PROMETHEUS_DEPLOYMENT_LABEL",
        default_value = "deployment_name"
    )]
    pub prometheus_deployment_label: String,

    /// The label naming the namespace on scraped metrics.
    #[arg(
        long,
        env = "SLIPWAY_PROMETHEUS_NAMESPACE_LABEL",
        default_value = "namespace"
    )]
    pub prometheus_namespace_label: String,

    /// Seconds the deployments list's rate, errors and p99 are over. With
    /// Prometheus, at least four scrape intervals.
    #[arg(long, env = "SLIPWAY_TRAFFIC_WINDOW_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub traffic_window_secs: u64,

    /// The most concurrent users a load test may have.
    #[arg(long, env = "SLIPWAY_LOAD_TEST_MAX_USERS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub load_test_max_users: u32,

    /// The highest request rate (per second) a load test may ask for.
    #[arg(long, env = "SLIPWAY_LOAD_TEST_MAX_RATE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub load_test_max_rate: u32,

    /// The longest a load test may run, in seconds.
    #[arg(long, env = "SLIPWAY_LOAD_TEST_MAX_SECS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub load_test_max_secs: u32,

    /// Seconds before a notification that was not delivered is sent again;
    /// doubled after each failed attempt (at most 15 minutes, 10 attempts).
    #[arg(long, env = "SLIPWAY_NOTIFY_RETRY_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub notify_retry_secs: u64,

    /// MLflow tracking server.
    #[arg(
        long,
        env = "SLIPWAY_MLFLOW_URI",
        default_value = "http://127.0.0.1:5000"
    )]
    pub mlflow_uri: Url,

    /// User for MLflow's basic auth (needs --mlflow-password).
    #[arg(long, env = "SLIPWAY_MLFLOW_USERNAME", requires = "mlflow_password")]
    pub mlflow_username: Option<String>,

    #[arg(
        long,
        env = "SLIPWAY_MLFLOW_PASSWORD",
        hide_env_values = true,
        requires = "mlflow_username"
    )]
    pub mlflow_password: Option<String>,

    /// Bearer token for MLflow (instead of basic auth).
    #[arg(
        long,
        env = "SLIPWAY_MLFLOW_TOKEN",
        hide_env_values = true,
        conflicts_with = "mlflow_username"
    )]
    pub mlflow_token: Option<String>,

    /// Seconds background work (reconciling, launching, promoting) waits for
    /// one MLflow request, retries included. MLflow's first request to a
    /// fresh worker takes 2–3 s, so keep this well above that.
    #[arg(long, env = "SLIPWAY_MLFLOW_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub mlflow_timeout_secs: u64,

    /// Seconds a page waits for MLflow, retries included, before it says
    /// that MLflow is not answering. Not less: MLflow's first search of an
    /// experiment of 10,000 runs took more than 5 s in `make bench`.
    #[arg(long, env = "SLIPWAY_PAGE_DEADLINE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub page_deadline_secs: u64,

    /// Milliseconds an MLflow answer serves identical page reads again
    /// (identical reads at the same time always share one request). Slipway's
    /// own writes and MLflow's webhooks drop them at once; changes made
    /// elsewhere show within this. 0: every page view asks MLflow.
    #[arg(long, env = "SLIPWAY_MLFLOW_CACHE_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub mlflow_cache_ms: u64,

    /// Where Slipway keeps its own files (the default SQLite database).
    #[arg(long, env = "SLIPWAY_DATA_DIR", default_value = "slipway-data")]
    pub data_dir: PathBuf,

    /// `sqlite://…` or `postgres://…`; default: a SQLite file in the data directory.
    #[arg(long, env = "SLIPWAY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Where training runs.
    #[arg(long, env = "SLIPWAY_EXECUTOR", value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,

    /// The admin's catalog (TOML): hardware profiles and training projects.
    /// Without one, the launch form has nothing to offer.
    #[arg(long, env = "SLIPWAY_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// MLflow as training code reaches it; in a cluster usually a Service
    /// address. Default: --mlflow-uri.
    #[arg(long, env = "SLIPWAY_JOB_TRACKING_URI")]
    pub job_tracking_uri: Option<Url>,

    /// MLflow user for training code and model servers (a separate, less
    /// privileged account: Slipway's own credentials never reach user code).
    #[arg(
        long,
        env = "SLIPWAY_JOB_MLFLOW_USERNAME",
        requires = "job_mlflow_password"
    )]
    pub job_mlflow_username: Option<String>,

    #[arg(
        long,
        env = "SLIPWAY_JOB_MLFLOW_PASSWORD",
        hide_env_values = true,
        requires = "job_mlflow_username"
    )]
    pub job_mlflow_password: Option<String>,

    /// Bearer token for training code and model servers (instead of a user).
    #[arg(
        long,
        env = "SLIPWAY_JOB_MLFLOW_TOKEN",
        hide_env_values = true,
        conflicts_with = "job_mlflow_username"
    )]
    pub job_mlflow_token: Option<String>,

    /// Secret in the Jobs' namespace with MLflow credentials for training
    /// pods: keys MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or
    /// MLFLOW_TRACKING_TOKEN. The kubelet reads it, Slipway never does; the
    /// --job-mlflow-* values are for local processes only and never go into
    /// a Job.
    #[arg(long, env = "SLIPWAY_JOB_MLFLOW_SECRET")]
    pub job_mlflow_secret: Option<String>,

    /// More variables local trainings and model servers inherit from
    /// Slipway's environment, beyond PATH, HOME, LANG, LC_*, TZ, TMPDIR,
    /// USER, LOGNAME and LD_LIBRARY_PATH (comma-separated names).
    #[arg(long, env = "SLIPWAY_CHILD_ENV_ALLOW", value_delimiter = ',')]
    pub child_env_allow: Vec<String>,

    /// The user local trainings and model servers run as (a name, or
    /// `uid[:gid]`), where Slipway runs as root: model and training code
    /// then cannot write Slipway's database or read its files. It must be
    /// able to read the catalog's project directories and the Python
    /// environment. Without it, children run as Slipway's own user.
    #[arg(long, env = "SLIPWAY_CHILD_USER")]
    pub child_user: Option<crate::adapters::process::ChildUser>,

    /// Kubeconfig file for the cluster. Default: $KUBECONFIG, ~/.kube/config,
    /// or the pod's service account.
    #[arg(long, env = "SLIPWAY_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace for training Jobs. Default: the kubeconfig's or the pod's.
    #[arg(long, env = "SLIPWAY_KUBE_NAMESPACE")]
    pub kube_namespace: Option<String>,

    /// Seconds Kubernetes keeps a finished Job (and its logs) before deleting it.
    #[arg(long, env = "SLIPWAY_JOB_TTL_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(i32).range(0..))]
    pub job_ttl_secs: i32,

    /// Seconds between reconcile passes that look for changes no webhook
    /// reports (stage transitions, objects edited in the cluster).
    #[arg(long, env = "SLIPWAY_RECONCILE_POLL_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub reconcile_poll_secs: u64,

    /// What happens to a cluster object Slipway created for a deployment
    /// binding once the binding is gone from the catalog.
    #[arg(long, env = "SLIPWAY_UNBOUND_OBJECTS", value_enum, default_value_t = UnboundObjects::Delete)]
    pub unbound_objects: UnboundObjects,

    /// Slipway's address as MLflow reaches it (for the webhook MLflow calls).
    #[arg(long, env = "SLIPWAY_PUBLIC_URL")]
    pub public_url: Option<Url>,

    /// Shared secret of MLflow's webhook deliveries. With --public-url set,
    /// Slipway registers its webhook with MLflow at start-up.
    #[arg(long, env = "SLIPWAY_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// The image of the step that fetches a git project's commit in a
    /// training Job (it needs `sh` and `git`).
    #[arg(long, env = "SLIPWAY_GIT_IMAGE", default_value = "alpine/git:2.47.2")]
    pub git_image: String,

    /// Shared secret of git push webhooks (`/webhooks/git`): GitHub's and
    /// Gitea's HMAC signature, or GitLab's token. Without it, pushes are refused.
    #[arg(long, env = "SLIPWAY_GIT_WEBHOOK_SECRET", hide_env_values = true)]
    pub git_webhook_secret: Option<String>,

    /// Service account training pods run as. Default: the namespace's default.
    #[arg(long, env = "SLIPWAY_JOB_SERVICE_ACCOUNT")]
    pub job_service_account: Option<String>,

    /// The URL people open Slipway at. State-changing requests must come
    /// from this origin, and the session cookie is `Secure` when it is
    /// https. Default: the origin each request names in its `Host`.
    #[arg(long, env = "SLIPWAY_EXTERNAL_URL")]
    pub external_url: Option<Url>,

    /// Host names (`host` or `host:port`, comma-separated) Slipway answers
    /// to besides --external-url's; requests naming any other host are
    /// refused. With neither set: localhost, 127.0.0.1 and [::1].
    #[arg(long, env = "SLIPWAY_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<crate::web::hosts::AllowedHost>,

    /// Reverse proxies in front of Slipway (addresses or networks,
    /// comma-separated): from them, the client is read from
    /// `X-Forwarded-For`, so sign-in limits count each client, not the
    /// proxy. From anyone else the header is ignored.
    #[arg(long, env = "SLIPWAY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::web::proxies::Network>,

    /// Minutes a session may go unused before it ends.
    #[arg(long, env = "SLIPWAY_SESSION_IDLE_MINUTES", default_value_t = 720, value_parser = clap::value_parser!(u64).range(1..=43_200))]
    pub session_idle_minutes: u64,

    /// Hours after sign-in a session ends, used or not.
    #[arg(long, env = "SLIPWAY_SESSION_MAX_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..=8_760))]
    pub session_max_hours: u64,

    /// Seconds a single sign-on session lasts: then a page visit goes
    /// through the provider again, so groups taken away there end the role
    /// here within this time.
    #[arg(long, env = "SLIPWAY_SSO_SESSION_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub sso_session_secs: u64,

    /// OpenID Connect provider for single sign-on (its issuer URL, exactly
    /// as its discovery document states it). Needs --external-url.
    #[arg(long, env = "SLIPWAY_OIDC_ISSUER", requires_all = ["oidc_client_id", "external_url"])]
    pub oidc_issuer: Option<String>,

    #[arg(long, env = "SLIPWAY_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    #[arg(long, env = "SLIPWAY_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,

    #[arg(
        long,
        env = "SLIPWAY_OIDC_SCOPES",
        value_delimiter = ',',
        default_value = "openid,profile,email"
    )]
    pub oidc_scopes: Vec<String>,

    /// The ID token claim that lists the user's groups.
    #[arg(long, env = "SLIPWAY_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,

    /// The ID token claim that names the account (`sub` when missing).
    #[arg(
        long,
        env = "SLIPWAY_OIDC_USERNAME_CLAIM",
        default_value = "preferred_username"
    )]
    pub oidc_username_claim: String,

    /// Groups to roles: `group=role` or `group=role:pattern,pattern`,
    /// separated by `;`. A user whose groups map to no role cannot sign in.
    #[arg(long, env = "SLIPWAY_OIDC_ROLE_MAP", value_delimiter = ';')]
    pub oidc_role_map: Vec<crate::adapters::oidc::GroupRole>,

    #[arg(long, env = "SLIPWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The built UI (wasm, JS, CSS, public files), as `scripts/build.sh` leaves it.
    #[arg(long, env = "SLIPWAY_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Names this install among others on one MLflow or cluster (staging,
    /// production): its webhook there is `slipway-<id>`, its serving
    /// objects are labelled with it, and it touches no other install's.
    #[arg(long, env = "SLIPWAY_INSTALL_ID", default_value = "default", value_parser = parse_install_id)]
    pub install_id: String,

    /// This replica's name (a pod sets its own name). Default: the host
    /// name and process id.
    #[arg(long, env = "SLIPWAY_REPLICA_NAME")]
    pub replica_name: Option<String>,

    /// With a cluster: the Lease replicas elect their leader on, in
    /// --lease-namespace (default: the namespace of Slipway's kubeconfig
    /// or pod).
    #[arg(long, env = "SLIPWAY_LEASE_NAME", default_value = "slipway-leader")]
    pub lease_name: String,

    #[arg(long, env = "SLIPWAY_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a leader's Lease lasts unrenewed: how long the others wait
    /// after a leader dies (it renews every fifth of this).
    #[arg(long, env = "SLIPWAY_LEASE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(5..=120))]
    pub lease_secs: u64,
}

/// Lower-case letters, digits and dashes, as a name in MLflow and a label
/// value take them.
fn parse_install_id(text: &str) -> std::result::Result<String, String> {
    let fits = !text.is_empty()
        && text.len() <= 40
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if fits {
        Ok(text.into())
    } else {
        Err("an install id is 1 to 40 lower-case letters, digits and dashes".into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// Training as processes on this machine.
    Local,
    /// Training as Kubernetes Jobs (kubeconfig or in-cluster credentials).
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnboundObjects {
    /// Deleted: nothing is left serving that no binding explains.
    Delete,
    /// Left serving, marked with the annotation `slipway.dev/unbound`, and
    /// no longer managed.
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn replica_name(&self) -> String {
        self.replica_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_string())
                .unwrap_or_else(|_| "slipway".into());
            format!("{host}-{}", std::process::id())
        })
    }

    pub fn lease_settings(&self, default_namespace: &str) -> crate::adapters::lease::LeaseSettings {
        crate::adapters::lease::LeaseSettings {
            namespace: self
                .lease_namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_string()),
            name: self.lease_name.clone(),
            identity: self.replica_name(),
            duration: Duration::from_secs(self.lease_secs),
        }
    }

    /// The webhook to register with MLflow, when both the public URL and
    /// the secret are configured.
    pub fn webhook_registration(&self) -> Option<crate::adapters::mlflow::webhook::Registration> {
        let (Some(public_url), Some(secret)) = (&self.public_url, &self.webhook_secret) else {
            return None;
        };
        Some(crate::adapters::mlflow::webhook::Registration::new(
            &self.install_id,
            public_url,
            secret,
        ))
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("slipway.db").display()
            )
        })
    }

    /// Slipway's own MLflow credentials: the flags, or the `user:password@`
    /// of the MLflow URI.
    pub fn mlflow_auth(&self) -> MlflowAuth {
        match (
            &self.mlflow_username,
            &self.mlflow_password,
            &self.mlflow_token,
        ) {
            (Some(username), Some(password), _) => MlflowAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            (_, _, Some(token)) => MlflowAuth::Bearer(token.clone()),
            _ => credentials_in(&self.mlflow_uri),
        }
    }

    /// MLflow's URI without any credentials in it: what is shown, logged
    /// and connected to (the credentials go in a header).
    pub fn mlflow_base(&self) -> Url {
        without_credentials(&self.mlflow_uri)
    }

    /// The credentials training code and model servers get: the job flags,
    /// or the `user:password@` of --job-tracking-uri. Never Slipway's own.
    fn job_mlflow_auth(&self) -> MlflowAuth {
        match (
            &self.job_mlflow_username,
            &self.job_mlflow_password,
            &self.job_mlflow_token,
        ) {
            (Some(username), Some(password), _) => MlflowAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            (_, _, Some(token)) => MlflowAuth::Bearer(token.clone()),
            _ => self
                .job_tracking_uri
                .as_ref()
                .map_or(MlflowAuth::None, credentials_in),
        }
    }

    /// The environment of local trainings and model servers.
    pub fn child_env(&self) -> crate::adapters::process::ChildEnv {
        let env = crate::adapters::process::ChildEnv::new(
            &self.job_tracking_uri(),
            &self.job_mlflow_auth(),
            &self.child_env_allow,
        );
        match self.child_user {
            Some(user) => env.running_as(user, &self.child_home()),
            None => env,
        }
    }

    /// HOME of children running as `--child-user`: theirs, in the data
    /// directory.
    pub fn child_home(&self) -> PathBuf {
        self.data_dir.join("child-home")
    }

    /// The tracking URI training code gets, without credentials (those
    /// come in MLFLOW_TRACKING_USERNAME/PASSWORD).
    pub fn job_tracking_uri(&self) -> String {
        let uri = without_credentials(self.job_tracking_uri.as_ref().unwrap_or(&self.mlflow_uri));
        uri.as_str().trim_end_matches('/').to_string()
    }

    pub fn session_settings(&self) -> crate::services::accounts::SessionSettings {
        crate::services::accounts::SessionSettings {
            idle: Duration::from_secs(self.session_idle_minutes * 60),
            absolute: Duration::from_secs(self.session_max_hours * 3600),
            single_sign_on: Duration::from_secs(self.sso_session_secs),
        }
    }

    pub fn gate_settings(&self) -> crate::web::gate::GateSettings {
        crate::web::gate::GateSettings {
            external_url: self.external_url.clone(),
            allowed_hosts: crate::web::hosts::AllowedHosts::new(
                &self.allowed_hosts,
                self.external_url.as_ref(),
            ),
            trusted_proxies: crate::web::proxies::TrustedProxies::new(self.trusted_proxies.clone()),
        }
    }

    /// Single sign-on, when an issuer is configured.
    pub fn oidc_settings(&self) -> Option<crate::adapters::oidc::OidcSettings> {
        let issuer = self.oidc_issuer.clone()?;
        let external = self.external_url.as_ref()?;
        Some(crate::adapters::oidc::OidcSettings {
            issuer,
            client_id: self.oidc_client_id.clone().unwrap_or_default(),
            client_secret: self.oidc_client_secret.clone(),
            scopes: self.oidc_scopes.clone(),
            groups_claim: self.oidc_groups_claim.clone(),
            username_claim: self.oidc_username_claim.clone(),
            role_map: self.oidc_role_map.clone(),
            redirect_url: external
                .join("login/oidc/callback")
                .expect("a path joins an http URL"),
        })
    }

    pub fn mlflow_timeout(&self) -> Duration {
        Duration::from_secs(self.mlflow_timeout_secs)
    }

    /// Prometheus with its queries' deadline (a page's), and the label
    /// names of the cluster's metrics.
    pub fn prometheus(
        &self,
    ) -> Result<
        Option<(
            crate::adapters::prometheus::Prometheus,
            crate::traffic::SeldonLabels,
        )>,
    > {
        let Some(url) = &self.prometheus_url else {
            return Ok(None);
        };
        let prometheus = crate::adapters::prometheus::Prometheus::new(url, self.page_deadline())?;
        Ok(Some((
            prometheus,
            crate::traffic::SeldonLabels {
                deployment: self.prometheus_deployment_label.clone(),
                namespace: self.prometheus_namespace_label.clone(),
            },
        )))
    }

    pub fn load_test_caps(&self) -> app::model::LoadTestCaps {
        app::model::LoadTestCaps {
            max_users: self.load_test_max_users,
            max_rate: self.load_test_max_rate,
            max_duration_secs: self.load_test_max_secs,
        }
    }

    pub fn traffic_window(&self) -> Duration {
        Duration::from_secs(self.traffic_window_secs)
    }

    pub fn page_deadline(&self) -> Duration {
        Duration::from_secs(self.page_deadline_secs)
    }

    pub fn mlflow_cache(&self) -> Duration {
        Duration::from_millis(self.mlflow_cache_ms)
    }

    /// Checks what clap's types cannot.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.mlflow_uri.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "SLIPWAY_MLFLOW_URI must be http:// or https://, not {}",
                self.mlflow_uri
            )));
        }
        if self
            .webhook_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < 16)
        {
            return Err(Error::Config(
                "SLIPWAY_WEBHOOK_SECRET must be at least 16 characters".into(),
            ));
        }
        if let Some(url) = &self.external_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(Error::Config(format!(
                "SLIPWAY_EXTERNAL_URL must be http:// or https://, not {url}"
            )));
        }
        if let Some(url) = &self.prometheus_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(Error::Config(format!(
                "SLIPWAY_PROMETHEUS_URL must be http:// or https://, not {}",
                without_credentials(url)
            )));
        }
        for (name, label) in [
            (
                "SLIPWAY_PROMETHEUS_DEPLOYMENT_LABEL",
                &self.prometheus_deployment_label,
            ),
            (
                "SLIPWAY_PROMETHEUS_NAMESPACE_LABEL",
                &self.prometheus_namespace_label,
            ),
        ] {
            let mut characters = label.chars();
            let valid = characters
                .next()
                .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                && characters.all(|rest| rest.is_ascii_alphanumeric() || rest == '_');
            if !valid {
                return Err(Error::Config(format!(
                    "{name} must be a Prometheus label name (letters, digits, _), not {label:?}"
                )));
            }
        }
        let database_url = self.database_url();
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(Error::Config(
                "SLIPWAY_DATABASE_URL must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        Ok(())
    }
}

fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    // These fail only for URLs that cannot carry credentials anyway.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

fn credentials_in(url: &Url) -> MlflowAuth {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    match url.password() {
        Some(password) if !url.username().is_empty() => MlflowAuth::Basic {
            username: decode(url.username()),
            password: decode(password),
        },
        _ => MlflowAuth::None,
    }
}

// Written out so that secrets (passwords, tokens, the database URL, MLflow
// URIs with credentials) cannot appear: a new field is left out until
// someone decides it is safe to show.
/// The settings that are secrets, as (argument id, flag, variable). Each
/// may come from its variable, from a file (`<VARIABLE>_FILE` or
/// `<flag>-file`: a mounted Secret, say), or from its flag — which every
/// local user can read in `ps`, and is warned against.
pub const SECRETS: [(&str, &str, &str); 8] = [
    (
        "mlflow_password",
        "--mlflow-password",
        "SLIPWAY_MLFLOW_PASSWORD",
    ),
    ("mlflow_token", "--mlflow-token", "SLIPWAY_MLFLOW_TOKEN"),
    ("database_url", "--database-url", "SLIPWAY_DATABASE_URL"),
    (
        "job_mlflow_password",
        "--job-mlflow-password",
        "SLIPWAY_JOB_MLFLOW_PASSWORD",
    ),
    (
        "job_mlflow_token",
        "--job-mlflow-token",
        "SLIPWAY_JOB_MLFLOW_TOKEN",
    ),
    (
        "webhook_secret",
        "--webhook-secret",
        "SLIPWAY_WEBHOOK_SECRET",
    ),
    (
        "git_webhook_secret",
        "--git-webhook-secret",
        "SLIPWAY_GIT_WEBHOOK_SECRET",
    ),
    (
        "oidc_client_secret",
        "--oidc-client-secret",
        "SLIPWAY_OIDC_CLIENT_SECRET",
    ),
];

/// Secrets read from files: each one's variable and value.
pub type SecretValues = Vec<(&'static str, String)>;

/// Secrets given as files: the arguments without their `--…-file` flags,
/// and each secret's variable with the file's content (its last line
/// ending dropped), for the caller to set before the arguments are parsed.
pub fn secrets_from_files(
    args: Vec<std::ffi::OsString>,
    variable: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> std::result::Result<(Vec<std::ffi::OsString>, SecretValues), String> {
    let mut kept = Vec::new();
    let mut files: Vec<(&'static str, std::path::PathBuf)> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        let named = SECRETS.iter().find_map(|(_, flag, env)| {
            let file_flag = format!("{flag}-file");
            if text == file_flag {
                Some((*env, None))
            } else {
                text.strip_prefix(&format!("{file_flag}="))
                    .map(|path| (*env, Some(std::path::PathBuf::from(path))))
            }
        });
        match named {
            Some((env, Some(path))) => files.push((env, path)),
            Some((env, None)) => {
                let path = args.next().ok_or_else(|| format!("{text} needs a file"))?;
                files.push((env, path.into()));
            }
            None => kept.push(arg),
        }
    }
    for (_, _, env) in SECRETS {
        if let Some(path) = variable(&format!("{env}_FILE")) {
            files.push((env, path.into()));
        }
    }
    let mut values = Vec::new();
    for (env, path) in files {
        if variable(env).is_some() || values.iter().any(|(set, _)| *set == env) {
            return Err(format!(
                "{env} is given twice (as itself and as a file, or as two files)"
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|err| format!("{env}: cannot read {}: {err}", path.display()))?;
        let value = text
            .strip_suffix('\n')
            .map(|text| text.strip_suffix('\r').unwrap_or(text))
            .unwrap_or(&text);
        values.push((env, value.to_string()));
    }
    Ok((kept, values))
}

/// The secrets given as flags, which every local user can read in `ps`.
pub fn secrets_on_command_line(matches: &clap::ArgMatches) -> Vec<(&'static str, &'static str)> {
    SECRETS
        .iter()
        .filter(|(id, _, _)| {
            matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|(_, flag, env)| (*flag, *env))
        .collect()
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("gateway_listen", &self.gateway_listen)
            .field(
                "prometheus_url",
                &self.prometheus_url.as_ref().map(without_credentials),
            )
            .field("mlflow_uri", &self.mlflow_base().as_str())
            .field("mlflow_username", &self.mlflow_username)
            .field("data_dir", &self.data_dir)
            .field("executor", &self.executor)
            .field("catalog", &self.catalog)
            .field("job_tracking_uri", &self.job_tracking_uri())
            .field("kube_namespace", &self.kube_namespace)
            .field("external_url", &self.external_url.as_ref().map(Url::as_str))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_flags_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        let args: Vec<std::ffi::OsString> = [
            "slipway",
            "--webhook-secret-file",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let oidc_file = file.to_string_lossy().into_owned();
        let (kept, values) = secrets_from_files(args, |name| {
            (name == "SLIPWAY_OIDC_CLIENT_SECRET_FILE").then(|| oidc_file.clone().into())
        })
        .unwrap();
        assert_eq!(kept, ["slipway", "--listen", "127.0.0.1:1"]);
        assert_eq!(
            values,
            [
                ("SLIPWAY_WEBHOOK_SECRET", "s3cret".to_string()),
                ("SLIPWAY_OIDC_CLIENT_SECRET", "s3cret".to_string())
            ]
        );
        // Given twice: refused, not guessed.
        let twice = secrets_from_files(vec!["slipway".into()], |name| {
            matches!(
                name,
                "SLIPWAY_WEBHOOK_SECRET" | "SLIPWAY_WEBHOOK_SECRET_FILE"
            )
            .then(|| oidc_file.clone().into())
        });
        assert!(twice.unwrap_err().contains("given twice"));

        let matches = <crate::cli::Cli as clap::CommandFactory>::command()
            .try_get_matches_from([
                "slipway",
                "--webhook-secret",
                "visible-in-ps",
                "--listen",
                "127.0.0.1:1",
            ])
            .unwrap();
        assert_eq!(
            secrets_on_command_line(&matches),
            [("--webhook-secret", "SLIPWAY_WEBHOOK_SECRET")]
        );
    }

    fn parse(args: &[&str]) -> std::result::Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("slipway").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_describe_the_embedded_setup() {
        let config = parse(&["--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(config.mlflow_uri.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(config.database_url(), "sqlite:///tmp/x/slipway.db?mode=rwc");
        assert_eq!(config.executor, Executor::Local);
        assert_eq!(config.mlflow_auth(), MlflowAuth::None);
        config.validate().unwrap();
    }

    #[test]
    fn basic_auth_needs_both_halves_and_excludes_a_token() {
        assert!(parse(&["--mlflow-username", "u"]).is_err());
        assert!(
            parse(&[
                "--mlflow-username",
                "u",
                "--mlflow-password",
                "p",
                "--mlflow-token",
                "t"
            ])
            .is_err()
        );
        let config = parse(&["--mlflow-username", "u", "--mlflow-password", "p"]).unwrap();
        assert_eq!(
            config.mlflow_auth(),
            MlflowAuth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let config = parse(&["--mlflow-token", "t"]).unwrap();
        assert_eq!(config.mlflow_auth(), MlflowAuth::Bearer("t".into()));
    }

    #[test]
    fn credentials_in_the_mlflow_uri_become_basic_auth_and_leave_the_uri() {
        let config = parse(&[
            "--mlflow-uri",
            "http://svc:p%40ss-word@mlflow:5000/",
            "--database-url",
            "postgres://slipway:db-password@db/slipway",
            "--webhook-secret",
            "a-webhook-secret-of-length",
        ])
        .unwrap();
        assert_eq!(
            config.mlflow_auth(),
            MlflowAuth::Basic {
                username: "svc".into(),
                password: "p@ss-word".into()
            }
        );
        assert_eq!(config.mlflow_base().as_str(), "http://mlflow:5000/");
        assert_eq!(config.job_tracking_uri(), "http://mlflow:5000");
        // Slipway's credentials are not the training code's.
        assert_eq!(config.child_env().get("MLFLOW_TRACKING_PASSWORD"), None);
        let shown = format!("{config:?}");
        for secret in ["ss-word", "db-password", "a-webhook-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--mlflow-timeout-secs", "0"]).is_err());
        assert!(parse(&["--executor", "slurm"]).is_err());
        let err = parse(&["--mlflow-uri", "ftp://x"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("http"), "{err}");
        let err = parse(&["--database-url", "mysql://x"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("sqlite"), "{err}");
    }
}
