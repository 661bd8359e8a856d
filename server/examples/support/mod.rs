//! What both benchmarks share: how figures are printed, and the real
//! cluster `make bench` starts (scripts/bench.sh).

use std::time::Duration;

/// Prints p50/p90/p99/max of the samples, in milliseconds.
pub fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: n={} p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
        samples.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(*samples.last().unwrap())
    );
}

/// The real API server: a client as the ServiceAccount deploy/base/rbac.yaml
/// ships (BENCH_KUBECONFIG), an admin client that plays what the test
/// cluster lacks (BENCH_KUBE_ADMIN), and their namespace
/// (BENCH_KUBE_NAMESPACE).
// Each bench uses the part it needs.
#[allow(dead_code)]
pub struct BenchCluster {
    pub account: kube::Client,
    pub admin: kube::Client,
    pub namespace: String,
}

impl BenchCluster {
    pub async fn from_env() -> Self {
        let connect = |variable: &str| {
            let path = std::env::var(variable).unwrap_or_else(|_| panic!("{variable}"));
            async move {
                server::adapters::cluster::connect(Some(path.as_ref()))
                    .await
                    .unwrap()
            }
        };
        Self {
            account: connect("BENCH_KUBECONFIG").await,
            admin: connect("BENCH_KUBE_ADMIN").await,
            namespace: std::env::var("BENCH_KUBE_NAMESPACE").expect("BENCH_KUBE_NAMESPACE"),
        }
    }
}
