//! How deployments serve: what the gateway records of each model request,
//! and the numbers the pages show — from Prometheus when one is configured
//! (every target; its queries are all in [`Promql`]), otherwise from the
//! gateway's own history (local serving, the last 24 hours).

pub mod history;
pub mod load;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::model::{
    DeploymentEvent, DeploymentOutcome, Rollout, RolloutMode, SideNumbers, TrafficNow,
    TrafficPoint, TrafficRange, TrafficReport, VersionTraffic,
};

use crate::adapters::prometheus::{Prometheus, Sample, string_literal};
use crate::catalog::{
    DeploymentBinding, SELDON_PREDICTOR_LABEL, SELDON_STABLE_PREDICTOR, ServingTarget,
    seldon_canary_predictor,
};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use history::{Answer, History, Stats};

/// The names Seldon Core v1's executor metrics carry, as the cluster's
/// scrape configuration labels them.
#[derive(Debug, Clone)]
pub struct SeldonLabels {
    pub deployment: String,
    pub namespace: String,
}

impl Default for SeldonLabels {
    fn default() -> Self {
        Self {
            deployment: "deployment_name".into(),
            namespace: "namespace".into(),
        }
    }
}

/// How long the list's numbers from Prometheus are reused: the list is
/// re-read every second by every open page.
const NOW_KEPT: Duration = Duration::from_secs(5);

pub struct Traffic {
    history: History,
    metrics: Arc<Metrics>,
    prometheus: Option<(Prometheus, SeldonLabels)>,
    /// The span "now" means: the list's rate, errors and p99.
    window_ms: i64,
    recent: Mutex<HashMap<String, (Instant, Option<TrafficNow>)>>,
    /// A canary page's sides from Prometheus, by deployment, reused as the
    /// list's numbers are.
    recent_sides: Mutex<HashMap<String, (Instant, Sides)>>,
}

/// What a canary answered over a span: its own requests, those that were
/// errors, and their 99th percentile latency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Answered {
    pub requests: u64,
    pub errors: u64,
    pub p99_ms: Option<f64>,
}

impl From<&Stats> for Answered {
    fn from(stats: &Stats) -> Self {
        Self {
            requests: stats.requests,
            errors: stats.errors(),
            p99_ms: millis(stats.quantile(0.99)),
        }
    }
}

/// A rollout's stable and canary side by side over the window, and where
/// the numbers come from, or why there are none.
#[derive(Debug, Clone, Default)]
pub struct Sides {
    pub stable: Option<SideNumbers>,
    pub canary: Option<SideNumbers>,
    pub note: String,
}

/// One Seldon Core v1 predictor's answers over a span, from its executor.
#[derive(Debug, Clone, Default)]
struct PredictorNumbers {
    requests: f64,
    errors: f64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
}

impl Traffic {
    pub fn new(
        metrics: Arc<Metrics>,
        prometheus: Option<(Prometheus, SeldonLabels)>,
        window: Duration,
    ) -> Self {
        Self {
            history: History::default(),
            metrics,
            prometheus,
            window_ms: window.as_millis() as i64,
            recent: Mutex::default(),
            recent_sides: Mutex::default(),
        }
    }

    /// Whether numbers are read from a Prometheus.
    pub fn reads_prometheus(&self) -> bool {
        self.prometheus.is_some()
    }

