//! MLflow webhooks (3.3+): registering Slipway's receiver with MLflow, and
//! accepting deliveries only when signed with the shared secret, recent,
//! and not seen before.
//!
//! MLflow signs `"{delivery_id}.{timestamp}.{raw body}"` with HMAC-SHA256
//! and sends `X-MLflow-Signature: v1,<base64>`, `X-MLflow-Timestamp` (Unix
//! seconds) and `X-MLflow-Delivery-Id`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::Deserialize;
use sha2::Sha256;

use super::{MlflowClient, MlflowError};
use crate::store::deliveries::Delivery;

pub const SIGNATURE_HEADER: &str = "x-mlflow-signature";
pub const TIMESTAMP_HEADER: &str = "x-mlflow-timestamp";
pub const DELIVERY_ID_HEADER: &str = "x-mlflow-delivery-id";
/// Deliveries older (or further in the future) than this are refused.
pub const MAX_AGE_SECS: i64 = 300;
/// How long accepted delivery ids are kept to refuse replays: twice the
/// oldest a delivery may be.
pub const REPLAY_WINDOW_MS: i64 = 2 * MAX_AGE_SECS * 1000;
/// What Slipway's webhooks in MLflow are named after: `slipway-<install
/// id>`, so that two installs on one MLflow (staging, production) each find
/// their own again. Before install ids, the one webhook was named this.
pub const WEBHOOK_NAME: &str = "slipway";
/// What can change which version should serve. Stage transitions have no
/// event; the reconciler's poll covers them.
pub const EVENTS: &[(&str, &str)] = &[
    ("MODEL_VERSION_ALIAS", "CREATED"),
    ("MODEL_VERSION_ALIAS", "DELETED"),
    ("MODEL_VERSION", "CREATED"),
];

/// Why a delivery was refused. The receiver answers 401 for signatures,
/// 400 for the rest, and logs it; nothing else happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing or unreadable header {0}")]
    MissingHeader(&'static str),
    #[error("the signature does not match")]
    BadSignature,
    #[error("timestamp {age_secs} s away from now, outside the {MAX_AGE_SECS} s window")]
    Stale { age_secs: i64 },
    #[error("delivery {0} was already received")]
    Replayed(String),
    #[error("malformed payload: {0}")]
    Malformed(String),
}

impl Rejection {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Rejection::MissingHeader(_) | Rejection::BadSignature => http::StatusCode::UNAUTHORIZED,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

#[derive(Clone)]
pub struct Verifier {
    secret: Vec<u8>,
}

#[derive(Deserialize)]
struct Payload {
    entity: String,
    action: String,
    data: PayloadData,
}

#[derive(Deserialize)]
struct PayloadData {
    name: String,
}

impl Verifier {
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
        }
    }

    /// Checks headers, signature and age, then reads the payload. The
    /// replay check needs the store and happens after this.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Delivery, Rejection> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .filter(|value| !value.is_empty())
                .ok_or(Rejection::MissingHeader(name))
        };
        let signature = header(SIGNATURE_HEADER)?;
        let timestamp = header(TIMESTAMP_HEADER)?;
        let delivery_id = header(DELIVERY_ID_HEADER)?;
        let signed = signature
            .strip_prefix("v1,")
            .and_then(|encoded| STANDARD.decode(encoded).ok())
            .ok_or(Rejection::BadSignature)?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(delivery_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        // Constant time, so timing does not leak how much of a guess was right.
        mac.verify_slice(&signed)
            .map_err(|_| Rejection::BadSignature)?;
        let sent: i64 = timestamp
            .parse()
            .map_err(|_| Rejection::MissingHeader(TIMESTAMP_HEADER))?;
        let age_secs = now_secs - sent;
        if age_secs.abs() > MAX_AGE_SECS {
            return Err(Rejection::Stale { age_secs });
        }
        let payload: Payload =
            serde_json::from_slice(body).map_err(|err| Rejection::Malformed(err.to_string()))?;
        Ok(Delivery {
            id: delivery_id.to_string(),
            entity: payload.entity,
            action: payload.action,
            model: payload.data.name,
        })
    }
}

/// What [`register`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Registered {
    /// MLflow will deliver to Slipway: the webhook's id.
    Webhook(String),
    /// This MLflow has no webhooks (they came in MLflow 3.3); promotions made
    /// elsewhere are found by the reconciler's poll alone.
    Unsupported,
}

