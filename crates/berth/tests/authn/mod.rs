//! The HTTP side of the end-to-end tests, first written for the authentication tests
//! (`auth_matrix.rs`, `containerd_flow.rs`, `e2e_auth.rs`) and shared by the others
//! (`conformance.rs`, `networks.rs`, the connected-registry and sites tests): HTTP requests
//! with a chosen credential, whose failures print the whole exchange ([`Resp`]); the
//! management API (`/berth/v1/…`) as the admin ([`Manage`]); a small test image pushed over
//! HTTP; the token endpoint; JWT payloads and `WWW-Authenticate` challenges; and a registry
//! process spawned with an environment of the test's choosing and its output captured.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common;

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed OCI layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

// ---------------------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------------------

/// The credential a request carries.
#[derive(Clone, Debug)]
pub enum Cred {
    /// No `Authorization` header.
    None,
    /// `Authorization: Basic user:password`.
    Basic(String, String),
    /// `Authorization: Bearer <access token>`.
    Bearer(String),
}

impl Cred {
    /// Basic credentials.
    pub fn basic(user: &str, password: &str) -> Cred {
        Cred::Basic(user.to_owned(), password.to_owned())
    }

    /// The admin's Basic credentials.
    pub fn admin() -> Cred {
        Cred::basic("admin", common::ADMIN_PASSWORD)
    }

    /// How the credential is shown in failure messages (secrets shortened, not hidden: these
    /// are throw-away test secrets, and seeing which one was sent matters).
    fn describe(&self) -> String {
        match self {
            Cred::None => "(no Authorization header)".to_owned(),
            Cred::Basic(user, password) => {
                format!("Authorization: Basic {user}:{}", short(password))
            }
            Cred::Bearer(token) => format!("Authorization: Bearer {}", short(token)),
        }
    }
}

fn short(secret: &str) -> String {
    if secret.len() <= 12 {
        secret.to_owned()
    } else {
        format!("{}…{}", &secret[..6], &secret[secret.len() - 4..])
    }
}

/// A response, with a description of the request that produced it.
pub struct Resp {
    /// Method, URL, credential and headers sent.
    pub request: String,
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body (empty when it could not be read).
    pub body: Vec<u8>,
    /// Why the body could not be read (e.g. shorter than its `Content-Length`), reported
    /// with the response rather than aborting the test before its status is compared.
    pub body_error: Option<String>,
}

impl Resp {
    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The body as text (lossily).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The response itself, once its status is `expected` (the exchange printed otherwise):
    /// for chains such as `manage.call(…).expect(200).json(…)`.
    #[track_caller]
    pub fn expect(self, expected: u16) -> Self {
        expect_status(&self, expected, "the request");
        self
    }

    /// The `Location` header, which must be there and not empty.
    #[track_caller]
    pub fn location(&self, what: &str) -> String {
        match self.header("Location") {
            Some(location) if !location.is_empty() => location,
            _ => panic!("{what}: expected a Location header, got none\n{self}"),
        }
    }

    /// The body as JSON; panics with the exchange when it is not.
    #[track_caller]
    pub fn json(&self, what: &str) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: expected a JSON body ({e})\n{self}"))
    }

    /// The `code`s of an OCI error body.
    pub fn error_codes(&self) -> Vec<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["code"].as_str().map(str::to_owned))
            .collect()
    }
}

impl fmt::Display for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- request ---\n{}", self.request)?;
        writeln!(f, "--- response ---\n{}", self.status)?;
        for (name, value) in &self.headers {
            writeln!(
                f,
                "    {name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            )?;
        }
        match &self.body_error {
            Some(error) => write!(f, "    body: unreadable ({error})"),
            None => write!(f, "    body: {}", render_body(&self.body)),
        }
    }
}

/// A body as failure messages show it: text up to 1,500 bytes (cut on a character
/// boundary), binary as its size and digest.
pub fn render_body(body: &[u8]) -> String {
    const SHOWN: usize = 1500;
    match std::str::from_utf8(body) {
        Ok("") => "(empty)".to_owned(),
        Ok(text) if text.len() <= SHOWN => text.to_owned(),
        Ok(text) => {
            let cut = (0..=SHOWN)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            format!("{}... ({} bytes in all)", &text[..cut], body.len())
        }
        Err(_) => format!("({} bytes of binary, {})", body.len(), sha256_digest(body)),
    }
}

