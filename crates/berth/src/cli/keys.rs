//! `berth keys`: the registry's signing keys (never their secrets), and their rotation.

use berth_api::{KeyPurpose, KeyRotate, KeyView};
use clap::{Args, Subcommand, ValueEnum};

use super::CliError;
use super::client::ConnectionArgs;
use super::output::{OutputArgs, Table};

/// `berth keys`.
#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

/// The key commands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the keys: the current one of each purpose signs; retired ones still verify what
    /// they signed until it expires.
    List(ListArgs),
    /// Make a new current key. What the old one signed stays valid until it expires
    /// (refresh tokens: their lifetime; data URLs: 30 minutes at most); nothing else changes.
    Rotate(RotateArgs),
}

/// `berth keys list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    output: OutputArgs,
}

/// What to rotate.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PurposeArg {
    /// The key that signs access and refresh tokens.
    Tokens,
    /// The key that signs the data endpoint's blob URLs.
    DataUrls,
    /// Both.
    All,
}

/// `berth keys rotate`.
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// Which key to rotate.
    #[arg(long, value_enum)]
    purpose: PurposeArg,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs a key command.
pub fn run(args: KeysArgs) -> Result<(), CliError> {
    let client = args.connection.connect()?;
    match args.command {
        KeysCommand::List(a) => {
            let value = client.get(&["keys"])?;
            a.output
                .print(value, |keys: Vec<KeyView>| print_keys(&keys))
        }
        KeysCommand::Rotate(a) => {
            let purposes: &[KeyPurpose] = match a.purpose {
                PurposeArg::Tokens => &[KeyPurpose::Tokens],
                PurposeArg::DataUrls => &[KeyPurpose::DataUrls],
                PurposeArg::All => KeyPurpose::ALL,
            };
            let mut rotated = Vec::new();
            for purpose in purposes {
                let body = KeyRotate {
                    purpose: purpose.as_str().to_owned(),
                };
                match client.post(&["keys", "rotate"], &body)? {
                    serde_json::Value::Array(keys) => rotated.extend(keys),
                    other => rotated.push(other),
                }
            }
            a.output
                .print(serde_json::Value::Array(rotated), |keys: Vec<KeyView>| {
                    print_keys(&keys)
                })
        }
    }
}

fn print_keys(keys: &[KeyView]) {
    let mut table = Table::new(&["PURPOSE", "ID", "CREATED", "STATE"]);
    for key in keys {
        let state = match (&key.retired_at, &key.verifies_until) {
            (None, _) => "current: signs and verifies".to_owned(),
            (Some(_), Some(until)) => format!("retired: verifies until {until}"),
            (Some(at), None) => format!("retired at {at}"),
        };
        table.row([
            key.purpose.to_string(),
            key.id.clone(),
            key.created_at.clone(),
            state,
        ]);
    }
    table.print();
}
