//! Who may do what, checked through the HTTP API (issue 3, SPEC §2).
//!
//! Each test starts its own registry, pushes a small image as the admin to five
//! repositories chosen to probe the wildcard rules (`team/app`, `team`, `team/sub/deep`,
//! `teamother/x`, `other`), creates scope maps and tokens through the management API, and
//! then, for each caller, tries every operation on every repository twice: once with Basic
//! credentials sent straight to `/v2/`, once with a Bearer access token obtained from
//! `/oauth2/token` for every action on every repository (whose `access` claim must hold
//! exactly the granted actions). The operations and the action each needs:
//!
//! | operation                                   | action           | allowed  |
//! |---------------------------------------------|------------------|----------|
//! | `GET /v2/<r>/manifests/v1`                  | content/read     | 200      |
//! | `GET /v2/<r>/blobs/<layer>`                 | content/read     | 200      |
//! | `GET /v2/<r>/tags/list`                     | metadata/read    | 200      |
//! | `POST /v2/<r>/blobs/uploads/` + `PUT …?digest=` | content/write | 202, 201 |
//! | `PUT /v2/<r>/manifests/<tag>`               | content/write    | 201      |
//! | `DELETE /v2/<r>/manifests/<digest>`         | content/delete   | 202      |
//! | `GET /v2/_catalog`                          | lists exactly the repositories with content/read | 200 |
//!
//! A refused operation must be `403 DENIED` for an authenticated caller (and must change
//! nothing), `401` with a `WWW-Authenticate: Bearer` challenge when credentials are missing
//! or wrong. Matrix tests report every wrong cell at once.
//!
//! Then token states (disabled, expired, password rotated, deleted: refused on the very next
//! request, Basic and Bearer alike), anonymous pull, the token endpoint's handling of
//! ungranted actions, the 401 detail, login rate limiting, secrets kept out of the log, and
//! the modes of the key and database files.

mod authn;
mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use authn::{
    Cred, Manage, Resp, Spawned, TestImage, access_token_of, basic_token, client, expect_challenge,
    expect_error, expect_repository_challenge, expect_status, form_encode, get_token, jwt_access,
    jwt_payload, poll_until, push_as_admin, put_manifest, send, upload_blob, utc_in,
};
use berth_oci::time::unix_now;
use reqwest::blocking::Client;
use serde_json::json;

const READ: &str = "content/read";
const WRITE: &str = "content/write";
const DELETE: &str = "content/delete";
const META_READ: &str = "metadata/read";
const META_WRITE: &str = "metadata/write";
const ALL_ACTIONS: [&str; 5] = [READ, WRITE, DELETE, META_READ, META_WRITE];

/// The repositories every matrix test probes.
const REPOS: [&str; 5] = ["team/app", "team", "team/sub/deep", "teamother/x", "other"];

/// Every Docker scope action, requested for every repository in the Bearer half.
const EVERY_DOCKER_ACTION: &str = "pull,push,delete,metadata_read,metadata_write";

/// The Docker token name of a scope-map action.
fn docker_name(action: &str) -> &'static str {
    match action {
        READ => "pull",
        WRITE => "push",
        DELETE => "delete",
        META_READ => "metadata_read",
        META_WRITE => "metadata_write",
        other => panic!("unknown action {other}"),
    }
}

/// A registry with the test image pushed to every repository of [`REPOS`] as `v1`.
struct Fixture {
    berth: common::Berth,
    http: Client,
    manage: Manage,
    image: TestImage,
    /// Uploaded by callers that may push.
    pushed_blob: Vec<u8>,
    pushes: std::cell::Cell<u32>,
}

impl Fixture {
    fn start() -> Self {
        let berth = common::Berth::start();
        let http = client();
        let manage = Manage::new(&berth.url);
        let image = TestImage::new("matrix");
        for repo in REPOS {
            push_as_admin(&http, &berth.url, repo, "v1", &image);
        }
        Fixture {
            manage,
            http,
            image,
            pushed_blob: b"a blob pushed by a token".to_vec(),
            pushes: std::cell::Cell::new(0),
            berth,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.berth.url)
    }

    fn send(&self, method: &str, path: &str, cred: &Cred, headers: &[(&str, &str)]) -> Resp {
        send(&self.http, method, &self.url(path), cred, headers, None)
    }

    fn get(&self, path: &str, cred: &Cred) -> Resp {
        self.send("GET", path, cred, &[("Accept", authn::OCI_MANIFEST)])
    }

    /// Puts `v1` back in every repository (a permitted delete removed it).
    fn reseed(&self) {
        for repo in REPOS {
            let resp = put_manifest(
                &self.http,
                &self.berth.url,
                &Cred::admin(),
                repo,
                "v1",
                &self.image.manifest,
            );
            expect_status(&resp, 201, &format!("admin: re-pushing {repo}:v1"));
        }
    }

    /// A token on a new scope map with `rules`; returns its passwords.
    fn token(&self, name: &str, rules: &[(&str, &[&str])]) -> authn::TokenPasswords {
        let map = format!("{name}-map");
        self.manage.create_scope_map(&map, rules);
        self.manage.create_token(name, &map, None)
    }

    /// A Bearer token for `user`, asking for every action on every repository and the
    /// catalog; records in `wrong` if its `access` claim does not grant exactly `expected`.
    fn bearer(
        &self,
        wrong: &mut Vec<String>,
        who: &str,
        user: &str,
        password: &str,
        expected: &[(&str, &[&str])],
    ) -> Cred {
        let scopes: Vec<String> = REPOS
            .iter()
            .map(|r| format!("repository:{r}:{EVERY_DOCKER_ACTION}"))
            .chain(["registry:catalog:*".to_owned()])
            .collect();
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let resp = get_token(
            &self.http,
            &self.berth.url,
            &Cred::basic(user, password),
            &self.berth.host,
            &scopes,
        );
        let token = access_token_of(&resp, &format!("{who}: GET /oauth2/token"));
        let mut want: Vec<(String, String, Vec<String>)> = expected
            .iter()
            .filter(|(_, actions)| !actions.is_empty())
            .map(|(repo, actions)| {
                let mut names: Vec<String> =
                    actions.iter().map(|a| docker_name(a).to_owned()).collect();
                names.sort();
                ("repository".to_owned(), repo.to_string(), names)
            })
            .collect();
        want.push(("registry".into(), "catalog".into(), vec!["*".into()]));
        want.sort();
        let got = jwt_access(&token);
        if got != want {
            wrong.push(format!(
                "{who}: the access token must carry exactly the granted actions (requested: \
                 every action on every repository)\nexpected access {want:?}\ngot {got:?}\n\
                 payload {}\n{resp}",
                jwt_payload(&token)
            ));
        }
        Cred::Bearer(token)
    }