/// The webhook an install of Slipway has MLflow call.
#[derive(Clone)]
pub struct Registration {
    /// `slipway-<install id>`.
    pub name: String,
    /// Where MLflow delivers: this install's `/webhooks/mlflow`.
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Registration {
    pub fn new(install_id: &str, public_url: &url::Url, secret: &str) -> Self {
        Self {
            name: format!("{WEBHOOK_NAME}-{install_id}"),
            url: public_url
                .join("webhooks/mlflow")
                .expect("a path joins any http URL")
                .to_string(),
            secret: secret.into(),
        }
    }
}

/// Makes sure MLflow has this install's webhook pointing at its URL with
/// its secret and the events above: creates it, or updates the one of the
/// same name (or, from before install ids, the one named `slipway` that
/// delivers to the same URL). Safe to run at every start.
pub async fn register(
    mlflow: &MlflowClient,
    registration: &Registration,
) -> Result<Registered, MlflowError> {
    let events: Vec<_> = EVENTS
        .iter()
        .map(|(entity, action)| serde_json::json!({"entity": entity, "action": action}))
        .collect();
    let existing = match mlflow.list_webhooks().await {
        Ok(existing) => existing,
        // The list takes no ids: a 404 means the endpoint itself is missing.
        Err(MlflowError::Api { status: 404, .. }) => return Ok(Registered::Unsupported),
        Err(err) => return Err(err),
    };
    let body = serde_json::json!({
        "name": registration.name,
        "url": registration.url,
        "events": events,
        "secret": registration.secret,
        "status": "ACTIVE",
        "description": "Slipway: deploy promotions made outside Slipway at once",
    });
    let own = existing
        .iter()
        .find(|webhook| webhook.name == registration.name)
        .or_else(|| {
            existing
                .iter()
                .find(|webhook| webhook.name == WEBHOOK_NAME && webhook.url == registration.url)
        });
    match own {
        Some(webhook) => {
            mlflow.update_webhook(&webhook.webhook_id, &body).await?;
            Ok(Registered::Webhook(webhook.webhook_id.clone()))
        }
        None => Ok(Registered::Webhook(mlflow.create_webhook(&body).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signed as MLflow's `_generate_hmac_signature` does.
    fn signed(secret: &str, id: &str, timestamp: i64, body: &str) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        headers.insert(TIMESTAMP_HEADER, timestamp.to_string().parse().unwrap());
        headers.insert(DELIVERY_ID_HEADER, id.parse().unwrap());
        headers
    }

    const BODY: &str = r#"{"entity": "model_version_alias", "action": "created", "timestamp": "2026-11-26T09:00:00+00:00", "data": {"name": "iris", "alias": "production", "version": "3"}}"#;
    const NOW: i64 = 1_795_680_000;

    #[test]
    fn a_delivery_signed_with_the_secret_is_accepted() {
        let verifier = Verifier::new("s3cret");
        let delivery = verifier
            .verify(
                &signed("s3cret", "d-1", NOW - 2, BODY),
                BODY.as_bytes(),
                NOW,
            )
            .unwrap();
        assert_eq!(
            delivery,
            Delivery {
                id: "d-1".into(),
                entity: "model_version_alias".into(),
                action: "created".into(),
                model: "iris".into()
            }
        );
    }

    #[test]
    fn wrong_secret_changed_body_or_swapped_id_is_a_bad_signature() {
        let verifier = Verifier::new("s3cret");
        let headers = signed("other", "d-1", NOW, BODY);
        assert_eq!(
            verifier.verify(&headers, BODY.as_bytes(), NOW),
            Err(Rejection::BadSignature)
        );
        let headers = signed("s3cret", "d-1", NOW, BODY);
        let tampered = BODY.replace("iris", "wine");
        assert_eq!(
            verifier.verify(&headers, tampered.as_bytes(), NOW),
            Err(Rejection::BadSignature)
        );
        let mut swapped = headers.clone();
        swapped.insert(DELIVERY_ID_HEADER, "d-2".parse().unwrap());
        assert_eq!(
            verifier.verify(&swapped, BODY.as_bytes(), NOW),
            Err(Rejection::BadSignature)
        );
        let mut garbled = headers.clone();
        garbled.insert(SIGNATURE_HEADER, "v1,not base64!".parse().unwrap());
        assert_eq!(
            verifier.verify(&garbled, BODY.as_bytes(), NOW),
            Err(Rejection::BadSignature)
        );
        let mut unsigned = headers;
        unsigned.remove(SIGNATURE_HEADER);
        assert_eq!(
            verifier.verify(&unsigned, BODY.as_bytes(), NOW),
            Err(Rejection::MissingHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn deliveries_outside_the_five_minute_window_are_stale() {
        let verifier = Verifier::new("s3cret");
        let old = signed("s3cret", "d-1", NOW - 301, BODY);
        assert_eq!(
            verifier.verify(&old, BODY.as_bytes(), NOW),
            Err(Rejection::Stale { age_secs: 301 })
        );
        let future = signed("s3cret", "d-1", NOW + 400, BODY);
        assert_eq!(
            verifier.verify(&future, BODY.as_bytes(), NOW),
            Err(Rejection::Stale { age_secs: -400 })
        );
        let edge = signed("s3cret", "d-1", NOW - 300, BODY);
        assert!(verifier.verify(&edge, BODY.as_bytes(), NOW).is_ok());
    }

    #[test]
    fn a_signed_but_malformed_payload_is_refused() {
        let verifier = Verifier::new("s3cret");
        for body in [
            "{not json",
            r#"{"entity": "model_version"}"#,
            r#"{"entity": "x", "action": "y", "data": {}}"#,
        ] {
            let headers = signed("s3cret", "d-1", NOW, body);
            let rejection = verifier.verify(&headers, body.as_bytes(), NOW).unwrap_err();
            assert!(
                matches!(rejection, Rejection::Malformed(_)),
                "{body}: {rejection:?}"
            );
            assert_eq!(rejection.status(), http::StatusCode::BAD_REQUEST);
        }
    }
}
