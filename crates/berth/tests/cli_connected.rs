//! `berth connected-registry`, run as a real process against a live root registry: the
//! hierarchy root -> `factory` (ReadWrite) -> `line3` (ReadOnly), every rule of SPEC §3 with
//! its message and exit code, sync tokens and their scope maps through the tree,
//! permissions, deletion with and without cleanup, connection strings, deactivation, and
//! the scale the product promises (1,000 connected registries, 1,000 client tokens).
//!
//! Each test starts its own registry and keeps its credentials file in its own temporary
//! directory (`BERTH_CONFIG_DIR`), so tests never see each other's logins.

mod common;

use std::time::Instant;

use common::Berth;
use common::cli::{Cli, field, first_column};
use serde_json::{Value, json};

/// The hierarchy of the brief: root -> `factory` (ReadWrite: hello-world, team/*) ->
/// `line3` (ReadOnly: team/app).
fn factory_and_line3(cli: &Cli) {
    cli.cr(&[
        "create",
        "--name",
        "factory",
        "--mode",
        "ReadWrite",
        "--repository",
        "hello-world",
        "team/*",
    ]);
    cli.cr(&[
        "create",
        "--name",
        "line3",
        "--parent",
        "factory",
        "--mode",
        "ReadOnly",
        "--repository",
        "team/app",
    ]);
}

