//! Content sync, parent to child, end to end with real clients and real processes:
//! root -> `factory` (ReadWrite) -> `line3` (ReadOnly).
//!
//! - an image pushed to the root with skopeo is pulled from `line3` with a client token, byte
//!   for byte; a multi-platform index and a signature artifact (with `subject`) arrive too, and
//!   the artifact is found on `line3` through the referrers API;
//! - a tag deleted at the root disappears below; a repository outside `line3`'s list never
//!   reaches it;
//! - `line3` killed while the root changes, then restarted, catches up from where it stopped;
//! - a repository taken off `line3`'s list on the root is deleted on `line3`, name included.

mod authn;
mod clients;
mod common;
mod proxy;
mod sites;

use std::time::Duration;

use authn::{Cred, Manage, expect_status, poll_until, send};
use clients::{Containers, OciLayout, run};
use common::Berth;
use proxy::{Proxy, incompressible};
use serde_json::{Value, json};
use sites::{WAIT, catalog, connected, manifest, skopeo_push, wait_manifest, wait_online};

#[test]
fn content_flows_down_two_levels() {
    common::require("skopeo");
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    manage.create_scope_map(
        "hello-pull",
        &[("hello-world", &["content/read", "metadata/read"])],
    );
    let password = manage.create_token("client1", "hello-pull", None).password1;
    let client = Cred::basic("client1", &password);

    let factory_cs = connected(
        &manage,
        json!({"name": "factory", "mode": "ReadWrite", "repositories": ["hello-world", "team/*"]}),
    );
    let factory = Berth::start_with(&["--connection-string", &factory_cs]);
    // line3's connection string names factory's address, which factory reports once online.
    wait_online(&manage, "factory");
    let line3_cs = connected(
        &manage,
        json!({"name": "line3", "parent": "factory", "repositories": ["hello-world"], "client_tokens": ["client1"]}),
    );
    let temp = tempfile::tempdir().unwrap();
    let mut line3 = Berth::with_data_dir(
        &temp.path().join("line3"),
        &["--connection-string", &line3_cs],
    );

    // Images built offline: one image, a two-platform index, a signature of the image.
    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let image = layout.put_image("amd64", "hello.txt", b"hello from the root", Some("v1"));
    let arm = layout.put_image("arm64", "hello.txt", b"hello, arm", None);
    let (_, index_bytes) = layout.put_index(&[("amd64", &image), ("arm64", &arm)], "multi");
    let (signature, _) = layout.put_artifact(
        "application/vnd.example.signature.v1",
        &image.descriptor,
        b"signed",
        "sig",
        "sig",
    );
    let creds = root.admin_creds();
    for tag in ["v1", "multi", "sig"] {
        run(containers
            .skopeo()
            .args([
                "copy",
                "--all",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
            ])
            .arg(layout.reference(tag))
            .arg(format!("docker://{}/hello-world:{tag}", root.host)));
    }
    // Also a repository line3 does not sync.
    skopeo_push(&containers, layout.reference("v1"), &root, "team/app:v1");

    // On line3, with the client token: the same bytes, under the same digests.
    assert_eq!(
        wait_manifest(&line3, &client, "hello-world", "v1", 200),
        image.manifest
    );
    assert_eq!(
        wait_manifest(&line3, &client, "hello-world", "multi", 200),
        index_bytes
    );
    assert_eq!(
        wait_manifest(&line3, &client, "hello-world", &arm.digest(), 200),
        arm.manifest
    );
    let pulled = containers.work("pulled");
    run(containers
        .skopeo()
        .args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &format!("client1:{password}"),
        ])
        .arg(format!("docker://{}/hello-world:v1", line3.host))
        .arg(format!("oci:{}:v1", pulled.display())));
    let layer = clients::read_layout_blob(&pulled, &image.layer_digest);
    assert_eq!(
        clients::sha256_digest(&layer),
        image.layer_digest,
        "the layer pulled from line3 is the root's"
    );

    // The signature is found through the referrers API on line3.
    let referrers = poll_until(WAIT, "the signature listed on line3", || {
        let resp = send(
            &authn::client(),
            "GET",
            &format!("{}/v2/hello-world/referrers/{}", line3.url, image.digest()),
            &client,
            &[],
            None,
        );
        let body: Value = serde_json::from_slice(&resp.body).map_err(|e| e.to_string())?;
        if body["manifests"].as_array().is_some_and(|m| !m.is_empty()) {
            Ok(body)
        } else {
            Err(body.to_string())
        }
    });
    assert_eq!(referrers["manifests"][0]["digest"], signature["digest"]);
    assert_eq!(
        referrers["manifests"][0]["artifactType"],
        "application/vnd.example.signature.v1"
    );

    // team/app is not line3's: it never arrives there (factory has it, line3 does not).
    assert_eq!(
        wait_manifest(&factory, &Cred::admin(), "team/app", "v1", 200),
        image.manifest
    );
    assert_eq!(manifest(&line3, &Cred::admin(), "team/app", "v1").0, 404);

    // A tag deleted at the root disappears below; the manifest stays by digest.
    let resp = send(
        &authn::client(),
        "DELETE",
        &format!("{}/v2/hello-world/manifests/multi", root.url),
        &Cred::admin(),
        &[],
        None,
    );
    expect_status(&resp, 202, "untag multi at the root");
    wait_manifest(&line3, &client, "hello-world", "multi", 404);
    assert_eq!(
        manifest(&line3, &client, "hello-world", &arm.digest()).0,
        200
    );

    // line3 down while the root changes; restarted, it catches up.
    line3.kill();
    let v2 = layout.put_image("amd64", "hello.txt", b"version two", Some("v2"));
    skopeo_push(&containers, layout.reference("v2"), &root, "hello-world:v2");
    let resp = send(
        &authn::client(),
        "DELETE",
        &format!(
            "{}/v2/hello-world/manifests/{}",
            root.url,
            signature["digest"].as_str().unwrap()
        ),
        &Cred::admin(),
        &[],
        None,
    );
    expect_status(&resp, 202, "delete the signature at the root");
    line3.restart();
    assert_eq!(
        wait_manifest(&line3, &client, "hello-world", "v2", 200),
        v2.manifest
    );
    wait_manifest(
        &line3,
        &client,
        "hello-world",
        signature["digest"].as_str().unwrap(),
        404,
    );
    assert_eq!(
        manifest(&line3, &client, "hello-world", "v1").1,
        image.manifest
    );

    // Taken off line3's list on the root: the repository is deleted there.
    let resp = manage.call(
        "PATCH",
        "/berth/v1/connected-registries/line3/permissions",
        Some(json!({"remove": ["hello-world"]})),
    );
    expect_status(&resp, 200, "removing hello-world from line3");
    wait_manifest(&line3, &Cred::admin(), "hello-world", &image.digest(), 404);
    // Its name too: line3's catalog no longer lists it.
    poll_until(
        WAIT,
        "hello-world gone from line3's catalog",
        || match catalog(&line3) {
            names if names.is_empty() => Ok(()),
            names => Err(format!("{names:?}")),
        },
    );
    assert_eq!(
        manifest(&factory, &Cred::admin(), "hello-world", "v1").0,
        200,
        "factory keeps it"
    );
}

