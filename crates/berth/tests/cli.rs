//! The `berth` management command line, run as a real process against a live registry:
//! login, scope maps, tokens, credentials, settings, output formats and exit codes.
//!
//! Each test starts its own registry and keeps its credentials file in its own
//! temporary directory (`BERTH_CONFIG_DIR`), so tests never see each other's logins.

mod common;

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use common::cli::{Cli, assert_success, field};
use common::{ADMIN_PASSWORD, Berth};
use serde_json::Value;

fn http() -> reqwest::blocking::Client {
    berth_server::tls::install_crypto_provider();
    reqwest::blocking::Client::new()
}

/// The status of `GET <path>` with the given Basic credentials.
fn get_status(berth: &Berth, path: &str, creds: Option<(&str, &str)>) -> u16 {
    let mut request = http().get(format!("{}{path}", berth.url));
    if let Some((user, password)) = creds {
        request = request.basic_auth(user, Some(password));
    }
    request.send().expect("send a request").status().as_u16()
}

/// Whether a token can log in: `GET /v2/` with Basic credentials, and a token from
/// `/oauth2/token` as `docker login` asks for one.
fn can_log_in(berth: &Berth, user: &str, password: &str) -> bool {
    let v2 = get_status(berth, "/v2/", Some((user, password)));
    let oauth = get_status(
        berth,
        &format!(
            "/oauth2/token?service={}&scope=repository:hello-world:pull",
            berth.host
        ),
        Some((user, password)),
    );
    assert_eq!(
        v2 == 200,
        oauth == 200,
        "/v2/ ({v2}) and /oauth2/token ({oauth}) disagree"
    );
    v2 == 200
}

fn password<'v>(value: &'v Value, slot: &str) -> &'v str {
    value["passwords"]
        .as_array()
        .expect("a passwords array")
        .iter()
        .find(|p| p["name"] == slot)
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("no {slot} in {value}"))
}

fn decode_base64(text: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("valid base64"),
    )
    .expect("UTF-8")
}

#[test]
fn login_checks_the_password_and_saves_credentials_privately() {
    let berth = Berth::start();
    let cli = Cli::new();

    // Not logged in yet.
    let stderr = cli.fails(&["show"], 3);
    assert!(stderr.contains("not logged in"), "{stderr}");
    assert!(stderr.contains("berth login"), "{stderr}");

    // A wrong password is refused, says how to fix it, and saves nothing.
    let stderr = cli.fails(&["login", &berth.host, "-u", "admin", "-p", "wrong"], 3);
    assert!(
        stderr.contains("refused the credentials of `admin`"),
        "{stderr}"
    );
    assert!(stderr.contains("berth login"), "{stderr}");
    assert!(!cli.credentials_file().exists());

    // A non-interactive login without a password is a usage error.
    let stderr = cli.fails(&["login", &berth.host], 2);
    assert!(stderr.contains("--password-stdin"), "{stderr}");

    let out = cli.run_with_stdin(
        &["login", &berth.host, "--password-stdin"],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert_success(&out, "login");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cli.credentials_file()), 0o600);
    assert_eq!(mode(&cli.config_dir()), 0o700);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(cli.credentials_file()).unwrap()).unwrap();
    assert_eq!(saved["current"], berth.host.as_str());
    assert_eq!(saved["logins"][0]["server"], berth.host.as_str());
    assert_eq!(saved["logins"][0]["username"], "admin");
    assert_eq!(saved["logins"][0]["password"], ADMIN_PASSWORD);

    // Later commands use the saved login.
    let table = cli.ok(&["show"]);
    assert!(table.contains(&berth.host), "{table}");
    assert_eq!(field(&table, "Anonymous pull"), "disabled", "{table}");

    // Logging in again with -p replaces the login; logout forgets it.
    cli.ok(&["login", &berth.host, "-u", "admin", "-p", ADMIN_PASSWORD]);
    let out = cli.ok(&["logout"]);
    assert!(out.contains(&berth.host), "{out}");
    assert!(!cli.credentials_file().exists());
    cli.fails(&["token", "list"], 3);

    // Flags and variables work without a saved login.
    let shown = cli.json(&[
        "show",
        "--server",
        &berth.host,
        "--password",
        ADMIN_PASSWORD,
    ]);
    assert_eq!(shown["admin_username"], "admin");
    let out = cli
        .command(&["show", "-o", "json"])
        .env("BERTH_SERVER", &berth.url)
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert_success(&out, "show with BERTH_SERVER and BERTH_PASSWORD");
}

