//! Serving targets: what a deployed model version becomes, and how its
//! status reads. Rendering is pure; applying goes through the cluster's API.

pub mod bindings;
pub mod desired;
pub mod local;
pub mod reconciler;
pub mod seldon;
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
