//! Helpers for driving real registry clients (skopeo, umoci, buildah, podman, docker) from
//! the end-to-end tests in `e2e_clients.rs` and `e2e_auth.rs`.
//!
//! - [`run`] runs one external command with a timeout and panics with its full command line,
//!   exit status, stdout and stderr when it fails, so a failing test says exactly what the
//!   client printed.
//! - [`OciLayout`] writes an OCI image layout by hand (blobs, manifests, an index, artifacts
//!   with a `subject`), so tests control every byte they push and can compare digests.
//! - [`Containers`] gives skopeo, buildah and podman an isolated configuration and storage in
//!   a temporary directory, as root, without touching the machine's own image store.
//! - [`Dockerd`] starts a private `dockerd` (own data root, exec root and socket) and stops
//!   it, with its containerd, when dropped; [`Dockerd::login`] runs `docker login
//!   --password-stdin` into its private client configuration.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// How long one client command may run before the test gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// What an external command printed, and how it ended.
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout, lossily decoded.
    pub stdout: String,
    /// Everything written to stderr, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, for searching client messages that go to either.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Everything about the command, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Renders a command line with its environment overrides, as it could be pasted in a shell.
pub fn describe(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())))
        .collect();
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.contains('{') || a.contains('"') {
            format!("'{a}'")
        } else {
            a.into_owned()
        }
    }));
    parts.join(" ")
}

/// Runs `cmd` to completion (at most [`COMMAND_TIMEOUT`]), whatever its exit status.
pub fn run_unchecked(cmd: &mut Command) -> Output {
    run_unchecked_with_stdin(cmd, None)
}

/// Runs `cmd` with `input` on its standard input (closed after it; `None`: no input), to
/// completion, whatever its exit status. For `--password-stdin`.
pub fn run_unchecked_with_stdin(cmd: &mut Command, input: Option<&[u8]>) -> Output {
    use std::io::Write as _;

    let command = describe(cmd);
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
    if let Some(input) = input {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input)
            .unwrap_or_else(|e| panic!("cannot write to the input of `{command}`: {e}"));
        // Dropped here: the command sees the end of its input.
    }
    // Drain both pipes on threads so a chatty client never blocks on a full pipe.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a client command") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().expect("wait for a killed client command");
            let stdout = String::from_utf8_lossy(&out_thread.join().unwrap()).into_owned();
            let stderr = String::from_utf8_lossy(&err_thread.join().unwrap()).into_owned();
            let output = Output {
                command,
                status,
                stdout,
                stderr,
            };
            panic!("timed out after {COMMAND_TIMEOUT:?}\n{}", output.report());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap()).into_owned();
    Output {
        command,
        status,
        stdout,
        stderr,
    }
}

/// Runs `cmd` and panics with everything it printed unless it exits 0.
pub fn run(cmd: &mut Command) -> Output {
    let output = run_unchecked(cmd);
    assert!(
        output.status.success(),
        "client command failed\n{}",
        output.report()
    );
    output
}

/// Runs `cmd` and panics with everything it printed unless it fails.
pub fn run_failing(cmd: &mut Command) -> Output {
    let output = run_unchecked(cmd);
    assert!(
        !output.status.success(),
        "client command should have failed\n{}",
        output.report()
    );
    output
}

/// Panics, showing the whole output, unless `haystack` contains `needle`.
pub fn assert_printed(output: &Output, needle: &str) {
    assert!(
        output.combined().contains(needle),
        "expected the client to print {needle:?}\n{}",
        output.report()
    );
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Parses JSON printed by a client, panicking with the text when it is not JSON.
pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("client printed invalid JSON ({e}):\n{text}"))
}

/// The architecture name the OCI and Docker specs use for this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A blocking HTTP client for looking at what the registry serves.
pub fn http() -> reqwest::blocking::Client {
    berth_server::tls::install_crypto_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build an HTTP client")
}

// ---------------------------------------------------------------------------------------
// OCI image layouts written by hand
// ---------------------------------------------------------------------------------------

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of the OCI empty descriptor (`{}`), used as the config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Media type of a Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// An image written into an [`OciLayout`]: its manifest and the pieces tests compare.
#[derive(Clone, Debug)]
pub struct Image {
    /// Descriptor of the manifest (mediaType, digest, size).
    pub descriptor: Value,
    /// The exact manifest bytes.
    pub manifest: Vec<u8>,
    /// Digest of the configuration blob, which Docker and podman show as the image ID.
    pub config_digest: String,
    /// Digest of the single (gzip) layer.
    pub layer_digest: String,
}

