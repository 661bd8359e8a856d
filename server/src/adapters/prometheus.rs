//! Prometheus' HTTP API: instant queries (`/api/v1/query`) and range
//! queries (`/api/v1/query_range`), each within a deadline, so a Prometheus
//! that is down or slow costs a page a sentence, not its answer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Prometheus {
    /// With the credentials it may carry (reqwest sends them as basic auth).
    base: String,
    /// Without them: what pages and errors name.
    shown: String,
    http: reqwest::Client,
}

/// One series' labels and its value (an instant query).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series' labels and its values at each step (a range query).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    /// (epoch milliseconds, value); steps without a value are left out.
    pub points: Vec<(i64, f64)>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorItem>),
    Matrix(Vec<MatrixItem>),
    Scalar((f64, String)),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

impl Prometheus {
    /// `base`: Prometheus' own address (`http://prometheus:9090`); every
    /// query is given up after `deadline`.
    pub fn new(base: &url::Url, deadline: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(deadline)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| Error::Config(format!("HTTP client for Prometheus: {err}")))?;
        let mut shown = base.clone();
        // Fails only for URLs that cannot carry credentials anyway.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        Ok(Self {
            base: base.as_str().trim_end_matches('/').to_string(),
            shown: shown.as_str().trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn address(&self) -> &str {
        &self.shown
    }

    /// The value of `promql` at `at_ms`, per series; NaN values (a ratio of
    /// nothing to nothing) left out.
    pub async fn query(&self, promql: &str, at_ms: i64) -> Result<Vec<Sample>> {
        let time = seconds_text(at_ms);
        match self
            .get("query", &[("query", promql), ("time", &time)])
            .await?
        {
            Data::Vector(items) => Ok(items
                .into_iter()
                .filter_map(|item| {
                    finite(&item.value.1).map(|value| Sample {
                        labels: item.metric,
                        value,
                    })
                })
                .collect()),
            // A query of a team's own may be `scalar(…)`: one number, no labels.
            Data::Scalar((_, value)) => Ok(finite(&value)
                .map(|value| Sample {
                    labels: BTreeMap::new(),
                    value,
                })
                .into_iter()
                .collect()),
            Data::String(_) | Data::Matrix(_) => Err(self.unexpected(promql)),
        }
    }

    /// `promql` from `start_ms` to `end_ms` every `step_ms`, per series.
    pub async fn query_range(
        &self,
        promql: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<Series>> {
        let (start, end) = (seconds_text(start_ms), seconds_text(end_ms));
        let step = seconds_text(step_ms);
        let query = [
            ("query", promql),
            ("start", &start),
            ("end", &end),
            ("step", &step),
        ];
        match self.get("query_range", &query).await? {
            Data::Matrix(items) => Ok(items
                .into_iter()
                .map(|item| Series {
                    labels: item.metric,
                    points: item
                        .values
                        .into_iter()
                        .filter_map(|(at, value)| {
                            finite(&value).map(|value| ((at * 1000.0).round() as i64, value))
                        })
                        .collect(),
                })
                .collect()),
            Data::Scalar(_) | Data::String(_) | Data::Vector(_) => Err(self.unexpected(promql)),
        }
    }

    async fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Data> {
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let unavailable =
            |why: String| Error::Unavailable(format!("Prometheus at {}: {why}", self.shown));
        let response = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .map_err(|err| {
                unavailable(if err.is_timeout() {
                    "no answer in time".to_string()
                } else if err.is_connect() {
                    "nothing answers there".to_string()
                } else {
                    "the request failed".to_string()
                })
            })?;
        let status = response.status();
        let answer: Answer = response.json().await.map_err(|err| {
            unavailable(if err.is_timeout() {
                "no answer in time".to_string()
            } else {
                format!("answered {status} with something other than its API's JSON")
            })
        })?;
        match (answer.status.as_str(), answer.data) {
            ("success", Some(data)) => Ok(data),
            _ => Err(unavailable(format!(
                "refused a query: {}",
                answer.error.unwrap_or_else(|| status.to_string())
            ))),
        }
    }

    fn unexpected(&self, promql: &str) -> Error {
        Error::Unavailable(format!(
            "Prometheus at {} answered {promql} with an unexpected kind of result",
            self.shown
        ))
    }
}

/// Prometheus takes times as seconds, with a fraction.
fn seconds_text(millis: i64) -> String {
    format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000))
}

fn finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// A PromQL string literal holding `value`: quotes and backslashes escaped,
/// so a name cannot end the selector.
pub fn string_literal(value: &str) -> String {
    let mut literal = String::with_capacity(value.len() + 2);
    literal.push('"');
    for character in value.chars() {
        match character {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            '\n' => literal.push_str("\\n"),
            other => literal.push(other),
        }
    }
    literal.push('"');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_leave_their_literal() {
        assert_eq!(string_literal(r#"a"}or{x=""#), r#""a\"}or{x=\"""#);
        assert_eq!(string_literal("a\\b"), r#""a\\b""#);
    }

    #[test]
    fn times_are_seconds_with_millis() {
        assert_eq!(seconds_text(1_700_000_000_123), "1700000000.123");
        assert_eq!(seconds_text(30_000), "30.000");
    }
}
