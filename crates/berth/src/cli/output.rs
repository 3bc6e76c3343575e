//! What the commands print: `--output table` (aligned columns, the default),
//! `--output json` (the API's answer, for scripts), and, where passwords are generated,
//! `--output docker-config` and `--output kube-secret`.
//!
//! A generated password goes to standard output exactly once; the reminder that it cannot
//! be shown again goes to standard error, so that a script capturing standard output gets
//! only the data.

use base64::Engine as _;
use berth_api::NewPassword;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::CliError;

/// Printed after generated passwords, on standard error.
pub fn password_reminder(count: usize) -> &'static str {
    if count == 1 {
        "Save the password now: the registry keeps only its hash and cannot show it again."
    } else {
        "Save the passwords now: the registry keeps only their hashes and cannot show them again."
    }
}

/// `--output` of commands that print registry objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// The `--output` flag of commands that print registry objects.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, help_heading = "Output")]
    pub output: Format,
}

impl OutputArgs {
    /// Whether the output is JSON (for scripts: no progress lines).
    pub fn is_json(&self) -> bool {
        matches!(self.output, Format::Json)
    }

    /// Prints `value` as JSON, or decoded as `T` through `table`.
    pub fn print<T: serde::de::DeserializeOwned>(
        &self,
        value: Value,
        table: impl FnOnce(T),
    ) -> Result<(), CliError> {
        match self.output {
            Format::Json => print_json(&value),
            Format::Table => table(super::client::decode(value)?),
        }
        Ok(())
    }
}

/// `--output` of commands that generate passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretFormat {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
    /// A Docker `config.json` with the first generated password.
    DockerConfig,
    /// A Kubernetes Secret of type `kubernetes.io/dockerconfigjson`, for `imagePullSecrets`.
    KubeSecret,
}

/// The output flags of commands that generate passwords.
#[derive(Args, Debug, Clone)]
pub struct SecretOutputArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = SecretFormat::Table, help_heading = "Output")]
    pub output: SecretFormat,
    /// Namespace of the Kubernetes Secret [default: none, kubectl's current namespace].
    #[arg(long, value_name = "N", help_heading = "Output")]
    pub namespace: Option<String>,
    /// Name of the Kubernetes Secret (with `--output kube-secret`).
    #[arg(
        long,
        value_name = "S",
        required_if_eq("output", "kube-secret"),
        help_heading = "Output"
    )]
    pub secret_name: Option<String>,
    /// The registry the credentials are for, as its clients reach it, e.g. a connected
    /// registry's login server; named in the docker-config and kube-secret documents and in
    /// the table's login hint [default: the registry this command manages].
    #[arg(long, value_name = "HOST[:PORT]", help_heading = "Output")]
    pub login_server: Option<String>,
}

impl SecretOutputArgs {
    /// Checks the flags before anything is sent, so that a token is never created (or a
    /// password replaced) only to fail at printing it.
    pub fn check(&self, generates_passwords: bool) -> Result<(), CliError> {
        let document = matches!(
            self.output,
            SecretFormat::DockerConfig | SecretFormat::KubeSecret
        );
        if document && !generates_passwords {
            return Err(CliError::usage(
                "--output docker-config and kube-secret need a generated password; drop --no-passwords",
            ));
        }
        if self.output != SecretFormat::KubeSecret
            && (self.namespace.is_some() || self.secret_name.is_some())
        {
            return Err(CliError::usage(
                "--namespace and --secret-name go with --output kube-secret",
            ));
        }
        if let Some(server) = &self.login_server {
            if self.output == SecretFormat::Json {
                return Err(CliError::usage(
                    "--login-server goes with --output docker-config, kube-secret or table; --output json prints the registry's answer as it is",
                ));
            }
            berth_auth::connected::validate_endpoint("--login-server", server)
                .map_err(|e| CliError::usage(e.to_string()))?;
        }
        if let Some(name) = &self.secret_name {
            check_kube_name("--secret-name", name, 253, true)?;
        }
        if let Some(namespace) = &self.namespace {
            check_kube_name("--namespace", namespace, 63, false)?;
        }
        Ok(())
    }

