//! The load generator: concurrent users posting one body to one address
//! for a duration, started one after another over the ramp-up, optionally
//! paced to a total rate; the numbers reported every second. What answers
//! is user code: redirects are not followed and answers are read only up to
//! `MAX_ANSWER_BYTES`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::model::{LoadTestResults, LoadTestSecond};
use tokio::task::JoinSet;

use super::history::{Answer, Stats};

/// The most of an answer read; a model's answer to a load test is thrown
/// away, an error's start is kept.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const FIRST_ERROR_CHARS: usize = 300;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Plan {
    pub address: String,
    /// Sent with every request besides the content type (a mesh's routing).
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
    pub users: u32,
    /// Requests per second across all users.
    pub rate: Option<u32>,
    pub duration: Duration,
    pub ramp_up: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Finished,
    Cancelled,
}

#[derive(Default)]
struct Tally {
    total: Stats,
    seconds: Vec<Stats>,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, second: usize, answer: Answer, seconds: f64) {
        self.total.record(answer, seconds);
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, Stats::default);
        }
        self.seconds[second].record(answer, seconds);
    }

    fn results(&self, elapsed: Duration) -> LoadTestResults {
        let millis = |stats: &Stats, q: f64| stats.quantile(q).map(|seconds| seconds * 1000.0);
        LoadTestResults {
            requests: self.total.requests,
            errors: self.total.errors(),
            requests_per_second: self.total.requests as f64 / elapsed.as_secs_f64().max(0.001),
            p50_ms: millis(&self.total, 0.5),
            p95_ms: millis(&self.total, 0.95),
            p99_ms: millis(&self.total, 0.99),
            first_error: self.first_error.clone(),
            seconds: self
                .seconds
                .iter()
                .enumerate()
                .map(|(second, stats)| LoadTestSecond {
                    second: second as u32,
                    requests: stats.requests,
                    errors: stats.errors(),
                    p50_ms: millis(stats, 0.5),
                    p95_ms: millis(stats, 0.95),
                    p99_ms: millis(stats, 0.99),
                })
                .collect(),
        }
    }
}

/// A client for load tests: a pool per run, no redirects, a timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(1024)
        .build()
        .expect("a plain HTTP client")
}

/// Runs `plan`; every second hands `report` the numbers so far, and stops
/// early when it answers `true` (cancelled). The numbers in all.
pub async fn run<Report, Reported>(
    plan: Plan,
    http: reqwest::Client,
    mut report: Report,
) -> (Ended, LoadTestResults)
where
    Report: FnMut(LoadTestResults) -> Reported,
    Reported: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let pace = plan.rate.filter(|rate| *rate > 0).map(|rate| {
        let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        // Behind (a slow model): no burst to catch up.
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Arc::new(tokio::sync::Mutex::new(every))
    });
    let mut users = JoinSet::new();
    for user in 0..plan.users {
        let offset = plan
            .ramp_up
            .mul_f64(f64::from(user) / f64::from(plan.users.max(1)));
        let (plan, http, tally, pace) = (plan.clone(), http.clone(), tally.clone(), pace.clone());
        users.spawn(async move {
            tokio::time::sleep(offset).await;
            while started.elapsed() < plan.duration {
                if let Some(pace) = &pace {
                    pace.lock().await.tick().await;
                    // The pace may let a user go past the end: nothing is sent then.
                    if started.elapsed() >= plan.duration {
                        break;
                    }
                }
                let sent = Instant::now();
                let answer = send(&http, &plan).await;
                let took = sent.elapsed().as_secs_f64();
                let second = started.elapsed().as_secs() as usize;
                let (counted, why) = match answer {
                    Ok(()) => (Answer::Success, None),
                    Err((status @ 500.., why)) => (Answer::of_status(status), Some(why)),
                    // No answer at all counts with the server's errors.
                    Err((0, why)) => (Answer::ServerError, Some(why)),
                    // Anything else not 2xx (a redirect, a refusal) is the client's.
                    Err((_, why)) => (Answer::ClientError, Some(why)),
                };
                let mut tally = tally.lock().expect("load tally");
                tally.record(second, counted, took);
                if tally.first_error.is_none() {
                    tally.first_error = why;
                }
            }
        });
    }
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    let ended = loop {
        let deadline = tokio::time::sleep(plan.duration.saturating_sub(started.elapsed()));
        tokio::select! {
            _ = every.tick() => {}
            () = deadline => break Ended::Finished,
        }
        let so_far = tally.lock().expect("load tally").results(started.elapsed());
        if report(so_far).await {
            break Ended::Cancelled;
        }
    };
    // At the end, requests under way are answered and counted (the model
    // served them: its traffic says so too), within the request timeout;
    // a cancel stops them at once.
    if ended == Ended::Cancelled {
        users.abort_all();
    }
    let drained = async { while users.join_next().await.is_some() {} };
    if tokio::time::timeout(REQUEST_TIMEOUT, drained)
        .await
        .is_err()
    {
        users.abort_all();
        while users.join_next().await.is_some() {}
    }
    let elapsed = started.elapsed().min(plan.duration);
    let results = tally.lock().expect("load tally").results(elapsed);
    (ended, results)
}