    /// Runs every operation on every repository with `cred`; returns the wrong cells.
    fn check_ops(&self, who: &str, cred: &Cred, expected: &[(&str, &[&str])]) -> Vec<String> {
        let listed: BTreeSet<&str> = expected.iter().map(|(r, _)| *r).collect();
        assert_eq!(
            listed,
            REPOS.into_iter().collect::<BTreeSet<_>>(),
            "{who}: the expectation table must name every probed repository"
        );
        self.reseed();
        let mut wrong = Vec::new();
        for (repo, actions) in expected {
            let may = |action: &str| actions.contains(&action);
            let resp = self.get(&format!("/v2/{repo}/manifests/v1"), cred);
            if cell(
                &mut wrong,
                who,
                format!("GET {repo} manifest"),
                &resp,
                200,
                may(READ),
            ) && may(READ)
                && resp.body != self.image.manifest
            {
                wrong.push(format!("{who}: GET {repo} manifest: other bytes\n{resp}"));
            }
            let resp = self.get(
                &format!("/v2/{repo}/blobs/{}", self.image.layer_digest()),
                cred,
            );
            if cell(
                &mut wrong,
                who,
                format!("GET {repo} blob"),
                &resp,
                200,
                may(READ),
            ) && may(READ)
                && resp.body != self.image.layer
            {
                wrong.push(format!("{who}: GET {repo} blob: other bytes\n{resp}"));
            }
            let resp = self.get(&format!("/v2/{repo}/tags/list"), cred);
            if cell(
                &mut wrong,
                who,
                format!("GET {repo} tags/list"),
                &resp,
                200,
                may(META_READ),
            ) && may(META_READ)
                && !resp.json("tags").to_string().contains("\"v1\"")
            {
                wrong.push(format!(
                    "{who}: GET {repo} tags/list: `v1` not listed\n{resp}"
                ));
            }

            // Push: a blob upload, then a manifest under a new tag.
            let (post, put) =
                upload_blob(&self.http, &self.berth.url, cred, repo, &self.pushed_blob);
            cell(
                &mut wrong,
                who,
                format!("POST {repo} blob upload"),
                &post,
                202,
                may(WRITE),
            );
            if let Some(put) = put {
                cell(
                    &mut wrong,
                    who,
                    format!("PUT {repo} blob upload"),
                    &put,
                    201,
                    may(WRITE),
                );
            }
            self.pushes.set(self.pushes.get() + 1);
            let tag = format!("pushed-{}", self.pushes.get());
            let resp = put_manifest(
                &self.http,
                &self.berth.url,
                cred,
                repo,
                &tag,
                &self.image.manifest,
            );
            if !cell(
                &mut wrong,
                who,
                format!("PUT {repo} manifest :{tag}"),
                &resp,
                201,
                may(WRITE),
            ) || !may(WRITE)
            {
                let check = self.get(&format!("/v2/{repo}/manifests/{tag}"), &Cred::admin());
                if check.status != 404 {
                    wrong.push(format!(
                        "{who}: a refused manifest PUT to {repo}:{tag} must create nothing; the \
                         admin expected 404 reading it, got {}\n{check}",
                        check.status
                    ));
                }
            }

            // Delete last: it removes `v1` (the next caller's reseed puts it back).
            let digest = self.image.digest();
            let resp = self.send(
                "DELETE",
                &format!("/v2/{repo}/manifests/{digest}"),
                cred,
                &[],
            );
            if !cell(
                &mut wrong,
                who,
                format!("DELETE {repo} manifest"),
                &resp,
                202,
                may(DELETE),
            ) || !may(DELETE)
            {
                let check = self.get(&format!("/v2/{repo}/manifests/{digest}"), &Cred::admin());
                if check.status != 200 {
                    wrong.push(format!(
                        "{who}: a refused DELETE of {repo}@{digest} must remove nothing; the admin \
                         expected 200 reading it, got {}\n{check}",
                        check.status
                    ));
                }
            }
        }

        let resp = self.send("GET", "/v2/_catalog", cred, &[]);
        let readable: Vec<String> = {
            let mut r: Vec<String> = expected
                .iter()
                .filter(|(_, a)| a.contains(&READ))
                .map(|(r, _)| r.to_string())
                .collect();
            r.sort();
            r
        };
        if resp.status != 200 {
            wrong.push(format!(
                "{who}: GET /v2/_catalog: expected 200, got {}\n{resp}",
                resp.status
            ));
        } else {
            let listed: Vec<String> = resp.json("catalog")["repositories"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            if listed != readable {
                wrong.push(format!(
                    "{who}: GET /v2/_catalog must list exactly the repositories it may pull, \
                     {readable:?}; got {listed:?}\n{resp}"
                ));
            }
        }
        wrong
    }

    /// Checks `user` with Basic credentials and with a Bearer token; returns the wrong cells.
    fn check_caller(
        &self,
        who: &str,
        user: &str,
        password: &str,
        expected: &[(&str, &[&str])],
    ) -> Vec<String> {
        let mut wrong = self.check_ops(
            &format!("{who} (Basic)"),
            &Cred::basic(user, password),
            expected,
        );
        let bearer = self.bearer(&mut wrong, who, user, password, expected);
        wrong.extend(self.check_ops(&format!("{who} (Bearer)"), &bearer, expected));
        wrong
    }
}

/// Checks one cell of the matrix: `allowed_status` when allowed, `403 DENIED` otherwise.
/// Records a wrong cell in `wrong`; returns whether the cell was right.
fn cell(
    wrong: &mut Vec<String>,
    who: &str,
    what: String,
    resp: &Resp,
    allowed_status: u16,
    allowed: bool,
) -> bool {
    let ok = if allowed {
        resp.status == allowed_status
    } else {
        resp.status == 403 && resp.error_codes().iter().any(|c| c == "DENIED")
    };
    if !ok {
        let want = if allowed {
            format!("{allowed_status}")
        } else {
            "403 DENIED".to_owned()
        };
        wrong.push(format!(
            "{who}: {what}: expected {want}, got {}\n{resp}",
            resp.status
        ));
    }
    ok
}

#[track_caller]
fn assert_no_wrong_cells(wrong: Vec<String>) {
    assert!(
        wrong.is_empty(),
        "{} cell(s) of the allow/deny matrix are wrong:\n\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
}

/// Expectation table: `granted` on the named repositories, nothing elsewhere.
fn only<'a>(granted: &[(&'a str, &'a [&'a str])]) -> Vec<(&'a str, &'a [&'a str])> {
    REPOS
        .iter()
        .map(|repo| {
            granted
                .iter()
                .find(|(r, _)| r == repo)
                .map_or((*repo, &[][..]), |(r, a)| (*r, *a))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Actions and wildcard shapes
// ---------------------------------------------------------------------------------------

#[test]
fn each_action_alone_on_an_exact_repository_name() {
    let f = Fixture::start();
    let mut wrong = f.check_caller(
        "admin",
        "admin",
        common::ADMIN_PASSWORD,
        &only(&REPOS.map(|r| (r, &ALL_ACTIONS[..]))),
    );
    for (i, action) in ALL_ACTIONS.iter().enumerate() {
        let name = format!("exact-{i}");
        let p = f.token(&name, &[("team/app", &[action])]);
        let granted = [*action];
        wrong.extend(f.check_caller(
            &format!("token with {action} on team/app"),
            &name,
            &p.password1,
            &only(&[("team/app", &granted)]),
        ));
    }
    assert_no_wrong_cells(wrong);
}

#[test]
fn prefix_wildcard_covers_nested_repositories_but_not_the_prefix_itself() {
    let f = Fixture::start();
    let four = [READ, WRITE, DELETE, META_READ];
    let p = f.token("prefix", &[("team/*", &four)]);
    let wrong = f.check_caller(
        "token with team/*",
        "prefix",
        &p.password2,
        &only(&[("team/app", &four), ("team/sub/deep", &four)]),
    );
    assert_no_wrong_cells(wrong);
}

#[test]
fn star_covers_every_repository() {
    let f = Fixture::start();
    let p = f.token("star-read", &[("*", &[READ, META_READ])]);
    let mut wrong = f.check_caller(
        "token with * content/read metadata/read",
        "star-read",
        &p.password1,
        &only(&REPOS.map(|r| (r, &[READ, META_READ][..]))),
    );
    let p = f.token("star-write", &[("*", &[WRITE])]);
    wrong.extend(f.check_caller(
        "token with * content/write",
        "star-write",
        &p.password1,
        &only(&REPOS.map(|r| (r, &[WRITE][..]))),
    ));
    assert_no_wrong_cells(wrong);
}

#[test]
fn rules_add_up() {
    let f = Fixture::start();
    let p = f.token(
        "union",
        &[
            ("team/*", &[READ]),
            ("team/app", &[WRITE, DELETE]),
            ("*", &[META_READ]),
            ("teamother/x", &[READ]),
        ],
    );
    let wrong = f.check_caller(
        "token with a union of rules",
        "union",
        &p.password1,
        &[
            ("team/app", &[READ, WRITE, DELETE, META_READ]),
            ("team", &[META_READ]),
            ("team/sub/deep", &[READ, META_READ]),
            ("teamother/x", &[READ, META_READ]),
            ("other", &[META_READ]),
        ],
    );
    assert_no_wrong_cells(wrong);
}

#[test]
fn rules_may_name_repositories_that_do_not_exist_yet() {
    let f = Fixture::start();
    let p = f.token("future", &[("future/*", &[READ, WRITE])]);
    let cred = Cred::basic("future", &p.password1);
    let image = TestImage::new("future");
    for blob in [&image.config, &image.layer] {
        let (post, put) = upload_blob(&f.http, &f.berth.url, &cred, "future/new", blob);
        expect_status(&post, 202, "token: starting an upload to a new repository");
        expect_status(
            put.as_ref().unwrap(),
            201,
            "token: completing an upload to a new repository",
        );
    }
    let resp = put_manifest(
        &f.http,
        &f.berth.url,
        &cred,
        "future/new",
        "v1",
        &image.manifest,
    );
    expect_status(&resp, 201, "token: pushing a manifest creates future/new");
    let resp = f.get("/v2/future/new/manifests/v1", &cred);
    expect_status(&resp, 200, "token: pulling what it pushed");
    let resp = f.get("/v2/_catalog", &cred);
    expect_status(&resp, 200, "token: catalog");
    assert_eq!(
        resp.json("catalog")["repositories"],
        json!(["future/new"]),
        "the catalog lists the new repository, and only it\n{resp}"
    );
}

#[test]
fn built_in_scope_maps_grant_their_actions_on_every_repository_and_are_read_only() {
    let f = Fixture::start();
    let built_ins: [(&str, &[&str]); 5] = [
        ("_repositories_pull", &[READ]),
        ("_repositories_pull_metadata_read", &[READ, META_READ]),
        ("_repositories_push", &[READ, WRITE]),
        (
            "_repositories_push_metadata_write",
            &[READ, WRITE, META_READ, META_WRITE],
        ),
        ("_repositories_admin", &ALL_ACTIONS),
    ];
    let mut wrong = Vec::new();
    for (i, (map, actions)) in built_ins.iter().enumerate() {
        let shown = f
            .manage
            .call("GET", &format!("/berth/v1/scope-maps/{map}"), None);
        expect_status(&shown, 200, &format!("GET built-in scope map {map}"));
        let shown = shown.json("scope map");
        assert_eq!(
            shown["built_in"], true,
            "{map} is shown as built-in: {shown}"
        );
        let name = format!("builtin-{i}");
        let p = f.manage.create_token(&name, map, None);
        wrong.extend(f.check_caller(
            &format!("token on {map}"),
            &name,
            &p.password1,
            &only(&REPOS.map(|r| (r, *actions))),
        ));
        let patch = f.manage.call(
            "PATCH",
            &format!("/berth/v1/scope-maps/{map}"),
            Some(json!({ "add_repositories": [{ "repository": "*", "actions": [DELETE] }] })),
        );
        assert!(
            (400..500).contains(&patch.status),
            "changing built-in scope map {map}: expected a 4xx refusal, got {}\n{patch}",
            patch.status
        );
        let delete = f
            .manage
            .call("DELETE", &format!("/berth/v1/scope-maps/{map}"), None);
        assert!(
            (400..500).contains(&delete.status),
            "deleting built-in scope map {map}: expected a 4xx refusal, got {}\n{delete}",
            delete.status
        );
        let after = f
            .manage
            .call("GET", &format!("/berth/v1/scope-maps/{map}"), None);
        assert_eq!(
            after.json("scope map"),
            shown,
            "built-in scope map {map} changed after a refused PATCH/DELETE\n{after}"
        );
    }
    assert_no_wrong_cells(wrong);
}

// ---------------------------------------------------------------------------------------
// Missing and wrong credentials
// ---------------------------------------------------------------------------------------

#[test]
fn missing_credentials_get_401_with_a_challenge_naming_type_name_and_action() {
    let f = Fixture::start();
    let base = &f.berth.url;
    let none = Cred::None;
    let digest = f.image.digest();
    let layer = f.image.layer_digest();

    let resp = f.get("/v2/team/app/manifests/v1", &none);
    expect_repository_challenge(
        &resp,
        base,
        "team/app",
        &["pull"],
        "pull",
        "anonymous GET manifest",
    );
    let resp = f.send("HEAD", "/v2/team/app/manifests/v1", &none, &[]);
    expect_status(&resp, 401, "anonymous HEAD manifest");
    expect_challenge_header_only(&resp, base, "anonymous HEAD manifest");
    let resp = f.get(&format!("/v2/team/sub/deep/blobs/{layer}"), &none);
    expect_repository_challenge(
        &resp,
        base,
        "team/sub/deep",
        &["pull"],
        "pull",
        "anonymous GET blob",
    );
    let resp = f.get("/v2/other/tags/list", &none);
    expect_repository_challenge(
        &resp,
        base,
        "other",
        &["metadata_read"],
        "metadata_read",
        "anonymous GET tags/list",
    );
    let (post, _) = upload_blob(&f.http, base, &none, "team/app", b"anonymous");
    expect_repository_challenge(
        &post,
        base,
        "team/app",
        &["push", "pull,push"],
        "push",
        "anonymous POST blob upload",
    );
    let resp = put_manifest(&f.http, base, &none, "team/app", "anon", &f.image.manifest);
    expect_repository_challenge(
        &resp,
        base,
        "team/app",
        &["push", "pull,push"],
        "push",
        "anonymous PUT manifest",
    );
    let resp = f.send(
        "DELETE",
        &format!("/v2/team/app/manifests/{digest}"),
        &none,
        &[],
    );
    expect_repository_challenge(
        &resp,
        base,
        "team/app",
        &["delete"],
        "delete",
        "anonymous DELETE manifest",
    );
    let resp = f.send("GET", "/v2/_catalog", &none, &[]);
    let challenge = expect_challenge(&resp, base, "anonymous GET /v2/_catalog");
    assert_eq!(
        challenge.param("scope"),
        Some("registry:catalog:*"),
        "anonymous GET /v2/_catalog: the challenge asks for the catalog scope\n{resp}"
    );
    let resp = f.send("GET", "/v2/", &none, &[]);
    expect_challenge(&resp, base, "anonymous GET /v2/");

    // Nothing was changed by the refused requests.
    let check = f.get("/v2/team/app/manifests/anon", &Cred::admin());
    expect_status(
        &check,
        404,
        "admin: the refused anonymous PUT created nothing",
    );
    let check = f.get(&format!("/v2/team/app/manifests/{digest}"), &Cred::admin());
    expect_status(
        &check,
        200,
        "admin: the refused anonymous DELETE removed nothing",
    );
}

/// A HEAD response has no body: only the header can be checked.
#[track_caller]
fn expect_challenge_header_only(resp: &Resp, base: &str, what: &str) {
    let header = resp.header("www-authenticate").unwrap_or_default();
    let challenge = authn::parse_challenge(&header);
    let realm = format!("{base}/oauth2/token");
    assert!(
        challenge.as_ref().is_some_and(|c| c.scheme == "Bearer"
            && c.param("realm") == Some(realm.as_str())
            && c.param("scope") == Some("repository:team/app:pull")),
        "{what}: expected `WWW-Authenticate: Bearer realm=\"{realm}\",…,scope=\"repository:team/app:pull\"`, \
         got {header:?}\n{resp}"
    );
}

#[test]
fn wrong_credentials_get_401_with_a_challenge() {
    let f = Fixture::start();
    let base = &f.berth.url;
    let p = f.token("reader", &[("team/app", &[READ])]);
    let path = "/v2/team/app/manifests/v1";
    let wrong_creds = [
        (
            "a token with a wrong password",
            Cred::basic("reader", "not-the-password"),
        ),
        ("a token with an empty password", Cred::basic("reader", "")),
        ("an unknown user", Cred::basic("nobody-here", &p.password1)),
        (
            "the admin with a wrong password",
            Cred::basic("admin", "not-the-password"),
        ),
        (
            "a token's password under the admin's name",
            Cred::basic("admin", &p.password1),
        ),
        ("a garbage Bearer token", Cred::Bearer("not.a.jwt".into())),
    ];
    for (what, cred) in &wrong_creds {
        let resp = f.get(path, cred);
        expect_challenge(&resp, base, &format!("GET manifest with {what}"));
        let resp = f.send("GET", "/v2/", cred, &[]);
        expect_challenge(&resp, base, &format!("GET /v2/ with {what}"));
        if let Cred::Basic(..) = cred {
            let resp = get_token(
                &f.http,
                base,
                cred,
                &f.berth.host,
                &["repository:team/app:pull"],
            );
            expect_challenge(&resp, base, &format!("GET /oauth2/token with {what}"));
        }
    }
    // A malformed Authorization header.
    let resp = f.send(
        "GET",
        path,
        &Cred::None,
        &[("Authorization", "Basic !!!not-base64")],
    );
    expect_challenge(&resp, base, "GET manifest with a malformed Basic header");

    // A real access token whose payload was changed to grant more: the signature no longer
    // matches.
    let resp = get_token(
        &f.http,
        base,
        &Cred::basic("reader", &p.password1),
        &f.berth.host,
        &["repository:team/app:pull"],
    );
    let token = access_token_of(&resp, "reader: GET /oauth2/token");
    let mut payload = jwt_payload(&token);
    payload["access"] = json!([{ "type": "repository", "name": "team/app", "actions": ["pull", "push", "delete"] }]);
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string())
        },
        parts[2]
    );
    let resp = f.send(
        "DELETE",
        &format!("/v2/team/app/manifests/{}", f.image.digest()),
        &Cred::Bearer(forged),
        &[],
    );
    expect_challenge(&resp, base, "DELETE with a forged access token");
    let check = f.get("/v2/team/app/manifests/v1", &Cred::admin());
    expect_status(&check, 200, "admin: the forged DELETE removed nothing");
}

// ---------------------------------------------------------------------------------------
// Token states
// ---------------------------------------------------------------------------------------

/// Reads `team/app:v1` with `cred`; the status.
fn pull_status(f: &Fixture, cred: &Cred) -> Resp {
    f.get("/v2/team/app/manifests/v1", cred)
}

/// A Bearer token for `user` with pull on team/app.
fn pull_bearer(f: &Fixture, user: &str, password: &str) -> Cred {
    let resp = get_token(
        &f.http,
        &f.berth.url,
        &Cred::basic(user, password),
        &f.berth.host,
        &["repository:team/app:pull"],
    );
    Cred::Bearer(access_token_of(
        &resp,
        &format!("{user}: GET /oauth2/token"),
    ))
}

/// `POST /oauth2/token` with `grant_type=password`.
fn post_password_grant(f: &Fixture, user: &str, password: &str) -> Resp {
    let form = form_encode(&[
        ("grant_type", "password"),
        ("username", user),
        ("password", password),
        ("service", &f.berth.host),
        ("scope", "repository:team/app:pull"),
        ("client_id", "containerd-client"),
        ("access_type", "offline"),
    ]);
    send(
        &f.http,
        "POST",
        &f.url("/oauth2/token"),
        &Cred::None,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.into_bytes()),
    )
}

