//! In-process tests of what each listener serves: each request goes through the network
//! gate and then the router (`oneshot`), with the peer address and the `Via` a listener
//! would give it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use berth_auth::network::{ConnectionState, DefaultAction, IpRules};
use berth_auth::{Identity, KeyPurpose};
use berth_registry::{Registry, RegistryConfig};
use berth_server::AppState;
use berth_server::data::DataEndpoint;
use berth_server::network::{Endpoint, Gate, ListenerInfo, NetworkConfig, NetworkGate, Via};
use http::{Request, StatusCode};
use tower::ServiceExt;

mod support;
use support::{ADMIN_PASSWORD, Reply, basic, open_identity};

struct App {
    router: Router,
    gate: NetworkGate,
    data: Router,
    identity: Arc<Identity>,
    _dir: tempfile::TempDir,
}

/// A registry with a private endpoint `lan`, a data endpoint, and `127.0.0.1` as a trusted
/// proxy.
async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(
        Registry::open_local(dir.path(), RegistryConfig::default())
            .await
            .unwrap(),
    );
    let identity = Arc::new(open_identity(dir.path()).await);
    identity
        .management()
        .ensure_key(KeyPurpose::DataUrls, None)
        .await
        .unwrap();
    let keys = Arc::clone(&identity);
    let mut state = AppState::new(registry, Arc::clone(&identity));
    state.network = Arc::new(NetworkConfig {
        trusted_proxies: IpRules::compile(&["127.0.0.1/32".into()]),
        login_server: None,
        private_endpoints: vec![ListenerInfo {
            name: "lan".into(),
            address: "127.0.0.2:5000".parse().unwrap(),
            tls: false,
            description: String::new(),
        }],
        data: Some(DataEndpoint::new(
            "http://127.0.0.3:5000",
            Duration::from_secs(25 * 60),
            Arc::new(move || keys.checks().keys(KeyPurpose::DataUrls).ok()),
        )),
        data_listener: None,
    });
    App {
        router: berth_server::router(state.clone()),
        gate: NetworkGate::new(&state),
        data: berth_server::data::router(state),
        identity,
        _dir: dir,
    }
}

fn via(endpoint: Endpoint) -> Via {
    Via {
        endpoint,
        tls: false,
    }
}

