//! What can go wrong with identities, in domain terms; the HTTP layer maps these to statuses.
//!
//! Each variant is a family of failures that holds what went wrong as data (which kind of
//! name, which setting, which value, which rule); its `Display` is the message a user reads.
//! The HTTP layer chooses a status and a code by the variant, never by the message.

use std::fmt;

/// An error of an identity operation.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A name breaks the rule for names of its kind.
    #[error("{kind} name `{name}` is invalid{}", .kind.rule())]
    InvalidName {
        /// Whose name.
        kind: NameKind,
        /// The name given.
        name: String,
    },
    /// A word that is none of the values a setting takes.
    #[error("{}", unknown_choice(*.setting, .value))]
    UnknownChoice {
        /// The setting.
        setting: Choice,
        /// The word given.
        value: String,
    },
    /// A value not written in the format it takes.
    #[error("{}", malformed(.value, .format))]
    Malformed {
        /// The value as given.
        value: String,
        /// What it should have been, and why it is not.
        format: Format,
    },
    /// A cron schedule that cannot be used.
    #[error("{}", invalid_schedule(.schedule, .problem))]
    InvalidSchedule {
        /// The schedule as given.
        schedule: String,
        /// What is wrong with it.
        problem: ScheduleProblem,
    },
    /// A setting outside the range it takes.
    #[error("{}", out_of_range(*.setting, .value))]
    SettingOutOfRange {
        /// The setting.
        setting: Setting,
        /// The value given (or, for a count or a length, the count or length it would reach).
        value: String,
    },
    /// A request whose parts are missing or do not go together.
    #[error("{0}")]
    InvalidRequest(RequestProblem),
    /// A change that would break a rule of the hierarchy of connected registries.
    #[error("{0}")]
    BreaksHierarchy(HierarchyRule),
    /// The named object does not exist.
    #[error("{kind} `{name}` does not exist")]
    NotFound {
        /// `token` or `scope map`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// An object of that name exists already.
    #[error("{kind} `{name}` already exists{hint}")]
    AlreadyExists {
        /// `token`, `scope map`, `connected registry`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// What to do instead, starting with its own separator (`; use …`).
        hint: &'static str,
    },
    /// The object is in use: what is asked would break what uses it.
    #[error("{kind} `{name}` {reason}")]
    InUse {
        /// `token`, `scope map`, `connected registry`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What uses it, and what to do first.
        reason: String,
    },
    /// A token may not take the admin's user name: logins could not tell the two apart.
    #[error("`{name}` is the admin's user name; choose another token name")]
    AdminName {
        /// The token name asked for.
        name: String,
    },
    /// The scope map cannot be changed by hand.
    #[error("{}", read_only(.scope_map, .reason))]
    ReadOnly {
        /// The scope map.
        scope_map: String,
        /// Why it is read-only, and what was asked.
        reason: ReadOnlyReason,
    },
    /// A connection string needs a parent address that names a machine, and there is none.
    #[error("{0}")]
    NoParentAddress(ParentAddress),
    /// Other changes kept committing first; nothing was changed.
    #[error("identities are changing too fast to apply this change; try again")]
    Contended,
    /// Another instance holds the connected registry.
    #[error(
        "connected registry `{registry}` is already activated by another instance; run \
         `berth connected-registry deactivate --name {registry}` to let a replacement activate"
    )]
    AlreadyActivated {
        /// The connected registry.
        registry: String,
    },
    /// The instance was deactivated on the root: it must stop for good, so that a
    /// replacement can take over.
    #[error(
        "instance `{instance}` of connected registry `{registry}` was deactivated on the root registry: it no \
         longer syncs or serves; a replacement instance activates in its place"
    )]
    InstanceDeactivated {
        /// The connected registry.
        registry: String,
        /// The deactivated instance.
        instance: String,
    },
    /// The instance is not (or no longer) the active instance of its connected registry.
    #[error(
        "instance `{instance}` is not the active instance of connected registry `{registry}`; restart it to activate again"
    )]
    InstanceNotActive {
        /// The connected registry.
        registry: String,
        /// The instance that asked.
        instance: String,
    },
    /// This registry is a connected registry: its identities come from its parent.
    #[error(
        "this registry is connected registry `{registry}`: its tokens, scope maps and connected registries are \
         managed on the root registry and reach it with the configuration from its parent ({parent}); make the \
         change there (`berth login <root>`)"
    )]
    ManagedByParent {
        /// This connected registry's name.
        registry: String,
        /// Its parent's address.
        parent: String,
    },
    /// What the store holds cannot be read: no request can fix it.
    #[error("{0}")]
    Corrupt(Corruption),
    /// The store failed.
    #[error("identity store: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
}