/// The cells of a table row (columns are two or more spaces apart).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Names of a JSON array of objects.
fn names(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A scope map's rules as (repository or gateway, actions) pairs, sorted.
fn rules(map: &Value, kind: &str, key: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = map[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} in {map}"))
        .iter()
        .map(|r| {
            let mut actions: Vec<String> = r["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            actions.sort();
            (r[key].as_str().unwrap().to_owned(), actions)
        })
        .collect();
    out.sort();
    out
}

fn strings(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

const ALL_REPOSITORY_ACTIONS: &[&str] = &[
    "content/delete",
    "content/read",
    "content/write",
    "metadata/read",
    "metadata/write",
];
const READ_ACTIONS: &[&str] = &["content/read", "metadata/read"];
const GATEWAY_ACTIONS: &[&str] = &[
    "config/read",
    "config/write",
    "message/read",
    "message/write",
];

/// The sync scope map of connected registry `name`, as `berth scope-map show` gives it.
fn sync_map(cli: &Cli, name: &str) -> Value {
    cli.json(&[
        "scope-map",
        "show",
        "--name",
        &format!("{name}-sync-scope-map"),
    ])
}

#[test]
fn a_hierarchy_is_created_listed_and_shown() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);

    // factory: ReadWrite, two repositories given to one --repository.
    let (table, stderr) = cli.ok_with_stderr(&[
        "connected-registry",
        "create",
        "--name",
        "factory",
        "--mode",
        "ReadWrite",
        "--repository",
        "hello-world",
        "team/*",
    ]);
    assert_eq!(field(&table, "Name"), "factory");
    assert_eq!(field(&table, "Mode"), "ReadWrite");
    assert_eq!(field(&table, "Parent"), "(the root registry)");
    assert_eq!(field(&table, "Repositories"), "hello-world, team/*");
    assert_eq!(field(&table, "Sync token"), "factory-sync-token");
    assert_eq!(field(&table, "Sync schedule"), "* * * * * (continuous)");
    assert_eq!(field(&table, "Message TTL"), "P2D");
    assert!(
        stderr.contains("get-settings --name factory --generate-password 1"),
        "{stderr}"
    );

    // line3: ReadOnly under factory; shop7: the default mode, ReadOnly, under the root,
    // with a repeated --repository.
    let line3 = cli.cr(&[
        "create",
        "--name",
        "line3",
        "--parent",
        "factory",
        "--mode",
        "ReadOnly",
        "--repository",
        "team/app",
    ]);
    assert_eq!(line3["mode"], "ReadOnly");
    assert_eq!(line3["parent"], "factory");
    assert_eq!(line3["repositories"], json!(["team/app"]));
    let shop7 = cli.cr(&[
        "create",
        "--name",
        "shop7",
        "--repository",
        "hello-world",
        "--repository",
        "shop/*",
    ]);
    assert_eq!(shop7["mode"], "ReadOnly", "ReadOnly is the default mode");
    assert_eq!(shop7["parent"], Value::Null);
    assert_eq!(shop7["repositories"], json!(["hello-world", "shop/*"]));

    // list: every registry of the tree, by name, with the six columns.
    let list = cli.ok(&["connected-registry", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(
        cells(lines[0]),
        [
            "NAME",
            "MODE",
            "CONNECTION STATE",
            "PARENT",
            "LOGIN SERVER",
            "LAST SYNC"
        ],
        "{list}"
    );
    assert_eq!(lines.len(), 4, "{list}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["factory", "ReadWrite", "Offline", "-", "-", "-"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["line3", "ReadOnly", "Offline", "factory", "-", "-"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["shop7", "ReadOnly", "Offline", "-", "-", "-"]
    );
    assert_eq!(
        names(&cli.cr(&["list"])),
        ["factory", "line3", "shop7"],
        "json lists the same"
    );

    // --parent: the descendants; --no-children: direct children only (of the root without
    // --parent).
    assert_eq!(
        first_column(&cli.ok(&["connected-registry", "list", "--parent", "factory"])),
        ["line3"]
    );
    assert_eq!(
        names(&cli.cr(&["list", "--no-children"])),
        ["factory", "shop7"]
    );
    assert_eq!(
        names(&cli.cr(&["list", "--parent", "factory", "--no-children"])),
        ["line3"]
    );
    assert_eq!(
        names(&cli.cr(&["list", "--parent", "line3"])),
        Vec::<String>::new()
    );
    // A grandchild appears under --parent factory, not with --no-children.
    cli.cr(&[
        "create",
        "--name",
        "cell9",
        "--parent",
        "line3",
        "--repository",
        "team/app",
    ]);
    assert_eq!(
        names(&cli.cr(&["list", "--parent", "factory"])),
        ["cell9", "line3"]
    );
    assert_eq!(
        names(&cli.cr(&["list", "--parent", "factory", "--no-children"])),
        ["line3"]
    );
    cli.refused(
        &["connected-registry", "list", "--parent", "nosuchone"],
        &["nosuchone"],
    );

    // show: settings and status.
    let show = cli.ok(&["connected-registry", "show", "--name", "line3"]);
    for (label, value) in [
        ("Name", "line3"),
        ("Mode", "ReadOnly"),
        ("Parent", "factory"),
        ("Repositories", "team/app"),
        ("Sync token", "line3-sync-token"),
        ("Client tokens", "none"),
        ("Sync schedule", "* * * * * (continuous)"),
        ("Sync window", "-"),
        ("Message TTL", "P2D"),
        ("Log level", "Information"),
        ("Notifications", "none"),
        ("Activation", "Inactive"),
        ("Connection state", "Offline"),
        ("Last sync", "-"),
        ("Version", "-"),
        ("Login server", "-"),
        ("Status details", "none"),
    ] {
        assert_eq!(field(&show, label), value, "{label} in:\n{show}");
    }
    assert!(field(&show, "Created").ends_with('Z'), "{show}");
    let show = cli.cr(&["show", "--name", "line3"]);
    for key in [
        "name",
        "mode",
        "parent",
        "repositories",
        "sync_token",
        "client_tokens",
        "sync",
        "log_level",
        "notifications",
        "created_at",
        "activation",
        "connection_state",
        "last_sync",
        "status_details",
        "version",
        "login_server",
    ] {
        assert!(show.get(key).is_some(), "no `{key}` in {show}");
    }
    assert_eq!(show["activation"], "Inactive");
    assert_eq!(show["connection_state"], "Offline");
    assert_eq!(show["status_details"], json!([]));
    cli.refused(
        &["connected-registry", "show", "--name", "nosuchone"],
        &["nosuchone"],
    );

    // The sync token and its scope map, named after the registry.
    let token = cli.ok(&["token", "show", "--name", "factory-sync-token"]);
    assert_eq!(field(&token, "Scope map"), "factory-sync-scope-map");
    assert_eq!(field(&token, "Status"), "enabled");
    let token = cli.json(&["token", "show", "--name", "line3-sync-token"]);
    assert_eq!(token["scope_map"], "line3-sync-scope-map");

    // line3's map: its mode's actions on its repositories, the gateway actions on itself
    // and on cell9 (its child).
    let map = sync_map(&cli, "line3");
    assert_eq!(
        rules(&map, "repositories", "repository"),
        [("team/app".to_owned(), strings(READ_ACTIONS))]
    );
    assert_eq!(
        rules(&map, "gateways", "connected_registry"),
        [
            ("cell9".to_owned(), strings(GATEWAY_ACTIONS)),
            ("line3".to_owned(), strings(GATEWAY_ACTIONS)),
        ]
    );
    // factory's map is widened with its descendants' rights: line3's and cell9's gateway
    // actions and repositories.
    let map = sync_map(&cli, "factory");
    assert_eq!(
        rules(&map, "repositories", "repository"),
        [
            ("hello-world".to_owned(), strings(ALL_REPOSITORY_ACTIONS)),
            ("team/*".to_owned(), strings(ALL_REPOSITORY_ACTIONS)),
            ("team/app".to_owned(), strings(READ_ACTIONS)),
        ]
    );
    assert_eq!(
        rules(&map, "gateways", "connected_registry"),
        [
            ("cell9".to_owned(), strings(GATEWAY_ACTIONS)),
            ("factory".to_owned(), strings(GATEWAY_ACTIONS)),
            ("line3".to_owned(), strings(GATEWAY_ACTIONS)),
        ]
    );
    // shop7's map has nothing of factory's subtree.
    let map = sync_map(&cli, "shop7");
    assert_eq!(
        rules(&map, "gateways", "connected_registry"),
        [("shop7".to_owned(), strings(GATEWAY_ACTIONS))]
    );
    let scope_map_table = cli.ok(&["scope-map", "show", "--name", "factory-sync-scope-map"]);
    assert!(
        scope_map_table.lines().any(|l| cells(l)
            == [
                "line3",
                "config/read, config/write, message/read, message/write"
            ]),
        "{scope_map_table}"
    );

    // permissions show: the repositories and the same sync scope map.
    let permissions = cli.ok(&[
        "connected-registry",
        "permissions",
        "show",
        "--name",
        "factory",
    ]);
    assert_eq!(field(&permissions, "Repositories"), "hello-world, team/*");
    assert_eq!(field(&permissions, "Name"), "factory-sync-scope-map");
    assert!(
        permissions
            .lines()
            .any(|l| cells(l) == ["team/app", "content/read, metadata/read"]),
        "{permissions}"
    );
    let permissions = cli.cr(&["permissions", "show", "--name", "factory"]);
    assert_eq!(
        permissions["repositories"],
        json!(["hello-world", "team/*"])
    );
    assert_eq!(
        permissions["sync_scope_map"]["name"],
        "factory-sync-scope-map"
    );
}

#[test]
fn names_must_follow_the_rules_and_be_unique_in_the_whole_tree() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    factory_and_line3(&cli);

    let rule = "use 5 to 40 letters and digits, starting with a letter";
    let too_long = format!("a{}", "b".repeat(40));
    for bad in [
        "abcd",
        too_long.as_str(),
        "3line",
        "has-dash",
        "with_underscore",
    ] {
        cli.refused(
            &[
                "connected-registry",
                "create",
                "--name",
                bad,
                "--repository",
                "hello-world",
            ],
            &[&format!("connected registry name `{bad}` is invalid"), rule],
        );
    }
    // The limits themselves are fine.
    let forty = format!("a{}", "b".repeat(39));
    for good in ["abcde", forty.as_str()] {
        cli.cr(&["create", "--name", good, "--repository", "hello-world"]);
    }

    // Unique across the tree: under the root, and under another parent.
    cli.refused(
        &[
            "connected-registry",
            "create",
            "--name",
            "factory",
            "--repository",
            "hello-world",
        ],
        &["connected registry `factory` already exists in the hierarchy"],
    );
    cli.refused(
        &[
            "connected-registry",
            "create",
            "--name",
            "line3",
            "--repository",
            "hello-world",
        ],
        &["connected registry `line3` already exists in the hierarchy"],
    );
    cli.refused(
        &[
            "connected-registry",
            "create",
            "--name",
            "factory",
            "--parent",
            "line3",
            "--repository",
            "team/app",
        ],
        &["already exists in the hierarchy"],
    );
    // An unknown parent.
    cli.refused(
        &[
            "connected-registry",
            "create",
            "--name",
            "orphan",
            "--parent",
            "nosuchone",
            "--repository",
            "hello-world",
        ],
        &["nosuchone"],
    );
    // Nothing refused was created.
    assert_eq!(
        names(&cli.cr(&["list"])),
        strings(&["abcde", &forty, "factory", "line3"])
    );
}

#[test]
fn modes_repositories_and_client_tokens_follow_the_hierarchy_rules() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    factory_and_line3(&cli);

    // A ReadOnly parent only takes ReadOnly children.
    cli.refused(
        &[
            "connected-registry",
            "create",
            "--name",
            "cell9",
            "--parent",
            "line3",
            "--mode",
            "ReadWrite",
            "--repository",
            "team/app",
        ],
        &[
            "parent `line3` is ReadOnly",
            "a ReadOnly parent only takes ReadOnly children",
            "--mode ReadOnly",
        ],
    );
    // A ReadWrite parent takes both.
    cli.cr(&[
        "create",
        "--name",
        "line4",
        "--parent",
        "factory",
        "--mode",
        "ReadWrite",
        "--repository",
        "team/tools",
    ]);

    // A child's repositories must be within its parent's.
    for outside in ["other", "*", "team-x/app"] {
        cli.refused(
            &[
                "connected-registry",
                "create",
                "--name",
                "line5",
                "--parent",
                "factory",
                "--repository",
                "team/app",
                outside,
            ],
            &[
                &format!("repository `{outside}` is not synced by parent `factory`"),
                "a child's repositories must be within its parent's",
                &format!("permissions update --name factory --add {outside}"),
            ],
        );
    }
    cli.refused(
        &[
            "connected-registry",
            "create",
            "--name",
            "cell9",
            "--parent",
            "line3",
            "--repository",
            "team/*",
        ],
        &["repository `team/*` is not synced by parent `line3`"],
    );
    // Within: a name under a prefix, a narrower prefix.
    cli.cr(&[
        "create",
        "--name",
        "line5",
        "--parent",
        "factory",
        "--repository",
        "team/x/*",
        "hello-world",
    ]);

    // A ReadOnly registry only accepts read-only client tokens.
    cli.ok(&[
        "token",
        "create",
        "--name",
        "pusher",
        "--repository",
        "hello-world",
        "content/read,content/write",
        "--no-passwords",
    ]);
    cli.ok(&[
        "token",
        "create",
        "--name",
        "puller",
        "--scope-map",
        "_repositories_pull_metadata_read",
        "--no-passwords",
    ]);
    cli.ok(&[
        "token",
        "create",
        "--name",
        "builtin-pusher",
        "--scope-map",
        "_repositories_push",
        "--no-passwords",
    ]);
    cli.refused(
        &[
            "connected-registry",
            "update",
            "--name",
            "line3",
            "--add-client-tokens",
            "builtin-pusher",
        ],
        &[
            "a ReadOnly connected registry accepts only read-only client tokens",
            "token `builtin-pusher`",
            "content/write",
        ],
    );
    let expected = [
        "a ReadOnly connected registry accepts only read-only client tokens",
        "token `pusher`",
        "hello-world/content/write",
        "use a token whose scope map has only content/read and metadata/read",
    ];
    cli.refused(
        &[
            "connected-registry",
            "create",
            "--name",
            "shop7",
            "--repository",
            "hello-world",
            "--client-tokens",
            "puller",
            "pusher",
        ],
        &expected,
    );
    cli.refused(
        &[
            "connected-registry",
            "update",
            "--name",
            "line3",
            "--add-client-tokens",
            "pusher",
        ],
        &expected,
    );
    // The read-only one is accepted; a ReadWrite registry accepts both.
    let line3 = cli.cr(&["update", "--name", "line3", "--add-client-tokens", "puller"]);
    assert_eq!(line3["client_tokens"], json!(["puller"]));
    let factory = cli.cr(&[
        "update",
        "--name",
        "factory",
        "--add-client-tokens",
        "puller",
        "--add-client-tokens",
        "pusher",
    ]);
    assert_eq!(factory["client_tokens"], json!(["puller", "pusher"]));
    // Client tokens must exist, and be ordinary tokens.
    cli.refused(
        &[
            "connected-registry",
            "update",
            "--name",
            "factory",
            "--add-client-tokens",
            "nosuchtoken",
        ],
        &["nosuchtoken"],
    );
    cli.refused(
        &[
            "connected-registry",
            "update",
            "--name",
            "factory",
            "--add-client-tokens",
            "line3-sync-token",
        ],
        &["`line3-sync-token` is a sync token"],
    );

    // Repositories or an existing sync token, exactly one of them (a usage error).
    let stderr = cli.fails_silently(&["connected-registry", "create", "--name", "shop7"], 2);
    assert!(stderr.contains("--repository"), "{stderr}");
    assert!(stderr.contains("--sync-token"), "{stderr}");
    let stderr = cli.fails_silently(
        &[
            "connected-registry",
            "create",
            "--name",
            "shop7",
            "--repository",
            "x",
            "--sync-token",
            "puller",
        ],
        2,
    );
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let stderr = cli.fails_silently(
        &[
            "connected-registry",
            "create",
            "--name",
            "shop7",
            "--repository",
        ],
        2,
    );
    assert!(stderr.contains("--repository"), "{stderr}");

    // The mode is fixed at creation: update has no --mode, and a bad mode is a usage error.
    let stderr = cli.fails_silently(
        &[
            "connected-registry",
            "update",
            "--name",
            "line3",
            "--mode",
            "ReadWrite",
        ],
        2,
    );
    assert!(stderr.contains("unexpected argument '--mode'"), "{stderr}");
    let stderr = cli.fails_silently(
        &[
            "connected-registry",
            "create",
            "--name",
            "shop7",
            "--repository",
            "x",
            "--mode",
            "Mirror",
        ],
        2,
    );
    assert!(
        stderr.contains("ReadOnly") && stderr.contains("ReadWrite"),
        "{stderr}"
    );
    assert_eq!(cli.cr(&["show", "--name", "line3"])["mode"], "ReadOnly");

    // An existing token as the sync token: its scope map's repositories are synced.
    cli.ok(&[
        "token",
        "create",
        "--name",
        "own-sync",
        "--repository",
        "hello-world",
        "content/read",
        "--no-passwords",
    ]);
    let shop7 = cli.cr(&["create", "--name", "shop7", "--sync-token", "own-sync"]);
    assert_eq!(shop7["sync_token"], "own-sync");
    assert_eq!(shop7["repositories"], json!(["hello-world"]));
    cli.refused(
        &[
            "connected-registry",
            "create",
            "--name",
            "shop8",
            "--sync-token",
            "own-sync",
        ],
        &["already the sync token of another connected registry"],
    );
}

#[test]
fn schedules_windows_ttls_and_notifications_are_checked() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    factory_and_line3(&cli);
    fn create<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "connected-registry",
            "create",
            "--name",
            "shop7",
            "--repository",
            "hello-world",
        ];
        args.extend(extra);
        args
    }
    fn update<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["connected-registry", "update", "--name", "factory"];
        args.extend(extra);
        args
    }

    // Cron: five fields, valid values; on create and on update.
    for args in [
        create(&["--sync-schedule", "0 0 * * * *"]),
        update(&["--sync-schedule", "0 0 * * * *"]),
    ] {
        cli.refused(
            &args,
            &[
                "sync schedule `0 0 * * * *` has 6 fields",
                "use a 5-field cron expression",
                "`* * * * *` to sync continuously",
            ],
        );
    }
    cli.refused(&create(&["--sync-schedule", "0 0 *"]), &["has 3 fields"]);
    // Each field's range is named, not the cron library's words.
    for (bad, says) in [
        (
            "61 * * * *",
            "minute `61` is out of range; the minute field takes 0 to 59",
        ),
        (
            "0 25 * * *",
            "hour `25` is out of range; the hour field takes 0 to 23",
        ),
        (
            "* * 32 * *",
            "day of month `32` is out of range; the day of month field takes 1 to 31",
        ),
        (
            "* * * 13 *",
            "month `13` is out of range; the month field takes 1 to 12",
        ),
        (
            "*/0 * * * *",
            "the step `/0` of the minute field must be 1 to 59",
        ),
        ("x * * * *", "is not a valid cron expression"),
    ] {
        let out = cli.refused(&update(&["--sync-schedule", bad]), &[says]);
        assert!(
            !out.contains("Component error") && !out.contains("Number out of bounds"),
            "{out}"
        );
    }
    // A schedule that never fires is refused, with a window or without.
    for never in ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
        cli.refused(
            &update(&["--sync-schedule", never, "--sync-window", "PT1H"]),
            &[&format!("sync schedule `{never}` never fires")],
        );
        cli.refused(
            &create(&["--sync-schedule", never]),
            &["never fires: no date matches it"],
        );
    }
    cli.ok(&update(&[
        "--sync-schedule",
        "0 0 29 2 *",
        "--sync-window",
        "PT1H",
    ]));
    cli.ok(&update(&[
        "--sync-schedule",
        "* * * * *",
        "--sync-window",
        "",
    ]));

    // A window only with a non-continuous schedule.
    for args in [
        create(&["--sync-window", "PT3H"]),
        create(&["--sync-schedule", "* * * * *", "--sync-window", "PT3H"]),
        update(&["--sync-window", "PT3H"]),
    ] {
        cli.refused(
            &args,
            &[
                "a sync window only applies to a scheduled sync",
                "set --sync-schedule to a cron expression other than `* * * * *`, or drop --sync-window",
            ],
        );
    }
    // Window: 1 hour to 7 days, ISO-8601.
    for bad in ["PT59M", "PT30M", "P8D", "P7DT1H"] {
        cli.refused(
            &create(&["--sync-schedule", "0 */2 * * *", "--sync-window", bad]),
            &[
                &format!("sync window `{bad}` is out of range"),
                "use 1 hour to 7 days",
            ],
        );
    }
    cli.refused(
        &create(&["--sync-schedule", "0 */2 * * *", "--sync-window", "3h"]),
        &["sync window `3h` is not an ISO-8601 duration"],
    );
    // TTL: 1 to 90 days.
    for bad in ["PT12H", "PT23H59M", "P91D"] {
        cli.refused(
            &create(&["--sync-message-ttl", bad]),
            &[
                &format!("message TTL `{bad}` is out of range"),
                "use 1 to 90 days",
            ],
        );
        cli.refused(&update(&["--sync-message-ttl", bad]), &["use 1 to 90 days"]);
    }
    cli.refused(
        &create(&["--sync-message-ttl", "2 days"]),
        &["message TTL `2 days` is not an ISO-8601 duration"],
    );

    // Notification patterns.
    for bad in [
        "*",
        "hello:pull",
        "hello world:push",
        ":push",
        "a:b:c:d:push",
    ] {
        cli.refused(
            &create(&["--notifications", "*:*", bad]),
            &[
                &format!("notification pattern `{bad}` is invalid"),
                "repository[:tag][@digest]:push|delete",
            ],
        );
        cli.refused(
            &update(&["--add-notifications", bad]),
            &[&format!("notification pattern `{bad}` is invalid")],
        );
    }

    // A log level is one of five (a usage error otherwise).
    let stderr = cli.fails_silently(&create(&["--log-level", "Verbose"]), 2);
    assert!(stderr.contains("Information"), "{stderr}");

    // Nothing refused changed anything.
    assert_eq!(names(&cli.cr(&["list"])), ["factory", "line3"]);
    let factory = cli.cr(&["show", "--name", "factory"]);
    assert_eq!(
        factory["sync"],
        json!({"schedule": "* * * * *", "window": null, "message_ttl": "P2D", "bandwidth": null, "concurrency": 4})
    );
    assert_eq!(factory["notifications"], json!([]));

    // The limits themselves, and good patterns, are accepted.
    let shop7 = cli.cr(&[
        "create",
        "--name",
        "shop7",
        "--repository",
        "hello-world",
        "--sync-schedule",
        "0 */2 * * *",
        "--sync-window",
        "PT1H",
        "--sync-message-ttl",
        "P90D",
        "--log-level",
        "warning",
        "--notifications",
        "*:*",
        "hello-world:v1:push",
        "--notifications",
        "team/*@sha256:*:delete",
    ]);
    assert_eq!(
        shop7["sync"],
        json!({"schedule": "0 */2 * * *", "window": "PT1H", "message_ttl": "P90D", "bandwidth": null, "concurrency": 4})
    );
    assert_eq!(shop7["log_level"], "Warning");
    assert_eq!(
        shop7["notifications"],
        json!(["*:*", "hello-world:v1:push", "team/*@sha256:*:delete"])
    );
    let shop7 = cli.cr(&[
        "update",
        "--name",
        "shop7",
        "--sync-window",
        "P7D",
        "--sync-message-ttl",
        "P1D",
    ]);
    assert_eq!(shop7["sync"]["window"], "P7D");
    assert_eq!(shop7["sync"]["message_ttl"], "P1D");
    let show = cli.ok(&["connected-registry", "show", "--name", "shop7"]);
    assert_eq!(field(&show, "Sync schedule"), "0 */2 * * *");
    assert_eq!(field(&show, "Sync window"), "P7D");
    assert_eq!(
        field(&show, "Notifications"),
        "*:*, hello-world:v1:push, team/*@sha256:*:delete"
    );
}