/// A blocking HTTP client that never follows redirects and sends no credential by itself.
pub fn client() -> Client {
    berth_server::tls::install_crypto_provider();
    Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build an HTTP client")
}

/// Sends one request with `cred`, extra `headers` and an optional body.
pub fn send(
    http: &Client,
    method: &str,
    url: &str,
    cred: &Cred,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    let method_name = method;
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = format!("{method} {url}\n    {}", cred.describe());
    let mut builder = http.request(method, url);
    builder = match cred {
        Cred::None => builder,
        Cred::Basic(user, password) => builder.basic_auth(user, Some(password)),
        Cred::Bearer(token) => builder.bearer_auth(token),
    };
    for (name, value) in headers {
        let _ = write!(request, "\n    {name}: {value}");
        builder = builder.header(*name, *value);
    }
    if let Some(body) = body {
        let _ = write!(request, "\n    body: {}", render_body(&body));
        builder = builder.body(body);
    }
    // A GET or HEAD whose kept-alive connection turns out closed is sent again once, as Go
    // clients (docker, containerd, skopeo) do: a balancer may close a client's connection
    // after answering a request whose body it did not read whole (a 413 sent early).
    let retry = matches!(method_name, "GET" | "HEAD")
        .then(|| builder.try_clone())
        .flatten();
    let response = builder.send().or_else(|e| match retry {
        Some(again) if e.is_request() || e.is_connect() => again.send(),
        _ => Err(e),
    });
    let response = response.unwrap_or_else(|e| {
        // The whole chain: reqwest's own message names only the URL.
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            why.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        panic!("{request}\nfailed to send: {why}")
    });
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let (body, body_error) = match response.bytes() {
        Ok(bytes) => (bytes.to_vec(), None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Resp {
        request,
        status,
        headers,
        body,
        body_error,
    }
}

/// Asserts the status, printing the exchange otherwise.
#[track_caller]
pub fn expect_status(resp: &Resp, expected: u16, what: &str) {
    assert!(
        resp.status == expected,
        "{what}: expected status {expected}, got {}\n{resp}",
        resp.status
    );
}

/// Asserts an OCI error with `status` and `code`.
#[track_caller]
pub fn expect_error(resp: &Resp, status: u16, code: &str, what: &str) {
    expect_status(resp, status, what);
    let codes = resp.error_codes();
    assert!(
        codes.iter().any(|c| c == code),
        "{what}: expected an error body with code {code}, got codes {codes:?}\n{resp}"
    );
}

/// A parsed `WWW-Authenticate` challenge: the scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `Bearer` or `Basic`.
    pub scheme: String,
    /// `realm`, `service`, `scope`, …
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// One parameter, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses `Scheme k="v",k2="v2"` (quoted values may hold commas, as scopes do).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (quoted[..end].to_owned(), &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(key, val);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_owned(),
        params,
    })
}

/// Asserts a `401 UNAUTHORIZED` with a Bearer challenge naming this registry's realm and
/// service, and returns the challenge.
#[track_caller]
pub fn expect_challenge(resp: &Resp, base: &str, what: &str) -> Challenge {
    expect_error(resp, 401, "UNAUTHORIZED", what);
    let header = resp.header("www-authenticate").unwrap_or_else(|| {
        panic!("{what}: expected a `WWW-Authenticate: Bearer …` header, got none\n{resp}")
    });
    let challenge = parse_challenge(&header)
        .unwrap_or_else(|| panic!("{what}: cannot parse `WWW-Authenticate: {header}`\n{resp}"));
    let host = base.trim_start_matches("http://");
    let realm = format!("{base}/oauth2/token");
    assert!(
        challenge.scheme == "Bearer"
            && challenge.param("realm") == Some(realm.as_str())
            && challenge.param("service") == Some(host),
        "{what}: expected `WWW-Authenticate: Bearer realm=\"{realm}\",service=\"{host}\",…`, \
         got `{header}`\n{resp}"
    );
    challenge
}