impl IdentityError {
    /// Wraps a store failure.
    pub fn store(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        IdentityError::Store(Box::new(e))
    }
}

impl From<RequestProblem> for IdentityError {
    fn from(problem: RequestProblem) -> Self {
        IdentityError::InvalidRequest(problem)
    }
}

impl From<HierarchyRule> for IdentityError {
    fn from(rule: HierarchyRule) -> Self {
        IdentityError::BreaksHierarchy(rule)
    }
}

impl From<Corruption> for IdentityError {
    fn from(corruption: Corruption) -> Self {
        IdentityError::Corrupt(corruption)
    }
}

/// The kinds of names with a rule of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// 5 to 40 letters and digits, starting with a letter.
    ConnectedRegistry,
    /// 5 to 50 letters, digits, `-` and `_`.
    ScopeMap,
    /// 5 to 50 letters, digits and `-`.
    Token,
    /// 5 to 50 letters and digits.
    Webhook,
}

impl NameKind {
    /// The rule, as the message gives it, with its separator.
    fn rule(self) -> &'static str {
        match self {
            NameKind::ConnectedRegistry => {
                ": use 5 to 40 letters and digits, starting with a letter"
            }
            NameKind::ScopeMap => ": use 5 to 50 letters, digits, `-` or `_`",
            NameKind::Token => ": use 5 to 50 letters, digits or `-`",
            NameKind::Webhook => "; use 5 to 50 letters and digits",
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::ConnectedRegistry => "connected registry",
            NameKind::ScopeMap => "scope map",
            NameKind::Token => "token",
            NameKind::Webhook => "webhook",
        })
    }
}

/// The settings that take one of a few words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// A connected registry's mode.
    Mode,
    /// A connected registry's log level.
    LogLevel,
    /// The network's default action.
    DefaultAction,
    /// What a key signs.
    KeyPurpose,
    /// The protocol of a connection string's parent.
    ParentProtocol,
    /// The password slot to generate a password in.
    PasswordSlot,
    /// A token's status.
    TokenStatus,
    /// A webhook's action.
    WebhookAction,
    /// A webhook's status.
    WebhookStatus,
    /// A repository action of a scope map rule.
    RepositoryAction,
    /// A gateway action of a scope map rule.
    GatewayAction,
}

impl Choice {
    /// The words it takes, as the message lists them.
    pub fn choices(self) -> &'static str {
        match self {
            Choice::Mode => "ReadWrite or ReadOnly",
            Choice::LogLevel => "Debug, Information, Warning, Error or None",
            Choice::DefaultAction => "Allow or Deny",
            Choice::KeyPurpose => "tokens or data-urls",
            Choice::ParentProtocol => "http or https",
            Choice::PasswordSlot => "1 or 2",
            Choice::TokenStatus => "`enabled` or `disabled`",
            Choice::WebhookAction => "push or delete",
            Choice::WebhookStatus => "enabled or disabled",
            Choice::RepositoryAction => {
                "content/read, content/write, content/delete, metadata/read or metadata/write"
            }
            Choice::GatewayAction => "config/read, config/write, message/read or message/write",
        }
    }
}

fn unknown_choice(setting: Choice, value: &str) -> String {
    let choices = setting.choices();
    match setting {
        Choice::Mode => format!("mode `{value}` is invalid; use {choices}"),
        Choice::LogLevel => format!("log level `{value}` is invalid; use {choices}"),
        Choice::DefaultAction => format!("default action `{value}` is invalid; use {choices}"),
        Choice::KeyPurpose => format!("key purpose `{value}` is invalid; use {choices}"),
        Choice::ParentProtocol => format!("parent protocol `{value}` is invalid; use {choices}"),
        Choice::PasswordSlot => format!("generate_password `{value}` is invalid; use {choices}"),
        Choice::TokenStatus => format!("status `{value}` is invalid; use {choices}"),
        Choice::WebhookAction => format!("webhook action `{value}` is unknown; use {choices}"),
        Choice::WebhookStatus => format!("webhook status `{value}` is unknown; use {choices}"),
        Choice::RepositoryAction => format!("unknown repository action `{value}`; use {choices}"),
        Choice::GatewayAction => format!("unknown gateway action `{value}`; use {choices}"),
    }
}