#[test]
fn update_changes_client_tokens_and_settings() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    for name in ["reader1", "reader2", "reader3"] {
        cli.ok(&[
            "token",
            "create",
            "--name",
            name,
            "--scope-map",
            "_repositories_pull",
        ]);
    }
    let factory = cli.cr(&[
        "create",
        "--name",
        "factory",
        "--repository",
        "hello-world",
        "--client-tokens",
        "reader1",
        "reader2",
        "--sync-schedule",
        "0 */2 * * *",
        "--sync-window",
        "PT3H",
        "--sync-message-ttl",
        "P7D",
        "--log-level",
        "Error",
        "--notifications",
        "*:*",
    ]);
    assert_eq!(factory["client_tokens"], json!(["reader1", "reader2"]));

    // list-client-tokens: the same table as `token list`.
    let tokens = cli.ok(&[
        "connected-registry",
        "list-client-tokens",
        "--name",
        "factory",
    ]);
    let token_list = cli.ok(&["token", "list"]);
    assert_eq!(
        cells(tokens.lines().next().unwrap()),
        cells(token_list.lines().next().unwrap()),
        "same columns as token list"
    );
    assert_eq!(
        cells(tokens.lines().next().unwrap()),
        [
            "NAME",
            "SCOPE MAP",
            "STATUS",
            "PASSWORD1 EXPIRY",
            "PASSWORD2 EXPIRY",
            "CREATED"
        ]
    );
    assert_eq!(first_column(&tokens), ["reader1", "reader2"]);
    for line in tokens.lines().skip(1) {
        assert!(
            token_list.lines().any(|l| cells(l) == cells(line)),
            "`{line}` is not as in token list:\n{token_list}"
        );
    }
    assert_eq!(
        names(&cli.cr(&["list-client-tokens", "--name", "factory"])),
        ["reader1", "reader2"]
    );

    // Add and remove in one update; everything else at once too.
    let factory = cli.cr(&[
        "update",
        "--name",
        "factory",
        "--add-client-tokens",
        "reader3",
        "--remove-client-tokens",
        "reader1",
        "--sync-schedule",
        "* * * * *",
        "--sync-window",
        "",
        "--sync-message-ttl",
        "P3D",
        "--log-level",
        "Debug",
        "--add-notifications",
        "hello-world:v1:push",
        "hello-world:*:delete",
        "--remove-notifications",
        "*:*",
    ]);
    assert_eq!(factory["client_tokens"], json!(["reader2", "reader3"]));
    assert_eq!(
        factory["sync"],
        json!({"schedule": "* * * * *", "window": null, "message_ttl": "P3D", "bandwidth": null, "concurrency": 4})
    );
    assert_eq!(factory["log_level"], "Debug");
    assert_eq!(
        factory["notifications"],
        json!(["hello-world:v1:push", "hello-world:*:delete"])
    );
    let table = cli.ok(&["connected-registry", "show", "--name", "factory"]);
    assert_eq!(field(&table, "Client tokens"), "reader2, reader3");
    assert_eq!(field(&table, "Sync schedule"), "* * * * * (continuous)");
    assert_eq!(field(&table, "Sync window"), "-");
    assert_eq!(field(&table, "Log level"), "Debug");

    // Deleting a client token takes it off the list.
    cli.ok(&["token", "delete", "--name", "reader3", "--yes"]);
    assert_eq!(
        first_column(&cli.ok(&[
            "connected-registry",
            "list-client-tokens",
            "--name",
            "factory"
        ])),
        ["reader2"]
    );

    // Nothing to update is a usage error that names the flags.
    let stderr = cli.fails_silently(&["connected-registry", "update", "--name", "factory"], 2);
    assert!(stderr.contains("nothing to update"), "{stderr}");
    assert!(stderr.contains("--add-client-tokens"), "{stderr}");
    // Unknown registry.
    cli.refused(
        &[
            "connected-registry",
            "update",
            "--name",
            "nosuchone",
            "--log-level",
            "Debug",
        ],
        &["nosuchone"],
    );
    cli.refused(
        &[
            "connected-registry",
            "list-client-tokens",
            "--name",
            "nosuchone",
        ],
        &["nosuchone"],
    );
}

