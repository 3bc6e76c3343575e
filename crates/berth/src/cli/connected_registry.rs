//! `berth connected-registry create|update|delete|deactivate|list|show|list-client-tokens|
//! get-settings|permissions show|permissions update`.
//!
//! Flag names follow `az acr connected-registry`, so that its users feel at home. Every
//! connected registry of the tree is defined on the root registry, whatever its parent;
//! these commands talk to the root.

use std::io::{BufRead, IsTerminal, Write};

use berth_api as api;
use berth_api::{
    ConnectedRegistryCreate, ConnectedRegistryDeleteQuery, ConnectedRegistryListQuery,
    ConnectedRegistryPatch, ConnectedRegistryView, Leftovers, PermissionsPatch, PermissionsView,
    SettingsRequest, SettingsView,
};
use clap::{ArgAction, ArgGroup, Args, Subcommand, ValueEnum};

use super::client::{ConnectionArgs, decode};
use super::output::{Format, OutputArgs, Table, password_reminder, print_json};
use super::scope_map::print_scope_map;
use super::token::print_tokens;
use super::{CliError, confirm_delete};

/// The continuous schedule, as the registry writes it.
const CONTINUOUS: &str = "* * * * *";

/// Beyond this many client tokens, `show` gives their number rather than their names.
const CLIENT_TOKENS_SHOWN: usize = 10;

/// What `create` and `update` accept, shown in `--help`.
const SETTINGS_HELP: &str = "\
Rules the registry checks:
  --name              5-40 letters and digits, starting with a letter; unique in the
                      whole hierarchy
  --mode              fixed at creation; a ReadOnly parent only takes ReadOnly children,
                      and a ReadOnly registry only read-only client tokens
  --repository        a name, `prefix/*` or `*`; a child's repositories must be within
                      its parent's
  --sync-schedule     5-field cron (minute hour day month weekday); `* * * * *` (the
                      default) syncs continuously
  --sync-window       ISO-8601 duration, PT1H to P7D; only with a schedule other than
                      `* * * * *`
  --sync-message-ttl  ISO-8601 duration, P1D to P90D [default: P2D]
  --notifications     `repository[:tag][@digest]:push|delete`, with `*` wildcards,
                      e.g. `*:*` or `hello-world:v1:push`";

/// `berth connected-registry`.
#[derive(Args, Debug)]
pub struct ConnectedRegistryArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: ConnectedRegistryCommand,
}

/// The connected registry commands.
#[derive(Subcommand, Debug)]
pub enum ConnectedRegistryCommand {
    /// Create a connected registry, with its sync token and sync scope map.
    #[command(after_help = SETTINGS_HELP)]
    Create(CreateArgs),
    /// Change a connected registry's client tokens, sync settings, log level or
    /// notifications (its mode is fixed at creation).
    #[command(after_help = SETTINGS_HELP)]
    Update(UpdateArgs),
    /// Delete a connected registry that has no children.
    Delete(DeleteArgs),
    /// Reset a connected registry's activation, so that a replacement instance can start.
    Deactivate(DeactivateArgs),
    /// List connected registries: all, or those under --parent.
    List(ListArgs),
    /// Show a connected registry: its settings and its instance's status.
    Show(ShowArgs),
    /// List the client tokens a connected registry accepts.
    ListClientTokens(ShowArgs),
    /// Print the connection string an instance starts with (`berth serve
    /// --connection-string`), generating a sync-token password on request.
    GetSettings(GetSettingsArgs),
    /// Show or change the repositories a connected registry syncs.
    #[command(subcommand)]
    Permissions(PermissionsCommand),
}

/// `connected-registry permissions`.
#[derive(Subcommand, Debug)]
pub enum PermissionsCommand {
    /// Show the repositories a connected registry syncs, and its sync scope map.
    Show(ShowArgs),
    /// Add repositories (to the registry and all its ancestors) or remove them (from the
    /// registry and all its descendants).
    Update(PermissionsUpdateArgs),
}

/// What local clients of a connected registry may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A pull-only mirror (the default).
    #[value(name = "ReadOnly")]
    ReadOnly,
    /// Local clients push and pull; local pushes flow up to the parent.
    #[value(name = "ReadWrite")]
    ReadWrite,
}