/// The formats values are written in, and why a value is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// An IP address or a CIDR range.
    IpRule {
        /// Why not.
        why: String,
    },
    /// A `host[:port]` as connection strings and pull secrets name a registry.
    Endpoint {
        /// Which value (`parent gateway endpoint`, `--login-server`).
        what: String,
        /// Why not.
        why: String,
    },
    /// An ISO-8601 duration.
    Duration {
        /// Which setting (`sync window`, `message TTL`).
        what: String,
    },
    /// Bytes per second: `500K`, `20M`, `1G`.
    Bandwidth,
    /// `repository[:tag][@digest]:push|delete`, with `*` wildcards.
    NotificationPattern {
        /// Which part is wrong.
        why: &'static str,
    },
    /// A scope map rule's repository: a name, `prefix/*` or `*`.
    RepositoryPattern {
        /// Why not.
        why: String,
    },
    /// A webhook's scope: `repository[:tag]`, with `*` wildcards.
    WebhookScope {
        /// Which part is wrong.
        why: &'static str,
    },
    /// A webhook's address: a URL.
    WebhookUri {
        /// Why it does not parse.
        why: String,
    },
    /// A webhook's address: `http://` or `https://`, with a host.
    WebhookAddress,
    /// A webhook header: a valid HTTP header name and value.
    WebhookHeader,
    /// A webhook header that is not Berth's own signature header.
    WebhookHeaderOfBerth,
}

fn malformed(value: &str, format: &Format) -> String {
    match format {
        Format::IpRule { why } => format!(
            "IP rule `{value}` is invalid: {why}; use an address such as 203.0.113.7 or 2001:db8::7, or a range such as \
             203.0.113.0/24 or 2001:db8::/32"
        ),
        Format::Endpoint { what, why } => endpoint_message(what, value, why),
        Format::Duration { what } => {
            format!("{what} `{value}` is not an ISO-8601 duration such as PT4H or P2D")
        }
        Format::Bandwidth => format!(
            "sync bandwidth `{value}` is invalid: use bytes per second, e.g. 500K, 20M or 1G"
        ),
        Format::NotificationPattern { why } => format!(
            "notification pattern `{value}` is invalid ({why}); use `repository[:tag][@digest]:push|delete`, \
             with `*` wildcards, e.g. `*:*` or `hello-world:v1:push`"
        ),
        Format::RepositoryPattern { why } => {
            format!("repository `{value}` in a scope map rule: {why}")
        }
        Format::WebhookScope { why } => format!(
            "webhook scope `{value}` is invalid ({why}); use `repository[:tag]` with `*` wildcards, \
             e.g. `app:*` or `team/*:v1`"
        ),
        Format::WebhookUri { why } => format!("webhook uri `{value}` is not a URL ({why})"),
        Format::WebhookAddress => {
            format!("webhook uri `{value}` must be an http:// or https:// address with a host")
        }
        Format::WebhookHeader => {
            format!("webhook header `{value}` is not a valid HTTP header (name or value)")
        }
        Format::WebhookHeaderOfBerth => {
            format!("webhook header `{value}` is set by Berth (the signature)")
        }
    }
}

fn endpoint_message(what: &str, value: &str, why: &str) -> String {
    format!(
        "{what} `{value}` is not a host[:port]: {why}; write it like registry.example.com, \
         10.0.0.5:5000 or [fd00::5]:5000"
    )
}

/// A field of a cron expression: its name and the values it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronField {
    /// `minute`, `hour`, `day of month`, `month`, `day of week`.
    pub name: &'static str,
    /// The lowest value.
    pub low: u32,
    /// The highest value.
    pub high: u32,
}

/// What is wrong with a cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleProblem {
    /// Not five fields.
    FieldCount(usize),
    /// A number outside its field's range.
    OutOfRange {
        /// The field.
        field: CronField,
        /// The number as written.
        value: String,
    },
    /// A step of zero, or beyond the field's range.
    Step {
        /// The field.
        field: CronField,
        /// The step as written.
        step: String,
    },
    /// Not a number, a range, `*` or a step.
    NotAnItem {
        /// The field.
        field: CronField,
        /// The item as written.
        item: String,
    },
    /// The cron parser refused it.
    Unparsed(String),
    /// No date matches it.
    NeverFires,
    /// Continuous (`* * * * *`), where a garbage collection schedule needs ticks.
    CollectsEveryMinute,
}

