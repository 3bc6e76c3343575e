//! `/berth/v1/repositories…` in process: listings with their counts and sizes, pages,
//! errors in the management API's codes, and deletions that go through the change log.

use axum::body::Body;
use berth_registry::ChangeAction;
use http::StatusCode;
use serde_json::{Value, json};

mod support;
use support::*;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What [`push_images`] pushed, by name.
struct Pushed {
    v1: String,
    v1_size: u64,
    v2: String,
    index: String,
    index_size: u64,
    layer_one: String,
}

/// Pushes to `repo`: image `v1` (also `latest`), image `v2` (sharing v1's config), and an
/// index `multi` over both with platforms; and one image to `other`.
async fn push_images(app: &App, repo: &str) -> Pushed {
    let config = b"{\"architecture\":\"amd64\"}".to_vec();
    let (one, two) = (vec![1u8; 1000], vec![2u8; 300]);
    let config_digest = app.push_blob(repo, &config).await;
    let layer_one = app.push_blob(repo, &one).await;
    let layer_two = app.push_blob(repo, &two).await;
    let image =
        |layer: &str, len: usize| image_manifest(&config_digest, config.len(), &[(layer, len)]);
    let (m1, m2) = (image(&layer_one, one.len()), image(&layer_two, two.len()));
    let v1 = sha256(m1.as_bytes());
    let v2 = sha256(m2.as_bytes());
    for (manifest, tag) in [(&m1, "v1"), (&m1, "latest"), (&m2, "v2")] {
        let r = app.put_manifest(repo, tag, manifest.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": v1, "size": m1.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": v2, "size": m2.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    })
    .to_string();
    let r = app
        .call(
            "PUT",
            &format!("/v2/{repo}/manifests/multi"),
            &[("content-type", OCI_INDEX)],
            index.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    let other_layer = app.push_blob("other", b"other layer").await;
    let other_config = app.push_blob("other", &config).await;
    let other = image_manifest(&other_config, config.len(), &[(&other_layer, 11)]);
    assert_eq!(
        app.put_manifest("other", "1.0", other).await.status,
        StatusCode::CREATED
    );

    let config_len = config.len() as u64;
    Pushed {
        v1_size: m1.len() as u64 + config_len + 1000,
        // Both children, their layers, and the config they share once.
        index_size: (index.len() + m1.len() + m2.len()) as u64 + config_len + 1300,
        index: sha256(index.as_bytes()),
        v1,
        v2,
        layer_one,
    }
}

fn names(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}` in {list}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

/// Calls the management API, expecting `status`; returns the JSON answer.
async fn expect(app: &App, method: &str, uri: &str, status: StatusCode) -> Value {
    let r = app.call(method, uri, &[], Body::empty()).await;
    assert_eq!(
        r.status,
        status,
        "{method} {uri}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

#[tokio::test]
async fn repositories_tags_and_manifests_are_listed_with_their_sizes() {
    let app = app().await;
    let pushed = push_images(&app, "team/app").await;

    let all = expect(&app, "GET", "/berth/v1/repositories", StatusCode::OK).await;
    assert_eq!(names(&all, "repositories", "name"), ["other", "team/app"]);
    assert_eq!(all["next"], Value::Null);
    let app_view = &all["repositories"][1];
    assert_eq!(app_view["manifest_count"], 3);
    assert_eq!(app_view["tag_count"], 4);
    assert_eq!(app_view["blob_count"], 3);
    assert!(app_view["updated_at"].as_str().unwrap() >= app_view["created_at"].as_str().unwrap());

    // Pages: `n` of them, then `next` to pass as `last`.
    let first = expect(&app, "GET", "/berth/v1/repositories?n=1", StatusCode::OK).await;
    assert_eq!(names(&first, "repositories", "name"), ["other"]);
    assert_eq!(first["next"], "other");
    let second = expect(
        &app,
        "GET",
        "/berth/v1/repositories?n=1&last=other",
        StatusCode::OK,
    )
    .await;
    assert_eq!(names(&second, "repositories", "name"), ["team/app"]);
    assert_eq!(second["next"], Value::Null);

    // One repository, by its name with `/` as it is, or encoded.
    let shown = expect(
        &app,
        "GET",
        "/berth/v1/repositories/team/app",
        StatusCode::OK,
    )
    .await;
    assert_eq!(&shown, app_view);
    let encoded = expect(
        &app,
        "GET",
        "/berth/v1/repositories/team%2Fapp",
        StatusCode::OK,
    )
    .await;
    assert_eq!(&encoded, app_view);

    let tags = expect(
        &app,
        "GET",
        "/berth/v1/repositories/team/app/_tags",
        StatusCode::OK,
    )
    .await;
    assert_eq!(tags["repository"], "team/app");
    assert_eq!(
        names(&tags, "tags", "name"),
        ["latest", "multi", "v1", "v2"]
    );
    let multi = &tags["tags"][1];
    assert_eq!(multi["digest"], pushed.index);
    assert_eq!(multi["media_type"], OCI_INDEX);
    assert_eq!(multi["size"], pushed.index_size);
    assert_eq!(tags["tags"][2]["size"], pushed.v1_size);
    let page = expect(
        &app,
        "GET",
        "/berth/v1/repositories/team/app/_tags?n=2&last=latest",
        StatusCode::OK,
    )
    .await;
    assert_eq!(names(&page, "tags", "name"), ["multi", "v1"]);
    assert_eq!(page["next"], "v1");
    let v1 = expect(
        &app,
        "GET",
        "/berth/v1/repositories/team/app/_tags/v1",
        StatusCode::OK,
    )
    .await;
    assert_eq!(v1, tags["tags"][2]);

    let manifests = expect(
        &app,
        "GET",
        "/berth/v1/repositories/team/app/_manifests",
        StatusCode::OK,
    )
    .await;
    let list = manifests["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let by_digest = |digest: &str| {
        list.iter()
            .find(|m| m["digest"] == digest)
            .unwrap_or_else(|| panic!("{digest} not in {manifests}"))
    };
    let index = by_digest(&pushed.index);
    assert_eq!(index["tags"], json!(["multi"]));
    assert_eq!(index["size"], pushed.index_size);
    assert_eq!(index["artifact_type"], Value::Null);
    let platforms: Vec<&str> = index["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(index["children"][1]["digest"], pushed.v2);
    let one = by_digest(&pushed.v1);
    assert_eq!(one["tags"], json!(["latest", "v1"]));
    assert_eq!(one["children"], json!([]));
    assert_eq!(
        one["artifact_type"],
        "application/vnd.oci.image.config.v1+json"
    );
    let shown = expect(
        &app,
        "GET",
        &format!("/berth/v1/repositories/team/app/_manifests/{}", pushed.v1),
        StatusCode::OK,
    )
    .await;
    assert_eq!(&shown, one);
}

#[tokio::test]
async fn refusals_use_the_management_codes() {
    let app = app().await;
    push_images(&app, "team/app").await;
    let cases: &[(&str, &str, StatusCode, &str, &str)] = &[
        (
            "GET",
            "/berth/v1/repositories/nope",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "`nope`",
        ),
        (
            "DELETE",
            "/berth/v1/repositories/nope",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "`nope`",
        ),
        (
            "GET",
            "/berth/v1/repositories/nope/_tags",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "`nope`",
        ),
        (
            "GET",
            "/berth/v1/repositories/team/app/_tags/v9",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "repository `team/app` has no tag `v9`",
        ),
        (
            "DELETE",
            "/berth/v1/repositories/team/app/_tags/v9",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no tag `v9`",
        ),
        (
            "DELETE",
            "/berth/v1/repositories/team/app/_manifests/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "has no manifest",
        ),
        (
            "DELETE",
            "/berth/v1/repositories/team/app/_manifests/v1",
            StatusCode::BAD_REQUEST,
            "INVALID",
            "by its digest",
        ),
        (
            "GET",
            "/berth/v1/repositories/Team",
            StatusCode::BAD_REQUEST,
            "INVALID",
            "",
        ),
        (
            "GET",
            "/berth/v1/repositories?n=0",
            StatusCode::BAD_REQUEST,
            "INVALID",
            "1 to 1000",
        ),
        (
            "GET",
            "/berth/v1/repositories?n=1001",
            StatusCode::BAD_REQUEST,
            "INVALID",
            "1 to 1000",
        ),
        (
            "GET",
            "/berth/v1/repositories/team/app/_tags?n=x",
            StatusCode::BAD_REQUEST,
            "INVALID",
            "`n=x`",
        ),
        (
            "DELETE",
            "/berth/v1/repositories/team/app/_tags",
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "",
        ),
    ];
    for (method, uri, status, code, message) in cases {
        let r = app.call(method, uri, &[], Body::empty()).await;
        let body = r.json();
        assert_eq!(r.status, *status, "{method} {uri}: {body}");
        assert_eq!(body["errors"][0]["code"], *code, "{method} {uri}: {body}");
        assert!(r.message().contains(message), "{method} {uri}: {body}");
    }
    // Admin only, like the rest of the management API.
    let r = app
        .call(
            "GET",
            "/berth/v1/repositories",
            &[("authorization", &basic("admin", "wrong"))],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Nothing was changed by any of it.
    let shown = expect(
        &app,
        "GET",
        "/berth/v1/repositories/team/app",
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            shown["manifest_count"].as_u64(),
            shown["tag_count"].as_u64()
        ),
        (Some(3), Some(4))
    );
}

#[tokio::test]
async fn untag_and_deletions_go_through_the_change_log() {
    let app = app().await;
    let pushed = push_images(&app, "team/app").await;
    let (_, seq_before) = app.registry.change_bounds().await.unwrap();

    // Untag: the tag goes, the manifest stays, pullable by digest (and by its other tag).
    let untagged = expect(
        &app,
        "DELETE",
        "/berth/v1/repositories/team/app/_tags/v1",
        StatusCode::OK,
    )
    .await;
    assert_eq!(untagged["name"], "v1");
    assert_eq!(untagged["digest"], pushed.v1);
    assert_eq!(
        app.get("/v2/team/app/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );
    let by_digest = format!("/v2/team/app/manifests/{}", pushed.v1);
    assert_eq!(app.get(&by_digest).await.status, StatusCode::OK);
    assert_eq!(
        app.get("/v2/team/app/manifests/latest").await.status,
        StatusCode::OK
    );

    // A manifest by digest, with its tags.
    let deleted = expect(
        &app,
        "DELETE",
        &format!("/berth/v1/repositories/team/app/_manifests/{}", pushed.v2),
        StatusCode::OK,
    )
    .await;
    assert_eq!(deleted["tags"], json!(["v2"]));
    assert_eq!(
        app.get("/v2/team/app/manifests/v2").await.status,
        StatusCode::NOT_FOUND
    );

    // The whole repository.
    let gone = expect(
        &app,
        "DELETE",
        "/berth/v1/repositories/team/app",
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        gone,
        json!({"name": "team/app", "manifests_deleted": 2, "tags_deleted": 2, "blob_links_removed": 3})
    );
    assert_eq!(app.get(&by_digest).await.status, StatusCode::NOT_FOUND);
    let blob = format!("/v2/team/app/blobs/{}", pushed.layer_one);
    assert_eq!(app.get(&blob).await.status, StatusCode::NOT_FOUND);
    let catalog = app.get("/v2/_catalog").await.json();
    assert_eq!(catalog["repositories"], json!(["other"]));
    expect(
        &app,
        "GET",
        "/berth/v1/repositories/team/app",
        StatusCode::NOT_FOUND,
    )
    .await;
    expect(
        &app,
        "DELETE",
        "/berth/v1/repositories/team/app",
        StatusCode::NOT_FOUND,
    )
    .await;
    // `other` is untouched.
    assert_eq!(
        app.get("/v2/other/manifests/1.0").await.status,
        StatusCode::OK
    );

    // Every removal is in the change log, as a client's DELETEs would be.
    let changes = app.registry.changes(seq_before, 100).await.unwrap();
    let logged: Vec<(ChangeAction, Option<String>, Option<String>)> = changes
        .iter()
        .map(|c| {
            assert_eq!(c.repository.as_str(), "team/app");
            (
                c.event.action(),
                c.event.tag().map(ToString::to_string),
                c.event.digest().map(ToString::to_string),
            )
        })
        .collect();
    let (index, v1, v2) = (&pushed.index, &pushed.v1, &pushed.v2);
    let mut expected = vec![
        (
            ChangeAction::TagDelete,
            Some("v1".to_owned()),
            Some(v1.clone()),
        ),
        (
            ChangeAction::TagDelete,
            Some("v2".to_owned()),
            Some(v2.clone()),
        ),
        (ChangeAction::ManifestDelete, None, Some(v2.clone())),
    ];
    // The repository's deletion goes in lexical order of digest.
    let mut rest = [
        (
            index,
            vec![(
                ChangeAction::TagDelete,
                Some("multi".to_owned()),
                Some(index.clone()),
            )],
        ),
        (
            v1,
            vec![(
                ChangeAction::TagDelete,
                Some("latest".to_owned()),
                Some(v1.clone()),
            )],
        ),
    ];
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (digest, tags) in rest {
        expected.extend(tags);
        expected.push((ChangeAction::ManifestDelete, None, Some(digest.clone())));
    }
    // Then the name's removal, for connected registries to remove theirs.
    expected.push((ChangeAction::RepositoryDelete, None, None));
    assert_eq!(logged, expected);
}

#[tokio::test]
async fn a_read_only_mirror_refuses_deletions_and_still_lists() {
    let app = app().await;
    push_images(&app, "team/app").await;
    app.set_read_only("connected registry `factory` is ReadOnly");
    for uri in [
        "/berth/v1/repositories/team/app",
        "/berth/v1/repositories/team/app/_tags/v1",
    ] {
        let r = app.call("DELETE", uri, &[], Body::empty()).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{uri}");
        assert_eq!(r.json()["errors"][0]["code"], "READ_ONLY", "{uri}");
        assert!(
            r.message().contains("`factory` is ReadOnly"),
            "{}",
            r.message()
        );
    }
    let shown = expect(
        &app,
        "GET",
        "/berth/v1/repositories/team/app",
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["tag_count"], 4, "nothing was deleted");
}

#[tokio::test]
async fn listings_by_time_newest_or_oldest_first() {
    let app = app().await;
    let config = app.push_blob("b/old", b"{}").await;
    let old = image_manifest(&config, 2, &[]);
    assert_eq!(
        app.put_manifest("b/old", "z-first", old.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    // Times are whole seconds: the second push lands in a later one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let config = app.push_blob("a/new", b"{}").await;
    assert_eq!(
        app.put_manifest("a/new", "x", old.clone()).await.status,
        StatusCode::CREATED
    );
    let layer = app.push_blob("b/old", b"a layer").await;
    let new = image_manifest(&config, 2, &[(&layer, 7)]);
    assert_eq!(
        app.put_manifest("b/old", "a-second", new.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    let (old, new) = (sha256(old.as_bytes()), sha256(new.as_bytes()));

    let tags = |query: &'static str| {
        let app = &app;
        async move {
            let page = expect(
                app,
                "GET",
                &format!("/berth/v1/repositories/b/old/_tags{query}"),
                StatusCode::OK,
            )
            .await;
            (names(&page, "tags", "name"), page["next"].clone())
        }
    };
    assert_eq!(tags("").await.0, ["a-second", "z-first"]);
    assert_eq!(tags("?orderby=time_desc").await.0, ["a-second", "z-first"]);
    assert_eq!(tags("?orderby=TIME_ASC").await.0, ["z-first", "a-second"]);
    // A page by time ends with its time and key, to pass back as it is.
    let (first, next) = tags("?orderby=time_asc&n=1").await;
    assert_eq!(first, ["z-first"]);
    let next = next.as_str().unwrap().to_owned();
    assert!(next.ends_with("/z-first"), "{next}");
    let page = expect(
        &app,
        "GET",
        &format!("/berth/v1/repositories/b/old/_tags?orderby=time_asc&n=1&last={next}"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(names(&page, "tags", "name"), ["a-second"]);
    assert_eq!(page["next"], Value::Null);

    let manifests = expect(
        &app,
        "GET",
        "/berth/v1/repositories/b/old/_manifests?orderby=time_desc",
        StatusCode::OK,
    )
    .await;
    assert_eq!(names(&manifests, "manifests", "digest"), [new, old]);
    let repositories = expect(
        &app,
        "GET",
        "/berth/v1/repositories?orderby=time_desc",
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        names(&repositories, "repositories", "name"),
        ["a/new", "b/old"]
    );
    let repositories = expect(
        &app,
        "GET",
        "/berth/v1/repositories?orderby=time_asc",
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        names(&repositories, "repositories", "name"),
        ["b/old", "a/new"]
    );

    for (query, message) in [
        ("?orderby=newest", "`orderby=newest`"),
        ("?orderby=time_desc&last=a-second", "pass the `next`"),
    ] {
        let r = app
            .get(&format!("/berth/v1/repositories/b/old/_tags{query}"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(r.message().contains(message), "{query}: {}", r.message());
    }
}
