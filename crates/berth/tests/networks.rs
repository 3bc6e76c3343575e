//! Networks and endpoints, end to end with real clients against a live `berth serve`.
//!
//! Every address of 127.0.0.0/8 reaches this machine, so one host plays several networks:
//! the login server listens on 127.0.0.1 (or `::1`), private endpoints on 127.0.0.2, the
//! data endpoint on 127.0.0.3, and a client picks its own address (reqwest's
//! `local_address`, like `curl --interface 127.0.0.20`).
//!
//! - The data endpoint: once enabled, a blob `GET` on the login server answers `307` to a
//!   signed URL on the data endpoint (reached through a counting forwarder, so the test sees
//!   the bytes it serves); the URL serves without credentials, with `Range`, and refuses any
//!   altered part; skopeo, podman and docker pull through it. A data URL nobody answers at
//!   makes the pull fail (the negative control).
//! - The public switch and private endpoints: with public access off, the login server
//!   refuses everything but local management; a pre-approved private endpoint serves skopeo
//!   (and redirects to the data endpoint), a pending one refuses, and approve / reject /
//!   delete change what it does; decisions outlive a restart, and an endpoint gone from the
//!   configuration is Disconnected.
//! - IP rules: default Deny with one allowed address, clients at other addresses refused
//!   before their credentials are looked at, ranges added and removed, 250 rules at once.
//! - IPv6, dual-stack listeners (IPv4-mapped clients) and trusted proxies
//!   (`X-Forwarded-For`, `Forwarded`), management behind a local proxy included.
//! - TLS with a test CA made by openssl, on the login server, a private endpoint and the data
//!   endpoint: skopeo and podman verify the certificates (and follow the redirect to the TLS
//!   data endpoint); a new certificate renamed over the files is served without a restart, a
//!   broken one is not, and a repair after it is.
//!
//! A missing client fails the test with an install hint (`common::require`); nothing is
//! skipped.

mod authn;
mod clients;
mod common;
mod proxy;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use authn::{Manage, expect_status};
use berth_oci::time::unix_now;
use clients::{
    Containers, Dockerd, Image, OciLayout, Output, host_arch, layout_descriptor, parse_json,
    read_layout_blob, run, run_unchecked, server_certificate, sha256_digest, test_ca,
};
use proxy::{Proxy, incompressible};
use reqwest::Method;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// The admin's credentials as the containers tools take them (`user:password`).
fn admin_creds() -> String {
    format!("admin:{}", common::ADMIN_PASSWORD)
}

fn v4(text: &str) -> IpAddr {
    IpAddr::V4(text.parse::<Ipv4Addr>().expect("an IPv4 address"))
}

/// A loopback address and a port that was free on it a moment ago.
fn free_addr(ip: &str) -> SocketAddr {
    let ip = v4(ip);
    SocketAddr::new(ip, common::free_port_on(ip))
}

/// `N` distinct ports that were free on `ip` a moment ago (held together while chosen, so
/// no two are the same).
fn free_addrs<const N: usize>(ip: &str) -> [SocketAddr; N] {
    let ip = v4(ip);
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// The credential a request carries.
#[derive(Clone, Copy, Debug)]
enum Auth {
    /// No `Authorization` header.
    None,
    /// The admin's Basic credentials.
    Admin,
    /// The admin's name with a wrong password.
    WrongPassword,
}

/// A response, with the request that produced it for failure messages.
struct Reply {
    request: String,
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    fn report(&self) -> String {
        let mut body = self.text();
        if body.len() > 2000 {
            body.truncate(2000);
            body.push('…');
        }
        format!(
            "request: {}\nstatus: {}\nheaders: {:?}\nbody: {body}",
            self.request, self.status, self.headers
        )
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e})\n{}", self.report()))
    }

    #[track_caller]
    fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "unexpected status\n{}", self.report());
        self
    }

    /// A `403` in the registry's error format, code `DENIED`, whose message holds `needle`.
    #[track_caller]
    fn expect_denied(&self, needle: &str) {
        assert_eq!(self.status, 403, "expected a 403\n{}", self.report());
        let body = self.json();
        assert_eq!(body["errors"][0]["code"], "DENIED", "{}", self.report());
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "the refusal should say {needle:?}\n{}",
            self.report()
        );
    }
}

/// An HTTP client that connects from `from` (`None`: the system's choice) and never follows
/// redirects, so tests see the `307`s themselves.
fn client_from(from: Option<IpAddr>) -> Client {
    berth_server::tls::install_crypto_provider();
    let mut builder = Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ip) = from {
        builder = builder.local_address(ip);
    }
    builder.build().expect("build an HTTP client")
}

