//! The lifecycle of connected registries, end to end against live `berth serve` processes:
//! what happens when a repository, an instance or a registry is removed, replaced,
//! rescheduled or crashes.
//!
//! - a repository taken off a site's list and put back syncs again, whole;
//! - a blob transfer killed (`kill -9`) part way resumes from the bytes on disk, and leaves
//!   no upload file behind, nor does one that the sync no longer needs after the restart;
//! - status details last only while their cause does, then show as past (`SYNC_FAILING`,
//!   `UPSTREAM_FAILING`, `ALREADY_ACTIVATED`, `DISK_LOW`, `DISK_FULL`);
//! - a switch to a cron schedule holds at once, even for a poll already in flight;
//! - `deactivate` stops the old instance (for good, logging why at error level), and a
//!   replacement takes over;
//! - `delete` stops the instance, which never retries its refused sync token, so the
//!   parent does not lock the site's other clients out;
//! - a sync token the parent refuses stops the instance until it is given a new connection
//!   string; restarts with the refused one never call the parent;
//! - identity writes on a site are refused, naming where to make them;
//! - the status says `Syncing` while content moves, in continuous mode too.

mod authn;
mod clients;
mod common;
mod proxy;
mod sites;

use std::path::Path;
use std::time::Duration;

use authn::{Cred, Manage, expect_error, expect_status, poll_until, send};
use common::tmpfs::Tmpfs;
use common::{Berth, EXIT_RETIRED, serve_expecting_exit, serve_expecting_exit_status};
use proxy::{Proxy, incompressible};
use serde_json::{Value, json};
use sites::{WAIT, connected, manifest_status, push_image, view, wait_manifest, wait_state};

/// The status details of `name` with `code`, as the root shows them.
fn details(view: &Value, code: &str) -> Vec<Value> {
    view["status_details"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["code"] == code)
        .collect()
}

