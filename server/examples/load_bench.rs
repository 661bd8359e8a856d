//! `make bench`: many browsers at once. BENCH_CONNECTIONS (100) clients
//! alternate `/experiments` and `/models` for BENCH_LOAD_SECS (300) against
//! a running release Slipway (BENCH_SLIPWAY_URL, its process BENCH_SLIPWAY_PID,
//! signed in as BENCH_USER / BENCH_PASSWORD), then the same load for 60 s
//! against MLflow's own API for the same two lists (BENCH_MLFLOW_URL).
//! Reports latencies, throughput, errors, MLflow requests per page view
//! (from Slipway's `/metrics`) and Slipway's resident memory over the run.

// Only its figures' printing is used here; the cluster is the others'.
#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::report;

fn env(name: &str, default: Option<&str>) -> String {
    std::env::var(name)
        .ok()
        .or(default.map(str::to_string))
        .unwrap_or_else(|| panic!("{name} is not set"))
}

/// The session cookie of a sign-in through the login form.
async fn sign_in(http: &reqwest::Client, slipway: &str, user: &str, password: &str) -> String {
    let response = http
        .post(format!("{slipway}/login"))
        .header("origin", slipway)
        .form(&[("name", user), ("password", password), ("next", "/")])
        .send()
        .await
        .expect("signing in");
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("slipway_session="))
        .and_then(|value| value.split(';').next())
        .unwrap_or_else(|| panic!("signing in answered {}", response.status()))
        .to_string()
}

/// All of Slipway's MLflow calls so far, as its `/metrics` counts them.
async fn mlflow_calls(http: &reqwest::Client, slipway: &str) -> u64 {
    let metrics = http
        .get(format!("{slipway}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .filter(|line| line.starts_with("slipway_mlflow_call_duration_seconds_count{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn resident_mb(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Outcome {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
}

/// `connections` clients, each sending the next of `requests` as soon as
/// the last one answered, for `duration`.
async fn load(
    connections: usize,
    duration: Duration,
    requests: Arc<Vec<reqwest::RequestBuilder>>,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|client| {
            let (stop, errors, requests) = (stop.clone(), errors.clone(), requests.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut next = client;
                while !stop.load(Ordering::Relaxed) {
                    let request = requests[next % requests.len()]
                        .try_clone()
                        .expect("bodies are plain");
                    next += 1;
                    let sent = Instant::now();
                    let ok = match request.send().await {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            ok && response.bytes().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.unwrap());
    }
    Outcome {
        latencies,
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

fn print(what: &str, outcome: &mut Outcome) {
    let served = outcome.latencies.len();
    report(what, &mut outcome.latencies);
    println!(
        "{what}: {served} answers, {:.0} per second, {} errors",
        served as f64 / outcome.elapsed.as_secs_f64(),
        outcome.errors
    );
}

#[tokio::main]
async fn main() {
    let slipway = env("BENCH_SLIPWAY_URL", None);
    let mlflow = env("BENCH_MLFLOW_URL", None);
    let pid = env("BENCH_SLIPWAY_PID", None);
    let connections: usize = env("BENCH_CONNECTIONS", Some("100")).parse().unwrap();
    let seconds: u64 = env("BENCH_LOAD_SECS", Some("300")).parse().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let cookie = sign_in(
        &http,
        &slipway,
        &env("BENCH_USER", None),
        &env("BENCH_PASSWORD", None),
    )
    .await;

    let pages: Vec<_> = ["/experiments", "/models"]
        .iter()
        .map(|page| {
            http.get(format!("{slipway}{page}"))
                .header("cookie", &cookie)
        })
        .collect();
    let rss_before = resident_mb(&pid);
    let calls_before = mlflow_calls(&http, &slipway).await;
    // Resident memory every 10 s while the load runs.
    let sampling = {
        let pid = pid.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(seconds) {
                tokio::time::sleep(Duration::from_secs(10)).await;
                samples.push(resident_mb(&pid));
            }
            samples
        })
    };
    let mut outcome = load(connections, Duration::from_secs(seconds), Arc::new(pages)).await;
    let calls = mlflow_calls(&http, &slipway).await - calls_before;
    let rss = sampling.await.unwrap();
    let what = format!("Slipway /experiments + /models, {connections} connections, {seconds} s");
    print(&what, &mut outcome);
    let views = outcome.latencies.len() as u64 + outcome.errors;
    println!(
        "{what}: {calls} MLflow requests for {views} page views ({:.4} per view)",
        calls as f64 / views.max(1) as f64
    );
    let (first, last) = (
        rss.first().copied().unwrap_or(rss_before),
        rss.last().copied().unwrap_or(rss_before),
    );
    let peak = rss.iter().copied().fold(rss_before, f64::max);
    println!(
        "{what}: resident memory {rss_before:.0} MB before, {first:.0} MB after 10 s, {last:.0} MB at the end ({:+.0} % from 10 s on), peak {peak:.0} MB",
        (last - first) / first.max(1.0) * 100.0
    );

    let api = format!("{mlflow}/api/2.0/mlflow");
    let searches: Vec<_> = vec![
        http.post(format!("{api}/experiments/search"))
            .json(&serde_json::json!({"max_results": 100})),
        http.get(format!("{api}/registered-models/search"))
            .query(&[("max_results", "100")]),
    ];
    let mut outcome = load(connections, Duration::from_secs(60), Arc::new(searches)).await;
    print(
        &format!("MLflow's API, the same two lists, {connections} connections, 60 s"),
        &mut outcome,
    );
}