impl Mode {
    /// The mode as the request carries it.
    fn wire(self) -> String {
        match self {
            Mode::ReadOnly => api::Mode::ReadOnly,
            Mode::ReadWrite => api::Mode::ReadWrite,
        }
        .to_string()
    }
}

/// The instance's log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything.
    #[value(name = "Debug")]
    Debug,
    /// The default.
    #[value(name = "Information")]
    Information,
    /// Warnings and errors.
    #[value(name = "Warning")]
    Warning,
    /// Errors only.
    #[value(name = "Error")]
    Error,
    /// Nothing.
    #[value(name = "None")]
    None,
}

impl LogLevel {
    /// The log level as the request carries it.
    fn wire(self) -> String {
        match self {
            LogLevel::Debug => api::LogLevel::Debug,
            LogLevel::Information => api::LogLevel::Information,
            LogLevel::Warning => api::LogLevel::Warning,
            LogLevel::Error => api::LogLevel::Error,
            LogLevel::None => api::LogLevel::None,
        }
        .to_string()
    }
}

/// How an instance reaches its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }
}

/// `connected-registry create`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["repository", "sync_token"])))]
pub struct CreateArgs {
    /// Name: 5-40 letters and digits, starting with a letter, unique in the hierarchy.
    #[arg(long, short = 'n')]
    name: String,
    /// The parent connected registry [default: the root registry].
    #[arg(long, value_name = "P")]
    parent: Option<String>,
    /// Repositories to sync: names, `prefix/*` or `*` (one or more; repeatable).
    #[arg(long, value_name = "R", num_args = 1.., action = ArgAction::Append)]
    repository: Vec<String>,
    /// Instead of --repository: an existing token to use as the sync token; the
    /// repositories of its scope map are synced.
    #[arg(long, value_name = "T")]
    sync_token: Option<String>,
    /// ReadOnly (a pull-only mirror) or ReadWrite; fixed at creation [default: ReadOnly].
    #[arg(long, short = 'm', value_enum, ignore_case = true)]
    mode: Option<Mode>,
    /// Tokens the instance accepts from its local clients (one or more; repeatable).
    #[arg(long, value_name = "T", num_args = 1.., action = ArgAction::Append)]
    client_tokens: Vec<String>,
    /// Notification patterns `repository[:tag][@digest]:push|delete` (one or more;
    /// repeatable).
    #[arg(long, value_name = "PATTERN", num_args = 1.., action = ArgAction::Append)]
    notifications: Vec<String>,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// What the instance runs with, in `create` (left out: the default) and `update` (left
/// out: unchanged).
#[derive(Args, Debug)]
struct SettingsArgs {
    /// 5-field cron; `* * * * *` syncs continuously [default: `* * * * *`].
    #[arg(long, value_name = "CRON")]
    sync_schedule: Option<String>,
    /// How long each scheduled sync may run (ISO-8601, PT1H to P7D); "" removes it.
    #[arg(long, value_name = "DURATION")]
    sync_window: Option<String>,
    /// How long messages wait for an offline instance (ISO-8601, P1D to P90D) [default:
    /// P2D].
    #[arg(long, value_name = "DURATION")]
    sync_message_ttl: Option<String>,
    /// Most bytes per second content sync may use on the link, e.g. 500K, 20M, 1G; ""
    /// removes the limit [default: unlimited].
    #[arg(long, value_name = "RATE")]
    sync_bandwidth: Option<String>,
    /// Most blob transfers at once on the link, 1 to 64 [default: 4].
    #[arg(long, value_name = "N")]
    sync_concurrency: Option<u32>,
    /// The instance's log level [default: Information].
    #[arg(long, value_enum, ignore_case = true)]
    log_level: Option<LogLevel>,
    /// Collect garbage on site on its schedule [default: true].
    #[arg(long, value_name = "BOOL")]
    gc_enabled: Option<bool>,
    /// When the instance collects garbage, a 5-field cron expression in UTC [default:
    /// `30 3 * * *`].
    #[arg(long, value_name = "CRON")]
    gc_schedule: Option<String>,
}

impl From<SettingsArgs> for api::InstanceSettings {
    fn from(a: SettingsArgs) -> Self {
        api::InstanceSettings {
            sync_schedule: a.sync_schedule,
            sync_window: a.sync_window,
            sync_message_ttl: a.sync_message_ttl,
            sync_bandwidth: a.sync_bandwidth,
            sync_concurrency: a.sync_concurrency,
            log_level: a.log_level.map(LogLevel::wire),
            gc_enabled: a.gc_enabled,
            gc_schedule: a.gc_schedule,
        }
    }
}

/// `connected-registry update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The connected registry.
    #[arg(long, short = 'n')]
    name: String,
    /// Client tokens to accept (one or more; repeatable).
    #[arg(long, value_name = "T", num_args = 1.., action = ArgAction::Append)]
    add_client_tokens: Vec<String>,
    /// Client tokens to stop accepting (one or more; repeatable).
    #[arg(long, value_name = "T", num_args = 1.., action = ArgAction::Append)]
    remove_client_tokens: Vec<String>,
    /// Notification patterns to add (one or more; repeatable).
    #[arg(long, value_name = "PATTERN", num_args = 1.., action = ArgAction::Append)]
    add_notifications: Vec<String>,
    /// Notification patterns to remove (one or more; repeatable).
    #[arg(long, value_name = "PATTERN", num_args = 1.., action = ArgAction::Append)]
    remove_notifications: Vec<String>,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `connected-registry delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The connected registry.
    #[arg(long, short = 'n')]
    name: String,
    /// Also delete its sync token and sync scope map, and take its rights out of its
    /// ancestors' sync scope maps.
    #[arg(long)]
    cleanup: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// `connected-registry deactivate`.
#[derive(Args, Debug)]
pub struct DeactivateArgs {
    /// The connected registry.
    #[arg(long, short = 'n')]
    name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// `connected-registry list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only the connected registries under this one (all its descendants).
    #[arg(long, value_name = "P")]
    parent: Option<String>,
    /// Only direct children (of --parent, or of the root registry).
    #[arg(long)]
    no_children: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// `connected-registry show`, `list-client-tokens` and `permissions show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The connected registry.
    #[arg(long, short = 'n')]
    name: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// `connected-registry get-settings`.
#[derive(Args, Debug)]
pub struct GetSettingsArgs {
    /// The connected registry.
    #[arg(long, short = 'n')]
    name: String,
    /// The protocol the instance uses to reach its parent.
    #[arg(long, value_enum, default_value_t = Protocol::Https, ignore_case = true)]
    parent_protocol: Protocol,
    /// Generate a new password for the sync token in slot 1 or 2 and put it in the
    /// connection string (shown only now; it replaces that slot's password).
    #[arg(long, value_name = "1|2", value_parser = clap::value_parser!(u8).range(1..=2))]
    generate_password: Option<u8>,
    /// The parent's address as the instance reaches it [default: the root's address for a
    /// child of the root; for a nested child, the address its parent's instance reports once
    /// it is Online].
    #[arg(long, value_name = "HOST[:PORT]")]
    parent_gateway_endpoint: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `connected-registry permissions update`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args(["add", "remove"])))]
