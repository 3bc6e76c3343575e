//! Garbage collection end to end, against live `berth serve` processes:
//!
//! - a collection frees the bytes of deleted content (and a dry run only counts them);
//! - retention rules untag old images (a dry run only counts), and their bytes follow;
//! - a full disk is emptied through the API alone, and pushes work again;
//! - concurrent pushes of images sharing layers (some by cross-repository mounts),
//!   deletions and collections, in a loop:
//!   every acknowledged image stays whole;
//! - `kill -9` during a collection loses nothing referenced;
//! - a connected registry collects on its own schedule and reports it.

mod authn;
mod clients;
mod common;
mod proxy;
mod sites;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authn::{Cred, Manage, expect_status, poll_until, send};
use common::Berth;
use common::cli::Cli;
use common::tmpfs::Tmpfs;
use proxy::incompressible;
use serde_json::{Value, json};

/// An image of one config and the given layers, pushed as the admin; its manifest digest,
/// or the status of the step that was refused (a collection may take a layer away between
/// its upload and the manifest: the push is then not acknowledged).
fn push(to: &Berth, repo: &str, tag: &str, config: &[u8], layers: &[&[u8]]) -> Result<String, u16> {
    push_mounting(to, repo, None, tag, config, layers)
}

/// [`push`], each blob first mounted from repository `from` when given (uploaded when the
/// mount is answered with an upload session instead: the blob is not there, or is being
/// collected).
fn push_mounting(
    to: &Berth,
    repo: &str,
    from: Option<&str>,
    tag: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> Result<String, u16> {
    let http = authn::client();
    for blob in std::iter::once(config).chain(layers.iter().copied()) {
        if let Some(from) = from {
            let mount = send(
                &http,
                "POST",
                &format!(
                    "{}/v2/{repo}/blobs/uploads/?mount={}&from={from}",
                    to.url,
                    authn::sha256_digest(blob)
                ),
                &Cred::admin(),
                &[],
                None,
            );
            match mount.status {
                201 => continue,
                202 => {}
                status => return Err(status),
            }
        }
        let (post, put) = authn::upload_blob(&http, &to.url, &Cred::admin(), repo, blob);
        if post.status != 202 {
            return Err(post.status);
        }
        let put = put.unwrap();
        if put.status != 201 {
            return Err(put.status);
        }
    }
    let descriptor = |blob: &[u8], media: &str| json!({"mediaType": media, "digest": authn::sha256_digest(blob), "size": blob.len()});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": authn::OCI_MANIFEST,
        "config": descriptor(config, authn::OCI_CONFIG),
        "layers": layers.iter().map(|l| descriptor(l, authn::OCI_LAYER)).collect::<Vec<_>>(),
    }))
    .unwrap();
    let resp = authn::put_manifest(&http, &to.url, &Cred::admin(), repo, tag, &manifest);
    if resp.status == 201 {
        Ok(authn::sha256_digest(&manifest))
    } else {
        Err(resp.status)
    }
}

fn config_of(seed: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"berth.test": seed}},
    }))
    .unwrap()
}

/// Deletes manifest `digest` of `repo` (its tags go with it).
fn delete_manifest(berth: &Berth, repo: &str, digest: &str) -> u16 {
    send(
        &authn::client(),
        "DELETE",
        &format!("{}/v2/{repo}/manifests/{digest}", berth.url),
        &Cred::admin(),
        &[],
        None,
    )
    .status
}

/// The blob file of `digest` in a data directory.
fn blob_file(data_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    data_dir.join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// Starts a collection through the API and waits for its end; its record.
fn collect(manage: &Manage, dry_run: bool) -> Value {
    let started = manage.call(
        "POST",
        "/berth/v1/gc/runs",
        Some(json!({"dry_run": dry_run})),
    );
    expect_status(&started, 202, "start a collection");
    let id = started.json("run")["id"].as_i64().unwrap();
    poll_until(Duration::from_secs(60), "the collection's end", || {
        let run = manage
            .call("GET", &format!("/berth/v1/gc/runs/{id}"), None)
            .json("run");
        if run["finished_at"].is_string() {
            Ok(run)
        } else {
            Err(run.to_string())
        }
    })
}

/// Every blob of manifest `digest` in `repo` reads back whole (its bytes hash to its
/// digest).
fn assert_whole(berth: &Berth, repo: &str, digest: &str) {
    let http = authn::client();
    let accept = [("Accept", authn::OCI_MANIFEST)];
    let resp = send(
        &http,
        "GET",
        &format!("{}/v2/{repo}/manifests/{digest}", berth.url),
        &Cred::admin(),
        &accept,
        None,
    );
    expect_status(&resp, 200, &format!("manifest {repo}@{digest}"));
    let manifest: Value = resp.json("manifest");
    let blobs = std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap());
    for blob in blobs {
        let blob_digest = blob["digest"].as_str().unwrap();
        let resp = send(
            &http,
            "GET",
            &format!("{}/v2/{repo}/blobs/{blob_digest}", berth.url),
            &Cred::admin(),
            &[],
            None,
        );
        expect_status(
            &resp,
            200,
            &format!("blob {blob_digest} of {repo}@{digest}"),
        );
        assert_eq!(
            authn::sha256_digest(&resp.body),
            blob_digest,
            "blob {blob_digest} of {repo}@{digest} is whole"
        );
    }
}

