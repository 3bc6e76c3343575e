//! `berth audit list`: the management actions recorded on the registry.

use berth_api::{AuditEntryView, AuditQuery};
use clap::{Args, Subcommand};

use super::CliError;
use super::client::ConnectionArgs;
use super::output::{OutputArgs, Table};

/// `berth audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

/// The audit commands.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// List management actions, oldest first: who, from where, what, the answer's status,
    /// and for settings the value before and after (with --output json).
    List(ListArgs),
}

/// `berth audit list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only actions since this long ago (`1h`, `7d`) or this UTC time
    /// (`2027-01-31T00:00:00Z`) [default: every one kept].
    #[arg(long, value_name = "DURATION|TIME")]
    since: Option<String>,
    /// The most actions shown: 1 to 1000.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    output: OutputArgs,
}

/// `--since` as the API takes it: a duration ago, or a time as given.
fn since(value: &str) -> Result<String, CliError> {
    if let Ok(time) = value.parse::<jiff::Timestamp>() {
        return Ok(time.to_string());
    }
    let span = value
        .parse::<jiff::Span>()
        .and_then(|s| s.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
        .map_err(|_| {
            CliError::usage(format!(
                "--since `{value}` is neither a duration such as `1h` or `7d` nor a UTC time such as 2027-01-31T00:00:00Z"
            ))
        })?;
    jiff::Timestamp::now()
        .checked_sub(span)
        .map(|t| t.to_string())
        .map_err(|e| CliError::usage(format!("--since `{value}` reaches too far back ({e})")))
}

/// Runs an audit command.
pub fn run(args: AuditArgs) -> Result<(), CliError> {
    match args.command {
        AuditCommand::List(a) => {
            let query = AuditQuery {
                since: a.since.as_deref().map(since).transpose()?,
                after: None,
                limit: Some(a.limit),
            };
            let client = args.connection.connect()?;
            let value = client.get_query(&["audit"], &query)?;
            a.output.print(value, |entries: Vec<AuditEntryView>| {
                let mut table =
                    Table::new(&["TIME", "ACTOR", "CLIENT", "ACTION", "RESOURCE", "STATUS"]);
                for e in entries {
                    table.row([
                        e.at,
                        e.actor,
                        e.client,
                        e.action,
                        e.resource,
                        e.status.to_string(),
                    ]);
                }
                table.print();
            })
        }
    }
}