/// What local clients push to a ReadWrite connected registry flows up to the root and down
/// to its siblings' subtree; pushed while the root is down, it is kept and sent when the root
/// returns, in order, all of it.
#[test]
fn pushes_to_a_read_write_registry_flow_up_and_survive_an_outage() {
    common::require("skopeo");
    let mut root = Berth::start();
    let manage = Manage::new(&root.url);
    let factory_cs = connected(
        &manage,
        json!({"name": "factory", "mode": "ReadWrite", "repositories": ["hello-world"]}),
    );
    let factory = Berth::start_with(&["--connection-string", &factory_cs]);
    // line3's connection string names factory's address, which factory reports once online.
    wait_online(&manage, "factory");
    let line3_cs = connected(
        &manage,
        json!({"name": "line3", "parent": "factory", "repositories": ["hello-world"]}),
    );
    let line3 = Berth::start_with(&["--connection-string", &line3_cs]);

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let reference = |tag: &str| format!("oci:{}:{tag}", containers.work("layout").display());
    let push = |tag: &str, to: &Berth| {
        skopeo_push(
            &containers,
            reference(tag),
            to,
            &format!("hello-world:{tag}"),
        );
    };
    let image = layout.put_image("amd64", "site.txt", b"pushed on site", Some("site"));
    push("site", &factory);
    let admin = Cred::admin();
    assert_eq!(
        wait_manifest(&root, &admin, "hello-world", "site", 200),
        image.manifest,
        "reached the root"
    );
    assert_eq!(
        wait_manifest(&line3, &admin, "hello-world", "site", 200),
        image.manifest,
        "came back down to line3"
    );

    // The root is down: 20 pushes to factory are accepted and kept.
    root.kill();
    let mut pushed = Vec::new();
    for n in 0..20 {
        let tag = format!("offline{n}");
        let image = layout.put_image(
            "amd64",
            "site.txt",
            format!("offline push {n}").as_bytes(),
            Some(&tag),
        );
        push(&tag, &factory);
        pushed.push((tag, image));
    }
    root.restart();
    for (tag, image) in &pushed {
        assert_eq!(
            wait_manifest(&root, &admin, "hello-world", tag, 200),
            image.manifest,
            "{tag} reached the root"
        );
        assert_eq!(
            wait_manifest(&line3, &admin, "hello-world", tag, 200),
            image.manifest,
            "{tag} reached line3"
        );
    }
    // An untag on site flows up too.
    let resp = send(
        &authn::client(),
        "DELETE",
        &format!("{}/v2/hello-world/manifests/offline0", factory.url),
        &admin,
        &[],
        None,
    );
    expect_status(&resp, 202, "untag on factory");
    wait_manifest(&root, &admin, "hello-world", "offline0", 404);
    wait_manifest(&line3, &admin, "hello-world", "offline0", 404);
}