/// Every file in the `uploads/` directory of a data directory.
fn upload_files(data_dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(data_dir.join("uploads"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_repository_put_back_on_the_list_syncs_again_whole() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    push_image(&root, "app/one", "v1", b"app one");
    push_image(&root, "app/two", "v1", b"app two");
    push_image(&root, "other", "v1", b"other");
    let cs = connected(
        &manage,
        json!({"name": "shop1", "repositories": ["app/*", "other"]}),
    );
    let shop = Berth::start_with(&["--connection-string", &cs]);
    wait_manifest(&shop, &Cred::admin(), "app/one", "v1", 200);
    wait_manifest(&shop, &Cred::admin(), "app/two", "v1", 200);
    wait_manifest(&shop, &Cred::admin(), "other", "v1", 200);

    // Off the list: the mirror deletes it.
    let permissions = |body: Value| {
        let resp = manage.call(
            "PATCH",
            "/berth/v1/connected-registries/shop1/permissions",
            Some(body),
        );
        expect_status(&resp, 200, "permissions");
    };
    permissions(json!({"remove": ["app/*"]}));
    wait_manifest(&shop, &Cred::admin(), "app/one", "v1", 404);
    wait_manifest(&shop, &Cred::admin(), "app/two", "v1", 404);
    // Meanwhile the root changes: a new tag, and one repository gains one.
    push_image(&root, "app/two", "v2", b"app two, version two");

    // Back on the list: every tag the root holds comes back, not only later changes.
    permissions(json!({"add": ["app/*"]}));
    wait_manifest(&shop, &Cred::admin(), "app/one", "v1", 200);
    wait_manifest(&shop, &Cred::admin(), "app/two", "v1", 200);
    wait_manifest(&shop, &Cred::admin(), "app/two", "v2", 200);
    assert_eq!(manifest_status(&shop, "other", "v1"), 200);

    // And changes after the add follow as usual.
    push_image(&root, "app/three", "v1", b"app three");
    wait_manifest(&shop, &Cred::admin(), "app/three", "v1", 200);
}

#[test]
fn a_blob_transfer_killed_mid_way_resumes_from_the_bytes_on_disk() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    // Slow enough to kill it half way.
    let cs = connected(
        &manage,
        json!({"name": "ship3", "repositories": ["big"], "sync_bandwidth": "2M"}),
    );
    let proxy = Proxy::start(root.addr.ip(), root.addr);
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("ship3");
    let mut ship = Berth::with_data_dir(
        &data_dir,
        &[
            "--connection-string",
            &cs,
            "--parent-gateway-endpoint",
            &proxy.addr.to_string(),
        ],
    );
    let layer = incompressible(12 << 20, 0x5851_F42D_4C95_7F2D);
    let digest = push_image(&root, "big", "v1", &layer);

    // Half way through the layer, kill -9.
    poll_until(WAIT, "a partial layer on disk", || {
        let files = upload_files(&data_dir);
        match files.iter().map(|(_, len)| *len).max() {
            Some(len) if len >= 4 << 20 => Ok(()),
            _ => Err(format!("{files:?}")),
        }
    });
    ship.kill();
    let on_disk = upload_files(&data_dir)
        .iter()
        .map(|(_, len)| *len)
        .max()
        .unwrap();
    let before = proxy.returned();

    ship.restart();
    wait_manifest(&ship, &Cred::admin(), "big", &digest, 200);
    let after = proxy.returned() - before;
    let missing = layer.len() as u64 - on_disk;
    assert!(
        after < missing + (512 << 10),
        "after the restart {after} bytes came over the link, for the {missing} bytes missing \
         ({on_disk} of {} were on disk): the transfer started over",
        layer.len()
    );
    let resp = send(
        &authn::client(),
        "GET",
        &format!("{}/v2/big/blobs/{}", ship.url, authn::sha256_digest(&layer)),
        &Cred::admin(),
        &[],
        None,
    );
    assert!(resp.body == layer, "the resumed layer is whole");
    // The partial upload became the blob: nothing waits in uploads/ for the sweeper.
    poll_until(
        Duration::from_secs(10),
        "no upload file left",
        || match upload_files(&data_dir) {
            files if files.is_empty() => Ok(()),
            files => Err(format!("{files:?}")),
        },
    );
}

#[test]
fn a_transfer_cut_by_a_crash_and_then_not_needed_leaves_no_upload_file() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "ship11", "repositories": ["big", "small"], "sync_bandwidth": "2M"}),
    );
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("ship11");
    let mut ship = Berth::with_data_dir(&data_dir, &["--connection-string", &cs]);
    let layer = incompressible(12 << 20, 0x2545_F491_4F6C_DD1D);
    push_image(&root, "big", "v1", &layer);
    poll_until(WAIT, "a partial layer on disk", || {
        let files = upload_files(&data_dir);
        match files.iter().map(|(_, len)| *len).max() {
            Some(len) if len >= 1 << 20 => Ok(()),
            _ => Err(format!("{files:?}")),
        }
    });
    ship.kill();
    // While the site is down, its repository leaves the list: the transfer is not needed.
    let resp = manage.call(
        "PATCH",
        "/berth/v1/connected-registries/ship11/permissions",
        Some(json!({"remove": ["big"]})),
    );
    expect_status(&resp, 200, "permissions");

    ship.restart();
    push_image(
        &root,
        "small",
        "v1",
        b"a round that does not need the layer",
    );
    wait_manifest(&ship, &Cred::admin(), "small", "v1", 200);
    // The round ended well without the layer: its upload file does not wait a day for the
    // sweeper, and no transfer is left to resume.
    poll_until(
        Duration::from_secs(10),
        "no upload file left",
        || match upload_files(&data_dir) {
            files if files.is_empty() => Ok(()),
            files => Err(format!("{files:?}")),
        },
    );
    let transfers = std::fs::read_to_string(data_dir.join("sync-transfers.json")).unwrap();
    assert_eq!(transfers.trim(), "{}");
}