/// Asserts a 401 challenge whose scope is `repository:<repo>:<one of actions>`, and that the
/// error's `detail` names the type, the repository and the action.
#[track_caller]
pub fn expect_repository_challenge(
    resp: &Resp,
    base: &str,
    repo: &str,
    scope_actions: &[&str],
    detail_action: &str,
    what: &str,
) {
    let challenge = expect_challenge(resp, base, what);
    let scopes: Vec<String> = scope_actions
        .iter()
        .map(|a| format!("repository:{repo}:{a}"))
        .collect();
    assert!(
        challenge
            .param("scope")
            .is_some_and(|s| scopes.iter().any(|want| want == s)),
        "{what}: expected the challenge's scope to be one of {scopes:?}, got {:?}\n{resp}",
        challenge.param("scope")
    );
    let body = resp.json(what);
    let detail = &body["errors"][0]["detail"];
    let expected = json!([{ "Type": "repository", "Name": repo, "Action": detail_action }]);
    assert!(
        *detail == expected,
        "{what}: expected the error detail {expected}, got {detail}\n{resp}"
    );
}

// ---------------------------------------------------------------------------------------
// The management API, as the admin
// ---------------------------------------------------------------------------------------

/// Passwords of a token, as returned once at creation.
#[derive(Clone, Debug)]
pub struct TokenPasswords {
    /// Slot 1.
    pub password1: String,
    /// Slot 2.
    pub password2: String,
}

/// The management API of a registry at `base`, called with the admin's credentials.
pub struct Manage {
    base: String,
    http: Client,
}

impl Manage {
    /// For the registry at `base` (e.g. `http://127.0.0.1:41234`).
    pub fn new(base: &str) -> Self {
        Manage {
            base: base.trim_end_matches('/').to_owned(),
            http: client(),
        }
    }

