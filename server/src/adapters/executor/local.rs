//! Training as processes on this machine (the embedded default). Each launch
//! runs in its own process group with its output in a log file; cancel
//! signals the whole group; the exit code decides the status.

use crate::adapters::process::{ChildEnv, Children};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::model::LaunchStatus;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::{Executor, ExecutorEvent, LogStream, StatusReport, StatusSink, TrainingJob};
use crate::catalog::mlproject::PythonEnv;

/// How long a cancelled training gets to exit after SIGTERM before SIGKILL.
const TERMINATION_GRACE: Duration = Duration::from_secs(5);
const LOG_POLL: Duration = Duration::from_millis(200);

pub struct LocalExecutor {
    log_dir: PathBuf,
    env: ChildEnv,
    sink: StatusSink,
    /// Process group of each running launch, and whether it has ended.
    running: Arc<Mutex<HashMap<String, Running>>>,
    children: Children,
}

#[derive(Clone)]
struct Running {
    pgid: i32,
    ended: watch::Receiver<bool>,
    /// Set by cancel, so the exit is not reported as a failure.
    cancelled: Arc<AtomicBool>,
}

impl LocalExecutor {
    pub fn new(
        log_dir: PathBuf,
        env: ChildEnv,
        sink: StatusSink,
        children: Children,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&log_dir)?;
        // Trainings are children of the Slipway that started them: a new one
        // has none yet, so whatever an earlier one left unfinished is over.
        let _ = sink.send(ExecutorEvent::Listed {
            present: Default::default(),
            reason: "Slipway restarted while this training ran".into(),
        });
        Ok(Self {
            log_dir,
            env,
            sink,
            running: Arc::default(),
            children,
        })
    }

    fn log_path(&self, launch_id: &str) -> PathBuf {
        self.log_dir.join(format!("{launch_id}.log"))
    }

    /// `argv` run inside the virtualenv `python_env` describes, built first
    /// if no launch has built it yet (in the training's own process group,
    /// its output in the training's log, cancelled with it). One directory
    /// per content — the spec, and the requirements files it names — so a
    /// changed environment is a new one.
    fn in_python_env(
        &self,
        python_env: &PythonEnv,
        directory: &std::path::Path,
        argv: &[String],
    ) -> Vec<String> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(serde_json::to_vec(python_env).expect("serialisable"));
        for dependency in &python_env.dependencies {
            let file = dependency
                .strip_prefix("-r")
                .or_else(|| dependency.strip_prefix("--requirement"))
                .map(|file| file.trim_start_matches('=').trim());
            if let Some(file) = file {
                hasher.update(std::fs::read(directory.join(file)).unwrap_or_default());
            }
        }
        let name: String = hasher.finalize()[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        // Absolute: the training starts in the project's directory.
        let envs = self
            .log_dir
            .parent()
            .unwrap_or(&self.log_dir)
            .join("python-envs");
        let env_dir = std::path::absolute(&envs).unwrap_or(envs).join(name);
        let spec = serde_json::json!({
            "env_dir": env_dir,
            "python": python_env.python,
            "build_dependencies": python_env.build_dependencies,
            "dependencies": python_env.dependencies,
        });
        let mut wrapped = vec![
            "python".to_string(),
            "-c".to_string(),
            PYTHON_ENV_BOOTSTRAP.to_string(),
            spec.to_string(),
        ];
        wrapped.extend(argv.iter().cloned());
        wrapped
    }
}

/// Fixed code, never built from input: the spec and argv are its arguments.
const PYTHON_ENV_BOOTSTRAP: &str = include_str!("python_env.py");

/// The NVIDIA GPUs this machine has (`/dev/nvidia0`, `/dev/nvidia1`, …).
pub fn gpus_present() -> u32 {
    std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| {
                    entry
                        .file_name()
                        .to_str()
                        .and_then(|name| name.strip_prefix("nvidia"))
                        .is_some_and(|rest| {
                            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                        })
                })
                .count() as u32
        })
        .unwrap_or(0)
}

/// Dropped without `stop_all` (a failed start-up, a test that panicked):
/// the trainings still must not outlive it.
impl Drop for LocalExecutor {
    fn drop(&mut self) {
        if let Ok(running) = self.running.lock() {
            for running in running.values() {
                crate::adapters::process::kill_group_now(running.pgid);
                self.children.forget(running.pgid);
            }
        }
    }
}

impl LocalExecutor {
    fn report(sink: &StatusSink, launch_id: &str, status: LaunchStatus, reason: String) {
        let _ = sink.send(ExecutorEvent::Status(StatusReport {
            launch_id: launch_id.to_string(),
            status,
            reason,
        }));
    }
}