#[test]
fn status_details_last_only_while_their_cause_does() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(&manage, json!({"name": "shop2", "repositories": ["app"]}));
    let temp = tempfile::tempdir().unwrap();
    let _shop = Berth::with_data_dir(&temp.path().join("shop2"), &["--connection-string", &cs]);
    wait_state(&manage, "shop2", "Online", WAIT);

    // SYNC_FAILING while a blob cannot be fetched from the root, past once it can: the
    // layer's file is moved aside at the root before the manifest is pushed.
    let http = authn::client();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"a layer whose file goes missing for a while";
    for blob in [&config[..], &layer[..]] {
        let (post, put) = authn::upload_blob(&http, &root.url, &Cred::admin(), "app", blob);
        expect_status(&post, 202, "start");
        expect_status(put.as_ref().unwrap(), 201, "finish");
    }
    let hex = authn::sha256_digest(layer)["sha256:".len()..].to_owned();
    let file = root
        .data_dir()
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(&hex);
    let aside = temp.path().join("blob-aside");
    std::fs::rename(&file, &aside).expect("move the root's blob file aside");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": authn::OCI_MANIFEST,
        "config": {"mediaType": authn::OCI_CONFIG, "digest": authn::sha256_digest(config), "size": config.len()},
        "layers": [{"mediaType": authn::OCI_LAYER, "digest": authn::sha256_digest(layer), "size": layer.len()}],
    }))
    .unwrap();
    let resp = authn::put_manifest(&http, &root.url, &Cred::admin(), "app", "v1", &manifest);
    expect_status(&resp, 201, "push app:v1");
    poll_until(WAIT, "SYNC_FAILING, current", || {
        let view = view(&manage, "shop2");
        match details(&view, "SYNC_FAILING").as_slice() {
            [d] if d["resolved_at"].is_null() => Ok(()),
            _ => Err(view.to_string()),
        }
    });
    std::fs::rename(&aside, &file).unwrap();
    wait_manifest(&_shop, &Cred::admin(), "app", "v1", 200);
    let view_after = poll_until(WAIT, "SYNC_FAILING, past", || {
        let view = view(&manage, "shop2");
        match details(&view, "SYNC_FAILING").as_slice() {
            [d] if d["resolved_at"].is_string() => Ok(view.clone()),
            _ => Err(view.to_string()),
        }
    });
    assert_eq!(view_after["connection_state"], "Online");

    // ALREADY_ACTIVATED: a second instance is refused; past once the active one reports.
    let stderr = serve_expecting_exit(
        &temp.path().join("second"),
        &["--connection-string", &cs],
        WAIT,
    );
    assert!(stderr.contains("ALREADY_ACTIVATED"), "{stderr}");
    poll_until(WAIT, "ALREADY_ACTIVATED, past", || {
        let view = view(&manage, "shop2");
        match details(&view, "ALREADY_ACTIVATED").as_slice() {
            [d] if d["resolved_at"].is_string() => Ok(()),
            _ => Err(view.to_string()),
        }
    });
}

#[test]
fn disk_low_and_disk_full_last_while_the_disk_is_low_or_full() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(&manage, json!({"name": "shop4", "repositories": ["app"]}));
    let temp = tempfile::tempdir().unwrap();
    // Under 512 MiB free: low.
    let disk = Tmpfs::mount(&temp.path().join("disk"), "64m");
    let mut shop = Berth::with_data_dir(
        &temp.path().join("disk/shop4"),
        &["--connection-string", &cs],
    );
    let current = |view: &Value, code: &str| {
        details(view, code)
            .first()
            .is_some_and(|d| d["resolved_at"].is_null())
    };
    // A warning: the registry still works, so it stays Online.
    poll_until(WAIT, "DISK_LOW, current, while Online", || {
        let view = view(&manage, "shop4");
        if current(&view, "DISK_LOW") && view["connection_state"] == "Online" {
            Ok(())
        } else {
            Err(view.to_string())
        }
    });
    // A layer bigger than the disk: the sync's blob writes fail, and the status says why.
    let layer = incompressible(80 << 20, 0x9E37_79B9_7F4A_7C15);
    let digest = push_image(&root, "app", "v1", &layer);
    poll_until(WAIT, "DISK_FULL, current", || {
        let view = view(&manage, "shop4");
        if current(&view, "DISK_FULL") && view["connection_state"] == "Unhealthy" {
            Ok(())
        } else {
            Err(view.to_string())
        }
    });
    // Room again: the layer arrives, and both problems are past.
    disk.resize("4g");
    wait_manifest(&shop, &Cred::admin(), "app", &digest, 200);
    let fine = wait_state(&manage, "shop4", "Online", WAIT);
    for code in ["DISK_LOW", "DISK_FULL"] {
        let past = details(&fine, code);
        assert!(
            past.len() == 1 && past[0]["resolved_at"].is_string(),
            "{code} shows as past once the disk has room: {fine}"
        );
    }
    shop.kill();
}