pub struct PermissionsUpdateArgs {
    /// The connected registry.
    #[arg(long, short = 'n')]
    name: String,
    /// Repositories to sync, added to this registry and all its ancestors (one or more;
    /// repeatable).
    #[arg(long, value_name = "R", num_args = 1.., action = ArgAction::Append)]
    add: Vec<String>,
    /// Repositories to stop syncing, removed from this registry and all its descendants
    /// (one or more; repeatable).
    #[arg(long, value_name = "R", num_args = 1.., action = ArgAction::Append)]
    remove: Vec<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs a connected registry command.
pub fn run(args: ConnectedRegistryArgs) -> Result<(), CliError> {
    let connection = &args.connection;
    match args.command {
        ConnectedRegistryCommand::Create(a) => {
            let body = ConnectedRegistryCreate {
                name: a.name,
                mode: a.mode.map(Mode::wire),
                parent: a.parent,
                repositories: a.repository,
                sync_token: a.sync_token,
                client_tokens: a.client_tokens,
                notifications: a.notifications,
                settings: a.settings.into(),
            };
            let value = connection
                .connect()?
                .post(&["connected-registries"], &body)?;
            a.output.print(value, |registry: ConnectedRegistryView| {
                print_registry(&registry);
                eprintln!();
                eprintln!(
                    "Next, get the connection string for its instance: berth connected-registry get-settings --name {} --generate-password 1",
                    registry.name
                );
            })
        }
        ConnectedRegistryCommand::Update(a) => {
            let settings = api::InstanceSettings::from(a.settings);
            if a.add_client_tokens.is_empty()
                && a.remove_client_tokens.is_empty()
                && a.add_notifications.is_empty()
                && a.remove_notifications.is_empty()
                && settings.is_empty()
            {
                return Err(CliError::usage(
                    "nothing to update: give --add-client-tokens, --remove-client-tokens, --sync-schedule, --sync-window, --sync-message-ttl, --sync-bandwidth, --sync-concurrency, --log-level, --add-notifications, --remove-notifications, --gc-enabled or --gc-schedule",
                )
                .hint("the mode is fixed at creation; to change it, delete the connected registry and create it again"));
            }
            let body = ConnectedRegistryPatch {
                add_client_tokens: a.add_client_tokens,
                remove_client_tokens: a.remove_client_tokens,
                add_notifications: a.add_notifications,
                remove_notifications: a.remove_notifications,
                settings,
            };
            let value = connection
                .connect()?
                .patch(&["connected-registries", &a.name], &body)?;
            a.output.print(value, |registry| print_registry(&registry))
        }
        ConnectedRegistryCommand::Delete(a) => delete(connection, a),
        ConnectedRegistryCommand::Deactivate(a) => {
            let client = connection.connect()?;
            confirm_deactivate(&a.name, a.yes)?;
            let value = client.post(&["connected-registries", &a.name, "deactivate"], &())?;
            a.output.print(value, |registry: ConnectedRegistryView| {
                println!(
                    "Deactivated connected registry `{}`: a replacement instance can now activate with its connection string.",
                    registry.name
                );
            })
        }
        ConnectedRegistryCommand::List(a) => {
            let query = ConnectedRegistryListQuery {
                parent: a.parent,
                no_children: a.no_children,
            };
            let value = connection
                .connect()?
                .get_query(&["connected-registries"], &query)?;
            a.output
                .print(value, |registries: Vec<ConnectedRegistryView>| {
                    print_list(&registries)
                })
        }
        ConnectedRegistryCommand::Show(a) => {
            let value = connection
                .connect()?
                .get(&["connected-registries", &a.name])?;
            a.output.print(value, |registry| print_registry(&registry))
        }
        ConnectedRegistryCommand::ListClientTokens(a) => {
            let value =
                connection
                    .connect()?
                    .get(&["connected-registries", &a.name, "client-tokens"])?;
            a.output.print(value, print_tokens)
        }
        ConnectedRegistryCommand::GetSettings(a) => get_settings(connection, a),
        ConnectedRegistryCommand::Permissions(PermissionsCommand::Show(a)) => {
            let value =
                connection
                    .connect()?
                    .get(&["connected-registries", &a.name, "permissions"])?;
            a.output.print(value, |permissions| {
                print_permissions(&a.name, &permissions)
            })
        }
        ConnectedRegistryCommand::Permissions(PermissionsCommand::Update(a)) => {
            let body = PermissionsPatch {
                add: a.add,
                remove: a.remove,
            };
            let value = connection
                .connect()?
                .patch(&["connected-registries", &a.name, "permissions"], &body)?;
            a.output.print(value, |permissions| {
                print_permissions(&a.name, &permissions)
            })
        }
    }
}

/// Asks before deactivating, unless `--yes` was given; like [`confirm_delete`], refuses
/// without a terminal to ask on.
fn confirm_deactivate(name: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "not deactivating connected registry `{name}` without confirmation"
        ))
        .hint("pass --yes to deactivate when not running interactively"));
    }
    eprint!(
        "Deactivate connected registry `{name}`, so that a replacement instance can activate? [y/N] "
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::failed(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::failed("cancelled; nothing was changed"))
    }
}

