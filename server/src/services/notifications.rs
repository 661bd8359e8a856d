//! Notifications out: admins name channels (a generic webhook, signed with
//! HMAC-SHA256, or a Slack-compatible incoming webhook) and the events each
//! hears of. An event is written to the outbox where it happens (`tell`),
//! so the action never waits for a receiver; the leader sends what is due,
//! retries with back-off, and keeps each attempt in the delivery log.
//! Delivery is at least once: a receiver dedupes by `X-Slipway-Delivery`.

use std::time::Duration;

use app::access::{Action, User, authorize};
use app::model::{
    AuditAction, ChannelRequest, FieldErrors, Notification, NotificationChannel, NotificationEvent,
    NotificationsPage,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use super::audit::Audit;
use crate::error::{Error, Invalid, Result};
use crate::store::Store;
use crate::store::notifications::{Channel, DueDelivery};
use crate::store::now_ms;

pub const KIND_WEBHOOK: &str = "webhook";
pub const KIND_SLACK: &str = "slack";
/// Attempts before a delivery is given up (with the default 10 s back-off
/// doubling to at most 15 minutes: about an hour and a half).
const MAX_ATTEMPTS: i64 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// How long one receiver may take to answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries sent in one pass, side by side.
const BATCH: i64 = 20;
/// How long the delivery log keeps what ended.
const KEEP_FOR_MS: i64 = 30 * 24 * 3600 * 1000;
const MAX_ERROR_CHARS: usize = 500;

/// Puts `notification` in the outbox; a failure to do so is logged, never
/// the failure of the action that caused it.
pub async fn tell(store: &Store, notification: Notification) {
    if let Err(err) = store.enqueue_notification(&notification).await {
        tracing::warn!(error = %err, event = %notification.event, "queueing a notification");
    }
}

#[derive(Clone)]
pub struct Notifications {
    store: Store,
    audit: Audit,
    http: reqwest::Client,
    /// Where links in messages point (`--external-url`); without it, links
    /// are paths.
    external_url: Option<Url>,
    retry_after: Duration,
}

impl Notifications {
    pub fn new(store: Store, external_url: Option<Url>, retry_after: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            // The channel's URL is the destination; a redirect is not followed elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| Error::Internal(format!("an HTTP client: {err}")))?;
        Ok(Self {
            audit: Audit::new(store.clone()),
            store,
            http,
            external_url,
            retry_after,
        })
    }

    pub async fn page(&self, user: &User) -> Result<NotificationsPage> {
        authorize(user, Action::ManageNotifications)?;
        let channels = self
            .store
            .channels()
            .await?
            .into_iter()
            .map(|channel| NotificationChannel {
                destination: destination(&channel.url),
                signed: !channel.secret.is_empty(),
                id: channel.id,
                name: channel.name,
                kind: channel.kind,
                events: channel.events,
                created_by: channel.created_by,
                created_ms: channel.created_ms,
            })
            .collect();
        Ok(NotificationsPage {
            channels,
            deliveries: self.store.recent_deliveries(200).await?,
        })
    }

    pub async fn add_channel(&self, user: &User, request: &ChannelRequest) -> Result<()> {
        authorize(user, Action::ManageNotifications)?;
        let channel = checked(request, &user.actor())?;
        if !self.store.insert_channel(&channel).await? {
            return Err(Error::Conflict(format!(
                "A channel named {} exists already.",
                channel.name
            )));
        }
        let events: Vec<&str> = channel.events.iter().map(|event| event.as_str()).collect();
        self.audit
            .record(
                &user.actor(),
                AuditAction::Notifications,
                &format!("channel:{}", channel.name),
                &format!(
                    "added {} channel to {} for {}",
                    channel.kind,
                    destination(&channel.url),
                    events.join(", ")
                ),
            )
            .await
    }

    pub async fn delete_channel(&self, user: &User, id: &str) -> Result<()> {
        authorize(user, Action::ManageNotifications)?;
        let name = self
            .store
            .delete_channel(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no notification channel {id}")))?;
        self.audit
            .record(
                &user.actor(),
                AuditAction::Notifications,
                &format!("channel:{name}"),
                "deleted, with what it had still to send",
            )
            .await
    }

    /// Sends what is due, side by side; how many were tried.
    pub async fn deliver_due(&self) -> Result<usize> {
        let due = self.store.due_deliveries(BATCH).await?;
        let tried = due.len();
        let sends = due.into_iter().map(|delivery| async move {
            let sent = self.send(&delivery).await;
            let attempts = delivery.attempts + 1;
            let retry_at = (attempts < MAX_ATTEMPTS).then(|| now_ms() + self.backoff(attempts));
            match &sent {
                Ok(()) => tracing::debug!(channel = %delivery.channel.name, event = %delivery.notification.event, "notification delivered"),
                Err(why) => tracing::warn!(channel = %delivery.channel.name, event = %delivery.notification.event, attempts, error = %why, "notification not delivered"),
            }
            let error = sent.err().map(|why| clipped(&why));
            if let Err(err) = self
                .store
                .record_delivery_attempt(&delivery.id, error.as_deref(), retry_at)
                .await
            {
                tracing::warn!(error = %err, "recording a notification attempt");
            }
        });
        futures::future::join_all(sends).await;
        Ok(tried)
    }

    /// Runs `deliver_due` every second while this replica leads.
    pub async fn keep_delivering(&self) {
        let mut sweep_at = 0;
        loop {
            if let Err(err) = self.deliver_due().await {
                tracing::warn!(error = %err, "sending notifications");
            }
            if now_ms() >= sweep_at {
                if let Err(err) = self.store.forget_deliveries(now_ms() - KEEP_FOR_MS).await {
                    tracing::warn!(error = %err, "forgetting old notification deliveries");
                }
                sweep_at = now_ms() + 3600 * 1000;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn backoff(&self, attempts: i64) -> i64 {
        let factor = 2u32.saturating_pow(attempts.clamp(1, 30) as u32 - 1);
        self.retry_after
            .saturating_mul(factor)
            .min(MAX_BACKOFF)
            .as_millis() as i64
    }

    async fn send(&self, delivery: &DueDelivery) -> std::result::Result<(), String> {
        let link = self.link(&delivery.notification.link);
        let body = match delivery.channel.kind.as_str() {
            KIND_SLACK => slack_body(&delivery.notification, &link),
            _ => webhook_body(&delivery.notification, &delivery.id, &link),
        };
        let mut request = self
            .http
            .post(&delivery.channel.url)
            .header("content-type", "application/json")
            .header("user-agent", "Slipway")
            .header("x-slipway-event", delivery.notification.event.as_str())
            .header("x-slipway-delivery", &delivery.id);
        if !delivery.channel.secret.is_empty() {
            request = request.header(
                "x-slipway-signature-256",
                signature(&delivery.channel.secret, body.as_bytes()),
            );
        }
        let response = request.body(body).send().await.map_err(|err| {
            // reqwest's error names the URL, which may hold a credential.
            if err.is_timeout() {
                format!("no answer within {} s", SEND_TIMEOUT.as_secs())
            } else if err.is_connect() {
                "nothing answers there".to_string()
            } else {
                "the request failed".to_string()
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(format!("HTTP {}: {}", status.as_u16(), text.trim()))
    }

    fn link(&self, path: &str) -> String {
        match &self.external_url {
            Some(base) => base
                .join(path)
                .map(String::from)
                .unwrap_or_else(|_| path.to_string()),
            None => path.to_string(),
        }
    }
}

/// `sha256=<hex>` of the body, as GitHub signs its webhooks.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn webhook_body(notification: &Notification, delivery: &str, link: &str) -> String {
    let mut value = serde_json::to_value(notification).unwrap_or_default();
    value["delivery"] = delivery.into();
    value["url"] = link.into();
    value.to_string()
}

/// A Slack-compatible message: the sentence, and a link back.
fn slack_body(notification: &Notification, link: &str) -> String {
    // Slack's mrkdwn treats these three as markup.
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let text = if link.starts_with("http") {
        format!("{} <{}|Open in Slipway>", escape(&notification.text), link)
    } else {
        escape(&notification.text)
    };
    serde_json::json!({ "text": text }).to_string()
}

/// A URL as it may be shown: scheme and host, the rest is the receiver's secret.
fn destination(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => format!(
            "{}://{}{}/…",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port()
                .map(|port| format!(":{port}"))
                .unwrap_or_default()
        ),
        Err(_) => "?".into(),
    }
}

fn clipped(text: &str) -> String {
    text.chars().take(MAX_ERROR_CHARS).collect()
}

fn checked(request: &ChannelRequest, actor: &str) -> Result<Channel> {
    let mut fields = FieldErrors::new();
    let name = request.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ' '))
    {
        fields.insert(
            "name".into(),
            "1 to 64 of letters, digits, spaces, '.', '_', '-'".into(),
        );
    }
    let kind = request.kind.trim();
    if kind != KIND_WEBHOOK && kind != KIND_SLACK {
        fields.insert("kind".into(), "webhook or slack".into());
    }
    let url = request.url.trim();
    match Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
        _ => {
            fields.insert(
                "url".into(),
                "an http:// or https:// URL the receiver listens at".into(),
            );
        }
    }
    let events: Vec<NotificationEvent> = request
        .events
        .iter()
        .filter_map(|event| NotificationEvent::parse(event))
        .collect();
    if events.is_empty() || events.len() != request.events.len() {
        fields.insert("events".into(), "tick at least one event".into());
    }
    if request.secret.len() > 200 {
        fields.insert("secret".into(), "at most 200 characters".into());
    }
    if !fields.is_empty() {
        return Err(Error::Invalid(Invalid {
            problems: Vec::new(),
            fields,
        }));
    }
    Ok(Channel {
        id: uuid::Uuid::new_v4().simple().to_string(),
        name: name.to_string(),
        kind: kind.to_string(),
        url: url.to_string(),
        // Slack's URL is its credential; it signs nothing.
        secret: if kind == KIND_SLACK {
            String::new()
        } else {
            request.secret.clone()
        },
        events,
        created_by: actor.to_string(),
        created_ms: now_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_githubs() {
        // GitHub's documented example: secret "It's a Secret to Everybody".
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn only_the_host_of_a_url_is_shown() {
        assert_eq!(
            destination("https://hooks.example.com/services/T000/B000/XXXX"),
            "https://hooks.example.com/…"
        );
        assert_eq!(
            destination("http://127.0.0.1:9/x?token=1"),
            "http://127.0.0.1:9/…"
        );
    }

    #[test]
    fn slack_messages_escape_markup_and_link_back() {
        let notification = Notification {
            event: NotificationEvent::DeploymentFailed,
            at_ms: 0,
            text: "a <b> & c".into(),
            link: "/deployments/a".into(),
            model: None,
            version: None,
            launch_id: None,
            request_id: None,
            run_id: None,
            actor: None,
        };
        let body: serde_json::Value = serde_json::from_str(&slack_body(
            &notification,
            "https://slipway.example/deployments/a",
        ))
        .unwrap();
        assert_eq!(
            body["text"],
            "a &lt;b&gt; &amp; c <https://slipway.example/deployments/a|Open in Slipway>"
        );
    }

    #[test]
    fn a_channel_request_is_checked_field_by_field() {
        let request = ChannelRequest {
            name: "".into(),
            kind: "email".into(),
            url: "ftp://x".into(),
            secret: String::new(),
            events: vec!["launch.failed".into(), "nonsense".into()],
        };
        let Err(Error::Invalid(invalid)) = checked(&request, "root") else {
            panic!("invalid");
        };
        let fields: Vec<&str> = invalid.fields.keys().map(String::as_str).collect();
        assert_eq!(fields, ["events", "kind", "name", "url"]);
    }
}
