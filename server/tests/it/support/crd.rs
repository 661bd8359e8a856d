//! Validates objects against a CRD's `openAPIV3Schema` the way the API
//! server's structural schema does, strictly: an unknown field is an error
//! (as with `fieldValidation=Strict`), not silently dropped.

use serde_json::Value;

pub struct CrdSchema {
    schema: Value,
}

impl CrdSchema {
    /// The schema of `version` in the CRD file (YAML).
    pub fn load(path: &std::path::Path, version: &str) -> Self {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let crd: Value = serde_yaml::from_str(&text).unwrap();
        let schema =
            crd["spec"]["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|candidate| candidate["name"] == version)
                .unwrap_or_else(|| panic!("no version {version} in {}", path.display()))["schema"]
                ["openAPIV3Schema"]
                .clone();
        assert!(schema.is_object(), "no openAPIV3Schema");
        Self { schema }
    }

    /// Every violation, with its path; empty when the object is valid.
    pub fn violations(&self, object: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        check(&self.schema, object, "", &mut errors);
        errors
    }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    // The API server validates `metadata` itself.
    if path == ".metadata" {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!(
                "{path}: expected an integer or a string, got {value}"
            ));
        }
        return;
    }
    if let Some(options) = schema["anyOf"].as_array()
        && !options.iter().any(|option| {
            let mut scratch = Vec::new();
            check(option, value, path, &mut scratch);
            scratch.is_empty()
        })
    {
        errors.push(format!("{path}: matches none of anyOf"));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    match schema["type"].as_str() {
        Some("object") => {
            let Some(fields) = value.as_object() else {
                errors.push(format!("{path}: expected an object, got {value}"));
                return;
            };
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                if !fields.contains_key(required) {
                    errors.push(format!("{path}: missing required field {required:?}"));
                }
            }
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            for (key, field) in fields {
                let field_path = format!("{path}.{key}");
                if let Some(property) = schema["properties"].get(key) {
                    check(property, field, &field_path, errors);
                } else if schema["additionalProperties"].is_object() {
                    check(&schema["additionalProperties"], field, &field_path, errors);
                } else if !(preserve || schema["additionalProperties"] == true) {
                    errors.push(format!("{field_path}: unknown field"));
                }
            }
        }
        Some("array") => match value.as_array() {
            Some(items) => {
                for (index, item) in items.iter().enumerate() {
                    check(&schema["items"], item, &format!("{path}[{index}]"), errors);
                }
            }
            None => errors.push(format!("{path}: expected an array, got {value}")),
        },
        Some("string") if !value.is_string() => {
            errors.push(format!("{path}: expected a string, got {value}"))
        }
        Some("integer") if !(value.is_i64() || value.is_u64()) => {
            errors.push(format!("{path}: expected an integer, got {value}"))
        }
        Some("number") if !value.is_number() => {
            errors.push(format!("{path}: expected a number, got {value}"))
        }
        Some("boolean") if !value.is_boolean() => {
            errors.push(format!("{path}: expected a boolean, got {value}"))
        }
        _ => {}
    }
}
