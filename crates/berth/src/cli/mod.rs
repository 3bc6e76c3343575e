//! The management command line: `berth login`, `scope-map`, `token`, `connected-registry`,
//! `network-rule`, `private-endpoint-connection`, `show-endpoints`, `update`, `show`,
//! `keys`, `repository`, `import`, `audit`, `webhook`.
//!
//! Every command is a thin client of the registry's management API (`/berth/v1/…`); the
//! registry validates and decides, the command line only parses flags, sends one request
//! and prints the answer.
//!
//! Layout:
//! - [`client`]: the one HTTP client (base URL, Basic credentials, error mapping) and the
//!   registry address a user types;
//! - [`credentials`]: the per-user `credentials.json` written by `berth login`;
//! - the request and response bodies of the management API are `berth-api`'s, the types
//!   the registry itself writes and reads;
//! - [`output`]: `--output` formats, the table printer, Docker and Kubernetes documents;
//! - [`error`]: [`CliError`] and the exit codes scripts rely on;
//! - one module per command group: [`login`], [`scope_map`], [`token`],
//!   [`connected_registry`], [`registry`] (settings), [`network`] (rules, private
//!   endpoints, endpoints), [`keys`] (signing keys), [`repository`] (repositories, their
//!   tags and manifests), [`import`] (images copied from other registries), [`audit`] (the
//!   audit log), [`webhook`] (webhooks, their test calls and delivery records).

pub mod audit;
pub mod client;
pub mod connected_registry;
pub mod credentials;
pub mod error;
pub mod gc;
pub mod import;
pub mod keys;
pub mod login;
pub mod network;
pub mod output;
pub mod registry;
pub mod repository;
pub mod scope_map;
pub mod token;
pub mod webhook;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Subcommand;

pub use error::CliError;

/// The exit codes, as `berth --help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the registry refused the request (invalid input, not found, conflict, read-only), or
     it failed
  2  usage error: unknown flag, missing or conflicting arguments
  3  not logged in, wrong credentials, not the admin, or the registry cannot be reached

Management commands use the login saved by `berth login`, or --server/--username/
--password (BERTH_SERVER, BERTH_USERNAME, BERTH_PASSWORD). Credentials are kept in
$BERTH_CONFIG_DIR, $XDG_CONFIG_HOME/berth or ~/.config/berth, file credentials.json
(mode 0600).";

/// The management commands, flattened into `berth`'s own list of subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Log in to a registry as its admin and save the credentials for later commands.
    Login(login::LoginArgs),
    /// Forget the saved credentials of a registry (by default the current one).
    Logout(login::LogoutArgs),
    /// Manage scope maps: named lists of repository and gateway actions.
    ScopeMap(scope_map::ScopeMapArgs),
    /// Manage tokens: logins for machines and people, each bound to one scope map.
    Token(token::TokenArgs),
    /// Manage connected registries: on-site registries that sync repositories with their
    /// parent.
    ConnectedRegistry(connected_registry::ConnectedRegistryArgs),
    /// Allow client addresses on the login server (with `update --default-action Deny`).
    NetworkRule(network::NetworkRuleArgs),
    /// Approve, reject or delete private endpoints' connections.
    PrivateEndpointConnection(network::ConnectionArgsGroup),
    /// Show the login server, private endpoints and data endpoint, with their states.
    ShowEndpoints(network::ShowEndpointsArgs),
    /// Change registry settings.
    Update(registry::UpdateArgs),
    /// Show registry settings.
    Show(registry::ShowArgs),
    /// List and rotate the registry's signing keys (tokens, data URLs).
    Keys(keys::KeysArgs),
    /// Garbage collection: run one now, see the last ones, stop one.
    Gc(gc::GcArgs),
    /// List repositories, their tags and manifests; delete repositories and images; untag.
    Repository(repository::RepositoryArgs),
    /// Import an image or index from another registry (the registry fetches it itself),
    /// or list, show and cancel imports.
    Import(import::ImportArgs),
    /// List the management actions recorded on the registry (who, from where, what).
    Audit(audit::AuditArgs),
    /// Manage webhooks: HTTP endpoints told of pushes and deletions, signed.
    Webhook(webhook::WebhookArgs),
}

/// Runs a management command and turns its outcome into the documented exit code.
pub fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::ScopeMap(args) => scope_map::run(args),
        Command::Token(args) => token::run(args),
        Command::ConnectedRegistry(args) => connected_registry::run(args),
        Command::NetworkRule(args) => network::rules(args),
        Command::PrivateEndpointConnection(args) => network::connections(args),
        Command::ShowEndpoints(args) => network::show_endpoints(args),
        Command::Update(args) => registry::update(args),
        Command::Show(args) => registry::show(args),
        Command::Keys(args) => keys::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Repository(args) => repository::run(args),
        Command::Import(args) => import::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Webhook(args) => webhook::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error.report();
            ExitCode::from(error.exit_code())
        }
    }
}

/// Asks before deleting `what` (e.g. "token `ci-pull`"), unless `--yes` was given.
/// Without a terminal to ask on, refuses: a script must say `--yes` rather than hang or
/// delete by accident.
pub fn confirm_delete(what: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            CliError::usage(format!("not deleting {what} without confirmation"))
                .hint("pass --yes to delete when not running interactively"),
        );
    }
    eprint!("Delete {what}? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::failed(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::failed("cancelled; nothing was deleted"))
    }
}
