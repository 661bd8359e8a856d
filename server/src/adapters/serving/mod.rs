//! Serving targets: what a deployed model version becomes (a local model
//! server, a SeldonDeployment), behind `serving::target::Target`, and the
//! client that sends Try it requests to what serves.

pub mod caller;
pub mod local;
pub mod seldon;