fn invalid_schedule(schedule: &str, problem: &ScheduleProblem) -> String {
    match problem {
        ScheduleProblem::FieldCount(count) => format!(
            "sync schedule `{schedule}` has {count} fields; use a 5-field cron expression (minute hour day month \
             weekday), e.g. `0 */2 * * *`, or `* * * * *` to sync continuously"
        ),
        ScheduleProblem::OutOfRange {
            field: CronField { name, low, high },
            value,
        } => format!(
            "sync schedule `{schedule}`: {name} `{value}` is out of range; the {name} field takes {low} to {high}"
        ),
        ScheduleProblem::Step {
            field: CronField { name, high, .. },
            step,
        } => format!(
            "sync schedule `{schedule}`: the step `/{step}` of the {name} field must be 1 to {high}"
        ),
        ScheduleProblem::NotAnItem {
            field: CronField { name, low, high },
            item,
        } => format!(
            "sync schedule `{schedule}`: `{item}` in the {name} field is not a number, a range `a-b`, `*` or a step \
             `*/n`; the {name} field takes {low} to {high}"
        ),
        ScheduleProblem::Unparsed(why) => format!(
            "sync schedule `{schedule}` is not a valid cron expression ({why}); use minute hour day month weekday, \
             e.g. `0 */2 * * *`"
        ),
        ScheduleProblem::NeverFires => format!(
            "sync schedule `{schedule}` never fires: no date matches it (e.g. day 31 of a month that has 30 days or \
             fewer); content would never sync"
        ),
        ScheduleProblem::CollectsEveryMinute => format!(
            "gc schedule `{schedule}` would collect every minute; use a schedule such as `30 3 * * *`, \
             or --gc-enabled false"
        ),
    }
}

/// The settings with a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Blob transfers at once: 1 to 64.
    SyncConcurrency,
    /// A sync window: 1 hour to 7 days.
    SyncWindow,
    /// How long messages wait: 1 to 90 days.
    MessageTtl,
    /// A bandwidth limit: at least 1K.
    SyncBandwidth,
    /// How many IP rules a registry keeps: at most [`crate::network::MAX_IP_RULES`].
    IpRules,
    /// A scope map's description: at most 256 characters.
    ScopeMapDescription,
}

fn out_of_range(setting: Setting, value: &str) -> String {
    match setting {
        Setting::SyncConcurrency => {
            format!("sync concurrency {value} is out of range: use 1 to 64 blob transfers at once")
        }
        Setting::SyncWindow => {
            format!("sync window `{value}` is out of range: use 1 hour to 7 days, e.g. PT3H or P1D")
        }
        Setting::MessageTtl => {
            format!("message TTL `{value}` is out of range: use 1 to 90 days, e.g. P2D")
        }
        Setting::SyncBandwidth => {
            format!("sync bandwidth `{value}` is too low: at least 1K (1,000 bytes per second)")
        }
        Setting::IpRules => format!(
            "a registry keeps at most {} IP rules; merge addresses into ranges",
            crate::network::MAX_IP_RULES
        ),
        Setting::ScopeMapDescription => {
            "a scope map description holds at most 256 characters".to_owned()
        }
    }
}

