//! The gateway's own record of traffic, so the embedded default shows
//! charts with no Prometheus: per deployment, 10-second buckets over the
//! last 24 hours, each holding per version the requests, the errors by class
//! and a latency histogram.
//!
//! Memory: a bucket is kept only when it saw a request: 32 bytes, and 240
//! per version that answered in it (its name and a [`Stats`] of 224 bytes).
//! A deployment with traffic in every bucket on one version keeps at most
//! 8,640 buckets, about 2.4 MB; a second version during a change adds 240
//! bytes per bucket of their overlap. Besides, per version ever served since
//! start, its running totals (240 bytes): a canary's checks read them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::metrics::LATENCY_BOUNDS_SECONDS;

pub const BUCKET_MS: i64 = 10_000;
pub const KEPT_MS: i64 = 24 * 3600 * 1000;
const MAX_BUCKETS: usize = (KEPT_MS / BUCKET_MS) as usize;
/// Histogram cells: one per bound, and one above the last.
pub const CELLS: usize = LATENCY_BOUNDS_SECONDS.len() + 1;

/// How an answer is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Success,
    ClientError,
    ServerError,
}

impl Answer {
    pub fn of_status(status: u16) -> Self {
        match status {
            500.. => Self::ServerError,
            400..500 => Self::ClientError,
            _ => Self::Success,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub latency: [u32; CELLS],
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            requests: 0,
            client_errors: 0,
            server_errors: 0,
            latency: [0; CELLS],
        }
    }
}

impl Stats {
    pub fn record(&mut self, answer: Answer, seconds: f64) {
        self.requests += 1;
        match answer {
            Answer::Success => {}
            Answer::ClientError => self.client_errors += 1,
            Answer::ServerError => self.server_errors += 1,
        }
        let cell = LATENCY_BOUNDS_SECONDS.partition_point(|bound| *bound < seconds);
        self.latency[cell] = self.latency[cell].saturating_add(1);
    }

    pub fn add(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        for (mine, theirs) in self.latency.iter_mut().zip(other.latency) {
            *mine = mine.saturating_add(theirs);
        }
    }

    /// What was added since `earlier`, a read of the same counts.
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut latency = self.latency;
        for (now, then) in latency.iter_mut().zip(earlier.latency) {
            *now = now.saturating_sub(then);
        }
        Stats {
            requests: self.requests.saturating_sub(earlier.requests),
            client_errors: self.client_errors.saturating_sub(earlier.client_errors),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            latency,
        }
    }

    pub fn errors(&self) -> u64 {
        self.client_errors + self.server_errors
    }

    /// The `q`-quantile of the latency in seconds, interpolated inside its
    /// cell as Prometheus' `histogram_quantile` does; `None` without requests.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|count| u64::from(*count)).sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (cell, count) in self.latency.iter().enumerate() {
            let count = u64::from(*count);
            if count > 0 && (below + count) as f64 >= rank {
                let Some(&upper) = LATENCY_BOUNDS_SECONDS.get(cell) else {
                    // Above the last bound: the last bound is all that is known.
                    return LATENCY_BOUNDS_SECONDS.last().copied();
                };
                let lower = if cell == 0 {
                    0.0
                } else {
                    LATENCY_BOUNDS_SECONDS[cell - 1]
                };
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * within);
            }
            below += count;
        }
        LATENCY_BOUNDS_SECONDS.last().copied()
    }
}

struct Bucket {
    start_ms: i64,
    versions: Vec<(Arc<str>, Stats)>,
}

/// Per version of one deployment, its running totals.
type VersionTotals = Vec<(Arc<str>, Stats)>;

/// What the gateway saw, per deployment. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct History {
    deployments: Arc<Mutex<HashMap<String, VecDeque<Bucket>>>>,
    /// Per deployment and version, everything since Slipway started (240
    /// bytes each): a canary's check takes the difference between two reads,
    /// exact to the request, where buckets would round to 10 seconds.
    ever: Arc<Mutex<HashMap<String, VersionTotals>>>,
}

impl History {
    pub fn record(
        &self,
        deployment: &str,
        version: &str,
        answer: Answer,
        seconds: f64,
        at_ms: i64,
    ) {
        {
            let mut ever = self.ever.lock().expect("traffic totals");
            let versions = ever.entry(deployment.to_string()).or_default();
            match versions.iter_mut().find(|(v, _)| &**v == version) {
                Some((_, stats)) => stats.record(answer, seconds),
                None => {
                    let mut stats = Stats::default();
                    stats.record(answer, seconds);
                    versions.push((Arc::from(version), stats));
                }
            }
        }
        let start_ms = at_ms - at_ms.rem_euclid(BUCKET_MS);
        let mut deployments = self.deployments.lock().expect("traffic history");
        let buckets = deployments.entry(deployment.to_string()).or_default();
        if buckets.back().is_none_or(|last| last.start_ms < start_ms) {
            buckets.push_back(Bucket {
                start_ms,
                versions: Vec::new(),
            });
        }
        // A request that ended in an earlier bucket than the newest (a slow
        // one, finishing after a faster one) counts in the newest.
        let bucket = buckets.back_mut().expect("just pushed");
        let stats = match bucket.versions.iter().position(|(v, _)| &**v == version) {
            Some(index) => &mut bucket.versions[index].1,
            None => {
                bucket.versions.push((Arc::from(version), Stats::default()));
                &mut bucket.versions.last_mut().expect("just pushed").1
            }
        };
        stats.record(answer, seconds);
        while buckets.len() > MAX_BUCKETS
            || buckets
                .front()
                .is_some_and(|first| first.start_ms <= at_ms - KEPT_MS)
        {
            buckets.pop_front();
        }
    }