/// With a cron schedule, content moves only inside the windows: a new site waits for its
/// first tick (here, next New Year), while its configuration still follows at once; switched
/// to the continuous schedule, it catches up.
#[test]
fn a_cron_schedule_keeps_content_until_its_window() {
    common::require("skopeo");
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "shop7", "repositories": ["hello-world"], "sync_schedule": "0 0 1 1 *", "sync_window": "PT1H"}),
    );
    let shop = Berth::start_with(&["--connection-string", &cs]);
    poll_until(WAIT, "shop7 online", || {
        let view = manage
            .call("GET", "/berth/v1/connected-registries/shop7", None)
            .json("show");
        if view["connection_state"] == "Online" {
            Ok(())
        } else {
            Err(view.to_string())
        }
    });

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let image = layout.put_image("amd64", "shop.txt", b"for the shop", Some("v1"));
    skopeo_push(&containers, layout.reference("v1"), &root, "hello-world:v1");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        manifest(&shop, &Cred::admin(), "hello-world", "v1").0,
        404,
        "nothing moves outside the window"
    );

    let resp = manage.call(
        "PATCH",
        "/berth/v1/connected-registries/shop7",
        Some(json!({"sync_schedule": "* * * * *", "sync_window": ""})),
    );
    expect_status(&resp, 200, "switch shop7 to continuous sync");
    assert_eq!(
        wait_manifest(&shop, &Cred::admin(), "hello-world", "v1", 200),
        image.manifest
    );
}