/// `POST /oauth2/token` with `grant_type=refresh_token`.
fn post_refresh_grant(f: &Fixture, refresh_token: &str) -> Resp {
    let form = form_encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("service", &f.berth.host),
        ("scope", "repository:team/app:pull"),
        ("client_id", "containerd-client"),
    ]);
    send(
        &f.http,
        "POST",
        &f.url("/oauth2/token"),
        &Cred::None,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.into_bytes()),
    )
}

/// Every way `user`/`password` (and sessions made from it) could still get in is refused.
#[track_caller]
fn expect_refused_everywhere(
    f: &Fixture,
    why: &str,
    user: &str,
    password: &str,
    sessions: &[&Cred],
    refresh: Option<&str>,
) {
    let base = &f.berth.url;
    let resp = pull_status(f, &Cred::basic(user, password));
    expect_challenge(&resp, base, &format!("{why}: GET manifest with Basic"));
    let resp = f.send("GET", "/v2/", &Cred::basic(user, password), &[]);
    expect_challenge(&resp, base, &format!("{why}: GET /v2/ with Basic"));
    for (i, session) in sessions.iter().enumerate() {
        let resp = pull_status(f, session);
        expect_challenge(
            &resp,
            base,
            &format!("{why}: GET manifest with access token #{}", i + 1),
        );
    }
    let resp = get_token(
        &f.http,
        base,
        &Cred::basic(user, password),
        &f.berth.host,
        &["repository:team/app:pull"],
    );
    expect_challenge(&resp, base, &format!("{why}: GET /oauth2/token"));
    let resp = post_password_grant(f, user, password);
    expect_challenge(
        &resp,
        base,
        &format!("{why}: POST /oauth2/token grant_type=password"),
    );
    if let Some(refresh) = refresh {
        let resp = post_refresh_grant(f, refresh);
        expect_challenge(
            &resp,
            base,
            &format!("{why}: POST /oauth2/token grant_type=refresh_token"),
        );
    }
}

