//! Tokens with real clients (issue 3): a token whose scope map grants `content/read` on
//! `hello-world` only, used the way people use one.
//!
//! - docker (a private dockerd): `docker login` with the token; `docker pull` works; `docker
//!   push` to `hello-world` and a pull of another repository are refused; once the token is
//!   disabled through the management API, the next `docker pull` (and `docker login`) is
//!   refused.
//! - podman: `podman login` with the token; pull works; push and another repository are
//!   refused.
//! - skopeo with `--creds`: inspect works; copying to `hello-world`, inspecting another
//!   repository and listing tags (metadata/read) are refused; disabling the token refuses the
//!   next inspect; password1 regenerated: the old one fails, the new one works, password2
//!   keeps working; a password whose expiry has passed is refused.
//!
//! The images are pushed first with the admin's credentials. Every refusal is also checked
//! on the registry's side: nothing was written.

mod authn;
mod clients;
mod common;

use authn::{Cred, Manage, client, expect_status, send, utc_in};
use berth_oci::time::unix_now;
use clients::{
    Containers, Dockerd, Image, OciLayout, Output, host_arch, parse_json, run, run_failing,
    run_unchecked_with_stdin,
};
use std::time::Duration;

const REPO: &str = "hello-world";
const OTHER: &str = "other/app";
const TOKEN: &str = "hello-reader";

/// A registry with `hello-world:latest` and `other/app:latest` pushed by the admin, and a
/// token with content/read on `hello-world`.
struct Fixture {
    berth: common::Berth,
    c: Containers,
    layout: OciLayout,
    image: Image,
    manage: Manage,
    password1: String,
    password2: String,
}

impl Fixture {
    fn start() -> Self {
        common::require("skopeo");
        let berth = common::Berth::start();
        let c = Containers::new();
        let mut layout = OciLayout::create(&c.work("layout"));
        let image = layout.put_image(host_arch(), "hello", b"hello from berth\n", Some("latest"));
        let admin = format!("admin:{}", common::ADMIN_PASSWORD);
        for repo in [REPO, OTHER] {
            run(c
                .skopeo()
                .arg("copy")
                .arg("--dest-tls-verify=false")
                .arg("--dest-creds")
                .arg(&admin)
                .arg(layout.reference("latest"))
                .arg(format!("docker://{}/{repo}:latest", berth.host)));
        }
        let manage = Manage::new(&berth.url);
        manage.create_scope_map("hello-world-pull", &[(REPO, &["content/read"])]);
        let p = manage.create_token(TOKEN, "hello-world-pull", None);
        Fixture {
            berth,
            c,
            layout,
            image,
            manage,
            password1: p.password1,
            password2: p.password2,
        }
    }

    fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.berth.host)
    }

    /// `skopeo inspect --raw`-less inspect of `repo:latest` with `creds`, whatever the outcome.
    fn skopeo_inspect(&self, repo: &str, creds: &str) -> Output {
        clients::run_unchecked(
            self.c
                .skopeo()
                .arg("inspect")
                .arg("--tls-verify=false")
                .arg("--creds")
                .arg(creds)
                .arg(format!("docker://{}", self.reference(repo, "latest"))),
        )
    }

    /// The inspect works and names the pushed manifest.
    #[track_caller]
    fn expect_inspect_works(&self, creds: &str, what: &str) {
        let out = self.skopeo_inspect(REPO, creds);
        assert!(
            out.status.success(),
            "{what}: skopeo inspect of {REPO} should work\n{}",
            out.report()
        );
        let inspected = parse_json(&out.stdout);
        assert_eq!(
            inspected["Digest"],
            self.image.digest().as_str(),
            "{what}: skopeo inspect names another digest\n{}",
            out.report()
        );
    }

    /// The inspect fails with an authentication error.
    #[track_caller]
    fn expect_inspect_refused(&self, repo: &str, creds: &str, what: &str) -> Output {
        let out = self.skopeo_inspect(repo, creds);
        assert!(
            !out.status.success(),
            "{what}: skopeo inspect of {repo} should be refused\n{}",
            out.report()
        );
        expect_auth_message(&out, what);
        out
    }

    /// Asserts, as the admin over HTTP, that `repo:tag` does not exist.
    #[track_caller]
    fn expect_no_tag(&self, repo: &str, tag: &str, what: &str) {
        let resp = send(
            &client(),
            "GET",
            &format!("{}/v2/{repo}/manifests/{tag}", self.berth.url),
            &Cred::admin(),
            &[("Accept", clients::OCI_MANIFEST)],
            None,
        );
        expect_status(
            &resp,
            404,
            &format!("{what}: the refused push must not have created {repo}:{tag}"),
        );
    }
}

