//! `berth scope-map create|update|show|list|delete`.

use berth_api::{GatewayRule, RepositoryRule, ScopeMapCreate, ScopeMapPatch, ScopeMapView};
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Subcommand};

use super::client::ConnectionArgs;
use super::output::{OutputArgs, Table};
use super::{CliError, confirm_delete};

/// What a `--repository` or `--gateway` rule may name, shown in `--help`.
const ACTIONS_HELP: &str = "\
Repository actions: content/read (pull), content/write (push), content/delete,
metadata/read (list tags and manifests), metadata/write (untag, lock).
A repository is a name, `prefix/*` or `*` (every repository).
Gateway actions (for connected registries): config/read, config/write, message/read,
message/write.
Actions may also be joined by commas: --repository hello-world content/read,metadata/read";

/// `berth scope-map`.
#[derive(Args, Debug)]
pub struct ScopeMapArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: ScopeMapCommand,
}

/// The scope map commands.
#[derive(Subcommand, Debug)]
pub enum ScopeMapCommand {
    /// Create a scope map.
    #[command(after_help = ACTIONS_HELP)]
    Create(CreateArgs),
    /// Change a scope map's description or rules.
    #[command(after_help = ACTIONS_HELP)]
    Update(UpdateArgs),
    /// Show a scope map.
    Show(ShowArgs),
    /// List scope maps, built-in ones included.
    List(ListArgs),
    /// Delete a scope map that no token uses.
    Delete(DeleteArgs),
}

/// `--repository` and `--gateway` rules, as `scope-map create` and `token create` take them.
///
/// Each occurrence is `NAME ACTION...`; clap's derive cannot keep occurrences apart
/// (`Vec<Vec<String>>` needs an unstable clap feature), so these flags are declared and
/// read by hand with [`rule_flag`] and [`occurrences`].
#[derive(Debug, Clone, Default)]
pub struct RuleArgs {
    /// `--repository REPO ACTION...` occurrences.
    pub repositories: Vec<Vec<String>>,
    /// `--gateway NAME ACTION...` occurrences.
    pub gateways: Vec<Vec<String>>,
}

