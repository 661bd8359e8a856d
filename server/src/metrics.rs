//! Prometheus metrics: requests by matched route, method and status, and
//! their latency; model traffic through the gateway by deployment, version
//! and status class, and its latency; MLflow calls by endpoint and outcome, and their latency;
//! reconcile passes and their duration, errors by target and the triggers
//! waiting; model servers started again; whether this replica leads. Every
//! label takes values from a fixed set (or the admin's bindings), never from
//! what a client sends.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MlflowLabels {
    endpoint: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: &'static str,
}

/// A model's traffic: the deployment is the admin's binding, the version
/// the one that answered, the code a class (2xx … 5xx).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServeLabels {
    deployment: String,
    version: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServeLatencyLabels {
    deployment: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    replica: String,
}

/// The latency histogram's upper bounds, in seconds: from 0.5 ms, each a
/// quarter above the one before, to about 18 s. The gateway's histogram and
/// its in-memory history (`traffic::history`) use the same ones, so both read alike.
pub const LATENCY_BOUNDS_SECONDS: [f64; 48] = latency_bounds();

const fn latency_bounds() -> [f64; 48] {
    let mut bounds = [0.0; 48];
    let mut bound = 0.0005;
    let mut index = 0;
    while index < bounds.len() {
        bounds[index] = bound;
        bound *= 1.25;
        index += 1;
    }
    bounds
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    mlflow_calls: Family<MlflowLabels, Histogram>,
    passes: Family<OutcomeLabels, Histogram>,
    restarts: Family<ModelLabels, Counter>,
    leader: Family<ReplicaLabels, Gauge>,
    reconcile_errors: Family<TargetLabels, Counter>,
    reconcile_queue: Gauge,
    serve_requests: Family<ServeLabels, Counter>,
    serve_latency: Family<ServeLatencyLabels, Histogram>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("slipway");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the first byte of the body)",
            latency.clone(),
        );
        let seconds = || Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let mlflow_calls = Family::<MlflowLabels, Histogram>::new_with_constructor(seconds);
        registry.register(
            "mlflow_call_duration_seconds",
            "MLflow REST calls (each attempt) by endpoint and outcome: ok, error (MLflow answered one), unreachable, no_answer, undecodable",
            mlflow_calls.clone(),
        );
        let passes = Family::<OutcomeLabels, Histogram>::new_with_constructor(seconds);
        registry.register(
            "reconcile_pass_duration_seconds",
            "Reconcile passes by outcome (ok, error)",
            passes.clone(),
        );
        let restarts = Family::<ModelLabels, Counter>::default();
        registry.register(
            "model_server_restarts",
            "Local model servers started again because they died or stopped answering /ping",
            restarts.clone(),
        );
        let leader = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "leader",
            "1 while this replica leads (runs the reconciler and the other background work), else 0",
            leader.clone(),
        );
        let reconcile_errors = Family::<TargetLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Bindings a reconcile pass could not converge, by target (local, seldon)",
            reconcile_errors.clone(),
        );
        let reconcile_queue = Gauge::default();
        registry.register(
            "reconcile_queue_depth",
            "Triggers (promotions, webhooks, watch events) waiting for the pass that answers them",
            reconcile_queue.clone(),
        );
        let serve_requests = Family::<ServeLabels, Counter>::default();
        registry.register(
            "serve_requests",
            "Model requests through Slipway's gateway, by deployment, version and status class (2xx, 4xx, 5xx; 5xx also when the model server did not answer)",
            serve_requests.clone(),
        );
        let serve_latency = Family::<ServeLatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BOUNDS_SECONDS.iter().copied())
        });
        registry.register(
            "serve_request_duration_seconds",
            "Time the gateway took to answer a model request, the model server's time included",
            serve_latency.clone(),
        );
        Arc::new(Self {
            serve_requests,
            serve_latency,
            reconcile_errors,
            reconcile_queue,
            leader,
            registry,
            requests,
            mlflow_calls,
            passes,
            restarts,
            latency,
        })
    }

    /// One MLflow call: `method_path` as the client names it (ids in it
    /// are collapsed), its outcome, how long it took.
    pub fn observe_mlflow(&self, method_path: &str, outcome: &'static str, seconds: f64) {
        self.mlflow_calls
            .get_or_create(&MlflowLabels {
                endpoint: endpoint_label(method_path),
                outcome,
            })
            .observe(seconds);
    }

    pub fn observe_pass(&self, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        self.passes
            .get_or_create(&OutcomeLabels { outcome })
            .observe(seconds);
    }

    /// Keeps `slipway_leader{replica}` up to date as the lead changes.
    pub fn follow_leadership(self: &Arc<Self>, leadership: &crate::adapters::lease::Leadership) {
        let gauge = self
            .leader
            .get_or_create(&ReplicaLabels {
                replica: leadership.identity().into(),
            })
            .clone();
        let mut changes = leadership.subscribe();
        tokio::spawn(async move {
            loop {
                let leading = *changes.borrow_and_update();
                gauge.set(i64::from(leading));
                if changes.changed().await.is_err() {
                    gauge.set(0);
                    return;
                }
            }
        });
    }

    /// A version's traffic series, at zero before its first request: a
    /// scraper then counts that request too (a counter first seen at 1 is
    /// a step it cannot see).
    pub fn prepare_serve(&self, deployment: &str, version: &str) {
        for code in ["2xx", "4xx", "5xx"] {
            drop(self.serve_requests.get_or_create(&ServeLabels {
                deployment: deployment.into(),
                version: version.into(),
                code,
            }));
        }
        drop(self.serve_latency.get_or_create(&ServeLatencyLabels {
            deployment: deployment.into(),
            version: version.into(),
        }));
    }

    /// One model request through the gateway.
    pub fn observe_serve(&self, deployment: &str, version: &str, status: u16, seconds: f64) {
        let code = match status {
            500.. => "5xx",
            400..500 => "4xx",
            300..400 => "3xx",
            200..300 => "2xx",
            _ => "1xx",
        };
        self.serve_requests
            .get_or_create(&ServeLabels {
                deployment: deployment.into(),
                version: version.into(),
                code,
            })
            .inc();
        self.serve_latency
            .get_or_create(&ServeLatencyLabels {
                deployment: deployment.into(),
                version: version.into(),
            })
            .observe(seconds);
    }

    pub fn count_reconcile_error(&self, target: &'static str) {
        self.reconcile_errors
            .get_or_create(&TargetLabels { target })
            .inc();
    }

    pub fn set_reconcile_queue(&self, depth: usize) {
        self.reconcile_queue.set(depth as i64);
    }

    pub fn count_restart(&self, model: &str) {
        self.restarts
            .get_or_create(&ModelLabels {
                model: model.into(),
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    // Label by route pattern, never by raw path: paths carry ids and tokens.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(request.method()).to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// HTTP's own methods by name; anything else a client makes up is one
/// label value, so no request can grow the label set.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |(_, name)| name)
}

/// An MLflow method path with its ids collapsed (`logged-models/{id}/…`):
/// the label set stays as small as MLflow's API.
fn endpoint_label(method_path: &str) -> String {
    method_path
        .split('/')
        .map(|segment| {
            let word = !segment.is_empty()
                && !segment.starts_with("m-")
                && segment.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
            if word { segment } else { "{id}" }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::endpoint_label;

    #[test]
    fn ids_in_mlflow_endpoints_are_collapsed() {
        assert_eq!(
            endpoint_label("registered-models/search"),
            "registered-models/search"
        );
        assert_eq!(
            endpoint_label("logged-models/m-4f2a9c/artifacts/directories"),
            "logged-models/{id}/artifacts/directories"
        );
        assert_eq!(endpoint_label("webhooks/1234"), "webhooks/{id}");
    }
}
