//! Artifact files through Slipway: the viewer shows text, JSON, CSV as a
//! table, images and an MLmodel's signature; the download streams the whole
//! file; nothing an artifact holds runs as Slipway's page.

use crate::support;

use crate::support::site::{Caller, Site};
use crate::support::{MlflowRest, config, mlflow_url, unique};
use app::access::Role;
use axum::http::{Method, StatusCode, header};
use http_body_util::BodyExt;

/// The smallest valid PNG: one transparent pixel.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

async fn get(site: &Site, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = site
        .send(Caller::Signed(Role::Viewer), Method::GET, uri, "")
        .await;
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body.to_vec())
}

async fn viewer(site: &Site, uri: &str) -> (StatusCode, String) {
    let (status, _, body) = get(site, uri).await;
    (status, String::from_utf8(body).unwrap().replace("<!>", ""))
}

#[tokio::test(flavor = "multi_thread")]
async fn artifact_files_are_shown_by_kind_and_downloaded_whole() {
    let mlflow = MlflowRest::new(&mlflow_url());
    let experiment = mlflow.create_experiment(&unique("artifacts"), &[]).await;
    let run = mlflow.create_run(&experiment, "r", &[], &[], &[]).await;
    let big: String = (0..40_000).map(|line| format!("line {line}\n")).collect();
    let files: [(&str, Vec<u8>); 8] = [
        (
            "data/scores.csv",
            b"name,score\n\"Smith, J\",0.9\nDoe,\"said \"\"hi\"\"\"\n".to_vec(),
        ),
        (
            "metrics.json",
            br#"{"auc":0.91,"classes":["a","b"]}"#.to_vec(),
        ),
        ("notes/readme.txt", b"trained on <b>Tuesday</b>".to_vec()),
        ("plots/roc.png", PIXEL_PNG.to_vec()),
        (
            "report.html",
            b"<script>alert(document.cookie)</script>".to_vec(),
        ),
        ("weights.bin", vec![0, 159, 146, 150, 0, 1]),
        (
            "plots/evil.svg",
            br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec(),
        ),
        ("logs/big.txt", big.clone().into_bytes()),
    ];
    for (path, content) in &files {
        mlflow
            .upload_artifact(&experiment, &run, path, content)
            .await;
    }
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.reconcile_poll_secs = 3600;
    let site = Site::start(config, data).await;
    let page = |path: &str| format!("/runs/{run}/artifact?path={path}");
    let raw = |path: &str| format!("/runs/{run}/artifact/raw?path={path}");

    // The run page links every file to its viewer.
    let (_, run_page) = viewer(&site, &format!("/runs/{run}?dir=data")).await;
    assert!(
        run_page.contains(&format!(
            "<a href=\"/runs/{run}/artifact?path=data%2Fscores.csv\">scores.csv</a>"
        )),
        "{run_page}"
    );

    let (status, csv) = viewer(&site, &page("data/scores.csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        csv.contains(
            "<thead><tr><th scope=\"col\">name</th><th scope=\"col\">score</th></tr></thead>\
             <tbody><tr><td>Smith, J</td><td>0.9</td></tr><tr><td>Doe</td><td>said \"hi\"</td></tr></tbody>"
        ),
        "{csv}"
    );
    let (_, json) = viewer(&site, &page("metrics.json")).await;
    assert!(
        json.contains("{\n  \"auc\": 0.91,\n  \"classes\": [\n    \"a\","),
        "pretty-printed: {json}"
    );
    let (_, text) = viewer(&site, &page("notes/readme.txt")).await;
    assert!(
        text.contains("<pre class=\"artifact-text\">trained on &lt;b&gt;Tuesday&lt;/b&gt;</pre>"),
        "escaped: {text}"
    );
    let (_, image) = viewer(&site, &page("plots/roc.png")).await;
    assert!(
        image.contains(&format!(
            "<img src=\"/runs/{run}/artifact/raw?path=plots%2Froc.png\" alt=\"plots/roc.png\""
        )),
        "{image}"
    );
    let (_, binary) = viewer(&site, &page("weights.bin")).await;
    assert!(
        binary.contains("This file is not text or an image"),
        "{binary}"
    );
    let (_, long) = viewer(&site, &page("logs/big.txt")).await;
    assert!(long.contains("data-truncated"), "only the start is shown");
    assert!(long.contains("line 0\n") && !long.contains("line 39999"));

    // Downloads: the whole file, as it was, typed by name and sandboxed.
    let (status, headers, body) = get(&site, &raw("logs/big.txt")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, big.as_bytes(), "all {} bytes", big.len());
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    let (_, headers, body) = get(&site, &raw("plots/roc.png")).await;
    assert_eq!(body, PIXEL_PNG);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "inline; filename*=UTF-8''roc.png"
    );
    let (_, headers, _) = get(&site, &format!("{}&download=1", raw("plots/roc.png"))).await;
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename*=UTF-8''roc.png"
    );
    let (_, headers, body) = get(&site, &raw("report.html")).await;
    assert_eq!(body, b"<script>alert(document.cookie)</script>");
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8",
        "never a page of Slipway's"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox;")
    );
    // An SVG can hold script: shown from <img> (where none runs), and opened
    // directly it is a download, never a document at Slipway's origin.
    let (_, svg_page) = viewer(&site, &page("plots/evil.svg")).await;
    assert!(
        svg_page.contains(&format!(
            "<img src=\"/runs/{run}/artifact/raw?path=plots%2Fevil.svg\""
        )),
        "{svg_page}"
    );
    let (_, headers, _) = get(&site, &raw("plots/evil.svg")).await;
    assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename*=UTF-8''evil.svg"
    );
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox;")
    );
    let (_, headers, _) = get(&site, &raw("weights.bin")).await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );

    // Mistakes: a path that climbs out, a file that is not there.
    for uri in [raw("..%2F..%2Fetc%2Fpasswd"), page("a%2F..%2Fb")] {
        assert_eq!(get(&site, &uri).await.0, StatusCode::BAD_REQUEST, "{uri}");
    }
    for uri in [raw("nope.txt"), page("data%2Fnope.csv")] {
        assert_eq!(get(&site, &uri).await.0, StatusCode::NOT_FOUND, "{uri}");
    }
    // Without a session, nothing.
    let anonymous = site
        .send(Caller::Anonymous, Method::GET, &raw("metrics.json"), "")
        .await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_models_mlmodel_shows_its_signature() {
    let mlflow = MlflowRest::new(&mlflow_url());
    let run = support::log_sklearn_model(&unique("artifacts-model"));
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.reconcile_poll_secs = 3600;
    let site = Site::start(config, data).await;
    // MLflow 3 keeps it with the logged model, MLflow 2 in the run's folder.
    let uri = if mlflow.major_version().await >= 3 {
        let got = mlflow.get_run(&run).await;
        let model_id = got["outputs"]["model_outputs"][0]["model_id"]
            .as_str()
            .unwrap()
            .to_string();
        format!("/runs/{run}/artifact?path=MLmodel&model={model_id}")
    } else {
        format!("/runs/{run}/artifact?path=model%2FMLmodel")
    };
    let (status, html) = viewer(&site, &uri).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains(
            "<td>outputs</td><th scope=\"row\">#0</th><td class=\"mono\">tensor float64 [-1]</td>"
        ),
        "{html}"
    );
    assert!(html.contains("flavors:"), "and the file itself: {html}");
}