/// A refresh token for `user`.
fn refresh_token(f: &Fixture, user: &str, password: &str) -> String {
    let resp = post_password_grant(f, user, password);
    expect_status(
        &resp,
        200,
        &format!("{user}: POST /oauth2/token grant_type=password"),
    );
    resp.json("token response")["refresh_token"]
        .as_str()
        .unwrap_or_else(|| {
            panic!("{user}: access_type=offline must return a refresh_token\n{resp}")
        })
        .to_owned()
}

#[test]
fn a_disabled_token_is_refused_on_its_very_next_request() {
    let f = Fixture::start();
    let p = f.token("switch", &[("team/app", &[READ])]);
    let basic = Cred::basic("switch", &p.password1);
    expect_status(
        &pull_status(&f, &basic),
        200,
        "enabled token: GET manifest with Basic",
    );
    let bearer = pull_bearer(&f, "switch", &p.password2);
    expect_status(
        &pull_status(&f, &bearer),
        200,
        "enabled token: GET manifest with Bearer",
    );
    let refresh = refresh_token(&f, "switch", &p.password1);

    f.manage.set_token_status("switch", "disabled");
    for password in [&p.password1, &p.password2] {
        expect_refused_everywhere(
            &f,
            "disabled token",
            "switch",
            password,
            &[&bearer],
            Some(&refresh),
        );
    }

    f.manage.set_token_status("switch", "enabled");
    expect_status(
        &pull_status(&f, &basic),
        200,
        "re-enabled token: GET manifest with Basic",
    );
    let fresh = pull_bearer(&f, "switch", &p.password2);
    expect_status(
        &pull_status(&f, &fresh),
        200,
        "re-enabled token: GET manifest with a new Bearer",
    );

    // A token created disabled never gets in.
    let resp = f.manage.call(
        "POST",
        "/berth/v1/tokens",
        Some(json!({ "name": "born-off", "scope_map": "switch-map", "status": "disabled" })),
    );
    expect_status(&resp, 201, "creating a disabled token");
    let password = resp.json("created")["passwords"][0]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("creating a disabled token: no password returned\n{resp}"))
        .to_owned();
    expect_refused_everywhere(
        &f,
        "token created disabled",
        "born-off",
        &password,
        &[],
        None,
    );
}