#[test]
fn connection_failures_exit_3() {
    let berth = Berth::start();
    let cli = Cli::new();
    let nowhere = format!("127.0.0.1:{}", common::free_port());
    let stderr = cli.fails(&["login", &nowhere, "-p", "x"], 3);
    assert!(stderr.contains("cannot reach the registry"), "{stderr}");

    // Plain HTTP to another machine is refused before anything is sent, naming --insecure
    // (HTTPS itself is tested in hardening.rs; `.invalid` names never resolve).
    let stderr = cli.fails(&["login", "http://registry.invalid:5000", "-p", "x"], 2);
    assert!(stderr.contains("--insecure"), "{stderr}");

    // A path is not a registry address.
    cli.fails(&["login", &format!("{}/v2", berth.url), "-p", "x"], 2);

    // A token may not use the management API.
    let admin = Cli::logged_in(&berth);
    let created = admin.json(&[
        "token",
        "create",
        "--name",
        "ci-pull",
        "--scope-map",
        "_repositories_pull",
    ]);
    let stderr = cli.fails(
        &[
            "login",
            &berth.host,
            "-u",
            "ci-pull",
            "-p",
            password(&created, "password1"),
        ],
        3,
    );
    assert!(stderr.contains("only the admin"), "{stderr}");
}

