//! `berth repository …` as a real process against a live `berth serve`, with images pushed
//! by skopeo (an image, a two-platform index, a signature with a `subject`): the listings
//! and their tables, `--output json`, untag and deletions, and what pulls see afterwards.
//! Then the same commands on connected registries: a ReadOnly site refuses deletions; an
//! untag on a ReadWrite site reaches its parent and the other sites; a repository deleted
//! at the root is emptied, then removed, everywhere.

mod authn;
mod clients;
mod common;
mod sites;

use authn::{Cred, Manage, poll_until};
use clients::{Containers, OciLayout, run};
use common::Berth;
use common::cli::{Cli, assert_contains, field, first_column};
use serde_json::{Value, json};
use sites::{
    WAIT, catalog, connected, manifest_status, push_image, skopeo_push, wait_manifest, wait_online,
};

/// The row of a table whose first column is `key`.
#[track_caller]
fn row<'t>(table: &'t str, key: &str) -> &'t str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no row `{key}` in:\n{table}"))
}

fn strings(value: &Value, field: &str) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v[field].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn list_show_untag_and_delete_with_real_images() {
    common::require("skopeo");
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let image = layout.put_image("amd64", "hello.txt", b"hello from berth", Some("v1"));
    let arm = layout.put_image("arm64", "hello.txt", b"hello, arm", None);
    let (index, _) = layout.put_index(&[("amd64", &image), ("arm64", &arm)], "multi");
    let (signature, _) = layout.put_artifact(
        "application/vnd.example.signature.v1",
        &image.descriptor,
        b"signed",
        "sig",
        "sig",
    );
    let index_digest = index["digest"].as_str().unwrap().to_owned();
    let signature_digest = signature["digest"].as_str().unwrap().to_owned();
    for tag in ["v1", "multi", "sig"] {
        run(containers
            .skopeo()
            .args([
                "copy",
                "--all",
                "--dest-tls-verify=false",
                "--dest-creds",
                &berth.admin_creds(),
            ])
            .arg(layout.reference(tag))
            .arg(format!("docker://{}/team/app:{tag}", berth.host)));
    }
    skopeo_push(
        &containers,
        layout.reference("v1"),
        &berth,
        "team/app:latest",
    );
    let hello = push_image(&berth, "hello-world", "1.0", b"another layer");

    // list: every repository, with counts; JSON is the API's entries.
    let table = cli.ok(&["repository", "list"]);
    assert_eq!(first_column(&table), ["hello-world", "team/app"]);
    assert_contains(table.lines().next().unwrap(), "NAME");
    let app_row = row(&table, "team/app");
    assert!(
        app_row
            .split_whitespace()
            .take(3)
            .eq(["team/app", "4", "4"]),
        "4 manifests, 4 tags: {app_row}"
    );
    let list = cli.json(&["repository", "list"]);
    assert_eq!(strings(&list, "name"), ["hello-world", "team/app"]);
    assert_eq!(list[1]["manifest_count"], 4);
    let top = cli.json(&["repository", "list", "--top", "1"]);
    assert_eq!(strings(&top, "name"), ["hello-world"]);

    // show: counts, size, times.
    let shown = cli.ok(&["repository", "show", "--name", "team/app"]);
    assert_eq!(field(&shown, "Name"), "team/app");
    assert_eq!(field(&shown, "Manifests"), "4");
    assert_eq!(field(&shown, "Tags"), "4");
    let show_json = cli.json(&["repository", "show", "--name", "team/app"]);
    assert_eq!(show_json, list[1]);
    assert!(show_json["size"].as_u64().unwrap() > 0);

    // show-tags: names, and with --detail digest, media type, size and last update.
    let tags = cli.ok(&["repository", "show-tags", "--name", "team/app"]);
    assert_eq!(first_column(&tags), ["latest", "multi", "sig", "v1"]);
    let detail = cli.ok(&["repository", "show-tags", "--name", "team/app", "--detail"]);
    assert_contains(detail.lines().next().unwrap(), "DIGEST");
    assert_contains(row(&detail, "v1"), &image.digest());
    assert_contains(row(&detail, "multi"), &index_digest);
    assert_contains(row(&detail, "multi"), clients::OCI_INDEX);
    let tags_json = cli.json(&["repository", "show-tags", "--name", "team/app", "--detail"]);
    assert_eq!(
        strings(&tags_json, "name"),
        ["latest", "multi", "sig", "v1"]
    );
    // The index counts both platforms: more than the image alone.
    assert!(tags_json[1]["size"].as_u64() > tags_json[3]["size"].as_u64());
    let top_tags = cli.json(&[
        "repository",
        "show-tags",
        "--name",
        "team/app",
        "--top",
        "2",
    ]);
    assert_eq!(strings(&top_tags, "name"), ["latest", "multi"]);
    let newest = cli.json(&[
        "repository",
        "show-tags",
        "--name",
        "team/app",
        "--orderby",
        "time_desc",
        "--top",
        "3",
    ]);
    let times: Vec<String> = strings(&newest, "updated_at");
    assert_eq!(times.len(), 3);
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    // show-manifests: every manifest, an index with its children, the signature's subject.
    let manifests = cli.ok(&["repository", "show-manifests", "--name", "team/app"]);
    assert_contains(&manifests, &format!("  {}", arm.digest()));
    assert_contains(&manifests, "linux/arm64");
    assert_contains(row(&manifests, &image.digest()), "latest,v1");
    let listed = cli.json(&["repository", "show-manifests", "--name", "team/app"]);
    assert_eq!(listed.as_array().unwrap().len(), 4);
    let by_digest = |digest: &str| -> Value {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["digest"] == digest)
            .cloned()
            .unwrap_or_else(|| panic!("{digest} not in {listed}"))
    };
    let children = &by_digest(&index_digest)["children"];
    assert_eq!(
        strings(children, "platform"),
        ["linux/amd64", "linux/arm64"]
    );
    assert_eq!(strings(children, "digest"), [image.digest(), arm.digest()]);
    let sig = by_digest(&signature_digest);
    assert_eq!(sig["subject"], image.digest());
    assert_eq!(sig["artifact_type"], "application/vnd.example.signature.v1");
    assert_eq!(by_digest(&arm.digest())["tags"], json!([]));
    let multi = cli.json(&["repository", "show", "--image", "team/app:multi"]);
    assert_eq!(multi["digest"], index_digest.as_str());

    // untag: the tag goes, the manifest stays, pullable by digest and by its other tag.
    let untagged = cli.ok(&["repository", "untag", "--image", "team/app:v1"]);
    assert_contains(&untagged, "Untagged `team/app:v1`");
    assert_contains(&untagged, &format!("team/app@{}", image.digest()));
    assert_eq!(manifest_status(&berth, "team/app", "v1"), 404);
    assert_eq!(manifest_status(&berth, "team/app", &image.digest()), 200);
    assert_eq!(manifest_status(&berth, "team/app", "latest"), 200);
    let by_digest_ref = format!("docker://{}/team/app@{}", berth.host, image.digest());
    run(containers.skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &berth.admin_creds(),
        &by_digest_ref,
    ]));
    cli.refused(
        &["repository", "untag", "--image", "team/app:v1"],
        &["no tag `v1`"],
    );

    // delete --image: one manifest and its tags.
    let deleted = cli.ok(&[
        "repository",
        "delete",
        "--image",
        &format!("team/app@{signature_digest}"),
        "--yes",
    ]);
    assert_contains(&deleted, "and its tag(s) sig");
    assert_eq!(manifest_status(&berth, "team/app", "sig"), 404);

    // delete --name: asks first (and without a terminal refuses), then everything goes.
    let refused = cli.fails_silently(&["repository", "delete", "--name", "team/app"], 2);
    assert_contains(&refused, "--yes");
    assert_eq!(manifest_status(&berth, "team/app", "multi"), 200);
    let (out, err) = cli.ok_with_stderr(&["repository", "delete", "--name", "team/app", "--yes"]);
    assert_contains(
        &out,
        "Deleted repository `team/app`: 3 manifest(s), 2 tag(s)",
    );
    assert_contains(&err, "garbage collection");
    for reference in ["multi", "latest", &image.digest(), &arm.digest()] {
        assert_eq!(
            manifest_status(&berth, "team/app", reference),
            404,
            "{reference}"
        );
    }
    assert_eq!(catalog(&berth), ["hello-world"]);
    assert_eq!(
        first_column(&cli.ok(&["repository", "list"])),
        ["hello-world"]
    );
    cli.refused(
        &["repository", "show", "--name", "team/app"],
        &["`team/app` is not known"],
    );
    cli.refused(
        &["repository", "delete", "--name", "team/app", "--yes"],
        &["`team/app` is not known"],
    );
    // The other repository is untouched.
    assert_eq!(manifest_status(&berth, "hello-world", &hello), 200);
    let deleted_json = cli.json(&["repository", "delete", "--name", "hello-world", "--yes"]);
    assert_eq!(
        deleted_json,
        json!({"name": "hello-world", "manifests_deleted": 1, "tags_deleted": 1, "blob_links_removed": 2})
    );
    assert_eq!(cli.json(&["repository", "list"]), json!([]));
}

