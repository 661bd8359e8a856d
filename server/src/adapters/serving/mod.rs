//! Serving targets: what a deployed model version becomes (a local model
//! server, an object in the cluster: a SeldonDeployment, a KServe
//! InferenceService, a Seldon Core 2 Model), behind
//! `serving::target::Target`, and the client that sends Try it requests to
//! what serves.

pub mod caller;
pub mod kserve;
pub mod local;
pub mod objects;
pub mod seldon;
pub mod seldon_core2;
