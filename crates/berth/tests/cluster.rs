//! Several stateless nodes behind a load balancer, end to end: three `berth serve` nodes on
//! one PostgreSQL database and one S3 bucket (s3s-fs), behind nginx (round robin, no
//! stickiness), as the README's "Running several nodes" sets them up
//! (`tests/common/cluster.rs`).
//!
//! - docker, podman and skopeo push and pull through the balancer;
//! - one blob upload started on one node, continued on a second and finished on a third,
//!   in chunks smaller and larger than the store's minimum part;
//! - one node killed with kill -9 in the middle of 8 concurrent pushes: every push that was
//!   acknowledged is pullable whole afterwards, and no tag names anything partial;
//! - a connected registry whose parent is the balancer activates, syncs content down and
//!   keeps syncing while the root's nodes are killed and restarted one at a time;
//! - `/readyz` on a node covers the database and the object store.
//!
//! The conformance suite runs through the balancer too (`conformance.rs`, `…::on_cluster`).

mod authn;
mod clients;
mod common;
mod sites;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authn::{Cred, Manage, expect_status, poll_until, send, sha256_digest};
use berth_testkit::postgres::TestPostgres;
use berth_testkit::s3::TestS3;
use clients::{Containers, Dockerd, OciLayout, assert_printed, host_arch, run};
use common::cluster::Cluster;
use common::{ADMIN_PASSWORD, Berth};
use serde_json::json;
use sites::{connected, wait_manifest, wait_online};

fn admin_creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

/// `len` bytes that differ with `seed` (and do not compress to nothing).
fn bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = sha256_digest(seed.as_bytes()).into_bytes();
    while out.len() < len {
        block = sha256_digest(&block).into_bytes();
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    out
}

/// The `Location` of an upload answer, as an absolute URL on `base`.
fn upload_url(base: &str, resp: &authn::Resp) -> String {
    let location = resp.header("location").expect("an upload Location");
    if location.starts_with("http") {
        // Each node names itself through the balancer's Host: go where the test says.
        let path = location.splitn(4, '/').nth(3).unwrap_or_default();
        format!("{base}/{path}")
    } else {
        format!("{base}{location}")
    }
}

#[test]
fn docker_podman_and_skopeo_push_and_pull_through_the_balancer() {
    common::require("skopeo");
    common::require("podman");
    common::require("dockerd");
    let cluster = Cluster::start(3);
    let c = Containers::new();
    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image(
        host_arch(),
        "hello",
        b"hello from three nodes\n",
        Some("v1"),
    );

    // skopeo pushes; every node then serves the manifest.
    run(c
        .skopeo()
        .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
        .arg(admin_creds())
        .arg(layout.reference("v1"))
        .arg(format!("docker://{}/cluster/skopeo:v1", cluster.host)));
    let pushed = image.digest();
    for node in &cluster.nodes {
        let (status, body) = sites::manifest(node, &Cred::admin(), "cluster/skopeo", "v1");
        assert_eq!(status, 200, "node {} serves what another took", node.host);
        assert_eq!(sha256_digest(&body), pushed);
    }

    // podman pulls it through the balancer and pushes it to a second repository.
    let podman = |args: &[&str]| run(c.podman("main").args(args));
    podman(&[
        "pull",
        "--tls-verify=false",
        "--creds",
        &admin_creds(),
        &format!("{}/cluster/skopeo:v1", cluster.host),
    ]);
    podman(&[
        "push",
        "--tls-verify=false",
        "--creds",
        &admin_creds(),
        &format!("{}/cluster/skopeo:v1", cluster.host),
        &format!("docker://{}/cluster/podman:v1", cluster.host),
    ]);

    // docker pulls podman's push and pushes it again under a third name.
    let dockerd = Dockerd::start();
    dockerd.login(&cluster.host, "admin", ADMIN_PASSWORD);
    let docker = || dockerd.docker();
    run(docker()
        .arg("pull")
        .arg(format!("{}/cluster/podman:v1", cluster.host)));
    run(docker()
        .arg("tag")
        .arg(format!("{}/cluster/podman:v1", cluster.host))
        .arg(format!("{}/cluster/docker:v1", cluster.host)));
    let push = run(docker()
        .arg("push")
        .arg(format!("{}/cluster/docker:v1", cluster.host)));
    assert_printed(&push, "digest: sha256:");

    // skopeo reads docker's push back, whole, through the balancer.
    let back = c.work("back");
    run(c
        .skopeo()
        .args(["copy", "--src-tls-verify=false", "--src-creds"])
        .arg(admin_creds())
        .arg(format!("docker://{}/cluster/docker:v1", cluster.host))
        .arg(format!("oci:{}:v1", back.display())));
    let descriptor = clients::layout_descriptor(&back, "v1");
    let manifest: serde_json::Value = serde_json::from_slice(&clients::read_layout_blob(
        &back,
        descriptor["digest"].as_str().unwrap(),
    ))
    .unwrap();
    // podman and docker rewrite what they push (config, compression): the image that comes
    // back is still the platform's image with its one layer.
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(1),
        "{manifest}"
    );
    let config = clients::read_layout_blob(&back, manifest["config"]["digest"].as_str().unwrap());
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["architecture"], host_arch(), "{config}");
}

