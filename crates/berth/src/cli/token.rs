//! `berth token create|update|show|list|delete` and `berth token credential
//! generate|delete`.

use berth_api::{
    CredentialsGenerate, CredentialsGenerated, PasswordSlot, TokenCreate, TokenCreated, TokenPatch,
    TokenStatus, TokenView,
};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use super::client::{ConnectionArgs, decode};
use super::output::{Format, OutputArgs, SecretOutputArgs, Table};
use super::scope_map::RuleArgs;
use super::{CliError, confirm_delete};

/// `berth token`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: TokenCommand,
}

/// The token commands.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token, with two passwords unless --no-passwords.
    Create(CreateArgs),
    /// Change a token's scope map or status.
    Update(UpdateArgs),
    /// Show a token (never its passwords).
    Show(ShowArgs),
    /// List tokens.
    List(ListArgs),
    /// Delete a token; it is refused from its very next request.
    Delete(DeleteArgs),
    /// Generate or delete a token's passwords.
    #[command(subcommand)]
    Credential(CredentialCommand),
}

/// `token credential`.
#[derive(Subcommand, Debug)]
pub enum CredentialCommand {
    /// Generate a new password in one slot, or both when neither is named.
    Generate(GenerateArgs),
    /// Empty one password slot; that password stops working at once.
    Delete(CredentialDeleteArgs),
}

/// Whether a token may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    /// The token may log in.
    Enabled,
    /// The token is refused everywhere, from its very next request.
    Disabled,
}

impl Status {
    /// The status as the request carries it.
    fn wire(self) -> String {
        match self {
            Status::Enabled => TokenStatus::Enabled,
            Status::Disabled => TokenStatus::Disabled,
        }
        .to_string()
    }
}

/// When generated passwords stop working.
#[derive(Args, Debug, Clone)]
pub struct ExpirationArgs {
    /// Passwords expire after N days.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36500), conflicts_with = "expiration")]
    expiration_in_days: Option<u32>,
    /// Passwords expire at this UTC time, e.g. 2027-01-31T00:00:00Z or 2027-01-31.
    #[arg(long, value_name = "UTC_TIME")]
    expiration: Option<String>,
}

impl ExpirationArgs {
    /// The expiry as RFC 3339, checked to be in the future.
    fn expiry(&self) -> Result<Option<String>, CliError> {
        let now = jiff::Timestamp::now();
        let at = match (&self.expiration_in_days, &self.expiration) {
            (Some(days), _) => {
                jiff::Timestamp::from_second(now.as_second() + i64::from(*days) * 86_400)
                    .map_err(|e| CliError::usage(format!("--expiration-in-days: {e}")))?
            }
            (None, Some(text)) => parse_utc(text)?,
            (None, None) => return Ok(None),
        };
        if at <= now {
            return Err(CliError::usage(format!(
                "--expiration `{at}` is in the past; give a future UTC time"
            )));
        }
        Ok(Some(at.to_string()))
    }
}

/// Parses `2027-01-31T00:00:00Z` (any RFC 3339 time with an offset), or a date or a time
/// without offset, taken as UTC.
fn parse_utc(text: &str) -> Result<jiff::Timestamp, CliError> {
    let utc = jiff::tz::TimeZone::UTC;
    text.parse::<jiff::Timestamp>()
        .ok()
        .or_else(|| {
            let civil = text.parse::<jiff::civil::DateTime>().ok().or_else(|| {
                text.parse::<jiff::civil::Date>()
                    .ok()
                    .map(|d| d.at(0, 0, 0, 0))
            })?;
            civil.to_zoned_datetime(utc).ok().map(|z| z.timestamp())
        })
        .ok_or_else(|| {
            CliError::usage(format!(
                "--expiration `{text}` is not a UTC time; write it as 2027-01-31T00:00:00Z or 2027-01-31"
            ))
        })
}