/// A blob transfer cut mid-way resumes from the bytes already received, and the result is
/// still checked by digest: the bytes carried stay close to one copy of the layer.
#[test]
fn a_cut_blob_transfer_resumes_where_it_stopped() {
    common::require("skopeo");
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "ship1", "repositories": ["hello-world"]}),
    );
    let proxy = Proxy::cutting(root.addr.ip(), root.addr, 3 << 20);
    let ship = Berth::start_with(&[
        "--connection-string",
        &cs,
        "--parent-gateway-endpoint",
        &proxy.addr.to_string(),
    ]);

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    // 8 MiB of incompressible bytes, so the layer is about that big.
    let contents = incompressible(8 << 20, 0x9E37_79B9_7F4A_7C15);
    let image = layout.put_image("amd64", "big.bin", &contents, Some("big"));
    skopeo_push(
        &containers,
        layout.reference("big"),
        &root,
        "hello-world:big",
    );

    assert_eq!(
        wait_manifest(&ship, &Cred::admin(), "hello-world", "big", 200),
        image.manifest
    );
    assert_eq!(proxy.cuts(), 1, "the link was cut once, mid-blob");
    let resp = send(
        &authn::client(),
        "GET",
        &format!("{}/v2/hello-world/blobs/{}", ship.url, image.layer_digest),
        &Cred::admin(),
        &[],
        None,
    );
    assert_eq!(
        clients::sha256_digest(&resp.body),
        image.layer_digest,
        "the resumed layer is whole"
    );
    let carried = proxy.returned();
    let layer_size = resp.body.len() as u64;
    assert!(
        carried < layer_size + (1 << 20),
        "the transfer resumed instead of starting over: {carried} bytes carried for a {layer_size}-byte layer"
    );
}

/// The link's bandwidth setting holds transfers to it: an 8 MiB layer at 4 MB/s takes at
/// least two seconds to arrive (and arrives whole).
#[test]
fn the_sync_bandwidth_limit_paces_transfers() {
    common::require("skopeo");
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "ship2", "repositories": ["hello-world"], "sync_bandwidth": "4M", "sync_concurrency": 2}),
    );
    let ship = Berth::start_with(&["--connection-string", &cs]);
    let view = manage
        .call("GET", "/berth/v1/connected-registries/ship2", None)
        .json("show");
    assert_eq!(view["sync"]["bandwidth"], 4_000_000);
    assert_eq!(view["sync"]["concurrency"], 2);

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let contents = incompressible(8 << 20, 0x2545_F491_4F6C_DD1D);
    let image = layout.put_image("amd64", "big.bin", &contents, Some("big"));
    skopeo_push(
        &containers,
        layout.reference("big"),
        &root,
        "hello-world:big",
    );
    let started = std::time::Instant::now();
    assert_eq!(
        wait_manifest(&ship, &Cred::admin(), "hello-world", "big", 200),
        image.manifest
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "8 MiB at 4 MB/s arrived in {took:?}"
    );

    let bad = manage.call(
        "PATCH",
        "/berth/v1/connected-registries/ship2",
        Some(json!({"sync_bandwidth": "fast"})),
    );
    expect_status(&bad, 400, "an invalid bandwidth");
}

/// A child away longer than the change log's retention catches up by comparing its content
/// with the parent's: new tags arrive, and on a ReadOnly mirror, tags the parent removed go.
#[test]
fn a_child_away_longer_than_the_retention_catches_up_by_comparison() {
    common::require("skopeo");
    let root = Berth::start_with(&["--change-log-retention", "2s"]);
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "shop9", "repositories": ["hello-world", "old/*"]}),
    );
    let temp = tempfile::tempdir().unwrap();
    let mut shop = Berth::with_data_dir(&temp.path().join("shop9"), &["--connection-string", &cs]);

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let v1 = layout.put_image("amd64", "a.txt", b"version one", Some("v1"));
    let v2 = layout.put_image("amd64", "a.txt", b"version two", Some("v2"));
    let push_to = |repository: &str, tag: &str| {
        skopeo_push(
            &containers,
            format!("oci:{}:{tag}", containers.work("layout").display()),
            &root,
            &format!("{repository}:{tag}"),
        );
    };
    push_to("hello-world", "v1");
    push_to("old/app", "v1");
    let admin = Cred::admin();
    assert_eq!(
        wait_manifest(&shop, &admin, "hello-world", "v1", 200),
        v1.manifest
    );
    wait_manifest(&shop, &admin, "old/app", "v1", 200);
    assert_eq!(catalog(&shop), ["hello-world", "old/app"]);

    // Away while the root changes, for longer than the retention: a repository deleted,
    // a tag pushed, a tag deleted.
    shop.kill();
    let resp = manage.call("DELETE", "/berth/v1/repositories/old/app", None);
    expect_status(&resp, 200, "delete old/app at the root");
    push_to("hello-world", "v2");
    let resp = send(
        &authn::client(),
        "DELETE",
        &format!("{}/v2/hello-world/manifests/v1", root.url),
        &admin,
        &[],
        None,
    );
    expect_status(&resp, 202, "untag v1 at the root");
    std::thread::sleep(Duration::from_secs(5));
    shop.restart();
    assert_eq!(
        wait_manifest(&shop, &admin, "hello-world", "v2", 200),
        v2.manifest,
        "the new tag arrived"
    );
    wait_manifest(&shop, &admin, "hello-world", "v1", 404);
    assert_eq!(
        manifest(&shop, &admin, "hello-world", &v1.digest()).0,
        200,
        "untagged, still there by digest"
    );
    // The repository the root deleted is gone, name included: the comparison found it
    // missing at the parent.
    poll_until(
        WAIT,
        "old/app gone from shop9's catalog",
        || match catalog(&shop) {
            names if names == ["hello-world"] => Ok(()),
            names => Err(format!("{names:?}")),
        },
    );
}

