//! `berth network-rule`, `berth private-endpoint-connection` and `berth show-endpoints`:
//! who may reach the registry, and where.

use berth_api::{
    ConnectionView, DecisionBody, DefaultAction, EndpointsView, IpRuleBody, NetworkRulesView,
};
use clap::{Args, Subcommand};

use super::client::ConnectionArgs;
use super::output::{OutputArgs, Table};
use super::{CliError, confirm_delete};

/// `berth network-rule`.
#[derive(Args, Debug)]
pub struct NetworkRuleArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: NetworkRuleCommand,
}

/// The network rule commands.
#[derive(Subcommand, Debug)]
pub enum NetworkRuleCommand {
    /// Allow an address or range on the login server (matters when the default action is
    /// Deny: `berth update --default-action Deny`).
    Add(RuleArgs),
    /// Remove an allowed address or range.
    Remove(RuleArgs),
    /// List the allowed addresses and ranges, with the default action.
    List(OutputOnly),
}

/// An IP rule.
#[derive(Args, Debug)]
pub struct RuleArgs {
    /// An IPv4 or IPv6 address (203.0.113.7) or CIDR range (203.0.113.0/24, 2001:db8::/32).
    #[arg(long, value_name = "ADDR_OR_CIDR")]
    ip_address: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// Just `--output`.
#[derive(Args, Debug)]
pub struct OutputOnly {
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs a network rule command.
pub fn rules(args: NetworkRuleArgs) -> Result<(), CliError> {
    let client = args.connection.connect()?;
    let (value, output) = match args.command {
        NetworkRuleCommand::Add(a) => {
            let body = IpRuleBody {
                ip_address: a.ip_address,
            };
            (client.post(&["network-rules"], &body)?, a.output)
        }
        NetworkRuleCommand::Remove(a) => {
            let body = IpRuleBody {
                ip_address: a.ip_address,
            };
            (client.delete_with(&["network-rules"], &body)?, a.output)
        }
        NetworkRuleCommand::List(a) => (client.get(&["network-rules"])?, a.output),
    };
    output.print(value, |rules: NetworkRulesView| print_rules(&rules))
}

fn print_rules(rules: &NetworkRulesView) {
    Table::fields()
        .field(
            "Public network access",
            enabled(rules.public_network_enabled),
        )
        .field("Default action", rules.default_action.to_string())
        .field("Rules", rules.ip_rules.len().to_string())
        .print();
    if !rules.ip_rules.is_empty() {
        println!();
        let mut table = Table::new(&["ALLOWED ADDRESS OR RANGE"]);
        for rule in &rules.ip_rules {
            table.row([rule.clone()]);
        }
        table.print();
    }
}

fn enabled(on: bool) -> &'static str {
    if on { "enabled" } else { "disabled" }
}

/// `berth private-endpoint-connection`.
#[derive(Args, Debug)]
pub struct ConnectionArgsGroup {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: ConnectionCommand,
}

/// The private endpoint connection commands.
#[derive(Subcommand, Debug)]
pub enum ConnectionCommand {
    /// List private endpoint connections and their states.
    List(OutputOnly),
    /// Show one connection.
    Show(NameArgs),
    /// Approve a connection: its endpoint serves registry traffic.
    Approve(DecisionArgs),
    /// Reject a connection: its endpoint answers 403.
    Reject(DecisionArgs),
    /// Delete a connection: its endpoint becomes Disconnected and answers 403.
    Delete(DeleteArgs),
}

/// A connection by name.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// The private endpoint's name, as configured.
    #[arg(long, short = 'n')]
    name: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// Approve or reject.
#[derive(Args, Debug)]
pub struct DecisionArgs {
    /// The private endpoint's name, as configured.
    #[arg(long, short = 'n')]
    name: String,
    /// Why, for whoever looks later.
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// Delete.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The private endpoint's name.
    #[arg(long, short = 'n')]
    name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// Runs a private endpoint connection command.
pub fn connections(args: ConnectionArgsGroup) -> Result<(), CliError> {
    let client = args.connection.connect()?;
    const PATH: &str = "private-endpoint-connections";
    match args.command {
        ConnectionCommand::List(a) => {
            let value = client.get(&[PATH])?;
            a.output.print(value, |list: Vec<ConnectionView>| {
                let mut table = Table::new(&["NAME", "STATE", "ADDRESS", "DESCRIPTION"]);
                for c in list {
                    table.row([
                        c.name,
                        c.state.to_string(),
                        c.url.unwrap_or_else(|| "(not configured)".into()),
                        c.description,
                    ]);
                }
                table.print();
            })
        }
        ConnectionCommand::Show(a) => {
            let value = client.get(&[PATH, &a.name])?;
            a.output
                .print(value, |c: ConnectionView| print_connection(&c))
        }
        ConnectionCommand::Approve(a) => decide(&client, "approve", a),
        ConnectionCommand::Reject(a) => decide(&client, "reject", a),
        ConnectionCommand::Delete(a) => {
            confirm_delete(&format!("private endpoint connection `{}`", a.name), a.yes)?;
            client.delete(&[PATH, &a.name])?;
            println!(
                "Deleted private endpoint connection `{}`: its endpoint answers 403 until approved again.",
                a.name
            );
            Ok(())
        }
    }
}

fn decide(
    client: &super::client::ApiClient,
    verb: &str,
    args: DecisionArgs,
) -> Result<(), CliError> {
    let body = DecisionBody {
        description: args.description,
    };
    let value = client.post(&["private-endpoint-connections", &args.name, verb], &body)?;
    args.output
        .print(value, |c: ConnectionView| print_connection(&c))
}

fn print_connection(c: &ConnectionView) {
    Table::fields()
        .field("Name", c.name.clone())
        .field("State", c.state.to_string())
        .field(
            "Address",
            c.url.clone().unwrap_or_else(|| "(not configured)".into()),
        )
        .field("Description", c.description.clone())
        .field(
            "Changed",
            c.updated_at.clone().unwrap_or_else(|| "-".into()),
        )
        .print();
}

/// `berth show-endpoints`.
#[derive(Args, Debug)]
pub struct ShowEndpointsArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Prints the login server, the private endpoints and the data endpoint.
pub fn show_endpoints(args: ShowEndpointsArgs) -> Result<(), CliError> {
    let value = args.connection.connect()?.get(&["endpoints"])?;
    args.output.print(value, |e: EndpointsView| {
        let login = &e.login_server;
        let mut table = Table::new(&["ENDPOINT", "URL", "STATE"]);
        let public = if !login.public_network_enabled {
            "public access disabled".to_owned()
        } else if login.default_action == DefaultAction::Deny {
            format!("IP rules: {} allowed, others denied", login.ip_rules)
        } else {
            "public access enabled".to_owned()
        };
        table.row([
            "login server".into(),
            login.url.clone().unwrap_or_default(),
            public,
        ]);
        for c in &e.private_endpoints {
            table.row([
                format!("private: {}", c.name),
                c.url.clone().unwrap_or_else(|| "(not configured)".into()),
                c.state.to_string(),
            ]);
        }
        let data = &e.data_endpoint;
        table.row([
            "data".into(),
            data.url
                .clone()
                .unwrap_or_else(|| "(not configured)".into()),
            match (data.configured, data.enabled) {
                (false, _) => "not configured".into(),
                (true, false) => "disabled".into(),
                (true, true) => format!(
                    "enabled, URLs valid {} min",
                    data.url_ttl_seconds.unwrap_or_default() / 60
                ),
            },
        ]);
        table.print();
    })
}