#[test]
fn an_upload_started_on_one_node_continues_on_a_second_and_finishes_on_a_third() {
    let cluster = Cluster::start(3);
    let http = authn::client();
    let repo = "cluster/chunked";
    // 1 MiB, then 6 MiB (over S3's 5 MiB minimum part), then 3 MiB, then 100 KiB with the
    // PUT: staged and multipart segments mixed, each request on another node.
    let sizes = [1 << 20, 6 << 20, 3 << 20, 100 << 10];
    let blob = bytes("chunked across nodes", sizes.iter().sum());
    let digest = sha256_digest(&blob);
    let node = |i: usize| &cluster.nodes[i % 3].url;

    let post = send(
        &http,
        "POST",
        &format!("{}/v2/{repo}/blobs/uploads/", node(0)),
        &Cred::admin(),
        &[],
        Some(Vec::new()),
    );
    expect_status(&post, 202, "start an upload on node 0");
    let mut url = upload_url(node(1), &post);
    let mut offset = 0;
    for (i, size) in sizes[..3].iter().enumerate() {
        let chunk = blob[offset..offset + size].to_vec();
        let range = format!("{offset}-{}", offset + size - 1);
        let patch = send(
            &http,
            "PATCH",
            &url,
            &Cred::admin(),
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            Some(chunk),
        );
        expect_status(&patch, 202, &format!("chunk {i} on node {}", i + 1));
        assert_eq!(
            patch.header("range").as_deref(),
            Some(format!("0-{}", offset + size - 1).as_str()),
            "node {} counts every byte the others took",
            i + 1
        );
        offset += size;
        url = upload_url(node(i + 2), &patch);
    }
    // The session's progress, asked of yet another node.
    let status = send(&http, "GET", &url, &Cred::admin(), &[], None);
    expect_status(&status, 204, "upload status");
    assert_eq!(
        status.header("range").as_deref(),
        Some(format!("0-{}", offset - 1).as_str())
    );
    let separator = if url.contains('?') { '&' } else { '?' };
    let put = send(
        &http,
        "PUT",
        &format!("{url}{separator}digest={digest}"),
        &Cred::admin(),
        &[("Content-Type", "application/octet-stream")],
        Some(blob[offset..].to_vec()),
    );
    expect_status(&put, 201, "finish the upload on a third node");

    for node in &cluster.nodes {
        let got = send(
            &http,
            "GET",
            &format!("{}/v2/{repo}/blobs/{digest}", node.url),
            &Cred::admin(),
            &[],
            None,
        );
        expect_status(&got, 200, "the blob on every node");
        assert_eq!(got.body.len(), blob.len());
        assert_eq!(sha256_digest(&got.body), digest, "whole and in order");
    }
}

