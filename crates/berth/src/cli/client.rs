//! The one HTTP client of the command line: a registry's base URL, the admin's Basic
//! credentials, and the single mapping from HTTP answers to [`CliError`]s.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_api::ErrorBody;
use clap::Args;
use reqwest::blocking::RequestBuilder;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::CliError;
use super::credentials::CredentialStore;

/// The user name `berth login` assumes.
pub const DEFAULT_USERNAME: &str = "admin";

/// A registry as a user names it: `host:port` (the login server that Docker and
/// Kubernetes write in their configuration) and the URL Berth talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `host` or `host:port`, without scheme; the key of Docker's `auths`.
    pub name: String,
    /// `http://host:port` or `https://host:port`.
    pub url: Url,
}

impl Server {
    /// Parses `host[:port]`, `http://host[:port]` or `https://host[:port]`.
    ///
    /// Without a scheme, plain HTTP is assumed for loopback addresses and when `insecure`
    /// is set, HTTPS otherwise (as Docker does).
    pub fn parse(input: &str, insecure: bool) -> Result<Server, CliError> {
        let input = input.trim().trim_end_matches('/');
        let with_scheme = if input.contains("://") {
            input.to_owned()
        } else {
            let host = input.rsplit_once(':').map_or(input, |(host, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    host
                } else {
                    input
                }
            });
            let scheme = if insecure || is_loopback(host) {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{input}")
        };
        let invalid = |why: &str| {
            CliError::usage(format!("`{input}` is not a registry address: {why}"))
                .hint("give host:port, e.g. `registry.example.com:5000`, or a URL such as `http://10.0.0.5:5000`")
        };
        let url = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "a registry is named by host and port only, without a path",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "give credentials with --username and --password, not in the address",
            ));
        }
        let host = url.host_str().ok_or_else(|| invalid("it names no host"))?;
        let name = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Server { name, url })
    }

    /// Refuses plain HTTP to a registry that is not on this machine unless `insecure`: the
    /// admin's password would cross the network in clear.
    pub fn check_transport(&self, insecure: bool) -> Result<(), CliError> {
        let host = self.url.host_str().unwrap_or("");
        if self.url.scheme() == "http" && !insecure && !is_loopback(host) {
            return Err(CliError::usage(format!(
                "refusing plain HTTP to `{}`, which is not on this machine: the admin's password would cross the network in clear",
                self.name
            ))
            .hint(format!(
                "use `https://{}` (with --ca-cert for a private CA), or pass --insecure to send it anyway",
                self.name
            )));
        }
        Ok(())
    }
}

/// How the command line trusts a registry's certificate: the system's store, the
/// certificates in `SSL_CERT_FILE`, and those of `--ca-cert` (or the saved login's).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// A PEM file of CA certificates given with `--ca-cert`.
    pub ca_cert: Option<PathBuf>,
}

impl Trust {
    /// The extra root certificates, read from `--ca-cert` and `SSL_CERT_FILE`.
    fn roots(&self) -> Result<Vec<reqwest::Certificate>, CliError> {
        let from_env = std::env::var_os("SSL_CERT_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let mut roots = Vec::new();
        for (what, path) in [("--ca-cert", &self.ca_cert), ("SSL_CERT_FILE", &from_env)] {
            let Some(path) = path else { continue };
            let pem = std::fs::read(path).map_err(|e| {
                CliError::usage(format!(
                    "cannot read the CA certificates of {what} `{}`: {e}",
                    path.display()
                ))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "{what} `{}` holds no PEM certificate",
                        path.display()
                    ))
                })?;
            roots.extend(certificates);
        }
        Ok(roots)
    }
}

