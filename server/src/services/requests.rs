//! Filing a request a second person decides (four eyes) — a promotion, a
//! deployment's settings change, a canary's start: the audit entry, the
//! row, and the approvers told, the same way for each.

use app::access::User;
use app::model::{AuditAction, Notification, NotificationEvent, PromotionRequest};
use app::routes::approval_href;

use super::audit::{Audit, Outcome};
use crate::error::Result;
use crate::store::Store;
use crate::store::requests::NewRequest;

/// Files `new` as `user`'s: audited with `asked` ("v7: why"), and told to
/// the channels as `told` ("alice asks to …").
pub async fn file(
    store: &Store,
    user: &User,
    new: &NewRequest<'_>,
    asked: &str,
    told: String,
) -> Result<PromotionRequest> {
    let audit = Audit::new(store.clone())
        .begin(
            &user.actor(),
            AuditAction::PromotionRequest,
            &format!("model:{}", new.model),
            asked,
        )
        .await?;
    let request = store.insert_promotion_request(new).await?;
    audit
        .complete(Outcome::DoneWith(format!("request {}", request.id)))
        .await?;
    tracing::info!(model = %new.model, user = %user.name, request = %request.id, asked, "requested");
    super::notifications::tell(
        store,
        Notification {
            event: NotificationEvent::PromotionRequested,
            at_ms: crate::store::now_ms(),
            text: told,
            link: approval_href(&request.id),
            model: Some(new.model.to_string()),
            version: (!new.version.is_empty()).then(|| new.version.to_string()),
            launch_id: None,
            request_id: Some(request.id.clone()),
            run_id: None,
            actor: Some(user.actor()),
        },
    )
    .await;
    Ok(request)
}