    /// Sends a JSON request as the admin.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        send(
            &self.http,
            method,
            &format!("{}{path}", self.base),
            &Cred::admin(),
            headers,
            body,
        )
    }

    /// `POST /berth/v1/scope-maps` with repository rules `(pattern, actions)`; must be 201.
    #[track_caller]
    pub fn create_scope_map(&self, name: &str, rules: &[(&str, &[&str])]) -> Value {
        let repositories: Vec<Value> = rules
            .iter()
            .map(|(repository, actions)| json!({ "repository": repository, "actions": actions }))
            .collect();
        let resp = self.call(
            "POST",
            "/berth/v1/scope-maps",
            Some(json!({ "name": name, "repositories": repositories })),
        );
        expect_status(&resp, 201, &format!("creating scope map `{name}`"));
        resp.json("created scope map")
    }

    /// `POST /berth/v1/tokens` on `scope_map`, passwords expiring at `expiry` (RFC 3339) if
    /// given; must be 201 with both passwords.
    #[track_caller]
    pub fn create_token(
        &self,
        name: &str,
        scope_map: &str,
        expiry: Option<&str>,
    ) -> TokenPasswords {
        let mut body = json!({ "name": name, "scope_map": scope_map });
        if let Some(expiry) = expiry {
            body["expiry"] = json!(expiry);
        }
        let resp = self.call("POST", "/berth/v1/tokens", Some(body));
        let what = format!("creating token `{name}` on scope map `{scope_map}`");
        expect_status(&resp, 201, &what);
        let created = resp.json(&what);
        let password = |slot: &str| {
            created["passwords"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == slot))
                .and_then(|p| p["value"].as_str())
                .unwrap_or_else(|| panic!("{what}: no {slot} value in the response\n{resp}"))
                .to_owned()
        };
        TokenPasswords {
            password1: password("password1"),
            password2: password("password2"),
        }
    }

    /// `PATCH /berth/v1/tokens/<name>` `{"status": status}`; must be 200 and show it.
    #[track_caller]
    pub fn set_token_status(&self, name: &str, status: &str) {
        let resp = self.call(
            "PATCH",
            &format!("/berth/v1/tokens/{name}"),
            Some(json!({ "status": status })),
        );
        let what = format!("setting token `{name}` {status}");
        expect_status(&resp, 200, &what);
        let shown = resp.json(&what);
        assert!(
            shown["status"] == status,
            "{what}: expected the token to show status {status:?}, got {}\n{resp}",
            shown["status"]
        );
    }

    /// `POST /berth/v1/tokens/<name>/credentials` for one slot; returns the new password.
    #[track_caller]
    pub fn regenerate(&self, name: &str, slot: &str, expiry: Option<&str>) -> String {
        let mut body = json!({ slot: true });
        if let Some(expiry) = expiry {
            body["expiry"] = json!(expiry);
        }
        let resp = self.call(
            "POST",
            &format!("/berth/v1/tokens/{name}/credentials"),
            Some(body),
        );
        let what = format!("regenerating {slot} of token `{name}`");
        expect_status(&resp, 200, &what);
        let generated = resp.json(&what);
        let passwords = generated["passwords"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            passwords.len() == 1 && passwords[0]["name"] == slot,
            "{what}: expected exactly one new password, for {slot}, got {generated}\n{resp}"
        );
        passwords[0]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no password value\n{resp}"))
            .to_owned()
    }

    /// `DELETE /berth/v1/tokens/<name>/credentials/<slot>`; must be 200.
    #[track_caller]
    pub fn delete_password(&self, name: &str, slot: &str) {
        let resp = self.call(
            "DELETE",
            &format!("/berth/v1/tokens/{name}/credentials/{slot}"),
            None,
        );
        expect_status(&resp, 200, &format!("deleting {slot} of token `{name}`"));
    }

    /// `DELETE /berth/v1/tokens/<name>`; must be 204.
    #[track_caller]
    pub fn delete_token(&self, name: &str) {
        let resp = self.call("DELETE", &format!("/berth/v1/tokens/{name}"), None);
        expect_status(&resp, 204, &format!("deleting token `{name}`"));
    }

    /// `PATCH /berth/v1/registry` `{"anonymous_pull_enabled": enabled}`; must be 200 and
    /// show the new value.
    #[track_caller]
    pub fn set_anonymous_pull(&self, enabled: bool) {
        let resp = self.call(
            "PATCH",
            "/berth/v1/registry",
            Some(json!({ "anonymous_pull_enabled": enabled })),
        );
        let what = format!("setting anonymous_pull_enabled to {enabled}");
        expect_status(&resp, 200, &what);
        let shown = resp.json(&what);
        assert!(
            shown["anonymous_pull_enabled"] == enabled,
            "{what}: expected the registry to show {enabled}, got {shown}\n{resp}"
        );
    }

    /// `PATCH /berth/v1/registry` with `body`; must be 200. Returns the settings after it.
    #[track_caller]
    pub fn patch_registry(&self, body: Value) -> Value {
        let what = format!("PATCH /berth/v1/registry {body}");
        let resp = self.call("PATCH", "/berth/v1/registry", Some(body));
        expect_status(&resp, 200, &what);
        resp.json(&what)
    }

    /// `POST /berth/v1/network-rules` adding `rule` (an address or a CIDR range); must be
    /// 200. Returns the rules after it.
    #[track_caller]
    pub fn add_network_rule(&self, rule: &str) -> Value {
        let what = format!("adding the IP rule {rule}");
        let resp = self.call(
            "POST",
            "/berth/v1/network-rules",
            Some(json!({ "ip_address": rule })),
        );
        expect_status(&resp, 200, &what);
        resp.json(&what)
    }

    /// `DELETE /berth/v1/network-rules` of `rule`, whatever the outcome.
    pub fn remove_network_rule(&self, rule: &str) -> Resp {
        self.call(
            "DELETE",
            "/berth/v1/network-rules",
            Some(json!({ "ip_address": rule })),
        )
    }

    /// `POST /berth/v1/private-endpoint-connections/<name>/<decision>` (`approve` or
    /// `reject`, with an optional description); must be 200. Returns the connection after it.
    #[track_caller]
    pub fn decide_private_endpoint(
        &self,
        name: &str,
        decision: &str,
        description: Option<&str>,
    ) -> Value {
        let what = format!("{decision} of the private endpoint connection {name}");
        let resp = self.call(
            "POST",
            &format!("/berth/v1/private-endpoint-connections/{name}/{decision}"),
            description.map(|d| json!({ "description": d })),
        );
        expect_status(&resp, 200, &what);
        resp.json(&what)
    }

    /// `GET /berth/v1/private-endpoint-connections/<name>`; must be 200.
    #[track_caller]
    pub fn private_endpoint(&self, name: &str) -> Value {
        let what = format!("GET of the private endpoint connection {name}");
        let resp = self.call(
            "GET",
            &format!("/berth/v1/private-endpoint-connections/{name}"),
            None,
        );
        expect_status(&resp, 200, &what);
        resp.json(&what)
    }
}