    /// Prints freshly generated passwords: `json` is the API's whole answer, `table`
    /// prints everything but the passwords for the table format. The documents name
    /// `--login-server`, else `server`, the registry managed.
    pub fn print_passwords(
        &self,
        server: &str,
        token: &str,
        passwords: &[NewPassword],
        json: &Value,
        table: impl FnOnce(),
    ) -> Result<(), CliError> {
        let server = self.login_server.as_deref().unwrap_or(server);
        let first = || {
            passwords.first().ok_or_else(|| {
                CliError::failed("the registry generated no password to put in the document")
            })
        };
        match self.output {
            SecretFormat::Json => print_json(json),
            SecretFormat::Table => {
                table();
                if !passwords.is_empty() {
                    println!();
                    print_new_passwords(passwords);
                    eprintln!();
                    eprintln!("{}", password_reminder(passwords.len()));
                    eprintln!("Log in with: docker login {server} -u {token} --password-stdin");
                }
                return Ok(());
            }
            SecretFormat::DockerConfig => {
                let config = docker_config(server, token, &first()?.value);
                print_json(&config);
            }
            SecretFormat::KubeSecret => {
                let config = docker_config(server, token, &first()?.value);
                let name = self.secret_name.as_deref().unwrap_or_default();
                print!("{}", kube_secret(name, self.namespace.as_deref(), &config));
            }
        }
        if !passwords.is_empty() {
            eprintln!("{}", password_reminder(passwords.len()));
        }
        Ok(())
    }
}

/// Checks a Kubernetes object name (DNS-1123 subdomain) or namespace (DNS-1123 label), so
/// the Secret is accepted by `kubectl apply` and needs no quoting.
fn check_kube_name(flag: &str, name: &str, max: usize, dots: bool) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "{flag} `{name}` is not a valid Kubernetes name: use at most {max} lowercase letters, digits{} and `-`, starting and ending with a letter or digit",
            if dots { ", `.`" } else { "" }
        )))
    }
}

/// Pretty-prints JSON on standard output.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    );
}

/// The table of passwords just generated, with their values.
pub fn print_new_passwords(passwords: &[NewPassword]) {
    let mut table = Table::new(&["PASSWORD", "VALUE", "EXPIRES"]);
    for p in passwords {
        table.row([
            p.name.to_string(),
            p.value.clone(),
            p.expiry.clone().unwrap_or_else(|| "never".into()),
        ]);
    }
    table.print();
}

/// A Docker `config.json` holding one login: `{"auths":{server:{username,password,auth}}}`.
pub fn docker_config(server: &str, username: &str, password: &str) -> Value {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    json!({
        "auths": {
            server: { "username": username, "password": password, "auth": auth }
        }
    })
}

/// A Kubernetes Secret of type `kubernetes.io/dockerconfigjson`, as YAML. `name` and
/// `namespace` have been checked by [`SecretOutputArgs::check`], and base64 needs no
/// quoting, so the document is written directly.
pub fn kube_secret(name: &str, namespace: Option<&str>, docker_config: &Value) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(docker_config.to_string());
    let namespace = namespace
        .map(|n| format!("  namespace: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n{namespace}type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {data}\n"
    )
}

/// A table of aligned columns, with or without a header row.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `header`.
    pub fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// A header-less table of `label: value` lines.
    pub fn fields() -> Self {
        Table { rows: Vec::new() }
    }

    /// Adds a row.
    pub fn row<const N: usize>(&mut self, cells: [String; N]) -> &mut Self {
        self.rows.push(cells.into());
        self
    }

    /// Adds a `label: value` row.
    pub fn field(&mut self, label: &str, value: impl Into<String>) -> &mut Self {
        self.rows.push(vec![format!("{label}:"), value.into()]);
        self
    }

    /// The table as text, one line per row, columns two spaces apart.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + 2;
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on standard output.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut table = Table::new(&["NAME", "STATUS"]);
        table.row(["a-long-name".into(), "enabled".into()]);
        table.row(["short".into(), "".into()]);
        assert_eq!(
            table.render(),
            "NAME         STATUS\na-long-name  enabled\nshort\n"
        );
    }

    #[test]
    fn kube_names() {
        assert!(check_kube_name("--secret-name", "pull.secret-1", 253, true).is_ok());
        assert!(check_kube_name("--namespace", "pull.secret", 63, false).is_err());
        assert!(check_kube_name("--namespace", "Default", 63, false).is_err());
        assert!(check_kube_name("--namespace", "-x", 63, false).is_err());
    }

    #[test]
    fn docker_auth_is_base64_of_user_and_password() {
        let config = docker_config("127.0.0.1:5000", "ci-pull", "secret");
        assert_eq!(
            config["auths"]["127.0.0.1:5000"]["auth"],
            "Y2ktcHVsbDpzZWNyZXQ="
        );
    }
}
