//! Serving: the reconciler that makes every deployment serve what MLflow
//! marks Production, and the interface its targets implement (the targets
//! themselves are adapters: `adapters::serving`).

pub mod desired;
pub mod protocol;
pub mod reconciler;
pub mod target;

use app::model::ServingState;

/// A deployment's state as its target's own signals tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingStatus {
    pub state: ServingState,
    pub message: String,
    /// Where predictions are sent, once known.
    pub address: Option<String>,
}

/// What a deployment says while MLflow marks no version Production.
pub fn no_production_message(serving: Option<&str>) -> String {
    match serving {
        Some(version) => {
            format!("no version is in production in MLflow; v{version} keeps serving until one is")
        }
        None => "no version is in production in MLflow".into(),
    }
}

/// Nothing in production and nothing serving: not a failure.
pub fn idle_status() -> ServingStatus {
    ServingStatus {
        state: ServingState::Idle,
        message: no_production_message(None),
        address: None,
    }
}

pub fn failed_status(message: &str) -> ServingStatus {
    ServingStatus {
        state: ServingState::Failed,
        message: message.into(),
        address: None,
    }
}