/// One push of a 3-blob image as plain HTTP requests through the balancer, chunked so that
/// its requests land on several nodes; `Some(manifest digest)` once the manifest PUT was
/// answered 201, `None` when any request failed (no retry: the push is simply not
/// acknowledged).
fn push_once(
    http: &reqwest::blocking::Client,
    base: &str,
    repo: &str,
    tag: &str,
) -> Option<String> {
    let call = |method: reqwest::Method, url: &str, headers: &[(&str, String)], body: Vec<u8>| {
        let mut request = http
            .request(method, url)
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().ok()
    };
    let layer = bytes(&format!("{repo}:{tag} layer"), 700 << 10);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"push": format!("{repo}:{tag}")}},
    }))
    .unwrap();
    for blob in [&config, &layer] {
        let post = call(
            reqwest::Method::POST,
            &format!("{base}/v2/{repo}/blobs/uploads/"),
            &[],
            Vec::new(),
        )?;
        if post.status() != 202 {
            return None;
        }
        let mut location = post.headers().get("location")?.to_str().ok()?.to_owned();
        for (i, chunk) in blob.chunks(256 << 10).enumerate() {
            let start = i * (256 << 10);
            let url = absolute(base, &location);
            let patch = call(
                reqwest::Method::PATCH,
                &url,
                &[
                    ("Content-Type", "application/octet-stream".into()),
                    (
                        "Content-Range",
                        format!("{start}-{}", start + chunk.len() - 1),
                    ),
                ],
                chunk.to_vec(),
            )?;
            if patch.status() != 202 {
                return None;
            }
            location = patch.headers().get("location")?.to_str().ok()?.to_owned();
        }
        let url = absolute(base, &location);
        let separator = if url.contains('?') { '&' } else { '?' };
        let put = call(
            reqwest::Method::PUT,
            &format!("{url}{separator}digest={}", sha256_digest(blob)),
            &[],
            Vec::new(),
        )?;
        if put.status() != 201 {
            return None;
        }
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": authn::OCI_MANIFEST,
        "config": {"mediaType": authn::OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": authn::OCI_LAYER, "digest": sha256_digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let put = call(
        reqwest::Method::PUT,
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", authn::OCI_MANIFEST.into())],
        manifest.clone(),
    )?;
    (put.status() == 201).then(|| sha256_digest(&manifest))
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

/// Every tag of `repo` through `base` names a manifest whose blobs are all there, whole.
fn assert_whole(http: &reqwest::blocking::Client, base: &str, repo: &str, tag: &str) -> String {
    let resp = send(
        http,
        "GET",
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        &Cred::admin(),
        &[("Accept", authn::OCI_MANIFEST)],
        None,
    );
    expect_status(&resp, 200, &format!("{repo}:{tag}"));
    let manifest: serde_json::Value = resp.json("a manifest");
    let mut blobs = vec![manifest["config"].clone()];
    blobs.extend(manifest["layers"].as_array().unwrap().iter().cloned());
    for blob in blobs {
        let digest = blob["digest"].as_str().unwrap();
        let got = send(
            http,
            "GET",
            &format!("{base}/v2/{repo}/blobs/{digest}"),
            &Cred::admin(),
            &[],
            None,
        );
        expect_status(&got, 200, &format!("blob {digest} of {repo}:{tag}"));
        assert_eq!(
            sha256_digest(&got.body),
            digest,
            "{repo}:{tag}: {digest} whole"
        );
        assert_eq!(Some(got.body.len() as u64), blob["size"].as_u64());
    }
    sha256_digest(&resp.body)
}

#[test]
fn a_node_killed_during_eight_concurrent_pushes_loses_no_acknowledged_push() {
    let mut cluster = Cluster::start(3);
    let base = cluster.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let attempted = Arc::new(Mutex::new(Vec::new()));
    let pushers: Vec<_> = (0..8)
        .map(|p| {
            let (base, stop) = (base.clone(), stop.clone());
            let (acknowledged, attempted) = (acknowledged.clone(), attempted.clone());
            std::thread::spawn(move || {
                let http = authn::client();
                let repo = format!("cluster/pusher{p}");
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let tag = format!("t{n}");
                    attempted.lock().unwrap().push((repo.clone(), tag.clone()));
                    if let Some(digest) = push_once(&http, &base, &repo, &tag) {
                        acknowledged
                            .lock()
                            .unwrap()
                            .push((repo.clone(), tag, digest));
                    }
                    n += 1;
                }
            })
        })
        .collect();

    // Let the pushes run on all three nodes, then kill one in the middle of them.
    let started = Instant::now();
    poll_until(Duration::from_secs(60), "pushes acknowledged", || {
        let done = acknowledged.lock().unwrap().len();
        if done >= 8 {
            Ok(())
        } else {
            Err(format!("{done} so far"))
        }
    });
    cluster.nodes[1].kill();
    let at_kill = acknowledged.lock().unwrap().len();
    // The others go on taking pushes (nginx stops sending to the dead node).
    poll_until(Duration::from_secs(60), "pushes after the kill", || {
        let done = acknowledged.lock().unwrap().len();
        if done >= at_kill + 16 {
            Ok(())
        } else {
            Err(format!("{done} so far ({at_kill} at the kill)"))
        }
    });
    stop.store(true, Ordering::Relaxed);
    for pusher in pushers {
        pusher.join().expect("a pusher thread");
    }
    cluster.nodes[1].restart();
    eprintln!(
        "{} pushes attempted, {} acknowledged in {:?}",
        attempted.lock().unwrap().len(),
        acknowledged.lock().unwrap().len(),
        started.elapsed()
    );

    let http = authn::client();
    // Every acknowledged push is there, whole, with the digest the push was answered with.
    for (repo, tag, digest) in acknowledged.lock().unwrap().iter() {
        assert_eq!(
            &assert_whole(&http, &base, repo, tag),
            digest,
            "{repo}:{tag}"
        );
    }
    // Nothing partial is visible: every tag any pusher got as far as (acknowledged or not)
    // is either absent or whole.
    for (repo, tag) in attempted.lock().unwrap().iter() {
        let status = sites::manifest_status_at(&base, repo, tag);
        match status {
            404 => {}
            200 => {
                assert_whole(&http, &base, repo, tag);
            }
            other => panic!("{repo}:{tag} answered {other}"),
        }
    }
}

