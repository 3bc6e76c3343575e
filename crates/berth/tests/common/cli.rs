//! The `berth` management command line as the tests run it: a real process with its own
//! configuration directory (`BERTH_CONFIG_DIR` in a temporary directory), so tests never
//! see each other's logins, and none of the `BERTH_SERVER`/`BERTH_USERNAME`/`BERTH_PASSWORD`
//! or CA settings (`SSL_CERT_FILE`, `SSL_CERT_DIR`) of the environment the tests run in.
//!
//! [`Cli::ok`], [`Cli::json`], [`Cli::fails`] and [`Cli::refused`] run a command and check
//! how it ended, printing everything it wrote when it did not end as expected; the helpers
//! after [`Cli`] read what the commands print (fields tables, connection strings).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::{ADMIN_PASSWORD, Berth, berth_bin};

/// The `berth` command line with its own configuration directory.
pub struct Cli {
    temp: tempfile::TempDir,
}

/// What a failing command may print on standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stdout {
    /// Anything: only the exit code is checked.
    Any,
    /// Nothing: a failure says why on standard error only.
    Empty,
}

impl Cli {
    /// A command line that has not logged in.
    pub fn new() -> Self {
        Cli {
            temp: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    /// A command line logged in as the admin of `berth`.
    #[track_caller]
    pub fn logged_in(berth: &Berth) -> Self {
        let cli = Cli::new();
        let out = cli.run_with_stdin(
            &["login", &berth.host, "--password-stdin"],
            &format!("{ADMIN_PASSWORD}\n"),
        );
        assert_success(&out, "login");
        cli
    }

    /// `berth <args>` with this command line's configuration directory, no inherited
    /// server, credentials or CA settings, and no standard input, to be run by the caller.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(berth_bin());
        command
            .args(args)
            .env("BERTH_CONFIG_DIR", self.config_dir())
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_USERNAME")
            .env_remove("BERTH_PASSWORD")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .stdin(Stdio::null());
        command
    }

    /// Runs `berth <args>`, whatever it ends with.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run berth")
    }

    /// Runs `berth <args>` with `input` on its standard input, whatever it ends with.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run berth");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().expect("wait for berth")
    }

    /// Runs a command that must succeed; returns its standard output.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_stderr(args).0
    }

    /// Runs a command that must succeed; returns its standard output and error.
    #[track_caller]
    pub fn ok_with_stderr(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert_success(&out, &args.join(" "));
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// Runs a command that must succeed with `-o json`; returns the parsed output.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let stdout = self.ok(&args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "`berth {}` printed invalid JSON ({e}):\n{stdout}",
                args.join(" ")
            )
        })
    }

    /// `connected-registry <args…>` that must succeed with `-o json`; the parsed output.
    #[track_caller]
    pub fn cr(&self, args: &[&str]) -> Value {
        let mut all = vec!["connected-registry"];
        all.extend(args);
        self.json(&all)
    }

    /// Runs a command that must exit with `code`; returns its standard error.
    #[track_caller]
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        self.fails_with(args, code, Stdout::Any)
    }

    /// Runs a command that must exit with `code` and print nothing on standard output;
    /// returns its standard error.
    #[track_caller]
    pub fn fails_silently(&self, args: &[&str], code: i32) -> String {
        self.fails_with(args, code, Stdout::Empty)
    }

    /// Runs a command that must exit with `code`, having printed on standard output what
    /// `stdout` allows; returns its standard error.
    #[track_caller]
    fn fails_with(&self, args: &[&str], code: i32, stdout: Stdout) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "`berth {}` should exit {code}; stdout:\n{}\nstderr:\n{stderr}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
        );
        if stdout == Stdout::Empty {
            assert!(
                out.stdout.is_empty(),
                "`berth {}` failed but printed on stdout:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        stderr
    }

    /// Runs a command that the registry must refuse (exit 1, nothing on standard output)
    /// with a message containing every one of `expected`; returns its standard error.
    #[track_caller]
    pub fn refused(&self, args: &[&str], expected: &[&str]) -> String {
        let stderr = self.fails_silently(args, 1);
        for part in expected {
            assert!(
                stderr.contains(part),
                "`berth {}`: expected `{part}` in:\n{stderr}",
                args.join(" ")
            );
        }
        stderr
    }

    /// The configuration directory; `berth login` creates it.
    pub fn config_dir(&self) -> PathBuf {
        self.temp.path().join("berth")
    }

    /// The credentials file `berth login` writes.
    pub fn credentials_file(&self) -> PathBuf {
        self.config_dir().join("credentials.json")
    }
}

/// Panics, with everything `berth <what>` printed, unless it exited 0.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "`berth {what}` failed with {}; stdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// Panics unless `text` contains `needle`.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected `{needle}` in:\n{text}");
}

/// The value of a `Label:  value` line of a fields table.
#[track_caller]
pub fn field<'t>(table: &'t str, label: &str) -> &'t str {
    let prefix = format!("{label}:");
    table
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{label}` in:\n{table}"))
}

/// The first column of each row of a table, header excluded.
pub fn first_column(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The value of `key` in a connection string.
#[track_caller]
pub fn connection_field<'t>(text: &'t str, key: &str) -> &'t str {
    text.trim()
        .split(';')
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no `{key}` in {text}"))
}