/// Sends one request and reads the whole response.
fn send(
    client: &Client,
    method: Method,
    url: &str,
    auth: Auth,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let mut request = client.request(method.clone(), url);
    request = match auth {
        Auth::None => request,
        Auth::Admin => request.basic_auth("admin", Some(common::ADMIN_PASSWORD)),
        Auth::WrongPassword => request.basic_auth("admin", Some("not-the-password")),
    };
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let description = format!("{method} {url} ({auth:?}, headers {headers:?}, body {body:?})");
    let response = request
        .send()
        .unwrap_or_else(|e| panic!("{description}: {e:?}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .unwrap_or_else(|e| panic!("{description}: reading the body: {e:?}"))
        .to_vec();
    Reply {
        request: description,
        status,
        headers,
        body,
    }
}

/// `GET url` from the client address `from`.
fn get_from(from: &str, url: &str, auth: Auth) -> Reply {
    send(
        &client_from(Some(v4(from))),
        Method::GET,
        url,
        auth,
        &[],
        None,
    )
}

/// `GET url` with extra headers, from the system's choice of address.
fn get(url: &str, auth: Auth, headers: &[(&str, &str)]) -> Reply {
    send(&client_from(None), Method::GET, url, auth, headers, None)
}

// ---------------------------------------------------------------------------------------
// Images and clients
// ---------------------------------------------------------------------------------------

/// How a containers tool reaches a registry: plain HTTP, or TLS verified with a CA in a
/// certificate directory (`ca.crt`).
#[derive(Clone, Copy)]
enum Tls<'a> {
    Plain,
    Ca(&'a Path),
}

impl Tls<'_> {
    /// The flags of `skopeo copy` for the source (`src`) or destination (`dest`) side.
    fn copy_args(self, side: &str) -> Vec<String> {
        match self {
            Tls::Plain => vec![format!("--{side}-tls-verify=false")],
            Tls::Ca(dir) => vec![format!("--{side}-cert-dir={}", dir.display())],
        }
    }

    /// The flags of `skopeo inspect` and `podman pull`.
    fn args(self) -> Vec<String> {
        match self {
            Tls::Plain => vec!["--tls-verify=false".into()],
            Tls::Ca(dir) => vec![format!("--cert-dir={}", dir.display())],
        }
    }
}

/// `skopeo copy` of `tag` of the layout to `docker://{reference}` as the admin.
fn skopeo_push(c: &Containers, tls: Tls, layout: &OciLayout, tag: &str, reference: &str) {
    run(c
        .skopeo()
        .arg("copy")
        .args(tls.copy_args("dest"))
        .arg("--dest-creds")
        .arg(admin_creds())
        .arg(layout.reference(tag))
        .arg(format!("docker://{reference}")));
}

/// `skopeo copy` of `docker://{reference}` into a new OCI layout `name`, whatever the
/// outcome; returns the output and the layout directory.
fn skopeo_pull_unchecked(
    c: &Containers,
    tls: Tls,
    reference: &str,
    name: &str,
) -> (Output, PathBuf) {
    let dir = c.work(name);
    let output = run_unchecked(
        c.skopeo()
            .arg("copy")
            .args(tls.copy_args("src"))
            .arg("--src-creds")
            .arg(admin_creds())
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:pulled", dir.display())),
    );
    (output, dir)
}

/// `skopeo copy` of `docker://{reference}` into a new OCI layout, which must succeed and
/// hold `image` (same manifest digest, every blob with the bytes pushed).
#[track_caller]
fn skopeo_pull(
    c: &Containers,
    tls: Tls,
    reference: &str,
    name: &str,
    image: &Image,
    source: &Path,
) {
    let (output, dir) = skopeo_pull_unchecked(c, tls, reference, name);
    assert!(
        output.status.success(),
        "skopeo pull of {reference} failed\n{}",
        output.report()
    );
    assert_eq!(
        layout_descriptor(&dir, "pulled")["digest"],
        image.digest().as_str(),
        "skopeo pulled another manifest from {reference}"
    );
    assert_eq!(read_layout_blob(&dir, &image.digest()), image.manifest);
    for blob in [&image.config_digest, &image.layer_digest] {
        assert_eq!(
            read_layout_blob(&dir, blob),
            read_layout_blob(source, blob),
            "blob {blob} pulled from {reference}"
        );
    }
}

/// `skopeo inspect docker://{reference}` as the admin, whatever the outcome.
fn skopeo_inspect(c: &Containers, tls: Tls, reference: &str) -> Output {
    run_unchecked(
        c.skopeo()
            .arg("inspect")
            .args(tls.args())
            .arg("--creds")
            .arg(admin_creds())
            .arg(format!("docker://{reference}")),
    )
}

/// `skopeo inspect`, which must succeed and name `image`'s manifest.
#[track_caller]
fn expect_inspect(c: &Containers, tls: Tls, reference: &str, image: &Image) {
    let out = skopeo_inspect(c, tls, reference);
    assert!(
        out.status.success(),
        "skopeo inspect of {reference} should work\n{}",
        out.report()
    );
    assert_eq!(
        parse_json(&out.stdout)["Digest"],
        image.digest().as_str(),
        "skopeo inspect of {reference} names another manifest\n{}",
        out.report()
    );
}

/// `podman pull` as the admin into the store `store`, which must succeed and give the
/// image ID `image.config_digest`.
#[track_caller]
fn podman_pull(c: &Containers, tls: Tls, store: &str, reference: &str, image: &Image) {
    let pulled = run(c
        .podman(store)
        .arg("pull")
        .args(tls.args())
        .arg("--creds")
        .arg(admin_creds())
        .arg(reference));
    let id = pulled
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    let id = if id.starts_with("sha256:") {
        id
    } else {
        format!("sha256:{id}")
    };
    assert_eq!(
        id,
        image.config_digest,
        "podman pull printed another image ID\n{}",
        pulled.report()
    );
}

// ---------------------------------------------------------------------------------------
// The data endpoint
// ---------------------------------------------------------------------------------------

/// `url` re-signed for `expires` with the key in the registry's data directory, computing
/// HMAC-SHA256 here from its definition, independently of Berth's code.
fn sign_data_url(
    berth: &common::Berth,
    url: &str,
    repository: &str,
    digest: &str,
    expires: i64,
) -> String {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = b64
        .decode(current_data_url_key(berth))
        .expect("a base64 key");
    let message = format!("berth-data-v1\n{repository}\n{digest}\n{expires}");
    let pad = |byte: u8| -> Vec<u8> {
        let mut block = [0u8; 64];
        block[..key.len()].copy_from_slice(&key);
        block.iter().map(|b| b ^ byte).collect()
    };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message.as_bytes())
        .finalize();
    let tag = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let url = with_param(url, "expires", &expires.to_string());
    with_param(&url, "signature", &b64.encode(tag))
}

/// The current data URL key of a registry, as its identity store keeps it (base64), read
/// straight from the database file.
fn current_data_url_key(berth: &common::Berth) -> String {
    let db = berth.data_dir().join("identity.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
            .await
            .expect("open the identity store");
        let bodies: Vec<(String,)> = sqlx::query_as("SELECT body FROM keys")
            .fetch_all(&pool)
            .await
            .expect("read the keys");
        bodies
            .into_iter()
            .map(|(body,)| serde_json::from_str::<Value>(&body).unwrap())
            .find(|k| k["purpose"] == "data-urls" && k["retired_at"].is_null())
            .and_then(|k| k["secret"].as_str().map(str::to_owned))
            .expect("a current data URL key")
    })
}

/// `url` with the value of query parameter `key` replaced by `value`.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').expect("a signed URL has a query");
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k == key => format!("{k}={value}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// The value of query parameter `key` of `url`.
fn param(url: &str, key: &str) -> String {
    url.split_once('?')
        .and_then(|(_, q)| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        })
        .unwrap_or_else(|| panic!("no `{key}` in {url}"))
        .to_string()
}

