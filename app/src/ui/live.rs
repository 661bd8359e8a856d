//! What the live parts (islands) share: re-reading their data in the
//! browser.

use leptos::prelude::*;

use crate::error::AppError;

/// Live parts re-read their data this often.
const REFRESH_MS: u64 = 1000;

/// In the browser, re-reads `load` into `current` every second, one request
/// at a time (so an old answer never lands after a newer one). A failed read
/// keeps what is shown.
pub fn keep_fresh<T, Load, Answer>(current: RwSignal<T>, load: Load)
where
    T: Send + Sync + 'static,
    Load: Fn() -> Answer + 'static,
    Answer: std::future::Future<Output = Result<T, AppError>> + 'static,
{
    keep_fresh_every(current, load, REFRESH_MS);
}

/// As [`keep_fresh`], every `period_ms`: for what costs more to read.
#[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
pub fn keep_fresh_every<T, Load, Answer>(current: RwSignal<T>, load: Load, period_ms: u64)
where
    T: Send + Sync + 'static,
    Load: Fn() -> Answer + 'static,
    Answer: std::future::Future<Output = Result<T, AppError>> + 'static,
{
    #[cfg(feature = "hydrate")]
    {
        let in_flight = std::rc::Rc::new(std::cell::Cell::new(false));
        let refresh = move || {
            if in_flight.replace(true) {
                return;
            }
            let (in_flight, answer) = (in_flight.clone(), load());
            leptos::task::spawn_local(async move {
                if let Ok(value) = answer.await {
                    current.set(value);
                }
                in_flight.set(false);
            });
        };
        let handle = set_interval_with_handle(refresh, std::time::Duration::from_millis(period_ms));
        if let Ok(handle) = handle {
            on_cleanup(move || handle.clear());
        }
    }
}
