//! Serving targets: what a deployed model version becomes, and how its
//! status reads. Rendering is pure; applying goes through the cluster's API.

pub mod bindings;
pub mod desired;
pub mod local;
pub mod reconciler;
pub mod seldon;
pub mod target;
pub mod try_it;

use serde::{Deserialize, Serialize};

/// A serving object's state as its conditions tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServingStatus {
    pub state: ServingState,
    pub message: String,
    /// Where predictions are sent, once known.
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServingState {
    Creating,
    Available,
    Failed,
    /// Nothing to serve: no version in production, and nothing serving.
    Idle,
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
