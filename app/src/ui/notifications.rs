//! Notifications (`/notifications`, admins): the channels Slipway tells of
//! events, a plain POST form to add one, and the delivery log with each
//! delivery's attempts and last error.

use leptos::prelude::*;
use leptos_meta::Title;

use super::list::{Results, data_table};
use super::parts::Field;
use super::{NotAllowed, format_millis, use_me};
use crate::access::{Action, authorize};
use crate::error::AppError;
use crate::model::{
    NotificationChannel, NotificationDelivery, NotificationEvent, NotificationsPage,
};
use crate::routes::{NOTIFICATIONS, delete_channel_href};
use crate::server_fns::get_notifications_page;

#[component]
pub fn NotificationsPage() -> impl IntoView {
    let page = Resource::new(|| (), |_| get_notifications_page());
    let me = use_me();
    view! {
        <Title text="Notifications"/>
        <section class="page">
            <header class="page-header"><h1>"Notifications"</h1></header>
            <super::Notice/>
            <Results loading_text="Loading channels…">
                {move || Suspend::new(async move {
                    let user = me.await?;
                    if let Err(denied) = authorize(&user, Action::ManageNotifications) {
                        return Ok::<_, AppError>(view! { <NotAllowed reason=denied.0/> }.into_any());
                    }
                    let page = page.await?;
                    Ok(view! { <NotificationsView page/> }.into_any())
                })}
            </Results>
        </section>
    }
}

#[component]
fn NotificationsView(page: NotificationsPage) -> impl IntoView {
    let events = NotificationEvent::ALL
        .iter()
        .map(|event| {
            view! {
                <label class="check">
                    <input type="checkbox" name="events" value=event.as_str()/>
                    " " {event.describe()} " (" <code>{event.as_str()}</code> ")"
                </label>
            }
        })
        .collect_view();
    view! {
        <h2>"Channels"</h2>
        {channel_table(page.channels)}
        <h2>"New channel"</h2>
        <p class="reason">
            "A webhook gets each event as JSON, signed with the secret like GitHub's ("
            <code>"X-Slipway-Signature-256: sha256=…"</code>
            "), and " <code>"X-Slipway-Delivery"</code>
            " to drop a repeat. A Slack-compatible incoming webhook gets a sentence with a link back. \
             One that does not answer 2xx is tried again, waiting longer each time."
        </p>
        <form class="channel-form" method="post" action=NOTIFICATIONS>
            <Field name="name" label="Name" error=None>
                <input id="name" name="name" required maxlength="64"/>
            </Field>
            <Field name="kind" label="Kind" error=None>
                <select id="kind" name="kind">
                    <option value="webhook">"Webhook (JSON, signed)"</option>
                    <option value="slack">"Slack-compatible incoming webhook"</option>
                </select>
            </Field>
            <Field name="url" label="URL (kept secret once saved)" error=None>
                <input id="url" name="url" type="url" required/>
            </Field>
            <Field name="secret" label="Signing secret (webhooks)" error=None>
                <input id="secret" name="secret" type="password" autocomplete="off"/>
            </Field>
            <fieldset class="events"><legend>"Events"</legend>{events}</fieldset>
            <button type="submit">"Add the channel"</button>
        </form>
        <h2>"Delivery log"</h2>
        {delivery_table(page.deliveries)}
    }
}

fn channel_table(channels: Vec<NotificationChannel>) -> AnyView {
    data_table(
        channels,
        "channels",
        &["Name", "Kind", "To", "Events", "Added", ""],
        "No channels yet: Slipway tells no one.",
        |channel| {
            let events: Vec<&str> = channel.events.iter().map(|event| event.as_str()).collect();
            let kind = if channel.signed {
                format!("{} (signed)", channel.kind)
            } else {
                channel.kind.clone()
            };
            view! {
                <tr data-channel=channel.name.clone()>
                    <td>{channel.name.clone()}</td>
                    <td>{kind}</td>
                    <td><code>{channel.destination.clone()}</code></td>
                    <td>{events.join(", ")}</td>
                    <td>{format!("{} by {}", format_millis(Some(channel.created_ms)), channel.created_by)}</td>
                    <td>
                        <form method="post" action=delete_channel_href(&channel.id) class="inline">
                            <button type="submit" class="danger">"Delete"</button>
                        </form>
                    </td>
                </tr>
            }
        },
    )
}

fn delivery_table(deliveries: Vec<NotificationDelivery>) -> AnyView {
    data_table(
        deliveries,
        "deliveries",
        &[
            "When",
            "Channel",
            "Event",
            "What",
            "State",
            "Attempts",
            "Last error",
        ],
        "Nothing sent yet.",
        |delivery| {
            let state = match delivery.state.as_str() {
                "pending" if delivery.attempts > 0 => format!(
                    "retrying at {}",
                    crate::time::format_clock(delivery.next_attempt_ms)
                ),
                "delivered" => format!("delivered {}", format_millis(delivery.delivered_ms)),
                other => other.to_string(),
            };
            view! {
                <tr data-delivery=delivery.id.clone() data-state=delivery.state.clone()>
                    <td>{format_millis(Some(delivery.created_ms))}</td>
                    <td>{delivery.channel.clone()}</td>
                    <td><code>{delivery.event.as_str()}</code></td>
                    <td>{delivery.text.clone()}</td>
                    <td>{state}</td>
                    <td data-attempts=delivery.attempts.to_string()>{delivery.attempts}</td>
                    <td>{delivery.last_error.clone()}</td>
                </tr>
            }
        },
    )
}