/// Whether a connection error's text is about the server's certificate.
fn is_certificate_problem(why: &str) -> bool {
    let why = why.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "issuer",
        "notvalidforname",
        "expired",
    ]
    .iter()
    .any(|w| why.contains(w))
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Which registry to manage and as whom; by default the last `berth login`.
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Registry to manage, as `host:port` or a URL [default: the last `berth login`].
    #[arg(
        long,
        short = 's',
        env = "BERTH_SERVER",
        global = true,
        help_heading = "Connection"
    )]
    pub server: Option<String>,
    /// User name for the management API [default: the saved login's, else `admin`].
    #[arg(
        long,
        env = "BERTH_USERNAME",
        global = true,
        help_heading = "Connection"
    )]
    pub username: Option<String>,
    /// Password for the management API [default: the saved login's].
    #[arg(
        long,
        env = "BERTH_PASSWORD",
        global = true,
        hide_env_values = true,
        help_heading = "Connection"
    )]
    pub password: Option<String>,
    /// PEM file of CA certificates to trust for the registry, beside the system's store and
    /// SSL_CERT_FILE [default: the saved login's].
    #[arg(
        long,
        env = "BERTH_CA_CERT",
        global = true,
        value_name = "FILE",
        help_heading = "Connection"
    )]
    pub ca_cert: Option<PathBuf>,
    /// Allow plain HTTP to a --server that is not on this machine.
    #[arg(long, global = true, help_heading = "Connection")]
    pub insecure: bool,
}

impl ConnectionArgs {
    /// A client for the chosen registry, with the saved login filling in what the flags
    /// and variables leave out.
    pub fn connect(&self) -> Result<ApiClient, CliError> {
        let saved = CredentialStore::locate()?.load()?;
        let (server, login) = match &self.server {
            Some(input) => {
                let mut server = Server::parse(input, self.insecure)?;
                let login = saved.find(&server.name).cloned();
                // A saved login remembers whether the registry speaks plain HTTP (the user
                // agreed to it at login), unless the flag names a scheme itself.
                match &login {
                    Some(login) if !input.contains("://") => server = login.server()?,
                    _ => server.check_transport(self.insecure)?,
                }
                (server, login)
            }
            None => {
                let login = saved.current().cloned().ok_or_else(|| {
                    CliError::access("not logged in to any registry").hint(
                        "run `berth login <host:port>` first, or pass --server with --password",
                    )
                })?;
                (login.server()?, Some(login))
            }
        };
        let username = self
            .username
            .clone()
            .or_else(|| login.as_ref().map(|l| l.username.clone()))
            .unwrap_or_else(|| DEFAULT_USERNAME.to_owned());
        let password = match (&self.password, &login) {
            (Some(password), _) => password.clone(),
            (None, Some(login)) if login.username == username => login.password.clone(),
            _ => {
                return Err(CliError::access(format!(
                    "no saved password for `{username}` at `{}`",
                    server.name
                ))
                .hint(format!(
                    "run `berth login {} -u {username}`, or pass --password",
                    server.name
                )));
            }
        };
        let trust = Trust {
            ca_cert: self
                .ca_cert
                .clone()
                .or_else(|| login.as_ref().and_then(|l| l.ca_cert.clone())),
        };
        ApiClient::new(server, username, password, &trust)
    }
}

/// How long a management request may take; they are all small.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A blocking client of one registry's management API, authenticated as one user.
pub struct ApiClient {
    http: reqwest::blocking::Client,
    server: Server,
    username: String,
    password: String,
}

