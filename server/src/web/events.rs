//! A launch's live status and logs, as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::AppState;
use crate::adapters::executor::LogStream;
use app::model::LaunchUpdate;

/// Server-sent events for one launch: `reset`, then `status` (JSON
/// `LaunchUpdate`) whenever it changes and `log` chunks as the training
/// writes them, then `end` once it has ended and its log is complete.
pub async fn launch_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    let launcher = state.services.launches.clone();
    let launch = launcher.launch(&id).await.map_err(|err| {
        let mut response = err.into_response();
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    })?;
    let mut changes = launcher.subscribe();
    let events = async_stream::stream! {
        yield Ok(Event::default().event("reset").data(""));
        let mut shown: Option<LaunchUpdate> = None;
        let mut logs: Option<LogStream> = None;
        let mut logs_done = false;
        // Whether the open log stream has given anything yet. A pod that has
        // not started, or a process not yet spawned, gives an empty stream:
        // that one is tried again later instead of ending the logs.
        let mut log_output = false;
        let mut reopen_at: Option<Instant> = None;
        let mut opened_after_end = false;
        // Bytes of log already sent: a reopened stream starts from the
        // beginning again, and that much of it is skipped.
        let mut delivered = 0usize;
        let mut skip = 0usize;
        // A log source that fails (a node that does not answer, a pod
        // between restarts) is retried while the training runs; each
        // distinct error is shown once.
        let mut last_error: Option<String> = None;
        let mut launch = launch;
        loop {
            let update = launch.update();
            if shown.as_ref() != Some(&update) {
                yield Ok(json_event("status", &update));
                shown = Some(update);
            }
            let may_open = reopen_at.is_none_or(|at| Instant::now() >= at);
            if logs.is_none() && !logs_done && may_open && launch.executor_ref.is_some() {
                opened_after_end = launch.status.is_terminal();
                log_output = false;
                skip = delivered;
                match launcher.logs(&launch).await {
                    Ok(stream) => logs = Some(stream),
                    Err(err) => {
                        let err = err.to_string();
                        if last_error.as_ref() != Some(&err) {
                            yield Ok(Event::default().event("log").data(format!("[slipway] no logs yet: {err}\n")));
                            last_error = Some(err);
                        }
                        logs_done = opened_after_end;
                        reopen_at = Some(Instant::now() + LOG_RETRY);
                    }
                }
            }
            if launch.executor_ref.is_none() && launch.status.is_terminal() {
                logs_done = true;
            }
            if launch.status.is_terminal() && logs_done {
                yield Ok(Event::default().event("end").data(""));
                break;
            }
            let woke = tokio::select! {
                _ = changes.changed() => Woke::Changed,
                chunk = next_chunk(&mut logs) => Woke::Log(chunk),
                // Another replica may have changed it.
                _ = tokio::time::sleep(LAUNCH_RECHECK) => Woke::Changed,
            };
            match woke {
                Woke::Log(Some(Ok(text))) => {
                    log_output = true;
                    let fresh = unseen_part(&text, &mut skip);
                    if !fresh.is_empty() {
                        delivered += fresh.len();
                        yield Ok(Event::default().event("log").data(fresh));
                    }
                    continue;
                }
                Woke::Log(Some(Err(err))) => {
                    let err = err.to_string();
                    if last_error.as_ref() != Some(&err) {
                        yield Ok(Event::default().event("log").data(format!("[slipway] {err}; retrying\n")));
                        last_error = Some(err);
                    }
                    logs = None;
                    logs_done = launch.status.is_terminal();
                    reopen_at = Some(Instant::now() + LOG_RETRY);
                }
                Woke::Log(None) => {
                    logs = None;
                    if log_output || opened_after_end {
                        logs_done = true;
                    } else {
                        reopen_at = Some(Instant::now() + LAUNCH_RECHECK);
                    }
                }
                Woke::Changed => {}
            }
            match launcher.launch(&id).await {
                Ok(current) => launch = current,
                Err(err) => {
                    yield Ok(Event::default().event("log").data(format!("[slipway] {err}\n")));
                    break;
                }
            }
        }
    };
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// How often a live launch page re-reads the launch even without news.
const LAUNCH_RECHECK: Duration = Duration::from_secs(1);
/// How long a failed log source rests before it is asked again.
const LOG_RETRY: Duration = Duration::from_secs(3);

/// The part of `text` past the first `skip` bytes still to skip (a
/// reopened log repeats what was sent before).
fn unseen_part(text: &str, skip: &mut usize) -> String {
    let cut = (*skip).min(text.len());
    *skip -= cut;
    // The repeated prefix is the same text, so `cut` falls on a character
    // boundary unless the source changed under us; then send it whole.
    text.get(cut..).unwrap_or(text).to_string()
}

enum Woke {
    Changed,
    Log(Option<crate::error::Result<String>>),
}

async fn next_chunk(logs: &mut Option<LogStream>) -> Option<crate::error::Result<String>> {
    match logs {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .expect("plain data serialises")
}

#[cfg(test)]
mod tests {
    use super::unseen_part;

    #[test]
    fn a_reopened_log_skips_what_was_sent_before() {
        // 5 bytes were sent before the stream broke; it starts over.
        let mut skip = 5;
        assert_eq!(unseen_part("épo", &mut skip), "");
        assert_eq!(skip, 1);
        assert_eq!(unseen_part("ch 1\nepoch 2\n", &mut skip), "h 1\nepoch 2\n");
        assert_eq!(skip, 0);
        assert_eq!(unseen_part("epoch 3\n", &mut skip), "epoch 3\n");
    }
}