/// One request: answered 2xx; or the status (0: no answer) and what was said.
async fn send(http: &reqwest::Client, plan: &Plan) -> Result<(), (u16, String)> {
    let mut request = http
        .post(&plan.address)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (name, value) in &plan.headers {
        request = request.header(name, value);
    }
    let response = request
        .body(plan.body.clone())
        .send()
        .await
        .map_err(|err| {
            let why = if err.is_timeout() {
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
            } else {
                "no answer: the connection failed".to_string()
            };
            (0, why)
        })?;
    let status = response.status().as_u16();
    let mut response = response;
    let mut answer = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if answer.len() < MAX_ANSWER_BYTES {
            answer.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER_BYTES - answer.len())]);
        }
    }
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&answer);
    let said: String = text.chars().take(FIRST_ERROR_CHARS).collect();
    Err((status, format!("HTTP {status}: {said}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    /// Answers 200, and 400 to every third request.
    async fn upstream() -> String {
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let app = axum::Router::new().route(
            "/invocations",
            post(move || {
                let count = count.clone();
                async move {
                    let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n % 3 == 2 {
                        (axum::http::StatusCode::BAD_REQUEST, "bad input").into_response()
                    } else {
                        "ok".into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/invocations", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    use axum::response::IntoResponse;

    #[tokio::test]
    async fn every_request_carries_the_targets_headers() {
        // Answers 200 only to requests naming the model, as Seldon Core 2's mesh routes.
        let app = axum::Router::new().route(
            "/v2/models/ranker/infer",
            post(|headers: axum::http::HeaderMap| async move {
                match headers.get("seldon-model") {
                    Some(name) if name == "ranker" => "ok".into_response(),
                    _ => (axum::http::StatusCode::NOT_FOUND, "no route").into_response(),
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!(
            "http://{}/v2/models/ranker/infer",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let plan = Plan {
            address,
            headers: vec![("Seldon-Model".into(), "ranker".into())],
            body: bytes::Bytes::from_static(b"{}"),
            users: 2,
            rate: Some(10),
            duration: Duration::from_secs(1),
            ramp_up: Duration::ZERO,
        };
        let (_, results) = run(plan, client(), |_| async { false }).await;
        assert!(results.requests >= 5, "{}", results.requests);
        assert_eq!(results.errors, 0, "{:?}", results.first_error);
    }

    #[tokio::test]
    async fn a_paced_run_sends_the_rate_counts_errors_and_keeps_the_first() {
        let plan = Plan {
            address: upstream().await,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"{}"),
            users: 4,
            rate: Some(20),
            duration: Duration::from_secs(2),
            ramp_up: Duration::ZERO,
        };
        let mut reports = 0;
        let (ended, results) = run(plan, client(), |_| {
            reports += 1;
            async { false }
        })
        .await;
        assert_eq!(ended, Ended::Finished);
        assert!(reports >= 1);
        // 20 a second for 2 s, the first at once.
        assert!(
            (38..=42).contains(&results.requests),
            "{}",
            results.requests
        );
        assert_eq!(results.errors, results.requests / 3);
        assert_eq!(results.first_error.as_deref(), Some("HTTP 400: bad input"));
        let per_second: u64 = results.seconds.iter().map(|second| second.requests).sum();
        assert_eq!(per_second, results.requests);
    }

    #[tokio::test]
    async fn a_cancel_stops_the_run_at_its_next_report() {
        let plan = Plan {
            address: upstream().await,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"{}"),
            users: 2,
            rate: None,
            duration: Duration::from_secs(60),
            ramp_up: Duration::from_secs(1),
        };
        let started = Instant::now();
        let (ended, results) = run(plan, client(), |_| async { true }).await;
        assert_eq!(ended, Ended::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(results.requests > 0);
    }

    #[tokio::test]
    async fn nothing_listening_is_every_request_an_error_said_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}/invocations", listener.local_addr().unwrap());
        drop(listener);
        let plan = Plan {
            address,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"{}"),
            users: 1,
            rate: Some(10),
            duration: Duration::from_secs(1),
            ramp_up: Duration::ZERO,
        };
        let (_, results) = run(plan, client(), |_| async { false }).await;
        assert!(results.requests > 0);
        assert_eq!(results.errors, results.requests);
        assert_eq!(
            results.first_error.as_deref(),
            Some("no answer: the connection failed")
        );
    }
}