#[test]
fn on_connected_registries_deletions_follow_the_change_log() {
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let factory_cs = connected(
        &manage,
        json!({"name": "factory", "mode": "ReadWrite", "repositories": ["hello-world"]}),
    );
    let mirror_cs = connected(
        &manage,
        json!({"name": "mirror", "mode": "ReadOnly", "repositories": ["hello-world"]}),
    );
    let factory = Berth::start_with(&["--connection-string", &factory_cs]);
    let mirror = Berth::start_with(&["--connection-string", &mirror_cs]);
    wait_online(&manage, "factory");
    wait_online(&manage, "mirror");
    let v1 = push_image(&root, "hello-world", "v1", b"one");
    let v2 = push_image(&root, "hello-world", "v2", b"two");
    for site in [&factory, &mirror] {
        for tag in ["v1", "v2"] {
            wait_manifest(site, &Cred::admin(), "hello-world", tag, 200);
        }
    }
    let (on_root, on_factory, on_mirror) = (
        Cli::logged_in(&root),
        Cli::logged_in(&factory),
        Cli::logged_in(&mirror),
    );

    // A ReadOnly mirror lists, and refuses every deletion, naming its mode.
    assert_eq!(
        first_column(&on_mirror.ok(&["repository", "show-tags", "--name", "hello-world"])),
        ["v1", "v2"]
    );
    for args in [
        &["repository", "untag", "--image", "hello-world:v1"][..],
        &["repository", "delete", "--name", "hello-world", "--yes"],
        &["repository", "delete", "--image", "hello-world:v1", "--yes"],
    ] {
        on_mirror.refused(args, &["ReadOnly"]);
    }
    assert_eq!(manifest_status(&mirror, "hello-world", "v1"), 200);

    // An untag on a ReadWrite site is a local change: it goes up, and down to the mirror.
    on_factory.ok(&["repository", "untag", "--image", "hello-world:v2"]);
    wait_manifest(&root, &Cred::admin(), "hello-world", "v2", 404);
    wait_manifest(&mirror, &Cred::admin(), "hello-world", "v2", 404);
    assert_eq!(manifest_status(&root, "hello-world", &v2), 200);
    assert_eq!(manifest_status(&mirror, "hello-world", &v2), 200);

    // A repository deleted at the root: every manifest and tag goes on every site, then
    // the name itself (no empty repository left in their listings and catalogs).
    on_root.ok(&["repository", "delete", "--name", "hello-world", "--yes"]);
    for site in [&factory, &mirror] {
        for reference in ["v1", v1.as_str(), v2.as_str()] {
            wait_manifest(site, &Cred::admin(), "hello-world", reference, 404);
        }
    }
    for (cli, site) in [(&on_factory, &factory), (&on_mirror, &mirror)] {
        poll_until(
            WAIT,
            &format!("hello-world gone from {}'s repositories", site.host),
            || match cli.json(&["repository", "list"]) {
                list if list == json!([]) => Ok(()),
                list => Err(list.to_string()),
            },
        );
        cli.refused(
            &["repository", "show-manifests", "--name", "hello-world"],
            &["hello-world"],
        );
    }
}

