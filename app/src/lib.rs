//! Slipway's UI: pages, the server functions behind them, and the types and
//! port they share with the control plane in the `server` crate.

pub mod access;
#[cfg(feature = "ssr")]
pub mod charts;
pub mod codec;
pub mod error;
pub mod model;
#[cfg(feature = "ssr")]
pub mod port;
pub mod routes;
pub mod server_fns;
pub mod states;
pub mod time;
pub mod ui;

pub use ui::{App, shell};

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