/// An RFC 3339 UTC time `seconds` from now, whole seconds.
pub fn utc_in(seconds: i64) -> (String, i64) {
    let at = berth_oci::time::unix_now() + seconds;
    (
        jiff::Timestamp::from_second(at)
            .expect("a valid time")
            .to_string(),
        at,
    )
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `deadline` with the
/// last state `describe` gives.
#[track_caller]
pub fn poll_until<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= end => {
                panic!("{what}: not reached within {deadline:?}; last observation:\n{last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// A test image, pushed over HTTP
// ---------------------------------------------------------------------------------------

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A tiny image: a config blob, a layer blob and an OCI manifest over them.
#[derive(Clone, Debug)]
pub struct TestImage {
    /// Config bytes.
    pub config: Vec<u8>,
    /// Layer bytes (not a real tarball: registries do not look inside).
    pub layer: Vec<u8>,
    /// Manifest bytes.
    pub manifest: Vec<u8>,
}

impl TestImage {
    /// An image whose bytes depend on `seed`.
    pub fn new(seed: &str) -> Self {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "berth.test": seed } },
            "rootfs": { "type": "layers", "diff_ids": [] },
        }))
        .unwrap();
        let layer = format!("layer of {seed}").into_bytes();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len() },
            "layers": [{ "mediaType": OCI_LAYER, "digest": sha256_digest(&layer), "size": layer.len() }],
        }))
        .unwrap();
        TestImage {
            config,
            layer,
            manifest,
        }
    }

    /// The manifest digest.
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    /// The config blob digest.
    pub fn config_digest(&self) -> String {
        sha256_digest(&self.config)
    }

    /// The layer blob digest.
    pub fn layer_digest(&self) -> String {
        sha256_digest(&self.layer)
    }
}

/// Uploads `blob` to `repo` with `cred` (POST, then PUT `?digest=`); returns both responses
/// (the PUT is only sent when the POST answered 202).
pub fn upload_blob(
    http: &Client,
    base: &str,
    cred: &Cred,
    repo: &str,
    blob: &[u8],
) -> (Resp, Option<Resp>) {
    let post = send(
        http,
        "POST",
        &format!("{base}/v2/{repo}/blobs/uploads/"),
        cred,
        &[],
        Some(Vec::new()),
    );
    if post.status != 202 {
        return (post, None);
    }
    let location = post.header("location").unwrap_or_default();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let put = send(
        http,
        "PUT",
        &format!("{url}{separator}digest={}", sha256_digest(blob)),
        cred,
        &[("Content-Type", "application/octet-stream")],
        Some(blob.to_vec()),
    );
    (post, Some(put))
}

/// `PUT /v2/<repo>/manifests/<reference>` with `cred`.
pub fn put_manifest(
    http: &Client,
    base: &str,
    cred: &Cred,
    repo: &str,
    reference: &str,
    manifest: &[u8],
) -> Resp {
    send(
        http,
        "PUT",
        &format!("{base}/v2/{repo}/manifests/{reference}"),
        cred,
        &[("Content-Type", OCI_MANIFEST)],
        Some(manifest.to_vec()),
    )
}