#[test]
fn a_connected_registry_syncs_from_the_balanced_root_while_its_nodes_restart() {
    let mut cluster = Cluster::start(3);
    let manage = Manage::new(&cluster.url);
    let cs = connected(
        &manage,
        json!({"name": "vessel1", "mode": "ReadOnly", "repositories": ["fleet/*"]}),
    );
    assert!(
        cs.contains(&format!("ParentGatewayEndpoint={};", cluster.host)),
        "the site's parent is the balancer: {cs}"
    );
    let before = sites::push_image_at(&cluster.url, "fleet/app", "v0", b"before the site");
    let site = Berth::start_with(&["--connection-string", &cs]);
    wait_online(&manage, "vessel1");
    let body = wait_manifest(&site, &Cred::admin(), "fleet/app", "v0", 200);
    assert_eq!(sha256_digest(&body), before);

    // Each node in turn killed and started again; a push through the balancer after each
    // reaches the site.
    for i in 0..3 {
        cluster.nodes[i].kill();
        let tag = format!("v{}", i + 1);
        // Pushed to a live node: nginx answers 502 to a POST that met the dead one (it
        // retries no request that is not idempotent), and this test is about the site.
        let live = &cluster.nodes[(i + 1) % 3].url;
        let pushed = sites::push_image_at(live, "fleet/app", &tag, tag.as_bytes());
        let body = wait_manifest(&site, &Cred::admin(), "fleet/app", &tag, 200);
        assert_eq!(sha256_digest(&body), pushed, "{tag} with node {i} down");
        cluster.nodes[i].restart();
    }
    let after = sites::push_image_at(&cluster.url, "fleet/app", "v4", b"all nodes back");
    let body = wait_manifest(&site, &Cred::admin(), "fleet/app", "v4", 200);
    assert_eq!(sha256_digest(&body), after);

    // The site says it is Online, with no problem left standing.
    let view = poll_until(
        sites::WAIT,
        "vessel1 Online with no current problem",
        || {
            let view = sites::view(&manage, "vessel1");
            let current = view["status_details"]
                .as_array()
                .map(|d| d.iter().filter(|d| d["resolved_at"].is_null()).count())
                .unwrap_or(0);
            if view["connection_state"] == "Online" && current == 0 {
                Ok(view)
            } else {
                Err(view.to_string())
            }
        },
    );
    assert_eq!(view["connection_state"], "Online");
}

#[test]
fn readyz_covers_the_database_and_the_object_store() {
    // A database server and an S3 server of this test's own, to stop under a running node.
    let postgres = TestPostgres::start();
    let s3 = TestS3::start();
    let node = Berth::start_with(&[
        "--database-url",
        &postgres.database(),
        "--storage-url",
        &s3.url(),
    ]);
    let http = authn::client();
    let readyz = || {
        let resp = send(
            &http,
            "GET",
            &format!("{}/readyz", node.url),
            &Cred::None,
            &[],
            None,
        );
        let body: serde_json::Value = resp.json("readyz");
        (resp.status, body)
    };
    let (status, body) = readyz();
    assert_eq!(status, 200, "ready on PostgreSQL and S3: {body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    assert_eq!(body["checks"]["storage"], "ok", "{body}");

    drop(s3);
    let body = poll_until(
        Duration::from_secs(30),
        "storage not ready",
        || match readyz() {
            (503, body) if body["failing"] == json!(["storage"]) => Ok(body),
            (status, body) => Err(format!("{status} {body}")),
        },
    );
    assert_ne!(body["checks"]["storage"], "ok", "says why: {body}");
    assert!(
        body["checks"]["storage"]
            .as_str()
            .is_some_and(|why| why.contains("s3://")),
        "names the store: {body}"
    );

    drop(postgres);
    poll_until(
        Duration::from_secs(30),
        "database not ready",
        || match readyz() {
            (503, body)
                if body["failing"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("database")) =>
            {
                Ok(body)
            }
            (status, body) => Err(format!("{status} {body}")),
        },
    );
}