fn delete(connection: &ConnectionArgs, a: DeleteArgs) -> Result<(), CliError> {
    let client = connection.connect()?;
    let what = if a.cleanup {
        format!(
            "connected registry `{}` with its sync token and sync scope map",
            a.name
        )
    } else {
        format!("connected registry `{}`", a.name)
    };
    confirm_delete(&what, a.yes)?;
    let query = ConnectedRegistryDeleteQuery { cleanup: a.cleanup };
    let value = client.delete_query(&["connected-registries", &a.name], &query)?;
    if a.output.output == Format::Json {
        print_json(&value);
        return Ok(());
    }
    let leftovers: Leftovers = decode(value)?;
    if a.cleanup {
        println!(
            "Deleted connected registry `{}`, its sync token and its sync scope map; its ancestors' sync scope maps no longer grant its rights.",
            a.name
        );
        return Ok(());
    }
    println!("Deleted connected registry `{}`.", a.name);
    if leftovers.tokens.is_empty() && leftovers.scope_maps.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = leftovers
        .tokens
        .iter()
        .map(|t| format!("token `{t}`"))
        .chain(
            leftovers
                .scope_maps
                .iter()
                .map(|m| format!("scope map `{m}`")),
        )
        .collect();
    println!();
    println!(
        "Left in place: its sync {}. Until they are deleted, the token keeps its rights and any password generated for it.",
        names.join(" and sync ")
    );
    println!(
        "`delete --cleanup` would have removed them with the registry; now remove them by hand, the token first:"
    );
    for token in &leftovers.tokens {
        println!("  berth token delete --name {token} --yes");
    }
    for map in &leftovers.scope_maps {
        println!("  berth scope-map delete --name {map} --yes");
    }
    Ok(())
}