impl Image {
    /// The manifest digest.
    pub fn digest(&self) -> String {
        self.descriptor["digest"].as_str().unwrap().to_string()
    }
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`).
pub struct OciLayout {
    /// The layout directory, as `oci:<dir>:<tag>` names it.
    pub dir: PathBuf,
    entries: Vec<Value>,
}

impl OciLayout {
    /// Creates an empty layout in `dir`.
    pub fn create(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("create the layout's blob folder");
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let layout = OciLayout {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        };
        layout.write_index();
        layout
    }

    /// `oci:<dir>:<tag>`, the reference skopeo and buildah use for this layout.
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }

    /// Stores a blob and returns its descriptor.
    pub fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let digest = sha256_digest(bytes);
        let hex = digest.strip_prefix("sha256:").unwrap();
        fs::write(self.dir.join("blobs/sha256").join(hex), bytes).expect("write a layout blob");
        json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
    }

    /// Stores a manifest (image manifest, index or artifact) exactly as serialized here and
    /// lists it in `index.json`, tagged `tag` when given. Returns its descriptor and bytes.
    pub fn put_manifest(&mut self, manifest: &Value, tag: Option<&str>) -> (Value, Vec<u8>) {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let media_type = manifest["mediaType"]
            .as_str()
            .expect("manifests carry a mediaType");
        let descriptor = self.put_blob(media_type, &bytes);
        let mut entry = descriptor.clone();
        if let Some(tag) = tag {
            entry["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        }
        self.entries.push(entry);
        self.write_index();
        (descriptor, bytes)
    }

    /// Writes a one-layer image for `arch` whose layer holds `file` with `contents`.
    pub fn put_image(
        &mut self,
        arch: &str,
        file: &str,
        contents: &[u8],
        tag: Option<&str>,
    ) -> Image {
        let tar = tar_with_file(file, contents);
        let layer = self.put_blob(OCI_LAYER_GZIP, &gzip_stored(&tar));
        let config = json!({
            "created": "2026-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": { "Cmd": [format!("/{file}")], "Labels": { "berth.e2e": arch } },
            "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&tar)] },
            "history": [{ "created": "2026-01-01T00:00:00Z", "created_by": "berth e2e" }]
        });
        let config = self.put_blob(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
        });
        let (descriptor, manifest) = self.put_manifest(&manifest, tag);
        Image {
            descriptor,
            manifest,
            config_digest: config["digest"].as_str().unwrap().to_string(),
            layer_digest: layer["digest"].as_str().unwrap().to_string(),
        }
    }

    /// Writes an OCI index over `images`, each with its platform, tagged `tag`.
    pub fn put_index(&mut self, images: &[(&str, &Image)], tag: &str) -> (Value, Vec<u8>) {
        let manifests: Vec<Value> = images
            .iter()
            .map(|(arch, image)| {
                let mut d = image.descriptor.clone();
                d["platform"] = json!({ "architecture": arch, "os": "linux" });
                d
            })
            .collect();
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        self.put_manifest(&index, Some(tag))
    }

    /// Writes an artifact manifest of `artifact_type` whose `subject` is `subject` and whose
    /// only layer is `payload`, tagged `tag` in the layout. Returns its descriptor and bytes.
    pub fn put_artifact(
        &mut self,
        artifact_type: &str,
        subject: &Value,
        payload: &[u8],
        annotation: &str,
        tag: &str,
    ) -> (Value, Vec<u8>) {
        let empty = self.put_blob(OCI_EMPTY, b"{}");
        let layer = self.put_blob("text/plain", payload);
        let subject = json!({
            "mediaType": subject["mediaType"],
            "digest": subject["digest"],
            "size": subject["size"],
        });
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty,
            "layers": [layer],
            "subject": subject,
            "annotations": { "org.example.berth.note": annotation },
        });
        self.put_manifest(&manifest, Some(tag))
    }

    fn write_index(&self) {
        let index =
            json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries });
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .expect("write index.json");
    }
}

/// Reads `index.json` of an OCI layout written by a client (umoci, skopeo).
pub fn read_layout_index(dir: &Path) -> Value {
    let text = fs::read_to_string(dir.join("index.json"))
        .unwrap_or_else(|e| panic!("read {}/index.json: {e}", dir.display()));
    parse_json(&text)
}

/// The manifest descriptor tagged `tag` in the OCI layout at `dir`.
pub fn layout_descriptor(dir: &Path, tag: &str) -> Value {
    let index = read_layout_index(dir);
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned()
        .unwrap_or_else(|| panic!("no manifest tagged {tag:?} in {}: {index}", dir.display()))
}

/// Reads a blob of the OCI layout at `dir` and checks that its content matches its name.
pub fn read_layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let path = dir.join("blobs/sha256").join(hex);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read blob {}: {e}", path.display()));
    assert_eq!(
        sha256_digest(&bytes),
        digest,
        "blob {} does not match its digest",
        path.display()
    );
    bytes
}

/// A ustar archive holding one regular file, byte for byte reproducible.
pub fn tar_with_file(name: &str, contents: &[u8]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        let text = format!("{:0width$o}\0", value, width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    }
    assert!(name.len() < 100, "tar names here are short");
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], 0o755);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], contents.len() as u64);
    octal(&mut header[136..148], 1_767_225_600);
    header[148..156].fill(b' ');
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());

    let mut tar = header.to_vec();
    tar.extend_from_slice(contents);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// Wraps `data` in a gzip stream of stored (uncompressed) deflate blocks: valid gzip that
/// every client reads, made without a compression library.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(65_535).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i == last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

// ---------------------------------------------------------------------------------------
// skopeo, buildah and podman with isolated storage and configuration
// ---------------------------------------------------------------------------------------

/// An isolated world for the containers/image tools: its own image store (vfs driver, so
/// no overlay mounts are needed), run root, temporary directory, empty credentials file,
/// registries.conf and containers.conf, all inside one temporary directory.
pub struct Containers {
    temp: tempfile::TempDir,
}

impl Containers {
    /// Creates the directories and configuration files.
    pub fn new() -> Self {
        // podman refuses a run root longer than 50 characters, so the folder sits directly
        // in /tmp with a short name whatever TMPDIR says.
        let temp = tempfile::Builder::new()
            .prefix("berth-c")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = temp.path();
        for sub in ["root", "run", "tmp", "work"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // The tools refuse to start when REGISTRY_AUTH_FILE names a missing file.
        fs::write(dir.join("auth.json"), "{}").unwrap();
        // No search registries and no mirrors: every reference in the tests is fully
        // qualified with the registry's host and port.
        fs::write(
            dir.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        // Built-in defaults only, whatever the machine's containers.conf says.
        fs::write(dir.join("containers.conf"), "").unwrap();
        Containers { temp }
    }

    /// The temporary directory, for the test's own files.
    pub fn dir(&self) -> &Path {
        self.temp.path()
    }

    /// A scratch folder inside the temporary directory.
    pub fn work(&self, name: &str) -> PathBuf {
        self.temp.path().join("work").join(name)
    }

    fn with_env(&self, program: &str) -> Command {
        let dir = self.temp.path();
        let mut cmd = Command::new(program);
        cmd.env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
            .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"))
            .env("CONTAINERS_CONF", dir.join("containers.conf"))
            .env("TMPDIR", dir.join("tmp"));
        cmd
    }

    fn storage_args(&self, cmd: &mut Command, store: &str) {
        let dir = self.temp.path();
        cmd.arg("--root")
            .arg(dir.join("root").join(store))
            .arg("--runroot")
            .arg(dir.join("run").join(store))
            .arg("--storage-driver")
            .arg("vfs");
    }

    /// `skopeo` with the isolated configuration.
    pub fn skopeo(&self) -> Command {
        self.with_env("skopeo")
    }

    /// `buildah` on the image store named `store` (one store per name).
    pub fn buildah(&self, store: &str) -> Command {
        let mut cmd = self.with_env("buildah");
        self.storage_args(&mut cmd, store);
        cmd
    }

    /// `podman` on the image store named `store` (the same store buildah uses by that name).
    pub fn podman(&self, store: &str) -> Command {
        let mut cmd = self.with_env("podman");
        self.storage_args(&mut cmd, store);
        cmd.arg("--tmpdir")
            .arg(self.temp.path().join("tmp").join(format!("podman-{store}")))
            .arg("--events-backend")
            .arg("none");
        cmd
    }
}

// ---------------------------------------------------------------------------------------
// A private dockerd
// ---------------------------------------------------------------------------------------

/// A `dockerd` of the test's own: its data root, exec root, socket and pid file live in a
/// temporary directory; no iptables rules, no bridge, vfs storage. Stopped when dropped.
pub struct Dockerd {
    temp: tempfile::TempDir,
    child: Option<Child>,
    socket: PathBuf,
}

impl Dockerd {
    /// Starts dockerd and waits until it answers on its socket.
    pub fn start() -> Self {
        use std::os::unix::process::CommandExt as _;

        // Unix socket paths are limited to 108 bytes: stay short, directly in /tmp.
        let temp = tempfile::Builder::new()
            .prefix("berth-d")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = temp.path();
        for sub in ["data", "exec", "config"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        fs::write(dir.join("daemon.json"), "{}").unwrap();
        fs::write(dir.join("config/config.json"), "{}").unwrap();
        let socket = dir.join("docker.sock");
        let log = fs::File::create(dir.join("dockerd.log")).unwrap();
        let mut cmd = Command::new("dockerd");
        cmd.arg("--iptables=false")
            .arg("--ip6tables=false")
            .arg("--bridge=none")
            .arg("--storage-driver=vfs")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so that stopping it reaches everything it started in it.
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}"));
        let mut dockerd = Dockerd {
            temp,
            child: Some(child),
            socket,
        };
        dockerd.wait_ready();
        dockerd
    }

    fn log(&self) -> String {
        fs::read_to_string(self.temp.path().join("dockerd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "dockerd exited before it was ready ({status}); its log:\n{}",
                    self.log()
                );
            }
            let probe = run_unchecked(
                self.docker()
                    .arg("version")
                    .arg("--format")
                    .arg("{{.Server.Version}}"),
            );
            if probe.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "dockerd did not answer on {} within 90 s; last probe:\n{}\n{}\ndockerd log:\n{}",
                    self.socket.display(),
                    probe.stdout,
                    probe.stderr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `docker -H unix://<socket>` with a private client configuration directory.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", self.temp.path().join("config"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()));
        cmd
    }

    /// `docker login -u <user> --password-stdin <host>`, whatever its outcome. The
    /// credentials go to this daemon's private client configuration.
    pub fn try_login(&self, host: &str, user: &str, password: &str) -> Output {
        run_unchecked_with_stdin(
            self.docker()
                .arg("login")
                .arg("-u")
                .arg(user)
                .arg("--password-stdin")
                .arg(host),
            Some(password.as_bytes()),
        )
    }

    /// `docker login`, which must succeed.
    pub fn login(&self, host: &str, user: &str, password: &str) -> Output {
        let output = self.try_login(host, user, password);
        assert!(
            output.status.success(),
            "docker login to {host} as {user} failed\n{}",
            output.report()
        );
        output
    }

    /// A scratch path inside the daemon's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    fn signal_group(pgid: u32, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(format!("-{pgid}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Stops dockerd (SIGTERM to its process group, SIGKILL after 30 s), then its
    /// containerd, which runs in a session of its own, and unmounts anything left under the
    /// temporary directory.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        Self::signal_group(pgid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        Self::signal_group(pgid, "KILL");
        let _ = child.wait();

        // dockerd starts containerd with setsid; it normally exits with dockerd, but a
        // SIGKILLed dockerd leaves it behind. Only kill it if the pid still names our own.
        let pid_file = self.temp.path().join("exec/containerd/containerd.pid");
        if let Ok(pid) = fs::read_to_string(&pid_file) {
            let pid = pid.trim().to_string();
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours =
                String::from_utf8_lossy(&cmdline).contains(&*self.temp.path().to_string_lossy());
            if !pid.is_empty() && ours {
                let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
            }
        }

        let root = self.temp.path().to_string_lossy().into_owned();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// A test CA, with openssl
// ---------------------------------------------------------------------------------------

/// Runs openssl with `args` in `dir`, which must succeed.
pub fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A test CA in `dir`: `ca.crt`, `ca.key`.
pub fn test_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=Berth test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// Writes `{name}.key` and `{name}.crt` in `dir`: an EC key and a certificate for the IP
/// address `ip` with `serial` and common name `cn`, signed by the CA in `ca.key` and
/// `ca.crt`.
pub fn server_certificate(dir: &Path, name: &str, ip: &str, serial: &str, cn: &str) {
    fs::write(
        dir.join(format!("{name}.ext")),
        format!(
            "subjectAltName = IP:{ip}\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}