#[test]
fn an_expired_password_is_refused() {
    let f = Fixture::start();
    f.manage
        .create_scope_map("expiring-map", &[("team/app", &[READ])]);
    let (expiry, at) = utc_in(4);
    let p = f
        .manage
        .create_token("expiring", "expiring-map", Some(&expiry));
    let shown = f
        .manage
        .call("GET", "/berth/v1/tokens/expiring", None)
        .json("token");
    for slot in shown["passwords"].as_array().cloned().unwrap_or_default() {
        assert_eq!(
            slot["expiry"],
            expiry.as_str(),
            "the token shows the expiry it was given: {shown}"
        );
    }
    let basic = Cred::basic("expiring", &p.password1);
    let resp = pull_status(&f, &basic);
    assert!(
        resp.status == 200 || unix_now() >= at,
        "before its expiry ({expiry}) the password must work; GET manifest got {}\n{resp}",
        resp.status
    );
    let bearer = pull_bearer(&f, "expiring", &p.password2);
    let refresh = refresh_token(&f, "expiring", &p.password2);

    // Poll until the expiry passes; the password must not be refused before it.
    poll_until(Duration::from_secs(10), "password expiry", || {
        let resp = pull_status(&f, &basic);
        match resp.status {
            200 if unix_now() <= at + 1 => Err(format!("still accepted at {}\n{resp}", unix_now())),
            401 => {
                assert!(
                    unix_now() >= at,
                    "the password was refused at {} before its expiry {at} ({expiry})\n{resp}",
                    unix_now()
                );
                Ok(())
            }
            _ => panic!(
                "an expired password: expected 401 once {expiry} passed, got {}\n{resp}",
                resp.status
            ),
        }
    });
    for password in [&p.password1, &p.password2] {
        expect_refused_everywhere(
            &f,
            "expired password",
            "expiring",
            password,
            &[&bearer],
            Some(&refresh),
        );
    }
    let shown = f
        .manage
        .call("GET", "/berth/v1/tokens/expiring", None)
        .json("token");
    for slot in shown["passwords"].as_array().cloned().unwrap_or_default() {
        assert_eq!(
            slot["expired"], true,
            "the token shows its passwords expired: {shown}"
        );
    }
}

#[test]
fn regenerating_password1_ends_it_while_password2_keeps_working() {
    let f = Fixture::start();
    let p = f.token("rotate", &[("team/app", &[READ])]);
    let old1 = Cred::basic("rotate", &p.password1);
    let pw2 = Cred::basic("rotate", &p.password2);
    let bearer1 = pull_bearer(&f, "rotate", &p.password1);
    let bearer2 = pull_bearer(&f, "rotate", &p.password2);
    expect_status(&pull_status(&f, &old1), 200, "password1 before rotation");

    let new1 = f.manage.regenerate("rotate", "password1", None);
    assert_ne!(
        new1, p.password1,
        "a regenerated password differs from the old one"
    );
    expect_challenge(
        &pull_status(&f, &old1),
        &f.berth.url,
        "the old password1 after rotation (Basic)",
    );
    expect_challenge(
        &pull_status(&f, &bearer1),
        &f.berth.url,
        "an access token obtained with the old password1, after rotation",
    );
    let resp = get_token(
        &f.http,
        &f.berth.url,
        &old1,
        &f.berth.host,
        &["repository:team/app:pull"],
    );
    expect_challenge(
        &resp,
        &f.berth.url,
        "GET /oauth2/token with the old password1",
    );
    expect_status(
        &pull_status(&f, &Cred::basic("rotate", &new1)),
        200,
        "the new password1 (Basic)",
    );
    let fresh = pull_bearer(&f, "rotate", &new1);
    expect_status(
        &pull_status(&f, &fresh),
        200,
        "an access token from the new password1",
    );
    expect_status(
        &pull_status(&f, &pw2),
        200,
        "password2 after password1 was rotated (Basic)",
    );
    expect_status(
        &pull_status(&f, &bearer2),
        200,
        "an access token from password2, after password1 was rotated",
    );

    // Emptying slot 2 ends password2 and its sessions; password1 goes on.
    f.manage.delete_password("rotate", "password2");
    expect_challenge(
        &pull_status(&f, &pw2),
        &f.berth.url,
        "password2 after its slot was emptied",
    );
    expect_challenge(
        &pull_status(&f, &bearer2),
        &f.berth.url,
        "a password2 access token after the slot was emptied",
    );
    expect_status(
        &pull_status(&f, &Cred::basic("rotate", &new1)),
        200,
        "password1 after slot 2 was emptied",
    );
}

