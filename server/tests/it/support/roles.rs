//! What the shipped Roles (`deploy/base/rbac.yaml`) grant, one permission
//! per (API group, resource[/subresource], verb). Shared by the `it` tests
//! and `tests/rbac.rs`, which includes this file by path.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

/// (API group, resource[/subresource], verb)
pub type Permission = (String, String, String);

pub fn granted() -> BTreeSet<Permission> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/rbac.yaml"),
    )
    .unwrap();
    let mut granted = BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let document = serde_yaml::Value::deserialize(document).unwrap();
        if document["kind"] != "Role" {
            continue;
        }
        for rule in document["rules"].as_sequence().unwrap() {
            let strings = |key: &str| -> Vec<String> {
                rule[key]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|value| value.as_str().unwrap().to_string())
                    .collect()
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        granted.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    granted
}