#[test]
fn upstream_failing_lasts_while_the_parent_refuses_what_a_site_sends_up() {
    // The root on a small disk: what a ReadWrite site sends up cannot be stored there.
    let temp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&temp.path().join("disk"), "64m");
    let root = Berth::with_data_dir(&temp.path().join("disk/root"), &[]);
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "shop12", "mode": "ReadWrite", "repositories": ["app"]}),
    );
    let shop = Berth::with_data_dir(&temp.path().join("shop12"), &["--connection-string", &cs]);
    wait_state(&manage, "shop12", "Online", WAIT);
    let current = |view: &Value| {
        details(view, "UPSTREAM_FAILING")
            .first()
            .is_some_and(|d| d["resolved_at"].is_null())
    };

    // A layer bigger than the root's disk, pushed on the site: sending it up fails, and
    // keeps failing, so the root shows it.
    let layer = incompressible(80 << 20, 0xD1B5_4A32_D192_ED03);
    let digest = push_image(&shop, "app", "v1", &layer);
    poll_until(WAIT, "UPSTREAM_FAILING, current", || {
        let view = view(&manage, "shop12");
        if current(&view) {
            Ok(())
        } else {
            Err(view.to_string())
        }
    });

    // Room at the root: the image goes up, and the problem is past.
    disk.resize("4g");
    wait_manifest(&root, &Cred::admin(), "app", &digest, 200);
    poll_until(WAIT, "UPSTREAM_FAILING, past", || {
        let view = view(&manage, "shop12");
        match details(&view, "UPSTREAM_FAILING").as_slice() {
            [d] if d["resolved_at"].is_string() => Ok(()),
            _ => Err(view.to_string()),
        }
    });
}

#[test]
fn a_switch_to_a_schedule_holds_at_once() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(&manage, json!({"name": "shop5", "repositories": ["app"]}));
    let shop = Berth::start_with(&["--connection-string", &cs]);
    push_image(&root, "app", "v1", b"before the schedule");
    wait_manifest(&shop, &Cred::admin(), "app", "v1", 200);

    // Yearly, from now on: the long poll in flight must not let the next push through.
    let resp = manage.call(
        "PATCH",
        "/berth/v1/connected-registries/shop5",
        Some(json!({"sync_schedule": "0 0 1 1 *", "sync_window": "PT1H"})),
    );
    expect_status(&resp, 200, "switch to a yearly schedule");
    std::thread::sleep(Duration::from_secs(1));
    push_image(&root, "app", "v2", b"after the schedule");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        manifest_status(&shop, "app", "v2"),
        404,
        "a push one second after the switch reached the site before the next tick"
    );

    // Back to continuous: it arrives at once.
    let resp = manage.call(
        "PATCH",
        "/berth/v1/connected-registries/shop5",
        Some(json!({"sync_schedule": "* * * * *", "sync_window": ""})),
    );
    expect_status(&resp, 200, "back to continuous");
    wait_manifest(&shop, &Cred::admin(), "app", "v2", 200);
}

