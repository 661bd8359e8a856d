//! Artifact files, read through MLflow with its credentials: streamed whole
//! for download (`web::files`), or their start for the viewer.
//! What a file is, is decided by its name, never by what it claims: a file
//! is shown inline only as text or a raster image, and always sandboxed, so
//! an artifact cannot run script under Slipway's origin.

use app::model::{ArtifactOwner, ArtifactPreview, PREVIEW_BYTES, PreviewContent};
use futures::StreamExt;

use crate::adapters::mlflow::MlflowClient;
use crate::error::{Error, Result};

/// Rows of a CSV the viewer shows.
const TABLE_ROWS: usize = 200;
const MAX_PATH: usize = 1024;
/// A page waits this long for a preview's bytes once MLflow has answered.
const PREVIEW_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a file is shown, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Text,
    Json,
    Table(u8),
    /// A raster image the browser may show inline.
    Image(&'static str),
    /// SVG is an image, but one that can hold script: shown from `<img>`
    /// only (where script does not run), downloaded as a file.
    Svg,
    Other,
}

impl FileKind {
    pub fn of(path: &str) -> FileKind {
        let name = path.rsplit('/').next().unwrap_or(path);
        let extension = name
            .rsplit_once('.')
            .map(|(_, extension)| extension.to_ascii_lowercase());
        match extension.as_deref() {
            _ if name == "MLmodel" || name == "MLproject" || name == "requirements.txt" => {
                FileKind::Text
            }
            Some("json") => FileKind::Json,
            Some("csv") => FileKind::Table(b','),
            Some("tsv") => FileKind::Table(b'\t'),
            Some("png") => FileKind::Image("image/png"),
            Some("jpg" | "jpeg") => FileKind::Image("image/jpeg"),
            Some("gif") => FileKind::Image("image/gif"),
            Some("webp") => FileKind::Image("image/webp"),
            Some("svg") => FileKind::Svg,
            Some(
                "txt" | "log" | "md" | "yaml" | "yml" | "toml" | "ini" | "cfg" | "py" | "sh"
                | "sql" | "html" | "xml" | "r" | "ipynb",
            ) => FileKind::Text,
            _ => FileKind::Other,
        }
    }

    /// The `Content-Type` the download is sent with, and whether a
    /// browser may show it in place.
    pub fn served_as(self) -> (&'static str, bool) {
        match self {
            FileKind::Image(mime) => (mime, true),
            // `<img>` shows it whatever the disposition; opened directly, a
            // download, never a document at Slipway's origin.
            FileKind::Svg => ("image/svg+xml", false),
            FileKind::Text | FileKind::Json | FileKind::Table(_) => {
                ("text/plain; charset=utf-8", true)
            }
            FileKind::Other => ("application/octet-stream", false),
        }
    }
}

/// A path inside a run's or logged model's artifacts: relative, not going up.
pub fn checked_path(path: &str) -> Result<&str> {
    let path = path.trim_matches('/');
    if path.is_empty()
        || path.len() > MAX_PATH
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        || path.contains('\\')
    {
        return Err(Error::invalid(
            "That is not a file path inside the artifacts.",
        ));
    }
    Ok(path)
}

/// The owner of artifacts as a query names it: `model=m-…` (a logged
/// model) or else the run.
pub fn owner_of(run_id: &str, model: Option<&str>) -> ArtifactOwner {
    match model.filter(|model| !model.is_empty()) {
        Some(model) => ArtifactOwner::LoggedModel(model.to_string()),
        None => ArtifactOwner::Run(run_id.to_string()),
    }
}

