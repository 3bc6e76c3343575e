//! The per-user credentials file written by `berth login`.
//!
//! `credentials.json` lives in `$BERTH_CONFIG_DIR`, else `$XDG_CONFIG_HOME/berth`, else
//! `~/.config/berth`. It holds the admin password in clear, as Docker's `config.json`
//! does without a credential helper, so the directory is created with mode 0700 and the
//! file with mode 0600, written whole to a temporary file and renamed over the old one.
//!
//! ```json
//! {
//!   "current": "127.0.0.1:5000",
//!   "logins": [
//!     { "server": "127.0.0.1:5000", "url": "http://127.0.0.1:5000/",
//!       "username": "admin", "password": "…" }
//!   ]
//! }
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CliError;
use super::client::Server;

/// The file name inside the configuration directory.
pub const FILE_NAME: &str = "credentials.json";

/// One saved login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedLogin {
    /// `host:port`, as typed to `berth login` (without scheme).
    pub server: String,
    /// The URL the login was verified at; it records whether the registry speaks HTTP.
    pub url: String,
    /// The user name.
    pub username: String,
    /// The password, in clear (the file is readable only by its owner).
    pub password: String,
    /// The CA certificates file given to `berth login --ca-cert`, as an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl SavedLogin {
    /// The registry this login is for.
    pub fn server(&self) -> Result<Server, CliError> {
        let server = Server::parse(&self.url, false)?;
        Ok(Server {
            name: self.server.clone(),
            url: server.url,
        })
    }
}

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// The server commands use when no `--server` is given: the last one logged in to.
    #[serde(default)]
    pub current: Option<String>,
    /// Every saved login, one per server.
    #[serde(default)]
    pub logins: Vec<SavedLogin>,
}

impl Credentials {
    /// The login saved for `server` (`host:port`).
    pub fn find(&self, server: &str) -> Option<&SavedLogin> {
        self.logins.iter().find(|l| l.server == server)
    }

    /// The login of the current server.
    pub fn current(&self) -> Option<&SavedLogin> {
        self.current.as_deref().and_then(|s| self.find(s))
    }

    /// Saves `login`, replacing any for the same server, and makes it current.
    pub fn upsert(&mut self, login: SavedLogin) {
        self.current = Some(login.server.clone());
        self.logins.retain(|l| l.server != login.server);
        self.logins.push(login);
    }

    /// Forgets the login for `server`; returns whether there was one.
    pub fn remove(&mut self, server: &str) -> bool {
        let before = self.logins.len();
        self.logins.retain(|l| l.server != server);
        if self.current.as_deref() == Some(server) {
            self.current = None;
        }
        self.logins.len() != before
    }
}

/// Where the credentials file is.
pub struct CredentialStore {
    dir: PathBuf,
}

impl CredentialStore {
    /// Finds the configuration directory from the environment (the only place the
    /// management commands read it, apart from clap's flag variables).
    pub fn locate() -> Result<Self, CliError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = if let Some(dir) = var("BERTH_CONFIG_DIR") {
            PathBuf::from(dir)
        } else if let Some(dir) = var("XDG_CONFIG_HOME") {
            PathBuf::from(dir).join("berth")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".config").join("berth")
        } else {
            return Err(CliError::failed(
                "cannot find a directory for the credentials file: HOME is not set",
            )
            .hint("set BERTH_CONFIG_DIR to a directory only you can read"));
        };
        Ok(CredentialStore { dir })
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Reads the file; a missing file is an empty one.
    pub fn load(&self) -> Result<Credentials, CliError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Credentials::default());
            }
            Err(e) => {
                return Err(CliError::access(format!(
                    "cannot read `{}`: {e}",
                    path.display()
                )));
            }
        };
        warn_if_shared(&path);
        serde_json::from_str(&text).map_err(|e| {
            CliError::access(format!(
                "`{}` is not a valid credentials file: {e}",
                path.display()
            ))
            .hint("remove it and run `berth login` again")
        })
    }

    /// Writes the file atomically, readable only by its owner; removes it when empty.
    pub fn save(&self, credentials: &Credentials) -> Result<(), CliError> {
        let path = self.path();
        let fail = |what: &str, p: &Path, e: std::io::Error| {
            CliError::failed(format!("cannot {what} `{}`: {e}", p.display()))
        };
        if credentials.logins.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail("remove", &path, e)),
                _ => Ok(()),
            };
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| fail("create", &self.dir, e))?;
        let temp = self
            .dir
            .join(format!(".{FILE_NAME}.{}", std::process::id()));
        let json = serde_json::to_string_pretty(credentials).expect("credentials serialise");
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            // The mode above applies only to a new file; make sure of it.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(json.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&temp);
            return Err(fail("write", &temp, e));
        }
        fs::rename(&temp, &path).map_err(|e| fail("replace", &path, e))
    }
}

/// Warns when the file can be read by others (copied around, or made by hand).
fn warn_if_shared(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: `{}` can be read by other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
}