#[test]
fn docker_podman_skopeo_pull_through_the_data_endpoint() {
    common::require("skopeo");
    common::require("podman");
    common::require("dockerd");
    common::require("docker");
    // The data endpoint listens on 127.0.0.3; clients reach it through a forwarder on
    // another port of 127.0.0.3 (its configured URL), which counts what it serves.
    let data_listen = free_addr("127.0.0.3");
    let proxy = Proxy::start(v4("127.0.0.3"), data_listen);
    let data_url = format!("http://{}", proxy.addr);
    let berth = common::Berth::start_with(&[
        "--data-endpoint-listen",
        &data_listen.to_string(),
        "--data-endpoint-url",
        &data_url,
    ]);
    let manage = Manage::new(&berth.url);
    let c = Containers::new();

    // An image whose layer is large enough to tell a download from headers: 1.5 MiB that
    // gzip does not shrink (the layout stores it uncompressed anyway).
    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image(
        host_arch(),
        "data.bin",
        &incompressible(1536 * 1024, 0x9e37_79b9_7f4a_7c15),
        Some("v1"),
    );
    let layer = read_layout_blob(&layout.dir, &image.layer_digest);
    let repository = format!("{}/e2e/data", berth.host);
    skopeo_push(&c, Tls::Plain, &layout, "v1", &format!("{repository}:v1"));
    // The same image in another repository, so a URL moved there names a blob that exists.
    skopeo_push(
        &c,
        Tls::Plain,
        &layout,
        "v1",
        &format!("{}/e2e/other:v1", berth.host),
    );

    let endpoints = manage
        .call("GET", "/berth/v1/endpoints", None)
        .expect(200)
        .json("GET /berth/v1/endpoints");
    let data = &endpoints["data_endpoint"];
    assert_eq!(data["configured"], true, "{endpoints}");
    assert_eq!(data["enabled"], false, "off until enabled: {endpoints}");
    assert_eq!(data["url"], data_url.as_str(), "{endpoints}");
    assert_eq!(data["address"], data_listen.to_string(), "{endpoints}");
    assert_eq!(data["url_ttl_seconds"], 1500, "{endpoints}");

    // Configured but not enabled: the login server serves blobs itself.
    let blob_url = format!("{}/v2/e2e/data/blobs/{}", berth.url, image.layer_digest);
    let direct = get(&blob_url, Auth::Admin, &[]).expect(200);
    assert_eq!(direct.body, layer, "blob served by the login server");
    assert_eq!(
        proxy.returned(),
        0,
        "nothing went through the data endpoint yet"
    );

    let settings = manage.patch_registry(json!({ "data_endpoint_enabled": true }));
    assert_eq!(settings["data_endpoint_enabled"], true, "{settings}");
    let endpoints = manage
        .call("GET", "/berth/v1/endpoints", None)
        .expect(200)
        .json("GET /berth/v1/endpoints");
    assert_eq!(endpoints["data_endpoint"]["enabled"], true, "{endpoints}");

    // A blob GET answers 307 to a signed URL on the data endpoint, valid about 25 minutes.
    let before = unix_now();
    let redirect = get(&blob_url, Auth::Admin, &[]).expect(307);
    let location = redirect.header("location");
    let prefix = format!(
        "{data_url}/berth/data/v1/e2e/data/blobs/{}?",
        image.layer_digest
    );
    assert!(
        location.starts_with(&prefix),
        "the redirect should go to {prefix}…\n{}",
        redirect.report()
    );
    assert_eq!(redirect.header("docker-content-digest"), image.layer_digest);
    let expires: i64 = param(&location, "expires").parse().expect("numeric expiry");
    assert!(
        (before + 1500 - 5..=unix_now() + 1500 + 5).contains(&expires),
        "the URL should expire 25 minutes from now: expires={expires}, now={before}"
    );
    // A blob the repository does not have is a 404 now, not a URL that fails later.
    let missing = format!(
        "{}/v2/e2e/data/blobs/{}",
        berth.url,
        sha256_digest(b"not pushed")
    );
    let reply = get(&missing, Auth::Admin, &[]).expect(404);
    assert_eq!(reply.header("location"), "", "{}", reply.report());
    // Only once authorized: an anonymous caller gets a challenge, not a URL.
    let anonymous = get(&blob_url, Auth::None, &[]).expect(401);
    assert_eq!(anonymous.header("location"), "", "{}", anonymous.report());
    // HEAD and manifests are still answered by the login server.
    let head = send(
        &client_from(None),
        Method::HEAD,
        &blob_url,
        Auth::Admin,
        &[],
        None,
    )
    .expect(200);
    assert_eq!(head.header("content-length"), layer.len().to_string());
    let manifest = get(
        &format!("{}/v2/e2e/data/manifests/v1", berth.url),
        Auth::Admin,
        &[("Accept", clients::OCI_MANIFEST)],
    )
    .expect(200);
    assert_eq!(manifest.body, image.manifest);
    assert_eq!(
        proxy.returned(),
        0,
        "HEAD and manifests never touch the data endpoint"
    );

    // The signed URL serves without credentials: whole, HEAD, and a range.
    let fetched = get(&location, Auth::None, &[]).expect(200);
    assert_eq!(sha256_digest(&fetched.body), image.layer_digest);
    assert_eq!(fetched.body, layer);
    assert!(
        fetched.header("cache-control").contains("immutable"),
        "{}",
        fetched.report()
    );
    assert!(
        proxy.returned() >= layer.len() as u64,
        "the layer came through the data endpoint's URL ({} bytes)",
        proxy.returned()
    );
    // Also straight at the listener: the signature does not cover the host.
    let at_listener = location.replace(&data_url, &format!("http://{data_listen}"));
    assert_eq!(get(&at_listener, Auth::None, &[]).expect(200).body, layer);
    let head = send(
        &client_from(None),
        Method::HEAD,
        &location,
        Auth::None,
        &[],
        None,
    )
    .expect(200);
    assert_eq!(head.header("content-length"), layer.len().to_string());
    let range = get(&location, Auth::None, &[("Range", "bytes=1000-1999")]).expect(206);
    assert_eq!(range.body, &layer[1000..2000], "{}", range.report());
    let post = send(
        &client_from(None),
        Method::POST,
        &location,
        Auth::None,
        &[],
        None,
    );
    assert_eq!(post.status, 405, "{}", post.report());

    // Altered URLs are refused, each with a message saying why.
    let signature = param(&location, "signature");
    let mut flipped = signature.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let tampered = [
        (
            "signature changed",
            with_param(&location, "signature", &String::from_utf8(flipped).unwrap()),
            "does not match",
        ),
        (
            "expiry pushed back",
            with_param(&location, "expires", &(expires + 3600).to_string()),
            "does not match",
        ),
        (
            "another digest",
            location.replace(
                &format!("/blobs/{}", image.layer_digest),
                &format!("/blobs/{}", image.config_digest),
            ),
            "does not match",
        ),
        (
            "another repository",
            location.replace("/v1/e2e/data/blobs/", "/v1/e2e/other/blobs/"),
            "does not match",
        ),
        (
            "no signature",
            location.split("&signature=").next().unwrap().to_string(),
            "no signature",
        ),
        (
            "malformed signature",
            with_param(&location, "signature", "%21%21"),
            "malformed",
        ),
        (
            "expired, though signed with the registry's own key",
            sign_data_url(
                &berth,
                &location,
                "e2e/data",
                &image.layer_digest,
                unix_now() - 1,
            ),
            "expired",
        ),
    ];
    for (what, url, why) in &tampered {
        assert_ne!(url, &location, "{what}: the URL must differ");
        let refused = get(url, Auth::None, &[]);
        refused.expect_denied(why);
        assert!(
            refused.text().contains("fresh URL"),
            "{what}: the refusal should say how to recover\n{}",
            refused.report()
        );
        // Not even with credentials: the data endpoint knows only signatures.
        get(url, Auth::Admin, &[]).expect_denied(why);
    }

    // Nothing but signed URLs: the registry API and the management API are not there.
    for path in [
        "/v2/".to_string(),
        format!("/v2/e2e/data/blobs/{}", image.layer_digest),
        "/v2/e2e/data/manifests/v1".to_string(),
        "/berth/v1/registry".to_string(),
        "/oauth2/token".to_string(),
    ] {
        let reply = get(&format!("{data_url}{path}"), Auth::Admin, &[]).expect(404);
        assert!(reply.text().contains("data endpoint"), "{}", reply.report());
    }

    // skopeo, podman and docker follow the redirect; each download goes through the data
    // endpoint (the login server only answers 307 to blob GETs now).
    let served = proxy.returned();
    skopeo_pull(
        &c,
        Tls::Plain,
        &format!("{repository}:v1"),
        "skopeo",
        &image,
        &layout.dir,
    );
    let by_skopeo = proxy.returned() - served;
    assert!(
        by_skopeo >= layer.len() as u64,
        "skopeo should have downloaded the layer from the data endpoint ({by_skopeo} bytes)"
    );

    let served = proxy.returned();
    podman_pull(
        &c,
        Tls::Plain,
        "podman",
        &format!("{repository}:v1"),
        &image,
    );
    let by_podman = proxy.returned() - served;
    assert!(
        by_podman >= layer.len() as u64,
        "podman should have downloaded the layer from the data endpoint ({by_podman} bytes)"
    );

    let dockerd = Dockerd::start();
    dockerd.login(&berth.host, "admin", common::ADMIN_PASSWORD);
    let served = proxy.returned();
    run(dockerd.docker().arg("pull").arg(format!("{repository}:v1")));
    let by_docker = proxy.returned() - served;
    assert!(
        by_docker >= layer.len() as u64,
        "docker should have downloaded the layer from the data endpoint ({by_docker} bytes)"
    );
    let id = run(dockerd
        .docker()
        .arg("image")
        .arg("inspect")
        .arg("--format")
        .arg("{{.Id}}")
        .arg(format!("{repository}:v1")));
    assert_eq!(id.stdout.trim(), image.config_digest, "docker's image ID");

    // Switched off again, the login server serves the bytes itself.
    manage.patch_registry(json!({ "data_endpoint_enabled": false }));
    assert_eq!(get(&blob_url, Auth::Admin, &[]).expect(200).body, layer);
}

