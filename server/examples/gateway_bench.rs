//! `make bench` (traffic part): what the gateway adds to a model request,
//! and how many requests per second the load generator can send, next to
//! Locust. Prints figures; asserts nothing.
//!
//! The model server is a trivial one in a process of its own (this example
//! run as `gateway_bench upstream`): what a model computes is the same with
//! or without the gateway, so only the gateway's own cost remains. Locust
//! (BENCH_LOCUST: its executable) runs against the same upstream.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use server::adapters::mlflow::MlflowAuth;
use server::adapters::process::{ChildEnv, Children, ServedModel};
use server::adapters::serving::local::LocalServing;
use server::metrics::Metrics;
use server::traffic::Traffic;
use server::traffic::load::{self, Plan};
use server::web::gateway::Gateway;

const BODY: &str = r#"{"inputs": [[1.0, 2.0]]}"#;
const SAMPLES: usize = 5000;
const CEILING_USERS: u32 = 64;
const CEILING_SECS: u64 = 10;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("upstream") {
        return upstream();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

/// A model server that answers at once: `/ping`, and `/invocations` with
/// a fixed prediction. Prints its port, then serves until killed.
fn upstream() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use axum::routing::{get, post};
            let app = axum::Router::new()
                .route("/ping", get(|| async { "" }))
                .route(
                    "/invocations",
                    post(|| async { r#"{"predictions": [3.0]}"# }),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("{}", listener.local_addr().unwrap().port());
            std::io::stdout().flush().unwrap();
            axum::serve(listener, app).await.unwrap();
        });
}

async fn bench() {
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("upstream")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let port: u16 = port.trim().parse().unwrap();
    let direct = format!("http://127.0.0.1:{port}/invocations");

    // The gateway in front of it, as Slipway runs it.
    let serving = Arc::new(
        LocalServing::new(
            ChildEnv::new("http://127.0.0.1:9", &MlflowAuth::None, &[]),
            data.path().join("serving"),
            Children::open(data.path().join("children")).unwrap(),
        )
        .unwrap(),
    );
    serving
        .adopt(vec![(
            child.id() as i32,
            ServedModel {
                model: "bench".into(),
                version: "1".into(),
                port,
            },
        )])
        .await;
    let traffic = Arc::new(Traffic::new(Metrics::new(), None, Duration::from_secs(60)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        app::routes::gateway_invocations("bench")
    );
    let router = Gateway::new(serving, traffic).router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // One client, one request at a time, the two addresses alternating.
    let http = reqwest::Client::new();
    let mut times = [Vec::new(), Vec::new()];
    for index in 0..(SAMPLES * 2 + 400) {
        let which = index % 2;
        let address = if which == 0 { &direct } else { &gateway };
        let started = Instant::now();
        let response = http
            .post(address)
            .header("content-type", "application/json")
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        response.bytes().await.unwrap();
        // The first 200 of each warm the connections.
        if index >= 400 {
            times[which].push(started.elapsed());
        }
    }
    let quantile = |samples: &mut Vec<Duration>, q: f64| {
        samples.sort();
        samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let [mut straight, mut through] = times;
    for q in [0.5, 0.99] {
        let (a, b) = (quantile(&mut straight, q), quantile(&mut through, q));
        println!(
            "gateway: p{:.0} {:.0} µs direct, {:.0} µs through the gateway: {:.0} µs added (n={SAMPLES} each)",
            q * 100.0,
            us(a),
            us(b),
            us(b) - us(a)
        );
    }

    // The load generator's ceiling against the upstream.
    let (_, results) = load::run(
        Plan {
            address: direct.clone(),
            headers: Vec::new(),
            body: bytes::Bytes::from_static(BODY.as_bytes()),
            users: CEILING_USERS,
            rate: None,
            duration: Duration::from_secs(CEILING_SECS),
            ramp_up: Duration::ZERO,
        },
        load::client(),
        |_| async { false },
    )
    .await;
    println!(
        "load generator: {:.0} requests/s with {CEILING_USERS} users for {CEILING_SECS} s ({} errors, p99 {:.2} ms)",
        results.requests_per_second,
        results.errors,
        results.p99_ms.unwrap_or_default()
    );

    match std::env::var("BENCH_LOCUST") {
        Ok(locust) => println!("locust: {}", run_locust(&locust, port, data.path())),
        Err(_) => println!("locust: not run (BENCH_LOCUST unset)"),
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Locust headless against the upstream with the same users and duration:
/// its aggregated requests per second, from its CSV.
fn run_locust(locust: &str, port: u16, dir: &std::path::Path) -> String {
    let locustfile = dir.join("locustfile.py");
    std::fs::write(
        &locustfile,
        format!(
            "from locust import FastHttpUser, task\n\n\
             class Model(FastHttpUser):\n    @task\n    def invoke(self):\n        \
             self.client.post('/invocations', data='{BODY}', headers={{'content-type': 'application/json'}})\n"
        ),
    )
    .unwrap();
    let csv = dir.join("locust");
    let status = std::process::Command::new(locust)
        .args(["--headless", "--only-summary", "-f"])
        .arg(&locustfile)
        .args([
            "-u",
            &CEILING_USERS.to_string(),
            "-r",
            &CEILING_USERS.to_string(),
        ])
        .args(["-t", &format!("{CEILING_SECS}s")])
        .args(["--host", &format!("http://127.0.0.1:{port}")])
        .arg("--csv")
        .arg(&csv)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    if !status.success() {
        return format!("exited with {status}");
    }
    let stats = std::fs::read_to_string(dir.join("locust_stats.csv")).unwrap();
    let header: Vec<&str> = stats.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let total = stats
        .lines()
        .find(|line| line.contains(",Aggregated,"))
        .unwrap()
        .split(',')
        .collect::<Vec<_>>();
    format!(
        "{} requests/s with {CEILING_USERS} users for {CEILING_SECS} s (FastHttpUser, one process; {} failures, p99 {} ms)",
        total[column("Requests/s")],
        total[column("Failure Count")],
        total[column("99%")]
    )
}
