//! Connected registries for the end-to-end tests (`connected.rs`, `connected_ops.rs`,
//! `connected_lifecycle.rs`, `content_sync.rs`): a connected registry created through the
//! root's management API with its connection string, the root's view of it and waits on its
//! state, and the content the tests push and then wait for on a site.
//!
//! A test file that uses it also declares `mod authn; mod clients; mod common;`, whose
//! helpers this module is built on.

#![allow(dead_code)] // each test binary uses a part

use std::ffi::OsStr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::authn::{self, Cred, Manage, expect_status, poll_until, send};
use crate::clients::{Containers, run};
use crate::common::Berth;

/// How long a site is given to come online or to receive content: generous, so a slow
/// machine does not make a test flaky (the targets are seconds).
pub const WAIT: Duration = Duration::from_secs(30);

/// Creates connected registry `body["name"]` through the management API of `manage`'s
/// registry; returns its connection string (http, password1 generated).
#[track_caller]
pub fn connected(manage: &Manage, body: Value) -> String {
    let name = body["name"].as_str().unwrap().to_owned();
    let resp = manage.call("POST", "/berth/v1/connected-registries", Some(body.clone()));
    expect_status(&resp, 201, &format!("creating connected registry {body}"));
    let resp = manage.call(
        "POST",
        &format!("/berth/v1/connected-registries/{name}/settings"),
        Some(json!({"parent_protocol": "http", "generate_password": 1})),
    );
    expect_status(&resp, 200, &format!("get-settings of {name}"));
    resp.json("settings")["connection_string"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The connected registry `name` as the root's API shows it.
#[track_caller]
pub fn view(manage: &Manage, name: &str) -> Value {
    let resp = manage.call(
        "GET",
        &format!("/berth/v1/connected-registries/{name}"),
        None,
    );
    expect_status(&resp, 200, &format!("show {name}"));
    resp.json("show")
}

/// Waits up to `within` until the root shows `name` in connection state `state`; that view.
#[track_caller]
pub fn wait_state(manage: &Manage, name: &str, state: &str, within: Duration) -> Value {
    poll_until(within, &format!("{name} {state}"), || {
        let view = view(manage, name);
        if view["connection_state"] == state {
            Ok(view)
        } else {
            Err(view.to_string())
        }
    })
}

/// Waits until connected registry `name` reports Online to the root, with the address of
/// its login server (which its children's connection strings name); that view.
#[track_caller]
pub fn wait_online(manage: &Manage, name: &str) -> Value {
    poll_until(WAIT, &format!("{name} online"), || {
        let view = view(manage, name);
        if view["connection_state"] == "Online" && view["login_server"].is_string() {
            Ok(view)
        } else {
            Err(view.to_string())
        }
    })
}

/// The manifest `reference` of `repo` on `berth` as `who`, accepting OCI and Docker
/// manifests and indexes: status and body.
pub fn manifest(berth: &Berth, who: &Cred, repo: &str, reference: &str) -> (u16, Vec<u8>) {
    manifest_at(&berth.url, who, repo, reference)
}

/// [`manifest`] on the registry at `base`.
pub fn manifest_at(base: &str, who: &Cred, repo: &str, reference: &str) -> (u16, Vec<u8>) {
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
    let resp = send(
        &authn::client(),
        "GET",
        &format!("{base}/v2/{repo}/manifests/{reference}"),
        who,
        &[("Accept", accept)],
        None,
    );
    (resp.status, resp.body)
}

/// The status of the manifest `reference` of `repo` on `berth`, as the admin.
pub fn manifest_status(berth: &Berth, repo: &str, reference: &str) -> u16 {
    manifest_status_at(&berth.url, repo, reference)
}

/// The status of the manifest `reference` of `repo` on the registry at `base` (a node, a
/// load balancer), as the admin.
pub fn manifest_status_at(base: &str, repo: &str, reference: &str) -> u16 {
    manifest_at(base, &Cred::admin(), repo, reference).0
}

/// Waits up to [`WAIT`] until the manifest `reference` of `repo` on `berth` answers
/// `expected` to `who`; the body of that answer.
#[track_caller]
pub fn wait_manifest(
    berth: &Berth,
    who: &Cred,
    repo: &str,
    reference: &str,
    expected: u16,
) -> Vec<u8> {
    poll_until(
        WAIT,
        &format!("{repo}:{reference} answering {expected} on {}", berth.host),
        || {
            let (status, body) = manifest(berth, who, repo, reference);
            if status == expected {
                Ok(body)
            } else {
                Err(format!("status {status}"))
            }
        },
    )
}

/// An image with one layer of `layer` bytes, pushed over HTTP to `repo:tag` on `to` as the
/// admin; returns the manifest digest.
#[track_caller]
pub fn push_image(to: &Berth, repo: &str, tag: &str, layer: &[u8]) -> String {
    push_image_at(&to.url, repo, tag, layer)
}

/// [`push_image`] to the registry at `base` (a node, a load balancer).
#[track_caller]
pub fn push_image_at(base: &str, repo: &str, tag: &str, layer: &[u8]) -> String {
    let http = authn::client();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"berth.test": format!("{repo}:{tag}")}},
    }))
    .unwrap();
    for blob in [&config[..], layer] {
        let (post, put) = authn::upload_blob(&http, base, &Cred::admin(), repo, blob);
        expect_status(&post, 202, "start an upload");
        expect_status(put.as_ref().unwrap(), 201, "finish an upload");
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": authn::OCI_MANIFEST,
        "config": {"mediaType": authn::OCI_CONFIG, "digest": authn::sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": authn::OCI_LAYER, "digest": authn::sha256_digest(layer), "size": layer.len()}],
    }))
    .unwrap();
    let resp = authn::put_manifest(&http, base, &Cred::admin(), repo, tag, &manifest);
    expect_status(&resp, 201, &format!("push {repo}:{tag}"));
    authn::sha256_digest(&manifest)
}

/// `skopeo copy` of `source` (an `oci:` reference) to `target` (`repository:tag`) on `to`,
/// as the admin.
pub fn skopeo_push(containers: &Containers, source: impl AsRef<OsStr>, to: &Berth, target: &str) {
    run(containers
        .skopeo()
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &to.admin_creds(),
        ])
        .arg(source)
        .arg(format!("docker://{}/{target}", to.host)));
}

/// The repositories `berth` holds (`/v2/_catalog`, as the admin).
pub fn catalog(berth: &Berth) -> Vec<String> {
    let resp = send(
        &authn::client(),
        "GET",
        &format!("{}/v2/_catalog", berth.url),
        &Cred::admin(),
        &[],
        None,
    );
    expect_status(&resp, 200, "the catalog");
    resp.json("the catalog")["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}
