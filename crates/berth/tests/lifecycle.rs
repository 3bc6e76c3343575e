//! The process lifecycle of `berth serve`: graceful shutdown lets in-flight requests finish,
//! abandoned uploads are swept after a restart, and configuration errors are clear.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Body, Client};
use sha2::{Digest as _, Sha256};

/// A request body that arrives slowly, in `chunks` pieces of `size` bytes.
struct SlowBody {
    chunks: usize,
    size: usize,
    sent: usize,
    pause: Duration,
}

impl Read for SlowBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent == self.chunks {
            return Ok(0);
        }
        std::thread::sleep(self.pause);
        let n = self.size.min(buf.len());
        buf[..n].fill(b'b');
        self.sent += 1;
        Ok(n)
    }
}

#[test]
fn sigterm_lets_an_in_flight_upload_finish() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut berth = common::Berth::with_data_dir(&data_dir, &[]);
    let (chunks, size) = (20, 4096);
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(vec![b'b'; chunks * size]))
    );

    let url = format!("{}/v2/slow/blobs/uploads/?digest={digest}", berth.url);
    let upload = std::thread::spawn(move || {
        let body = SlowBody {
            chunks,
            size,
            sent: 0,
            pause: Duration::from_millis(100),
        };
        common::admin_client()
            .post(url)
            .body(Body::new(body))
            .send()
            .map(|r| r.status())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        berth.terminate(),
        "berth serve did not exit 0 after SIGTERM"
    );
    let status = upload
        .join()
        .unwrap()
        .expect("the in-flight upload got an answer");
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the in-flight upload was completed before exit"
    );

    let berth = common::Berth::with_data_dir(&data_dir, &[]);
    let r = common::admin_client()
        .head(format!("{}/v2/slow/blobs/{digest}", berth.url))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the blob committed during shutdown survives"
    );
}

#[test]
fn abandoned_uploads_are_removed_after_their_age() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut berth = common::Berth::with_data_dir(&data_dir, &["--upload-max-age", "2s"]);
    let client = common::admin_client();
    let r = client
        .post(format!("{}/v2/a/blobs/uploads/", berth.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    let r = client
        .patch(&location)
        .body("half an upload")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let uploads = data_dir.join("uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1);

    berth.kill();
    std::thread::sleep(Duration::from_millis(2500));
    berth.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&uploads).unwrap().count() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read_dir(&uploads).unwrap().count(),
        0,
        "the abandoned upload's data was removed"
    );
    let r = client.get(&location).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn configuration_errors_name_the_setting() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("berth.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nmax_manifest_sise = 10\n").unwrap();
    let out = Command::new(common::berth_bin())
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown field `max_manifest_sise`"),
        "{stderr}"
    );

    let out = Command::new(common::berth_bin())
        .args(["serve", "--data-dir"])
        .arg(temp.path())
        .env("BERTH_UPLOAD_MAX_AGE", "whenever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("upload_max_age"), "{stderr}");
}

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("berth.toml");
    let (file_port, env_port, flag_port) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\ndata_dir = \"{}\"\n",
            temp.path().join("d").display()
        ),
    )
    .unwrap();

    let serve_and_probe = |extra: &[String], env: Option<u16>, expect: u16| {
        let mut cmd = Command::new(common::berth_bin());
        cmd.args(["serve", "--config"])
            .arg(&file)
            .args(extra)
            .stdout(std::process::Stdio::null());
        if let Some(port) = env {
            cmd.env("BERTH_LISTEN", format!("127.0.0.1:{port}"));
        }
        let mut child = cmd.spawn().unwrap();
        let url = format!("http://127.0.0.1:{expect}/v2/");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut ok = false;
        while std::time::Instant::now() < deadline && !ok {
            // Any answer of the registry API will do: without credentials it is a 401.
            berth_server::tls::install_crypto_provider();
            ok = Client::new()
                .get(&url)
                .send()
                .map(|r| r.headers().contains_key("docker-distribution-api-version"))
                .unwrap_or(false);
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(ok, "expected the registry on port {expect}");
    };
    serve_and_probe(&[], None, file_port);
    serve_and_probe(&[], Some(env_port), env_port);
    serve_and_probe(
        &["--listen".into(), format!("127.0.0.1:{flag_port}")],
        Some(env_port),
        flag_port,
    );
}