impl ApiClient {
    /// A client for `server` that sends `username:password` on every request.
    /// HTTPS servers are verified against the system's store plus what `trust` adds.
    pub fn new(
        server: Server,
        username: String,
        password: String,
        trust: &Trust,
    ) -> Result<Self, CliError> {
        berth_tls::install_crypto_provider();
        let mut builder = reqwest::blocking::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT);
        if server.url.scheme() == "https" {
            for root in trust.roots()? {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder
            .build()
            .map_err(|e| CliError::failed(format!("cannot start an HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            server,
            username,
            password,
        })
    }

    /// The registry this client talks to.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// `GET /berth/v1/<path…>`.
    pub fn get(&self, path: &[&str]) -> Result<Value, CliError> {
        self.send(Method::GET, path, &[], None::<&()>)
    }

    /// `GET /berth/v1/<path…>?<query>`, the query one of `berth-api`'s `…Query` types.
    pub fn get_query(&self, path: &[&str], query: &impl Serialize) -> Result<Value, CliError> {
        self.send(Method::GET, path, &query_pairs(query), None::<&()>)
    }

    /// `POST /berth/v1/<path…>` with a JSON body.
    pub fn post(&self, path: &[&str], body: &impl Serialize) -> Result<Value, CliError> {
        self.send(Method::POST, path, &[], Some(body))
    }

    /// `PATCH /berth/v1/<path…>` with a JSON body.
    pub fn patch(&self, path: &[&str], body: &impl Serialize) -> Result<Value, CliError> {
        self.send(Method::PATCH, path, &[], Some(body))
    }

    /// `DELETE /berth/v1/<path…>`; `Value::Null` when the answer has no body.
    pub fn delete(&self, path: &[&str]) -> Result<Value, CliError> {
        self.send(Method::DELETE, path, &[], None::<&()>)
    }

    /// `DELETE /berth/v1/<path…>` with a JSON body.
    pub fn delete_with(&self, path: &[&str], body: &impl Serialize) -> Result<Value, CliError> {
        self.send(Method::DELETE, path, &[], Some(body))
    }

    /// `DELETE /berth/v1/<path…>?<query>`, the query one of `berth-api`'s `…Query` types.
    pub fn delete_query(&self, path: &[&str], query: &impl Serialize) -> Result<Value, CliError> {
        self.send(Method::DELETE, path, &query_pairs(query), None::<&()>)
    }

    fn url(&self, path: &[&str], query: &[(String, String)]) -> Url {
        let mut url = self.server.url.clone();
        // Each name is one path segment, percent-encoded, whatever the user typed.
        url.path_segments_mut()
            .expect("an http URL has a path")
            .clear()
            .extend(["berth", "v1"])
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(String, String)],
        body: Option<&impl Serialize>,
    ) -> Result<Value, CliError> {
        let mut request: RequestBuilder = self
            .http
            .request(method, self.url(path, query))
            .basic_auth(&self.username, Some(&self.password));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| {
                CliError::failed(format!(
                    "`{}` answered with something that is not JSON: {e}",
                    self.server.name
                ))
            });
        }
        Err(self.refusal(status, &text, retry_after))
    }

    fn unreachable(&self, error: &reqwest::Error) -> CliError {
        // The innermost cause is the useful part ("Connection refused", a DNS failure);
        // the outer layers only repeat the URL.
        let mut cause: &dyn std::error::Error = error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        let why = if error.is_timeout() {
            "the request timed out".to_owned()
        } else {
            cause.to_string()
        };
        let error = CliError::access(format!(
            "cannot reach the registry at {}: {why}",
            self.server.url
        ));
        if self.server.url.scheme() == "https" && is_certificate_problem(&why) {
            return error.hint(
                "the registry's certificate is not trusted here: give its CA with --ca-cert FILE (or SSL_CERT_FILE), or add the CA to the system's store",
            );
        }
        error.hint(
            "check that it is running and that the address is right (`berth login <host:port>`)",
        )
    }

    /// The single mapping from an error answer to a [`CliError`].
    fn refusal(&self, status: StatusCode, body: &str, retry_after: Option<String>) -> CliError {
        let (code, message) = error_body(body).unwrap_or_else(|| {
            let snippet: String = body.chars().take(200).collect();
            (String::new(), format!("{status}: {}", snippet.trim()))
        });
        let server = &self.server.name;
        match (status, code.as_str()) {
            (StatusCode::UNAUTHORIZED, _) => CliError::access(format!(
                "the registry at `{server}` refused the credentials of `{}`: {message}",
                self.username
            ))
            .hint(format!(
                "run `berth login {server}` with the admin's user name and password (printed by `berth serve` at its first start, or set with BERTH_ADMIN_PASSWORD)"
            )),
            (StatusCode::FORBIDDEN, _) => CliError::access(format!(
                "`{}` may not use the management API of `{server}`: {message}",
                self.username
            ))
            .hint(format!(
                "tokens log in with `docker login`; log in here as the admin: `berth login {server} -u admin`"
            )),
            (StatusCode::TOO_MANY_REQUESTS, _) => CliError::access(message).hint(format!(
                "too many failed logins from this address; wait {} second(s) and try again",
                retry_after.as_deref().unwrap_or("a few")
            )),
            // A 404 that is not the API's own NOT_FOUND means no management API there.
            (StatusCode::NOT_FOUND, c) if c != "NOT_FOUND" => CliError::access(format!(
                "`{server}` does not serve Berth's management API ({message})"
            ))
            .hint("check the address: is it a Berth registry?"),
            (s, _) if s.is_server_error() => CliError::failed(format!(
                "the registry at `{server}` failed: {message}"
            ))
            .hint("see the registry's log"),
            _ => CliError::failed(message),
        }
    }
}

