//! Types exchanged between the UI and the control plane. They cross the wire
//! as server-function arguments and results, so they stay plain data.

use serde::{Deserialize, Serialize};

/// Who is making a request. The auth gate in the server decides this for every
/// request; until login exists everyone is `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub authenticated: bool,
}

impl User {
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            authenticated: false,
        }
    }
}

pub const DEFAULT_PAGE_SIZE: u32 = 25;
pub const MAX_PAGE_SIZE: u32 = 500;

/// One page request for the experiments list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentQuery {
    /// Case-insensitive substring of the experiment name.
    pub name_contains: Option<String>,
    /// MLflow's opaque token for the page after the previous one.
    pub page_token: Option<String>,
    pub page_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: String,
    pub name: String,
    pub lifecycle_stage: String,
    pub artifact_location: String,
    /// Epoch milliseconds, as MLflow reports them.
    pub creation_time: Option<i64>,
    pub last_update_time: Option<i64>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentPage {
    pub experiments: Vec<Experiment>,
    pub next_page_token: Option<String>,
    /// The MLflow server the page came from, shown so users know what they browse.
    pub mlflow_url: String,
}
