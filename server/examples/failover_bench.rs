//! `make bench`: the leader of two replicas killed (SIGKILL) → the first
//! reconcile pass by the other, over repeated failovers. The replicas are
//! the release binary on one PostgreSQL against the real API server, as the
//! ServiceAccount deploy/base/rbac.yaml ships; the killed one comes back
//! under a new name, as a replaced pod would.
//!
//! Env: BENCH_SLIPWAY_BIN, BENCH_DATABASE_URL, BENCH_MLFLOW_URL, and the
//! cluster's (see `support::BenchCluster`).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use support::{BenchCluster, report};

const FAILOVERS: usize = 10;

struct Replica {
    name: String,
    url: String,
    child: tokio::process::Child,
    data: std::path::PathBuf,
}

async fn start(name: &str) -> Replica {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = std::env::temp_dir().join(format!("slipway-failover-{name}"));
    let child = tokio::process::Command::new(std::env::var("BENCH_SLIPWAY_BIN").unwrap())
        .env_clear()
        .env("SLIPWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLIPWAY_GATEWAY_LISTEN", "127.0.0.1:0")
        .env(
            "SLIPWAY_DATABASE_URL",
            std::env::var("BENCH_DATABASE_URL").unwrap(),
        )
        .env(
            "SLIPWAY_MLFLOW_URI",
            std::env::var("BENCH_MLFLOW_URL").unwrap(),
        )
        .env("SLIPWAY_DATA_DIR", &data)
        .env("SLIPWAY_EXECUTOR", "kubernetes")
        .env(
            "SLIPWAY_KUBECONFIG",
            std::env::var("BENCH_KUBECONFIG").unwrap(),
        )
        .env(
            "SLIPWAY_KUBE_NAMESPACE",
            std::env::var("BENCH_KUBE_NAMESPACE").unwrap(),
        )
        .env("SLIPWAY_REPLICA_NAME", name)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..600 {
        if reqwest::get(format!("{url}/healthz")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Replica {
        name: name.into(),
        url,
        child,
        data,
    }
}

/// Passes this replica has run (only a leader runs them).
async fn passes(replica: &Replica) -> u64 {
    let text = reqwest::get(format!("{}/metrics", replica.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with("slipway_reconcile_pass_duration_seconds_count"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn holder(leases: &kube::Api<Lease>) -> Option<String> {
    leases
        .get_opt("slipway-leader")
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

#[tokio::main]
async fn main() {
    let cluster = BenchCluster::from_env().await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(cluster.account, &cluster.namespace);
    let mut replicas = vec![start("bench-a").await, start("bench-b").await];
    let mut taken = Vec::new();
    for round in 0..FAILOVERS {
        let leader = loop {
            if let Some(holder) = holder(&leases).await
                && let Some(index) = replicas.iter().position(|replica| replica.name == holder)
            {
                break index;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut killed = replicas.remove(leader);
        let survivor = &replicas[0];
        let before = passes(survivor).await;
        let killed_at = Instant::now();
        killed.child.start_kill().unwrap();
        killed.child.wait().await.unwrap();
        let _ = std::fs::remove_dir_all(&killed.data);
        while passes(survivor).await == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        taken.push(killed_at.elapsed());
        replicas.push(start(&format!("bench-{round}")).await);
    }
    report(
        "leader killed (SIGKILL) → first reconcile pass by the new leader (Lease 10 s)",
        &mut taken,
    );
    for mut replica in replicas {
        replica.child.start_kill().unwrap();
        replica.child.wait().await.unwrap();
        let _ = std::fs::remove_dir_all(&replica.data);
    }
}
