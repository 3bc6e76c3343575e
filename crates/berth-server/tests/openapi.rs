//! The OpenAPI document in `docs/openapi.json` describes exactly the management API's real
//! routes: every documented operation is served, and every served route is documented.

use std::collections::BTreeSet;

use axum::body::Body;
use http::{Request, StatusCode};

mod support;

const DOC: &str = include_str!("../../../docs/openapi.json");

fn documented() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(DOC).expect("docs/openapi.json is JSON");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[test]
fn the_document_lists_exactly_the_routes() {
    let routed: BTreeSet<(String, String)> = berth_server::manage::ROUTES
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .iter()
                .map(move |m| (m.to_string(), path.to_string()))
        })
        .collect();
    assert_eq!(
        documented(),
        routed,
        "docs/openapi.json and manage::ROUTES disagree"
    );
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = support::app().await;
    for (method, path) in documented() {
        let uri = path
            .replace("{name}", "no-such-object")
            .replace("{slot}", "password1")
            .replace("{id}", "no-such-object");
        let request = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .header("authorization", support::admin_basic())
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let reply = app.send(request).await;
        let status = reply.status;
        let text = String::from_utf8_lossy(&reply.body);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri} is not routed"
        );
        assert!(
            !text.contains("is not an endpoint of Berth"),
            "{method} {uri} is not routed: {text}"
        );
        assert!(
            status.as_u16() < 500,
            "{method} {uri} failed: {status} {text}"
        );
    }
}