/// Faults in the middle of transfers: the root killed mid-blob and restarted, the leaf
/// restarted mid-sync; afterwards every registry holds the same tags with the same digests.
#[test]
fn registries_converge_after_faults_mid_transfer() {
    common::require("skopeo");
    let mut root = Berth::start();
    let manage = Manage::new(&root.url);
    // Slow links, so the faults land mid-transfer.
    let factory_cs = connected(
        &manage,
        json!({"name": "factory", "mode": "ReadWrite", "repositories": ["hello-world"], "sync_bandwidth": "6M"}),
    );
    let factory = Berth::start_with(&["--connection-string", &factory_cs]);
    wait_online(&manage, "factory");
    let line3_cs = connected(
        &manage,
        json!({"name": "line3", "parent": "factory", "repositories": ["hello-world"], "sync_bandwidth": "6M"}),
    );
    let temp = tempfile::tempdir().unwrap();
    let mut line3 = Berth::with_data_dir(
        &temp.path().join("line3"),
        &["--connection-string", &line3_cs],
    );
    wait_online(&manage, "line3");

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let tags: Vec<String> = (0..3).map(|n| format!("big{n}")).collect();
    let mut images = Vec::new();
    for (n, tag) in tags.iter().enumerate() {
        images.push(layout.put_image(
            "amd64",
            "big.bin",
            &incompressible(6 << 20, 0x51_7CC1_B727_220A + n as u64),
            Some(tag),
        ));
    }
    for tag in &tags {
        skopeo_push(
            &containers,
            format!("oci:{}:{tag}", containers.work("layout").display()),
            &root,
            &format!("hello-world:{tag}"),
        );
    }
    // 18 MiB at 6 MB/s: about three seconds per hop. Kill the root mid-way, then the leaf.
    std::thread::sleep(Duration::from_millis(1200));
    root.kill();
    std::thread::sleep(Duration::from_millis(800));
    root.restart();
    std::thread::sleep(Duration::from_millis(1500));
    line3.kill();
    std::thread::sleep(Duration::from_millis(500));
    line3.restart();

    let admin = Cred::admin();
    for (tag, image) in tags.iter().zip(&images) {
        for registry in [&root, &factory, &line3] {
            let got = poll_until(
                Duration::from_secs(90),
                &format!("{tag} on {}", registry.host),
                || {
                    let (status, body) = manifest(registry, &admin, "hello-world", tag);
                    if status == 200 {
                        Ok(body)
                    } else {
                        Err(format!("status {status}"))
                    }
                },
            );
            assert_eq!(
                got, image.manifest,
                "{tag} on {} is the root's manifest",
                registry.host
            );
        }
        // And the layer is whole everywhere (its digest checked end to end).
        for registry in [&factory, &line3] {
            let resp = send(
                &authn::client(),
                "GET",
                &format!(
                    "{}/v2/hello-world/blobs/{}",
                    registry.url, image.layer_digest
                ),
                &admin,
                &[],
                None,
            );
            assert_eq!(
                clients::sha256_digest(&resp.body),
                image.layer_digest,
                "layer of {tag} on {}",
                registry.host
            );
        }
    }
    let tag_list = |registry: &Berth| {
        let resp = send(
            &authn::client(),
            "GET",
            &format!("{}/v2/hello-world/tags/list", registry.url),
            &admin,
            &[],
            None,
        );
        serde_json::from_slice::<Value>(&resp.body).unwrap()["tags"].clone()
    };
    assert_eq!(tag_list(&factory), tag_list(&root));
    assert_eq!(tag_list(&line3), tag_list(&root));
}