#[test]
fn a_deleted_repository_s_bytes_are_freed_by_the_next_collection() {
    let berth = Berth::start_with(&["--gc-grace", "0s", "--gc-enabled", "false"]);
    let cli = Cli::logged_in(&berth);
    let shared = b"a layer both repositories have".to_vec();
    let only_here = b"a layer only the deleted repository has".to_vec();
    push_image(&berth, "doomed", "v1", &only_here);
    push_image(&berth, "doomed", "v2", &shared);
    let kept = push_image(&berth, "kept", "v1", &shared);
    let file = |bytes: &[u8]| {
        let hex = authn::sha256_digest(bytes)
            .strip_prefix("sha256:")
            .unwrap()
            .to_owned();
        berth
            .data_dir()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
    };
    assert!(file(&only_here).exists());

    cli.ok(&["repository", "delete", "--name", "doomed", "--yes"]);
    // Deleting unlinks; the bytes wait for garbage collection.
    assert!(file(&only_here).exists());
    let run = cli.json(&["gc", "run"]);
    assert_eq!(run["outcome"], "finished", "{run}");
    assert_eq!(
        run["blobs_removed"], 3,
        "the deleted repository's own layer and its two configs: {run}"
    );
    assert!(
        !file(&only_here).exists(),
        "its own layer is gone from disk"
    );
    assert!(file(&shared).exists(), "the layer `kept` uses stays");
    assert_eq!(manifest_status(&berth, "kept", &kept), 200);
    let pulled = authn::send(
        &authn::client(),
        "GET",
        &format!(
            "{}/v2/kept/blobs/{}",
            berth.url,
            authn::sha256_digest(&shared)
        ),
        &Cred::admin(),
        &[],
        None,
    );
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.body, shared);
}
