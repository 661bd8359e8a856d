//! Child processes in their own process group (local trainings, local model
//! servers), so stopping one stops everything it started.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// SIGTERM to the group; SIGKILL to whatever is left after `grace`.
pub async fn terminate_group(pgid: i32, grace: Duration) {
    let group = Pid::from_raw(pgid);
    if killpg(group, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        // Signal 0 only asks whether any member is still alive.
        if killpg(group, None).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// SIGKILL to the group at once: for `Drop`, where nothing can wait.
pub fn kill_group_now(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}

/// Whether any process of the group is still alive.
pub fn group_alive(pgid: i32) -> bool {
    // Signal 0 only asks.
    killpg(Pid::from_raw(pgid), None).is_ok()
}

/// A port nothing listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `command` in a process group of its own, stdout and stderr into
/// `log` (created), stdin closed, recorded in `children`. Returns the child
/// and its group id.
pub fn spawn_logged(
    command: &mut tokio::process::Command,
    log: &Path,
    children: &Children,
) -> std::io::Result<(tokio::process::Child, i32)> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    let pgid = child.id().unwrap_or_default() as i32;
    children.record(pgid);
    Ok((child, pgid))
}

/// The process groups Slipway started, one file per group in its data
/// directory (they are this machine's processes, whatever database several
/// replicas share). A Slipway killed with SIGKILL cannot stop its children;
/// the next one to start on the same data directory does, before it starts
/// any of its own, except the model servers that were serving: those it may
/// adopt. A group is known by its leader's pid and start time, so a reused
/// pid is never taken for it.
#[derive(Debug, Clone)]
pub struct Children {
    dir: std::path::PathBuf,
}

impl Children {
    pub fn open(dir: std::path::PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Records the group as serving `served` as well, so that a next
    /// Slipway, after a kill, may adopt it instead of starting it again.
    pub fn mark_serving(&self, pgid: i32, served: &ServedModel) {
        let path = self.dir.join(pgid.to_string());
        let Ok(recorded) = std::fs::read_to_string(&path) else {
            return; // Forgotten: it is being stopped.
        };
        let started = recorded.lines().next().unwrap_or_default();
        let line = serde_json::to_string(served).expect("plain fields");
        if let Err(err) = std::fs::write(&path, format!("{started}\n{line}\n")) {
            tracing::warn!(pgid, error = %err, "recording what a model server serves");
        }
    }

    fn record(&self, pgid: i32) {
        let Some(started) = start_time(pgid) else {
            return; // Gone already.
        };
        if let Err(err) = std::fs::write(self.dir.join(pgid.to_string()), started.to_string()) {
            tracing::warn!(pgid, error = %err, "recording a child process group");
        }
    }

    /// The group has ended (or is being stopped by its owner).
    pub fn forget(&self, pgid: i32) {
        let _ = std::fs::remove_file(self.dir.join(pgid.to_string()));
    }

    /// What a Slipway that was killed left running: model servers that were
    /// serving are returned, to be adopted (their records stay); every
    /// other group (trainings, servers still starting) is stopped. Records
    /// of groups that are gone are dropped.
    pub async fn stop_leftovers(&self) -> std::io::Result<Leftovers> {
        let mut leftovers = Leftovers::default();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let recorded = std::fs::read_to_string(&path).unwrap_or_default();
            let mut lines = recorded.lines();
            let started = lines.next().unwrap_or_default().trim();
            let served = lines
                .next()
                .and_then(|line| serde_json::from_str::<ServedModel>(line).ok());
            let pgid = path
                .file_name()
                .and_then(|name| name.to_str()?.parse::<i32>().ok());
            let Some(pgid) =
                pgid.filter(|pgid| start_time(*pgid).is_some_and(|now| now.to_string() == started))
            else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            match served {
                Some(served) => leftovers.serving.push((pgid, served)),
                None => {
                    tracing::warn!(
                        pgid,
                        "stopping a process group a previous Slipway left running"
                    );
                    terminate_group(pgid, Duration::from_secs(5)).await;
                    leftovers.stopped += 1;
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(leftovers)
    }
}

/// What [`Children::stop_leftovers`] found.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Groups stopped.
    pub stopped: usize,
    /// Model servers left serving, by process group.
    pub serving: Vec<(i32, ServedModel)>,
}

/// What a model server serves, recorded with its group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServedModel {
    pub model: String,
    pub version: String,
    pub port: u16,
}

/// A process's start time (clock ticks after boot), from /proc.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses (which may hold anything):
    // state is field 3, start time field 22.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Variables a child inherits from Slipway's own environment. Nothing else
/// of it (the database URL, the webhook secret, Slipway's MLflow password)
/// reaches training code or model servers.
const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "LD_LIBRARY_PATH",
];

/// The user local trainings and model servers run as, where Slipway runs
/// as root: `name` (from /etc/passwd) or `uid[:gid]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildUser {
    pub uid: u32,
    pub gid: u32,
}

