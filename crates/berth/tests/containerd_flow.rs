//! containerd's token flow (the kubelet's puller), reproduced request by request with the
//! headers and form fields containerd's `remotes/docker` authorizer sends (issue 3, SPEC §5):
//!
//! 1. `HEAD`/`GET /v2/<repo>/manifests/<tag>` without credentials: `401` with
//!    `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, which containerd parses;
//! 2. `POST <realm>` with `application/x-www-form-urlencoded` `grant_type=password`,
//!    `username`, `password`, `service`, `scope`, `client_id=containerd-client` (and
//!    `access_type=offline` when it wants a refresh token): `access_token`, `expires_in`,
//!    `issued_at`, `refresh_token`;
//! 3. the manifest and blob requests again, with `Authorization: Bearer`;
//! 4. later, `POST <realm>` with `grant_type=refresh_token` (no user name);
//! 5. the fallback containerd uses when the POST is not supported: `GET <realm>?service=…&
//!    scope=…` with Basic credentials.
//!
//! Plus the credentials as a kubelet gets them from an `imagePullSecrets` secret (the `auth`
//! field of a `.dockerconfigjson`), anonymous pulls through the same flow, and refresh tokens
//! of a disabled token or a rotated password being refused.

mod authn;
mod common;

use authn::{
    Challenge, Cred, Manage, Resp, TestImage, access_token_of, basic_token, client,
    expect_challenge, expect_status, form_encode, jwt_access, jwt_payload, parse_challenge,
    push_as_admin, send,
};
use base64::Engine as _;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const REPO: &str = "apps/web";
const TAG: &str = "1.0";

/// What containerd accepts for a manifest, as its resolver sends it.
const CONTAINERD_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

/// containerd's form content type.
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

struct Fixture {
    berth: common::Berth,
    http: Client,
    manage: Manage,
    image: TestImage,
    /// The pulling token's name and passwords.
    user: String,
    password1: String,
    password2: String,
}

impl Fixture {
    /// A registry holding `apps/web:1.0` and a token `kube-puller` with content/read on it.
    fn start() -> Self {
        let berth = common::Berth::start();
        let http = client();
        let manage = Manage::new(&berth.url);
        let image = TestImage::new("containerd");
        push_as_admin(&http, &berth.url, REPO, TAG, &image);
        manage.create_scope_map("kube-pull", &[(REPO, &["content/read"])]);
        let p = manage.create_token("kube-puller", "kube-pull", None);
        Fixture {
            berth,
            http,
            manage,
            image,
            user: "kube-puller".into(),
            password1: p.password1,
            password2: p.password2,
        }
    }

    fn manifest_url(&self) -> String {
        format!("{}/v2/{REPO}/manifests/{TAG}", self.berth.url)
    }

    /// Step 1: the resolver's first request, without credentials; returns the challenge.
    fn unauthenticated_head(&self) -> Challenge {
        let resp = send(
            &self.http,
            "HEAD",
            &self.manifest_url(),
            &Cred::None,
            &[("Accept", CONTAINERD_ACCEPT)],
            None,
        );
        expect_status(
            &resp,
            401,
            "containerd's first HEAD of the manifest, no credentials",
        );
        let header = resp.header("www-authenticate").unwrap_or_else(|| {
            panic!("the 401 to containerd's HEAD has no WWW-Authenticate header\n{resp}")
        });
        let challenge = parse_challenge(&header)
            .unwrap_or_else(|| panic!("cannot parse `WWW-Authenticate: {header}`\n{resp}"));
        let expected_realm = format!("{}/oauth2/token", self.berth.url);
        let expected_scope = format!("repository:{REPO}:pull");
        assert!(
            challenge.scheme == "Bearer"
                && challenge.param("realm") == Some(expected_realm.as_str())
                && challenge.param("service") == Some(self.berth.host.as_str())
                && challenge.param("scope") == Some(expected_scope.as_str()),
            "expected `WWW-Authenticate: Bearer realm=\"{expected_realm}\",service=\"{}\",\
             scope=\"{expected_scope}\"`, got `{header}`\n{resp}",
            self.berth.host
        );

        // The GET says the same, with the error body.
        let resp = send(
            &self.http,
            "GET",
            &self.manifest_url(),
            &Cred::None,
            &[("Accept", CONTAINERD_ACCEPT)],
            None,
        );
        let get_challenge = expect_challenge(
            &resp,
            &self.berth.url,
            "GET of the manifest, no credentials",
        );
        assert_eq!(
            get_challenge, challenge,
            "GET and HEAD of the same manifest challenge alike\n{resp}"
        );
        challenge
    }