#[test]
fn a_deleted_token_is_refused_on_its_very_next_request_even_if_recreated() {
    let f = Fixture::start();
    f.manage
        .create_scope_map("doomed-map", &[("team/app", &[READ])]);
    let mut p = f.manage.create_token("doomed", "doomed-map", None);
    expect_status(
        &pull_status(&f, &Cred::basic("doomed", &p.password1)),
        200,
        "token before deletion",
    );

    // Deleting and recreating a token of the same name must not revive the old one's sessions,
    // even when the new passwords are made in the same second as the old ones (sessions may
    // identify a password by its creation time): retry until that coincidence happens.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let bearer = pull_bearer(&f, "doomed", &p.password1);
        let refresh = refresh_token(&f, "doomed", &p.password1);
        expect_status(
            &pull_status(&f, &bearer),
            200,
            "an access token before deletion",
        );
        let before = f
            .manage
            .call("GET", "/berth/v1/tokens/doomed", None)
            .json("token");
        f.manage.delete_token("doomed");
        expect_refused_everywhere(
            &f,
            "deleted token",
            "doomed",
            &p.password1,
            &[&bearer],
            Some(&refresh),
        );
        let resp = f.manage.call("GET", "/berth/v1/tokens/doomed", None);
        expect_status(&resp, 404, "GET of a deleted token");

        let old = p.clone();
        p = f.manage.create_token("doomed", "doomed-map", None);
        let after = f
            .manage
            .call("GET", "/berth/v1/tokens/doomed", None)
            .json("token");
        expect_challenge(
            &pull_status(&f, &Cred::basic("doomed", &old.password1)),
            &f.berth.url,
            "the deleted token's password, after a token of the same name was created",
        );
        let same_second =
            before["passwords"][0]["created_at"] == after["passwords"][0]["created_at"];
        if same_second || attempts >= 5 {
            expect_challenge(
                &pull_status(&f, &bearer),
                &f.berth.url,
                &format!(
                    "an access token of the deleted token, after a token of the same name was \
                     created (old password created {}, new one {})",
                    before["passwords"][0]["created_at"], after["passwords"][0]["created_at"]
                ),
            );
            let resp = post_refresh_grant(&f, &refresh);
            expect_challenge(
                &resp,
                &f.berth.url,
                "a refresh token of the deleted token, after a token of the same name was created",
            );
            if same_second {
                break;
            }
        }
        if attempts >= 5 {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Anonymous pull
// ---------------------------------------------------------------------------------------

#[test]
fn anonymous_requests_are_challenged_while_anonymous_pull_is_off() {
    let f = Fixture::start();
    let base = &f.berth.url;
    let shown = f.manage.call("GET", "/berth/v1/registry", None);
    expect_status(&shown, 200, "GET /berth/v1/registry");
    assert_eq!(
        shown.json("registry")["anonymous_pull_enabled"],
        false,
        "anonymous pull is off by default\n{shown}"
    );
    expect_repository_challenge(
        &pull_status(&f, &Cred::None),
        base,
        "team/app",
        &["pull"],
        "pull",
        "anonymous GET manifest, anonymous pull off",
    );

    // Docker's anonymous token flow: a token is issued, granting nothing; using it is still
    // "no credentials", so the answer is a 401 challenge, not 403 (issue 3: `401` when
    // credentials are missing, `403` for an authenticated caller).
    let resp = get_token(
        &f.http,
        base,
        &Cred::None,
        &f.berth.host,
        &["repository:team/app:pull"],
    );
    let token = access_token_of(&resp, "anonymous GET /oauth2/token, anonymous pull off");
    assert_eq!(
        jwt_access(&token),
        vec![],
        "with anonymous pull off an anonymous token grants nothing; payload {}",
        jwt_payload(&token)
    );
    expect_repository_challenge(
        &pull_status(&f, &Cred::Bearer(token)),
        base,
        "team/app",
        &["pull"],
        "pull",
        "GET manifest with an anonymous access token, anonymous pull off",
    );
}

#[test]
fn anonymous_pull_allows_pulls_of_every_repository_and_nothing_else() {
    let f = Fixture::start();
    let base = &f.berth.url;
    let none = Cred::None;
    f.manage.set_anonymous_pull(true);

    // Without any Authorization header.
    for repo in REPOS {
        let resp = f.get(&format!("/v2/{repo}/manifests/v1"), &none);
        expect_status(
            &resp,
            200,
            &format!("anonymous GET {repo} manifest, anonymous pull on"),
        );
        let resp = f.get(
            &format!("/v2/{repo}/blobs/{}", f.image.layer_digest()),
            &none,
        );
        expect_status(
            &resp,
            200,
            &format!("anonymous GET {repo} blob, anonymous pull on"),
        );
        let what = |op: &str| format!("anonymous {op} {repo}, anonymous pull on");
        let (post, _) = upload_blob(&f.http, base, &none, repo, b"anonymous push");
        expect_repository_challenge(
            &post,
            base,
            repo,
            &["push", "pull,push"],
            "push",
            &what("POST blob upload"),
        );
        let resp = put_manifest(&f.http, base, &none, repo, "anon", &f.image.manifest);
        expect_repository_challenge(
            &resp,
            base,
            repo,
            &["push", "pull,push"],
            "push",
            &what("PUT manifest"),
        );
        let resp = f.send(
            "DELETE",
            &format!("/v2/{repo}/manifests/{}", f.image.digest()),
            &none,
            &[],
        );
        expect_repository_challenge(
            &resp,
            base,
            repo,
            &["delete"],
            "delete",
            &what("DELETE manifest"),
        );
        let resp = f.get(&format!("/v2/{repo}/tags/list"), &none);
        expect_repository_challenge(
            &resp,
            base,
            repo,
            &["metadata_read"],
            "metadata_read",
            &what("GET tags/list"),
        );
    }
    let resp = f.send("GET", "/v2/_catalog", &none, &[]);
    expect_challenge(&resp, base, "anonymous GET /v2/_catalog, anonymous pull on");

    // Through the token flow, as Docker does: push is asked for and silently dropped.
    for repo in REPOS {
        let scope = format!("repository:{repo}:pull,push");
        let resp = get_token(&f.http, base, &none, &f.berth.host, &[&scope]);
        let token = access_token_of(&resp, &format!("anonymous GET /oauth2/token for {scope}"));
        assert_eq!(
            jwt_access(&token),
            vec![("repository".into(), repo.to_owned(), vec!["pull".into()])],
            "an anonymous token for {scope} carries pull only; payload {}",
            jwt_payload(&token)
        );
        let bearer = Cred::Bearer(token);
        let resp = f.get(&format!("/v2/{repo}/manifests/v1"), &bearer);
        expect_status(&resp, 200, &format!("anonymous Bearer GET {repo} manifest"));
        let resp = f.get(
            &format!("/v2/{repo}/blobs/{}", f.image.layer_digest()),
            &bearer,
        );
        expect_status(&resp, 200, &format!("anonymous Bearer GET {repo} blob"));
    }

    // Turned off, anonymous pulls stop at once.
    f.manage.set_anonymous_pull(false);
    expect_challenge(
        &pull_status(&f, &none),
        base,
        "anonymous GET manifest after anonymous pull was turned off",
    );
}

#[test]
fn anonymous_access_tokens_cannot_push_even_with_anonymous_pull_on() {
    let f = Fixture::start();
    let base = &f.berth.url;
    f.manage.set_anonymous_pull(true);
    let resp = get_token(
        &f.http,
        base,
        &Cred::None,
        &f.berth.host,
        &["repository:team/app:pull,push,delete"],
    );
    let bearer = Cred::Bearer(access_token_of(&resp, "anonymous GET /oauth2/token"));
    // Anonymous push "still 401": the caller has no credentials, so it is challenged to log
    // in, whether or not it holds an anonymous access token.
    let what =
        |op: &str| format!("{op} team/app with an anonymous access token, anonymous pull on");
    let (post, _) = upload_blob(&f.http, base, &bearer, "team/app", b"anonymous push");
    expect_repository_challenge(
        &post,
        base,
        "team/app",
        &["push", "pull,push"],
        "push",
        &what("POST blob upload"),
    );
    let resp = put_manifest(
        &f.http,
        base,
        &bearer,
        "team/app",
        "anon",
        &f.image.manifest,
    );
    expect_repository_challenge(
        &resp,
        base,
        "team/app",
        &["push", "pull,push"],
        "push",
        &what("PUT manifest"),
    );
    let resp = f.send(
        "DELETE",
        &format!("/v2/team/app/manifests/{}", f.image.digest()),
        &bearer,
        &[],
    );
    expect_repository_challenge(
        &resp,
        base,
        "team/app",
        &["delete"],
        "delete",
        &what("DELETE manifest"),
    );
    let resp = f.get("/v2/team/app/tags/list", &bearer);
    expect_repository_challenge(
        &resp,
        base,
        "team/app",
        &["metadata_read"],
        "metadata_read",
        &what("GET tags/list"),
    );
    let check = f.get("/v2/team/app/manifests/anon", &Cred::admin());
    expect_status(
        &check,
        404,
        "admin: the refused anonymous PUT created nothing",
    );
}

// ---------------------------------------------------------------------------------------
// The token endpoint
// ---------------------------------------------------------------------------------------

#[test]
fn the_token_endpoint_silently_drops_requested_but_ungranted_actions() {
    let f = Fixture::start();
    let base = &f.berth.url;
    let p = f.token("narrow", &[("team/app", &[READ])]);
    let cred = Cred::basic("narrow", &p.password1);
    let scopes = [
        "repository:team/app:pull,push,delete",
        "repository:team/app:metadata_read",
        "repository:other:pull",
        "repository:team/sub/deep:pull,push",
    ];
    let want = vec![(
        "repository".to_owned(),
        "team/app".to_owned(),
        vec!["pull".to_owned()],
    )];

    // GET, with repeated `scope` parameters.
    let resp = get_token(&f.http, base, &cred, &f.berth.host, &scopes);
    let token = access_token_of(&resp, "GET /oauth2/token asking for more than granted");
    let body = resp.json("token response");
    assert!(
        body["expires_in"].as_u64().is_some_and(|s| s > 0)
            && body["issued_at"]
                .as_str()
                .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
        "a token response carries expires_in (seconds) and issued_at (RFC 3339)\n{resp}"
    );
    assert_eq!(
        jwt_access(&token),
        want,
        "GET: ungranted actions are dropped; payload {}",
        jwt_payload(&token)
    );
    let claims = jwt_payload(&token);
    assert!(
        claims["sub"] == "narrow" && claims["aud"] == f.berth.host.as_str(),
        "the access token names the token (sub) and the service (aud): {claims}"
    );

    // POST, with the scopes space-separated in one parameter (as OAuth2 writes them).
    let joined = scopes.join(" ");
    let form = form_encode(&[
        ("grant_type", "password"),
        ("username", "narrow"),
        ("password", &p.password1),
        ("service", &f.berth.host),
        ("scope", &joined),
        ("client_id", "berth-test"),
    ]);
    let resp = send(
        &f.http,
        "POST",
        &f.url("/oauth2/token"),
        &Cred::None,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.into_bytes()),
    );
    let token = access_token_of(&resp, "POST /oauth2/token asking for more than granted");
    assert_eq!(
        jwt_access(&token),
        want,
        "POST: ungranted actions are dropped; payload {}",
        jwt_payload(&token)
    );

    // The token works for what it carries; what the caller may not do is 403.
    let bearer = Cred::Bearer(token);
    expect_status(&pull_status(&f, &bearer), 200, "Bearer GET manifest");
    let (post, _) = upload_blob(&f.http, base, &bearer, "team/app", b"nope");
    expect_error(
        &post,
        403,
        "DENIED",
        "Bearer POST upload by a token without content/write",
    );
    let resp = f.get("/v2/other/manifests/v1", &bearer);
    expect_error(
        &resp,
        403,
        "DENIED",
        "Bearer GET manifest of a repository outside the scope map",
    );

    // A caller that has an action its access token does not carry is challenged (401) for it,
    // so Docker-style clients fetch a token with that scope.
    let p = f.token("pusher", &[("team/app", &[READ, WRITE])]);
    let bearer = pull_bearer(&f, "pusher", &p.password1);
    let (post, _) = upload_blob(&f.http, base, &bearer, "team/app", b"scope");
    expect_repository_challenge(
        &post,
        base,
        "team/app",
        &["push", "pull,push"],
        "push",
        "POST upload with an access token for pull only, by a token that may push",
    );
}

// ---------------------------------------------------------------------------------------
// Security: rate limiting, logs, file modes
// ---------------------------------------------------------------------------------------

#[test]
fn failed_logins_are_rate_limited_per_client_address() {
    let berth = Spawned::start(&[
        ("BERTH_LOGIN_FAILURES_PER_MINUTE", "3"),
        ("RUST_LOG", "warn"),
    ]);
    let http = client();
    let manage = Manage::new(&berth.url);
    manage.create_scope_map("limited-map", &[("team/app", &[READ])]);
    let p = manage.create_token("limited", "limited-map", None);
    let wrong = Cred::basic("limited", "a-wrong-password");
    for i in 1..=3 {
        let resp = send(
            &http,
            "GET",
            &format!("{}/v2/", berth.url),
            &wrong,
            &[],
            None,
        );
        expect_challenge(
            &resp,
            &berth.url,
            &format!("failed login #{i} of 3 allowed"),
        );
    }
    let resp = send(
        &http,
        "GET",
        &format!("{}/v2/", berth.url),
        &wrong,
        &[],
        None,
    );
    expect_error(
        &resp,
        429,
        "TOOMANYREQUESTS",
        "the 4th failed login within a minute",
    );
    let retry = resp.header("retry-after");
    assert!(
        retry
            .as_deref()
            .and_then(|r| r.parse::<u64>().ok())
            .is_some_and(|s| (1..=60).contains(&s)),
        "a 429 carries `Retry-After: <seconds>`, 1 to 60; got {retry:?}\n{resp}"
    );
    // The token endpoint is limited too.
    let resp = get_token(
        &http,
        &berth.url,
        &wrong,
        &berth.host,
        &["repository:team/app:pull"],
    );
    expect_error(
        &resp,
        429,
        "TOOMANYREQUESTS",
        "GET /oauth2/token from the limited address",
    );
    assert!(
        resp.header("retry-after").is_some(),
        "a 429 from /oauth2/token carries Retry-After\n{resp}"
    );

    // Another client address is not limited.
    berth_server::tls::install_crypto_provider();
    let other = reqwest::blocking::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let resp = send(
        &other,
        "GET",
        &format!("{}/v2/", berth.url),
        &Cred::basic("limited", &p.password1),
        &[],
        None,
    );
    expect_status(
        &resp,
        200,
        "a correct login from another address (127.0.0.2)",
    );
}

#[test]
fn no_secret_appears_in_the_log() {
    let berth = Spawned::start(&[("RUST_LOG", "debug"), ("BERTH_LOG", "debug")]);
    let http = client();
    let base = &berth.url;
    let manage = Manage::new(base);
    push_as_admin(&http, base, "team/app", "v1", &TestImage::new("logs"));
    manage.create_scope_map("logged-map", &[("team/app", &[READ])]);
    let p = manage.create_token("logged", "logged-map", None);
    let wrong_password = "a-wrong-password-that-must-not-be-logged";
    let mut secrets: Vec<(String, String)> = vec![
        ("the admin password".into(), common::ADMIN_PASSWORD.into()),
        ("password1".into(), p.password1.clone()),
        ("password2".into(), p.password2.clone()),
        ("a wrong password".into(), wrong_password.into()),
        (
            "admin Basic header".into(),
            basic_token("admin", common::ADMIN_PASSWORD),
        ),
        (
            "token Basic header".into(),
            basic_token("logged", &p.password1),
        ),
    ];

    // Logins of every kind, good and bad.
    let get = |cred: &Cred| {
        send(
            &http,
            "GET",
            &format!("{base}/v2/team/app/manifests/v1"),
            cred,
            &[("Accept", authn::OCI_MANIFEST)],
            None,
        )
    };
    expect_status(
        &get(&Cred::basic("logged", &p.password1)),
        200,
        "token Basic pull",
    );
    expect_status(
        &get(&Cred::basic("logged", wrong_password)),
        401,
        "wrong password",
    );
    expect_status(
        &get(&Cred::basic("admin", wrong_password)),
        401,
        "admin wrong password",
    );
    let resp = get_token(
        &http,
        base,
        &Cred::basic("logged", &p.password2),
        &berth.host,
        &["repository:team/app:pull"],
    );
    let access = access_token_of(&resp, "GET /oauth2/token");
    expect_status(&get(&Cred::Bearer(access.clone())), 200, "Bearer pull");
    let form = form_encode(&[
        ("grant_type", "password"),
        ("username", "logged"),
        ("password", &p.password1),
        ("service", &berth.host),
        ("scope", "repository:team/app:pull"),
        ("access_type", "offline"),
    ]);
    let resp = send(
        &http,
        "POST",
        &format!("{base}/oauth2/token"),
        &Cred::None,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.into_bytes()),
    );
    expect_status(&resp, 200, "POST /oauth2/token");
    let body = resp.json("token response");
    let refresh = body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let access2 = body["access_token"].as_str().unwrap_or_default().to_owned();
    let form = form_encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("service", &berth.host),
    ]);
    let resp = send(
        &http,
        "POST",
        &format!("{base}/oauth2/token"),
        &Cred::None,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.into_bytes()),
    );
    expect_status(&resp, 200, "POST /oauth2/token grant_type=refresh_token");
    let access3 = resp.json("token response")["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let form = form_encode(&[
        ("grant_type", "password"),
        ("username", "logged"),
        ("password", wrong_password),
    ]);
    let resp = send(
        &http,
        "POST",
        &format!("{base}/oauth2/token"),
        &Cred::None,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.into_bytes()),
    );
    expect_status(&resp, 401, "POST /oauth2/token with a wrong password");
    let regenerated = manage.regenerate("logged", "password1", None);
    expect_status(
        &get(&Cred::basic("logged", &regenerated)),
        200,
        "regenerated password",
    );
    let resp = manage.call(
        "POST",
        "/berth/v1/tokens",
        Some(json!({ "name": "logged-two", "scope_map": "logged-map" })),
    );
    expect_status(&resp, 201, "creating a second token");
    for password in resp.json("created")["passwords"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        secrets.push((
            "a created password".into(),
            password["value"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    secrets.extend([
        ("an access token".into(), access),
        ("an access token (POST)".into(), access2),
        ("an access token (refresh)".into(), access3),
        ("a refresh token".into(), refresh),
        ("a regenerated password".into(), regenerated),
    ]);
    let key = std::fs::read_to_string(berth.data_dir().join("signing.key")).unwrap_or_default();
    if !key.trim().is_empty() {
        secrets.push(("the signing key".into(), key.trim().to_owned()));
    }

    // Let the last lines reach the file, then look.
    std::thread::sleep(Duration::from_millis(200));
    let log = berth.output();
    assert!(
        log.contains("DEBUG"),
        "the registry ran with RUST_LOG=debug but logged no DEBUG line, so this test would prove \
         nothing; output:\n{log}"
    );
    let leaked: Vec<&str> = secrets
        .iter()
        .filter(|(_, secret)| !secret.is_empty() && log.contains(secret.as_str()))
        .map(|(what, _)| what.as_str())
        .collect();
    assert!(
        leaked.is_empty(),
        "secrets appear in the registry's output (RUST_LOG=debug): {leaked:?}\n--- output ---\n{log}"
    );
}

#[test]
fn the_signing_key_and_database_files_are_readable_only_by_their_owner() {
    let berth = common::Berth::start();
    let manage = Manage::new(&berth.url);
    manage.create_scope_map("modes-map", &[("team/app", &[READ])]);
    manage.create_token("modes", "modes-map", None);
    push_as_admin(
        &client(),
        &berth.url,
        "team/app",
        "v1",
        &TestImage::new("modes"),
    );

    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let dir = berth.data_dir();
    assert_eq!(
        mode(dir),
        0o700,
        "the data directory {} must be mode 0700, is {:o}",
        dir.display(),
        mode(dir)
    );
    let mut checked = Vec::new();
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "signing.key" || name.contains(".db") {
            checked.push(name.clone());
            if mode(&path) != 0o600 {
                wrong.push(format!("{name}: {:o}", mode(&path)));
            }
        }
    }
    checked.sort();
    // The signing keys live in the identity database (mode 0600 like the others), never in
    // a file of their own.
    assert!(
        checked.iter().any(|c| c == "identity.db"),
        "expected identity.db in the data directory; found {checked:?}"
    );
    assert!(
        !checked.iter().any(|c| c == "signing.key"),
        "the signing key is kept in identity.db, not in a file: {checked:?}"
    );
    assert!(
        wrong.is_empty(),
        "the signing key and database files must be mode 0600 (owner read/write only); these \
         are not: {wrong:?} (checked {checked:?})"
    );
}