fn get_settings(connection: &ConnectionArgs, a: GetSettingsArgs) -> Result<(), CliError> {
    let body = SettingsRequest {
        parent_protocol: Some(a.parent_protocol.as_str().to_owned()),
        generate_password: a.generate_password,
        parent_gateway_endpoint: a.parent_gateway_endpoint,
    };
    let value = connection
        .connect()?
        .post(&["connected-registries", &a.name, "settings"], &body)?;
    let settings: SettingsView = decode(value.clone())?;
    match a.output.output {
        Format::Json => print_json(&value),
        Format::Table => println!("{}", settings.connection_string),
    }
    match &settings.password {
        Some(password) => {
            eprintln!();
            eprintln!("{}", password_reminder(1));
            eprintln!(
                "It is {} of the sync token `{}`, and replaces the password that slot held.",
                password.name, settings.sync_token
            );
        }
        None if a.output.output == Format::Table => {
            eprintln!();
            eprintln!(
                "The connection string holds no password: run again with --generate-password 1 (or 2) to generate one for the sync token `{}`.",
                settings.sync_token
            );
        }
        None => {}
    }
    Ok(())
}

/// `-` for nothing.
fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_owned()
}

/// A list, comma-separated, or `none`.
fn joined(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// A bandwidth as it is written on the command line, and in bytes per second:
/// `2M (2,000,000 bytes per second)`, or `unlimited`.
fn bandwidth(bytes_per_second: Option<u64>) -> String {
    let Some(rate) = bytes_per_second else {
        return "unlimited".into();
    };
    let short = [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "K")]
        .into_iter()
        .find(|(unit, _)| rate % unit == 0)
        .map_or_else(
            || rate.to_string(),
            |(unit, suffix)| format!("{}{suffix}", rate / unit),
        );
    let digits = rate.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{short} ({grouped} bytes per second)")
}

fn print_list(registries: &[ConnectedRegistryView]) {
    let mut table = Table::new(&[
        "NAME",
        "MODE",
        "CONNECTION STATE",
        "PARENT",
        "LOGIN SERVER",
        "LAST SYNC",
    ]);
    for r in registries {
        table.row([
            r.name.clone(),
            r.mode.to_string(),
            r.connection_state.to_string(),
            or_dash(r.parent.as_deref()),
            or_dash(r.login_server.as_deref()),
            or_dash(r.last_sync.as_deref()),
        ]);
    }
    table.print();
}