#[test]
fn permissions_flow_up_to_ancestors_and_down_to_descendants() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    factory_and_line3(&cli);
    cli.cr(&[
        "create",
        "--name",
        "cell9",
        "--parent",
        "line3",
        "--repository",
        "team/app",
    ]);

    // --add on cell9 reaches line3 and factory (several values, repeated flag).
    let table = cli.ok(&[
        "connected-registry",
        "permissions",
        "update",
        "--name",
        "cell9",
        "--add",
        "extra/one",
        "extra/two",
        "--add",
        "extra/three",
    ]);
    assert_eq!(
        field(&table, "Repositories"),
        "team/app, extra/one, extra/two, extra/three"
    );
    for name in ["line3", "factory"] {
        let repositories = cli.cr(&["permissions", "show", "--name", name])["repositories"].clone();
        for added in ["extra/one", "extra/two", "extra/three"] {
            assert!(
                repositories.as_array().unwrap().contains(&json!(added)),
                "{name}: {repositories}"
            );
        }
    }
    // The sync scope maps follow: factory (ReadWrite) holds all five actions on them,
    // line3 (ReadOnly) the read ones.
    let factory_rules = rules(&sync_map(&cli, "factory"), "repositories", "repository");
    assert!(factory_rules.contains(&("extra/one".to_owned(), strings(ALL_REPOSITORY_ACTIONS))));
    let line3_rules = rules(&sync_map(&cli, "line3"), "repositories", "repository");
    assert!(line3_rules.contains(&("extra/two".to_owned(), strings(READ_ACTIONS))));

    // --remove on factory reaches line3 and cell9.
    let permissions = cli.cr(&[
        "permissions",
        "update",
        "--name",
        "factory",
        "--remove",
        "extra/one",
        "extra/three",
    ]);
    assert_eq!(
        permissions["repositories"],
        json!(["hello-world", "team/*", "extra/two"])
    );
    for name in ["line3", "cell9"] {
        assert_eq!(
            cli.cr(&["show", "--name", name])["repositories"],
            json!(["team/app", "extra/two"]),
            "{name}"
        );
    }
    for name in ["factory", "line3", "cell9"] {
        let repositories: Vec<String> = rules(&sync_map(&cli, name), "repositories", "repository")
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert!(
            !repositories.contains(&"extra/one".to_owned())
                && !repositories.contains(&"extra/three".to_owned()),
            "{name}: {repositories:?}"
        );
        assert!(repositories.contains(&"extra/two".to_owned()), "{name}");
    }
    // --remove on line3 does not reach its parent.
    cli.cr(&[
        "permissions",
        "update",
        "--name",
        "line3",
        "--remove",
        "extra/two",
    ]);
    assert_eq!(
        cli.cr(&["show", "--name", "factory"])["repositories"],
        json!(["hello-world", "team/*", "extra/two"])
    );
    assert_eq!(
        cli.cr(&["show", "--name", "cell9"])["repositories"],
        json!(["team/app"])
    );

    // Usage and refusals.
    let stderr = cli.fails_silently(
        &[
            "connected-registry",
            "permissions",
            "update",
            "--name",
            "line3",
        ],
        2,
    );
    assert!(
        stderr.contains("--add") && stderr.contains("--remove"),
        "{stderr}"
    );
    cli.refused(
        &[
            "connected-registry",
            "permissions",
            "update",
            "--name",
            "nosuchone",
            "--add",
            "x",
        ],
        &["nosuchone"],
    );
    cli.refused(
        &[
            "connected-registry",
            "permissions",
            "update",
            "--name",
            "line3",
            "--add",
            "team/**",
        ],
        &["team/**"],
    );
}