/// A client's failure message names an authentication or authorization refusal.
#[track_caller]
fn expect_auth_message(out: &Output, what: &str) {
    let text = out.combined().to_lowercase();
    assert!(
        [
            "denied",
            "unauthorized",
            "authentication required",
            "invalid username/password"
        ]
        .iter()
        .any(|m| text.contains(m)),
        "{what}: expected the client to report a refusal (denied / unauthorized), got:\n{}",
        out.report()
    );
}

#[test]
fn docker_with_a_read_token_pulls_but_cannot_push_or_reach_another_repository() {
    common::require("dockerd");
    common::require("docker");
    let f = Fixture::start();
    let dockerd = Dockerd::start();
    let docker = || dockerd.docker();

    dockerd.login(&f.berth.host, TOKEN, &f.password1);
    let hello = f.reference(REPO, "latest");
    run(docker().arg("pull").arg(&hello));
    let id = run(docker()
        .arg("image")
        .arg("inspect")
        .arg("--format")
        .arg("{{.Id}}")
        .arg(&hello));
    assert_eq!(
        id.stdout.trim(),
        f.image.config_digest,
        "docker pulled another image than was pushed"
    );

    // Push to the repository it may only read: refused.
    let pushed = f.reference(REPO, "pushed");
    run(docker().arg("tag").arg(&hello).arg(&pushed));
    let out = run_failing(docker().arg("push").arg(&pushed));
    expect_auth_message(&out, "docker push with a read-only token");
    f.expect_no_tag(REPO, "pushed", "docker push");

    // Another repository: refused.
    let out = run_failing(docker().arg("pull").arg(f.reference(OTHER, "latest")));
    expect_auth_message(&out, "docker pull of a repository outside the scope map");

    // Disabled: the very next pull is refused, and so is a new login.
    run(docker().arg("rmi").arg(&hello).arg(&pushed));
    f.manage.set_token_status(TOKEN, "disabled");
    let out = run_failing(docker().arg("pull").arg(&hello));
    expect_auth_message(&out, "docker pull after the token was disabled");
    let out = dockerd.try_login(&f.berth.host, TOKEN, &f.password1);
    assert!(
        !out.status.success(),
        "docker login with a disabled token should fail\n{}",
        out.report()
    );

    // Enabled again, it pulls again.
    f.manage.set_token_status(TOKEN, "enabled");
    run(docker().arg("pull").arg(&hello));
}