/// The start of one artifact file, for its viewer.
pub async fn preview(
    mlflow: &MlflowClient,
    owner: ArtifactOwner,
    path: String,
) -> Result<ArtifactPreview> {
    let path = checked_path(&path)?.to_string();
    let kind = FileKind::of(&path);
    if matches!(kind, FileKind::Image(_) | FileKind::Svg) {
        // The browser reads it from the download route; a missing file
        // still answers 404 here.
        mlflow.open_artifact(&owner, &path).await?;
        return Ok(ArtifactPreview {
            path,
            content: PreviewContent::Image,
            truncated: false,
            signature: None,
        });
    }
    let response = mlflow.open_artifact(&owner, &path).await?;
    let (bytes, truncated) = tokio::time::timeout(PREVIEW_READ_TIMEOUT, read_start(response))
        .await
        .map_err(|_| {
            Error::Unavailable("MLflow is sending the file too slowly to preview it.".into())
        })??;
    let text = std::str::from_utf8(&bytes)
        .ok()
        .or_else(|| {
            // Cut inside a character: keep what decodes.
            truncated
                .then(|| std::str::from_utf8(&bytes[..utf8_prefix(&bytes)]).ok())
                .flatten()
        })
        .filter(|text| !text.contains('\0'));
    let signature = (path.rsplit('/').next() == Some("MLmodel"))
        .then(|| text.and_then(signature_of))
        .flatten();
    let content = match (kind, text) {
        (_, None) => PreviewContent::Binary,
        (FileKind::Json, Some(text)) if !truncated => {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) => PreviewContent::Text(
                    serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.to_string()),
                ),
                Err(_) => PreviewContent::Text(text.to_string()),
            }
        }
        (FileKind::Table(separator), Some(text)) => {
            let mut rows = parse_delimited(text, separator, TABLE_ROWS + 1);
            if rows.is_empty() {
                PreviewContent::Text(String::new())
            } else {
                let header = rows.remove(0);
                PreviewContent::Table { header, rows }
            }
        }
        (_, Some(text)) => PreviewContent::Text(text.to_string()),
    };
    Ok(ArtifactPreview {
        path,
        content,
        truncated,
        signature,
    })
}

/// The first `PREVIEW_BYTES` of a body, and whether there was more.
async fn read_start(response: reqwest::Response) -> Result<(Vec<u8>, bool)> {
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|err| Error::Unavailable(format!("MLflow stopped sending the file: {err}")))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() > PREVIEW_BYTES {
            bytes.truncate(PREVIEW_BYTES);
            return Ok((bytes, true));
        }
    }
    Ok((bytes, false))
}

/// The `signature` of an MLmodel file, as `inputs: …` and `outputs: …` lines.
pub fn signature_of(mlmodel: &str) -> Option<String> {
    let parsed: serde_yaml::Value = serde_yaml::from_str(mlmodel).ok()?;
    let signature = parsed.get("signature")?;
    let part = |name: &str| {
        signature
            .get(name)
            .and_then(|value| value.as_str())
            .map(|value| format!("{name}: {value}"))
    };
    let lines: Vec<String> = ["inputs", "outputs"].into_iter().filter_map(part).collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The length of the longest prefix of `bytes` that is whole UTF-8.
fn utf8_prefix(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(err) => err.valid_up_to(),
    }
}

/// Rows of delimited text, RFC 4180 quoting (`"a,b"`, `""` for a quote);
/// at most `limit` rows.
fn parse_delimited(text: &str, separator: u8, limit: usize) -> Vec<Vec<String>> {
    let separator = char::from(separator);
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if field.is_empty() => quoted = true,
            c if c == separator && !quoted => row.push(std::mem::take(&mut field)),
            '\r' if !quoted => {}
            '\n' if !quoted => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                if rows.len() == limit {
                    return rows;
                }
            }
            c => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_shown_by_their_names() {
        assert_eq!(FileKind::of("model/MLmodel"), FileKind::Text);
        assert_eq!(FileKind::of("a/b.JSON"), FileKind::Json);
        assert_eq!(FileKind::of("data.csv"), FileKind::Table(b','));
        assert_eq!(FileKind::of("plot.png"), FileKind::Image("image/png"));
        assert_eq!(FileKind::of("model.pkl"), FileKind::Other);
        // HTML is text: never rendered as a page under Slipway's origin.
        assert_eq!(
            FileKind::of("report.html").served_as(),
            ("text/plain; charset=utf-8", true)
        );
        assert_eq!(
            FileKind::of("weights.bin").served_as(),
            ("application/octet-stream", false)
        );
    }

    #[test]
    fn paths_stay_inside_the_artifacts() {
        assert_eq!(checked_path("/model/MLmodel").unwrap(), "model/MLmodel");
        for bad in ["", "..", "a/../b", "a//b", "./a", "a\\..\\b"] {
            assert!(checked_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn delimited_text_reads_quotes_and_stops_at_the_limit() {
        let rows = parse_delimited("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n1,2\n3,4", b',', 3);
        assert_eq!(
            rows,
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["x, y".into(), "say \"hi\"".into()],
                vec!["1".into(), "2".into()],
            ]
        );
        assert_eq!(
            parse_delimited("a\tb", b'\t', 10),
            vec![vec!["a".to_string(), "b".into()]]
        );
    }
}