#[test]
fn deleting_keeps_the_tree_and_the_sync_tokens_consistent() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    factory_and_line3(&cli);

    // A parent with children cannot go.
    cli.refused(
        &[
            "connected-registry",
            "delete",
            "--name",
            "factory",
            "--cleanup",
            "--yes",
        ],
        &[
            "connected registry `factory` has children (line3)",
            "delete them first",
        ],
    );
    // A sync token cannot be deleted while its connected registry exists.
    cli.refused(
        &["token", "delete", "--name", "line3-sync-token", "--yes"],
        &[
            "token `line3-sync-token` is the sync token of connected registry `line3`",
            "connected-registry delete --cleanup",
        ],
    );
    cli.refused(
        &[
            "scope-map",
            "delete",
            "--name",
            "line3-sync-scope-map",
            "--yes",
        ],
        &["line3-sync-scope-map"],
    );
    // Not without confirmation when nobody can be asked.
    let stderr = cli.fails_silently(&["connected-registry", "delete", "--name", "line3"], 2);
    assert!(stderr.contains("--yes"), "{stderr}");
    cli.refused(
        &[
            "connected-registry",
            "delete",
            "--name",
            "nosuchone",
            "--yes",
        ],
        &["nosuchone"],
    );

    // --cleanup: the sync token and scope map go, and factory's map is narrowed.
    let out = cli.ok(&[
        "connected-registry",
        "delete",
        "--name",
        "line3",
        "--cleanup",
        "--yes",
    ]);
    assert!(out.contains("Deleted connected registry `line3`"), "{out}");
    assert!(!out.contains("berth token delete"), "{out}");
    cli.refused(
        &["token", "show", "--name", "line3-sync-token"],
        &["line3-sync-token"],
    );
    cli.refused(
        &["scope-map", "show", "--name", "line3-sync-scope-map"],
        &["line3-sync-scope-map"],
    );
    let map = sync_map(&cli, "factory");
    assert_eq!(
        rules(&map, "gateways", "connected_registry"),
        [("factory".to_owned(), strings(GATEWAY_ACTIONS))]
    );
    assert_eq!(
        rules(&map, "repositories", "repository"),
        [
            ("hello-world".to_owned(), strings(ALL_REPOSITORY_ACTIONS)),
            ("team/*".to_owned(), strings(ALL_REPOSITORY_ACTIONS)),
        ]
    );
    assert_eq!(names(&cli.cr(&["list"])), ["factory"]);

    // The name is free again. Without --cleanup, the leftovers are listed with the
    // commands that remove them, and those commands work.
    cli.cr(&[
        "create",
        "--name",
        "line3",
        "--parent",
        "factory",
        "--repository",
        "team/app",
    ]);
    let out = cli.ok(&["connected-registry", "delete", "--name", "line3", "--yes"]);
    assert!(out.contains("Deleted connected registry `line3`."), "{out}");
    assert!(
        out.contains("sync token `line3-sync-token` and sync scope map `line3-sync-scope-map`"),
        "{out}"
    );
    assert!(out.contains("the token keeps its rights"), "{out}");
    assert!(out.contains("--cleanup"), "{out}");
    let commands: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("berth "))
        .collect();
    assert_eq!(
        commands,
        [
            "berth token delete --name line3-sync-token --yes",
            "berth scope-map delete --name line3-sync-scope-map --yes",
        ],
        "{out}"
    );
    assert_eq!(names(&cli.cr(&["list"])), ["factory"]);
    cli.ok(&["token", "show", "--name", "line3-sync-token"]);
    for command in commands {
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        cli.ok(&args);
    }
    cli.refused(
        &["token", "show", "--name", "line3-sync-token"],
        &["line3-sync-token"],
    );

    // -o json: the API's leftovers.
    cli.cr(&["create", "--name", "shop7", "--repository", "hello-world"]);
    let leftovers = cli.cr(&["delete", "--name", "shop7", "--yes"]);
    assert_eq!(
        leftovers,
        json!({"tokens": ["shop7-sync-token"], "scope_maps": ["shop7-sync-scope-map"]})
    );
    cli.cr(&["create", "--name", "shop8", "--repository", "hello-world"]);
    let leftovers = cli.cr(&["delete", "--name", "shop8", "--cleanup", "--yes"]);
    assert_eq!(leftovers, json!({"tokens": [], "scope_maps": []}));

    // The last one, with cleanup.
    cli.ok(&[
        "connected-registry",
        "delete",
        "--name",
        "factory",
        "--cleanup",
        "--yes",
    ]);
    assert_eq!(names(&cli.cr(&["list"])), Vec::<String>::new());
    assert_eq!(
        cli.ok(&["connected-registry", "list"]).lines().count(),
        1,
        "only the header"
    );
}