/// Pushes `image` to `repo:tag` as the admin; every step must succeed.
#[track_caller]
pub fn push_as_admin(http: &Client, base: &str, repo: &str, tag: &str, image: &TestImage) {
    for blob in [&image.config, &image.layer] {
        let (post, put) = upload_blob(http, base, &Cred::admin(), repo, blob);
        expect_status(&post, 202, &format!("admin: starting an upload to {repo}"));
        expect_status(
            put.as_ref().unwrap(),
            201,
            &format!("admin: completing an upload to {repo}"),
        );
    }
    let resp = put_manifest(http, base, &Cred::admin(), repo, tag, &image.manifest);
    expect_status(
        &resp,
        201,
        &format!("admin: pushing the manifest {repo}:{tag}"),
    );
}

// ---------------------------------------------------------------------------------------
// The token endpoint
// ---------------------------------------------------------------------------------------

/// `GET /oauth2/token?service=<service>&scope=…` with `cred` (the Docker token flow).
pub fn get_token(http: &Client, base: &str, cred: &Cred, service: &str, scopes: &[&str]) -> Resp {
    let mut query = vec![("service", service)];
    query.extend(scopes.iter().map(|s| ("scope", *s)));
    send(
        http,
        "GET",
        &format!("{base}/oauth2/token?{}", form_encode(&query)),
        cred,
        &[],
        None,
    )
}

/// The `access_token` (or `token`) of a 200 token response; panics otherwise.
#[track_caller]
pub fn access_token_of(resp: &Resp, what: &str) -> String {
    expect_status(resp, 200, what);
    let body = resp.json(what);
    body["access_token"]
        .as_str()
        .or_else(|| body["token"].as_str())
        .unwrap_or_else(|| panic!("{what}: no access_token in the response\n{resp}"))
        .to_owned()
}

/// The payload of a JWT (its base64url middle part), as JSON.
#[track_caller]
pub fn jwt_payload(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three dot-separated parts: {jwt}");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .unwrap_or_else(|e| panic!("the JWT payload is not base64url ({e}): {jwt}"));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("the JWT payload is not JSON ({e}): {jwt}"))
}

/// The `access` claim of a JWT, normalised: `(type, name, sorted actions)`, sorted.
pub fn jwt_access(jwt: &str) -> Vec<(String, String, Vec<String>)> {
    let payload = jwt_payload(jwt);
    let mut access: Vec<(String, String, Vec<String>)> = payload["access"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let mut actions: Vec<String> = a["actions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect();
            actions.sort();
            (
                a["type"].as_str().unwrap_or_default().to_owned(),
                a["name"].as_str().unwrap_or_default().to_owned(),
                actions,
            )
        })
        .collect();
    access.sort();
    access
}

/// `application/x-www-form-urlencoded` encoding of `pairs`, as Go's `url.Values.Encode`
/// does it.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn encode(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Base64 (standard, padded) of `user:password`, as in `Authorization: Basic` and in the
/// `auth` field of a Docker `config.json`.
pub fn basic_token(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

// ---------------------------------------------------------------------------------------
// A registry process of the test's own, with its output captured
// ---------------------------------------------------------------------------------------

/// `berth serve` spawned with a chosen environment, stdout and stderr captured to files.
pub struct Spawned {
    /// Base URL.
    pub url: String,
    /// `host:port`.
    pub host: String,
    /// The data directory.
    pub data_dir: PathBuf,
    temp: tempfile::TempDir,
    child: Child,
}

impl Spawned {
    /// Starts `berth serve` on a free port with only `env` added to the inherited environment
    /// (plus `BERTH_ADMIN_PASSWORD`), and waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let data_dir = temp.path().join("data");
        let port = common::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let stdout = fs::File::create(temp.path().join("stdout.log")).unwrap();
        let stderr = fs::File::create(temp.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(common::berth_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("RUST_LOG")
            .env_remove("BERTH_LOG")
            .env("BERTH_ADMIN_PASSWORD", common::ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("spawn berth serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "berth serve exited before it was ready: {status}\n{}",
                    fs::read_to_string(temp.path().join("stderr.log")).unwrap_or_default()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "berth serve did not listen on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Spawned {
            url: format!("http://{addr}"),
            host: addr.to_string(),
            data_dir,
            temp,
            child,
        }
    }

    /// Everything the process wrote so far on stdout and stderr.
    pub fn output(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.temp.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Waits up to `timeout` for the process to end on its own; its exit status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}