    /// Step 2: `POST <realm>` as containerd sends it.
    fn post_token(&self, challenge: &Challenge, fields: &[(&str, &str)]) -> Resp {
        let realm = challenge.param("realm").expect("a realm");
        let mut form: Vec<(&str, &str)> = Vec::new();
        if let Some(scope) = challenge.param("scope") {
            form.push(("scope", scope));
        }
        form.push(("service", challenge.param("service").unwrap_or_default()));
        form.push(("client_id", "containerd-client"));
        form.extend_from_slice(fields);
        send(
            &self.http,
            "POST",
            realm,
            &Cred::None,
            &[("Content-Type", FORM)],
            Some(form_encode(&form).into_bytes()),
        )
    }

    /// Step 3: the pull with a Bearer token: HEAD and GET of the manifest, GET of each blob.
    #[track_caller]
    fn pull_with(&self, token: &str, what: &str) {
        let bearer = Cred::Bearer(token.to_owned());
        let resp = send(
            &self.http,
            "HEAD",
            &self.manifest_url(),
            &bearer,
            &[("Accept", CONTAINERD_ACCEPT)],
            None,
        );
        expect_status(
            &resp,
            200,
            &format!("{what}: HEAD of the manifest with Bearer"),
        );
        assert_eq!(
            resp.header("docker-content-digest").as_deref(),
            Some(self.image.digest().as_str()),
            "{what}: HEAD names the manifest digest\n{resp}"
        );
        let resp = send(
            &self.http,
            "GET",
            &format!(
                "{}/v2/{REPO}/manifests/{}",
                self.berth.url,
                self.image.digest()
            ),
            &bearer,
            &[("Accept", CONTAINERD_ACCEPT)],
            None,
        );
        expect_status(
            &resp,
            200,
            &format!("{what}: GET of the manifest by digest with Bearer"),
        );
        assert!(
            resp.body == self.image.manifest,
            "{what}: the manifest bytes differ from what was pushed\n{resp}"
        );
        for (name, digest, bytes) in [
            ("config", self.image.config_digest(), &self.image.config),
            ("layer", self.image.layer_digest(), &self.image.layer),
        ] {
            let resp = send(
                &self.http,
                "GET",
                &format!("{}/v2/{REPO}/blobs/{digest}", self.berth.url),
                &bearer,
                &[],
                None,
            );
            expect_status(
                &resp,
                200,
                &format!("{what}: GET of the {name} blob with Bearer"),
            );
            assert!(
                &resp.body == bytes,
                "{what}: the {name} blob differs from what was pushed\n{resp}"
            );
        }
    }
}