/// A loopback TCP proxy that can be switched off: while blocked it drops every connection
/// it carries and refuses new ones, as a cut network link would; while stalled it keeps its
/// connections but moves no bytes, as a congested or flapping link would.
struct SwitchProxy {
    addr: std::net::SocketAddr,
    blocked: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SwitchProxy {
    /// Stops moving bytes (connections stay open), or moves them again.
    fn stall(&self, on: bool) {
        self.stalled.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let blocked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Default::default();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (blocked2, open2, stalled2) = (blocked.clone(), open.clone(), stalled.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if blocked2.load(Ordering::SeqCst) {
                    continue; // Dropped: the connection closes at once.
                }
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                open2
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let stalled = stalled2.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            while stalled.load(Ordering::SeqCst) {
                                std::thread::sleep(std::time::Duration::from_millis(20));
                            }
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) if to.write_all(&buf[..n]).is_ok() => {}
                                Ok(_) => break,
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        SwitchProxy {
            stalled,
            addr,
            blocked,
            open,
        }
    }

    fn block(&self) {
        self.blocked
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn unblock(&self) {
        self.blocked
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The same tag moved on both sides of a cut link converges by the stated rule — the
/// version that reaches the root last wins, here the one pushed on site, which is sent up
/// after the link returns — with both versions pullable by digest, and the conflict
/// reported as a status detail of the connected registry.
#[test]
fn a_tag_moved_on_both_sides_of_a_partition_converges_by_the_rule() {
    common::require("skopeo");
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "factory", "mode": "ReadWrite", "repositories": ["hello-world"]}),
    );
    let proxy = SwitchProxy::start(root.addr);
    let factory = Berth::start_with(&[
        "--connection-string",
        &cs,
        "--parent-gateway-endpoint",
        &proxy.addr.to_string(),
    ]);
    wait_online(&manage, "factory");

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let d1 = layout.put_image("amd64", "a.txt", b"first", Some("one"));
    let site = layout.put_image("amd64", "a.txt", b"pushed on site", Some("site"));
    let above = layout.put_image("amd64", "a.txt", b"pushed at the root", Some("above"));
    let push = |source_tag: &str, to: &Berth| {
        skopeo_push(
            &containers,
            format!("oci:{}:{source_tag}", containers.work("layout").display()),
            to,
            "hello-world:v1",
        );
    };
    let admin = Cred::admin();
    push("one", &root);
    assert_eq!(
        wait_manifest(&factory, &admin, "hello-world", "v1", 200),
        d1.manifest
    );

    proxy.block();
    push("site", &factory);
    push("above", &root);
    proxy.unblock();

    for registry in [&root, &factory] {
        // Both versions end up everywhere (the loser by digest)...
        assert_eq!(
            wait_manifest(registry, &admin, "hello-world", &above.digest(), 200),
            above.manifest
        );
        assert_eq!(
            wait_manifest(registry, &admin, "hello-world", &site.digest(), 200),
            site.manifest
        );
    }
    for registry in [&root, &factory] {
        // ...and the tag settles on the version that reached the root last.
        poll_until(WAIT, &format!("v1 converged on {}", registry.host), || {
            let (status, body) = manifest(registry, &admin, "hello-world", "v1");
            if status == 200 && body == site.manifest {
                Ok(())
            } else {
                Err(format!("status {status}, {} bytes", body.len()))
            }
        });
    }
    let detail = poll_until(WAIT, "the conflict reported on factory", || {
        let view = manage
            .call("GET", "/berth/v1/connected-registries/factory", None)
            .json("show");
        let details = view["status_details"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        details
            .into_iter()
            .find(|d| d["code"] == "TAG_CONFLICT")
            .ok_or_else(|| view.to_string())
    });
    assert!(
        detail["description"]
            .as_str()
            .unwrap()
            .contains("hello-world:v1"),
        "{detail}"
    );
}

/// A link that stalls mid-transfer and then moves again: the transfer completes, whole.
#[test]
fn a_stalled_link_resumes_and_the_content_arrives_whole() {
    common::require("skopeo");
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "ship3", "repositories": ["hello-world"], "sync_bandwidth": "4M"}),
    );
    let proxy = SwitchProxy::start(root.addr);
    let ship = Berth::start_with(&[
        "--connection-string",
        &cs,
        "--parent-gateway-endpoint",
        &proxy.addr.to_string(),
    ]);
    wait_online(&manage, "ship3");

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let image = layout.put_image(
        "amd64",
        "big.bin",
        &incompressible(24 << 20, 0x3C6E_F372_FE94_F82B),
        Some("big"),
    );
    skopeo_push(
        &containers,
        layout.reference("big"),
        &root,
        "hello-world:big",
    );
    // 24 MiB at 4 MB/s: about six seconds, more than socket buffers past the proxy can hold.
    std::thread::sleep(Duration::from_millis(1000));
    proxy.stall(true);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        manifest(&ship, &Cred::admin(), "hello-world", "big").0,
        404,
        "nothing completes while stalled"
    );
    proxy.stall(false);
    assert_eq!(
        wait_manifest(&ship, &Cred::admin(), "hello-world", "big", 200),
        image.manifest
    );
    let resp = send(
        &authn::client(),
        "GET",
        &format!("{}/v2/hello-world/blobs/{}", ship.url, image.layer_digest),
        &Cred::admin(),
        &[],
        None,
    );
    assert_eq!(clients::sha256_digest(&resp.body), image.layer_digest);
}