#[test]
fn a_data_url_nobody_answers_at_fails_the_pull() {
    // The negative control of the test above: when the configured data URL leads nowhere,
    // skopeo's pull fails naming it, so a pull that succeeds did go through the data URL.
    common::require("skopeo");
    let [listen, nowhere] = free_addrs::<2>("127.0.0.3");
    let data_url = format!("http://{nowhere}");
    let berth = common::Berth::start_with(&[
        "--data-endpoint-listen",
        &listen.to_string(),
        "--data-endpoint-url",
        &data_url,
    ]);
    let c = Containers::new();
    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image(host_arch(), "hello", b"nowhere\n", Some("v1"));
    let reference = format!("{}/e2e/nowhere:v1", berth.host);
    skopeo_push(&c, Tls::Plain, &layout, "v1", &reference);
    // Off: pulls work.
    skopeo_pull(&c, Tls::Plain, &reference, "before", &image, &layout.dir);
    Manage::new(&berth.url).patch_registry(json!({ "data_endpoint_enabled": true }));
    let (output, _) = skopeo_pull_unchecked(&c, Tls::Plain, &reference, "after");
    assert!(
        !output.status.success(),
        "the pull should fail: its blobs are at a URL nobody answers at\n{}",
        output.report()
    );
    assert!(
        output.combined().contains(&nowhere.to_string()),
        "skopeo should name the data URL it could not reach\n{}",
        output.report()
    );
}

// ---------------------------------------------------------------------------------------
// The public switch and private endpoints
// ---------------------------------------------------------------------------------------