/// One connected registry: its settings, its status, then any status details.
fn print_registry(r: &ConnectedRegistryView) {
    let schedule = if r
        .sync
        .schedule
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        == CONTINUOUS
    {
        format!("{} (continuous)", r.sync.schedule)
    } else {
        r.sync.schedule.clone()
    };
    let client_tokens = if r.client_tokens.len() > CLIENT_TOKENS_SHOWN {
        format!(
            "{} tokens (berth connected-registry list-client-tokens --name {})",
            r.client_tokens.len(),
            r.name
        )
    } else {
        joined(&r.client_tokens)
    };
    let mut fields = Table::fields();
    fields
        .field("Name", r.name.clone())
        .field("Mode", r.mode.to_string())
        .field(
            "Parent",
            r.parent
                .clone()
                .unwrap_or_else(|| "(the root registry)".into()),
        )
        .field("Repositories", joined(&r.repositories))
        .field("Sync token", r.sync_token.clone())
        .field("Client tokens", client_tokens)
        .field("Sync schedule", schedule)
        .field("Sync window", or_dash(r.sync.window.as_deref()))
        .field("Message TTL", r.sync.message_ttl.clone())
        .field("Sync bandwidth", bandwidth(r.sync.bandwidth))
        .field(
            "Sync concurrency",
            r.sync
                .concurrency
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        )
        .field("Log level", r.log_level.to_string())
        .field("Notifications", joined(&r.notifications))
        .field(
            "Garbage collection",
            if r.gc.enabled {
                format!("on, at `{}` (UTC)", r.gc.schedule)
            } else {
                "off".to_owned()
            },
        )
        .field(
            "Last garbage collection",
            r.last_gc.as_ref().map_or_else(
                || "-".to_owned(),
                |gc| {
                    format!(
                        "{}: {}, {} blobs, {} freed",
                        gc.at,
                        gc.outcome,
                        gc.blobs_removed,
                        super::gc::bytes(gc.bytes_freed)
                    )
                },
            ),
        )
        .field("Created", r.created_at.clone())
        .field("Activation", r.activation.to_string())
        .field("Connection state", r.connection_state.to_string())
        .field("Last sync", or_dash(r.last_sync.as_deref()))
        .field("Version", or_dash(r.version.as_deref()))
        .field("Login server", or_dash(r.login_server.as_deref()));
    if r.status_details.is_empty() {
        fields.field("Status details", "none");
    }
    fields.print();
    if !r.status_details.is_empty() {
        println!();
        // Current problems first, then past ones with the time they ended.
        let mut table = Table::new(&["STATUS CODE", "DESCRIPTION", "SINCE", "ENDED"]);
        for d in &r.status_details {
            table.row([
                d.code.clone(),
                d.description.clone(),
                d.at.clone(),
                d.resolved_at.clone().unwrap_or_else(|| "(current)".into()),
            ]);
        }
        table.print();
    }
}

fn print_permissions(name: &str, permissions: &PermissionsView) {
    Table::fields()
        .field("Connected registry", name)
        .field("Repositories", joined(&permissions.repositories))
        .print();
    println!();
    println!("Sync scope map (its own rights and those of its descendants):");
    print_scope_map(&permissions.sync_scope_map);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths_read_as_written() {
        assert_eq!(bandwidth(None), "unlimited");
        assert_eq!(
            bandwidth(Some(2_000_000)),
            "2M (2,000,000 bytes per second)"
        );
        assert_eq!(bandwidth(Some(50_000)), "50K (50,000 bytes per second)");
        assert_eq!(
            bandwidth(Some(1_000_000_000)),
            "1G (1,000,000,000 bytes per second)"
        );
        assert_eq!(bandwidth(Some(1_500)), "1500 (1,500 bytes per second)");
        assert_eq!(
            bandwidth(Some(1_500_000)),
            "1500K (1,500,000 bytes per second)"
        );
    }
}
