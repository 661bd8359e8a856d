//! Git, for projects that come from a repository: the branch's newest
//! commit, a shallow copy of one commit. `git` runs without a shell, with
//! none of Slipway's environment but `PATH` and `HOME` (its own settings
//! and credential helpers), never prompting, and is stopped after a deadline.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// The longest a fetch may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// A full commit id, as a push names it (git fetches by full ids only).
pub fn is_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A repository's URL without the user and token some carry in it.
pub fn without_credentials(remote: &str) -> String {
    match url::Url::parse(remote) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => remote.to_string(),
    }
}

fn command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .env_clear()
        .envs(
            ["PATH", "HOME"]
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (name, value))),
        )
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs git with `args`; its standard output.
async fn git(args: &[&str], directory: Option<&Path>, what: &str) -> Result<String> {
    let mut command = command();
    if let Some(directory) = directory {
        command.arg("-C").arg(directory);
    }
    command.args(args);
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .map_err(|_| {
            Error::Unavailable(format!(
                "{what}: git did not finish within {} s",
                DEADLINE.as_secs()
            ))
        })?
        .map_err(|err| Error::Unavailable(format!("{what}: cannot run git ({err})")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Unavailable(format!(
            "{what}: git says {}",
            said.trim().lines().last().unwrap_or("nothing")
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The newest commit of `branch` at `url`.
pub async fn branch_head(url: &str, branch: &str) -> Result<String> {
    let what = format!("reading branch {branch} of {}", without_credentials(url));
    let reference = format!("refs/heads/{branch}");
    let listed = git(&["ls-remote", "--", url, &reference], None, &what).await?;
    listed
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(_, name)| *name == reference)
        .map(|(commit, _)| commit.to_string())
        .filter(|commit| is_commit(commit))
        .ok_or_else(|| Error::Unavailable(format!("{what}: there is no such branch")))
}

/// Exactly `commit` of `url`, alone (no history), in the new directory `into`.
pub async fn check_out(url: &str, commit: &str, into: &Path) -> Result<()> {
    if !is_commit(commit) {
        return Err(Error::invalid(format!("{commit:?} is not a commit id")));
    }
    let what = format!("fetching {commit} of {}", without_credentials(url));
    tokio::fs::create_dir_all(into).await?;
    git(&["init", "--quiet"], Some(into), &what).await?;
    git(
        &["fetch", "--quiet", "--depth", "1", "--", url, commit],
        Some(into),
        &what,
    )
    .await?;
    git(&["checkout", "--quiet", "FETCH_HEAD"], Some(into), &what).await?;
    Ok(())
}

/// The branch's newest commit, checked out alone into `into` (replaced);
/// its commit id. Blocking: for start-up, where the catalog is read.
pub fn check_out_branch_blocking(url: &str, branch: &str, into: &Path) -> Result<String> {
    if into.exists() {
        std::fs::remove_dir_all(into)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let commit = branch_head(url, branch).await?;
        check_out(url, &commit, into).await?;
        Ok(commit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_hex_of_git_lengths() {
        assert!(is_commit("3e236643e0c10c6bbb0336f319b20a2cd7bfddc6"));
        assert!(!is_commit("3e23664"));
        assert!(!is_commit("--upload-pack=x"));
        assert!(!is_commit("main"));
    }

    #[test]
    fn credentials_are_left_out_of_urls() {
        assert_eq!(
            without_credentials("https://bot:s3cret@git.example/team/churn.git"),
            "https://git.example/team/churn.git"
        );
        assert_eq!(
            without_credentials("file:///srv/churn.git"),
            "file:///srv/churn.git"
        );
        assert_eq!(
            without_credentials("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
    }
}

/// A push, as GitHub, Gitea and GitLab deliver it, once its signature
/// holds: which repository (every URL the payload names it by), which
/// branch, which commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub repository_urls: Vec<String>,
    pub branch: String,
    pub commit: String,
    pub pusher: String,
}

/// Why a push delivery was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRejected {
    /// No signature or token, or a wrong one (401).
    Unsigned(&'static str),
    /// Signed, but not a push to a branch (a ping, a tag, a deletion): 200, nothing done.
    NotABranchPush(String),
    /// Signed, but not JSON that reads as a push (400).
    Unreadable(String),
}

/// Checks a push delivery against the shared secret: GitHub's and Gitea's
/// `X-Hub-Signature-256` (HMAC-SHA256 of the body), or GitLab's
/// `X-Gitlab-Token` (the secret itself); both compared in constant time.
pub fn verify_push(
    headers: &http::HeaderMap,
    body: &[u8],
    secret: &str,
) -> std::result::Result<Push, PushRejected> {
    use hmac::{Hmac, Mac};
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(signature) = header("x-hub-signature-256") {
        let hex = signature
            .strip_prefix("sha256=")
            .ok_or(PushRejected::Unsigned("the signature is not sha256=…"))?;
        let expected = decode_hex(hex).ok_or(PushRejected::Unsigned("the signature is not hex"))?;
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body);
        mac.verify_slice(&expected)
            .map_err(|_| PushRejected::Unsigned("the signature does not match"))?;
    } else if let Some(token) = header("x-gitlab-token") {
        use sha2::Digest;
        // Equal-length digests compared in full: the time says nothing of the token.
        let digest = |text: &str| sha2::Sha256::digest(text.as_bytes());
        let (given, wanted) = (digest(token), digest(secret));
        let differing = given
            .iter()
            .zip(wanted.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differing != 0 {
            return Err(PushRejected::Unsigned("the token does not match"));
        }
    } else {
        return Err(PushRejected::Unsigned(
            "neither X-Hub-Signature-256 nor X-Gitlab-Token",
        ));
    }
    let event = header("x-github-event")
        .or_else(|| header("x-gitea-event"))
        .or_else(|| header("x-gitlab-event"))
        .unwrap_or_default();
    if event != "push" && event != "Push Hook" {
        return Err(PushRejected::NotABranchPush(format!("a {event:?} event")));
    }
    read_push(body)
}

fn read_push(body: &[u8]) -> std::result::Result<Push, PushRejected> {
    let payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| PushRejected::Unreadable(err.to_string()))?;
    let text = |value: &serde_json::Value| value.as_str().map(str::to_string);
    let reference = text(&payload["ref"]).unwrap_or_default();
    let branch = reference
        .strip_prefix("refs/heads/")
        .ok_or_else(|| PushRejected::NotABranchPush(format!("a push to {reference:?}")))?
        .to_string();
    let commit = text(&payload["after"]).unwrap_or_default();
    if commit.bytes().all(|b| b == b'0') {
        return Err(PushRejected::NotABranchPush(format!(
            "branch {branch} deleted"
        )));
    }
    if !is_commit(&commit) {
        return Err(PushRejected::Unreadable(format!(
            "{commit:?} is not a commit id"
        )));
    }
    // GitHub and Gitea say `repository`, GitLab `project` (and `repository`).
    let mut repository_urls = Vec::new();
    for owner in ["repository", "project"] {
        for field in [
            "clone_url",
            "git_http_url",
            "html_url",
            "ssh_url",
            "git_ssh_url",
            "url",
            "web_url",
        ] {
            if let Some(url) = text(&payload[owner][field]) {
                repository_urls.push(url);
            }
        }
    }
    let pusher = text(&payload["pusher"]["name"])
        .or_else(|| text(&payload["pusher"]["login"]))
        .or_else(|| text(&payload["user_username"]))
        .unwrap_or_default();
    Ok(Push {
        repository_urls,
        branch,
        commit: commit.to_ascii_lowercase(),
        pusher,
    })
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect()
}

/// Whether two repository URLs name the same repository: compared without
/// credentials, a trailing slash or `.git`, and the scheme's case.
pub fn same_repository(a: &str, b: &str) -> bool {
    let plain = |url: &str| {
        without_credentials(url)
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .to_ascii_lowercase()
    };
    plain(a) == plain(b)
}

#[cfg(test)]
mod push_tests {
    use super::*;

    const COMMIT: &str = "3e236643e0c10c6bbb0336f319b20a2cd7bfddc6";

    fn body(reference: &str, after: &str) -> Vec<u8> {
        serde_json::json!({
            "ref": reference,
            "after": after,
            "repository": {"clone_url": "https://git.example/team/churn.git"},
            "pusher": {"name": "alice"},
        })
        .to_string()
        .into_bytes()
    }

    fn github(body: &[u8], secret: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-github-event", "push".parse().unwrap());
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        headers.insert(
            "x-hub-signature-256",
            format!("sha256={hex}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn a_signed_push_reads_and_a_forged_one_does_not() {
        let push = body("refs/heads/main", COMMIT);
        let read = verify_push(&github(&push, "s3cret"), &push, "s3cret").unwrap();
        assert_eq!(read.branch, "main");
        assert_eq!(read.commit, COMMIT);
        assert_eq!(read.pusher, "alice");
        assert!(
            read.repository_urls
                .iter()
                .any(|url| same_repository(url, "https://git.example/team/churn"))
        );
        assert_eq!(
            verify_push(&github(&push, "guess"), &push, "s3cret"),
            Err(PushRejected::Unsigned("the signature does not match"))
        );
        let mut tampered = push.clone();
        tampered.extend_from_slice(b" ");
        assert!(verify_push(&github(&push, "s3cret"), &tampered, "s3cret").is_err());
        assert!(verify_push(&http::HeaderMap::new(), &push, "s3cret").is_err());
    }

    #[test]
    fn gitlab_sends_its_token_and_tags_and_deletions_launch_nothing() {
        let push = body("refs/heads/main", COMMIT);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-gitlab-event", "Push Hook".parse().unwrap());
        headers.insert("x-gitlab-token", "s3cret".parse().unwrap());
        assert!(verify_push(&headers, &push, "s3cret").is_ok());
        headers.insert("x-gitlab-token", "s3crex".parse().unwrap());
        assert!(matches!(
            verify_push(&headers, &push, "s3cret"),
            Err(PushRejected::Unsigned(_))
        ));
        let tag = body("refs/tags/v1", COMMIT);
        assert!(matches!(
            verify_push(&github(&tag, "k"), &tag, "k"),
            Err(PushRejected::NotABranchPush(_))
        ));
        let deleted = body("refs/heads/main", &"0".repeat(40));
        assert!(matches!(
            verify_push(&github(&deleted, "k"), &deleted, "k"),
            Err(PushRejected::NotABranchPush(_))
        ));
    }
}