#[test]
fn public_access_off_serves_only_approved_private_endpoints() {
    common::require("skopeo");
    let c = Containers::new();
    let [factory, office] = free_addrs::<2>("127.0.0.2");
    let data = free_addr("127.0.0.3");
    // One endpoint pre-approved in the configuration file, one from a flag (Pending), and a
    // data endpoint whose URL comes from its address.
    let config = c.dir().join("berth.toml");
    fs::write(
        &config,
        format!(
            "[[private_endpoints]]\nname = \"factory\"\nlisten = \"{factory}\"\napproved = true\ndescription = \"factory floor network\"\n\n[data_endpoint]\nlisten = \"{data}\"\n"
        ),
    )
    .unwrap();
    // A data directory that outlives the first process: the registry is started again below.
    let data_dir = c.dir().join("data");
    let mut berth = common::Berth::with_data_dir(
        &data_dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "--private-endpoint",
            &format!("office={office}"),
        ],
    );
    let manage = Manage::new(&berth.url);
    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image(host_arch(), "hello", b"hello, private\n", Some("v1"));
    let public_ref = format!("{}/e2e/private:v1", berth.host);
    let factory_ref = format!("{factory}/e2e/private:v1");
    let office_ref = format!("{office}/e2e/private:v1");
    skopeo_push(&c, Tls::Plain, &layout, "v1", &public_ref);

    let connections = manage
        .call("GET", "/berth/v1/private-endpoint-connections", None)
        .expect(200)
        .json("GET /berth/v1/private-endpoint-connections");
    let list = connections.as_array().expect("a list of connections");
    assert_eq!(list.len(), 2, "{connections}");
    assert_eq!(list[0]["name"], "factory", "{connections}");
    assert_eq!(list[0]["state"], "Approved", "{connections}");
    assert_eq!(list[0]["configured"], true, "{connections}");
    assert_eq!(list[0]["address"], factory.to_string(), "{connections}");
    assert_eq!(list[0]["url"], format!("http://{factory}"), "{connections}");
    assert_eq!(
        list[0]["description"], "factory floor network",
        "{connections}"
    );
    assert_eq!(list[1]["name"], "office", "{connections}");
    assert_eq!(list[1]["state"], "Pending", "{connections}");
    let endpoints = manage
        .call("GET", "/berth/v1/endpoints", None)
        .expect(200)
        .json("GET /berth/v1/endpoints");
    assert_eq!(
        endpoints["private_endpoints"].as_array().map(Vec::len),
        Some(2),
        "{endpoints}"
    );
    assert_eq!(
        endpoints["data_endpoint"]["url"],
        format!("http://{data}"),
        "{endpoints}"
    );

    // Public access off, from this machine: the management API still answers here.
    let settings = manage.patch_registry(json!({ "public_network_enabled": false }));
    assert_eq!(settings["public_network_enabled"], false, "{settings}");
    let endpoints = manage
        .call("GET", "/berth/v1/endpoints", None)
        .expect(200)
        .json("GET /berth/v1/endpoints");
    assert_eq!(
        endpoints["login_server"]["public_network_enabled"], false,
        "{endpoints}"
    );
    // …still only to the admin.
    let registry_url = format!("{}/berth/v1/registry", berth.url);
    get(&registry_url, Auth::None, &[]).expect(401);
    get(&registry_url, Auth::WrongPassword, &[]).expect(401);

    // Everything else on the login server is refused, whatever the credentials.
    for (path, auth) in [
        ("/v2/", Auth::Admin),
        ("/v2/", Auth::WrongPassword),
        ("/v2/", Auth::None),
        ("/v2/e2e/private/manifests/v1", Auth::Admin),
        (
            "/oauth2/token?service=registry&scope=repository:e2e/private:pull",
            Auth::Admin,
        ),
    ] {
        get(&format!("{}{path}", berth.url), auth, &[]).expect_denied("public_network_enabled");
    }
    get_from("127.0.0.9", &format!("{}/v2/", berth.url), Auth::Admin)
        .expect_denied("public_network_enabled");
    let out = skopeo_inspect(&c, Tls::Plain, &public_ref);
    assert!(
        !out.status.success() && out.combined().contains("403"),
        "skopeo through the login server should be refused\n{}",
        out.report()
    );

    // The approved endpoint serves skopeo, its token endpoint included (the challenge names
    // the endpoint's own address).
    let challenge = get(&format!("http://{factory}/v2/"), Auth::None, &[]).expect(401);
    assert!(
        challenge
            .header("www-authenticate")
            .contains(&format!("realm=\"http://{factory}/oauth2/token\"")),
        "{}",
        challenge.report()
    );
    let token = get(
        &format!(
            "http://{factory}/oauth2/token?service={factory}&scope=repository:e2e/private:pull"
        ),
        Auth::Admin,
        &[],
    )
    .expect(200)
    .json();
    assert!(token["token"].is_string(), "{token}");
    skopeo_pull(&c, Tls::Plain, &factory_ref, "factory", &image, &layout.dir);

    // The pending one refuses, naming its state, credentials or not.
    let office_v2 = format!("http://{office}/v2/");
    get(&office_v2, Auth::Admin, &[]).expect_denied("private endpoint `office` is Pending");
    get(&office_v2, Auth::None, &[]).expect_denied("is Pending");
    let out = skopeo_inspect(&c, Tls::Plain, &office_ref);
    assert!(
        !out.status.success(),
        "skopeo through a pending endpoint should be refused\n{}",
        out.report()
    );
    // skopeo prints the status of its ping, not the body that says why.
    assert!(
        out.combined().contains("403"),
        "skopeo should show the refusal\n{}",
        out.report()
    );

    // Approved, it serves.
    let approved =
        manage.decide_private_endpoint("office", "approve", Some("approved by the network team"));
    assert_eq!(approved["state"], "Approved", "{approved}");
    assert_eq!(
        approved["description"], "approved by the network team",
        "{approved}"
    );
    expect_inspect(&c, Tls::Plain, &office_ref, &image);

    // IP rules do not apply to private endpoints: default Deny with no rule holding this
    // machine leaves them serving (and the public switch still wins on the login server).
    manage.patch_registry(json!({ "default_action": "Deny" }));
    manage.add_network_rule("10.0.0.0/8");
    get(&format!("http://{factory}/v2/"), Auth::Admin, &[]).expect(200);
    get_from("127.0.0.9", &office_v2, Auth::Admin).expect(200);
    get(&format!("{}/v2/", berth.url), Auth::Admin, &[]).expect_denied("public_network_enabled");

    // Rejected, it refuses.
    let rejected = manage.decide_private_endpoint("office", "reject", None);
    assert_eq!(rejected["state"], "Rejected", "{rejected}");
    assert_eq!(
        rejected["description"], "approved by the network team",
        "a decision without a description keeps the last one: {rejected}"
    );
    get(&office_v2, Auth::Admin, &[]).expect_denied("private endpoint `office` is Rejected");
    let out = skopeo_inspect(&c, Tls::Plain, &office_ref);
    assert!(
        !out.status.success() && out.combined().contains("403"),
        "skopeo through a rejected endpoint should be refused\n{}",
        out.report()
    );

    // Deleted, it is Disconnected and refuses until approved again.
    manage
        .call(
            "DELETE",
            "/berth/v1/private-endpoint-connections/office",
            None,
        )
        .expect(204);
    assert_eq!(manage.private_endpoint("office")["state"], "Disconnected");
    get(&office_v2, Auth::Admin, &[]).expect_denied("private endpoint `office` is Disconnected");
    manage.decide_private_endpoint("office", "approve", None);
    get(&office_v2, Auth::Admin, &[]).expect(200);
    // The factory was never touched.
    assert_eq!(manage.private_endpoint("factory")["state"], "Approved");
    get(&format!("http://{factory}/v2/"), Auth::Admin, &[]).expect(200);

    // With the data endpoint on, a private endpoint's blob GETs redirect there too, and it
    // serves the signed URL although public access is off.
    manage.patch_registry(json!({ "data_endpoint_enabled": true }));
    let blob = format!(
        "http://{factory}/v2/e2e/private/blobs/{}",
        image.layer_digest
    );
    let redirect = get(&blob, Auth::Admin, &[]).expect(307);
    let location = redirect.header("location");
    assert!(
        location.starts_with(&format!(
            "http://{data}/berth/data/v1/e2e/private/blobs/{}?",
            image.layer_digest
        )),
        "{}",
        redirect.report()
    );
    assert_eq!(
        get(&location, Auth::None, &[]).expect(200).body,
        read_layout_blob(&layout.dir, &image.layer_digest)
    );
    skopeo_pull(
        &c,
        Tls::Plain,
        &factory_ref,
        "via-data",
        &image,
        &layout.dir,
    );

    // An endpoint this registry does not have.
    manage
        .call(
            "POST",
            "/berth/v1/private-endpoint-connections/nowhere/approve",
            None,
        )
        .expect(404);

    // Public access back on (and every client allowed again): the login server serves.
    let settings = manage.patch_registry(json!({
        "public_network_enabled": true,
        "default_action": "Allow",
    }));
    assert_eq!(settings["public_network_enabled"], true, "{settings}");
    assert_eq!(settings["default_action"], "Allow", "{settings}");
    get(&format!("{}/v2/", berth.url), Auth::Admin, &[]).expect(200);
    get(&format!("{}/v2/", berth.url), Auth::None, &[]).expect(401);
    expect_inspect(&c, Tls::Plain, &public_ref, &image);

    // The owner rejects the factory, and the registry starts again without the office's
    // listener. Decisions stand over the configuration's `approved = true`; a connection
    // without a listener is Disconnected and cannot be approved, only deleted.
    manage.decide_private_endpoint("factory", "reject", Some("decommissioned"));
    berth.kill();
    let berth = common::Berth::with_data_dir(&data_dir, &["--config", config.to_str().unwrap()]);
    let manage = Manage::new(&berth.url);
    let factory_state = manage.private_endpoint("factory");
    assert_eq!(factory_state["state"], "Rejected", "{factory_state}");
    assert_eq!(
        factory_state["description"], "decommissioned",
        "{factory_state}"
    );
    get(&format!("http://{factory}/v2/"), Auth::Admin, &[])
        .expect_denied("private endpoint `factory` is Rejected");
    let office_state = manage.private_endpoint("office");
    assert_eq!(office_state["state"], "Disconnected", "{office_state}");
    assert_eq!(office_state["configured"], false, "{office_state}");
    assert_eq!(office_state["address"], Value::Null, "{office_state}");
    let conflict = manage
        .call(
            "POST",
            "/berth/v1/private-endpoint-connections/office/approve",
            None,
        )
        .expect(409);
    assert!(conflict.text().contains("no listener"), "{}", conflict);
    manage
        .call(
            "DELETE",
            "/berth/v1/private-endpoint-connections/office",
            None,
        )
        .expect(204);
    manage
        .call("GET", "/berth/v1/private-endpoint-connections/office", None)
        .expect(404);
    let settings = manage
        .call("GET", "/berth/v1/registry", None)
        .expect(200)
        .json("GET /berth/v1/registry");
    assert_eq!(settings["public_network_enabled"], true, "{settings}");
    assert_eq!(settings["data_endpoint_enabled"], true, "{settings}");
    manage.decide_private_endpoint("factory", "approve", None);
    skopeo_pull(
        &c,
        Tls::Plain,
        &factory_ref,
        "restarted",
        &image,
        &layout.dir,
    );
}

// ---------------------------------------------------------------------------------------
// IP rules
// ---------------------------------------------------------------------------------------