#[test]
fn a_collection_frees_the_bytes_of_deleted_content() {
    let berth = Berth::start_with(&["--gc-grace", "0s", "--gc-enabled", "false"]);
    let manage = Manage::new(&berth.url);
    let (gone, kept) = (
        incompressible(2 << 20, 0x1234_5678_9ABC_DEF0),
        incompressible(1 << 20, 0x0FED_CBA9_8765_4321),
    );
    let shared = b"a layer both images have".to_vec();
    let doomed = push(&berth, "app", "old", &config_of("old"), &[&gone, &shared]).unwrap();
    let stays = push(&berth, "app", "new", &config_of("new"), &[&kept, &shared]).unwrap();
    assert_eq!(delete_manifest(&berth, "app", &doomed), 202);

    // A dry run counts, and removes nothing.
    let cli = Cli::logged_in(&berth);
    let dry = cli.json(&["gc", "run", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["outcome"], "finished", "{dry}");
    assert_eq!(
        dry["blobs_removed"], 2,
        "the old image's layer and config: {dry}"
    );
    assert!(dry["bytes_freed"].as_u64().unwrap() >= 2 << 20, "{dry}");
    let gone_file = blob_file(berth.data_dir(), &authn::sha256_digest(&gone));
    assert!(gone_file.exists(), "a dry run removes nothing");

    // The real one frees the bytes of what only the deleted image used.
    let run = cli.json(&["gc", "run"]);
    assert_eq!(run["outcome"], "finished", "{run}");
    assert_eq!(run["blobs_removed"], 2, "{run}");
    assert!(
        !gone_file.exists(),
        "the deleted image's layer is gone from disk"
    );
    for blob in [&kept, &shared] {
        assert!(blob_file(berth.data_dir(), &authn::sha256_digest(blob)).exists());
    }
    assert_whole(&berth, "app", &stays);
    // Nothing more to do, and the history shows both runs.
    let again = collect(&manage, false);
    assert_eq!(again["blobs_removed"], 0, "{again}");
    let status = cli.json(&["gc", "status"]);
    assert_eq!(status.as_array().unwrap().len(), 3, "{status}");
    let table = cli.ok(&["gc", "status"]);
    assert!(
        table.contains("dry run") && table.contains("finished"),
        "{table}"
    );
}

#[test]
fn retention_untags_old_images_and_their_bytes_follow() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "[gc]\nenabled = false\ngrace = \"0s\"\n\n[[gc.retention]]\nrepositories = \"ci/*\"\nkeep_last = 2\ndelete_untagged = true\n",
    )
    .unwrap();
    let berth = Berth::start_with(&["--config", config.to_str().unwrap()]);
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| incompressible(256 << 10, 0xAB00 + i))
        .collect();
    let mut builds = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let tag = format!("build-{}", i + 1);
        builds.push(push(&berth, "ci/app", &tag, &config_of(&tag), &[layer]).unwrap());
        // Tags are dated to the second: one a second makes "newest" unambiguous.
        std::thread::sleep(Duration::from_millis(1100));
    }
    // Outside the rule, an old image stays whatever its age; an untagged manifest in the
    // rule's repositories goes.
    let other = push(
        &berth,
        "tools/app",
        "v1",
        &config_of("tools"),
        &[&layers[0]],
    )
    .unwrap();
    let untagged = push(
        &berth,
        "ci/app",
        "scratch",
        &config_of("scratch"),
        &[b"tmp"],
    )
    .unwrap();
    let http = authn::client();
    let resp = send(
        &http,
        "DELETE",
        &format!("{}/v2/ci/app/manifests/scratch", berth.url),
        &Cred::admin(),
        &[],
        None,
    );
    expect_status(&resp, 202, "untag scratch");

    let cli = Cli::logged_in(&berth);
    let dry = cli.json(&["gc", "run", "--dry-run"]);
    assert_eq!(dry["tags_removed"], 2, "build-1 and build-2: {dry}");
    assert_eq!(dry["manifests_removed"], 1, "the untagged one: {dry}");
    let tags = |repo: &str| -> Vec<String> {
        let resp = send(
            &http,
            "GET",
            &format!("{}/v2/{repo}/tags/list", berth.url),
            &Cred::admin(),
            &[],
            None,
        );
        let mut tags: Vec<String> =
            serde_json::from_value(resp.json("tags")["tags"].clone()).unwrap_or_default();
        tags.sort();
        tags
    };
    assert_eq!(tags("ci/app"), ["build-1", "build-2", "build-3", "build-4"]);

    let run = cli.json(&["gc", "run"]);
    assert_eq!(run["outcome"], "finished", "{run}");
    assert_eq!(run["tags_removed"], 2, "{run}");
    assert_eq!(tags("ci/app"), ["build-3", "build-4"]);
    assert_eq!(tags("tools/app"), ["v1"]);
    for (digest, status) in [
        (&builds[0], 404),
        (&builds[1], 404),
        (&untagged, 404),
        (&builds[2], 200),
        (&builds[3], 200),
    ] {
        let resp = send(
            &http,
            "HEAD",
            &format!("{}/v2/ci/app/manifests/{digest}", berth.url),
            &Cred::admin(),
            &[("Accept", authn::OCI_MANIFEST)],
            None,
        );
        expect_status(&resp, status, &format!("ci/app@{digest}"));
    }
    // build-2's layer is only its own: its bytes are gone; build-1's is also tools/app's.
    assert!(!blob_file(berth.data_dir(), &authn::sha256_digest(&layers[1])).exists());
    assert!(blob_file(berth.data_dir(), &authn::sha256_digest(&layers[0])).exists());
    assert_whole(&berth, "ci/app", &builds[3]);
    assert_whole(&berth, "tools/app", &other);
}

