//! How a deployment's model server is spoken to: MLflow's scoring protocol
//! (`/invocations`: local serving, Seldon Core v1's MLflow server) or the
//! open inference protocol v2 (`/v2/models/{name}/infer`: MLServer under
//! KServe and Seldon Core 2), and what a request needs besides its body.

use serde_json::{Map, Value, json};

use crate::catalog::{DeploymentBinding, ServingTarget};

/// Whether the binding's model servers speak the open inference protocol.
pub fn speaks_v2(binding: &DeploymentBinding) -> bool {
    matches!(
        binding.target,
        ServingTarget::Kserve | ServingTarget::SeldonCore2
    )
}

/// The header Seldon Core 2's mesh routes a request by.
pub const SELDON_MODEL_HEADER: &str = "Seldon-Model";

/// Headers every request to the binding's address carries: Seldon Core 2's
/// mesh routes on the model's name.
pub fn request_headers(binding: &DeploymentBinding) -> Vec<(String, String)> {
    match binding.target {
        ServingTarget::SeldonCore2 => {
            vec![(SELDON_MODEL_HEADER.to_string(), binding.object_name())]
        }
        _ => Vec::new(),
    }
}

/// A model version's input example (MLflow's `serving_input_example.json`)
/// as the binding's model servers take it: as is for MLflow's protocol;
/// for v2, a data frame becomes one input per column with MLServer's pandas
/// content type. `None` where an example cannot be carried over (tensors).
pub fn example_request(binding: &DeploymentBinding, example: &str) -> Option<String> {
    if !speaks_v2(binding) {
        return Some(example.to_string());
    }
    let example: Value = serde_json::from_str(example).ok()?;
    let request = v2_request(&example)?;
    serde_json::to_string_pretty(&request).ok()
}

/// MLflow's `dataframe_split` or `dataframe_records` as an open inference
/// protocol request.
pub fn v2_request(example: &Value) -> Option<Value> {
    let (columns, rows): (Vec<String>, Vec<Vec<Value>>) =
        if let Some(split) = example.get("dataframe_split") {
            let columns = split["columns"]
                .as_array()?
                .iter()
                .map(|column| column.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()?;
            let rows = split["data"]
                .as_array()?
                .iter()
                .map(|row| row.as_array().cloned())
                .collect::<Option<Vec<_>>>()?;
            (columns, rows)
        } else if let Some(records) = example.get("dataframe_records") {
            let records = records
                .as_array()?
                .iter()
                .map(Value::as_object)
                .collect::<Option<Vec<&Map<String, Value>>>>()?;
            let columns: Vec<String> = records.first()?.keys().cloned().collect();
            let rows = records
                .iter()
                .map(|record| {
                    columns
                        .iter()
                        .map(|column| record.get(column).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect();
            (columns, rows)
        } else {
            return None;
        };
    if rows.iter().any(|row| row.len() != columns.len()) {
        return None;
    }
    let inputs = columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let data: Vec<Value> = rows.iter().map(|row| row[index].clone()).collect();
            Some(json!({
                "name": column,
                "shape": [data.len()],
                "datatype": datatype(&data)?,
                "data": data,
            }))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(json!({"parameters": {"content_type": "pd"}, "inputs": inputs}))
}

/// The v2 datatype of a column's values; `None` for mixed or nested ones.
fn datatype(values: &[Value]) -> Option<&'static str> {
    if values.iter().all(Value::is_boolean) {
        Some("BOOL")
    } else if values.iter().all(|value| value.is_i64() || value.is_u64()) {
        Some("INT64")
    } else if values.iter().all(Value::is_number) {
        Some("FP64")
    } else if values.iter().all(Value::is_string) {
        Some("BYTES")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_frame_becomes_one_v2_input_per_column() {
        let split = json!({"dataframe_split": {
            "columns": ["age", "bmi", "smoker", "name"],
            "data": [[41, 22.5, true, "a"], [37, 30, false, "b"]],
        }});
        let expected = json!({
            "parameters": {"content_type": "pd"},
            "inputs": [
                {"name": "age", "shape": [2], "datatype": "INT64", "data": [41, 37]},
                {"name": "bmi", "shape": [2], "datatype": "FP64", "data": [22.5, 30]},
                {"name": "smoker", "shape": [2], "datatype": "BOOL", "data": [true, false]},
                {"name": "name", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
            ],
        });
        assert_eq!(v2_request(&split), Some(expected.clone()));
        let records = json!({"dataframe_records": [
            {"age": 41, "bmi": 22.5, "smoker": true, "name": "a"},
            {"age": 37, "bmi": 30, "smoker": false, "name": "b"},
        ]});
        // Records' keys come sorted (serde_json's map): the columns by name.
        let by_name = v2_request(&records).unwrap();
        let names: Vec<&str> = by_name["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|input| input["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["age", "bmi", "name", "smoker"]);
        assert_eq!(by_name["inputs"][0], expected["inputs"][0]);
    }

    #[test]
    fn what_cannot_be_carried_over_gives_no_example() {
        for example in [
            json!({"inputs": [[1.0, 2.0]]}),
            json!({"instances": [1, 2]}),
            json!({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}),
            json!({"dataframe_split": {"columns": ["a"], "data": [[1], ["x"]]}}),
            json!({"dataframe_records": []}),
        ] {
            assert_eq!(v2_request(&example), None, "{example}");
        }
    }
}
