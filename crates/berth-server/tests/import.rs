//! `/berth/v1/imports` in process: what is refused before a job starts (a malformed request,
//! a ReadOnly registry, a caller who is not the admin), and a job whose source is not there
//! failing with an error that names it. Real sources are in `crates/berth/tests/import.rs`.

use std::time::Duration;

use axum::body::Body;
use http::StatusCode;
use serde_json::{Value, json};

mod support;

use support::{App, Reply};

async fn post(app: &App, body: Value) -> Reply {
    app.call(
        "POST",
        "/berth/v1/imports",
        &[("content-type", "application/json")],
        Body::from(body.to_string()),
    )
    .await
}

#[track_caller]
fn refused(reply: &Reply, status: StatusCode, code: &str, needle: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let error = &reply.json()["errors"][0];
    assert_eq!(error["code"], code, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "expected `{needle}` in: {message}"
    );
}

#[tokio::test]
async fn requests_are_checked_before_a_job_starts() {
    let app = support::app().await;
    let source = "127.0.0.1:5999/app:v1";
    refused(
        &post(&app, json!({})).await,
        StatusCode::BAD_REQUEST,
        "INVALID",
        "source",
    );
    refused(
        &post(&app, json!({"source": source, "tag": "x"})).await,
        StatusCode::BAD_REQUEST,
        "INVALID",
        "tag",
    );
    refused(
        &post(&app, json!({"source": source, "username": "bob"})).await,
        StatusCode::BAD_REQUEST,
        "INVALID",
        "together",
    );
    refused(
        &post(&app, json!({"source": "127.0.0.1:5999/App"})).await,
        StatusCode::BAD_REQUEST,
        "INVALID",
        "`127.0.0.1:5999/App`",
    );
    refused(
        &post(&app, json!({"source": "http://192.0.2.1/app"})).await,
        StatusCode::BAD_REQUEST,
        "INVALID",
        "refusing plain HTTP",
    );
    refused(
        &post(&app, json!({"source": source, "images": ["a:v1", "b:v1"]})).await,
        StatusCode::BAD_REQUEST,
        "INVALID",
        "one repository",
    );
    refused(
        &post(&app, json!({"source": source, "images": ["a@sha256:00"]})).await,
        StatusCode::BAD_REQUEST,
        "INVALID",
        "by tag",
    );
    refused(
        &post(
            &app,
            json!({"source": source, "ca_certificates": "not PEM"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "INVALID",
        "no PEM certificate",
    );
    refused(
        &app.get("/berth/v1/imports/nope").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "`nope`",
    );
    refused(
        &app.call("POST", "/berth/v1/imports/nope/cancel", &[], Body::empty())
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "`nope`",
    );
    // Not the admin: no job, and nothing listed.
    let anonymous = app
        .send(
            http::Request::builder()
                .method("POST")
                .uri("/berth/v1/imports")
                .header("host", "registry.test")
                .header("content-type", "application/json")
                .body(Body::from(json!({"source": source}).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/berth/v1/imports").await.json(), json!([]));
}

#[tokio::test]
async fn a_read_only_registry_refuses_imports() {
    let app = support::app().await;
    app.set_read_only("connected registry `factory` is ReadOnly: it takes no pushes");
    refused(
        &post(&app, json!({"source": "127.0.0.1:5999/app:v1"})).await,
        StatusCode::FORBIDDEN,
        "DENIED",
        "ReadOnly",
    );
    assert_eq!(app.get("/berth/v1/imports").await.json(), json!([]));
}

#[tokio::test]
async fn a_source_that_is_not_there_fails_the_job_naming_it() {
    let app = support::app().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let source = format!("127.0.0.1:{port}/team/app:v1");
    let started = post(&app, json!({"source": source})).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let job = started.json();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(
        started.header("location"),
        format!("/berth/v1/imports/{id}")
    );
    assert_eq!(job["source"], source);
    assert_eq!(job["repository"], "team/app");
    assert_eq!(job["tags"], json!(["v1"]));

    let mut job = job;
    for _ in 0..100 {
        if job["state"] == "Failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        job = app.get(&format!("/berth/v1/imports/{id}")).await.json();
    }
    assert_eq!(job["state"], "Failed", "{job}");
    assert_eq!(job["error"]["code"], "SOURCE_UNREACHABLE", "{job}");
    assert_eq!(
        job["error"]["detail"]["source"],
        format!("127.0.0.1:{port}"),
        "{job}"
    );
    assert!(job["finished_at"].is_string(), "{job}");
    // A finished job cannot be cancelled; it is listed.
    refused(
        &app.call(
            "POST",
            &format!("/berth/v1/imports/{id}/cancel"),
            &[],
            Body::empty(),
        )
        .await,
        StatusCode::CONFLICT,
        "CONFLICT",
        "finished already",
    );
    let list = app.get("/berth/v1/imports").await.json();
    assert_eq!(list[0]["id"], id.as_str());
    // Nothing was stored.
    assert!(app.registry.catalog(None, 100).await.unwrap().is_empty());
}