#[test]
fn deactivate_stops_the_old_instance_for_good_and_a_replacement_takes_over() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(&manage, json!({"name": "ship6", "repositories": ["app"]}));
    let temp = tempfile::tempdir().unwrap();
    // Its own output is kept, to read the line it logs when it stops.
    let mut old = authn::Spawned::start(&[("BERTH_CONNECTION_STRING", &cs)]);
    let old_dir = old.data_dir().to_owned();
    push_image(&root, "app", "v1", b"one");
    poll_until(WAIT, "app:v1 on the old instance", || {
        let resp = send(
            &authn::client(),
            "GET",
            &format!("{}/v2/app/manifests/v1", old.url),
            &Cred::admin(),
            &[("accept", authn::OCI_MANIFEST)],
            None,
        );
        (resp.status == 200)
            .then_some(())
            .ok_or_else(|| format!("status {}", resp.status))
    });
    wait_state(&manage, "ship6", "Online", WAIT);

    let resp = manage.call(
        "POST",
        "/berth/v1/connected-registries/ship6/deactivate",
        None,
    );
    expect_status(&resp, 200, "deactivate");
    // The old instance learns it on its next call (its configuration poll at once) and stops.
    let status = old
        .wait_exit(Duration::from_secs(10))
        .expect("the deactivated instance keeps running");
    assert_eq!(
        status.code(),
        Some(EXIT_RETIRED),
        "it stops with the status a supervisor need not restart: {status}"
    );
    let output = old.output();
    assert!(
        output.lines().any(|l| l.contains("ERROR")
            && l.contains("connected registry instance stops")
            && l.contains("was deactivated on the root registry")),
        "the old instance logs why it stops, at error level:\n{output}"
    );
    push_image(&root, "app", "v2", b"two");
    // Started again on its data directory, it refuses at once, saying why and what to do.
    let (status, stderr) =
        serve_expecting_exit_status(&old_dir, &["--connection-string", &cs], WAIT);
    assert_eq!(status.code(), Some(EXIT_RETIRED), "{stderr}");
    assert!(
        stderr.contains("was deactivated on the root registry") && stderr.contains("instance.id"),
        "{stderr}"
    );
    assert_eq!(view(&manage, "ship6")["activation"], "Inactive");

    // A replacement activates and syncs.
    let replacement = Berth::with_data_dir(&temp.path().join("new"), &["--connection-string", &cs]);
    wait_state(&manage, "ship6", "Online", WAIT);
    wait_manifest(&replacement, &Cred::admin(), "app", "v2", 200);
    assert_eq!(view(&manage, "ship6")["activation"], "Active");

    // The old data directory, given a new identity, would be another instance: refused
    // while the replacement holds the registry.
    std::fs::remove_file(old_dir.join("instance.id")).unwrap();
    std::fs::remove_file(old_dir.join("retired.json")).unwrap();
    let (status, stderr) =
        serve_expecting_exit_status(&old_dir, &["--connection-string", &cs], WAIT);
    assert!(stderr.contains("ALREADY_ACTIVATED"), "{stderr}");
    assert_eq!(status.code(), Some(EXIT_RETIRED), "{stderr}");
}

/// A child started before its parent, itself a connected registry, has received the
/// child's new sync token (the parent's own link down) is refused by that parent: a child
/// that never activated waits for the token to arrive instead of retiring for good.
#[test]
fn a_new_child_waits_for_its_parent_to_learn_its_sync_token() {
    let mut root = Berth::start();
    let manage = Manage::new(&root.url);
    push_image(&root, "app", "v1", b"one");
    let factory_cs = connected(
        &manage,
        json!({"name": "factory5", "repositories": ["app"]}),
    );
    let temp = tempfile::tempdir().unwrap();
    let mut factory = Berth::with_data_dir(
        &temp.path().join("factory"),
        &["--connection-string", &factory_cs],
    );
    wait_state(&manage, "factory5", "Online", WAIT);
    // The child's registry and token are made while factory is away, and the root goes
    // away before factory is back: factory serves, but has never heard of the token.
    factory.kill();
    let line_cs = connected(
        &manage,
        json!({"name": "line5", "parent": "factory5", "repositories": ["app"]}),
    );
    root.kill();
    factory.restart();
    let mut line = authn::Spawned::start(&[("BERTH_CONNECTION_STRING", &line_cs)]);
    let line_dir = line.data_dir().to_owned();
    poll_until(
        Duration::from_secs(10),
        "factory refuses the unknown token",
        || {
            if line.output().contains("refused the sync token") {
                Ok(())
            } else {
                Err(line.output())
            }
        },
    );
    assert!(
        line.wait_exit(Duration::from_secs(2)).is_none(),
        "the child stopped:\n{}",
        line.output()
    );
    // The root is back, factory learns the token, the child activates and syncs.
    root.restart();
    wait_state(&manage, "line5", "Online", Duration::from_secs(60));
    poll_until(
        WAIT,
        "app:v1 synced on the child",
        || match sites::manifest_status_at(&line.url, "app", "v1") {
            200 => Ok(()),
            other => Err(format!("{other}\n{}", line.output())),
        },
    );
    assert!(!line_dir.join("retired.json").exists());
}

