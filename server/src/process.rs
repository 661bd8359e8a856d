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
/// `log` (created), stdin closed. Returns the child and its group id.
pub fn spawn_logged(
    command: &mut tokio::process::Command,
    log: &Path,
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
    Ok((child, pgid))
}
