//! End-to-end tests with real registry clients against a live `berth serve`.
//!
//! Each test starts its own registry (see `common::Berth`) and drives one client the way its
//! users do, over plain HTTP on loopback:
//!
//! - skopeo pushes an image built offline with umoci, inspects it (parsed, raw, config),
//!   lists tags, pushes a Docker schema 2 conversion, copies it back to `oci:` and `dir:`
//!   with unchanged digests, and deletes it;
//! - buildah builds an image from scratch and pushes it; podman pushes the same image to a
//!   second repository, where the layer is mounted across repositories; podman and buildah
//!   pull it back;
//! - skopeo `copy --all` pushes a hand-written two-platform OCI index, and each platform
//!   resolves;
//! - `buildah manifest push --all` pushes a Docker manifest list, and podman pulls each
//!   platform from it;
//! - skopeo pushes artifacts whose `subject` is an image, and the referrers API lists them,
//!   filtered by `artifactType`;
//! - a private dockerd loads, pushes (with a cross-repository mount) and pulls images, and
//!   pulls both platforms of an OCI index.
//!
//! The registry requires authentication, so every client logs in as the admin the way its
//! users would: skopeo with `--creds` / `--src-creds` / `--dest-creds`, buildah and podman
//! with `--creds`, docker with `docker login --password-stdin` into its private
//! configuration, and direct HTTP checks with Basic credentials. (What a token with fewer
//! rights may do is `e2e_auth.rs`.)
//!
//! A missing client fails the test with an install hint (`common::require`); nothing is
//! skipped. Client settings that make these tools work here (isolated storage, auth file,
//! registries.conf, dockerd flags) are in `clients/mod.rs`.

mod clients;
mod common;

use std::fs;
use std::process::Command;

use clients::{
    Containers, DOCKER_LIST, DOCKER_MANIFEST, Dockerd, Image, OCI_INDEX, OCI_MANIFEST, OciLayout,
    Output, assert_printed, host_arch, http, layout_descriptor, parse_json, read_layout_blob, run,
    run_failing, sha256_digest,
};
use serde_json::Value;

/// The admin's credentials as the containers tools take them (`user:password`).
fn admin_creds() -> String {
    format!("admin:{}", common::ADMIN_PASSWORD)
}

/// `skopeo copy` between two references, plain HTTP on both sides, logged in as the admin
/// on whichever side is a registry.
fn skopeo_copy(c: &Containers, extra: &[&str], from: &str, to: &str) -> Output {
    let mut cmd = c.skopeo();
    cmd.arg("copy")
        .arg("--src-tls-verify=false")
        .arg("--dest-tls-verify=false");
    if from.starts_with("docker://") {
        cmd.arg("--src-creds").arg(admin_creds());
    }
    if to.starts_with("docker://") {
        cmd.arg("--dest-creds").arg(admin_creds());
    }
    run(cmd.args(extra).arg(from).arg(to))
}

/// `skopeo inspect` over plain HTTP as the admin; `extra` goes before the reference.
fn skopeo_inspect(c: &Containers, extra: &[&str], reference: &str) -> Output {
    run(c
        .skopeo()
        .arg("inspect")
        .arg("--tls-verify=false")
        .arg("--creds")
        .arg(admin_creds())
        .args(extra)
        .arg(reference))
}

/// The JSON `skopeo inspect` prints.
fn skopeo_inspect_json(c: &Containers, extra: &[&str], reference: &str) -> Value {
    parse_json(&skopeo_inspect(c, extra, reference).stdout)
}

/// The tags `skopeo list-tags` prints for `repository` (`host/name`), sorted.
fn skopeo_tags(c: &Containers, repository: &str) -> Vec<String> {
    let out = run(c
        .skopeo()
        .arg("list-tags")
        .arg("--tls-verify=false")
        .arg("--creds")
        .arg(admin_creds())
        .arg(format!("docker://{repository}")));
    let listing = parse_json(&out.stdout);
    let mut tags: Vec<String> = listing["Tags"]
        .as_array()
        .unwrap_or_else(|| panic!("list-tags printed no Tags array: {}", out.stdout))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags
}