#[test]
fn scope_maps_are_created_updated_shown_listed_and_deleted() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);

    // The five built-ins are listed, read-only.
    let list = cli.ok(&["scope-map", "list"]);
    let header = list.lines().next().unwrap();
    for column in ["NAME", "TYPE", "CREATED", "DESCRIPTION"] {
        assert!(header.contains(column), "{list}");
    }
    for name in [
        "_repositories_pull",
        "_repositories_pull_metadata_read",
        "_repositories_push",
        "_repositories_push_metadata_write",
        "_repositories_admin",
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains("built-in")),
            "{name} missing:\n{list}"
        );
    }
    let stderr = cli.fails(
        &[
            "scope-map",
            "update",
            "--name",
            "_repositories_pull",
            "--add-repository",
            "x",
            "content/write",
        ],
        1,
    );
    assert!(stderr.contains("built-in"), "{stderr}");
    let stderr = cli.fails(
        &[
            "scope-map",
            "delete",
            "--name",
            "_repositories_admin",
            "--yes",
        ],
        1,
    );
    assert!(stderr.contains("built-in"), "{stderr}");

    // Create, with repeated rules and comma-joined actions.
    let table = cli.ok(&[
        "scope-map",
        "create",
        "--name",
        "hello-pull",
        "--description",
        "Pull hello-world",
        "--repository",
        "hello-world",
        "content/read",
        "metadata/read",
        "--repository",
        "team/*",
        "content/read,content/write",
        "--gateway",
        "edge-one",
        "config/read",
    ]);
    assert!(table.contains("Name:         hello-pull"), "{table}");
    assert!(
        table.contains("hello-world  content/read, metadata/read"),
        "{table}"
    );
    assert!(
        table.contains("team/*       content/read, content/write"),
        "{table}"
    );
    assert!(table.contains("edge-one  config/read"), "{table}");
    let stderr = cli.fails(
        &[
            "scope-map",
            "create",
            "--name",
            "hello-pull",
            "--repository",
            "x",
            "content/read",
        ],
        1,
    );
    assert!(
        stderr.contains("already exists") || stderr.contains("exists"),
        "{stderr}"
    );

    // Wildcards other than `*` and `prefix/*` are refused, saying why.
    let stderr = cli.fails(
        &[
            "scope-map",
            "create",
            "--name",
            "bad-wild",
            "--repository",
            "team*",
            "content/read",
        ],
        1,
    );
    assert!(
        stderr.contains("`team*`") && stderr.contains("end in `/*`"),
        "{stderr}"
    );
    let stderr = cli.fails(
        &[
            "scope-map",
            "create",
            "--name",
            "bad-wild",
            "--repository",
            "a/*/b/*",
            "content/read",
        ],
        1,
    );
    assert!(stderr.contains("exactly one `*`"), "{stderr}");
    let stderr = cli.fails(
        &[
            "scope-map",
            "create",
            "--name",
            "bad-wild",
            "--repository",
            "x",
            "content/fly",
        ],
        1,
    );
    assert!(stderr.contains("content/fly"), "{stderr}");
    let stderr = cli.fails(
        &[
            "scope-map",
            "create",
            "--name",
            "x",
            "--repository",
            "x",
            "content/read",
        ],
        1,
    );
    assert!(stderr.contains("5 to 50"), "{stderr}");
    // A rule needs at least one action: clap refuses it.
    cli.fails(
        &[
            "scope-map",
            "create",
            "--name",
            "no-action",
            "--repository",
            "x",
        ],
        2,
    );

    // Update: add, remove, describe.
    let updated = cli.json(&[
        "scope-map",
        "update",
        "--name",
        "hello-pull",
        "--description",
        "Pull and list",
        "--add-repository",
        "other",
        "content/read",
        "--remove-repository",
        "team/*",
        "content/write",
        "--remove-gateway",
        "edge-one",
        "config/read",
    ]);
    assert_eq!(updated["description"], "Pull and list");
    let rules = updated["repositories"].as_array().unwrap();
    let rule = |repo: &str| rules.iter().find(|r| r["repository"] == repo).cloned();
    assert_eq!(
        rule("other").unwrap()["actions"],
        serde_json::json!(["content/read"])
    );
    assert_eq!(
        rule("team/*").unwrap()["actions"],
        serde_json::json!(["content/read"])
    );
    assert!(
        updated["gateways"].as_array().unwrap().is_empty(),
        "{updated}"
    );
    cli.fails(&["scope-map", "update", "--name", "hello-pull"], 2);

    let shown = cli.json(&["scope-map", "show", "--name", "hello-pull"]);
    assert_eq!(shown, updated);
    let listed = cli.json(&["scope-map", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 6, "{listed}");

    // A scope map in use cannot be deleted; the error names the tokens.
    cli.ok(&[
        "token",
        "create",
        "--name",
        "ci-pull",
        "--scope-map",
        "hello-pull",
        "--no-passwords",
    ]);
    cli.ok(&[
        "token",
        "create",
        "--name",
        "ci-other",
        "--scope-map",
        "hello-pull",
        "--no-passwords",
    ]);
    let stderr = cli.fails(&["scope-map", "delete", "--name", "hello-pull", "--yes"], 1);
    assert!(
        stderr.contains("`ci-other`") && stderr.contains("`ci-pull`"),
        "{stderr}"
    );
    cli.ok(&["token", "delete", "--name", "ci-pull", "--yes"]);
    cli.ok(&[
        "token",
        "update",
        "--name",
        "ci-other",
        "--scope-map",
        "_repositories_pull",
    ]);

    // Without --yes and without a terminal, nothing is deleted.
    let stderr = cli.fails(&["scope-map", "delete", "--name", "hello-pull"], 2);
    assert!(stderr.contains("--yes"), "{stderr}");
    let out = cli.ok(&["scope-map", "delete", "--name", "hello-pull", "--yes"]);
    assert!(out.contains("Deleted scope map `hello-pull`"), "{out}");
    let stderr = cli.fails(&["scope-map", "show", "--name", "hello-pull"], 1);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn tokens_show_passwords_once_and_the_passwords_work() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);

    // With an existing scope map: both passwords, printed once, reminder on stderr.
    let out = cli.run(&[
        "token",
        "create",
        "--name",
        "ci-pull",
        "--scope-map",
        "_repositories_pull",
    ]);
    assert_success(&out, "token create");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("cannot show them again"), "{stderr}");
    let values: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("password1 ") || l.starts_with("password2 "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(values.len(), 2, "{stdout}");
    for value in &values {
        assert_eq!(value.len(), 43, "{stdout}");
        assert_eq!(stdout.matches(value.as_str()).count(), 1, "{stdout}");
        assert!(can_log_in(&berth, "ci-pull", value));
    }
    let (p1, p2) = (values[0].clone(), values[1].clone());
    assert!(!can_log_in(&berth, "ci-pull", "not-the-password"));

    // Never shown again.
    let shown = cli.ok(&["token", "show", "--name", "ci-pull"]);
    assert!(!shown.contains(&p1) && !shown.contains(&p2), "{shown}");
    assert!(shown.contains("Scope map:  _repositories_pull"), "{shown}");
    let json = cli.json(&["token", "show", "--name", "ci-pull"]);
    assert!(!json.to_string().contains(&p1));
    assert_eq!(json["status"], "enabled");

    // With rules: a scope map `<token>-scope-map` is created.
    let created = cli.json(&[
        "token",
        "create",
        "--name",
        "ci-push",
        "--repository",
        "hello-world",
        "content/read",
        "content/write",
        "--expiration-in-days",
        "30",
    ]);
    assert_eq!(created["token"]["scope_map"], "ci-push-scope-map");
    let map = cli.json(&["scope-map", "show", "--name", "ci-push-scope-map"]);
    assert_eq!(map["repositories"][0]["repository"], "hello-world");
    assert_eq!(
        map["repositories"][0]["actions"],
        serde_json::json!(["content/read", "content/write"])
    );
    let expiry: jiff::Timestamp = created["passwords"][0]["expiry"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let days = (expiry.as_second() - jiff::Timestamp::now().as_second()) / 86_400;
    assert!((29..=30).contains(&days), "{created}");
    assert!(can_log_in(
        &berth,
        "ci-push",
        password(&created, "password2")
    ));
    cli.fails(
        &[
            "token",
            "create",
            "--name",
            "ci-late",
            "--scope-map",
            "_repositories_pull",
            "--expiration",
            "2001-01-01",
        ],
        2,
    );
    cli.fails(&["token", "create", "--name", "ci-none"], 2);
    let stderr = cli.fails(
        &[
            "token",
            "create",
            "--name",
            "ci-none",
            "--scope-map",
            "nosuch-map",
        ],
        1,
    );
    assert!(stderr.contains("nosuch-map"), "{stderr}");

    // The list.
    let list = cli.ok(&["token", "list"]);
    let mut lines = list.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "SCOPE MAP",
            "STATUS",
            "PASSWORD1 EXPIRY",
            "PASSWORD2 EXPIRY",
            "CREATED"
        ]
    );
    let row = list
        .lines()
        .find(|l| l.starts_with("ci-pull "))
        .expect("ci-pull listed");
    assert!(
        row.contains("_repositories_pull") && row.contains("enabled") && row.contains("never"),
        "{row}"
    );
    assert_eq!(cli.json(&["token", "list"]).as_array().unwrap().len(), 2);

    // Regenerate password1 only: the old password1 stops, password2 keeps working.
    let out = cli.run(&[
        "token",
        "credential",
        "generate",
        "--name",
        "ci-pull",
        "--password1",
    ]);
    assert_success(&out, "credential generate");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("cannot show it again")
    );
    assert!(
        stdout.contains("password1") && !stdout.contains("password2"),
        "{stdout}"
    );
    let new1 = stdout
        .lines()
        .find(|l| l.starts_with("password1 "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_owned();
    assert!(can_log_in(&berth, "ci-pull", &new1));
    assert!(!can_log_in(&berth, "ci-pull", &p1));
    assert!(can_log_in(&berth, "ci-pull", &p2));

    // Both slots when neither is named.
    let both = cli.json(&["token", "credential", "generate", "--name", "ci-pull"]);
    assert_eq!(both["passwords"].as_array().unwrap().len(), 2);
    assert!(!can_log_in(&berth, "ci-pull", &p2));
    let (p1, p2) = (
        password(&both, "password1").to_owned(),
        password(&both, "password2").to_owned(),
    );

    // Without --yes and without a terminal, no password is deleted.
    let stderr = cli.fails(
        &[
            "token",
            "credential",
            "delete",
            "--name",
            "ci-pull",
            "--password2",
        ],
        2,
    );
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(can_log_in(&berth, "ci-pull", &p2));

    // Delete password2: it stops working; password1 does not.
    let view = cli.json(&[
        "token",
        "credential",
        "delete",
        "--name",
        "ci-pull",
        "--password2",
        "--yes",
    ]);
    assert_eq!(view["passwords"].as_array().unwrap().len(), 1, "{view}");
    assert!(!can_log_in(&berth, "ci-pull", &p2));
    assert!(can_log_in(&berth, "ci-pull", &p1));
    cli.fails(&["token", "credential", "delete", "--name", "ci-pull"], 2);
    cli.fails(
        &[
            "token",
            "credential",
            "delete",
            "--name",
            "ci-pull",
            "--password1",
            "--password2",
        ],
        2,
    );

    // Disable, then enable again.
    let table = cli.ok(&[
        "token", "update", "--name", "ci-pull", "--status", "disabled",
    ]);
    assert!(table.contains("Status:     disabled"), "{table}");
    assert!(!can_log_in(&berth, "ci-pull", &p1));
    let json = cli.json(&[
        "token", "update", "--name", "ci-pull", "--status", "enabled",
    ]);
    assert_eq!(json["status"], "enabled");
    assert!(can_log_in(&berth, "ci-pull", &p1));
    cli.fails(&["token", "update", "--name", "ci-pull"], 2);
    cli.fails(
        &["token", "update", "--name", "ci-pull", "--status", "paused"],
        2,
    );

    // A token created without passwords gets them later.
    let bare = cli.json(&[
        "token",
        "create",
        "--name",
        "ci-bare",
        "--scope-map",
        "_repositories_pull",
        "--no-passwords",
    ]);
    assert!(bare["passwords"].as_array().unwrap().is_empty(), "{bare}");

    // Delete: refused on the next request.
    cli.fails(&["token", "delete", "--name", "ci-pull"], 2);
    cli.ok(&["token", "delete", "--name", "ci-pull", "--yes"]);
    assert!(!can_log_in(&berth, "ci-pull", &p1));
    let stderr = cli.fails(&["token", "show", "--name", "ci-pull"], 1);
    assert!(
        stderr.contains("token `ci-pull` does not exist"),
        "{stderr}"
    );
}

#[test]
fn docker_config_and_kube_secret_outputs_log_in() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);

    // A Docker config.json fragment, with the first password.
    let stdout = cli.ok(&[
        "token",
        "create",
        "--name",
        "ci-pull",
        "--scope-map",
        "_repositories_pull",
        "-o",
        "docker-config",
    ]);
    let config: Value = serde_json::from_str(&stdout).expect("docker-config is JSON");
    let entry = &config["auths"][berth.host.as_str()];
    assert_eq!(entry["username"], "ci-pull");
    let password = entry["password"].as_str().unwrap();
    assert_eq!(
        decode_base64(entry["auth"].as_str().unwrap()),
        format!("ci-pull:{password}")
    );
    assert!(can_log_in(&berth, "ci-pull", password));

    // A Kubernetes Secret for imagePullSecrets.
    let secret = cli.ok(&[
        "token",
        "credential",
        "generate",
        "--name",
        "ci-pull",
        "--password2",
        "-o",
        "kube-secret",
        "--namespace",
        "apps",
        "--secret-name",
        "pull-secret",
    ]);
    let lines: Vec<&str> = secret.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "apiVersion: v1",
            "kind: Secret",
            "metadata:",
            "  name: pull-secret",
            "  namespace: apps",
            "type: kubernetes.io/dockerconfigjson",
        ],
        "{secret}"
    );
    assert_eq!(lines[6], "data:", "{secret}");
    let data = lines[7]
        .strip_prefix("  .dockerconfigjson: ")
        .unwrap_or_else(|| panic!("no .dockerconfigjson in:\n{secret}"));
    assert_eq!(lines.len(), 8, "{secret}");
    let docker: Value =
        serde_json::from_str(&decode_base64(data)).expect("the data is a docker config");
    let entry = &docker["auths"][berth.host.as_str()];
    let (user, password2) = (
        entry["username"].as_str().unwrap(),
        entry["password"].as_str().unwrap(),
    );
    assert_eq!(
        decode_base64(entry["auth"].as_str().unwrap()),
        format!("{user}:{password2}")
    );
    assert_eq!(user, "ci-pull");
    assert_ne!(password2, password);
    let status = http()
        .get(format!("{}/oauth2/token?service={}", berth.url, berth.host))
        .basic_auth(user, Some(password2))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 200);
    // password1, from the docker config above, still works.
    assert!(can_log_in(&berth, "ci-pull", password));

    // Flags are checked before anything changes on the registry.
    let stderr = cli.fails(
        &[
            "token",
            "create",
            "--name",
            "ci-none",
            "--scope-map",
            "_repositories_pull",
            "--no-passwords",
            "-o",
            "docker-config",
        ],
        2,
    );
    assert!(stderr.contains("--no-passwords"), "{stderr}");
    cli.fails(&["token", "show", "--name", "ci-none"], 1);
    cli.fails(
        &[
            "token",
            "credential",
            "generate",
            "--name",
            "ci-pull",
            "-o",
            "kube-secret",
        ],
        2,
    );
    cli.fails(
        &[
            "token",
            "credential",
            "generate",
            "--name",
            "ci-pull",
            "-o",
            "kube-secret",
            "--secret-name",
            "Bad_Name",
        ],
        2,
    );
    cli.fails(
        &[
            "token",
            "credential",
            "generate",
            "--name",
            "ci-pull",
            "--namespace",
            "apps",
        ],
        2,
    );
    assert!(can_log_in(&berth, "ci-pull", password2));
}