/// With the clients people use: `docker push` to the root and `docker pull` from `line3`
/// with a client token; `podman push` to the ReadWrite `factory` reaches the root and `line3`.
#[test]
fn docker_and_podman_through_the_hierarchy() {
    common::require("dockerd");
    common::require("podman");
    common::require("skopeo");
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    manage.create_scope_map(
        "site-pull",
        &[("apps/*", &["content/read", "metadata/read"])],
    );
    let password = manage
        .create_token("siterobot", "site-pull", None)
        .password1;
    let factory_cs = connected(
        &manage,
        json!({"name": "factory", "mode": "ReadWrite", "repositories": ["apps/*"]}),
    );
    let factory = Berth::start_with(&["--connection-string", &factory_cs]);
    wait_online(&manage, "factory");
    let line3_cs = connected(
        &manage,
        json!({"name": "line3", "parent": "factory", "repositories": ["apps/*"], "client_tokens": ["siterobot"]}),
    );
    let line3 = Berth::start_with(&["--connection-string", &line3_cs]);
    wait_online(&manage, "line3");

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let image = layout.put_image(
        clients::host_arch(),
        "hello",
        b"hello through the hierarchy\n",
        Some("v1"),
    );

    // docker push to the root.
    let dockerd = clients::Dockerd::start();
    let archive = dockerd.path("hello.tar");
    run(containers
        .skopeo()
        .arg("copy")
        .arg(layout.reference("v1"))
        .arg(format!(
            "docker-archive:{}:apps/hello:v1",
            archive.display()
        )));
    run(dockerd.docker().arg("load").arg("-i").arg(&archive));
    dockerd.login(&root.host, "admin", common::ADMIN_PASSWORD);
    run(dockerd
        .docker()
        .arg("tag")
        .arg("apps/hello:v1")
        .arg(format!("{}/apps/hello:v1", root.host)));
    run(dockerd
        .docker()
        .arg("push")
        .arg(format!("{}/apps/hello:v1", root.host)));

    // docker pull from line3, two levels down, with the client token.
    wait_manifest(
        &line3,
        &Cred::basic("siterobot", &password),
        "apps/hello",
        "v1",
        200,
    );
    dockerd.login(&line3.host, "siterobot", &password);
    run(dockerd
        .docker()
        .arg("rmi")
        .arg("apps/hello:v1")
        .arg(format!("{}/apps/hello:v1", root.host)));
    run(dockerd
        .docker()
        .arg("pull")
        .arg(format!("{}/apps/hello:v1", line3.host)));
    let id = run(dockerd
        .docker()
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .arg(format!("{}/apps/hello:v1", line3.host)));
    assert_eq!(
        id.stdout.trim(),
        image.config_digest,
        "line3 serves the image pushed at the root"
    );

    // podman push to the ReadWrite factory: it reaches the root and line3.
    let store = "site";
    run(containers
        .skopeo()
        .arg("copy")
        .arg(layout.reference("v1"))
        .arg(format!(
            "containers-storage:[vfs@{}/root/{store}+{}/run/{store}]localhost/apps/site:v1",
            containers.dir().display(),
            containers.dir().display()
        )));
    run(containers
        .podman(store)
        .args([
            "push",
            "--tls-verify=false",
            "--creds",
            &factory.admin_creds(),
        ])
        .arg("localhost/apps/site:v1")
        .arg(format!("docker://{}/apps/site:v1", factory.host)));
    let admin = Cred::admin();
    let at_root = wait_manifest(&root, &admin, "apps/site", "v1", 200);
    let at_line3 = wait_manifest(
        &line3,
        &Cred::basic("siterobot", &password),
        "apps/site",
        "v1",
        200,
    );
    assert_eq!(at_root, at_line3, "the same manifest everywhere");
}

