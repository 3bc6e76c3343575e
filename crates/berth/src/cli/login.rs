//! `berth login` and `berth logout`.

use std::io::{IsTerminal, Read};

use berth_api::RegistryView;
use clap::Args;

use super::CliError;
use super::client::{ApiClient, DEFAULT_USERNAME, Server, Trust, decode};
use super::credentials::{CredentialStore, SavedLogin};

/// `berth login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry: `host:port`, `https://host:port` or `http://host:port`. Plain HTTP is
    /// assumed for loopback addresses and with --insecure; HTTPS otherwise. Plain HTTP to
    /// another machine needs --insecure.
    pub server: String,
    /// The admin's user name.
    #[arg(long, short = 'u', default_value = DEFAULT_USERNAME)]
    pub username: String,
    /// The password (visible to other local users in the process list; prefer
    /// --password-stdin). Asked for when neither is given.
    #[arg(long, short = 'p', conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Use plain HTTP even for a registry that is not on this machine.
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of CA certificates to trust for the registry, beside the system's store and
    /// SSL_CERT_FILE; remembered for later commands.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// `berth logout`.
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry to forget [default: the current one].
    pub server: Option<String>,
}

/// Verifies the credentials against the registry, then saves them.
pub fn login(args: LoginArgs) -> Result<(), CliError> {
    let server = Server::parse(&args.server, args.insecure)?;
    server.check_transport(args.insecure)?;
    let ca_cert =
        match &args.ca_cert {
            Some(path) => Some(std::path::absolute(path).map_err(|e| {
                CliError::usage(format!("cannot resolve `{}`: {e}", path.display()))
            })?),
            None => None,
        };
    let store = CredentialStore::locate()?;
    let mut saved = store.load()?;
    let password = read_password(&args)?;
    let trust = Trust {
        ca_cert: ca_cert.clone(),
    };
    let client = ApiClient::new(
        server.clone(),
        args.username.clone(),
        password.clone(),
        &trust,
    )?;
    let registry: RegistryView = decode(client.get(&["registry"])?)?;
    saved.upsert(SavedLogin {
        server: server.name.clone(),
        url: server.url.to_string(),
        username: args.username.clone(),
        password,
        ca_cert,
    });
    store.save(&saved)?;
    println!(
        "Logged in to {} as {} (Berth {}).",
        server.name, args.username, registry.version
    );
    eprintln!(
        "Credentials saved in {}, readable only by you.",
        store.path().display()
    );
    Ok(())
}

fn read_password(args: &LoginArgs) -> Result<String, CliError> {
    let password = if let Some(password) = &args.password {
        password.clone()
    } else if args.password_stdin {
        let mut input = String::new();
        std::io::stdin().read_to_string(&mut input).map_err(|e| {
            CliError::usage(format!("cannot read the password from standard input: {e}"))
        })?;
        input.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {}: ", args.username))
            .map_err(|e| CliError::usage(format!("cannot read the password: {e}")))?
    } else {
        return Err(CliError::usage(
            "no password: give --password-stdin (or --password) when not running interactively",
        ));
    };
    if password.is_empty() {
        return Err(CliError::usage("the password is empty"));
    }
    Ok(password)
}

/// Forgets a saved login.
pub fn logout(args: LogoutArgs) -> Result<(), CliError> {
    let store = CredentialStore::locate()?;
    let mut saved = store.load()?;
    let name = match &args.server {
        // Only the name matters here; `--insecure` keeps HTTPS names from being refused.
        Some(input) => Server::parse(input, true)?.name,
        None => match &saved.current {
            Some(current) => current.clone(),
            None => {
                println!("Not logged in.");
                return Ok(());
            }
        },
    };
    if saved.remove(&name) {
        store.save(&saved)?;
        println!("Removed the login for {name}.");
    } else {
        println!("Not logged in to {name}.");
    }
    Ok(())
}