/// The rules as `GET /berth/v1/network-rules` lists them.
fn rules(manage: &Manage) -> Vec<String> {
    let listing = manage
        .call("GET", "/berth/v1/network-rules", None)
        .expect(200)
        .json("GET /berth/v1/network-rules");
    listing["ip_rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no ip_rules: {listing}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn ip_rules_deny_by_default_with_one_allowed_range() {
    common::require("skopeo");
    let berth = common::Berth::start();
    let manage = Manage::new(&berth.url);
    let c = Containers::new();
    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image(host_arch(), "hello", b"hello, rules\n", Some("v1"));
    let reference = format!("{}/e2e/rules:v1", berth.host);
    skopeo_push(&c, Tls::Plain, &layout, "v1", &reference);
    let v2 = format!("{}/v2/", berth.url);
    let manifest = format!("{}/v2/e2e/rules/manifests/v1", berth.url);
    let token = format!(
        "{}/oauth2/token?service={}&scope=repository:e2e/rules:pull",
        berth.url, berth.host
    );

    // Settings that cannot be: no data endpoint to enable, an unknown default action.
    let conflict = manage
        .call(
            "PATCH",
            "/berth/v1/registry",
            Some(json!({ "data_endpoint_enabled": true })),
        )
        .expect(409);
    assert!(conflict.text().contains("no data endpoint"), "{}", conflict);
    manage
        .call(
            "PATCH",
            "/berth/v1/registry",
            Some(json!({ "default_action": "Maybe" })),
        )
        .expect(400);

    // Default Deny, and one rule: this machine's usual address (skopeo connects from it).
    let listing = manage.add_network_rule("127.0.0.1");
    assert_eq!(listing["ip_rules"], json!(["127.0.0.1/32"]), "{listing}");
    let settings = manage.patch_registry(json!({ "default_action": "Deny" }));
    assert_eq!(settings["default_action"], "Deny", "{settings}");
    skopeo_pull(&c, Tls::Plain, &reference, "allowed", &image, &layout.dir);
    get_from("127.0.0.1", &v2, Auth::Admin).expect(200);

    // Another address is refused before its credentials are looked at: right, wrong or none,
    // the registry API and the token endpoint alike.
    let refused = "client address 127.0.0.20 is not allowed by this registry's network rules";
    for auth in [Auth::Admin, Auth::WrongPassword, Auth::None] {
        get_from("127.0.0.20", &v2, auth).expect_denied(refused);
    }
    get_from("127.0.0.20", &manifest, Auth::Admin).expect_denied(refused);
    get_from("127.0.0.20", &token, Auth::Admin).expect_denied(refused);

    // A range holding it: served like anyone (a challenge, then content).
    let listing = manage.add_network_rule("127.0.0.16/28");
    assert_eq!(
        listing["ip_rules"],
        json!(["127.0.0.1/32", "127.0.0.16/28"]),
        "{listing}"
    );
    get_from("127.0.0.20", &v2, Auth::None).expect(401);
    get_from("127.0.0.20", &v2, Auth::WrongPassword).expect(401);
    get_from("127.0.0.20", &v2, Auth::Admin).expect(200);
    get_from("127.0.0.20", &token, Auth::Admin).expect(200);
    let got = get_from("127.0.0.31", &manifest, Auth::Admin).expect(200);
    assert_eq!(got.body, image.manifest);
    // The range's edges.
    get_from("127.0.0.15", &v2, Auth::Admin).expect_denied("client address 127.0.0.15 ");
    get_from("127.0.0.32", &v2, Auth::Admin).expect_denied("client address 127.0.0.32 ");

    // A range with host bits set is refused, naming the range meant.
    let bad = manage
        .call(
            "POST",
            "/berth/v1/network-rules",
            Some(json!({ "ip_address": "127.0.0.17/28" })),
        )
        .expect(400);
    assert!(
        bad.text().contains("host bits") && bad.text().contains("127.0.0.16/28"),
        "{}",
        bad
    );

    // Removed, the address is refused again; removing it twice is an error.
    expect_status(
        &manage.remove_network_rule("127.0.0.16/28"),
        200,
        "removing the IP rule 127.0.0.16/28",
    );
    get_from("127.0.0.20", &v2, Auth::Admin).expect_denied(refused);
    expect_status(
        &manage.remove_network_rule("127.0.0.16/28"),
        404,
        "removing the IP rule 127.0.0.16/28",
    );

    // 250 more rules, each one address: matching still picks exactly the allowed ones.
    let started = Instant::now();
    for i in 0..250 {
        manage.add_network_rule(&format!("10.{}.{}.7", i / 16, i % 16 * 16));
    }
    let added = started.elapsed();
    manage.add_network_rule("127.0.0.20");
    let listed = rules(&manage);
    assert_eq!(listed.len(), 252, "{listed:?}");
    assert!(listed.contains(&"10.15.144.7/32".to_string()), "{listed:?}");
    assert!(listed.contains(&"127.0.0.20/32".to_string()), "{listed:?}");
    let endpoints = manage
        .call("GET", "/berth/v1/endpoints", None)
        .expect(200)
        .json("GET /berth/v1/endpoints");
    assert_eq!(endpoints["login_server"]["ip_rules"], 252, "{endpoints}");
    assert_eq!(
        endpoints["login_server"]["default_action"], "Deny",
        "{endpoints}"
    );
    get_from("127.0.0.20", &v2, Auth::Admin).expect(200);
    get_from("127.0.0.20", &v2, Auth::WrongPassword).expect(401);
    for other in ["127.0.0.19", "127.0.0.21", "127.0.0.7", "127.0.1.1"] {
        get_from(other, &v2, Auth::Admin).expect_denied(&format!("client address {other} "));
    }
    expect_inspect(&c, Tls::Plain, &reference, &image);
    eprintln!("250 IP rules added in {added:?}");

    // Back to Allow: rules are kept but no longer consulted.
    manage.patch_registry(json!({ "default_action": "Allow" }));
    get_from("127.0.0.21", &v2, Auth::Admin).expect(200);
    assert_eq!(rules(&manage).len(), 252);
}

#[test]
fn ip_rules_on_ipv6() {
    // A login server on ::1: rules for IPv6 addresses.
    let berth = common::Berth::start_on(IpAddr::V6(Ipv6Addr::LOCALHOST), &[]);
    assert!(berth.url.starts_with("http://[::1]:"), "{}", berth.url);
    let manage = Manage::new(&berth.url);
    let v2 = format!("{}/v2/", berth.url);
    // The management API answers callers on ::1 whatever the rules.
    manage.patch_registry(json!({ "default_action": "Deny" }));
    get(&v2, Auth::Admin, &[]).expect_denied("client address ::1 is not allowed");
    get(&v2, Auth::WrongPassword, &[]).expect_denied("client address ::1 is not allowed");
    let listing = manage.add_network_rule("::1");
    assert_eq!(listing["ip_rules"], json!(["::1/128"]), "{listing}");
    get(&v2, Auth::None, &[]).expect(401);
    get(&v2, Auth::Admin, &[]).expect(200);
    expect_status(
        &manage.remove_network_rule("::1"),
        200,
        "removing the IP rule ::1",
    );
    get(&v2, Auth::None, &[]).expect_denied("client address ::1 is not allowed");
    manage.add_network_rule("::/0");
    get(&v2, Auth::None, &[]).expect(401);
    drop(berth);

    // A dual-stack listener ([::]): IPv4 clients arrive as IPv4-mapped addresses, and IPv4
    // rules hold them.
    let berth = common::Berth::start_on(IpAddr::V6(Ipv6Addr::UNSPECIFIED), &[]);
    let manage = Manage::new(&berth.url);
    let v4_url = format!("http://127.0.0.1:{}/v2/", berth.addr.port());
    let v6_url = format!("http://[::1]:{}/v2/", berth.addr.port());
    manage.patch_registry(json!({ "default_action": "Deny" }));
    manage.add_network_rule("127.0.0.1");
    get_from("127.0.0.1", &v4_url, Auth::None).expect(401);
    get_from("127.0.0.1", &v4_url, Auth::Admin).expect(200);
    // Refusals name the IPv4 address, not its mapped form.
    get_from("127.0.0.5", &v4_url, Auth::Admin)
        .expect_denied("client address 127.0.0.5 is not allowed");
    get(&v6_url, Auth::Admin, &[]).expect_denied("client address ::1 is not allowed");
    // A mapped loopback caller is local: management still answers it.
    let rules_url = format!(
        "http://127.0.0.1:{}/berth/v1/network-rules",
        berth.addr.port()
    );
    get_from("127.0.0.5", &rules_url, Auth::Admin).expect(200);
    drop(berth);

    // Trusted proxies: the client address comes from the forwarding headers of a proxy at
    // 127.0.0.1, and from nowhere else.
    let berth = common::Berth::start_with(&["--trusted-proxies", "127.0.0.1"]);
    let manage = Manage::new(&berth.url);
    let v2 = format!("{}/v2/", berth.url);
    manage.patch_registry(json!({ "default_action": "Deny" }));
    manage.add_network_rule("2001:db8::/32");
    let from_proxy = |headers: &[(&str, &str)], auth: Auth| {
        send(
            &client_from(Some(v4("127.0.0.1"))),
            Method::GET,
            &v2,
            auth,
            headers,
            None,
        )
    };
    from_proxy(&[("X-Forwarded-For", "2001:db8::5")], Auth::None).expect(401);
    from_proxy(&[("X-Forwarded-For", "2001:db8::5")], Auth::Admin).expect(200);
    from_proxy(&[("X-Forwarded-For", "2001:db9::5")], Auth::Admin)
        .expect_denied("client address 2001:db9::5 is not allowed");
    from_proxy(&[("X-Forwarded-For", "2001:db9::5")], Auth::WrongPassword)
        .expect_denied("client address 2001:db9::5 is not allowed");
    // RFC 7239, with a port.
    from_proxy(
        &[("Forwarded", "for=\"[2001:db8::7]:4711\";proto=http")],
        Auth::None,
    )
    .expect(401);
    // A client cannot put an allowed address in front of its own: the proxy appends the real
    // one, and the nearest untrusted hop is the client.
    from_proxy(
        &[("X-Forwarded-For", "2001:db8::5, 2001:db9::5")],
        Auth::Admin,
    )
    .expect_denied("client address 2001:db9::5 is not allowed");
    // Trusted hops are skipped on the way back.
    from_proxy(&[("X-Forwarded-For", "2001:db8::5, 127.0.0.1")], Auth::None).expect(401);
    // Without a header the proxy itself is the client, and it is not allowed.
    from_proxy(&[], Auth::Admin).expect_denied("client address 127.0.0.1 is not allowed");
    // Behind a proxy on this machine, a remote client is not local: the management API is
    // refused to it like the rest, and answers the proxy's own (local) requests.
    let registry_url = format!("{}/berth/v1/registry", berth.url);
    let through_proxy = |forwarded_for: Option<&str>| {
        let headers: Vec<(&str, &str)> = forwarded_for
            .map(|f| vec![("X-Forwarded-For", f)])
            .unwrap_or_default();
        send(
            &client_from(Some(v4("127.0.0.1"))),
            Method::GET,
            &registry_url,
            Auth::Admin,
            &headers,
            None,
        )
    };
    through_proxy(Some("2001:db9::5")).expect_denied("client address 2001:db9::5 is not allowed");
    through_proxy(None).expect(200);
    manage.patch_registry(json!({ "public_network_enabled": false }));
    through_proxy(Some("2001:db8::5")).expect_denied("public_network_enabled");
    through_proxy(Some("::1")).expect(200);
    through_proxy(None).expect(200);
    manage.patch_registry(json!({ "public_network_enabled": true }));

    // An untrusted peer's header is ignored.
    send(
        &client_from(Some(v4("127.0.0.7"))),
        Method::GET,
        &v2,
        Auth::Admin,
        &[("X-Forwarded-For", "2001:db8::5")],
        None,
    )
    .expect_denied("client address 127.0.0.7 is not allowed");
}

// ---------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------

/// The serial number (`serial=…`) and subject of the certificate `addr` serves now.
fn served_certificate(addr: SocketAddr) -> String {
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "openssl s_client -connect {addr} -noservername </dev/null 2>/dev/null \
         | openssl x509 -noout -serial -subject"
    )));
    out.stdout.trim().to_string()
}