/// The fields every token response must carry, and the token's grant.
#[track_caller]
fn check_token_response(resp: &Resp, what: &str, want_refresh: bool) -> (String, Option<String>) {
    let token = access_token_of(resp, what);
    let body = resp.json(what);
    assert!(
        body["expires_in"].as_u64().is_some_and(|s| s > 0),
        "{what}: expected a positive `expires_in`\n{resp}"
    );
    assert!(
        body["issued_at"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
        "{what}: expected `issued_at` as an RFC 3339 time\n{resp}"
    );
    let refresh = body["refresh_token"].as_str().map(str::to_owned);
    if want_refresh {
        assert!(
            refresh.as_deref().is_some_and(|r| !r.is_empty()),
            "{what}: expected a `refresh_token` (access_type=offline)\n{resp}"
        );
    }
    assert_eq!(
        jwt_access(&token),
        vec![(
            "repository".to_owned(),
            REPO.to_owned(),
            vec!["pull".to_owned()]
        )],
        "{what}: the access token grants pull on {REPO}; payload {}",
        jwt_payload(&token)
    );
    (token, refresh)
}

#[test]
fn containerd_posts_for_a_token_then_pulls_with_it() {
    let f = Fixture::start();
    let challenge = f.unauthenticated_head();
    let resp = f.post_token(
        &challenge,
        &[
            ("grant_type", "password"),
            ("username", &f.user),
            ("password", &f.password1),
            ("access_type", "offline"),
        ],
    );
    let (token, _) = check_token_response(&resp, "POST <realm> grant_type=password", true);
    f.pull_with(&token, "after POST grant_type=password");

    // Without access_type=offline, as containerd sends it by default: no refresh token needed.
    let resp = f.post_token(
        &challenge,
        &[
            ("grant_type", "password"),
            ("username", &f.user),
            ("password", &f.password2),
        ],
    );
    let (token, _) = check_token_response(&resp, "POST <realm> with password2, online", false);
    f.pull_with(&token, "after POST with password2");
}

#[test]
fn a_refresh_token_is_exchanged_for_working_access_tokens() {
    let f = Fixture::start();
    let challenge = f.unauthenticated_head();
    let resp = f.post_token(
        &challenge,
        &[
            ("grant_type", "password"),
            ("username", &f.user),
            ("password", &f.password1),
            ("access_type", "offline"),
        ],
    );
    let (first, refresh) = check_token_response(&resp, "POST <realm> grant_type=password", true);
    let refresh = refresh.unwrap();

    // containerd keeps the refresh token as the secret and sends no user name.
    let resp = f.post_token(
        &challenge,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    let (second, _) = check_token_response(&resp, "POST <realm> grant_type=refresh_token", false);
    f.pull_with(&second, "after POST grant_type=refresh_token");
    assert_eq!(
        jwt_payload(&second)["sub"],
        jwt_payload(&first)["sub"],
        "the refreshed access token is for the same token"
    );

    // A refresh token does not widen anything: push is dropped, as with a password.
    let push_scope = format!("repository:{REPO}:pull,push");
    let wide = Challenge {
        scheme: "Bearer".into(),
        params: [
            (
                "realm".to_owned(),
                challenge.param("realm").unwrap().to_owned(),
            ),
            ("service".to_owned(), f.berth.host.clone()),
            ("scope".to_owned(), push_scope.clone()),
        ]
        .into_iter()
        .collect(),
    };
    let resp = f.post_token(
        &wide,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    check_token_response(&resp, &format!("refresh for {push_scope}"), false);

    // A tampered or garbage refresh token is refused.
    let resp = f.post_token(
        &challenge,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-token"),
        ],
    );
    expect_challenge(
        &resp,
        &f.berth.url,
        "POST <realm> with a garbage refresh token",
    );
    // An access token is not a refresh token.
    let resp = f.post_token(
        &challenge,
        &[("grant_type", "refresh_token"), ("refresh_token", &first)],
    );
    expect_challenge(
        &resp,
        &f.berth.url,
        "POST <realm> with an access token as the refresh token",
    );
}

#[test]
fn the_get_fallback_with_basic_credentials_issues_a_token() {
    let f = Fixture::start();
    let challenge = f.unauthenticated_head();
    let realm = challenge.param("realm").unwrap();
    let query = form_encode(&[
        ("scope", challenge.param("scope").unwrap()),
        ("service", challenge.param("service").unwrap()),
    ]);
    let resp = send(
        &f.http,
        "GET",
        &format!("{realm}?{query}"),
        &Cred::basic(&f.user, &f.password1),
        &[],
        None,
    );
    let (token, _) = check_token_response(&resp, "GET <realm> with Basic credentials", false);
    f.pull_with(&token, "after GET <realm>");

    // With offline_token=true (and client_id), as containerd asks when it wants a refresh
    // token through GET.
    let query = form_encode(&[
        ("scope", challenge.param("scope").unwrap()),
        ("service", challenge.param("service").unwrap()),
        ("offline_token", "true"),
        ("client_id", "containerd-client"),
    ]);
    let resp = send(
        &f.http,
        "GET",
        &format!("{realm}?{query}"),
        &Cred::basic(&f.user, &f.password2),
        &[],
        None,
    );
    let (_, refresh) = check_token_response(&resp, "GET <realm> with offline_token=true", true);
    let resp = f.post_token(
        &challenge,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh.unwrap()),
        ],
    );
    let (token, _) = check_token_response(&resp, "refresh of a GET-issued refresh token", false);
    f.pull_with(&token, "after refreshing a GET-issued refresh token");

    // Wrong credentials on the fallback are a 401 challenge too.
    let resp = send(
        &f.http,
        "GET",
        &format!("{realm}?{query}"),
        &Cred::basic(&f.user, "wrong-password"),
        &[],
        None,
    );
    expect_challenge(&resp, &f.berth.url, "GET <realm> with a wrong password");
    let resp = f.post_token(
        &challenge,
        &[
            ("grant_type", "password"),
            ("username", &f.user),
            ("password", "wrong-password"),
        ],
    );
    expect_challenge(&resp, &f.berth.url, "POST <realm> with a wrong password");
}