/// Splits a connection string on `;`, then each field on its first `=`.
fn parse_connection_string(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .map(|field| {
            let (name, value) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("field `{field}` has no `=` in {text}"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The status of `GET /oauth2/token` with Basic credentials, as `docker login` asks.
fn oauth_status(berth: &Berth, user: &str, password: &str) -> u16 {
    berth_server::tls::install_crypto_provider();
    reqwest::blocking::Client::new()
        .get(format!(
            "{}/oauth2/token?service={}&scope=repository:hello-world:pull",
            berth.url, berth.host
        ))
        .basic_auth(user, Some(password))
        .send()
        .expect("send a request")
        .status()
        .as_u16()
}

#[test]
fn get_settings_prints_a_connection_string_whose_password_works() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    factory_and_line3(&cli);

    // Without --generate-password: a placeholder that says how to get one; https.
    let (out, stderr) =
        cli.ok_with_stderr(&["connected-registry", "get-settings", "--name", "factory"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let fields = parse_connection_string(out.trim_end());
    let field_names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        field_names,
        [
            "ConnectedRegistryName",
            "SyncTokenName",
            "SyncTokenPassword",
            "ParentGatewayEndpoint",
            "ParentEndpointProtocol"
        ]
    );
    assert_eq!(fields[0].1, "factory");
    assert_eq!(fields[1].1, "factory-sync-token");
    assert!(fields[2].1.contains("--generate-password"), "{out}");
    assert_eq!(fields[3].1, berth.host);
    assert_eq!(fields[4].1, "https");
    assert!(stderr.contains("--generate-password 1"), "{stderr}");
    // No password was made.
    let token = cli.json(&["token", "show", "--name", "factory-sync-token"]);
    assert_eq!(token["passwords"], json!([]));

    // With --generate-password 1: a password that logs in, shown once.
    let (out, stderr) = cli.ok_with_stderr(&[
        "connected-registry",
        "get-settings",
        "--name",
        "factory",
        "--parent-protocol",
        "http",
        "--generate-password",
        "1",
    ]);
    let fields = parse_connection_string(out.trim_end());
    let values: Vec<&str> = fields.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values[0], "factory");
    assert_eq!(values[1], "factory-sync-token");
    assert_eq!(values[3], berth.host);
    assert_eq!(values[4], "http");
    let password1 = values[2].to_owned();
    assert!(password1.len() >= 32, "{password1}");
    assert!(stderr.contains("cannot show it again"), "{stderr}");
    assert!(stderr.contains("password1"), "{stderr}");
    assert!(!stderr.contains(&password1), "the password only on stdout");
    assert_eq!(oauth_status(&berth, "factory-sync-token", &password1), 200);
    assert_eq!(oauth_status(&berth, "factory-sync-token", "wrong"), 401);

    // -o json: the API's answer; slot 2 leaves slot 1 working.
    let settings = cli.cr(&[
        "get-settings",
        "--name",
        "factory",
        "--generate-password",
        "2",
    ]);
    assert_eq!(settings["sync_token"], "factory-sync-token");
    assert_eq!(settings["password"]["name"], "password2");
    let password2 = settings["password"]["value"].as_str().unwrap().to_owned();
    let fields = parse_connection_string(settings["connection_string"].as_str().unwrap());
    assert_eq!(fields[2].1, password2);
    assert_eq!(fields[4].1, "https", "https is the default");
    assert_eq!(oauth_status(&berth, "factory-sync-token", &password2), 200);
    assert_eq!(oauth_status(&berth, "factory-sync-token", &password1), 200);
    // Regenerating slot 1 retires the old password1.
    let settings = cli.cr(&[
        "get-settings",
        "--name",
        "factory",
        "--generate-password",
        "1",
    ]);
    let new1 = settings["password"]["value"].as_str().unwrap();
    assert_eq!(oauth_status(&berth, "factory-sync-token", &password1), 401);
    assert_eq!(oauth_status(&berth, "factory-sync-token", new1), 200);
    let settings = cli.cr(&["get-settings", "--name", "factory"]);
    assert_eq!(settings["password"], Value::Null);

    // A nested child's parent endpoint is its parent instance's address; until that
    // instance reports one, get-settings refuses (see connected_ops.rs) unless it is named.
    cli.refused(
        &["connected-registry", "get-settings", "--name", "line3"],
        &["factory", "--parent-gateway-endpoint"],
    );
    let out = cli.ok(&[
        "connected-registry",
        "get-settings",
        "--name",
        "line3",
        "--parent-gateway-endpoint",
        "factory.site:5001",
    ]);
    let fields = parse_connection_string(out.trim_end());
    assert_eq!(fields[0].1, "line3");
    assert_eq!(fields[1].1, "line3-sync-token");
    assert_eq!(fields[3].1, "factory.site:5001", "{out}");

    // Usage errors and refusals.
    for (flag, value) in [("--generate-password", "3"), ("--parent-protocol", "ftp")] {
        let stderr = cli.fails_silently(
            &[
                "connected-registry",
                "get-settings",
                "--name",
                "factory",
                flag,
                value,
            ],
            2,
        );
        assert!(stderr.contains(flag), "{stderr}");
    }
    cli.refused(
        &["connected-registry", "get-settings", "--name", "nosuchone"],
        &["nosuchone"],
    );
}

#[test]
fn deactivate_resets_an_inactive_registry_too() {
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    factory_and_line3(&cli);

    let out = cli.ok(&[
        "connected-registry",
        "deactivate",
        "--name",
        "factory",
        "--yes",
    ]);
    assert!(
        out.contains("Deactivated connected registry `factory`"),
        "{out}"
    );
    let factory = cli.cr(&["deactivate", "--name", "factory", "--yes"]);
    assert_eq!(factory["activation"], "Inactive");
    assert_eq!(factory["connection_state"], "Offline");
    // Settings are untouched.
    assert_eq!(factory["repositories"], json!(["hello-world", "team/*"]));
    assert_eq!(names(&cli.cr(&["list"])), ["factory", "line3"]);

    let stderr = cli.fails_silently(
        &["connected-registry", "deactivate", "--name", "factory"],
        2,
    );
    assert!(stderr.contains("--yes"), "{stderr}");
    cli.refused(
        &[
            "connected-registry",
            "deactivate",
            "--name",
            "nosuchone",
            "--yes",
        ],
        &["nosuchone"],
    );
}

/// `POST /berth/v1/<path>` as the admin; panics unless 201.
fn api_create(client: &reqwest::blocking::Client, berth: &Berth, path: &str, body: &Value) {
    let response = client
        .post(format!("{}/berth/v1/{path}", berth.url))
        .json(body)
        .send()
        .expect("send a request");
    let status = response.status();
    assert_eq!(
        status.as_u16(),
        201,
        "POST {path} {body}: {}",
        response.text().unwrap_or_default()
    );
}

#[test]
fn a_connected_registry_accepts_a_thousand_client_tokens() {
    const TOKENS: usize = 1000;
    const BATCH: usize = 250;
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    factory_and_line3(&cli);
    let client = common::admin_client();

    let start = Instant::now();
    let tokens: Vec<String> = (0..TOKENS).map(|i| format!("client-{i:04}")).collect();
    for name in &tokens {
        api_create(
            &client,
            &berth,
            "tokens",
            &json!({"name": name, "scope_map": "_repositories_pull", "no_passwords": true}),
        );
    }
    let created = start.elapsed();

    // Added to line3 (ReadOnly: each is checked to be read-only) in batches.
    let start = Instant::now();
    for batch in tokens.chunks(BATCH) {
        let mut args = vec!["connected-registry", "update", "--name", "line3"];
        args.push("--add-client-tokens");
        args.extend(batch.iter().map(String::as_str));
        cli.ok(&args);
    }
    let added = start.elapsed();

    let start = Instant::now();
    let table = cli.ok(&[
        "connected-registry",
        "list-client-tokens",
        "--name",
        "line3",
    ]);
    let listed = start.elapsed();
    assert_eq!(table.lines().count(), TOKENS + 1, "header and one row each");
    assert_eq!(first_column(&table), tokens);
    assert_eq!(
        names(&cli.cr(&["list-client-tokens", "--name", "line3"])).len(),
        TOKENS
    );
    let show = cli.ok(&["connected-registry", "show", "--name", "line3"]);
    assert_eq!(
        field(&show, "Client tokens"),
        "1000 tokens (berth connected-registry list-client-tokens --name line3)"
    );
    // One more removed and added again.
    let line3 = cli.cr(&[
        "update",
        "--name",
        "line3",
        "--remove-client-tokens",
        "client-0500",
    ]);
    assert_eq!(line3["client_tokens"].as_array().unwrap().len(), TOKENS - 1);
    eprintln!(
        "{TOKENS} tokens: created through the API in {created:?}, added with {} `update --add-client-tokens` in {added:?}, listed in {listed:?}",
        TOKENS / BATCH
    );
}

#[test]
fn a_root_holds_a_thousand_connected_registries() {
    const REGISTRIES: usize = 1000;
    let berth = Berth::start();
    let cli = Cli::logged_in(&berth);
    let client = common::admin_client();

    let start = Instant::now();
    let mut slowest = std::time::Duration::ZERO;
    let names_created: Vec<String> = (0..REGISTRIES).map(|i| format!("edge{i:04}")).collect();
    for (i, name) in names_created.iter().enumerate() {
        let one = Instant::now();
        api_create(
            &client,
            &berth,
            "connected-registries",
            &json!({"name": name, "repositories": [format!("site{i}/*"), "hello-world"]}),
        );
        slowest = slowest.max(one.elapsed());
    }
    let created = start.elapsed();

    let start = Instant::now();
    let table = cli.ok(&["connected-registry", "list"]);
    let listed = start.elapsed();
    assert_eq!(
        table.lines().count(),
        REGISTRIES + 1,
        "header and one row each"
    );
    assert_eq!(first_column(&table), names_created);
    assert_eq!(names(&cli.cr(&["list", "--no-children"])).len(), REGISTRIES);
    // The tree still works at this size: a child, found under its parent.
    cli.cr(&[
        "create",
        "--name",
        "child",
        "--parent",
        "edge0999",
        "--repository",
        "site999/app",
    ]);
    assert_eq!(names(&cli.cr(&["list", "--parent", "edge0999"])), ["child"]);
    let show = cli.cr(&["show", "--name", "edge0500"]);
    assert_eq!(show["sync_token"], "edge0500-sync-token");
    eprintln!(
        "{REGISTRIES} connected registries created through the API in {created:?} (slowest {slowest:?}), listed by the CLI in {listed:?}"
    );
}