impl std::str::FromStr for ChildUser {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let user = if text.starts_with(|c: char| c.is_ascii_digit()) {
            let (uid, gid) = text.split_once(':').unwrap_or((text, text));
            let id = |part: &str| {
                part.parse::<u32>()
                    .map_err(|_| format!("{text:?} is neither a user name nor uid[:gid]"))
            };
            ChildUser {
                uid: id(uid)?,
                gid: id(gid)?,
            }
        } else {
            let passwd = std::fs::read_to_string("/etc/passwd")
                .map_err(|err| format!("reading /etc/passwd for user {text:?}: {err}"))?;
            passwd
                .lines()
                .map(|line| line.split(':').collect::<Vec<_>>())
                .find(|fields| fields.len() > 3 && fields[0] == text)
                .and_then(|fields| {
                    Some(ChildUser {
                        uid: fields[2].parse().ok()?,
                        gid: fields[3].parse().ok()?,
                    })
                })
                .ok_or_else(|| format!("no user {text:?} in /etc/passwd"))?
        };
        if user.uid == 0 || user.gid == 0 {
            return Err(format!("{text:?} is root: children would run as root"));
        }
        Ok(user)
    }
}

/// Makes `path` and everything under it `user`'s (links themselves, never
/// what they point to).
pub fn give_to(path: &Path, user: ChildUser) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give_to(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// The whole environment of a child process: the allow-list above (and
/// what the operator adds to it), MLflow's address, and the MLflow
/// credentials meant for training code and model servers; and the user it
/// runs as, when not Slipway's own.
#[derive(Clone)]
pub struct ChildEnv {
    vars: Vec<(String, String)>,
    user: Option<ChildUser>,
}

impl ChildEnv {
    pub fn new(
        tracking_uri: &str,
        credentials: &crate::adapters::mlflow::MlflowAuth,
        also_inherit: &[String],
    ) -> Self {
        use crate::adapters::mlflow::MlflowAuth;
        let mut vars: Vec<(String, String)> = INHERITED
            .iter()
            .map(|name| name.to_string())
            .chain(also_inherit.iter().cloned())
            .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
            .collect();
        vars.push(("MLFLOW_TRACKING_URI".into(), tracking_uri.into()));
        match credentials {
            MlflowAuth::None => {}
            MlflowAuth::Basic { username, password } => {
                vars.push(("MLFLOW_TRACKING_USERNAME".into(), username.clone()));
                vars.push(("MLFLOW_TRACKING_PASSWORD".into(), password.clone()));
            }
            MlflowAuth::Bearer(token) => {
                vars.push(("MLFLOW_TRACKING_TOKEN".into(), token.clone()));
            }
        }
        Self { vars, user: None }
    }

    /// Children run as `user` (their supplementary groups dropped), with
    /// `home`, a directory of theirs, as HOME.
    pub fn running_as(mut self, user: ChildUser, home: &Path) -> Self {
        self.vars
            .retain(|(name, _)| !["HOME", "USER", "LOGNAME"].contains(&name.as_str()));
        self.vars.push(("HOME".into(), home.display().to_string()));
        self.user = Some(user);
        self
    }

    /// The user children run as, when not Slipway's own.
    pub fn user(&self) -> Option<ChildUser> {
        self.user
    }

    pub fn tracking_uri(&self) -> &str {
        self.get("MLFLOW_TRACKING_URI").unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Replaces the command's whole environment with this one, and its
    /// user with the children's (the standard library drops root's
    /// supplementary groups along with it).
    pub fn apply<'a>(
        &self,
        command: &'a mut tokio::process::Command,
    ) -> &'a mut tokio::process::Command {
        if let Some(user) = self.user {
            command.uid(user.uid).gid(user.gid);
        }
        command.env_clear().envs(self.vars.iter().cloned())
    }
}

// Names only: values include credentials.
impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(name, _)| name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::mlflow::MlflowAuth;

    #[test]
    fn a_child_user_is_a_name_or_ids_never_root() {
        let parse = |text: &str| text.parse::<ChildUser>();
        assert_eq!(
            parse("65534"),
            Ok(ChildUser {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(
            parse("1001:1002"),
            Ok(ChildUser {
                uid: 1001,
                gid: 1002
            })
        );
        // Every Linux has `nobody` in /etc/passwd.
        assert!(parse("nobody").unwrap().uid > 0);
        assert!(parse("root").unwrap_err().contains("is root"));
        assert!(parse("0:5").unwrap_err().contains("is root"));
        assert!(parse("5:0").unwrap_err().contains("is root"));
        assert!(parse("12x").is_err());
        assert!(parse("no-such-user-here").unwrap_err().contains("no user"));
    }

    #[test]
    fn a_child_gets_the_allow_list_and_mlflow_only() {
        let env = ChildEnv::new(
            "http://mlflow:5000",
            &MlflowAuth::Basic {
                username: "trainer-bot".into(),
                password: "s3cret-for-jobs".into(),
            },
            &["CARGO".to_string()],
        );
        assert_eq!(env.tracking_uri(), "http://mlflow:5000");
        assert_eq!(env.get("MLFLOW_TRACKING_PASSWORD"), Some("s3cret-for-jobs"));
        assert!(env.get("PATH").is_some());
        // cargo sets CARGO for tests: an operator's addition is inherited.
        assert!(env.get("CARGO").is_some());
        assert!(env.get("CARGO_PKG_NAME").is_none(), "nothing off the list");
        assert!(!format!("{env:?}").contains("s3cret"), "{env:?}");
    }
}