#[test]
fn a_blob_pushed_within_the_grace_is_kept() {
    // The default grace (an hour): a layer uploaded for a manifest not pushed yet stays.
    let berth = Berth::start_with(&["--gc-enabled", "false"]);
    let manage = Manage::new(&berth.url);
    let layer = b"a layer whose manifest comes later".to_vec();
    let (post, put) =
        authn::upload_blob(&authn::client(), &berth.url, &Cred::admin(), "app", &layer);
    assert_eq!((post.status, put.unwrap().status), (202, 201));
    let run = collect(&manage, false);
    assert_eq!(run["blobs_removed"], 0, "{run}");
    assert!(blob_file(berth.data_dir(), &authn::sha256_digest(&layer)).exists());
    push(&berth, "app", "v1", &config_of("later"), &[&layer])
        .expect("the manifest finds its layer");
}

#[test]
fn a_full_disk_is_emptied_through_the_api_and_pushes_work_again() {
    let temp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&temp.path().join("disk"), "48m");
    let mut berth = Berth::with_data_dir(
        &temp.path().join("disk/data"),
        &["--gc-grace", "0s", "--gc-enabled", "false"],
    );
    let manage = Manage::new(&berth.url);
    // Fill it: 4 MiB images until the disk refuses.
    let mut pushed = Vec::new();
    let mut refused = None;
    for i in 0..40u64 {
        let layer = incompressible(4 << 20, 0xA5A5_0000 + i);
        match push(
            &berth,
            "fill",
            &format!("v{i}"),
            &config_of(&format!("fill{i}")),
            &[&layer],
        ) {
            Ok(digest) => pushed.push(digest),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    assert_eq!(
        refused,
        Some(507),
        "the disk filled up: {} images fit",
        pushed.len()
    );
    let before = disk.free();
    // Emptied through the API alone.
    for digest in &pushed {
        assert_eq!(delete_manifest(&berth, "fill", digest), 202);
    }
    let run = collect(&manage, false);
    assert_eq!(run["outcome"], "finished", "{run}");
    assert!(
        run["blobs_removed"].as_u64().unwrap() >= pushed.len() as u64 * 2,
        "{run}"
    );
    let after = disk.free();
    assert!(
        after > before + (pushed.len() as u64 * (4 << 20)) * 9 / 10,
        "the space is back: {before} bytes free before, {after} after"
    );
    let layer = incompressible(4 << 20, 0xBEEF);
    let digest =
        push(&berth, "fill", "again", &config_of("again"), &[&layer]).expect("a push works again");
    assert_whole(&berth, "fill", &digest);
    berth.kill();
}

#[test]
fn concurrent_pushes_deletions_and_collections_lose_nothing_acknowledged() {
    // No grace at all: every race between a push and a collection is as tight as it gets.
    let berth = Arc::new(Berth::start_with(&[
        "--gc-grace",
        "0s",
        "--gc-enabled",
        "false",
    ]));
    let layers: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..6)
            .map(|i| incompressible(64 << 10, 0x5EED_0000 + i))
            .collect(),
    );
    // Acknowledged images still expected whole: repository -> digests.
    let live: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for writer in 0..3 {
        let (berth, layers, live, stop) = (
            Arc::clone(&berth),
            Arc::clone(&layers),
            Arc::clone(&live),
            Arc::clone(&stop),
        );
        workers.push(std::thread::spawn(move || {
            let (mut acknowledged, mut refused) = (0, 0);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let config = config_of(&format!("w{writer}-{i}"));
                let (a, b) = ((i as usize + writer) % 6, (i as usize * 7 + 1) % 6);
                match push(
                    &berth,
                    "race",
                    &format!("w{writer}-{i}"),
                    &config,
                    &[&layers[a], &layers[b]],
                ) {
                    Ok(digest) => {
                        acknowledged += 1;
                        live.lock()
                            .unwrap()
                            .insert(format!("w{writer}-{i}"), digest);
                    }
                    Err(_) => refused += 1,
                }
            }
            (acknowledged, refused)
        }));
    }
    // A fourth writer mounts the same layers from `race` into `mirror` (never deleted there):
    // a mount meeting a collection falls back to an upload, and loses nothing either way.
    let mirrored: Arc<Mutex<Vec<String>>> = Arc::default();
    let mounter = {
        let (berth, layers, mirrored, stop) = (
            Arc::clone(&berth),
            Arc::clone(&layers),
            Arc::clone(&mirrored),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let tag = format!("m-{i}");
                let (a, b) = (i as usize % 6, (i as usize * 5 + 2) % 6);
                if let Ok(digest) = push_mounting(
                    &berth,
                    "mirror",
                    Some("race"),
                    &tag,
                    &config_of(&tag),
                    &[&layers[a], &layers[b]],
                ) {
                    mirrored.lock().unwrap().push(digest);
                }
            }
        })
    };
    let deleter = {
        let (berth, live, stop) = (Arc::clone(&berth), Arc::clone(&live), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut deleted = 0;
            while !stop.load(Ordering::Relaxed) {
                let victim = live
                    .lock()
                    .unwrap()
                    .iter()
                    .next()
                    .map(|(t, d)| (t.clone(), d.clone()));
                if let Some((tag, digest)) = victim
                    && delete_manifest(&berth, "race", &digest) == 202
                {
                    // Another tag may name the same manifest: all of them are gone now.
                    live.lock().unwrap().retain(|_, d| *d != digest);
                    let _ = tag;
                    deleted += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            deleted
        })
    };
    let collector = {
        let (berth, stop) = (Arc::clone(&berth), Arc::clone(&stop));
        std::thread::spawn(move || {
            let manage = Manage::new(&berth.url);
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                if manage
                    .call("POST", "/berth/v1/gc/runs", Some(json!({})))
                    .status
                    == 202
                {
                    runs += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            runs
        })
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = 0;
    for worker in workers {
        acknowledged += worker.join().unwrap().0;
    }
    mounter.join().unwrap();
    let deleted = deleter.join().unwrap();
    let runs = collector.join().unwrap();
    assert!(
        acknowledged > 20 && deleted > 5 && runs > 5,
        "{acknowledged} pushes, {deleted} deletions, {runs} collections"
    );
    // One more collection after the dust settles; then every acknowledged image still
    // there reads back whole.
    let manage = Manage::new(&berth.url);
    poll_until(Duration::from_secs(30), "the collections to end", || {
        let runs = manage.call("GET", "/berth/v1/gc/runs", None).json("runs");
        if runs[0]["finished_at"].is_string() {
            Ok(())
        } else {
            Err(runs[0].to_string())
        }
    });
    collect(&manage, false);
    let live = live.lock().unwrap().clone();
    for digest in live.values() {
        assert_whole(&berth, "race", digest);
    }
    let mirrored = mirrored.lock().unwrap().clone();
    assert!(mirrored.len() > 5, "{} mounted pushes", mirrored.len());
    for digest in &mirrored {
        assert_whole(&berth, "mirror", digest);
    }
}

#[test]
fn kill_9_during_a_collection_loses_nothing_referenced() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut berth = Berth::with_data_dir(&data, &["--gc-grace", "0s", "--gc-enabled", "false"]);
    let shared = b"shared by every image".to_vec();
    let mut images = Vec::new();
    for i in 0..120 {
        let layer = format!("layer {i}").into_bytes();
        let digest = push(
            &berth,
            "many",
            &format!("v{i}"),
            &config_of(&format!("many{i}")),
            &[&layer, &shared],
        )
        .unwrap();
        images.push(digest);
    }
    for digest in images.iter().step_by(2) {
        assert_eq!(delete_manifest(&berth, "many", digest), 202);
    }
    let manage = Manage::new(&berth.url);
    let started = manage.call("POST", "/berth/v1/gc/runs", Some(json!({})));
    expect_status(&started, 202, "start a collection");
    std::thread::sleep(Duration::from_millis(30));
    berth.kill();
    berth.restart();
    for digest in images.iter().skip(1).step_by(2) {
        assert_whole(&berth, "many", digest);
    }
    let manage = Manage::new(&berth.url);
    let run = collect(&manage, false);
    assert_eq!(run["outcome"], "finished", "{run}");
    for digest in images.iter().skip(1).step_by(2) {
        assert_whole(&berth, "many", digest);
    }
    // Everything the deleted images alone held is gone now.
    let left = collect(&manage, true);
    assert_eq!(left["blobs_removed"], 0, "{left}");
}

#[test]
fn a_connected_registry_collects_on_its_schedule_and_reports_it() {
    let root = Berth::start_with(&["--gc-enabled", "false"]);
    let manage = Manage::new(&root.url);
    let cs = sites::connected(
        &manage,
        json!({"name": "shop3", "repositories": ["app"], "gc_schedule": "*/1 * * * *"}),
    );
    let shop = Berth::start_with(&["--connection-string", &cs, "--gc-grace", "0s"]);
    sites::wait_online(&manage, "shop3");
    let layer = incompressible(1 << 20, 0xC0FFEE);
    let digest = push(&root, "app", "v1", &config_of("site"), &[&layer]).unwrap();
    sites::wait_manifest(&shop, &Cred::admin(), "app", &digest, 200);
    let on_site = blob_file(shop.data_dir(), &authn::sha256_digest(&layer));
    assert!(on_site.exists());
    assert_eq!(delete_manifest(&root, "app", &digest), 202);
    sites::wait_manifest(&shop, &Cred::admin(), "app", &digest, 404);
    // The next tick (each minute) collects on site; the root shows it.
    let view = poll_until(Duration::from_secs(100), "a collection on site", || {
        let view = sites::view(&manage, "shop3");
        match view["last_gc"]["bytes_freed"].as_u64() {
            Some(freed) if freed >= 1 << 20 => Ok(view),
            _ => Err(view.to_string()),
        }
    });
    assert_eq!(view["gc"]["schedule"], "*/1 * * * *");
    assert!(
        !on_site.exists(),
        "the layer's bytes are gone from the site's disk"
    );
    let cli = Cli::logged_in(&root);
    let shown = cli.ok(&["connected-registry", "show", "--name", "shop3"]);
    assert!(
        shown.contains("Last garbage collection") && shown.contains("finished"),
        "{shown}"
    );
    // Switched off: the setting reaches the site.
    cli.ok(&[
        "connected-registry",
        "update",
        "--name",
        "shop3",
        "--gc-enabled",
        "false",
    ]);
    let view = sites::view(&manage, "shop3");
    assert_eq!(view["gc"]["enabled"], false);
    cli.refused(
        &[
            "connected-registry",
            "update",
            "--name",
            "shop3",
            "--gc-schedule",
            "* * * * *",
        ],
        &["would collect every minute"],
    );
}
