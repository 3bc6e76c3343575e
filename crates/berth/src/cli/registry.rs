//! `berth show` and `berth update`: registry settings.

use clap::{ArgAction, Args};

use super::CliError;
use super::api::{RegistryUpdate, RegistryView};
use super::client::ConnectionArgs;
use super::output::{OutputArgs, Table};

/// `berth show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `berth update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Let anyone pull any repository without credentials (never push).
    #[arg(long, required = true, action = ArgAction::Set, value_name = "true|false")]
    anonymous_pull_enabled: Option<bool>,
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Shows the registry's settings.
pub fn show(args: ShowArgs) -> Result<(), CliError> {
    let client = args.connection.connect()?;
    let value = client.get(&["registry"])?;
    args.output
        .print(value, |view| print_registry(&client.server().name, &view))
}

/// Changes the registry's settings and shows them.
pub fn update(args: UpdateArgs) -> Result<(), CliError> {
    let client = args.connection.connect()?;
    let body = RegistryUpdate {
        anonymous_pull_enabled: args.anonymous_pull_enabled,
    };
    let value = client.patch(&["registry"], &body)?;
    args.output
        .print(value, |view| print_registry(&client.server().name, &view))
}

fn print_registry(server: &str, view: &RegistryView) {
    let anonymous = if view.anonymous_pull_enabled {
        "enabled"
    } else {
        "disabled"
    };
    Table::fields()
        .field("Login server", server)
        .field("Admin user", view.admin_username.clone())
        .field("Anonymous pull", anonymous)
        .field("Version", view.version.clone())
        .print();
}
