//! The cluster connection: whose credentials, which Kubernetes, and what that
//! version can do. Read once at start-up, like the configuration.

use std::path::Path;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};

/// Slipway's field manager in server-side apply.
pub const FIELD_MANAGER: &str = "slipway";
/// The label on everything Slipway creates in a cluster.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "slipway");

/// The oldest Kubernetes Slipway supports; `make test` runs against it.
pub const OLDEST_SUPPORTED: (u32, u32) = (1, 20);
/// `fieldValidation=Strict` is honoured from here on; older servers drop
/// unknown fields of a custom resource without a word.
pub const STRICT_FIELD_VALIDATION: (u32, u32) = (1, 25);
/// `ttlSecondsAfterFinished` on Jobs is on by default from here on (beta);
/// older servers drop the field and keep finished Jobs until deleted.
pub const JOB_TTL: (u32, u32) = (1, 21);

/// Credentials from `--kubeconfig`, else from `$KUBECONFIG`,
/// `~/.kube/config` or the pod's service account.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|err| Error::Config(format!("kubeconfig {}: {err}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|err| Error::Config(format!("kubeconfig {}: {err}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|err| Error::Config(format!("no cluster credentials found: {err}")))?,
    };
    Ok(Client::try_from(config)?)
}

/// Asks the API server its version: refuses one older than Slipway
/// supports, and warns where a feature Slipway relies on is missing. An
/// unreachable server is only a warning: Slipway starts anyway and shows
/// the cluster's errors where they matter.
pub async fn check_version(client: &Client) -> Result<()> {
    let info = match client.apiserver_version().await {
        Ok(info) => info,
        Err(err) => {
            tracing::warn!(error = %err, "cannot ask the Kubernetes API server its version");
            return Ok(());
        }
    };
    let version = parse_version(&info.major, &info.minor).ok_or_else(|| {
        Error::Config(format!(
            "the Kubernetes API server reports an unreadable version {:?}",
            info.git_version
        ))
    })?;
    for warning in compatibility(version)? {
        tracing::warn!(kubernetes = %info.git_version, "{warning}");
    }
    tracing::info!(kubernetes = %info.git_version, "connected to the cluster");
    Ok(())
}

/// What a server of this version lacks, in words for the log; an error
/// below the oldest supported version.
pub fn compatibility(version: (u32, u32)) -> Result<Vec<String>> {
    if version < OLDEST_SUPPORTED {
        return Err(Error::Config(format!(
            "Kubernetes {}.{} is older than Slipway supports ({}.{} and newer)",
            version.0, version.1, OLDEST_SUPPORTED.0, OLDEST_SUPPORTED.1
        )));
    }
    let mut missing = Vec::new();
    if version < STRICT_FIELD_VALIDATION {
        missing.push(format!(
            "Kubernetes {}.{} ignores strict field validation (1.25+): a field the serving \
             CRD does not know is dropped instead of refused",
            version.0, version.1
        ));
    }
    if version < JOB_TTL {
        missing.push(format!(
            "Kubernetes {}.{} ignores ttlSecondsAfterFinished (on by default from 1.21): \
             finished training Jobs stay until someone deletes them",
            version.0, version.1
        ));
    }
    Ok(missing)
}

/// `major`/`minor` as the version endpoint gives them (`"20+"` on some
/// distributions).
pub fn parse_version(major: &str, minor: &str) -> Option<(u32, u32)> {
    let digits = |text: &str| -> Option<u32> {
        let end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        text[..end].parse().ok()
    };
    Some((digits(major)?, digits(minor)?))
}

/// A Kubernetes failure in words a user can act on. `doing` completes "to
/// …" ("create the training Job", "apply the SeldonDeployment iris").
/// Logged too: a refusal in a background pass may reach no page at all.
pub fn explain(err: kube::Error, doing: &str, namespace: &str) -> Error {
    let explained = match err {
        kube::Error::Api(status) => {
            let said = &status.message;
            match (status.code, status.reason.as_str()) {
                (401, _) => format!("Kubernetes refused Slipway's credentials to {doing}: {said}"),
                (403, _) => format!(
                    "Slipway's service account is not allowed to {doing} in namespace \
                     {namespace}: {said} (see deploy/base/rbac.yaml)"
                ),
                // A path under an API group the server does not serve.
                (404, _) if said.contains("could not find the requested resource") => format!(
                    "Kubernetes does not serve the API needed to {doing}: is its CRD installed? ({said})"
                ),
                (404, _) => format!(
                    "Kubernetes could not find what it needed to {doing} in namespace {namespace}: {said}"
                ),
                (409, "AlreadyExists") => format!("could not {doing}, it already exists: {said}"),
                (409, _) => format!(
                    "could not {doing}: another field manager holds fields Slipway sets: {said}"
                ),
                (400 | 422, _) => format!("Kubernetes refused to {doing} as invalid: {said}"),
                (code, _) => format!("Kubernetes answered {code} when asked to {doing}: {said}"),
            }
        }
        other => format!("cannot reach Kubernetes to {doing}: {other}"),
    };
    tracing::warn!(%namespace, error = %explained, "Kubernetes refused or failed");
    Error::Unavailable(explained)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_the_api_server_writes_them() {
        assert_eq!(parse_version("1", "20"), Some((1, 20)));
        assert_eq!(parse_version("1", "27+"), Some((1, 27)));
        assert_eq!(parse_version("", "20"), None);
    }

    #[test]
    fn old_servers_are_refused_and_missing_features_named() {
        let err = compatibility((1, 19)).unwrap_err().to_string();
        assert!(
            err.contains("1.19 is older than Slipway supports (1.20"),
            "{err}"
        );
        let on_1_20 = compatibility((1, 20)).unwrap();
        assert_eq!(on_1_20.len(), 2, "{on_1_20:?}");
        assert!(on_1_20[0].contains("strict field validation"));
        assert!(on_1_20[1].contains("ttlSecondsAfterFinished"));
        assert_eq!(compatibility((1, 24)).unwrap().len(), 1);
        assert!(compatibility((1, 25)).unwrap().is_empty());
    }
}