#[test]
fn anonymous_pull_is_updated_and_shown() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    let manifest = "/v2/hello-world/manifests/latest";

    assert_eq!(cli.json(&["show"])["anonymous_pull_enabled"], false);
    assert_eq!(get_status(&berth, manifest, None), 401);

    let table = cli.ok(&["update", "--anonymous-pull-enabled", "true"]);
    assert_eq!(field(&table, "Anonymous pull"), "enabled", "{table}");
    assert_eq!(field(&cli.ok(&["show"]), "Anonymous pull"), "enabled");
    // Anyone may now try to pull: the manifest is unknown, not unauthorised.
    assert_eq!(get_status(&berth, manifest, None), 404);

    let json = cli.json(&["update", "--anonymous-pull-enabled", "false"]);
    assert_eq!(json["anonymous_pull_enabled"], false);
    assert_eq!(get_status(&berth, manifest, None), 401);

    cli.fails(&["update", "--anonymous-pull-enabled", "maybe"], 2);
    cli.fails(&["update"], 2);
}

#[test]
fn network_settings_rules_and_private_endpoints_from_the_command_line() {
    let private = format!("127.0.0.2:{}", common::free_port());
    let data = format!("127.0.0.3:{}", common::free_port());
    let berth = Berth::start_with(&[
        "--private-endpoint",
        &format!("lan={private}"),
        "--data-endpoint-listen",
        &data,
    ]);
    let cli = Cli::logged_in(&berth);
    let v2_via = |addr: &str| {
        http()
            .get(format!("http://{addr}/v2/"))
            .send()
            .expect("send")
            .status()
            .as_u16()
    };

    // Endpoints as configured: the private one waits for approval.
    let table = cli.ok(&["show-endpoints"]);
    assert!(
        table.contains(&format!("private: lan  http://{private}  Pending")),
        "{table}"
    );
    assert!(
        table.contains(&format!("data          http://{data}")),
        "{table}"
    );
    assert_eq!(v2_via(&private), 403);

    // Approve, with a description; then it serves (and asks for credentials).
    let shown = cli.ok(&[
        "private-endpoint-connection",
        "approve",
        "--name",
        "lan",
        "--description",
        "factory LAN",
    ]);
    assert_eq!(field(&shown, "State"), "Approved", "{shown}");
    assert_eq!(field(&shown, "Description"), "factory LAN");
    assert_eq!(v2_via(&private), 401);
    let list = cli.json(&["private-endpoint-connection", "list"]);
    assert_eq!(list[0]["name"], "lan");
    assert_eq!(list[0]["state"], "Approved");
    cli.ok(&["private-endpoint-connection", "reject", "-n", "lan"]);
    assert_eq!(v2_via(&private), 403);
    cli.ok(&[
        "private-endpoint-connection",
        "delete",
        "-n",
        "lan",
        "--yes",
    ]);
    let shown = cli.json(&["private-endpoint-connection", "show", "-n", "lan"]);
    assert_eq!(shown["state"], "Disconnected");
    assert_eq!(v2_via(&private), 403);
    cli.fails(&["private-endpoint-connection", "show", "-n", "nope"], 1);
    cli.ok(&["private-endpoint-connection", "approve", "-n", "lan"]);
    assert_eq!(v2_via(&private), 401);

    // IP rules: listed canonical; bad input refused with exit 1 and the reason.
    cli.ok(&["network-rule", "add", "--ip-address", "10.0.0.0/8"]);
    cli.ok(&["network-rule", "add", "--ip-address", "2001:db8::/32"]);
    let rules = cli.ok(&["network-rule", "add", "--ip-address", "127.0.0.1"]);
    assert!(rules.contains("127.0.0.1/32"), "{rules}");
    let err = cli.fails(&["network-rule", "add", "--ip-address", "10.0.0.1/8"], 1);
    assert!(err.contains("host bits"), "{err}");
    let err = cli.fails(
        &["network-rule", "remove", "--ip-address", "192.0.2.0/24"],
        1,
    );
    assert!(err.contains("does not exist"), "{err}");
    let json = cli.json(&["network-rule", "list"]);
    assert_eq!(
        json["ip_rules"],
        serde_json::json!(["10.0.0.0/8", "2001:db8::/32", "127.0.0.1/32"])
    );

    // Deny by default: 127.0.0.1 is allowed, so this machine still reaches /v2/.
    let table = cli.ok(&["update", "--default-action", "Deny"]);
    assert_eq!(field(&table, "Default action"), "Deny");
    assert_eq!(get_status(&berth, "/v2/", None), 401);
    cli.ok(&["network-rule", "remove", "--ip-address", "127.0.0.1"]);
    assert_eq!(get_status(&berth, "/v2/", None), 403);
    // ... and the management API still answers the admin on this machine.
    cli.ok(&["update", "--default-action", "Allow"]);
    assert_eq!(get_status(&berth, "/v2/", None), 401);

    // Public access off: the login server refuses, the approved private endpoint serves.
    let table = cli.ok(&["update", "--public-network-enabled", "false"]);
    assert_eq!(field(&table, "Public network access"), "disabled");
    assert_eq!(get_status(&berth, "/v2/", None), 403);
    assert_eq!(v2_via(&private), 401);
    assert!(
        cli.ok(&["show-endpoints"])
            .contains("public access disabled")
    );
    cli.ok(&["update", "--public-network-enabled", "true"]);
    assert_eq!(get_status(&berth, "/v2/", None), 401);

    // The data endpoint switch.
    let table = cli.ok(&["update", "--data-endpoint-enabled", "true"]);
    assert_eq!(field(&table, "Data endpoint"), "enabled");
    assert!(
        cli.ok(&["show-endpoints"])
            .contains("enabled, URLs valid 25 min")
    );
    cli.fails(&["update", "--default-action", "Sometimes"], 2);
}