/// `token create`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("scope").required(true).multiple(true).args(["scope_map", "repository", "gateway"])))]
pub struct CreateArgs {
    /// Name, also the user name of `docker login`: 5-50 letters, digits and `-`.
    #[arg(long, short = 'n')]
    name: String,
    /// Bind the token to this existing scope map.
    #[arg(long, conflicts_with_all = ["repository", "gateway"])]
    scope_map: Option<String>,
    #[command(flatten)]
    rules: RuleArgs,
    /// Whether the token may log in.
    #[arg(long, value_enum)]
    status: Option<Status>,
    /// Create the token without passwords; generate them later with `token credential
    /// generate`.
    #[arg(long, conflicts_with_all = ["expiration_in_days", "expiration"])]
    no_passwords: bool,
    #[command(flatten)]
    expiration: ExpirationArgs,
    #[command(flatten)]
    output: SecretOutputArgs,
}

/// `token update`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args(["scope_map", "status"])))]
pub struct UpdateArgs {
    /// The token.
    #[arg(long, short = 'n')]
    name: String,
    /// Bind the token to this scope map instead.
    #[arg(long)]
    scope_map: Option<String>,
    /// Enable or disable the token; a disabled token is refused from its next request.
    #[arg(long, value_enum)]
    status: Option<Status>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `token show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The token.
    #[arg(long, short = 'n')]
    name: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// `token list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    output: OutputArgs,
}

/// `token delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The token.
    #[arg(long, short = 'n')]
    name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// `token credential generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The token.
    #[arg(long, short = 'n')]
    name: String,
    /// Generate password1.
    #[arg(long)]
    password1: bool,
    /// Generate password2.
    #[arg(long)]
    password2: bool,
    #[command(flatten)]
    expiration: ExpirationArgs,
    #[command(flatten)]
    output: SecretOutputArgs,
}

