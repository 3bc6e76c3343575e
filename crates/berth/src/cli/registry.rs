//! `berth show` and `berth update`: registry settings.

use berth_api::{RegistryUpdate, RegistryView};
use clap::{ArgAction, Args};

use super::CliError;
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
#[command(group(clap::ArgGroup::new("setting").required(true).multiple(true).args([
    "anonymous_pull_enabled",
    "public_network_enabled",
    "default_action",
    "data_endpoint_enabled",
])))]
pub struct UpdateArgs {
    /// Let anyone pull any repository without credentials (never push).
    #[arg(long, action = ArgAction::Set, value_name = "true|false")]
    anonymous_pull_enabled: Option<bool>,
    /// Serve the login server's listener to anyone the IP rules allow (false: every
    /// request there is refused; private endpoints keep serving, and the management API
    /// still answers the admin from this machine).
    #[arg(long, action = ArgAction::Set, value_name = "true|false")]
    public_network_enabled: Option<bool>,
    /// What the login server does with clients outside every IP rule.
    #[arg(long, value_parser = ["Allow", "Deny"], ignore_case = true, value_name = "Allow|Deny")]
    default_action: Option<String>,
    /// Redirect blob downloads to the configured data endpoint with signed URLs.
    #[arg(long, action = ArgAction::Set, value_name = "true|false")]
    data_endpoint_enabled: Option<bool>,
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
        public_network_enabled: args.public_network_enabled,
        default_action: args.default_action,
        data_endpoint_enabled: args.data_endpoint_enabled,
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
        .field(
            "Public network access",
            if view.public_network_enabled {
                "enabled"
            } else {
                "disabled"
            },
        )
        .field("Default action", view.default_action.to_string())
        .field(
            "Data endpoint",
            if view.data_endpoint_enabled {
                "enabled"
            } else {
                "disabled"
            },
        )
        .field("Version", view.version.clone())
        .print();
}