/// Asserts that a client printed exactly `expected` (a manifest or blob), allowing for the
/// newline some clients add.
fn assert_same_bytes(printed: &str, expected: &[u8], what: &str) {
    assert_eq!(
        printed.trim_end_matches('\n'),
        String::from_utf8_lossy(expected).trim_end_matches('\n'),
        "{what}: the client got other bytes than were pushed"
    );
}

/// The `digest` field of a JSON descriptor.
fn digest_of(descriptor: &Value) -> String {
    descriptor["digest"]
        .as_str()
        .expect("descriptor digest")
        .to_string()
}

/// The last non-empty line a command printed on stdout (image IDs, for buildah and podman).
fn last_line(out: &Output) -> String {
    out.stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `sha256:<id>` whether or not the client printed the prefix.
fn with_sha256(id: &str) -> String {
    if id.starts_with("sha256:") {
        id.to_string()
    } else {
        format!("sha256:{id}")
    }
}

/// GETs a manifest over HTTP with an `Accept` header; returns content type, digest header
/// and body after checking that the body hashes to the digest header.
fn get_manifest(url: &str, repo: &str, reference: &str, accept: &str) -> (String, String, Vec<u8>) {
    let resp = http()
        .get(format!("{url}/v2/{repo}/manifests/{reference}"))
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .header("Accept", accept)
        .send()
        .expect("GET manifest");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().expect("read manifest body").to_vec();
    assert_eq!(
        status.as_u16(),
        200,
        "GET /v2/{repo}/manifests/{reference}: {}",
        String::from_utf8_lossy(&body)
    );
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let digest = header("docker-content-digest");
    assert_eq!(
        digest,
        sha256_digest(&body),
        "Docker-Content-Digest must be the body's digest"
    );
    (header("content-type"), digest, body)
}

#[test]
fn skopeo_pushes_inspects_lists_copies_back_and_deletes_an_image_built_with_umoci() {
    common::require("skopeo");
    common::require("umoci");
    let berth = common::Berth::start();
    let c = Containers::new();

    // An image built offline: umoci lays it out, adds one file and sets its config.
    let layout = c.work("umoci");
    let image = format!("{}:v1", layout.display());
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    run(Command::new("umoci").arg("new").arg("--image").arg(&image));
    let files = c.work("files");
    fs::create_dir_all(&files).unwrap();
    fs::write(files.join("hello.txt"), "hello from umoci\n").unwrap();
    run(Command::new("umoci")
        .arg("insert")
        .arg("--image")
        .arg(&image)
        .arg(files.join("hello.txt"))
        .arg("/hello.txt"));
    run(Command::new("umoci")
        .arg("config")
        .arg("--image")
        .arg(&image)
        .arg("--config.cmd")
        .arg("/hello.txt")
        .arg("--config.label")
        .arg("berth.e2e=umoci"));
    run(Command::new("umoci").arg("gc").arg("--layout").arg(&layout));
    let original = layout_descriptor(&layout, "v1");
    let digest = digest_of(&original);
    let manifest_bytes = read_layout_blob(&layout, &digest);
    let manifest = parse_json(&String::from_utf8_lossy(&manifest_bytes));
    let config_digest = digest_of(&manifest["config"]);
    let config_bytes = read_layout_blob(&layout, &config_digest);
    let layer_digests: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(digest_of)
        .collect();
    assert_eq!(layer_digests.len(), 1, "umoci made one layer: {manifest}");

    let repository = format!("{}/e2e/skopeo", berth.host);
    let oci_ref = format!("oci:{}:v1", layout.display());
    skopeo_copy(&c, &[], &oci_ref, &format!("docker://{repository}:v1"));

    // inspect: what skopeo parses out of manifest and config.
    let inspected = skopeo_inspect_json(&c, &[], &format!("docker://{repository}:v1"));
    assert_eq!(inspected["Digest"], digest.as_str(), "inspect: {inspected}");
    assert_eq!(
        inspected["RepoTags"],
        serde_json::json!(["v1"]),
        "inspect: {inspected}"
    );
    assert_eq!(
        inspected["Architecture"],
        host_arch(),
        "inspect: {inspected}"
    );
    assert_eq!(inspected["Os"], "linux", "inspect: {inspected}");
    assert_eq!(
        inspected["Layers"],
        serde_json::json!(layer_digests),
        "inspect: {inspected}"
    );
    assert_eq!(
        inspected["Labels"]["berth.e2e"], "umoci",
        "inspect: {inspected}"
    );

    // inspect --raw and --config --raw: the exact bytes that were pushed.
    let raw = skopeo_inspect(&c, &["--raw"], &format!("docker://{repository}:v1"));
    assert_same_bytes(&raw.stdout, &manifest_bytes, "inspect --raw");
    let raw = skopeo_inspect(&c, &["--raw"], &format!("docker://{repository}@{digest}"));
    assert_same_bytes(&raw.stdout, &manifest_bytes, "inspect --raw by digest");
    let raw_config = skopeo_inspect(
        &c,
        &["--config", "--raw"],
        &format!("docker://{repository}:v1"),
    );
    assert_same_bytes(&raw_config.stdout, &config_bytes, "inspect --config --raw");

    // The same image converted to a Docker schema 2 manifest, under a second tag.
    skopeo_copy(
        &c,
        &["--format", "v2s2"],
        &oci_ref,
        &format!("docker://{repository}:docker"),
    );
    let raw = skopeo_inspect(&c, &["--raw"], &format!("docker://{repository}:docker"));
    let docker_manifest = parse_json(&raw.stdout);
    assert_eq!(
        docker_manifest["mediaType"], DOCKER_MANIFEST,
        "{docker_manifest}"
    );
    assert_eq!(
        docker_manifest["config"]["digest"],
        config_digest.as_str(),
        "{docker_manifest}"
    );
    let (content_type, _, _) = get_manifest(&berth.url, "e2e/skopeo", "docker", DOCKER_MANIFEST);
    assert_eq!(content_type, DOCKER_MANIFEST);
    let (content_type, oci_digest, _) = get_manifest(&berth.url, "e2e/skopeo", "v1", OCI_MANIFEST);
    assert_eq!(
        (content_type.as_str(), oci_digest.as_str()),
        (OCI_MANIFEST, digest.as_str())
    );

    assert_eq!(skopeo_tags(&c, &repository), ["docker", "v1"]);

    // Copy back to an OCI layout: same manifest digest, every blob intact.
    let back = c.work("back");
    skopeo_copy(
        &c,
        &[],
        &format!("docker://{repository}:v1"),
        &format!("oci:{}:v1", back.display()),
    );
    assert_eq!(
        digest_of(&layout_descriptor(&back, "v1")),
        digest,
        "oci: copy-back digest"
    );
    assert_eq!(read_layout_blob(&back, &digest), manifest_bytes);
    assert_eq!(read_layout_blob(&back, &config_digest), config_bytes);
    for layer in &layer_digests {
        assert_eq!(
            read_layout_blob(&back, layer),
            read_layout_blob(&layout, layer)
        );
    }

    // And to a dir: folder: the manifest file is byte for byte the pushed one.
    let dir = c.work("dir");
    skopeo_copy(
        &c,
        &[],
        &format!("docker://{repository}:v1"),
        &format!("dir:{}", dir.display()),
    );
    assert_eq!(
        fs::read(dir.join("manifest.json")).unwrap(),
        manifest_bytes,
        "dir: manifest.json"
    );
    for blob in layer_digests.iter().chain([&config_digest]) {
        let bytes = fs::read(dir.join(blob.strip_prefix("sha256:").unwrap())).unwrap();
        assert_eq!(&sha256_digest(&bytes), blob, "dir: blob {blob}");
    }

    // delete removes the manifest (by digest, as skopeo resolves the tag first) and its tag;
    // the Docker-format manifest, a different digest, stays.
    run(c
        .skopeo()
        .arg("delete")
        .arg("--tls-verify=false")
        .arg("--creds")
        .arg(admin_creds())
        .arg(format!("docker://{repository}:v1")));
    let gone = run_failing(
        c.skopeo()
            .arg("inspect")
            .arg("--tls-verify=false")
            .arg("--creds")
            .arg(admin_creds())
            .arg(format!("docker://{repository}:v1")),
    );
    assert_printed(&gone, "manifest unknown");
    let resp = http()
        .get(format!("{}/v2/e2e/skopeo/manifests/{digest}", berth.url))
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        404,
        "the deleted manifest is still served by digest"
    );
    assert_eq!(skopeo_tags(&c, &repository), ["docker"]);
    skopeo_inspect(&c, &[], &format!("docker://{repository}:docker"));
}