#[test]
fn podman_with_a_read_token_pulls_but_cannot_push_or_reach_another_repository() {
    common::require("podman");
    let f = Fixture::start();
    let login = run_unchecked_with_stdin(
        f.c.podman("main")
            .arg("login")
            .arg("--tls-verify=false")
            .arg("-u")
            .arg(TOKEN)
            .arg("--password-stdin")
            .arg(&f.berth.host),
        Some(f.password2.as_bytes()),
    );
    assert!(
        login.status.success(),
        "podman login with the token should work\n{}",
        login.report()
    );

    let hello = f.reference(REPO, "latest");
    let pulled = run(f
        .c
        .podman("main")
        .arg("pull")
        .arg("--tls-verify=false")
        .arg(&hello));
    let id = pulled.stdout.lines().last().unwrap_or_default().trim();
    assert_eq!(
        format!("sha256:{}", id.trim_start_matches("sha256:")),
        f.image.config_digest,
        "podman pulled another image than was pushed\n{}",
        pulled.stdout
    );

    let pushed = f.reference(REPO, "pushed");
    run(f.c.podman("main").arg("tag").arg(&hello).arg(&pushed));
    let out = run_failing(
        f.c.podman("main")
            .arg("push")
            .arg("--tls-verify=false")
            .arg(&pushed),
    );
    expect_auth_message(&out, "podman push with a read-only token");
    f.expect_no_tag(REPO, "pushed", "podman push");

    let out = run_failing(
        f.c.podman("other")
            .arg("pull")
            .arg("--tls-verify=false")
            .arg(f.reference(OTHER, "latest")),
    );
    expect_auth_message(&out, "podman pull of a repository outside the scope map");
}

#[test]
fn skopeo_with_token_credentials_through_disable_rotation_and_expiry() {
    let f = Fixture::start();
    let creds = |password: &str| format!("{TOKEN}:{password}");
    f.expect_inspect_works(&creds(&f.password1), "password1");

    // Copying into the repository it may only read: refused, nothing written.
    let out = clients::run_unchecked(
        f.c.skopeo()
            .arg("copy")
            .arg("--dest-tls-verify=false")
            .arg("--dest-creds")
            .arg(creds(&f.password1))
            .arg(f.layout.reference("latest"))
            .arg(format!("docker://{}", f.reference(REPO, "pushed"))),
    );
    assert!(
        !out.status.success(),
        "skopeo copy to {REPO} with a read-only token should fail\n{}",
        out.report()
    );
    expect_auth_message(&out, "skopeo copy with a read-only token");
    f.expect_no_tag(REPO, "pushed", "skopeo copy");

    // Another repository, and tag listing (metadata/read, not granted): refused.
    f.expect_inspect_refused(OTHER, &creds(&f.password1), "another repository");
    let out = clients::run_unchecked(
        f.c.skopeo()
            .arg("list-tags")
            .arg("--tls-verify=false")
            .arg("--creds")
            .arg(creds(&f.password1))
            .arg(format!("docker://{}/{REPO}", f.berth.host)),
    );
    assert!(
        !out.status.success(),
        "skopeo list-tags needs metadata/read, which the token lacks\n{}",
        out.report()
    );

    // Disabled: the next inspect is refused, with either password; enabled: works again.
    f.manage.set_token_status(TOKEN, "disabled");
    f.expect_inspect_refused(REPO, &creds(&f.password1), "disabled token, password1");
    f.expect_inspect_refused(REPO, &creds(&f.password2), "disabled token, password2");
    f.manage.set_token_status(TOKEN, "enabled");
    f.expect_inspect_works(&creds(&f.password1), "re-enabled token");

    // password1 regenerated: the old one fails, the new one works, password2 keeps working.
    let new1 = f.manage.regenerate(TOKEN, "password1", None);
    f.expect_inspect_refused(
        REPO,
        &creds(&f.password1),
        "the old password1 after rotation",
    );
    f.expect_inspect_works(&creds(&new1), "the new password1");
    f.expect_inspect_works(
        &creds(&f.password2),
        "password2 after password1 was rotated",
    );

    // A password created with an expiry a few seconds ahead: works, then is refused once the
    // expiry has passed.
    let (expiry, at) = utc_in(5);
    let new2 = f.manage.regenerate(TOKEN, "password2", Some(&expiry));
    if unix_now() < at {
        f.expect_inspect_works(&creds(&new2), "password2 before its expiry");
    }
    while unix_now() < at {
        std::thread::sleep(Duration::from_millis(100));
    }
    f.expect_inspect_refused(REPO, &creds(&new2), "password2 after its expiry");
    f.expect_inspect_works(&creds(&new1), "password1 while password2 is expired");
}