    /// The one number a query of a team's own gives now; `None` where it
    /// gives none (often: no requests in its range).
    pub async fn query_value(&self, promql: &str) -> Result<Option<f64>> {
        let Some((prometheus, _)) = &self.prometheus else {
            return Err(no_prometheus());
        };
        let samples = prometheus.query(promql, crate::store::now_ms()).await?;
        match samples.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.value)),
            many => Err(Error::invalid(format!(
                "the query gives {} numbers (one per series), not one: aggregate it, for example with sum(…)",
                many.len()
            ))),
        }
    }

    /// What a Seldon Core v1 canary's predictor answered over the last
    /// `secs`, from its executor's metrics.
    pub async fn predictor_answered(
        &self,
        binding: &DeploymentBinding,
        predictor: &str,
        secs: i64,
    ) -> Result<Answered> {
        let numbers = self.predictor_numbers(binding, secs).await?;
        let numbers = numbers.get(predictor).cloned().unwrap_or_default();
        Ok(Answered {
            requests: numbers.requests.round() as u64,
            errors: numbers.errors.round() as u64,
            p99_ms: numbers.p99_ms,
        })
    }

    /// The rollout's stable and canary side by side over the window: the
    /// gateway's counts locally, the executor's per predictor for Seldon
    /// Core v1 (from Prometheus); the other targets' runtimes name no
    /// version Slipway could read.
    pub async fn sides(&self, binding: &DeploymentBinding, rollout: &Rollout) -> Sides {
        let window = self.window_secs();
        match (binding.target, &self.prometheus) {
            (ServingTarget::Local, _) => Sides {
                stable: rollout
                    .stable_version
                    .as_deref()
                    .map(|version| self.side_now(&binding.model, version)),
                canary: Some(self.side_now(&binding.model, &rollout.canary_version)),
                note: format!("Over the last {window} s, through Slipway's gateway."),
            },
            (ServingTarget::Seldon, Some((prometheus, _))) => {
                if let Some((at, kept)) = self
                    .recent_sides
                    .lock()
                    .expect("recent sides")
                    .get(&binding.model)
                    && at.elapsed() < NOW_KEPT
                {
                    return kept.clone();
                }
                let sides = match self.predictor_numbers(binding, window as i64).await {
                    Ok(numbers) => {
                        let side = |predictor: &str, version: &str| {
                            let found = numbers.get(predictor).cloned().unwrap_or_default();
                            side_of(version, &found, window as f64)
                        };
                        Sides {
                            stable: rollout
                                .stable_version
                                .as_deref()
                                .map(|version| side(SELDON_STABLE_PREDICTOR, version)),
                            canary: Some(side(
                                seldon_canary_predictor(rollout.mode == RolloutMode::Shadow),
                                &rollout.canary_version,
                            )),
                            note: format!(
                                "Over the last {window} s, from the Seldon executor's metrics in Prometheus at {}, by predictor.",
                                prometheus.address()
                            ),
                        }
                    }
                    Err(err) => Sides {
                        note: format!("No numbers of the two sides: {err}."),
                        ..Sides::default()
                    },
                };
                self.recent_sides
                    .lock()
                    .expect("recent sides")
                    .insert(binding.model.clone(), (Instant::now(), sides.clone()));
                sides
            }
            (ServingTarget::Seldon, None) => Sides {
                note:
                    "Slipway reads the two sides of a SeldonDeployment's canary from Prometheus: \
                       none is configured (SLIPWAY_PROMETHEUS_URL)."
                        .into(),
                ..Sides::default()
            },
            (ServingTarget::Kserve | ServingTarget::SeldonCore2, _) => Sides {
                note: format!(
                    "Slipway reads no per-version numbers of {} deployments (their runtimes' metrics \
                     differ per install); a query gate of your own judges their canaries.",
                    binding.target.as_str()
                ),
                ..Sides::default()
            },
        }
    }

    /// Each predictor's answers over the last `secs`, by predictor name.
    async fn predictor_numbers(
        &self,
        binding: &DeploymentBinding,
        secs: i64,
    ) -> Result<HashMap<String, PredictorNumbers>> {
        let Some((prometheus, labels)) = &self.prometheus else {
            return Err(no_prometheus());
        };
        let promql = Promql::for_binding(binding, labels)?.by_predictor();
        let queries = [
            promql.increase(secs, false),
            promql.increase(secs, true),
            promql.quantile(0.5, secs, true),
            promql.quantile(0.95, secs, true),
            promql.quantile(0.99, secs, true),
        ];
        let at = crate::store::now_ms();
        let found =
            futures::future::try_join_all(queries.iter().map(|query| prometheus.query(query, at)))
                .await?;
        let mut numbers: HashMap<String, PredictorNumbers> = HashMap::new();
        for (which, samples) in found.into_iter().enumerate() {
            for sample in samples {
                let predictor = sample
                    .labels
                    .get(SELDON_PREDICTOR_LABEL)
                    .cloned()
                    .unwrap_or_default();
                let entry = numbers.entry(predictor).or_default();
                match which {
                    0 => entry.requests = sample.value,
                    1 => entry.errors = sample.value,
                    2 => entry.p50_ms = Some(sample.value * 1000.0),
                    3 => entry.p95_ms = Some(sample.value * 1000.0),
                    _ => entry.p99_ms = Some(sample.value * 1000.0),
                }
            }
        }
        Ok(numbers)
    }

    /// One model request the gateway answered (or could not).
    pub fn record(&self, deployment: &str, version: &str, status: u16, seconds: f64) {
        self.metrics
            .observe_serve(deployment, version, status, seconds);
        self.history.record(
            deployment,
            version,
            Answer::of_status(status),
            seconds,
            crate::store::now_ms(),
        );
    }

    /// Everything `version` of a local deployment answered through the
    /// gateway since Slipway started.
    pub fn served_ever(&self, deployment: &str, version: &str) -> Stats {
        self.history.ever(deployment, version)
    }

    /// `version`'s answers through the gateway over the window, as a
    /// canary's side shows them.
    pub fn side_now(&self, deployment: &str, version: &str) -> SideNumbers {
        let since = crate::store::now_ms() - self.window_ms;
        let stats = self
            .history
            .totals(deployment, since)
            .into_iter()
            .find(|(served, _)| served == version)
            .map(|(_, stats)| stats)
            .unwrap_or_default();
        SideNumbers {
            version: version.to_string(),
            requests: stats.requests,
            over_window: point_of(since, &stats, self.window_ms),
        }
    }

    /// The span "now" covers, in seconds.
    pub fn window_secs(&self) -> u64 {
        u64::try_from(self.window_ms / 1000).unwrap_or_default()
    }

    /// A deleted deployment's record goes with it.
    pub fn forget(&self, deployment: &str) {
        self.history.forget(deployment);
    }

    /// The deployment's traffic over the window, all versions together;
    /// `None` where nothing can tell (no Prometheus for a cluster target,
    /// Prometheus not answering).
    pub async fn now(&self, binding: &DeploymentBinding) -> Option<TrafficNow> {
        let Some((prometheus, labels)) = &self.prometheus else {
            if binding.target != ServingTarget::Local {
                return None;
            }
            let since = crate::store::now_ms() - self.window_ms;
            let mut total = Stats::default();
            for (_, stats) in self.history.totals(&binding.model, since) {
                total.add(&stats);
            }
            return Some(now_of(&total, self.window_ms));
        };
        if let Some((at, kept)) = self
            .recent
            .lock()
            .expect("recent traffic")
            .get(&binding.model)
            && at.elapsed() < NOW_KEPT
        {
            return kept.clone();
        }
        let promql = Promql::for_binding(binding, labels).ok()?;
        let window = self.window_ms / 1000;
        let at = crate::store::now_ms();
        let queries = [
            promql.rate(window, false),
            promql.error_rate(window, false),
            promql.quantile(0.99, window, false),
        ];
        let (rate, errors, p99) = tokio::join!(
            prometheus.query(&queries[0], at),
            prometheus.query(&queries[1], at),
            prometheus.query(&queries[2], at),
        );
        let first = |samples: Result<Vec<Sample>>| {
            samples.map(|samples| samples.first().map(|sample| sample.value))
        };
        let found = match (first(rate), first(errors), first(p99)) {
            (Ok(rate), Ok(errors), Ok(p99)) => {
                let rate = rate.unwrap_or(0.0);
                Some(TrafficNow {
                    requests_per_second: rate,
                    error_percent: (rate > 0.0).then(|| errors.unwrap_or(0.0) / rate * 100.0),
                    p99_ms: p99.map(|seconds| seconds * 1000.0),
                })
            }
            (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => {
                tracing::warn!(error = %err, model = %binding.model, "reading traffic from Prometheus");
                None
            }
        };
        self.recent
            .lock()
            .expect("recent traffic")
            .insert(binding.model.clone(), (Instant::now(), found.clone()));
        found
    }

    /// The deployment's traffic over `range` ending now, by version, and
    /// every change of version in it; the charts are drawn from these.
    /// `history` (newest first) says which version served when: the marks,
    /// and the version of what metrics that do not name it counted.
    pub async fn report(
        &self,
        binding: &DeploymentBinding,
        range: TrafficRange,
        history: &[DeploymentEvent],
    ) -> TrafficReport {
        let to_ms = crate::store::now_ms();
        let from_ms = to_ms - range.millis();
        let served = ServedVersions::from_history(history);
        let (source, versions, note) = match &self.prometheus {
            Some((prometheus, labels)) => {
                let source = format!("Prometheus at {}", prometheus.address());
                match self
                    .read_prometheus(prometheus, labels, binding, range, from_ms, to_ms, &served)
                    .await
                {
                    Ok(versions) => {
                        let note = versions.is_empty().then(|| {
                            format!(
                                "Prometheus has no requests of {} in this range.",
                                binding.model
                            )
                        });
                        (source, versions, note)
                    }
                    Err(err) => (
                        source,
                        Vec::new(),
                        Some(format!("No traffic numbers: {err}.")),
                    ),
                }
            }
            None if binding.target != ServingTarget::Local => (
                "none".into(),
                Vec::new(),
                Some(
                    "Slipway reads the traffic of cluster deployments from Prometheus: \
                     none is configured (SLIPWAY_PROMETHEUS_URL)."
                        .into(),
                ),
            ),
            None => {
                let kept_from = to_ms - history::KEPT_MS;
                let note = (from_ms < kept_from).then(|| {
                    "Slipway's gateway keeps the last 24 hours; with Prometheus \
                     (SLIPWAY_PROMETHEUS_URL) the charts reach further back."
                        .to_string()
                });
                (
                    "Slipway's gateway (the last 24 hours, kept in memory)".into(),
                    self.read_history(&binding.model, range, from_ms, to_ms),
                    note,
                )
            }
        };
        TrafficReport {
            range,
            from_ms,
            to_ms,
            source,
            versions,
            changes: served.changes_since(from_ms),
            charts: Vec::new(),
            note,
        }
    }

    fn read_history(
        &self,
        deployment: &str,
        range: TrafficRange,
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<VersionTraffic> {
        let step_ms = range.step_millis();
        self.history
            .steps(deployment, from_ms, to_ms, step_ms)
            .into_iter()
            .map(|(version, steps)| {
                let mut points: Vec<TrafficPoint> = Vec::new();
                let mut total = Stats::default();
                for (at_ms, stats) in steps {
                    total.add(&stats);
                    // Steps without a request between two with: a rate of 0.
                    if let Some(last) = points.last() {
                        let mut gap = last.at_ms + step_ms;
                        while gap < at_ms {
                            points.push(idle_point(gap));
                            gap += step_ms;
                        }
                    }
                    points.push(point_of(at_ms, &stats, step_ms));
                }
                VersionTraffic {
                    requests: total.requests as f64,
                    error_percent: error_percent(&total),
                    p50_ms: millis(total.quantile(0.5)),
                    p95_ms: millis(total.quantile(0.95)),
                    p99_ms: millis(total.quantile(0.99)),
                    version,
                    points,
                }
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    async fn read_prometheus(
        &self,
        prometheus: &Prometheus,
        labels: &SeldonLabels,
        binding: &DeploymentBinding,
        range: TrafficRange,
        from_ms: i64,
        to_ms: i64,
        served: &ServedVersions,
    ) -> Result<Vec<VersionTraffic>> {
        let promql = Promql::for_binding(binding, labels)?;
        let step_ms = range.step_millis();
        // A rate needs a few scrapes in its window, however fine the step.
        let window = step_ms.max(self.window_ms) / 1000;
        let whole = range.millis() / 1000;
        let over_range = [
            promql.rate(window, true),
            promql.error_rate(window, true),
            promql.quantile(0.5, window, true),
            promql.quantile(0.95, window, true),
            promql.quantile(0.99, window, true),
        ];
        let at_end = [
            promql.increase(whole, false),
            promql.increase(whole, true),
            promql.quantile(0.5, whole, true),
            promql.quantile(0.95, whole, true),
            promql.quantile(0.99, whole, true),
        ];
        let (series, totals) = tokio::try_join!(
            futures::future::try_join_all(
                over_range
                    .iter()
                    .map(|query| prometheus.query_range(query, from_ms, to_ms, step_ms))
            ),
            futures::future::try_join_all(
                at_end.iter().map(|query| prometheus.query(query, to_ms))
            ),
        )?;
        let version_of = |labels: &BTreeMap<String, String>, at_ms: i64| match promql.version_label
        {
            Some(label) => labels.get(label).cloned().unwrap_or_default(),
            None => served.at(at_ms).unwrap_or_else(|| "unknown".into()),
        };
        let mut by_version: Vec<(String, Vec<TrafficPoint>)> = Vec::new();
        for (which, found) in series.iter().enumerate() {
            for one in found {
                for (at_ms, value) in &one.points {
                    let point = point_at(&mut by_version, version_of(&one.labels, *at_ms), *at_ms);
                    match which {
                        0 => point.requests_per_second += value,
                        // Errors per second for now; a percentage below.
                        1 => *point.error_percent.get_or_insert(0.0) += value,
                        2 => point.p50_ms = Some(value * 1000.0),
                        3 => point.p95_ms = Some(value * 1000.0),
                        _ => point.p99_ms = Some(value * 1000.0),
                    }
                }
            }
        }
        // The sums at the end name the version where the metrics do; else
        // they are the deployment's, right for a version only if it was alone.
        let exact = promql.version_label.is_some() || by_version.len() <= 1;
        let total = |which: usize, version: &str| -> Option<f64> {
            let values: Vec<f64> = totals[which]
                .iter()
                .filter(|sample| match promql.version_label {
                    Some(label) => sample.labels.get(label).map(String::as_str) == Some(version),
                    None => true,
                })
                .map(|sample| sample.value)
                .collect();
            (!values.is_empty()).then(|| values.iter().sum())
        };
        Ok(by_version
            .into_iter()
            .map(|(version, mut points)| {
                points.sort_by_key(|point| point.at_ms);
                let step_secs = step_ms as f64 / 1000.0;
                let (mut requests, mut errors) = (0.0, 0.0);
                for point in &mut points {
                    requests += point.requests_per_second * step_secs;
                    errors += point.error_percent.unwrap_or(0.0) * step_secs;
                    point.error_percent = (point.requests_per_second > 0.0).then(|| {
                        point.error_percent.unwrap_or(0.0) / point.requests_per_second * 100.0
                    });
                }
                if exact {
                    requests = total(0, &version).unwrap_or(0.0);
                    errors = total(1, &version).unwrap_or(0.0);
                }
                let quantile = |which: usize| {
                    exact
                        .then(|| total(which, &version))
                        .flatten()
                        .map(|seconds| seconds * 1000.0)
                };
                VersionTraffic {
                    requests,
                    error_percent: (requests > 0.0).then(|| errors / requests * 100.0),
                    p50_ms: quantile(2),
                    p95_ms: quantile(3),
                    p99_ms: quantile(4),
                    version,
                    points,
                }
            })
            .collect())
    }
}

/// The point of `version` at `at_ms`, made (idle) if there is none yet.
fn point_at(
    by_version: &mut Vec<(String, Vec<TrafficPoint>)>,
    version: String,
    at_ms: i64,
) -> &mut TrafficPoint {
    let index = match by_version.iter().position(|(v, _)| *v == version) {
        Some(index) => index,
        None => {
            by_version.push((version, Vec::new()));
            by_version.len() - 1
        }
    };
    let points = &mut by_version[index].1;
    let at = match points.iter().position(|point| point.at_ms == at_ms) {
        Some(at) => at,
        None => {
            points.push(idle_point(at_ms));
            points.len() - 1
        }
    };
    &mut points[at]
}

/// Which version served when, from the deployment's history: (from,
/// version, what made the change), oldest first.
struct ServedVersions(Vec<(i64, String, String)>);

impl ServedVersions {
    fn from_history(history: &[DeploymentEvent]) -> Self {
        let mut periods: Vec<(i64, String, String)> = history
            .iter()
            .filter(|event| event.outcome == DeploymentOutcome::Serving)
            .filter_map(|event| {
                let version = event.version.clone()?;
                let from = event.ready_ms.unwrap_or(event.started_ms);
                Some((from, version, event.cause.clone()))
            })
            .collect();
        periods.sort_by_key(|(from, _, _)| *from);
        Self(periods)
    }

    fn at(&self, at_ms: i64) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(from, _, _)| *from <= at_ms)
            .or(self.0.first())
            .map(|(_, version, _)| version.clone())
    }

    /// The changes from `from_ms` on, newest first: (when, "v7 · promote").
    fn changes_since(&self, from_ms: i64) -> Vec<(i64, String)> {
        self.0
            .iter()
            .rev()
            .filter(|(at, _, _)| *at >= from_ms)
            .map(|(at, version, cause)| (*at, format!("v{version} · {cause}")))
            .collect()
    }
}

/// The PromQL for one deployment's traffic, per target kind: what Slipway's
/// gateway exports for local serving, Seldon Core v1's executor histogram
/// for a SeldonDeployment.
pub struct Promql {
    /// The requests counter, selected for the deployment.
    requests: String,
    /// The same, only answers that were errors.
    errors: String,
    /// The latency histogram's buckets, selected for the deployment.
    buckets: String,
    /// The label naming the version, where the metrics carry one (or,
    /// for one deployment's canary, the predictor).
    version_label: Option<&'static str>,
}

impl Promql {
    pub fn for_binding(binding: &DeploymentBinding, labels: &SeldonLabels) -> Result<Self> {
        Ok(match binding.target {
            ServingTarget::Local => {
                let selector = format!("deployment={}", string_literal(&binding.model));
                Self {
                    requests: format!("slipway_serve_requests_total{{{selector}}}"),
                    errors: format!("slipway_serve_requests_total{{{selector},code=~\"4xx|5xx\"}}"),
                    buckets: format!("slipway_serve_request_duration_seconds_bucket{{{selector}}}"),
                    version_label: Some("version"),
                }
            }
            ServingTarget::Seldon => {
                let selector = format!(
                    "{}={},{}={}",
                    labels.deployment,
                    string_literal(&binding.object_name()),
                    labels.namespace,
                    string_literal(binding.namespace.as_deref().unwrap_or_default()),
                );
                let metric = "seldon_api_executor_server_requests_seconds";
                Self {
                    requests: format!("{metric}_count{{{selector}}}"),
                    errors: format!("{metric}_count{{{selector},code!~\"2..\"}}"),
                    buckets: format!("{metric}_bucket{{{selector}}}"),
                    version_label: None,
                }
            }
            // Their runtimes' metrics differ in name and labels per install
            // (MLServer's per model, Seldon Core 2's latency per server):
            // read with the rollout's gates, not guessed here.
            ServingTarget::Kserve | ServingTarget::SeldonCore2 => {
                return Err(crate::error::Error::Unavailable(format!(
                    "Slipway does not read the traffic of {} deployments from Prometheus",
                    binding.target.as_str()
                )));
            }
        })
    }

    /// The same numbers by Seldon Core v1 predictor: a canary is a
    /// predictor of its own beside the stable one.
    pub fn by_predictor(self) -> Self {
        Self {
            version_label: Some(SELDON_PREDICTOR_LABEL),
            ..self
        }
    }

    fn by(&self, per_version: bool) -> &'static str {
        match (per_version, self.version_label) {
            (true, Some(label)) => label,
            _ => "",
        }
    }

    pub fn rate(&self, window_secs: i64, per_version: bool) -> String {
        format!(
            "sum by ({}) (rate({}[{window_secs}s]))",
            self.by(per_version),
            self.requests
        )
    }

    pub fn error_rate(&self, window_secs: i64, per_version: bool) -> String {
        format!(
            "sum by ({}) (rate({}[{window_secs}s]))",
            self.by(per_version),
            self.errors
        )
    }

    /// Requests (or only errors) over the window.
    pub fn increase(&self, window_secs: i64, only_errors: bool) -> String {
        let counter = if only_errors {
            &self.errors
        } else {
            &self.requests
        };
        format!(
            "sum by ({}) (increase({counter}[{window_secs}s]))",
            self.by(true)
        )
    }

    pub fn quantile(&self, q: f64, window_secs: i64, per_version: bool) -> String {
        let by = match self.by(per_version) {
            "" => "le".to_string(),
            label => format!("{label}, le"),
        };
        format!(
            "histogram_quantile({q}, sum by ({by}) (rate({}[{window_secs}s])))",
            self.buckets
        )
    }
}

fn no_prometheus() -> Error {
    Error::Unavailable("no Prometheus is configured (SLIPWAY_PROMETHEUS_URL)".into())
}

fn side_of(version: &str, numbers: &PredictorNumbers, window_secs: f64) -> SideNumbers {
    SideNumbers {
        version: version.to_string(),
        requests: numbers.requests.round() as u64,
        over_window: TrafficPoint {
            at_ms: crate::store::now_ms(),
            requests_per_second: numbers.requests / window_secs.max(1.0),
            error_percent: (numbers.requests > 0.0)
                .then(|| numbers.errors / numbers.requests * 100.0),
            p50_ms: numbers.p50_ms,
            p95_ms: numbers.p95_ms,
            p99_ms: numbers.p99_ms,
        },
    }
}

fn now_of(total: &Stats, window_ms: i64) -> TrafficNow {
    TrafficNow {
        requests_per_second: total.requests as f64 / (window_ms as f64 / 1000.0),
        error_percent: error_percent(total),
        p99_ms: millis(total.quantile(0.99)),
    }
}

fn point_of(at_ms: i64, stats: &Stats, step_ms: i64) -> TrafficPoint {
    TrafficPoint {
        at_ms,
        requests_per_second: stats.requests as f64 / (step_ms as f64 / 1000.0),
        error_percent: error_percent(stats),
        p50_ms: millis(stats.quantile(0.5)),
        p95_ms: millis(stats.quantile(0.95)),
        p99_ms: millis(stats.quantile(0.99)),
    }
}

fn idle_point(at_ms: i64) -> TrafficPoint {
    TrafficPoint {
        at_ms,
        requests_per_second: 0.0,
        error_percent: None,
        p50_ms: None,
        p95_ms: None,
        p99_ms: None,
    }
}

fn error_percent(stats: &Stats) -> Option<f64> {
    (stats.requests > 0).then(|| stats.errors() as f64 / stats.requests as f64 * 100.0)
}

fn millis(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|seconds| seconds * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(target: &str) -> DeploymentBinding {
        toml::from_str(&format!(
            "model = \"fraud \\\"x\\\"\"\ntarget = \"{target}\"\nnamespace = \"models\"\nname = \"fraud\""
        ))
        .unwrap()
    }

    #[test]
    fn local_queries_read_the_gateways_metrics_by_version() {
        let promql = Promql::for_binding(&binding("local"), &SeldonLabels::default()).unwrap();
        assert_eq!(
            promql.rate(60, true),
            r#"sum by (version) (rate(slipway_serve_requests_total{deployment="fraud \"x\""}[60s]))"#
        );
        assert_eq!(
            promql.quantile(0.99, 60, false),
            r#"histogram_quantile(0.99, sum by (le) (rate(slipway_serve_request_duration_seconds_bucket{deployment="fraud \"x\""}[60s])))"#
        );
    }

    #[test]
    fn seldon_queries_read_the_executor_histogram_with_the_configured_labels() {
        let labels = SeldonLabels {
            deployment: "seldon_deployment".into(),
            namespace: "kubernetes_namespace".into(),
        };
        let promql = Promql::for_binding(&binding("seldon"), &labels).unwrap();
        assert_eq!(
            promql.error_rate(60, true),
            r#"sum by () (rate(seldon_api_executor_server_requests_seconds_count{seldon_deployment="fraud",kubernetes_namespace="models",code!~"2.."}[60s]))"#
        );
        assert_eq!(
            promql.quantile(0.5, 60, true),
            r#"histogram_quantile(0.5, sum by (le) (rate(seldon_api_executor_server_requests_seconds_bucket{seldon_deployment="fraud",kubernetes_namespace="models"}[60s])))"#
        );
    }

    #[test]
    fn each_moment_belongs_to_the_version_that_served_then() {
        let event = |version: &str, at: i64, outcome: DeploymentOutcome| DeploymentEvent {
            id: String::new(),
            model: "m".into(),
            version: Some(version.into()),
            previous_version: None,
            cause: "promote".into(),
            actor: "a".into(),
            started_ms: at - 5,
            ready_ms: Some(at),
            outcome,
            message: String::new(),
        };
        // Newest first, as the store gives them; a failed change serves nothing.
        let served = ServedVersions::from_history(&[
            event("3", 300, DeploymentOutcome::Failed),
            event("2", 200, DeploymentOutcome::Serving),
            event("1", 100, DeploymentOutcome::Serving),
        ]);
        let at = |ms| served.at(ms);
        assert_eq!(at(150).as_deref(), Some("1"));
        assert_eq!(at(200).as_deref(), Some("2"));
        assert_eq!(at(350).as_deref(), Some("2"));
        // Before the history begins: its first version.
        assert_eq!(at(50).as_deref(), Some("1"));
    }

    #[test]
    fn the_bounds_grow_by_a_quarter_from_half_a_millisecond() {
        use crate::metrics::LATENCY_BOUNDS_SECONDS;
        assert_eq!(LATENCY_BOUNDS_SECONDS[0], 0.0005);
        assert!((LATENCY_BOUNDS_SECONDS[47] - 17.9).abs() < 0.1);
        assert_eq!(std::mem::size_of::<Stats>(), 224);
    }
}