#[test]
fn buildah_and_podman_push_pull_and_mount_layers_across_repositories() {
    common::require("buildah");
    common::require("podman");
    let berth = common::Berth::start();
    let c = Containers::new();

    // Build from scratch: one file, a command, an environment variable and a label.
    let ctr = last_line(&run(c.buildah("main").arg("from").arg("scratch")));
    let context = c.work("context");
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("hello.txt"), "hello from buildah\n").unwrap();
    run(c
        .buildah("main")
        .arg("copy")
        .arg(&ctr)
        .arg(context.join("hello.txt"))
        .arg("/hello.txt"));
    run(c
        .buildah("main")
        .arg("config")
        .arg("--cmd")
        .arg(r#"["/hello.txt"]"#)
        .arg("--env")
        .arg("BERTH_E2E=podman")
        .arg("--label")
        .arg("berth.e2e=buildah")
        .arg(&ctr));
    let image_id = with_sha256(&last_line(&run(c
        .buildah("main")
        .arg("commit")
        .arg("--format")
        .arg("oci")
        .arg(&ctr)
        .arg("localhost/e2e/app:v1"))));

    // buildah push to the first repository.
    let first = format!("{}/e2e/buildah", berth.host);
    let digest_file = c.work("buildah.digest");
    run(c
        .buildah("main")
        .arg("push")
        .arg("--tls-verify=false")
        .arg("--creds")
        .arg(admin_creds())
        .arg("--digestfile")
        .arg(&digest_file)
        .arg("localhost/e2e/app:v1")
        .arg(format!("docker://{first}:v1")));
    let pushed = fs::read_to_string(&digest_file).unwrap().trim().to_string();
    let (content_type, _, body) = get_manifest(&berth.url, "e2e/buildah", &pushed, OCI_MANIFEST);
    assert_eq!(content_type, OCI_MANIFEST);
    let manifest = parse_json(&String::from_utf8_lossy(&body));
    assert_eq!(
        manifest["config"]["digest"],
        image_id.as_str(),
        "config digest is the image ID"
    );

    // podman push of the same image to a second repository: the layer is already in the
    // registry, so containers/image mounts it from the first repository instead of
    // uploading it again (it learnt where the blob lives from buildah's push).
    let second = format!("{}/e2e/podman", berth.host);
    let digest_file = c.work("podman.digest");
    let push = run(c
        .podman("main")
        .arg("--log-level=debug")
        .arg("push")
        .arg("--tls-verify=false")
        .arg("--creds")
        .arg(admin_creds())
        .arg("--digestfile")
        .arg(&digest_file)
        .arg("localhost/e2e/app:v1")
        .arg(format!("docker://{second}:v1")));
    assert_printed(&push, "from=e2e%2Fbuildah&mount=");
    assert_printed(&push, "mount OK");
    let pushed_again = fs::read_to_string(&digest_file).unwrap().trim().to_string();
    assert_eq!(
        pushed_again, pushed,
        "the same image pushed twice has one manifest digest"
    );
    let (_, digest, _) = get_manifest(&berth.url, "e2e/podman", "v1", OCI_MANIFEST);
    assert_eq!(digest, pushed);

    // podman pull from the second repository, after removing the local image.
    run(c.podman("main").arg("rmi").arg("localhost/e2e/app:v1"));
    let pulled = run(c
        .podman("main")
        .arg("pull")
        .arg("--tls-verify=false")
        .arg("--creds")
        .arg(admin_creds())
        .arg(format!("{second}:v1")));
    assert_eq!(
        with_sha256(&last_line(&pulled)),
        image_id,
        "podman pull printed another image ID"
    );
    let inspect = run(c
        .podman("main")
        .arg("image")
        .arg("inspect")
        .arg(format!("{second}:v1")));
    let inspect = parse_json(&inspect.stdout);
    let inspect = &inspect[0];
    assert_eq!(
        with_sha256(inspect["Id"].as_str().unwrap()),
        image_id,
        "{inspect}"
    );
    assert_eq!(inspect["Digest"], pushed.as_str(), "{inspect}");
    assert!(
        inspect["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "BERTH_E2E=podman"),
        "{inspect}"
    );
    assert_eq!(inspect["Labels"]["berth.e2e"], "buildah", "{inspect}");

    // buildah pull from the first repository into a store that has never seen the image.
    let pulled = run(c
        .buildah("fresh")
        .arg("pull")
        .arg("--tls-verify=false")
        .arg("--creds")
        .arg(admin_creds())
        .arg(format!("{first}:v1")));
    assert_eq!(
        with_sha256(&last_line(&pulled)),
        image_id,
        "buildah pull printed another image ID"
    );
}

#[test]
fn skopeo_copy_all_pushes_a_multi_platform_oci_index() {
    common::require("skopeo");
    let berth = common::Berth::start();
    let c = Containers::new();

    let mut layout = OciLayout::create(&c.work("multi"));
    let amd64 = layout.put_image("amd64", "platform", b"amd64\n", None);
    let arm64 = layout.put_image("arm64", "platform", b"arm64\n", None);
    let (index, index_bytes) = layout.put_index(&[("amd64", &amd64), ("arm64", &arm64)], "v1");
    let index_digest = digest_of(&index);

    let repository = format!("{}/e2e/multi", berth.host);
    skopeo_copy(
        &c,
        &["--all"],
        &layout.reference("v1"),
        &format!("docker://{repository}:v1"),
    );

    // The tag serves the index itself, byte for byte, with its media type.
    let raw = skopeo_inspect(&c, &["--raw"], &format!("docker://{repository}:v1"));
    assert_same_bytes(&raw.stdout, &index_bytes, "inspect --raw of the index");
    let (content_type, digest, _) = get_manifest(
        &berth.url,
        "e2e/multi",
        "v1",
        &format!("{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"),
    );
    assert_eq!(
        (content_type.as_str(), digest.as_str()),
        (OCI_INDEX, index_digest.as_str())
    );

    // Each platform resolves through the index.
    for (arch, image) in [("amd64", &amd64), ("arm64", &arm64)] {
        let reference = format!("docker://{repository}:v1");
        let inspected = skopeo_inspect_json(
            &c,
            &["--override-arch", arch, "--override-os", "linux"],
            &reference,
        );
        assert_eq!(inspected["Architecture"], arch, "{inspected}");
        assert_eq!(
            inspected["Layers"],
            serde_json::json!([image.layer_digest]),
            "{inspected}"
        );
        assert_eq!(inspected["Labels"]["berth.e2e"], arch, "{inspected}");
        let config = skopeo_inspect(
            &c,
            &[
                "--override-arch",
                arch,
                "--override-os",
                "linux",
                "--config",
                "--raw",
            ],
            &reference,
        );
        assert_eq!(
            sha256_digest(config.stdout.trim_end_matches('\n').as_bytes()),
            image.config_digest
        );
        let raw = skopeo_inspect(
            &c,
            &["--raw"],
            &format!("docker://{repository}@{}", image.digest()),
        );
        assert_same_bytes(
            &raw.stdout,
            &image.manifest,
            "inspect --raw of a platform manifest",
        );
    }

    // copy --all back: the index and both images come back with the same digests.
    let back = c.work("back");
    skopeo_copy(
        &c,
        &["--all"],
        &format!("docker://{repository}:v1"),
        &format!("oci:{}:v1", back.display()),
    );
    assert_eq!(digest_of(&layout_descriptor(&back, "v1")), index_digest);
    for image in [&amd64, &arm64] {
        assert_eq!(read_layout_blob(&back, &image.digest()), image.manifest);
        read_layout_blob(&back, &image.config_digest);
        read_layout_blob(&back, &image.layer_digest);
    }
}

#[test]
fn buildah_manifest_push_all_pushes_a_docker_manifest_list() {
    common::require("buildah");
    common::require("podman");
    common::require("skopeo");
    let berth = common::Berth::start();
    let c = Containers::new();

    // One scratch image per platform; buildah records the platform in each config.
    let mut ids: Vec<(&str, String)> = Vec::new();
    for arch in ["amd64", "arm64"] {
        let ctr = last_line(&run(c.buildah("main").arg("from").arg("scratch")));
        let file = c.work(&format!("{arch}.txt"));
        fs::write(&file, format!("{arch}\n")).unwrap();
        run(c
            .buildah("main")
            .arg("copy")
            .arg(&ctr)
            .arg(&file)
            .arg("/platform.txt"));
        run(c
            .buildah("main")
            .arg("config")
            .arg("--arch")
            .arg(arch)
            .arg("--os")
            .arg("linux")
            .arg(&ctr));
        let id = last_line(&run(c
            .buildah("main")
            .arg("commit")
            .arg(&ctr)
            .arg(format!("localhost/e2e/platform-{arch}:v1"))));
        ids.push((arch, with_sha256(&id)));
    }
    run(c
        .buildah("main")
        .arg("manifest")
        .arg("create")
        .arg("localhost/e2e/list:v1"));
    for arch in ["amd64", "arm64"] {
        run(c
            .buildah("main")
            .arg("manifest")
            .arg("add")
            .arg("localhost/e2e/list:v1")
            .arg(format!(
                "containers-storage:localhost/e2e/platform-{arch}:v1"
            )));
    }

    // Pushed as a Docker manifest list of Docker schema 2 manifests.
    let repository = format!("{}/e2e/list", berth.host);
    let digest_file = c.work("list.digest");
    run(c
        .buildah("main")
        .arg("manifest")
        .arg("push")
        .arg("--all")
        .arg("--format")
        .arg("v2s2")
        .arg("--tls-verify=false")
        .arg("--creds")
        .arg(admin_creds())
        .arg("--digestfile")
        .arg(&digest_file)
        .arg("localhost/e2e/list:v1")
        .arg(format!("docker://{repository}:v1")));
    let list_digest = fs::read_to_string(&digest_file).unwrap().trim().to_string();

    let raw = skopeo_inspect(&c, &["--raw"], &format!("docker://{repository}:v1"));
    assert_eq!(
        sha256_digest(raw.stdout.trim_end_matches('\n').as_bytes()),
        list_digest
    );
    let list = parse_json(&raw.stdout);
    assert_eq!(list["mediaType"], DOCKER_LIST, "{list}");
    let (content_type, digest, _) = get_manifest(
        &berth.url,
        "e2e/list",
        "v1",
        &format!("{DOCKER_LIST}, {OCI_INDEX}"),
    );
    assert_eq!(
        (content_type.as_str(), digest.as_str()),
        (DOCKER_LIST, list_digest.as_str())
    );
    let entries = list["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{list}");
    for (arch, id) in &ids {
        let entry = entries
            .iter()
            .find(|m| m["platform"]["architecture"] == *arch)
            .unwrap_or_else(|| panic!("no {arch} entry in {list}"));
        assert_eq!(entry["mediaType"], DOCKER_MANIFEST, "{list}");
        let inspected = skopeo_inspect_json(
            &c,
            &["--override-arch", arch, "--override-os", "linux"],
            &format!("docker://{repository}:v1"),
        );
        assert_eq!(inspected["Architecture"], *arch, "{inspected}");
        let raw = skopeo_inspect(
            &c,
            &["--raw"],
            &format!(
                "docker://{repository}@{}",
                entry["digest"].as_str().unwrap()
            ),
        );
        let manifest = parse_json(&raw.stdout);
        assert_eq!(manifest["mediaType"], DOCKER_MANIFEST, "{manifest}");
        assert_eq!(manifest["config"]["digest"], id.as_str(), "{manifest}");

        // podman picks the platform out of the list, into a store of its own.
        let pulled = run(c
            .podman(&format!("pull-{arch}"))
            .arg("pull")
            .arg("--tls-verify=false")
            .arg("--creds")
            .arg(admin_creds())
            .arg("--arch")
            .arg(arch)
            .arg(format!("{repository}:v1")));
        assert_eq!(
            with_sha256(&last_line(&pulled)),
            *id,
            "podman pull --arch {arch}"
        );
    }
}

#[test]
fn referrers_api_lists_artifacts_pushed_with_skopeo() {
    common::require("skopeo");
    let berth = common::Berth::start();
    let c = Containers::new();

    const SBOM: &str = "application/vnd.example.sbom.v1+json";
    const SIGNATURE: &str = "application/vnd.example.signature.v1";
    let mut layout = OciLayout::create(&c.work("layout"));
    let image: Image = layout.put_image(host_arch(), "app", b"app\n", Some("v1"));
    let (sbom, sbom_bytes) =
        layout.put_artifact(SBOM, &image.descriptor, b"{\"sbom\":1}", "sbom", "sbom");
    let (signature, _) =
        layout.put_artifact(SIGNATURE, &image.descriptor, b"signed", "signature", "sig");

    // The image first, then each artifact; skopeo copies artifact manifests untouched.
    let repository = format!("{}/e2e/referrers", berth.host);
    skopeo_copy(
        &c,
        &[],
        &layout.reference("v1"),
        &format!("docker://{repository}:v1"),
    );
    skopeo_copy(
        &c,
        &[],
        &layout.reference("sbom"),
        &format!("docker://{repository}:sbom"),
    );
    skopeo_copy(
        &c,
        &[],
        &layout.reference("sig"),
        &format!("docker://{repository}:sig"),
    );
    let raw = skopeo_inspect(
        &c,
        &["--raw"],
        &format!("docker://{repository}@{}", digest_of(&sbom)),
    );
    assert_same_bytes(&raw.stdout, &sbom_bytes, "inspect --raw of the artifact");

    let referrers = |query: &str| {
        let url = format!(
            "{}/v2/e2e/referrers/referrers/{}{query}",
            berth.url,
            image.digest()
        );
        let resp = http()
            .get(&url)
            .basic_auth("admin", Some(common::ADMIN_PASSWORD))
            .send()
            .expect("GET referrers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().unwrap();
        assert_eq!(status, 200, "GET {url}: {body}");
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with(OCI_INDEX),
            "GET {url}: content type {content_type:?}"
        );
        let filters = headers
            .get("oci-filters-applied")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (parse_json(&body), filters)
    };
    let expected = |descriptor: &Value, artifact_type: &str, note: &str| {
        serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": descriptor["digest"],
            "size": descriptor["size"],
            "artifactType": artifact_type,
            "annotations": { "org.example.berth.note": note },
        })
    };
    // The entries, sorted, reduced to the fields the spec requires (more are allowed).
    let sorted = |index: &Value| {
        let mut entries: Vec<Value> = index["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("referrers response has no manifests array: {index}"))
            .iter()
            .map(|e| {
                serde_json::json!({
                    "mediaType": e["mediaType"],
                    "digest": e["digest"],
                    "size": e["size"],
                    "artifactType": e["artifactType"],
                    "annotations": e["annotations"],
                })
            })
            .collect();
        entries.sort_by_key(|e| e["digest"].as_str().unwrap_or_default().to_string());
        entries
    };

    let (all, _) = referrers("");
    assert_eq!(all["schemaVersion"], 2, "{all}");
    assert_eq!(all["mediaType"], OCI_INDEX, "{all}");
    let mut want = vec![
        expected(&sbom, SBOM, "sbom"),
        expected(&signature, SIGNATURE, "signature"),
    ];
    want.sort_by_key(|e| e["digest"].as_str().unwrap().to_string());
    assert_eq!(sorted(&all), want, "referrers of the image: {all}");

    // Percent-encoded as clients send it: a bare `+` in a query string means a space.
    let (only_sbom, filters) = referrers(&format!("?artifactType={}", SBOM.replace('+', "%2B")));
    assert_eq!(
        sorted(&only_sbom),
        [expected(&sbom, SBOM, "sbom")],
        "filtered: {only_sbom}"
    );
    assert_eq!(
        filters.as_deref(),
        Some("artifactType"),
        "OCI-Filters-Applied header"
    );

    // A manifest nobody refers to has an empty list, not an error.
    let url = format!(
        "{}/v2/e2e/referrers/referrers/{}",
        berth.url,
        digest_of(&sbom)
    );
    let resp = http()
        .get(&url)
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "GET {url}");
    let none = parse_json(&resp.text().unwrap());
    assert_eq!(none["manifests"], serde_json::json!([]), "{none}");
}

