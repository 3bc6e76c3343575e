//! Connected registries, part 1, end to end with real processes on loopback ports:
//! root -> `factory` (ReadWrite) -> `line3` (ReadOnly).
//!
//! - a client token created on the root and added to `line3` lets `docker login` to `line3`
//!   succeed without restarting anything; disabling it on the root makes `line3` refuse it;
//!   regenerating password1 makes the old one fail and the new one work; editing its scope map
//!   reaches `line3` too;
//! - stopping the root leaves `line3` and `factory` accepting logins, also across a restart of
//!   `line3`;
//! - the root shows both Online, then `line3` Offline after it is killed;
//! - a second `factory` instance gets `ALREADY_ACTIVATED`; `deactivate` lets a replacement in;
//! - the ReadOnly `line3` refuses pushes;
//! - depth 3: `cell4` under `line3` activates through two relays and follows token changes.
//!
//! Propagation is awaited with a generous deadline so a slow machine does not make the test
//! flaky; `bench/` measures the actual time against the 2-second target.

mod authn;
mod clients;
mod common;
mod sites;

use std::process::Command;
use std::time::Duration;

use authn::{Cred, Manage, expect_status, poll_until, send};
use common::Berth;
use serde_json::json;
use sites::{connected, view, wait_state};

/// Generous: the target is 2 seconds.
const PROPAGATION: Duration = Duration::from_secs(20);

/// The status of `GET /v2/` on `berth` with Basic credentials.
fn login_status(berth: &Berth, user: &str, password: &str) -> u16 {
    let http = authn::client();
    send(
        &http,
        "GET",
        &format!("{}/v2/", berth.url),
        &Cred::basic(user, password),
        &[],
        None,
    )
    .status
}

#[track_caller]
fn wait_login(berth: &Berth, user: &str, password: &str, expected: u16, what: &str) {
    poll_until(PROPAGATION, what, || {
        let status = login_status(berth, user, password);
        if status == expected {
            Ok(())
        } else {
            Err(format!(
                "GET /v2/ as {user} answered {status}, want {expected}"
            ))
        }
    });
}