/// With the root's data endpoint on, the connection string names it and the child's blob
/// downloads follow the root's redirects there: the layer's bytes cross the data endpoint
/// (counted by a proxy in front of it), and arrive whole.
#[test]
fn blobs_sync_through_the_parents_data_endpoint() {
    common::require("skopeo");
    let data_listen = format!("127.0.0.3:{}", common::free_port());
    let proxy = Proxy::start("127.0.0.1".parse().unwrap(), data_listen.parse().unwrap());
    let root = Berth::start_with(&[
        "--data-endpoint-listen",
        &data_listen,
        "--data-endpoint-url",
        &format!("http://{}", proxy.addr),
    ]);
    let manage = Manage::new(&root.url);
    expect_status(
        &manage.call(
            "PATCH",
            "/berth/v1/registry",
            Some(json!({"data_endpoint_enabled": true})),
        ),
        200,
        "enable the data endpoint",
    );
    let cs = connected(
        &manage,
        json!({"name": "ship2", "repositories": ["hello-world"]}),
    );
    assert!(
        cs.ends_with(&format!(";ParentDataEndpoint={}", proxy.addr)),
        "{cs}"
    );

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let contents = incompressible(4 << 20, 0x2545_F491_4F6C_DD1D);
    let image = layout.put_image("amd64", "data.bin", &contents, Some("v1"));
    skopeo_push(&containers, layout.reference("v1"), &root, "hello-world:v1");

    let ship = Berth::start_with(&["--connection-string", &cs]);
    assert_eq!(
        wait_manifest(&ship, &Cred::admin(), "hello-world", "v1", 200),
        image.manifest
    );
    let resp = send(
        &authn::client(),
        "GET",
        &format!("{}/v2/hello-world/blobs/{}", ship.url, image.layer_digest),
        &Cred::admin(),
        &[],
        None,
    );
    assert_eq!(clients::sha256_digest(&resp.body), image.layer_digest);
    let carried = proxy.returned();
    assert!(
        carried >= resp.body.len() as u64,
        "the layer came through the data endpoint: {carried} bytes carried there for a {}-byte layer",
        resp.body.len()
    );
}