#[test]
fn the_data_endpoint_cannot_be_enabled_without_one() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    let err = cli.fails(&["update", "--data-endpoint-enabled", "true"], 1);
    assert!(err.contains("no data endpoint"), "{err}");
    let table = cli.ok(&["show-endpoints"]);
    assert!(table.contains("not configured"), "{table}");
}

/// An access token for the admin, from the token endpoint.
fn admin_access_token(berth: &Berth) -> String {
    let resp = http()
        .get(format!(
            "{}/oauth2/token?service={}&scope=repository:hello:pull",
            berth.url, berth.host
        ))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `GET /v2/` with a Bearer token: its status.
fn bearer_status(berth: &Berth, token: &str) -> u16 {
    http()
        .get(format!("{}/v2/", berth.url))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn keys_rotate_without_ending_what_the_old_key_signed() {
    let mut berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    let keys = cli.json(&["keys", "list"]);
    let purposes: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(purposes, ["tokens", "data-urls"], "{keys}");
    assert!(
        !berth.data_dir().join("signing.key").exists()
            && !berth.data_dir().join("data-url.key").exists(),
        "keys live in the identity store, not in files"
    );

    let before = admin_access_token(&berth);
    assert_eq!(bearer_status(&berth, &before), 200);
    let rotated = cli.json(&["keys", "rotate", "--purpose", "tokens"]);
    let rotated = rotated.as_array().unwrap();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert!(rotated[0]["retired_at"].is_null(), "the new key first");
    assert!(
        rotated[1]["retired_at"].is_string() && rotated[1]["verifies_until"].is_string(),
        "the old one retired, verifying until its refresh tokens expire: {rotated:?}"
    );
    // What the old key signed stays valid; new tokens are signed with the new key.
    assert_eq!(bearer_status(&berth, &before), 200);
    let after = admin_access_token(&berth);
    assert_ne!(before.rsplit('.').next(), after.rsplit('.').next());
    assert_eq!(bearer_status(&berth, &after), 200);
    // The keys are stored: both still verify after a restart.
    berth.restart();
    assert_eq!(bearer_status(&berth, &before), 200);
    assert_eq!(bearer_status(&berth, &after), 200);
    // A token signed with a key this registry never had is refused.
    let forged = format!("{}.{}", after.rsplit_once('.').unwrap().0, "AAAA");
    assert_eq!(bearer_status(&berth, &forged), 401);

    let table = cli.ok(&["keys", "rotate", "--purpose", "all"]);
    assert!(
        table.contains("tokens") && table.contains("data-urls") && table.contains("verifies until"),
        "{table}"
    );
    let usage = cli.run(&["keys", "rotate", "--purpose", "signing"]);
    assert_eq!(usage.status.code(), Some(2));
}
