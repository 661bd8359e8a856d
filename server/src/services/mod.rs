//! The use cases. Every change anyone asks for goes through one of these
//! services, whichever door it came in by (a page's form, a server
//! function, the API and so the CLI): each authorizes its command
//! once, against the stored object, and writes the audit log before and
//! after the side effect. `Reads` is the read side the pages use.

pub mod accounts;
pub mod artifacts;
pub mod audit;
pub mod deployments;
pub mod launches;
pub mod load_tests;
pub mod notifications;
pub mod promotions;
pub mod reads;
pub mod registry;
pub mod requests;
pub mod rollouts;
pub mod tokens;

use std::sync::Arc;

use accounts::Accounts;
use deployments::Deployments;
use launches::Launches;
use promotions::Promotions;
use reads::Reads;
use registry::Registry;

/// The services one Slipway runs, built once at start-up.
#[derive(Clone)]
pub struct Services {
    pub accounts: Arc<Accounts>,
    pub deployments: Arc<Deployments>,
    pub launches: Arc<Launches>,
    pub load_tests: Arc<load_tests::LoadTests>,
    pub promotions: Arc<Promotions>,
    pub rollouts: Arc<rollouts::Rollouts>,
    pub registry: Arc<Registry>,
    pub reads: Arc<Reads>,
    pub tokens: Arc<tokens::Tokens>,
    pub notifications: Arc<notifications::Notifications>,
}