#[test]
fn docker_loads_pushes_mounts_and_pulls_images() {
    common::require("dockerd");
    common::require("docker");
    common::require("skopeo");
    let berth = common::Berth::start();
    let c = Containers::new();
    let dockerd = Dockerd::start();
    dockerd.login(&berth.host, "admin", common::ADMIN_PASSWORD);
    let docker = || dockerd.docker();
    let image_id = |reference: &str| {
        last_line(&run(docker()
            .arg("image")
            .arg("inspect")
            .arg("--format")
            .arg("{{.Id}}")
            .arg(reference)))
    };

    // An image and a two-platform index, written by hand.
    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image(host_arch(), "hello", b"hello from docker\n", Some("v1"));
    let amd64 = layout.put_image("amd64", "platform", b"amd64\n", None);
    let arm64 = layout.put_image("arm64", "platform", b"arm64\n", None);
    layout.put_index(&[("amd64", &amd64), ("arm64", &arm64)], "multi");

    // docker load from an archive made by skopeo; the image ID is the config digest.
    let archive = dockerd.path("hello.tar");
    skopeo_copy(
        &c,
        &[],
        &layout.reference("v1"),
        &format!("docker-archive:{}:berth-e2e/hello:v1", archive.display()),
    );
    let load = run(docker().arg("load").arg("-i").arg(&archive));
    assert_printed(&load, "Loaded image: berth-e2e/hello:v1");
    assert_eq!(image_id("berth-e2e/hello:v1"), image.config_digest);

    // docker push.
    let first = format!("{}/e2e/docker", berth.host);
    run(docker()
        .arg("tag")
        .arg("berth-e2e/hello:v1")
        .arg(format!("{first}:v1")));
    let push = run(docker().arg("push").arg(format!("{first}:v1")));
    let pushed = push
        .stdout
        .split("digest: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("docker push printed no digest:\n{}", push.stdout))
        .to_string();
    let (content_type, _, body) = get_manifest(&berth.url, "e2e/docker", "v1", DOCKER_MANIFEST);
    assert_eq!(content_type, DOCKER_MANIFEST);
    assert_eq!(
        sha256_digest(&body),
        pushed,
        "the tag serves what docker pushed"
    );
    let manifest = parse_json(&String::from_utf8_lossy(&body));
    assert_eq!(
        manifest["config"]["digest"],
        image.config_digest.as_str(),
        "{manifest}"
    );

    // Pushing to a second repository mounts the layer from the first.
    let second = format!("{}/e2e/docker-copy", berth.host);
    run(docker()
        .arg("tag")
        .arg("berth-e2e/hello:v1")
        .arg(format!("{second}:v1")));
    let push = run(docker().arg("push").arg(format!("{second}:v1")));
    assert_printed(&push, "Mounted from e2e/docker");
    assert_printed(&push, &format!("digest: {pushed}"));

    // Remove every local copy, then pull by tag and by digest.
    run(docker()
        .arg("rmi")
        .arg(format!("{first}:v1"))
        .arg(format!("{second}:v1"))
        .arg("berth-e2e/hello:v1"));
    run_failing(
        docker()
            .arg("image")
            .arg("inspect")
            .arg(image.config_digest.as_str()),
    );
    let pull = run(docker().arg("pull").arg(format!("{second}:v1")));
    assert_printed(&pull, &format!("Digest: {pushed}"));
    assert_eq!(image_id(&format!("{second}:v1")), image.config_digest);
    let repo_digests = last_line(&run(docker()
        .arg("image")
        .arg("inspect")
        .arg("--format")
        .arg("{{json .RepoDigests}}")
        .arg(format!("{second}:v1"))));
    assert!(
        repo_digests.contains(&format!("{second}@{pushed}")),
        "RepoDigests: {repo_digests}"
    );
    run(docker().arg("pull").arg(format!("{first}@{pushed}")));
    assert_eq!(image_id(&format!("{first}@{pushed}")), image.config_digest);

    // A multi-platform index pushed by skopeo: docker picks its own platform, or the one
    // asked for.
    let multi = format!("{}/e2e/docker-multi", berth.host);
    skopeo_copy(
        &c,
        &["--all"],
        &layout.reference("multi"),
        &format!("docker://{multi}:v1"),
    );
    run(docker().arg("pull").arg(format!("{multi}:v1")));
    let native = if host_arch() == "arm64" {
        &arm64
    } else {
        &amd64
    };
    assert_eq!(image_id(&format!("{multi}:v1")), native.config_digest);
    let foreign = if host_arch() == "arm64" {
        ("linux/amd64", &amd64)
    } else {
        ("linux/arm64", &arm64)
    };
    run(docker()
        .arg("pull")
        .arg("--platform")
        .arg(foreign.0)
        .arg(format!("{multi}:v1")));
    assert_eq!(image_id(&format!("{multi}:v1")), foreign.1.config_digest);
}