#[test]
fn image_pull_secret_credentials_work_on_the_token_endpoint() {
    let f = Fixture::start();
    // What `kubectl create secret docker-registry` stores: a `.dockerconfigjson`, base64 in
    // the Secret's data.
    let config = json!({
        "auths": {
            f.berth.host.clone(): {
                "username": f.user,
                "password": f.password1,
                "auth": basic_token(&f.user, &f.password1),
            }
        }
    });
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": { "name": "berth-pull", "namespace": "default" },
        "data": {
            ".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config.to_string()),
        },
    });

    // The kubelet decodes it, finds the entry for the registry host, and splits `auth`.
    let encoded = secret["data"][".dockerconfigjson"].as_str().unwrap();
    let decoded: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap();
    let auth = decoded["auths"][f.berth.host.as_str()]["auth"]
        .as_str()
        .unwrap_or_else(|| panic!("no auth for {} in {decoded}", f.berth.host));
    let user_pass = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(auth)
            .unwrap(),
    )
    .unwrap();
    let (user, password) = user_pass.split_once(':').unwrap();

    // The `auth` value is exactly what goes in `Authorization: Basic`.
    let challenge = f.unauthenticated_head();
    let realm = challenge.param("realm").unwrap();
    let query = form_encode(&[
        ("scope", challenge.param("scope").unwrap()),
        ("service", challenge.param("service").unwrap()),
    ]);
    let resp = send(
        &f.http,
        "GET",
        &format!("{realm}?{query}"),
        &Cred::None,
        &[("Authorization", &format!("Basic {auth}"))],
        None,
    );
    let (token, _) = check_token_response(
        &resp,
        "GET <realm> with the secret's `auth` as Basic",
        false,
    );
    f.pull_with(&token, "with the image pull secret (GET)");

    // And what containerd POSTs with the user name and password the kubelet passed on.
    let resp = f.post_token(
        &challenge,
        &[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
        ],
    );
    let (token, _) = check_token_response(
        &resp,
        "POST <realm> with the secret's user name and password",
        false,
    );
    f.pull_with(&token, "with the image pull secret (POST)");
}