impl FromArgMatches for RuleArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(RuleArgs {
            repositories: occurrences(matches, "repository"),
            gateways: occurrences(matches, "gateway"),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for RuleArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.arg(rule_flag(
            "repository",
            "REPO",
            "Grant ACTIONs on REPO (repeatable)",
        ))
        .arg(rule_flag(
            "gateway",
            "NAME",
            "Grant gateway ACTIONs on the connected registry NAME (repeatable)",
        ))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl RuleArgs {
    /// Whether no rule was given.
    pub fn is_empty(&self) -> bool {
        self.repositories.is_empty() && self.gateways.is_empty()
    }

    /// The repository rules.
    pub fn repository_rules(&self) -> Vec<RepositoryRule> {
        repository_rules(&self.repositories)
    }

    /// The gateway rules.
    pub fn gateway_rules(&self) -> Vec<GatewayRule> {
        gateway_rules(&self.gateways)
    }
}

/// The rule changes of `scope-map update`, read by hand like [`RuleArgs`].
#[derive(Debug, Clone, Default)]
pub struct RuleChangeArgs {
    add_repository: Vec<Vec<String>>,
    remove_repository: Vec<Vec<String>>,
    add_gateway: Vec<Vec<String>>,
    remove_gateway: Vec<Vec<String>>,
}

impl FromArgMatches for RuleChangeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(RuleChangeArgs {
            add_repository: occurrences(matches, "add-repository"),
            remove_repository: occurrences(matches, "remove-repository"),
            add_gateway: occurrences(matches, "add-gateway"),
            remove_gateway: occurrences(matches, "remove-gateway"),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for RuleChangeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.arg(rule_flag(
            "add-repository",
            "REPO",
            "Add ACTIONs on REPO (repeatable)",
        ))
        .arg(rule_flag(
            "remove-repository",
            "REPO",
            "Take ACTIONs on REPO away (repeatable)",
        ))
        .arg(rule_flag(
            "add-gateway",
            "NAME",
            "Add gateway ACTIONs on the connected registry NAME (repeatable)",
        ))
        .arg(rule_flag(
            "remove-gateway",
            "NAME",
            "Take gateway ACTIONs on NAME away (repeatable)",
        ))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// A repeatable `--<id> NAME ACTION...` flag.
fn rule_flag(id: &'static str, name: &'static str, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id)
        .value_names([name, "ACTION"])
        .num_args(2..)
        .action(ArgAction::Append)
        .help(help)
}

/// The values of each occurrence of a [`rule_flag`], kept apart.
fn occurrences(matches: &ArgMatches, id: &str) -> Vec<Vec<String>> {
    matches
        .get_occurrences::<String>(id)
        .map(|occurrences| {
            occurrences
                .map(|values| values.cloned().collect())
                .collect()
        })
        .unwrap_or_default()
}

/// `scope-map create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Name: 5-50 letters, digits, `-` and `_`.
    #[arg(long, short = 'n')]
    name: String,
    /// Free text, up to 256 characters.
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    rules: RuleArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `scope-map update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The scope map to change.
    #[arg(long, short = 'n')]
    name: String,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    changes: RuleChangeArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `scope-map show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The scope map.
    #[arg(long, short = 'n')]
    name: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// `scope-map list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    output: OutputArgs,
}

/// `scope-map delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The scope map.
    #[arg(long, short = 'n')]
    name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// Runs a scope map command.
pub fn run(args: ScopeMapArgs) -> Result<(), CliError> {
    let connection = &args.connection;
    match args.command {
        ScopeMapCommand::Create(a) => {
            let body = ScopeMapCreate {
                name: a.name,
                description: a.description.unwrap_or_default(),
                repositories: a.rules.repository_rules(),
                gateways: a.rules.gateway_rules(),
            };
            let value = connection.connect()?.post(&["scope-maps"], &body)?;
            a.output.print(value, |map| print_scope_map(&map))
        }
        ScopeMapCommand::Update(a) => {
            let body = ScopeMapPatch {
                description: a.description,
                add_repositories: repository_rules(&a.changes.add_repository),
                remove_repositories: repository_rules(&a.changes.remove_repository),
                add_gateways: gateway_rules(&a.changes.add_gateway),
                remove_gateways: gateway_rules(&a.changes.remove_gateway),
            };
            if body.description.is_none()
                && body.add_repositories.is_empty()
                && body.remove_repositories.is_empty()
                && body.add_gateways.is_empty()
                && body.remove_gateways.is_empty()
            {
                return Err(CliError::usage(
                    "nothing to update: give --description, --add-repository, --remove-repository, --add-gateway or --remove-gateway",
                ));
            }
            let value = connection
                .connect()?
                .patch(&["scope-maps", &a.name], &body)?;
            a.output.print(value, |map| print_scope_map(&map))
        }
        ScopeMapCommand::Show(a) => {
            let value = connection.connect()?.get(&["scope-maps", &a.name])?;
            a.output.print(value, |map| print_scope_map(&map))
        }
        ScopeMapCommand::List(a) => {
            let value = connection.connect()?.get(&["scope-maps"])?;
            a.output.print(value, |maps: Vec<ScopeMapView>| {
                let mut table = Table::new(&["NAME", "TYPE", "CREATED", "DESCRIPTION"]);
                for map in maps {
                    table.row([
                        map.name,
                        map_type(map.built_in).into(),
                        map.created_at.unwrap_or_else(|| "-".into()),
                        map.description,
                    ]);
                }
                table.print();
            })
        }
        ScopeMapCommand::Delete(a) => {
            let client = connection.connect()?;
            confirm_delete(&format!("scope map `{}`", a.name), a.yes)?;
            client.delete(&["scope-maps", &a.name])?;
            println!("Deleted scope map `{}`.", a.name);
            Ok(())
        }
    }
}

fn map_type(built_in: bool) -> &'static str {
    if built_in { "built-in" } else { "user" }
}

/// One scope map: its fields, then its rules.
pub fn print_scope_map(map: &ScopeMapView) {
    let mut fields = Table::fields();
    fields
        .field("Name", map.name.clone())
        .field("Type", map_type(map.built_in))
        .field("Description", map.description.clone());
    if let Some(created) = &map.created_at {
        fields.field("Created", created.clone());
    }
    fields.print();
    if !map.repositories.is_empty() {
        println!();
        let mut table = Table::new(&["REPOSITORY", "ACTIONS"]);
        for rule in &map.repositories {
            table.row([rule.repository.clone(), rule.actions.join(", ")]);
        }
        table.print();
    }
    if !map.gateways.is_empty() {
        println!();
        let mut table = Table::new(&["GATEWAY", "ACTIONS"]);
        for rule in &map.gateways {
            table.row([rule.connected_registry.clone(), rule.actions.join(", ")]);
        }
        table.print();
    }
}

/// Splits `NAME ACTION...` occurrences into name and actions; actions may be joined by
/// commas too. Clap guarantees each occurrence holds at least two values.
fn split_rules(occurrences: &[Vec<String>]) -> impl Iterator<Item = (String, Vec<String>)> + '_ {
    occurrences.iter().map(|values| {
        let (name, actions) = values.split_first().expect("clap requires two values");
        let actions = actions
            .iter()
            .flat_map(|a| a.split(','))
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        (name.clone(), actions)
    })
}

fn repository_rules(occurrences: &[Vec<String>]) -> Vec<RepositoryRule> {
    split_rules(occurrences)
        .map(|(repository, actions)| RepositoryRule {
            repository,
            actions,
        })
        .collect()
}

fn gateway_rules(occurrences: &[Vec<String>]) -> Vec<GatewayRule> {
    split_rules(occurrences)
        .map(|(connected_registry, actions)| GatewayRule {
            connected_registry,
            actions,
        })
        .collect()
}
