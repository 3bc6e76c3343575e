//! `berth webhook`: HTTP endpoints told of pushes and deletions, as the commercial
//! registry's `az acr webhook`: create, update, delete, list, show, ping, list-events.

use std::collections::BTreeMap;

use berth_api::{WebhookCreate, WebhookEventView, WebhookEventsQuery, WebhookPatch, WebhookView};
use clap::{Args, Subcommand};

use super::client::{ConnectionArgs, decode};
use super::output::{Format, OutputArgs, Table, print_json};
use super::{CliError, confirm_delete};

/// `berth webhook`.
#[derive(Args, Debug)]
pub struct WebhookArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: WebhookCommand,
}

/// The webhook commands.
#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Create a webhook. Its signing secret is shown once: receivers check
    /// `X-Berth-Signature: sha256=<hex HMAC-SHA256 of the body>` with it.
    Create(CreateArgs),
    /// Change a webhook.
    Update(UpdateArgs),
    /// Delete a webhook and its delivery records.
    Delete(DeleteArgs),
    /// List webhooks.
    List(ListArgs),
    /// Show a webhook.
    Show(NameArgs),
    /// Send a test event (`"action": "ping"`) now and show how the receiver answered.
    Ping(NameArgs),
    /// List a webhook's recent events, newest first, with how their delivery went.
    ListEvents(ListEventsArgs),
}

/// `berth webhook create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// 5 to 50 letters and digits.
    #[arg(long)]
    name: String,
    /// Where events are posted (http:// or https://).
    #[arg(long)]
    uri: String,
    /// What the webhook is told of: push, delete (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    actions: Vec<String>,
    /// `repository[:tag]` with `*` wildcards (`app:*`, `team/*:v1`); `app` alone means
    /// `app:latest` [default: every repository].
    #[arg(long)]
    scope: Option<String>,
    /// Custom headers sent with each call: `Name=value` (space-separated or repeated).
    #[arg(long, num_args = 1.., value_name = "K=V")]
    headers: Vec<String>,
    /// enabled or disabled.
    #[arg(long)]
    status: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `berth webhook update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The webhook.
    #[arg(long)]
    name: String,
    /// A new address.
    #[arg(long)]
    uri: Option<String>,
    /// New actions: push, delete.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    actions: Option<Vec<String>>,
    /// A new scope; `""` removes it (every repository).
    #[arg(long)]
    scope: Option<String>,
    /// New custom headers, replacing every one (`--headers` alone removes them).
    #[arg(long, num_args = 0.., value_name = "K=V")]
    headers: Option<Vec<String>>,
    /// enabled or disabled.
    #[arg(long)]
    status: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `berth webhook delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The webhook.
    #[arg(long)]
    name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// `berth webhook list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    output: OutputArgs,
}

/// A command on one webhook.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// The webhook.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// `berth webhook list-events`.
#[derive(Args, Debug)]
pub struct ListEventsArgs {
    /// The webhook.
    #[arg(long)]
    name: String,
    /// The most events shown: 1 to 1000.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    output: OutputArgs,
}

fn headers(pairs: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| CliError::usage(format!("--headers `{pair}` is not `Name=value`")))
        })
        .collect()
}

fn print_webhook(webhook: &WebhookView) {
    let mut table = Table::fields();
    table
        .field("Name", webhook.name.clone())
        .field("URI", webhook.uri.clone())
        .field("Actions", actions(webhook))
        .field("Scope", webhook.scope.clone().unwrap_or_else(|| "*".into()))
        .field("Headers", webhook.headers.join(", "))
        .field("Status", webhook.status.to_string())
        .field("Created", webhook.created_at.clone());
    table.print();
}

fn actions(webhook: &WebhookView) -> String {
    webhook
        .actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn print_events(events: &[WebhookEventView]) {
    let mut table = Table::new(&[
        "TIME", "ID", "ACTION", "TARGET", "SOURCE", "STATUS", "CODE", "ATTEMPTS",
    ]);
    for e in events {
        let target = match (&e.repository, &e.tag) {
            (Some(r), Some(t)) => format!("{r}:{t}"),
            (Some(r), None) => format!("{r}@{}", e.digest.as_deref().unwrap_or_default()),
            _ => String::new(),
        };
        table.row([
            e.at.clone(),
            e.id.clone(),
            e.action.clone(),
            target,
            e.source.clone().unwrap_or_default(),
            e.status.to_string(),
            e.response_code.map(|c| c.to_string()).unwrap_or_default(),
            e.attempts.to_string(),
        ]);
    }
    table.print();
}

/// Runs a webhook command.
pub fn run(args: WebhookArgs) -> Result<(), CliError> {
    let connection = args.connection;
    match args.command {
        WebhookCommand::Create(a) => {
            let body = WebhookCreate {
                name: a.name,
                uri: a.uri,
                actions: a.actions,
                scope: a.scope,
                headers: headers(&a.headers)?,
                status: a.status,
            };
            let value = connection.connect()?.post(&["webhooks"], &body)?;
            if matches!(a.output.output, Format::Json) {
                print_json(&value);
                return Ok(());
            }
            let webhook: WebhookView = decode(value)?;
            print_webhook(&webhook);
            println!();
            println!(
                "Signing secret (shown only once; receivers check X-Berth-Signature with it):"
            );
            println!();
            println!("    {}", webhook.secret.as_deref().unwrap_or_default());
            Ok(())
        }
        WebhookCommand::Update(a) => {
            let body = WebhookPatch {
                uri: a.uri,
                actions: a.actions,
                scope: a.scope,
                headers: a.headers.as_deref().map(headers).transpose()?,
                status: a.status,
            };
            let value = connection.connect()?.patch(&["webhooks", &a.name], &body)?;
            a.output.print(value, |w: WebhookView| print_webhook(&w))
        }
        WebhookCommand::Delete(a) => {
            let client = connection.connect()?;
            confirm_delete(&format!("webhook `{}`", a.name), a.yes)?;
            client.delete(&["webhooks", &a.name])?;
            println!("Deleted webhook `{}`.", a.name);
            Ok(())
        }
        WebhookCommand::List(a) => {
            let value = connection.connect()?.get(&["webhooks"])?;
            a.output.print(value, |webhooks: Vec<WebhookView>| {
                let mut table = Table::new(&["NAME", "STATUS", "ACTIONS", "SCOPE", "URI"]);
                for w in &webhooks {
                    table.row([
                        w.name.clone(),
                        w.status.to_string(),
                        actions(w),
                        w.scope.clone().unwrap_or_else(|| "*".into()),
                        w.uri.clone(),
                    ]);
                }
                table.print();
            })
        }
        WebhookCommand::Show(a) => {
            let value = connection.connect()?.get(&["webhooks", &a.name])?;
            a.output.print(value, |w: WebhookView| print_webhook(&w))
        }
        WebhookCommand::Ping(a) => {
            let value = connection
                .connect()?
                .post(&["webhooks", &a.name, "ping"], &serde_json::json!({}))?;
            a.output.print(value, |e: WebhookEventView| {
                print_events(std::slice::from_ref(&e));
                if let Some(error) = &e.error {
                    println!();
                    println!("The receiver did not take it: {error}");
                }
            })
        }
        WebhookCommand::ListEvents(a) => {
            let query = WebhookEventsQuery {
                limit: Some(a.limit),
            };
            let value = connection
                .connect()?
                .get_query(&["webhooks", &a.name, "events"], &query)?;
            a.output
                .print(value, |events: Vec<WebhookEventView>| print_events(&events))
        }
    }
}