    /// Per version, the sums over each `step_ms` from `from_ms` to `to_ms`:
    /// `(version, [(step's start, stats)])`, steps without a request left out.
    pub fn steps(
        &self,
        deployment: &str,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Vec<(String, Vec<(i64, Stats)>)> {
        let deployments = self.deployments.lock().expect("traffic history");
        let Some(buckets) = deployments.get(deployment) else {
            return Vec::new();
        };
        let mut by_version: Vec<(String, Vec<(i64, Stats)>)> = Vec::new();
        for bucket in buckets
            .iter()
            .filter(|bucket| bucket.start_ms >= from_ms && bucket.start_ms < to_ms)
        {
            let step = from_ms + (bucket.start_ms - from_ms) / step_ms * step_ms;
            for (version, stats) in &bucket.versions {
                let index = match by_version.iter().position(|(v, _)| v == &**version) {
                    Some(index) => index,
                    None => {
                        by_version.push((version.to_string(), Vec::new()));
                        by_version.len() - 1
                    }
                };
                let points = &mut by_version[index].1;
                match points.last_mut() {
                    Some((start, sum)) if *start == step => sum.add(stats),
                    _ => points.push((step, stats.clone())),
                }
            }
        }
        by_version
    }

    /// Per version, everything from `from_ms` on: one step over it all.
    pub fn totals(&self, deployment: &str, from_ms: i64) -> Vec<(String, Stats)> {
        self.steps(deployment, from_ms, i64::MAX, i64::MAX - from_ms)
            .into_iter()
            .map(|(version, steps)| {
                let mut total = Stats::default();
                for (_, stats) in &steps {
                    total.add(stats);
                }
                (version, total)
            })
            .collect()
    }

    /// Everything `version` of `deployment` answered since Slipway started.
    pub fn ever(&self, deployment: &str, version: &str) -> Stats {
        self.ever
            .lock()
            .expect("traffic totals")
            .get(deployment)
            .and_then(|versions| versions.iter().find(|(v, _)| &**v == version))
            .map(|(_, stats)| stats.clone())
            .unwrap_or_default()
    }

    /// The deployment's record goes with it.
    pub fn forget(&self, deployment: &str) {
        self.deployments
            .lock()
            .expect("traffic history")
            .remove(deployment);
        self.ever.lock().expect("traffic totals").remove(deployment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_cell_of_the_true_value() {
        let mut stats = Stats::default();
        for index in 0..1000 {
            // 1 ms … 100 ms, evenly.
            let seconds = 0.001 + 0.099 * f64::from(index) / 999.0;
            stats.record(Answer::Success, seconds);
        }
        for (q, truth) in [(0.5, 0.0505), (0.95, 0.09505), (0.99, 0.09901)] {
            let found = stats.quantile(q).unwrap();
            // Cells grow by a quarter: the answer is within one cell.
            assert!(
                found / truth < 1.25 && truth / found < 1.25,
                "q{q}: {found} vs {truth}"
            );
        }
        assert_eq!(Stats::default().quantile(0.99), None);
    }

    #[test]
    fn answers_are_counted_by_class_per_version_per_step() {
        let history = History::default();
        let t0 = 1_000_000_000_000;
        history.record("m", "1", Answer::Success, 0.01, t0);
        history.record("m", "1", Answer::ClientError, 0.01, t0 + 1);
        history.record("m", "2", Answer::ServerError, 0.01, t0 + 25_000);
        history.record("m", "2", Answer::Success, 0.01, t0 + 61_000);
        let steps = history.steps("m", t0, t0 + 120_000, 60_000);
        assert_eq!(steps.len(), 2);
        let (version, points) = &steps[0];
        assert_eq!(version, "1");
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].1.requests, points[0].1.client_errors), (2, 1));
        let (version, points) = &steps[1];
        assert_eq!(version, "2");
        assert_eq!(
            points
                .iter()
                .map(|(start, stats)| (*start - t0, stats.requests, stats.server_errors))
                .collect::<Vec<_>>(),
            vec![(0, 1, 1), (60_000, 1, 0)]
        );
        let totals = history.totals("m", t0);
        assert_eq!(totals[1].1.requests, 2);
    }

    #[test]
    fn only_the_last_day_is_kept() {
        let history = History::default();
        let t0 = 1_000_000_000_000;
        history.record("m", "1", Answer::Success, 0.01, t0);
        history.record("m", "1", Answer::Success, 0.01, t0 + KEPT_MS + BUCKET_MS);
        assert_eq!(history.totals("m", 0)[0].1.requests, 1);
        let buckets = history.deployments.lock().unwrap()["m"].len();
        assert_eq!(buckets, 1);
    }
}