/// Polls what `addr` serves until it is `expected` (at most 10 s); returns how long it took.
#[track_caller]
fn wait_for_certificate(addr: SocketAddr, expected: &str) -> Duration {
    let started = Instant::now();
    loop {
        let served = served_certificate(addr);
        if served == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still serving {served:?} after 10 s, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn tls_with_a_test_ca_and_certificate_reload() {
    common::require("skopeo");
    common::require("podman");
    common::require("openssl");
    let c = Containers::new();
    let pki = c.dir().join("pki");
    fs::create_dir_all(&pki).unwrap();
    test_ca(&pki);
    server_certificate(&pki, "server", "127.0.0.1", "0x1001", "berth-one");
    // What the clients trust: the CA only.
    let certs = c.dir().join("certs");
    fs::create_dir_all(&certs).unwrap();
    fs::copy(pki.join("ca.crt"), certs.join("ca.crt")).unwrap();
    // A private endpoint (pre-approved) and a data endpoint, each with its own certificate
    // from the same CA, configured in a file.
    server_certificate(&pki, "private", "127.0.0.2", "0x1002", "berth-private");
    server_certificate(&pki, "data", "127.0.0.3", "0x1003", "berth-data");
    let private = free_addr("127.0.0.2");
    let data = free_addr("127.0.0.3");
    let config = c.dir().join("berth.toml");
    let pem = |name: &str| pki.join(name).display().to_string();
    fs::write(
        &config,
        format!(
            "[[private_endpoints]]\nname = \"secure\"\nlisten = \"{private}\"\napproved = true\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\n[data_endpoint]\nlisten = \"{data}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            pem("private.crt"),
            pem("private.key"),
            pem("data.crt"),
            pem("data.key"),
        ),
    )
    .unwrap();
    let cert = pki.join("server.crt");
    let key = pki.join("server.key");
    let berth = common::Berth::start_with(&[
        "--config",
        config.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let tls = Tls::Ca(&certs);
    assert_eq!(
        served_certificate(berth.addr),
        "serial=1001\nsubject=CN = berth-one"
    );

    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image(host_arch(), "hello", b"hello over TLS\n", Some("v1"));
    let reference = format!("{}/e2e/tls:v1", berth.host);
    skopeo_push(&c, tls, &layout, "v1", &reference);
    skopeo_pull(&c, tls, &reference, "first", &image, &layout.dir);
    podman_pull(&c, tls, "podman", &reference, &image);

    // Verification is on: without the CA, the certificate is refused.
    let out = skopeo_inspect(&c, Tls::Ca(&c.dir().join("tmp")), &reference);
    assert!(
        !out.status.success() && out.combined().contains("x509"),
        "without the CA, skopeo should refuse the certificate\n{}",
        out.report()
    );
    // And the listener speaks only TLS.
    let plain = client_from(None)
        .get(format!("http://{}/v2/", berth.addr))
        .send();
    assert!(
        plain.as_ref().map_or(true, |r| r.status().as_u16() >= 400),
        "plain HTTP on the TLS listener: {plain:?}"
    );
    // The management API over TLS, with the CA.
    let ca = reqwest::Certificate::from_pem(&fs::read(pki.join("ca.crt")).unwrap()).unwrap();
    berth_server::tls::install_crypto_provider();
    let https = Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([ca])
        .build()
        .expect("an HTTPS client trusting the test CA");
    let endpoints = send(
        &https,
        Method::GET,
        &format!("https://{}/berth/v1/endpoints", berth.addr),
        Auth::Admin,
        &[],
        None,
    )
    .expect(200)
    .json();
    assert_eq!(endpoints["login_server"]["tls"], true, "{endpoints}");
    assert_eq!(
        endpoints["login_server"]["url"],
        format!("https://{}", berth.addr),
        "{endpoints}"
    );
    assert_eq!(
        endpoints["private_endpoints"][0]["url"],
        format!("https://{private}"),
        "{endpoints}"
    );
    assert_eq!(
        endpoints["data_endpoint"]["url"],
        format!("https://{data}"),
        "the data URL follows from a TLS listener: {endpoints}"
    );
    assert_eq!(
        served_certificate(private),
        "serial=1002\nsubject=CN = berth-private"
    );

    // The private endpoint over TLS.
    skopeo_pull(
        &c,
        tls,
        &format!("{private}/e2e/tls:v1"),
        "private",
        &image,
        &layout.dir,
    );

    // The data endpoint over TLS: the redirect goes to https, and skopeo and podman follow it
    // trusting the same CA.
    send(
        &https,
        Method::PATCH,
        &format!("https://{}/berth/v1/registry", berth.addr),
        Auth::Admin,
        &[],
        Some(&json!({ "data_endpoint_enabled": true })),
    )
    .expect(200);
    let redirect = send(
        &https,
        Method::GET,
        &format!(
            "https://{}/v2/e2e/tls/blobs/{}",
            berth.addr, image.layer_digest
        ),
        Auth::Admin,
        &[],
        None,
    )
    .expect(307);
    let location = redirect.header("location");
    assert!(
        location.starts_with(&format!("https://{data}/berth/data/v1/e2e/tls/blobs/")),
        "{}",
        redirect.report()
    );
    let fetched = send(&https, Method::GET, &location, Auth::None, &[], None).expect(200);
    assert_eq!(
        fetched.body,
        read_layout_blob(&layout.dir, &image.layer_digest)
    );
    assert_eq!(
        served_certificate(data),
        "serial=1003\nsubject=CN = berth-data"
    );
    skopeo_pull(&c, tls, &reference, "via-data", &image, &layout.dir);
    podman_pull(&c, tls, "podman-data", &reference, &image);

    // A new certificate and key (other serial, other subject, same CA), written aside and
    // renamed over the served files: served without a restart.
    let pid = berth.pid();
    server_certificate(&pki, "next", "127.0.0.1", "0x2002", "berth-two");
    fs::rename(pki.join("next.key"), &key).unwrap();
    fs::rename(pki.join("next.crt"), &cert).unwrap();
    let took = wait_for_certificate(berth.addr, "serial=2002\nsubject=CN = berth-two");
    eprintln!("renamed certificate served after {took:?}");
    assert_eq!(berth.pid(), pid, "no restart");
    skopeo_pull(&c, tls, &reference, "after-reload", &image, &layout.dir);

    // A broken replacement is not taken: the last good certificate stays in service.
    let broken = pki.join("broken.crt");
    fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fs::rename(&broken, &cert).unwrap();
    // Two polls (every 2 s) see the change and try it.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        served_certificate(berth.addr),
        "serial=2002\nsubject=CN = berth-two"
    );
    expect_inspect(&c, tls, &reference, &image);

    // Mended in place (key, then certificate, rewritten one after the other): the reloader
    // still watches after a failure and takes it.
    server_certificate(&pki, "third", "127.0.0.1", "0x3003", "berth-three");
    fs::write(&key, fs::read(pki.join("third.key")).unwrap()).unwrap();
    fs::write(&cert, fs::read(pki.join("third.crt")).unwrap()).unwrap();
    let took = wait_for_certificate(berth.addr, "serial=3003\nsubject=CN = berth-three");
    eprintln!("rewritten certificate served after {took:?}");
    skopeo_pull(&c, tls, &reference, "after-repair", &image, &layout.dir);
    assert_eq!(berth.pid(), pid, "no restart");
}

/// A connected registry reaches a parent that serves TLS with a certificate from a private
/// CA, trusting that CA by `--parent-ca-cert`, and content flows down.
#[test]
fn a_connected_registry_syncs_from_a_tls_parent_with_a_private_ca() {
    common::require("skopeo");
    common::require("openssl");
    let c = Containers::new();
    let pki = c.dir().join("pki");
    fs::create_dir_all(&pki).unwrap();
    test_ca(&pki);
    server_certificate(&pki, "root", "127.0.0.1", "0x2001", "berth-root");
    let certs = c.dir().join("certs");
    fs::create_dir_all(&certs).unwrap();
    fs::copy(pki.join("ca.crt"), certs.join("ca.crt")).unwrap();
    let (cert, key) = (pki.join("root.crt"), pki.join("root.key"));
    let root = common::Berth::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);

    // The connected registry, managed over TLS.
    let ca = reqwest::Certificate::from_pem(&fs::read(pki.join("ca.crt")).unwrap()).unwrap();
    berth_server::tls::install_crypto_provider();
    let https = Client::builder()
        .timeout(Duration::from_secs(30))
        .tls_certs_only([ca])
        .build()
        .expect("an HTTPS client trusting the test CA");
    let manage = |path: &str, body: Value| {
        send(
            &https,
            Method::POST,
            &format!("https://{}/berth/v1/{path}", root.addr),
            Auth::Admin,
            &[],
            Some(&body),
        )
    };
    manage(
        "connected-registries",
        json!({"name": "ship9", "repositories": ["e2e/tls"]}),
    )
    .expect(201);
    let settings = manage(
        "connected-registries/ship9/settings",
        json!({"parent_protocol": "https", "generate_password": 1}),
    )
    .expect(200)
    .json();
    let cs = settings["connection_string"].as_str().unwrap().to_owned();
    assert!(cs.contains("ParentEndpointProtocol=https"), "{cs}");

    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image(host_arch(), "hello", b"synced over TLS\n", Some("v1"));
    let reference = format!("{}/e2e/tls:v1", root.host);
    skopeo_push(&c, Tls::Ca(&certs), &layout, "v1", &reference);

    let ca_file = pki.join("ca.crt");
    let ship = common::Berth::start_with(&[
        "--connection-string",
        &cs,
        "--parent-ca-cert",
        ca_file.to_str().unwrap(),
    ]);
    let manifest_url = format!("{}/v2/e2e/tls/manifests/v1", ship.url);
    let accept = [("Accept", "application/vnd.oci.image.manifest.v1+json")];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = get(&manifest_url, Auth::Admin, &accept);
        if reply.status == 200 {
            assert_eq!(
                reply.body, image.manifest,
                "the manifest arrived byte for byte"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the manifest never reached the connected registry\n{}",
            reply.report()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let layer = get(
        &format!("{}/v2/e2e/tls/blobs/{}", ship.url, image.layer_digest),
        Auth::Admin,
        &[],
    )
    .expect(200);
    assert_eq!(clients::sha256_digest(&layer.body), image.layer_digest);
}

#[test]
fn a_parent_ca_file_without_certificates_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("ca.crt");
    fs::write(&bogus, "not a certificate\n").unwrap();
    let out = Command::new(common::berth_bin())
        .args([
            "serve",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--connection-string",
            "ConnectedRegistryName=x;SyncTokenName=t;SyncTokenPassword=p;ParentGatewayEndpoint=127.0.0.1:1;ParentEndpointProtocol=https",
            "--parent-ca-cert",
            bogus.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("parent_ca_cert"), "{stderr}");
}
