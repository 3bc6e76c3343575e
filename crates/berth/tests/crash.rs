//! Crash safety: `kill -9` of a registry in the middle of pushes loses no committed image
//! and exposes no partial one.
//!
//! Several client threads push images (chunked blob uploads, then a manifest and a tag) as
//! fast as they can; the registry is killed at a random moment; after a restart on the same
//! data directory, every image whose manifest `PUT` was answered `201` must be pullable and
//! byte-exact, every tag must resolve to a complete image, and every blob file on disk must
//! hash to its name. Then the cycle repeats on the same data.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use sha2::{Digest as _, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A tiny deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

#[derive(Clone, Debug)]
struct Committed {
    repo: String,
    tag: String,
    manifest_digest: String,
    blobs: Vec<String>,
}

/// Pushes one blob in 3 chunks; returns its digest, or `None` if the registry went away.
fn push_blob(client: &Client, base: &str, repo: &str, data: &[u8]) -> Option<String> {
    let digest = sha256(data);
    let resp = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .ok()?;
    if resp.status() != StatusCode::ACCEPTED {
        return None;
    }
    let mut location = resp.headers().get("location")?.to_str().ok()?.to_owned();
    let chunk = data.len().div_ceil(3).max(1);
    let mut offset = 0;
    for part in data.chunks(chunk) {
        let resp = client
            .patch(format!("{base}{location}"))
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("{}-{}", offset, offset + part.len() - 1),
            )
            .body(part.to_vec())
            .send()
            .ok()?;
        if resp.status() != StatusCode::ACCEPTED {
            return None;
        }
        location = resp.headers().get("location")?.to_str().ok()?.to_owned();
        offset += part.len();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let resp = client
        .put(format!("{base}{location}{sep}digest={digest}"))
        .send()
        .ok()?;
    (resp.status() == StatusCode::CREATED).then_some(digest)
}

/// Pushes images until the registry stops answering; records each committed one.
fn pusher(
    base: String,
    worker: u64,
    round: u64,
    stop: Arc<AtomicBool>,
    committed: Arc<Mutex<Vec<Committed>>>,
) {
    let client = common::admin_client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (worker << 32) ^ round);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let repo = format!("crash/w{worker}");
        let layer_len = 16 * 1024 + (rng.next() % (1 << 20)) as usize;
        let layer = rng.bytes(layer_len);
        let config = format!(r#"{{"architecture":"amd64","os":"linux","round":{round},"n":{n}}}"#)
            .into_bytes();
        let Some(layer_digest) = push_blob(&client, &base, &repo, &layer) else {
            return;
        };
        let Some(config_digest) = push_blob(&client, &base, &repo, &config) else {
            return;
        };
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let tag = format!("r{round}-n{n}");
        let Ok(resp) = client
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
        else {
            return;
        };
        if resp.status() != StatusCode::CREATED {
            return;
        }
        committed.lock().unwrap().push(Committed {
            repo,
            tag,
            manifest_digest: sha256(manifest.as_bytes()),
            blobs: vec![config_digest, layer_digest],
        });
    }
}

fn check_image(
    client: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    expect_digest: Option<&str>,
) -> Result<(), String> {
    let resp = client
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::OK {
        return Err(format!(
            "{repo}:{reference}: manifest GET answered {}",
            resp.status()
        ));
    }
    let bytes = resp.bytes().unwrap();
    let digest = sha256(&bytes);
    if let Some(expected) = expect_digest
        && digest != expected
    {
        return Err(format!(
            "{repo}:{reference}: manifest digest {digest}, expected {expected}"
        ));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in manifest["layers"].as_array().unwrap() {
        blobs.push(layer["digest"].as_str().unwrap().to_owned());
    }
    for blob in blobs {
        let resp = client
            .get(format!("{base}/v2/{repo}/blobs/{blob}"))
            .send()
            .map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::OK {
            return Err(format!(
                "{repo}:{reference}: blob {blob} answered {}",
                resp.status()
            ));
        }
        let got = sha256(&resp.bytes().unwrap());
        if got != blob {
            return Err(format!(
                "{repo}:{reference}: blob {blob} served bytes hashing to {got}"
            ));
        }
    }
    Ok(())
}

/// Every file under `blobs/` must hash to its own name: nothing half-written is published.
fn check_blob_files(data_dir: &std::path::Path) -> usize {
    let mut checked = 0;
    let root = data_dir.join("blobs").join("sha256");
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return 0;
    };
    for prefix in prefixes {
        for file in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(
                sha256(&bytes),
                format!("sha256:{name}"),
                "published blob {} is not what its name says",
                path.display()
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn kill_during_pushes_loses_nothing_committed() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut berth = common::Berth::with_data_dir(&data_dir, &[]);
    let committed: Arc<Mutex<Vec<Committed>>> = Arc::default();
    let mut rng = Rng(0xB5AD_4ECE_DA1C_E2A9);

    for round in 0..4u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (base, stop, committed) =
                    (berth.url.clone(), Arc::clone(&stop), Arc::clone(&committed));
                std::thread::spawn(move || pusher(base, w, round, stop, committed))
            })
            .collect();
        // Let some pushes commit, then kill at a moment that varies by round.
        let before = committed.lock().unwrap().len();
        let start = Instant::now();
        while committed.lock().unwrap().len() < before + 3
            && start.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 700));
        berth.kill();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }

        berth.restart();
        let client = common::admin_client();
        let images = committed.lock().unwrap().clone();
        assert!(
            images.len() > before,
            "round {round}: no push committed before the kill"
        );
        for image in &images {
            check_image(
                &client,
                &berth.url,
                &image.repo,
                &image.tag,
                Some(&image.manifest_digest),
            )
            .unwrap();
            check_image(
                &client,
                &berth.url,
                &image.repo,
                &image.manifest_digest,
                Some(&image.manifest_digest),
            )
            .unwrap();
            assert!(image.blobs.len() == 2);
        }
        // Every tag that exists (including ones whose 201 the client never saw) is whole.
        for w in 0..4 {
            let repo = format!("crash/w{w}");
            let resp = client
                .get(format!("{}/v2/{repo}/tags/list", berth.url))
                .send()
                .unwrap();
            if resp.status() == StatusCode::NOT_FOUND {
                continue;
            }
            let tags: serde_json::Value = resp.json().unwrap();
            for tag in tags["tags"].as_array().unwrap() {
                check_image(&client, &berth.url, &repo, tag.as_str().unwrap(), None).unwrap();
            }
        }
        assert!(check_blob_files(&data_dir) > 0);
    }
}