#[test]
fn anonymous_pull_goes_through_the_same_flow_without_credentials() {
    let f = Fixture::start();
    f.manage.set_anonymous_pull(true);
    // No imagePullSecrets: containerd fetches a token with GET and no Authorization.
    let resp = send(
        &f.http,
        "HEAD",
        &f.manifest_url(),
        &Cred::None,
        &[("Accept", CONTAINERD_ACCEPT)],
        None,
    );
    if resp.status == 401 {
        let header = resp.header("www-authenticate").unwrap_or_default();
        let challenge = parse_challenge(&header)
            .unwrap_or_else(|| panic!("cannot parse `WWW-Authenticate: {header}`\n{resp}"));
        let query = form_encode(&[
            ("scope", challenge.param("scope").unwrap_or_default()),
            ("service", challenge.param("service").unwrap_or_default()),
        ]);
        let resp = send(
            &f.http,
            "GET",
            &format!("{}?{query}", challenge.param("realm").unwrap_or_default()),
            &Cred::None,
            &[],
            None,
        );
        let (token, _) = check_token_response(&resp, "anonymous GET <realm>", false);
        f.pull_with(&token, "anonymous pull");
    } else {
        expect_status(
            &resp,
            200,
            "anonymous HEAD of the manifest, anonymous pull on",
        );
    }
    // Either way the anonymous token flow itself works.
    let query = form_encode(&[
        ("scope", &format!("repository:{REPO}:pull")),
        ("service", &f.berth.host),
    ]);
    let resp = send(
        &f.http,
        "GET",
        &format!("{}/oauth2/token?{query}", f.berth.url),
        &Cred::None,
        &[],
        None,
    );
    let (token, _) = check_token_response(&resp, "anonymous GET /oauth2/token", false);
    f.pull_with(&token, "anonymous pull with a token");
}

#[test]
fn refresh_tokens_of_a_disabled_token_or_a_rotated_password_are_refused() {
    let f = Fixture::start();
    let challenge = f.unauthenticated_head();
    let offline = |password: &str| {
        let resp = f.post_token(
            &challenge,
            &[
                ("grant_type", "password"),
                ("username", &f.user),
                ("password", password),
                ("access_type", "offline"),
            ],
        );
        let (access, refresh) = check_token_response(&resp, "POST <realm> offline", true);
        (access, refresh.unwrap())
    };
    let refresh_with = |refresh: &str| {
        f.post_token(
            &challenge,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
    };
    let (access1, refresh1) = offline(&f.password1);
    let (_, refresh2) = offline(&f.password2);

    f.manage.set_token_status(&f.user, "disabled");
    let resp = refresh_with(&refresh1);
    expect_challenge(&resp, &f.berth.url, "refresh token of a disabled token");
    let resp = send(
        &f.http,
        "GET",
        &f.manifest_url(),
        &Cred::Bearer(access1),
        &[("Accept", CONTAINERD_ACCEPT)],
        None,
    );
    expect_challenge(&resp, &f.berth.url, "access token of a disabled token");
    let resp = f.post_token(
        &challenge,
        &[
            ("grant_type", "password"),
            ("username", &f.user),
            ("password", &f.password1),
        ],
    );
    expect_challenge(&resp, &f.berth.url, "POST <realm> for a disabled token");

    // Enabled again, the refresh token works; rotating password1 ends its refresh tokens only.
    f.manage.set_token_status(&f.user, "enabled");
    let resp = refresh_with(&refresh1);
    check_token_response(
        &resp,
        "refresh token after the token was enabled again",
        false,
    );
    f.manage.regenerate(&f.user, "password1", None);
    let resp = refresh_with(&refresh1);
    expect_challenge(&resp, &f.berth.url, "refresh token of a rotated password1");
    let resp = refresh_with(&refresh2);
    let (token, _) = check_token_response(&resp, "refresh token of password2", false);
    f.pull_with(&token, "after refreshing with password2's refresh token");

    // Deleted: nothing works any more.
    f.manage.delete_token(&f.user);
    let resp = refresh_with(&refresh2);
    expect_challenge(&resp, &f.berth.url, "refresh token of a deleted token");
}