/// A request whose parts are missing or do not go together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestProblem {
    /// A new token given both a scope map and rules.
    #[error("give either a scope map or repository/gateway rules for a new one, not both")]
    ScopeMapAndRules,
    /// A new token given neither a scope map nor rules.
    #[error("a token needs a scope map, or repository/gateway rules for a new one")]
    NoScopeMap,
    /// A new token whose own scope map's name (`<token>-scope-map`) would be too long.
    #[error(
        "the scope map created with a token is named `<token>-scope-map`, which must fit in 50 characters: \
         token names over 40 characters need an existing scope map (`{token}` is {})",
        .token.len()
    )]
    TokenNameTooLongForScopeMap {
        /// The token's name.
        token: String,
    },
    /// A new connected registry given both repositories and a sync token.
    #[error("give either repositories or an existing sync token, not both")]
    RepositoriesAndSyncToken,
    /// A new connected registry given neither repositories nor a sync token.
    #[error("a connected registry needs repositories to sync (or an existing sync token)")]
    NoRepositories,
    /// New passwords whose expiry has passed.
    #[error("the passwords' expiry must be in the future")]
    PasswordsExpired,
    /// A new password whose expiry has passed.
    #[error("the expiry must be in the future")]
    PasswordExpired,
    /// A scope map without a rule.
    #[error("a scope map needs at least one repository or gateway rule")]
    EmptyScopeMap,
    /// A repository rule without an action.
    #[error("repository rule `{repository}` names no action")]
    RepositoryRuleWithoutAction {
        /// The rule's repository.
        repository: String,
    },
    /// A gateway rule without a connected registry.
    #[error("a gateway rule needs a connected registry name")]
    GatewayRuleWithoutRegistry,
    /// A gateway rule without an action.
    #[error("gateway rule `{connected_registry}` names no action")]
    GatewayRuleWithoutAction {
        /// The rule's connected registry.
        connected_registry: String,
    },
    /// A sync window with a continuous schedule.
    #[error(
        "a sync window only applies to a scheduled sync; set --sync-schedule to a cron expression other than \
         `* * * * *`, or drop --sync-window"
    )]
    WindowWithoutSchedule,
    /// A webhook without an action.
    #[error("a webhook needs at least one action: push, delete")]
    WebhookWithoutAction,
}

/// The rules of the hierarchy of connected registries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HierarchyRule {
    /// A ReadOnly parent only takes ReadOnly children.
    #[error(
        "parent `{parent}` is ReadOnly, and a ReadOnly parent only takes ReadOnly children; create this one with \
         --mode ReadOnly"
    )]
    ReadWriteUnderReadOnly {
        /// The parent.
        parent: String,
    },
    /// A child's repositories are within its parent's.
    #[error(
        "repository `{repository}` is not synced by parent `{parent}`: a child's repositories must be within its \
         parent's; add it to the parent first with `connected-registry permissions update --name {parent} --add \
         {repository}`"
    )]
    OutsideParent {
        /// The repository (pattern) asked for.
        repository: String,
        /// The parent.
        parent: String,
    },
    /// Client tokens are ordinary tokens, not sync tokens.
    #[error("`{token}` is a sync token; client tokens are ordinary tokens")]
    SyncTokenAsClientToken {
        /// The token.
        token: String,
    },
    /// A ReadOnly connected registry accepts only read-only client tokens.
    #[error(
        "a ReadOnly connected registry accepts only read-only client tokens, but token `{token}` (scope map \
         `{scope_map}`) grants {}; use a token whose scope map has only content/read and metadata/read",
        .grants.join(", ")
    )]
    WritingClientToken {
        /// The token.
        token: String,
        /// Its scope map.
        scope_map: String,
        /// What it grants beyond reading, as `repository/action`.
        grants: Vec<String>,
    },
}

/// Why a scope map cannot be changed by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOnlyReason {
    /// A built-in scope map, asked to change.
    BuiltInChanged,
    /// A built-in scope map, asked to go.
    BuiltInDeleted,
    /// The sync scope map of a connected registry: derived from its repositories.
    SyncScopeMap {
        /// The connected registry.
        registry: String,
    },
}

fn read_only(scope_map: &str, reason: &ReadOnlyReason) -> String {
    match reason {
        ReadOnlyReason::BuiltInChanged => {
            format!("`{scope_map}` is a built-in scope map and cannot be changed; create your own")
        }
        ReadOnlyReason::BuiltInDeleted => {
            format!("`{scope_map}` is a built-in scope map and cannot be deleted")
        }
        ReadOnlyReason::SyncScopeMap { registry } => format!(
            "`{scope_map}` is the sync scope map of connected registry `{registry}` and follows its repositories; \
             change them with `connected-registry permissions update --name {registry}`"
        ),
    }
}

/// Why a connection string has no usable parent address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentAddress {
    /// The root's address (for a child of the root) names no machine.
    RootUnusable {
        /// The address.
        address: String,
        /// Why it names no machine.
        why: String,
    },
    /// The parent instance (for a nested child) has reported no address yet.
    NotReported {
        /// The parent connected registry.
        parent: String,
        /// The child.
        child: String,
    },
    /// The address the parent instance reports names no machine.
    ReportedUnusable {
        /// The parent connected registry.
        parent: String,
        /// The address it reports.
        address: String,
        /// Why it names no machine.
        why: String,
    },
}

/// What a connection string's caller can do instead.
const NAME_IT: &str = "or name the parent's address with `--parent-gateway-endpoint HOST[:PORT]`";