#[test]
fn a_deleted_registrys_instance_stops_and_never_locks_its_site_out() {
    // The parent allows few failed logins per address, as in production.
    let root = Berth::start_with(&["--login-failures-per-minute", "5"]);
    let manage = Manage::new(&root.url);
    manage.create_scope_map("app-pull", &[("app", &["content/read"])]);
    let client = manage.create_token("site-client", "app-pull", None);
    push_image(&root, "app", "v1", b"one");
    let temp = tempfile::tempdir().unwrap();

    for (name, cleanup) in [("ship7", true), ("ship8", false)] {
        let cs = connected(&manage, json!({"name": name, "repositories": ["app"]}));
        let dir = temp.path().join(name);
        let mut ship = Berth::with_data_dir(&dir, &["--connection-string", &cs]);
        wait_manifest(&ship, &Cred::admin(), "app", "v1", 200);
        wait_state(&manage, name, "Online", WAIT);
        let resp = manage.call(
            "DELETE",
            &format!("/berth/v1/connected-registries/{name}?cleanup={cleanup}"),
            None,
        );
        expect_status(&resp, 200, "delete");
        let status = ship.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
            panic!("{name}'s instance keeps running after its registry was deleted")
        });
        assert_eq!(status.code(), Some(EXIT_RETIRED), "{status}");
        // It serves nothing: no login the root can no longer revoke.
        assert!(
            std::net::TcpStream::connect_timeout(&ship.addr, Duration::from_millis(500)).is_err(),
            "{name} still listens"
        );
        // Started again, it refuses without knocking on the parent's door.
        let stderr = serve_expecting_exit(&dir, &["--connection-string", &cs], WAIT);
        assert!(
            stderr.contains(&format!("connected registry `{name}` was deleted"))
                || stderr.contains("the parent refused the sync token"),
            "{stderr}"
        );
    }
    // Long after: a valid client of the same address still logs in at the parent.
    std::thread::sleep(Duration::from_secs(8));
    let resp = send(
        &authn::client(),
        "GET",
        &format!(
            "{}/oauth2/token?service={}&scope=repository:app:pull",
            root.url, root.host
        ),
        &Cred::basic("site-client", &client.password1),
        &[],
        None,
    );
    expect_status(&resp, 200, "a valid client token after the orphans stopped");
}