impl App {
    async fn call(
        &self,
        router: &Router,
        method: &str,
        uri: &str,
        (peer, via): (&str, Via),
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Body::from(body)).unwrap();
        let peer: SocketAddr = peer.parse().unwrap();
        // As the listener does: the gate first (not on the data endpoint), then the router.
        let admitted = match via.endpoint {
            Endpoint::Data => Ok(peer),
            _ => self
                .gate
                .admit(&via, peer, request.uri(), request.headers()),
        };
        let response = match admitted {
            Err(refusal) => *refusal,
            Ok(client) => {
                request.extensions_mut().insert(ConnectInfo(client));
                request.extensions_mut().insert(via);
                router.clone().oneshot(request).await.unwrap()
            }
        };
        Reply::of(response).await
    }

    async fn get(&self, uri: &str, peer: &str, endpoint: Endpoint, auth: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        self.call(
            &self.router,
            "GET",
            uri,
            (peer, via(endpoint)),
            &headers,
            vec![],
        )
        .await
    }

    async fn set(&self, change: impl Fn(&mut berth_auth::network::NetworkSettings)) {
        self.identity
            .management()
            .update_network(|s| {
                change(s);
                Ok(())
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn public_access_off_refuses_everything_on_the_login_server_but_local_management() {
    let app = app().await;
    let admin = basic("admin", ADMIN_PASSWORD);
    app.set(|s| s.public_network_enabled = false).await;
    let wrong = basic("admin", "wrong");
    for uri in ["/v2/", "/oauth2/token?service=x", "/v2/app/tags/list"] {
        let reply = app
            .get(uri, "192.0.2.9:4000", Endpoint::Public, Some(&wrong))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(
            reply.message().contains("public_network_enabled"),
            "{uri}: {}",
            reply.message()
        );
    }
    // Loopback callers keep the management API (admin only), not the registry API.
    let reply = app
        .get(
            "/berth/v1/registry",
            "127.0.0.1:4000",
            Endpoint::Public,
            Some(&admin),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = app
        .get(
            "/berth/v1/registry",
            "127.0.0.1:4000",
            Endpoint::Public,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = app
        .get("/v2/", "127.0.0.1:4000", Endpoint::Public, Some(&admin))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = app
        .get(
            "/berth/v1/registry",
            "192.0.2.9:4000",
            Endpoint::Public,
            Some(&admin),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // A local proxy does not make its clients local.
    let reply = app
        .call(
            &app.router,
            "GET",
            "/berth/v1/registry",
            ("127.0.0.1:4000", via(Endpoint::Public)),
            &[("authorization", &admin), ("x-forwarded-for", "192.0.2.9")],
            vec![],
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // The approved private endpoint serves meanwhile.
    app.set(|s| {
        s.set_connection("lan", ConnectionState::Approved, None, 0);
    })
    .await;
    let reply = app
        .get(
            "/v2/",
            "192.0.2.9:4000",
            Endpoint::Private("lan".into()),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ip_rules_refuse_before_credentials_and_honour_trusted_proxies() {
    let app = app().await;
    app.set(|s| {
        s.default_action = DefaultAction::Deny;
        s.add_rule("10.0.0.0/8").unwrap();
        s.add_rule("2001:db8::/32").unwrap();
    })
    .await;
    let wrong = basic("admin", "wrong");
    let allowed = app
        .get("/v2/", "10.1.2.3:4000", Endpoint::Public, Some(&wrong))
        .await;
    assert_eq!(
        allowed.status,
        StatusCode::UNAUTHORIZED,
        "inside: credentials decide"
    );
    let refused = app
        .get("/v2/", "192.0.2.1:4000", Endpoint::Public, Some(&wrong))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "outside: refused first"
    );
    assert!(
        refused.message().contains("192.0.2.1"),
        "{}",
        refused.message()
    );
    let v6 = app
        .get("/v2/", "[2001:db8::7]:4000", Endpoint::Public, None)
        .await;
    assert_eq!(v6.status, StatusCode::UNAUTHORIZED);
    let mapped = app
        .get("/v2/", "[::ffff:10.9.9.9]:4000", Endpoint::Public, None)
        .await;
    assert_eq!(
        mapped.status,
        StatusCode::UNAUTHORIZED,
        "IPv4-mapped peers match v4 rules"
    );

    let behind_proxy = |forwarded: &'static str| {
        let app = &app;
        async move {
            app.call(
                &app.router,
                "GET",
                "/v2/",
                ("127.0.0.1:4000", via(Endpoint::Public)),
                &[("x-forwarded-for", forwarded)],
                vec![],
            )
            .await
            .status
        }
    };
    assert_eq!(behind_proxy("2001:db8::5").await, StatusCode::UNAUTHORIZED);
    assert_eq!(behind_proxy("192.0.2.1").await, StatusCode::FORBIDDEN);
    assert_eq!(
        behind_proxy("10.0.0.1, 192.0.2.1").await,
        StatusCode::FORBIDDEN,
        "the nearest untrusted hop is the client, whatever was prepended"
    );
    // An untrusted peer's header is ignored.
    let spoofed = app
        .call(
            &app.router,
            "GET",
            "/v2/",
            ("192.0.2.1:4000", via(Endpoint::Public)),
            &[("x-forwarded-for", "10.0.0.1")],
            vec![],
        )
        .await;
    assert_eq!(spoofed.status, StatusCode::FORBIDDEN);
    // IP rules do not apply to private endpoints.
    app.set(|s| {
        s.set_connection("lan", ConnectionState::Approved, None, 0);
    })
    .await;
    let private = app
        .get(
            "/v2/",
            "192.0.2.1:4000",
            Endpoint::Private("lan".into()),
            None,
        )
        .await;
    assert_eq!(private.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn private_endpoints_serve_only_when_approved() {
    let app = app().await;
    let lan = || Endpoint::Private("lan".into());
    let reply = app.get("/v2/", "10.0.0.1:4000", lan(), None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        reply.message().contains("is Pending"),
        "{}",
        reply.message()
    );
    for (state, status) in [
        (ConnectionState::Approved, StatusCode::UNAUTHORIZED),
        (ConnectionState::Rejected, StatusCode::FORBIDDEN),
        (ConnectionState::Disconnected, StatusCode::FORBIDDEN),
    ] {
        app.set(|s| {
            s.set_connection("lan", state, None, 0);
        })
        .await;
        let reply = app.get("/v2/", "10.0.0.1:4000", lan(), None).await;
        assert_eq!(reply.status, status, "{state}");
        if status == StatusCode::FORBIDDEN {
            assert!(
                reply.message().contains(&format!("is {state}")),
                "{}",
                reply.message()
            );
        }
    }
    // The public switch does not apply to private endpoints.
    app.set(|s| {
        s.public_network_enabled = false;
        s.private_endpoints.get_mut("lan").unwrap().state = ConnectionState::Approved;
    })
    .await;
    let reply = app.get("/v2/", "10.0.0.1:4000", lan(), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn blob_gets_redirect_to_signed_urls_that_only_the_data_endpoint_serves() {
    let app = app().await;
    let admin = basic("admin", ADMIN_PASSWORD);
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
    };
    let pushed = app
        .call(
            &app.router,
            "POST",
            &format!("/v2/app/blobs/uploads/?digest={digest}"),
            ("127.0.0.1:4000", via(Endpoint::Public)),
            &[
                ("authorization", &admin),
                ("content-type", "application/octet-stream"),
            ],
            bytes.clone(),
        )
        .await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    let blob = format!("/v2/app/blobs/{digest}");

    // Off: served directly.
    let direct = app
        .get(&blob, "127.0.0.1:4000", Endpoint::Public, Some(&admin))
        .await;
    assert_eq!(direct.status, StatusCode::OK);
    assert_eq!(direct.body, bytes);

    app.set(|s| s.data_endpoint_enabled = true).await;
    let redirect = app
        .get(&blob, "127.0.0.1:4000", Endpoint::Public, Some(&admin))
        .await;
    assert_eq!(redirect.status, StatusCode::TEMPORARY_REDIRECT);
    let location = redirect.headers["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!(
            "http://127.0.0.3:5000/berth/data/v1/app/blobs/{digest}?expires="
        )),
        "{location}"
    );
    assert_eq!(redirect.headers["docker-content-digest"], digest.as_str());
    // Still authorized first, and a missing blob is a 404, not a redirect.
    let anonymous = app
        .get(&blob, "127.0.0.1:4000", Endpoint::Public, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let missing = app
        .get(
            &format!("/v2/app/blobs/sha256:{}", "0".repeat(64)),
            "127.0.0.1:4000",
            Endpoint::Public,
            Some(&admin),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // HEAD stays on the login server.
    let head = app
        .call(
            &app.router,
            "HEAD",
            &blob,
            ("127.0.0.1:4000", via(Endpoint::Public)),
            &[("authorization", &admin)],
            vec![],
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);

    // The data endpoint serves the URL without credentials, with Range.
    let path = location.trim_start_matches("http://127.0.0.3:5000");
    let data = |uri: String, headers: Vec<(&'static str, &'static str)>| {
        let app = &app;
        async move {
            app.call(
                &app.data,
                "GET",
                &uri,
                ("198.51.100.7:4000", via(Endpoint::Data)),
                &headers,
                vec![],
            )
            .await
        }
    };
    let served = data(path.to_owned(), vec![]).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, bytes);
    let ranged = data(path.to_owned(), vec![("range", "bytes=10-19")]).await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.body, bytes[10..20]);

    // Altered URLs are refused.
    let expires: i64 = path
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let later = path.replace(
        &format!("expires={expires}"),
        &format!("expires={}", expires + 3600),
    );
    let other_repo = path.replace("/app/blobs/", "/other/blobs/");
    let truncated = &path[..path.len() - 2];
    for altered in [later, other_repo, truncated.to_owned()] {
        let reply = data(altered.clone(), vec![]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{altered}");
    }
    let unsigned = data(path.split('?').next().unwrap().to_owned(), vec![]).await;
    assert_eq!(unsigned.status, StatusCode::FORBIDDEN);
    // Nothing else is served there.
    assert_eq!(
        data("/v2/".into(), vec![]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        data("/berth/v1/registry".into(), vec![]).await.status,
        StatusCode::NOT_FOUND
    );
}
