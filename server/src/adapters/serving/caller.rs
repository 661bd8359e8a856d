//! Try it: one request from a user to what serves a model, and its answer.
//!
//! The address comes from the serving target, not from the user, but what
//! answers there is user code: it may redirect anywhere or answer without end,
//! so redirects are not followed and the answer is cut at `MAX_ANSWER_BYTES`.

use std::time::{Duration, Instant};

use app::model::Prediction;

use crate::error::{Error, Result};

/// The most of an answer that is read and shown.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The largest request body Try it sends.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct ModelCaller {
    http: reqwest::Client,
}

impl ModelCaller {
    pub fn new() -> Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ANSWER_TIMEOUT)
            .build()
            .map_err(|err| Error::Config(format!("HTTP client for Try it: {err}")))?;
        Ok(Self { http })
    }

    /// Posts `body` (JSON) to `address` with `headers`; the status, at
    /// most `MAX_ANSWER_BYTES` of the answer, and how long it took; or why
    /// there was no answer, in a sentence for the user.
    pub async fn ask(
        &self,
        address: &str,
        headers: &[(String, String)],
        body: &serde_json::Value,
    ) -> Result<Prediction> {
        let started = Instant::now();
        let mut request = self.http.post(address).json(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(|err| {
            Error::Unavailable(format!("{address} did not answer: {}", without_url(&err)))
        })?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(|err| {
            Error::Unavailable(format!(
                "reading the answer of {address}: {}",
                without_url(&err)
            ))
        })? {
            let room = MAX_ANSWER_BYTES - answer.len();
            if chunk.len() > room {
                answer.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            answer.extend_from_slice(&chunk);
        }
        Ok(Prediction {
            status,
            body: String::from_utf8_lossy(&answer).into_owned(),
            truncated,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}

/// reqwest's message without the URL it appends (the caller names the address).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    if err.is_timeout() {
        return format!("no answer within {} s", ANSWER_TIMEOUT.as_secs());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::post;

    /// A model server that redirects, and one that answers without end.
    async fn misbehaving_server() -> String {
        let endless = || async {
            let chunk = bytes::Bytes::from(vec![b'x'; 8192]);
            let stream =
                futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            axum::body::Body::from_stream(stream).into_response()
        };
        let app = axum::Router::new()
            .route(
                "/redirect",
                post(|| async { Redirect::temporary("/elsewhere") }),
            )
            .route("/elsewhere", post(|| async { "followed" }))
            .route(
                "/routed",
                post(|headers: axum::http::HeaderMap| async move {
                    format!("{:?}", headers.get("seldon-model"))
                }),
            )
            .route("/endless", post(endless));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn redirects_are_shown_not_followed() {
        let server = misbehaving_server().await;
        let caller = ModelCaller::new().unwrap();
        let answer = caller
            .ask(&format!("{server}/redirect"), &[], &serde_json::json!({}))
            .await
            .unwrap();
        assert_eq!(answer.status, 307);
        assert_ne!(answer.body, "followed");
    }

    #[tokio::test]
    async fn the_targets_headers_go_with_the_request() {
        let server = misbehaving_server().await;
        let caller = ModelCaller::new().unwrap();
        let headers = [("Seldon-Model".to_string(), "ranker".to_string())];
        let answer = caller
            .ask(
                &format!("{server}/routed"),
                &headers,
                &serde_json::json!({}),
            )
            .await
            .unwrap();
        assert_eq!(answer.body, r#"Some("ranker")"#);
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_cap() {
        let server = misbehaving_server().await;
        let caller = ModelCaller::new().unwrap();
        let answer = caller
            .ask(&format!("{server}/endless"), &[], &serde_json::json!({}))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert!(answer.truncated);
        assert_eq!(answer.body.len(), MAX_ANSWER_BYTES);
    }

    #[tokio::test]
    async fn nobody_listening_is_a_sentence() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}/invocations", listener.local_addr().unwrap());
        drop(listener);
        let caller = ModelCaller::new().unwrap();
        let err = caller
            .ask(&address, &[], &serde_json::json!({}))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{address} did not answer: ")),
            "{err}"
        );
        assert_eq!(err.matches(&address).count(), 1, "{err}");
    }
}