/// `berth_login_failures_total` of the registry whose metrics listener is `metrics`.
fn login_failures(metrics: &str) -> f64 {
    let text = authn::client()
        .get(format!("http://{metrics}/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("scrape the metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("berth_login_failures_total "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no berth_login_failures_total in\n{text}"))
}

#[test]
fn a_refused_sync_token_stops_the_instance_until_a_new_connection_string() {
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let root = Berth::start_with(&["--metrics-listen", &metrics]);
    let manage = Manage::new(&root.url);
    let old_cs = connected(&manage, json!({"name": "ship10", "repositories": ["app"]}));
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("ship10");
    let mut ship = Berth::with_data_dir(&dir, &["--connection-string", &old_cs]);
    wait_state(&manage, "ship10", "Online", WAIT);

    // A new password for the sync token (as `get-settings --generate-password 1` makes):
    // the running instance's is refused from its next call on, and it stops.
    let resp = manage.call(
        "POST",
        "/berth/v1/connected-registries/ship10/settings",
        Some(json!({"parent_protocol": "http", "generate_password": 1})),
    );
    expect_status(&resp, 200, "a new sync token password");
    let new_cs = resp.json("settings")["connection_string"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = ship
        .wait_exit(Duration::from_secs(15))
        .expect("the instance keeps running with a refused sync token");
    assert!(!status.success(), "it stops with an error: {status}");
    assert!(dir.join("retired.json").exists(), "the refusal is recorded");

    // Restarted with the refused string (a supervisor's restarts), it refuses at once,
    // naming the remedy, and never knocks on the parent's door: not one failed login more.
    let failures = login_failures(&metrics);
    for _ in 0..3 {
        let stderr = serve_expecting_exit(&dir, &["--connection-string", &old_cs], WAIT);
        assert!(
            stderr.contains("refused the sync token")
                && stderr.contains("get-settings --name ship10 --generate-password"),
            "{stderr}"
        );
    }
    assert_eq!(
        login_failures(&metrics),
        failures,
        "restarts called the parent"
    );

    // The new connection string starts it again, and it syncs.
    let ship = Berth::with_data_dir(&dir, &["--connection-string", &new_cs]);
    push_image(&root, "app", "v1", b"after the new password");
    wait_manifest(&ship, &Cred::admin(), "app", "v1", 200);
    assert!(!dir.join("retired.json").exists());
}

#[test]
fn identity_writes_on_a_site_are_refused_naming_the_root() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "shop9", "mode": "ReadWrite", "repositories": ["app"]}),
    );
    let shop = Berth::start_with(&["--connection-string", &cs]);
    wait_state(&manage, "shop9", "Online", WAIT);
    let site = Manage::new(&shop.url);
    let refused = |method: &str, path: &str, body: Option<Value>| {
        let resp = site.call(method, path, body);
        expect_error(
            &resp,
            403,
            "MANAGED_BY_PARENT",
            &format!("{method} {path} on a site"),
        );
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        assert!(
            text.contains("managed on the root registry") && text.contains(&root.url),
            "{text}"
        );
    };
    refused(
        "POST",
        "/berth/v1/tokens",
        Some(json!({"name": "local", "scope_map": "_repositories_pull"})),
    );
    refused(
        "POST",
        "/berth/v1/scope-maps",
        Some(
            json!({"name": "local", "repositories": [{"repository": "app", "actions": ["content/read"]}]}),
        ),
    );
    refused(
        "POST",
        "/berth/v1/connected-registries",
        Some(json!({"name": "local1", "repositories": ["app"]})),
    );
    refused("DELETE", "/berth/v1/tokens/shop9-sync-token", None);
    // Reads, and what is the site's own (its network rules), still work.
    expect_status(
        &site.call("GET", "/berth/v1/tokens", None),
        200,
        "list tokens on a site",
    );
    expect_status(
        &site.call(
            "POST",
            "/berth/v1/network-rules",
            Some(json!({"ip_address": "10.0.0.0/8"})),
        ),
        200,
        "a network rule on a site",
    );
}

#[test]
fn the_status_says_syncing_while_content_moves() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({"name": "ship10", "repositories": ["big"], "sync_bandwidth": "2M"}),
    );
    let ship = Berth::start_with(&["--connection-string", &cs]);
    wait_state(&manage, "ship10", "Online", WAIT);
    let layer = incompressible(16 << 20, 0x2545_F491_4F6C_DD1D);
    let digest = push_image(&root, "big", "v1", &layer);
    // About 8 s of transfer at 2 MB/s, continuous mode: the root sees it syncing.
    wait_state(&manage, "ship10", "Syncing", WAIT);
    wait_manifest(&ship, &Cred::admin(), "big", &digest, 200);
    wait_state(&manage, "ship10", "Online", WAIT);
}