#[async_trait::async_trait]
impl Executor for LocalExecutor {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn start(&self, job: &TrainingJob) -> Result<String> {
        let argv = match &job.python_env {
            None => job.argv.clone(),
            Some(python_env) => self.in_python_env(python_env, &job.directory, &job.argv),
        };
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| Error::Unavailable("the entry point's command is empty".into()))?;
        // As many GPUs as the profile asks for; none for a CPU profile.
        let gpus = (0..job.profile.gpus())
            .map(|index| index.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let (mut child, pid) = crate::adapters::process::spawn_logged(
            self.env
                .apply(&mut tokio::process::Command::new(program))
                .args(args)
                .current_dir(&job.directory)
                .env("MLFLOW_RUN_ID", &job.run_id)
                .env("MLFLOW_EXPERIMENT_ID", &job.experiment_id)
                .env("CUDA_VISIBLE_DEVICES", gpus)
                .env("PYTHONUNBUFFERED", "1"),
            &self.log_path(&job.launch_id),
            &self.children,
        )
        .map_err(|err| {
            Error::Unavailable(format!(
                "cannot start {program:?} in {}: {err}",
                job.directory.display()
            ))
        })?;
        let (ended_tx, ended) = watch::channel(false);
        let cancelled = Arc::new(AtomicBool::new(false));
        self.running.lock().expect("running map").insert(
            job.launch_id.clone(),
            Running {
                pgid: pid,
                ended,
                cancelled: cancelled.clone(),
            },
        );
        Self::report(
            &self.sink,
            &job.launch_id,
            LaunchStatus::Running,
            format!("process {pid}"),
        );

        let sink = self.sink.clone();
        let running = self.running.clone();
        let children = self.children.clone();
        let launch_id = job.launch_id.clone();
        let deadline = job
            .profile
            .max_runtime_secs
            .map(|seconds| Duration::from_secs(seconds as u64));
        tokio::spawn(async move {
            let outcome = match deadline {
                Some(deadline) => tokio::time::timeout(deadline, child.wait()).await,
                None => Ok(child.wait().await),
            };
            let (status, reason) = match outcome {
                Ok(Ok(exit)) if exit.success() => {
                    (LaunchStatus::Succeeded, "exited with code 0".into())
                }
                Ok(Ok(exit)) => match exit.code() {
                    Some(code) => (LaunchStatus::Failed, format!("exited with code {code}")),
                    None => {
                        use std::os::unix::process::ExitStatusExt;
                        let signal = exit.signal().unwrap_or_default();
                        (LaunchStatus::Failed, format!("killed by signal {signal}"))
                    }
                },
                Ok(Err(err)) => (
                    LaunchStatus::Failed,
                    format!("lost track of the process: {err}"),
                ),
                Err(_) => {
                    terminate_group(pid).await;
                    let _ = child.wait().await;
                    (
                        LaunchStatus::Failed,
                        "DeadlineExceeded: ran longer than the profile's max_runtime_secs".into(),
                    )
                }
            };
            // A cancelled launch is recorded by whoever cancelled it, with who.
            if !cancelled.load(Ordering::SeqCst) {
                Self::report(&sink, &launch_id, status, reason);
            }
            running.lock().expect("running map").remove(&launch_id);
            children.forget(pid);
            let _ = ended_tx.send(true);
        });
        Ok(pid.to_string())
    }

    async fn cancel(&self, launch_id: &str, _pid: &str) -> Result<()> {
        let running = self
            .running
            .lock()
            .expect("running map")
            .get(launch_id)
            .cloned();
        // Not running here: it has ended already, or a restart lost it.
        let Some(running) = running else {
            return Ok(());
        };
        running.cancelled.store(true, Ordering::SeqCst);
        terminate_group(running.pgid).await;
        Ok(())
    }

    /// The trainings are Slipway's children: they stop with it. Their
    /// launches end as failed, "Slipway restarted while this training ran",
    /// when the next Slipway starts.
    async fn stop_all(&self) {
        let groups: Vec<i32> = self
            .running
            .lock()
            .expect("running map")
            .values()
            .map(|running| running.pgid)
            .collect();
        futures::future::join_all(groups.into_iter().map(terminate_group)).await;
    }

    async fn logs(&self, launch_id: &str, _pid: &str) -> Result<LogStream> {
        let path = self.log_path(launch_id);
        let ended = self
            .running
            .lock()
            .expect("running map")
            .get(launch_id)
            .map(|running| running.ended.clone());
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(futures::stream::empty().boxed());
            }
            Err(err) => return Err(Error::Unavailable(format!("cannot open the log: {err}"))),
        };
        Ok(tail(file, ended).boxed())
    }

    async fn is_present(&self, launch_id: &str, _pid: &str) -> Result<bool> {
        Ok(self
            .running
            .lock()
            .expect("running map")
            .contains_key(launch_id))
    }
}

async fn terminate_group(pgid: i32) {
    crate::adapters::process::terminate_group(pgid, TERMINATION_GRACE).await;
}

/// The file's content, then what is appended, until the process has ended
/// and everything is read.
fn tail(
    file: tokio::fs::File,
    ended: Option<watch::Receiver<bool>>,
) -> impl futures::Stream<Item = Result<String>> {
    async_stream::stream! {
        let mut file = file;
        let mut position = 0u64;
        let mut buffer = Vec::new();
        loop {
            let finished = ended.as_ref().is_none_or(|ended| *ended.borrow());
            buffer.clear();
            if let Err(err) = file.seek(std::io::SeekFrom::Start(position)).await {
                yield Err(Error::Unavailable(format!("reading the log: {err}")));
                break;
            }
            match file.read_to_end(&mut buffer).await {
                Ok(0) if finished => break,
                Ok(0) => tokio::time::sleep(LOG_POLL).await,
                Ok(read) => {
                    // Hold back a trailing partial UTF-8 sequence for the next
                    // read, unless nothing more will come.
                    let complete = match std::str::from_utf8(&buffer) {
                        Err(err) if err.error_len().is_none() && !finished => err.valid_up_to(),
                        _ => read,
                    };
                    if complete == 0 {
                        tokio::time::sleep(LOG_POLL).await;
                        continue;
                    }
                    position += complete as u64;
                    yield Ok(String::from_utf8_lossy(&buffer[..complete]).into_owned());
                }
                Err(err) => {
                    yield Err(Error::Unavailable(format!("reading the log: {err}")));
                    break;
                }
            }
        }
    }
}