impl fmt::Display for ParentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParentAddress::RootUnusable { address, why } => write!(
                f,
                "{}; set the root's --public-url, {NAME_IT}",
                endpoint_message("the root's address", address, why)
            ),
            ParentAddress::NotReported { parent, child } => write!(
                f,
                "connected registry `{parent}`, the parent of `{child}`, has not reported its address yet: start \
                 its instance, wait until it is Online and run get-settings again, {NAME_IT}"
            ),
            ParentAddress::ReportedUnusable {
                parent,
                address,
                why,
            } => write!(
                f,
                "{}; set that instance's --public-url, {NAME_IT}",
                endpoint_message(
                    &format!("the login server `{parent}` reports"),
                    address,
                    why
                )
            ),
        }
    }
}

/// What the store holds and cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The admin account is missing.
    #[error("the admin account is missing")]
    AdminMissing,
    /// The network settings do not read back.
    #[error("stored network settings are invalid: {0}")]
    NetworkSettings(String),
    /// No current key of a purpose.
    #[error("no {0} key in the identity store")]
    NoKey(&'static str),
    /// A key that is not base64.
    #[error("stored key `{0}` is not base64")]
    KeyNotBase64(String),
    /// A key that is not 32 bytes.
    #[error("stored key `{0}` is not 32 bytes")]
    KeyLength(String),
    /// The change log names a kind of record there is no table for.
    #[error("the identity change log names an unknown kind `{0}`")]
    UnknownChangeKind(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages composed from a kind's data read as they did when each site wrote its own.
    #[test]
    fn composed_messages() {
        let name = |kind| IdentityError::InvalidName {
            kind,
            name: "x".into(),
        };
        for (kind, text) in [
            (
                NameKind::ConnectedRegistry,
                "connected registry name `x` is invalid: use 5 to 40 letters and digits, starting with a letter",
            ),
            (
                NameKind::ScopeMap,
                "scope map name `x` is invalid: use 5 to 50 letters, digits, `-` or `_`",
            ),
            (
                NameKind::Token,
                "token name `x` is invalid: use 5 to 50 letters, digits or `-`",
            ),
            (
                NameKind::Webhook,
                "webhook name `x` is invalid; use 5 to 50 letters and digits",
            ),
        ] {
            assert_eq!(name(kind).to_string(), text);
        }
        let choice = |setting| IdentityError::UnknownChoice {
            setting,
            value: "x".into(),
        };
        for (setting, text) in [
            (
                Choice::Mode,
                "mode `x` is invalid; use ReadWrite or ReadOnly",
            ),
            (
                Choice::LogLevel,
                "log level `x` is invalid; use Debug, Information, Warning, Error or None",
            ),
            (
                Choice::DefaultAction,
                "default action `x` is invalid; use Allow or Deny",
            ),
            (
                Choice::KeyPurpose,
                "key purpose `x` is invalid; use tokens or data-urls",
            ),
            (
                Choice::ParentProtocol,
                "parent protocol `x` is invalid; use http or https",
            ),
            (
                Choice::PasswordSlot,
                "generate_password `x` is invalid; use 1 or 2",
            ),
            (
                Choice::TokenStatus,
                "status `x` is invalid; use `enabled` or `disabled`",
            ),
            (
                Choice::WebhookAction,
                "webhook action `x` is unknown; use push or delete",
            ),
            (
                Choice::WebhookStatus,
                "webhook status `x` is unknown; use enabled or disabled",
            ),
            (
                Choice::RepositoryAction,
                "unknown repository action `x`; use content/read, content/write, content/delete, metadata/read or \
                 metadata/write",
            ),
            (
                Choice::GatewayAction,
                "unknown gateway action `x`; use config/read, config/write, message/read or message/write",
            ),
        ] {
            assert_eq!(choice(setting).to_string(), text);
        }
        let no_address = IdentityError::NoParentAddress(ParentAddress::RootUnusable {
            address: "0.0.0.0:5000".into(),
            why: "why".into(),
        });
        assert_eq!(
            no_address.to_string(),
            "the root's address `0.0.0.0:5000` is not a host[:port]: why; write it like registry.example.com, \
             10.0.0.5:5000 or [fd00::5]:5000; set the root's --public-url, or name the parent's address with \
             `--parent-gateway-endpoint HOST[:PORT]`"
        );
    }
}
