//! An API server played through kube's real client over `tower-test`'s
//! mock transport: for the answers a real server is hard to provoke (409,
//! 403, 422, a CRD not installed).

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

/// Where the test reads each request the client sends and answers it.
pub type Handle = mock::Handle<Request<Body>, Response<Body>>;

/// A client whose requests arrive at the returned handle.
pub fn client(namespace: &str) -> (kube::Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, namespace), handle)
}

/// A JSON answer.
pub fn respond(code: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// An API server's error body (`metav1.Status`).
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// The JSON a request sent.
pub async fn body_json(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
