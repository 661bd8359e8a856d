//! What `deploy/base/rbac.yaml` grants equals what Slipway's ServiceAccounts
//! did in the cluster tier (`tests/it/cluster.rs`), as the API server's own
//! audit log records it: every verb the code uses is granted, and every
//! verb granted is used. A binary of its own, which Cargo runs after `it`
//! (targets run in name order); alone, it finds nothing to compare and
//! fails. It links nothing of Slipway's.

use std::collections::BTreeSet;

use serde_json::Value;

#[path = "it/support/roles.rs"]
mod roles;
use roles::granted;

/// Namespaces where a test lets Slipway read but not write, on purpose.
const READ_ONLY_PREFIX: &str = "readonly-";

#[test]
fn the_roles_grant_exactly_what_slipway_did_on_the_real_api_server() {
    let path = std::env::var("SLIPWAY_TEST_KUBE_AUDIT")
        .expect("SLIPWAY_TEST_KUBE_AUDIT is not set: run the tests with `make test`");
    let log = std::fs::read_to_string(&path).unwrap();
    let mut used = BTreeSet::new();
    let mut refused = Vec::new();
    let mut refused_on_purpose = 0;
    for line in log.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let user = event["user"]["username"].as_str().unwrap_or_default();
        let is_slipway = user.starts_with("system:serviceaccount:") && user.ends_with(":slipway");
        // Requests without an object (discovery, /version) need no Role.
        if !is_slipway || event["objectRef"].is_null() {
            continue;
        }
        let object = &event["objectRef"];
        let mut resource = object["resource"].as_str().unwrap().to_string();
        if let Some(subresource) = object["subresource"].as_str() {
            resource = format!("{resource}/{subresource}");
        }
        let group = object["apiGroup"].as_str().unwrap_or_default().to_string();
        let verb = event["verb"].as_str().unwrap().to_string();
        let code = event["responseStatus"]["code"].as_i64().unwrap_or_default();
        let namespace = object["namespace"].as_str().unwrap_or_default();
        if code == 403 {
            if namespace.starts_with(READ_ONLY_PREFIX) {
                refused_on_purpose += 1;
            } else {
                refused.push(format!("{verb} {resource} in {namespace}: {line}"));
            }
            continue;
        }
        // A server-side apply that creates its object is authorised as a
        // create too.
        if verb == "patch" && code == 201 {
            used.insert((group.clone(), resource.clone(), "create".to_string()));
        }
        used.insert((group, resource, verb));
    }
    assert!(
        refused.is_empty(),
        "the API server refused Slipway:\n{}",
        refused.join("\n")
    );
    assert!(
        refused_on_purpose > 0,
        "the read-only namespace's refusal was not seen: did the cluster tier run?"
    );
    assert_eq!(
        used,
        granted(),
        "left: what Slipway did; right: what deploy/base/rbac.yaml grants"
    );
}