#[test]
fn hierarchy_propagates_configuration_and_survives_failures() {
    let mut root = Berth::start();
    let manage = Manage::new(&root.url);

    // A client token on the root, for `hello-world` pulls.
    manage.create_scope_map("hello-pull", &[("hello-world", &["content/read"])]);
    let client = manage.create_token("client1", "hello-pull", None);

    let factory_cs = connected(
        &manage,
        json!({"name": "factory", "mode": "ReadWrite", "repositories": ["hello-world", "team/*"]}),
    );
    let factory = Berth::start_with(&["--connection-string", &factory_cs]);
    wait_state(&manage, "factory", "Online", PROPAGATION);

    let line3_cs = connected(
        &manage,
        json!({"name": "line3", "mode": "ReadOnly", "parent": "factory", "repositories": ["hello-world"]}),
    );
    assert!(
        line3_cs.contains(&format!("ParentGatewayEndpoint={}", factory.host)),
        "line3's parent is factory's instance: {line3_cs}"
    );
    let temp = tempfile::tempdir().unwrap();
    let line3_data = temp.path().join("line3");
    let mut line3 = Berth::with_data_dir(&line3_data, &["--connection-string", &line3_cs]);
    wait_state(&manage, "line3", "Online", PROPAGATION);
    assert_eq!(view(&manage, "line3")["login_server"], line3.host.as_str());

    // Depth 3: `cell4` under `line3` talks only to line3, which relays up through factory.
    let cell4_cs = connected(
        &manage,
        json!({"name": "cell4", "mode": "ReadOnly", "parent": "line3", "repositories": ["hello-world"], "client_tokens": ["client1"]}),
    );
    assert!(
        cell4_cs.contains(&format!("ParentGatewayEndpoint={}", line3.host)),
        "{cell4_cs}"
    );
    let cell4 = Berth::start_with(&["--connection-string", &cell4_cs]);
    wait_state(&manage, "cell4", "Online", PROPAGATION);
    wait_login(
        &cell4,
        "client1",
        &client.password1,
        200,
        "client1 accepted on cell4, three levels down",
    );
    manage.set_token_status("client1", "disabled");
    wait_login(
        &cell4,
        "client1",
        &client.password1,
        401,
        "disabled client1 refused on cell4",
    );
    manage.set_token_status("client1", "enabled");
    drop(cell4);

    // Not yet a client of line3: refused. Added on the root: docker login works, no restart.
    assert_eq!(login_status(&line3, "client1", &client.password1), 401);
    let resp = manage.call(
        "PATCH",
        "/berth/v1/connected-registries/line3",
        Some(json!({"add_client_tokens": ["client1"]})),
    );
    expect_status(&resp, 200, "adding client1 to line3");
    wait_login(
        &line3,
        "client1",
        &client.password1,
        200,
        "client1 accepted on line3",
    );
    let docker = clients::Dockerd::start();
    docker.login(&line3.host, "client1", &client.password1);

    // Its scope map edited on the root: line3 follows (a repository it could not read).
    let http = authn::client();
    let tags = |who: &Cred| {
        send(
            &http,
            "GET",
            &format!("{}/v2/hello-world/tags/list", line3.url),
            who,
            &[],
            None,
        )
        .status
    };
    assert_eq!(
        tags(&Cred::basic("client1", &client.password1)),
        403,
        "no metadata/read yet"
    );
    let resp = manage.call(
        "PATCH",
        "/berth/v1/scope-maps/hello-pull",
        Some(json!({"add_repositories": [{"repository": "hello-world", "actions": ["metadata/read"]}]})),
    );
    expect_status(&resp, 200, "adding metadata/read");
    poll_until(PROPAGATION, "metadata/read reaches line3", || {
        // The repository does not exist on line3 yet: 404 means the right is there.
        match tags(&Cred::basic("client1", &client.password1)) {
            404 => Ok(()),
            other => Err(format!("tags/list answered {other}")),
        }
    });

    // Disabled on the root: refused on line3; enabled again: accepted.
    manage.set_token_status("client1", "disabled");
    wait_login(
        &line3,
        "client1",
        &client.password1,
        401,
        "disabled client1 refused on line3",
    );
    let refused = docker.try_login(&line3.host, "client1", &client.password1);
    assert!(
        !refused.status.success(),
        "docker login of a disabled token must fail:\n{}",
        refused.report()
    );
    manage.set_token_status("client1", "enabled");
    wait_login(
        &line3,
        "client1",
        &client.password1,
        200,
        "re-enabled client1 accepted on line3",
    );

    // password1 regenerated: the old one fails, the new one works, password2 keeps working.
    let new_password1 = manage.regenerate("client1", "password1", None);
    wait_login(
        &line3,
        "client1",
        &client.password1,
        401,
        "old password1 refused on line3",
    );
    wait_login(
        &line3,
        "client1",
        &new_password1,
        200,
        "new password1 accepted on line3",
    );
    assert_eq!(login_status(&line3, "client1", &client.password2), 200);
    docker.login(&line3.host, "client1", &new_password1);

    // ReadOnly: a push is refused with a message naming the mode, even for the admin.
    let push = send(
        &http,
        "POST",
        &format!("{}/v2/hello-world/blobs/uploads/", line3.url),
        &Cred::admin(),
        &[],
        None,
    );
    assert_eq!(push.status, 403, "{push}");
    assert!(push.to_string().contains("ReadOnly"), "{push}");

    // The root stops: both instances keep accepting logins, line3 even across a restart.
    root.kill();
    assert_eq!(login_status(&line3, "client1", &new_password1), 200);
    assert_eq!(
        login_status(&factory, "client1", &new_password1),
        401,
        "client1 was never added to factory"
    );
    line3.restart();
    assert_eq!(
        login_status(&line3, "client1", &new_password1),
        200,
        "line3 restarted with its saved configuration"
    );
    assert_eq!(login_status(&line3, "client1", &client.password1), 401);

    // The root comes back: both Online; line3 killed: Offline within the documented bound.
    root.restart();
    wait_state(&manage, "factory", "Online", PROPAGATION);
    wait_state(&manage, "line3", "Online", PROPAGATION);
    line3.kill();
    wait_state(&manage, "line3", "Offline", Duration::from_secs(15 + 10));
    assert_eq!(view(&manage, "factory")["connection_state"], "Online");

    // A second factory instance is refused; deactivate lets a replacement in.
    let stderr = common::serve_expecting_exit(
        &temp.path().join("factory2"),
        &["--connection-string", &factory_cs],
        Duration::from_secs(30),
    );
    assert!(
        stderr.contains("ALREADY_ACTIVATED") && stderr.contains("deactivate"),
        "{stderr}"
    );
    drop(factory);
    let resp = manage.call(
        "POST",
        "/berth/v1/connected-registries/factory/deactivate",
        None,
    );
    expect_status(&resp, 200, "deactivate factory");
    assert_eq!(view(&manage, "factory")["activation"], "Inactive");
    let _replacement = Berth::with_data_dir(
        &temp.path().join("factory2"),
        &["--connection-string", &factory_cs],
    );
    wait_state(&manage, "factory", "Online", PROPAGATION);
    assert_eq!(view(&manage, "factory")["activation"], "Active");
}

#[test]
fn an_instance_needs_a_complete_connection_string() {
    let temp = tempfile::tempdir().unwrap();
    let output = Command::new(common::berth_bin())
        .args(["serve", "--data-dir"])
        .arg(temp.path())
        .args([
            "--connection-string",
            "ConnectedRegistryName=factory;SyncTokenName=factory-sync-token",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SyncTokenPassword") && stderr.contains("get-settings"),
        "{stderr}"
    );
}