/// The code and message of an API error body, `{"errors":[{"code","message"}]}`.
fn error_body(body: &str) -> Option<(String, String)> {
    let body: ErrorBody = serde_json::from_str(body).ok()?;
    let error = body.errors.into_iter().next()?;
    Some((error.code, error.message))
}

/// A query type's fields as `name=value` pairs: strings as they are, numbers and booleans
/// as JSON writes them; the types leave out what is unset.
fn query_pairs(query: &impl Serialize) -> Vec<(String, String)> {
    let Ok(Value::Object(fields)) = serde_json::to_value(query) else {
        unreachable!("a query type serialises to a JSON object of plain values");
    };
    fields
        .into_iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, value)| match value {
            Value::String(text) => (name, text),
            other => (name, other.to_string()),
        })
        .collect()
}

/// Reads a response body into its typed form.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, CliError> {
    serde_json::from_value(value).map_err(|e| {
        CliError::failed(format!(
            "the registry's answer has an unexpected shape: {e}"
        ))
        .hint("is berth older or newer than the registry? `berth show` gives its version")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let s = Server::parse("127.0.0.1:5000", false).unwrap();
        assert_eq!(s.name, "127.0.0.1:5000");
        assert_eq!(s.url.as_str(), "http://127.0.0.1:5000/");
        let s = Server::parse("localhost:5000/", false).unwrap();
        assert_eq!(s.url.scheme(), "http");
        let s = Server::parse("[::1]:5000", false).unwrap();
        assert_eq!((s.name.as_str(), s.url.scheme()), ("[::1]:5000", "http"));
        let s = Server::parse("registry.example.com", false).unwrap();
        assert_eq!(
            (s.name.as_str(), s.url.scheme()),
            ("registry.example.com", "https")
        );
        let s = Server::parse("registry.example.com:5000", true).unwrap();
        assert_eq!(s.url.as_str(), "http://registry.example.com:5000/");
        let s = Server::parse("http://10.0.0.5:80", false).unwrap();
        assert_eq!(s.name, "10.0.0.5");
        assert!(Server::parse("ftp://x", false).is_err());
        assert!(Server::parse("http://x/v2", false).is_err());
        assert!(Server::parse("http://u:p@x", false).is_err());
    }

    #[test]
    fn plain_http_only_to_this_machine_unless_insecure() {
        for remote in [
            "http://10.0.0.5:5000",
            "http://registry.example.com",
            "http://[2001:db8::1]:5000",
        ] {
            let server = Server::parse(remote, false).unwrap();
            let err = server.check_transport(false).unwrap_err().to_string();
            assert!(
                err.contains("refusing plain HTTP") && err.contains(&server.name),
                "{remote}: {err}"
            );
            assert!(
                server.check_transport(true).is_ok(),
                "{remote} with --insecure"
            );
        }
        for local in [
            "127.0.0.1:5000",
            "http://127.0.0.2:5000",
            "localhost:5000",
            "http://LOCALHOST",
            "[::1]:5000",
        ] {
            let server = Server::parse(local, false).unwrap();
            assert_eq!(server.url.scheme(), "http", "{local}");
            assert!(server.check_transport(false).is_ok(), "{local}");
        }
        for tls in ["registry.example.com", "https://10.0.0.5:5000"] {
            let server = Server::parse(tls, false).unwrap();
            assert_eq!(server.url.scheme(), "https", "{tls}");
            assert!(server.check_transport(false).is_ok(), "{tls}");
        }
    }

    #[test]
    fn error_bodies() {
        let body = r#"{"errors":[{"code":"CONFLICT","message":"in use"}]}"#;
        assert_eq!(
            error_body(body),
            Some(("CONFLICT".to_owned(), "in use".to_owned()))
        );
        assert_eq!(error_body("<html>"), None);
    }

    #[test]
    fn query_strings() {
        let list = berth_api::ConnectedRegistryListQuery {
            parent: Some("factory".into()),
            no_children: true,
        };
        assert_eq!(
            query_pairs(&list),
            [
                ("no_children".to_owned(), "true".to_owned()),
                ("parent".to_owned(), "factory".to_owned())
            ]
        );
        let delete = berth_api::ConnectedRegistryDeleteQuery { cleanup: false };
        assert!(query_pairs(&delete).is_empty());
    }
}