/// `token credential delete`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("slot").required(true).args(["password1", "password2"])))]
pub struct CredentialDeleteArgs {
    /// The token.
    #[arg(long, short = 'n')]
    name: String,
    /// Empty password1.
    #[arg(long)]
    password1: bool,
    /// Empty password2.
    #[arg(long)]
    password2: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs a token command.
pub fn run(args: TokenArgs) -> Result<(), CliError> {
    let connection = &args.connection;
    match args.command {
        TokenCommand::Create(a) => create(connection, a),
        TokenCommand::Update(a) => {
            let body = TokenPatch {
                scope_map: a.scope_map,
                status: a.status.map(Status::wire),
            };
            let value = connection.connect()?.patch(&["tokens", &a.name], &body)?;
            a.output.print(value, |token| print_token(&token))
        }
        TokenCommand::Show(a) => {
            let value = connection.connect()?.get(&["tokens", &a.name])?;
            a.output.print(value, |token| print_token(&token))
        }
        TokenCommand::List(a) => {
            let value = connection.connect()?.get(&["tokens"])?;
            a.output.print(value, print_tokens)
        }
        TokenCommand::Delete(a) => {
            let client = connection.connect()?;
            confirm_delete(&format!("token `{}`", a.name), a.yes)?;
            client.delete(&["tokens", &a.name])?;
            println!("Deleted token `{}`.", a.name);
            Ok(())
        }
        TokenCommand::Credential(CredentialCommand::Generate(a)) => generate(connection, a),
        TokenCommand::Credential(CredentialCommand::Delete(a)) => {
            let slot = if a.password1 {
                PasswordSlot::Password1
            } else {
                PasswordSlot::Password2
            };
            let client = connection.connect()?;
            confirm_delete(&format!("{slot} of token `{}`", a.name), a.yes)?;
            let value = client.delete(&["tokens", &a.name, "credentials", slot.as_str()])?;
            if a.output.output == Format::Table {
                eprintln!(
                    "Deleted {slot} of token `{}`; that password no longer works.",
                    a.name
                );
            }
            a.output.print(value, |token| print_token(&token))
        }
    }
}

fn create(connection: &ConnectionArgs, a: CreateArgs) -> Result<(), CliError> {
    a.output.check(!a.no_passwords)?;
    let body = TokenCreate {
        name: a.name,
        scope_map: a.scope_map,
        repositories: a.rules.repository_rules(),
        gateways: a.rules.gateway_rules(),
        status: a.status.map(Status::wire),
        no_passwords: a.no_passwords,
        expiry: a.expiration.expiry()?,
    };
    let client = connection.connect()?;
    let value = client.post(&["tokens"], &body)?;
    let created: TokenCreated = decode(value.clone())?;
    let token = &created.token;
    a.output.print_passwords(
        &client.server().name,
        &token.name,
        &created.passwords,
        &value,
        || {
            print_token_fields(token);
            if !a.rules.is_empty() {
                eprintln!(
                    "Created scope map `{}` for the token's rules.",
                    token.scope_map
                );
            }
        },
    )
}

fn generate(connection: &ConnectionArgs, a: GenerateArgs) -> Result<(), CliError> {
    a.output.check(true)?;
    let body = CredentialsGenerate {
        password1: a.password1,
        password2: a.password2,
        expiry: a.expiration.expiry()?,
    };
    let client = connection.connect()?;
    let value = client.post(&["tokens", &a.name, "credentials"], &body)?;
    let generated: CredentialsGenerated = decode(value.clone())?;
    a.output.print_passwords(
        &client.server().name,
        &a.name,
        &generated.passwords,
        &value,
        || {},
    )
}

/// The table of `token list` (also that of `connected-registry list-client-tokens`).
pub fn print_tokens(tokens: Vec<TokenView>) {
    let mut table = Table::new(&[
        "NAME",
        "SCOPE MAP",
        "STATUS",
        "PASSWORD1 EXPIRY",
        "PASSWORD2 EXPIRY",
        "CREATED",
    ]);
    for token in tokens {
        table.row([
            token.name.clone(),
            token.scope_map.clone(),
            token.status.to_string(),
            expiry_cell(&token, PasswordSlot::Password1),
            expiry_cell(&token, PasswordSlot::Password2),
            token.created_at,
        ]);
    }
    table.print();
}

/// A slot's expiry for the token list: `-` when empty, `never`, or the time.
fn expiry_cell(token: &TokenView, slot: PasswordSlot) -> String {
    match token.password(slot) {
        None => "-".into(),
        Some(p) => {
            let expiry = p.expiry.clone().unwrap_or_else(|| "never".into());
            if p.expired {
                format!("{expiry} (expired)")
            } else {
                expiry
            }
        }
    }
}

/// A token's name, scope map, status and creation time.
fn print_token_fields(token: &TokenView) {
    Table::fields()
        .field("Name", token.name.clone())
        .field("Scope map", token.scope_map.clone())
        .field("Status", token.status.to_string())
        .field("Created", token.created_at.clone())
        .print();
}

/// One token: its fields, then its password slots.
fn print_token(token: &TokenView) {
    print_token_fields(token);
    println!();
    let mut table = Table::new(&["PASSWORD", "CREATED", "EXPIRES"]);
    for &slot in PasswordSlot::ALL {
        let created = token
            .password(slot)
            .map_or_else(|| "-".into(), |p| p.created_at.clone());
        table.row([slot.to_string(), created, expiry_cell(token, slot)]);
    }
    table.print();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(
            parse_utc("2027-01-31T00:00:00Z").unwrap().to_string(),
            "2027-01-31T00:00:00Z"
        );
        assert_eq!(
            parse_utc("2027-01-31").unwrap().to_string(),
            "2027-01-31T00:00:00Z"
        );
        assert_eq!(
            parse_utc("2027-01-31T12:30:00").unwrap().to_string(),
            "2027-01-31T12:30:00Z"
        );
        assert!(parse_utc("tomorrow").is_err());
    }
}
