//! Files people download: an artifact, streamed from MLflow as it comes,
//! and the audit log as CSV or JSON.

use app::model::{AUDIT_EXPORT_LIMIT, AuditEntry, AuditQuery};
use app::routes::segment;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::Result;
use crate::services::artifacts;

#[derive(serde::Deserialize)]
pub struct ArtifactQuery {
    path: String,
    /// A logged model's id: its file, not the run's.
    model: Option<String>,
    /// Sent as a file to save, whatever it is.
    #[serde(default)]
    download: Option<String>,
}

/// One artifact file, streamed from MLflow as it comes. Only text and
/// raster images are shown in place, and always sandboxed (no script, no
/// plugins): an artifact is anyone's upload, not Slipway's page.
pub async fn artifact_file(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Query(query): Query<ArtifactQuery>,
) -> Result<Response> {
    let path = artifacts::checked_path(&query.path)?;
    let owner = artifacts::owner_of(&run_id, query.model.as_deref());
    let file = state.services.reads.open_artifact(&owner, path).await?;
    let (content_type, inline) = artifacts::FileKind::of(path).served_as();
    let name = path.rsplit('/').next().unwrap_or(path);
    let encoded = segment(name);
    let disposition = if inline && query.download.is_none() {
        format!("inline; filename*=UTF-8''{encoded}")
    } else {
        format!("attachment; filename*=UTF-8''{encoded}")
    };
    let mut headers = vec![
        (header::CONTENT_TYPE, content_type.to_string()),
        (header::CONTENT_DISPOSITION, disposition),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
                .to_string(),
        ),
    ];
    if let Some(length) = file.content_length() {
        headers.push((header::CONTENT_LENGTH, length.to_string()));
    }
    let mut response = axum::body::Body::from_stream(file.bytes_stream()).into_response();
    for (name, value) in headers {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// The audit log as the page's filters select it, as CSV or JSON.
async fn export_audit(state: &AppState, pairs: Vec<(String, String)>) -> Result<Vec<AuditEntry>> {
    state
        .services
        .reads
        .search_audit(AuditQuery::from_pairs(pairs), AUDIT_EXPORT_LIMIT)
        .await
}

pub async fn export_audit_csv(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let entries = export_audit(&state, pairs).await?;
    let mut csv = String::from("time,actor,action,subject,detail,outcome\r\n");
    for entry in entries {
        let time = chrono::DateTime::from_timestamp_millis(entry.at_ms)
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        let cells = [
            time,
            entry.actor,
            entry.action,
            entry.subject,
            entry.detail,
            entry.outcome,
        ];
        let row: Vec<String> = cells.iter().map(|cell| csv_cell(cell)).collect();
        csv.push_str(&row.join(","));
        csv.push_str("\r\n");
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"slipway-audit.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

pub async fn export_audit_json(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let entries = export_audit(&state, pairs).await?;
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"slipway-audit.json\"",
        )],
        axum::Json(entries),
    )
        .into_response())
}

/// One CSV cell: quoted when it must be, and never read as a formula by a
/// spreadsheet (a leading `=`, `+`, `-` or `@` gets a `'` in front).
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "'-1");
    }
}
