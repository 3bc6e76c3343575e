//! Connected registries as resources of the root registry: their settings, the rules they
//! obey, and the names of what is created with them.
//!
//! A connected registry is defined on the root (whatever its parent) and run on site by a
//! `berth serve` instance that activates against it. This module owns the definition and
//! its validation; the instance and the gateway it talks to live elsewhere.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::RepositoryAction;
use crate::cron::Cron;
use crate::error::{
    Choice, CronField, Format, IdentityError, NameKind, RequestProblem, ScheduleProblem, Setting,
};
use crate::scope_map::{RepositoryPattern, RepositoryRule};

/// The continuous sync schedule (every minute, i.e. "as changes happen").
pub const CONTINUOUS: &str = "* * * * *";
/// The default message TTL.
pub const DEFAULT_MESSAGE_TTL: &str = "P2D";

/// What local clients of a connected registry may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Mode {
    /// Local clients push and pull; local pushes flow up to the parent.
    ReadWrite,
    /// A pull-only mirror.
    #[default]
    ReadOnly,
}

impl Mode {
    /// Parses `ReadWrite` or `ReadOnly` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        match s.to_ascii_lowercase().as_str() {
            "readwrite" => Ok(Mode::ReadWrite),
            "readonly" => Ok(Mode::ReadOnly),
            _ => Err(IdentityError::UnknownChoice {
                setting: Choice::Mode,
                value: s.to_owned(),
            }),
        }
    }

    /// The repository actions a sync token of this mode holds on the synced repositories.
    pub fn sync_actions(self) -> &'static [RepositoryAction] {
        match self {
            Mode::ReadOnly => &[
                RepositoryAction::ContentRead,
                RepositoryAction::MetadataRead,
            ],
            Mode::ReadWrite => &RepositoryAction::ALL,
        }
    }
}

/// The instance's log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// The default.
    #[default]
    Information,
    /// Warnings and errors.
    Warning,
    /// Errors only.
    Error,
    /// Nothing.
    None,
}

impl LogLevel {
    /// Parses a log level (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "information" | "info" => LogLevel::Information,
            "warning" | "warn" => LogLevel::Warning,
            "error" => LogLevel::Error,
            "none" => LogLevel::None,
            _ => {
                return Err(IdentityError::UnknownChoice {
                    setting: Choice::LogLevel,
                    value: s.to_owned(),
                });
            }
        })
    }
}

/// An ISO-8601 duration as it was written (`PT3H`, `P2D`, shown back the same) and as it is
/// parsed, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoDuration {
    text: String,
    value: Duration,
}

impl IsoDuration {
    /// Parses `text`; `what` names the setting in the error.
    pub fn parse(what: &str, text: &str) -> Result<Self, IdentityError> {
        Ok(IsoDuration {
            value: iso_duration(what, text)?,
            text: text.to_owned(),
        })
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// As parsed.
    pub fn duration(&self) -> Duration {
        self.value
    }
}

impl Serialize for IsoDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        IsoDuration::parse("duration", &text).map_err(serde::de::Error::custom)
    }
}

/// When content syncs: continuously (`* * * * *`), or at the ticks of a cron expression,
/// parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSchedule {
    /// The expression, its fields joined by single spaces.
    text: String,
    /// `None`: continuous.
    cron: Option<Cron>,
}

impl SyncSchedule {
    /// Continuous sync.
    pub fn continuous() -> Self {
        SyncSchedule {
            text: CONTINUOUS.to_owned(),
            cron: None,
        }
    }

    /// Parses a 5-field cron expression (each field within its range); `* * * * *` is
    /// continuous. Whether it ever fires is [`SyncSettings::validate`]'s to say.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        let normalized = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if normalized == CONTINUOUS {
            return Ok(SyncSchedule::continuous());
        }
        Ok(SyncSchedule {
            cron: Some(parse_schedule(text)?),
            text: normalized,
        })
    }

    /// Whether content syncs continuously.
    pub fn is_continuous(&self) -> bool {
        self.cron.is_none()
    }

    /// The cron expression, for a scheduled sync.
    pub fn cron(&self) -> Option<&Cron> {
        self.cron.as_ref()
    }

    /// As written (fields joined by single spaces).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for SyncSchedule {
    fn default() -> Self {
        SyncSchedule::continuous()
    }
}

impl Serialize for SyncSchedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SyncSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SyncSchedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// When and for how long the instance syncs with its parent, and how fast: defined once,
/// parsed once (when a request or a stored record is read), used typed everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSettings {
    /// Continuous, or a 5-field cron expression.
    pub schedule: SyncSchedule,
    /// 1 hour to 7 days; only with a cron schedule.
    pub window: Option<IsoDuration>,
    /// 1 to 90 days: how long messages wait for an offline instance.
    pub message_ttl: IsoDuration,
    /// Most bytes per second content sync may use on the link (down and up together);
    /// `None`: unlimited.
    #[serde(default)]
    pub bandwidth: Option<u64>,
    /// Most blob transfers at once on the link.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

impl SyncSettings {
    /// The defaults changed by `change`, checked together.
    pub fn from_change(change: &SyncChange) -> Result<Self, IdentityError> {
        let mut settings = SyncSettings::default();
        settings.apply(change)?;
        Ok(settings)
    }

    /// Applies a parsed change and checks the result together (a window needs a schedule,
    /// each value within its range): a change that is fine alone may not be with the
    /// settings it meets. Refused, it changes nothing.
    pub fn apply(&mut self, change: &SyncChange) -> Result<(), IdentityError> {
        let mut next = self.clone();
        if let Some(schedule) = &change.schedule {
            next.schedule = schedule.clone();
        }
        if let Some(window) = &change.window {
            next.window = window.clone();
        }
        if let Some(ttl) = &change.message_ttl {
            next.message_ttl = ttl.clone();
        }
        if let Some(bandwidth) = change.bandwidth {
            next.bandwidth = bandwidth;
        }
        if let Some(concurrency) = change.concurrency {
            next.concurrency = concurrency;
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

/// A change of [`SyncSettings`], parsed: `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncChange {
    /// A new schedule.
    pub schedule: Option<SyncSchedule>,
    /// A new window; `Some(None)` removes it.
    pub window: Option<Option<IsoDuration>>,
    /// A new message TTL.
    pub message_ttl: Option<IsoDuration>,
    /// A new bandwidth limit; `Some(None)` removes it.
    pub bandwidth: Option<Option<u64>>,
    /// A new number of blob transfers at once.
    pub concurrency: Option<u32>,
}

impl SyncChange {
    /// Parses the values given as the API and the command line write them (a window or
    /// bandwidth of `""` removes it), each once. How they go together is checked when the
    /// change is applied ([`SyncSettings::apply`]).
    pub fn parse(
        schedule: Option<&str>,
        window: Option<&str>,
        message_ttl: Option<&str>,
        bandwidth: Option<&str>,
        concurrency: Option<u32>,
    ) -> Result<Self, IdentityError> {
        Ok(SyncChange {
            schedule: schedule.map(SyncSchedule::parse).transpose()?,
            window: window
                .map(|w| match w {
                    "" => Ok(None),
                    w => IsoDuration::parse("sync window", w).map(Some),
                })
                .transpose()?,
            message_ttl: message_ttl
                .map(|ttl| IsoDuration::parse("message TTL", ttl))
                .transpose()?,
            bandwidth: bandwidth
                .map(|b| match b {
                    "" => Ok(None),
                    b => parse_bandwidth(b).map(Some),
                })
                .transpose()?,
            concurrency,
        })
    }
}

/// Blob transfers at once, by default.
pub const DEFAULT_CONCURRENCY: u32 = 4;

fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}

/// Parses a bandwidth such as `500K`, `20M` or `1G` (bytes per second, powers of 1000; a
/// plain number is bytes).
pub fn parse_bandwidth(value: &str) -> Result<u64, IdentityError> {
    let invalid = || IdentityError::Malformed {
        value: value.to_owned(),
        format: Format::Bandwidth,
    };
    let value = value.trim();
    let (number, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let factor = match unit
        .trim()
        .trim_end_matches("B/s")
        .trim_end_matches("/s")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(invalid()),
    };
    let bytes = number.checked_mul(factor).ok_or_else(invalid)?;
    if bytes < 1_000 {
        return Err(IdentityError::SettingOutOfRange {
            setting: Setting::SyncBandwidth,
            value: value.to_owned(),
        });
    }
    Ok(bytes)
}

/// Checks an endpoint as connection strings and pull secrets name a registry: `host[:port]`
/// (see [`berth_oci::endpoint`]). `what` names the value in the message.
pub fn validate_endpoint(what: &str, value: &str) -> Result<(), IdentityError> {
    berth_oci::endpoint::check(value).map_err(|why| IdentityError::Malformed {
        value: value.to_owned(),
        format: Format::Endpoint {
            what: what.to_owned(),
            why: why.to_string(),
        },
    })
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            schedule: SyncSchedule::continuous(),
            window: None,
            message_ttl: IsoDuration::parse("message TTL", DEFAULT_MESSAGE_TTL)
                .expect("the default TTL parses"),
            bandwidth: None,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

impl SyncSettings {
    /// Checks the schedule (it fires), the window (only with a schedule) and the TTL,
    /// together.
    pub fn validate(&self) -> Result<(), IdentityError> {
        if !(1..=64).contains(&self.concurrency) {
            return Err(IdentityError::SettingOutOfRange {
                setting: Setting::SyncConcurrency,
                value: self.concurrency.to_string(),
            });
        }
        if let Some(cron) = self.schedule.cron() {
            check_fires(self.schedule.as_str(), cron)?;
        }
        match (&self.window, self.schedule.is_continuous()) {
            (Some(_), true) => {
                return Err(RequestProblem::WindowWithoutSchedule.into());
            }
            (Some(window), false) => {
                let d = window.duration();
                if d < Duration::from_secs(3600) || d > Duration::from_secs(7 * 24 * 3600) {
                    return Err(IdentityError::SettingOutOfRange {
                        setting: Setting::SyncWindow,
                        value: window.as_str().to_owned(),
                    });
                }
            }
            (None, _) => {}
        }
        let ttl = self.message_ttl.duration();
        if ttl < Duration::from_secs(24 * 3600) || ttl > Duration::from_secs(90 * 24 * 3600) {
            return Err(IdentityError::SettingOutOfRange {
                setting: Setting::MessageTtl,
                value: self.message_ttl.as_str().to_owned(),
            });
        }
        Ok(())
    }
}

/// The five fields of a cron expression: name, lowest and highest value.
const CRON_FIELDS: [CronField; 5] = [
    CronField {
        name: "minute",
        low: 0,
        high: 59,
    },
    CronField {
        name: "hour",
        low: 0,
        high: 23,
    },
    CronField {
        name: "day of month",
        low: 1,
        high: 31,
    },
    CronField {
        name: "month",
        low: 1,
        high: 12,
    },
    CronField {
        name: "day of week",
        low: 0,
        high: 7,
    },
];

/// How far ahead a schedule's next tick may lie; one further away never fires in practice.
const CRON_HORIZON_YEARS: i64 = 30;

/// Checks one field of a cron expression: numbers within its range, steps of at least one.
/// Names (`JAN`, `MON`) and the `L`, `W`, `#` and `?` forms are left to the parser.
fn check_cron_field(schedule: &str, text: &str, field: CronField) -> Result<(), IdentityError> {
    let invalid = |problem| IdentityError::InvalidSchedule {
        schedule: schedule.to_owned(),
        problem,
    };
    for item in text.split(',') {
        if item.contains(['L', 'W', '#', '?']) || item.bytes().any(|b| b.is_ascii_alphabetic()) {
            continue;
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if (1..=field.high.max(1)).contains(&n) => {}
                _ => {
                    return Err(invalid(ScheduleProblem::Step {
                        field,
                        step: step.to_owned(),
                    }));
                }
            }
        }
        if range == "*" {
            continue;
        }
        let bounds: Vec<&str> = range.split('-').collect();
        if bounds.len() > 2 || bounds.iter().any(|b| b.is_empty()) {
            return Err(invalid(ScheduleProblem::NotAnItem {
                field,
                item: item.to_owned(),
            }));
        }
        for bound in bounds {
            match bound.parse::<u32>() {
                Ok(v) if (field.low..=field.high).contains(&v) => {}
                _ => {
                    return Err(invalid(ScheduleProblem::OutOfRange {
                        field,
                        value: bound.to_owned(),
                    }));
                }
            }
        }
    }
    Ok(())
}

/// Parses a 5-field cron expression, each field within its range.
fn parse_schedule(schedule: &str) -> Result<Cron, IdentityError> {
    let invalid = |problem| IdentityError::InvalidSchedule {
        schedule: schedule.to_owned(),
        problem,
    };
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(invalid(ScheduleProblem::FieldCount(fields.len())));
    }
    for (text, field) in fields.iter().zip(CRON_FIELDS) {
        check_cron_field(schedule, text, field)?;
    }
    schedule
        .parse::<Cron>()
        .map_err(|e| invalid(ScheduleProblem::Unparsed(e.to_string())))
}

/// Checks that a cron schedule fires at all (`0 0 31 2 *` never does).
fn check_fires(schedule: &str, cron: &Cron) -> Result<(), IdentityError> {
    let now = jiff::Timestamp::now();
    let horizon = now + jiff::SignedDuration::from_hours(24 * 366 * CRON_HORIZON_YEARS);
    match cron.next_after(now) {
        Some(next) if next <= horizon => Ok(()),
        _ => Err(IdentityError::InvalidSchedule {
            schedule: schedule.to_owned(),
            problem: ScheduleProblem::NeverFires,
        }),
    }
}

/// Checks a 5-field cron expression: its shape, each field's range, and that it fires at all
/// (`0 0 31 2 *` never does).
pub fn validate_schedule(schedule: &str) -> Result<(), IdentityError> {
    let parsed = SyncSchedule::parse(schedule)?;
    match parsed.cron() {
        Some(cron) => check_fires(parsed.as_str(), cron),
        None => Ok(()),
    }
}

/// Parses an ISO-8601 duration (`PT4H`, `P2D`, `P1DT12H`), days counting 24 hours.
pub fn iso_duration(what: &str, value: &str) -> Result<Duration, IdentityError> {
    let invalid = || IdentityError::Malformed {
        value: value.to_owned(),
        format: Format::Duration {
            what: what.to_owned(),
        },
    };
    if !value.starts_with(['P', 'p']) {
        return Err(invalid());
    }
    let span: jiff::Span = value.parse().map_err(|_| invalid())?;
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| invalid())?;
    Duration::try_from(signed).map_err(|_| invalid())
}

/// Checks a notification pattern: `repository[:tag][@digest]:push|delete`, where every part
/// may contain `*` wildcards (e.g. `*:*`, `hello-world:v1:push`, `team/*@sha256:*:delete`).
pub fn validate_notification(pattern: &str) -> Result<(), IdentityError> {
    let invalid = |why: &'static str| IdentityError::Malformed {
        value: pattern.to_owned(),
        format: Format::NotificationPattern { why },
    };
    let (target, action) = pattern
        .rsplit_once(':')
        .ok_or_else(|| invalid("no action"))?;
    if !matches!(action, "push" | "delete" | "*") {
        return Err(invalid("the action must be push, delete or *"));
    }
    let (rest, digest) = match target.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (target, None),
    };
    let (repository, tag) = match rest.split_once(':') {
        Some((repository, tag)) => (repository, Some(tag)),
        None => (rest, None),
    };
    let part_ok = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'*' || extra.contains(&b))
    };
    if !part_ok(repository, b"/._-") {
        return Err(invalid("bad repository part"));
    }
    if tag.is_some_and(|t| !part_ok(t, b"._-")) {
        return Err(invalid("bad tag part"));
    }
    if digest.is_some_and(|d| !part_ok(d, b":+._-=")) {
        return Err(invalid("bad digest part"));
    }
    Ok(())
}

/// Checks a connected registry name: 5-40 letters and digits, starting with a letter.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let ok = (5..=40).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidName {
            kind: NameKind::ConnectedRegistry,
            name: name.to_owned(),
        })
    }
}

/// The name of the sync token created with connected registry `name`.
pub fn sync_token_name(name: &str) -> String {
    format!("{name}-sync-token")
}

/// The name of the sync token's scope map.
pub fn sync_scope_map_name(name: &str) -> String {
    format!("{name}-sync-scope-map")
}

/// Whether every repository `pattern` covers is also covered by `outer`.
pub fn pattern_within(pattern: &RepositoryPattern, outer: &RepositoryPattern) -> bool {
    match (outer, pattern) {
        (RepositoryPattern::All, _) => true,
        (_, RepositoryPattern::All) => false,
        (RepositoryPattern::Prefix(o), RepositoryPattern::Prefix(p)) => p.starts_with(o.as_str()),
        (RepositoryPattern::Prefix(o), RepositoryPattern::Exact(p)) => p.starts_with(o.as_str()),
        (RepositoryPattern::Exact(o), RepositoryPattern::Exact(p)) => o == p,
        (RepositoryPattern::Exact(_), RepositoryPattern::Prefix(_)) => false,
    }
}

/// The repository rules of a sync scope map for `repositories` in `mode`.
pub fn sync_rules(repositories: &[String], mode: Mode) -> Vec<RepositoryRule> {
    repositories
        .iter()
        .map(|r| RepositoryRule {
            repository: r.clone(),
            actions: mode.sync_actions().iter().copied().collect(),
        })
        .collect()
}

/// What the instance reports, as the root shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InstanceStatus {
    /// `Online`, `Syncing`, `Unhealthy` (as reported); `Offline` is derived from silence.
    pub connection_state: String,
    /// Last successful sync, Unix seconds.
    pub last_sync: Option<i64>,
    /// Typed problems: code, description, time.
    #[serde(default)]
    pub details: Vec<StatusDetail>,
    /// The instance's Berth version.
    pub version: String,
    /// The address local clients use.
    pub login_server: String,
    /// When the report arrived, Unix seconds.
    pub reported_at: i64,
    /// The instance's last garbage collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_gc: Option<GcSummary>,
}

/// What an instance's last garbage collection did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GcSummary {
    /// When it ended, Unix seconds.
    pub at: i64,
    /// `finished`, `stopped`, or `failed: <why>`.
    pub outcome: String,
    /// Blobs whose bytes it removed.
    pub blobs_removed: u64,
    /// Bytes it freed.
    pub bytes_freed: u64,
}

/// The default garbage collection schedule: daily at a quiet hour (03:30 UTC).
pub const DEFAULT_GC_SCHEDULE: &str = "30 3 * * *";

/// Whether and when a connected registry's instance collects garbage (its own, on site).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcSettings {
    /// Collects on its schedule.
    pub enabled: bool,
    /// When: a 5-field cron expression, UTC.
    pub schedule: SyncSchedule,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            enabled: true,
            schedule: SyncSchedule::parse(DEFAULT_GC_SCHEDULE).expect("the default parses"),
        }
    }
}

impl GcSettings {
    /// Applies a parsed change (checked whole when it was parsed).
    pub fn apply(&mut self, change: &GcChange) {
        if let Some(enabled) = change.enabled {
            self.enabled = enabled;
        }
        if let Some(schedule) = &change.schedule {
            self.schedule = schedule.clone();
        }
    }
}

/// A change of [`GcSettings`], parsed: `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcChange {
    /// Turns collection on or off.
    pub enabled: Option<bool>,
    /// A new schedule: a cron expression that fires, not continuous.
    pub schedule: Option<SyncSchedule>,
}

impl GcChange {
    /// Parses and checks the schedule: a cron expression that fires, not continuous.
    pub fn parse(enabled: Option<bool>, schedule: Option<&str>) -> Result<Self, IdentityError> {
        let schedule = match schedule {
            None => None,
            Some(text) => {
                let parsed = SyncSchedule::parse(text)?;
                let Some(cron) = parsed.cron() else {
                    return Err(IdentityError::InvalidSchedule {
                        schedule: text.to_owned(),
                        problem: ScheduleProblem::CollectsEveryMinute,
                    });
                };
                check_fires(parsed.as_str(), cron)?;
                Some(parsed)
            }
        };
        Ok(GcChange { enabled, schedule })
    }
}

/// A change of what a connected registry's instance runs with: its sync settings, log
/// level and garbage collection, parsed once where the request arrives, so that a value
/// that does not parse is refused before anything is read or written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// Sync settings.
    pub sync: SyncChange,
    /// A new log level.
    pub log_level: Option<LogLevel>,
    /// Garbage collection on site.
    pub gc: GcChange,
}

/// A typed problem of a connected registry: current while its cause lasts, then kept for a
/// while as a past problem, with the time it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDetail {
    /// Machine-readable code, e.g. `DISK_FULL`, `ALREADY_ACTIVATED`.
    pub code: String,
    /// For people.
    pub description: String,
    /// When it started, Unix seconds.
    pub at: i64,
    /// When it ended, Unix seconds; `None` while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
}

impl StatusDetail {
    /// A problem that started at `at` and lasts.
    pub fn new(code: &str, description: impl Into<String>, at: i64) -> Self {
        StatusDetail {
            code: code.to_owned(),
            description: description.into(),
            at,
            resolved_at: None,
        }
    }

    /// Whether its cause still lasts.
    pub fn is_current(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// How many past problems are kept in a status.
pub const PAST_DETAILS_KEPT: usize = 10;

/// Orders status details: current problems first, oldest first; then past ones, the most
/// recently ended first.
pub fn order_details(details: &mut [StatusDetail]) {
    details.sort_by(|a, b| match (a.resolved_at, b.resolved_at) {
        (None, None) => a.at.cmp(&b.at),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(&x).then(b.at.cmp(&a.at)),
    });
}

/// Keeps every current problem and the [`PAST_DETAILS_KEPT`] most recent past ones.
pub fn trim_past(details: &mut Vec<StatusDetail>) {
    order_details(details);
    let current = details.iter().filter(|d| d.is_current()).count();
    details.truncate(current + PAST_DETAILS_KEPT);
}

/// Which instance holds a connected registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// The instance's identity, kept in its data directory.
    pub instance_id: String,
    /// When it activated, Unix seconds.
    pub activated_at: i64,
}

/// An instance deactivated on the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deactivation {
    /// The instance's identity.
    pub instance_id: String,
    /// When it was deactivated, Unix seconds.
    pub deactivated_at: i64,
}

/// How many deactivated instances a connected registry remembers.
pub const DEACTIVATIONS_KEPT: usize = 16;

/// A connected registry resource, as stored on the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedRegistry {
    /// 5-40 letters and digits, unique in the hierarchy.
    pub name: String,
    /// Fixed at creation.
    pub mode: Mode,
    /// The parent connected registry; `None` is the root.
    pub parent: Option<String>,
    /// The sync token (normally `<name>-sync-token`).
    pub sync_token: String,
    /// The repositories it syncs (names, `prefix/*` or `*`); its sync scope map also holds
    /// those of its descendants.
    pub repositories: Vec<String>,
    /// Client tokens the instance accepts.
    #[serde(default)]
    pub client_tokens: Vec<String>,
    /// Schedule, window, TTL.
    pub sync: SyncSettings,
    /// The instance's log level.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Notification patterns.
    #[serde(default)]
    pub notifications: Vec<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Garbage collection on site.
    #[serde(default)]
    pub gc: GcSettings,
    /// The active instance, if any.
    #[serde(default)]
    pub activation: Option<Activation>,
    /// Instances deactivated on the root, newest last (the last few): they may never
    /// activate again, so an old instance that comes back cannot take the registry from its
    /// replacement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deactivated: Vec<Deactivation>,
    /// The last status report.
    #[serde(default)]
    pub status: Option<InstanceStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("factory").is_ok());
        assert!(validate_name("line3").is_ok());
        for bad in ["abcd", "3line", "has-dash", &"a".repeat(41), "fäctory"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedules_windows_and_ttls() {
        assert!(SyncSettings::default().validate().is_ok());
        let s = |schedule: &str, window: Option<&str>, ttl: &str| {
            SyncChange::parse(Some(schedule), window, Some(ttl), None, None)
                .and_then(|change| SyncSettings::from_change(&change))
        };
        assert!(s("0 */2 * * *", Some("PT3H"), "P2D").is_ok());
        assert!(s("0 */2 * * *", Some("P7D"), "P90D").is_ok());
        let err = |x: Result<SyncSettings, IdentityError>| x.unwrap_err().to_string();
        assert!(
            err(s("* * * * *", Some("PT3H"), "P2D")).contains("only applies to a scheduled sync")
        );
        assert!(err(s("0 * * * *", Some("PT30M"), "P2D")).contains("1 hour to 7 days"));
        assert!(err(s("0 * * * *", Some("P8D"), "P2D")).contains("1 hour to 7 days"));
        assert!(err(s("* * * * *", None, "PT12H")).contains("1 to 90 days"));
        assert!(err(s("* * * * *", None, "P91D")).contains("1 to 90 days"));
        assert!(err(s("* * * * *", None, "2 days")).contains("ISO-8601"));
        assert!(err(s("0 0 * * * *", None, "P2D")).contains("6 fields"));
        let e = err(s("61 * * * *", None, "P2D"));
        assert!(
            e.contains("minute `61` is out of range") && e.contains("0 to 59"),
            "{e}"
        );
        let e = err(s("0 24 * * *", None, "P2D"));
        assert!(e.contains("hour `24`") && e.contains("0 to 23"), "{e}");
        let e = err(s("0 0 0 * *", None, "P2D"));
        assert!(
            e.contains("day of month `0`") && e.contains("1 to 31"),
            "{e}"
        );
        let e = err(s("0 0 1 13 *", None, "P2D"));
        assert!(e.contains("month `13`") && e.contains("1 to 12"), "{e}");
        let e = err(s("0 0 * * 8", None, "P2D"));
        assert!(e.contains("day of week `8`") && e.contains("0 to 7"), "{e}");
        let e = err(s("*/0 * * * *", None, "P2D"));
        assert!(e.contains("step `/0`"), "{e}");
        let e = err(s("1-2-3 * * * *", None, "P2D"));
        assert!(e.contains("not a number, a range"), "{e}");
        for never in ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
            let e = err(s(never, Some("PT1H"), "P2D"));
            assert!(e.contains("never fires"), "{never}: {e}");
        }
        for fine in [
            "0 0 29 2 *",
            "0 0 1 1 *",
            "0 22 * * MON-FRI",
            "*/15 9-17 * JAN,JUL *",
            "0 0 L * *",
            "5,35 */2 1-15/2 * 0,7",
        ] {
            assert!(
                s(fine, Some("PT1H"), "P2D").is_ok(),
                "{fine}: {:?}",
                s(fine, Some("PT1H"), "P2D")
            );
        }
    }

    #[test]
    fn changes_parse_once_and_check_together_when_applied() {
        let change =
            SyncChange::parse(Some("0 2 * * *"), Some("PT4H"), None, Some("20M"), None).unwrap();
        let mut settings = SyncSettings::default();
        settings.apply(&change).unwrap();
        assert_eq!(settings.window.as_ref().unwrap().as_str(), "PT4H");
        assert_eq!(settings.bandwidth, Some(20_000_000));
        // An empty window or bandwidth removes it.
        let clear = SyncChange::parse(Some("* * * * *"), Some(""), None, Some(""), None).unwrap();
        assert_eq!(clear.window, Some(None));
        settings.apply(&clear).unwrap();
        assert_eq!((&settings.window, settings.bandwidth), (&None, None));
        // A value that does not parse is refused by the parse, before anything is applied.
        assert!(matches!(
            SyncChange::parse(None, None, Some("2 days"), None, None),
            Err(IdentityError::Malformed { .. })
        ));
        // A window alone parses; with a continuous schedule it is refused when applied, and
        // the settings are left as they were.
        let window = SyncChange::parse(None, Some("PT3H"), None, None, None).unwrap();
        let before = settings.clone();
        assert!(matches!(
            settings.apply(&window),
            Err(IdentityError::InvalidRequest(
                RequestProblem::WindowWithoutSchedule
            ))
        ));
        assert_eq!(settings, before);

        let gc = GcChange::parse(Some(false), Some("0 4 * * 0")).unwrap();
        let mut gc_settings = GcSettings::default();
        gc_settings.apply(&gc);
        assert!(!gc_settings.enabled);
        assert_eq!(gc_settings.schedule.as_str(), "0 4 * * 0");
        let e = GcChange::parse(None, Some("* * * * *")).unwrap_err();
        assert!(e.to_string().contains("would collect every minute"), "{e}");
        let e = GcChange::parse(None, Some("0 0 31 2 *")).unwrap_err();
        assert!(e.to_string().contains("never fires"), "{e}");
    }

    #[test]
    fn bandwidths() {
        assert_eq!(parse_bandwidth("20M").unwrap(), 20_000_000);
        assert_eq!(parse_bandwidth("500K").unwrap(), 500_000);
        assert_eq!(parse_bandwidth("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bandwidth("2MB/s").unwrap(), 2_000_000);
        for bad in ["", "fast", "10X", "-1M", "999"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
        let zero = SyncSettings {
            concurrency: 0,
            ..SyncSettings::default()
        };
        assert!(zero.validate().unwrap_err().to_string().contains("1 to 64"));
    }

    #[test]
    fn endpoints() {
        for good in [
            "registry.example.com",
            "factory:5000",
            "10.0.0.5:5000",
            "[fd00::5]:5000",
            "[::1]",
            "berth_root.local:443",
        ] {
            assert!(validate_endpoint("endpoint", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "not a host",
            "<address of connected registry factory: start it>",
            "http://factory:5000",
            "factory:5000/v2",
            "factory:",
            "factory:99999",
            "factory:0",
            "fd00::5",
            "[::1",
            "[nope]:1",
            "[::1]5000",
            "-factory",
            "a..b",
            "0.0.0.0:5000",
            "[::]:5000",
        ] {
            let e = validate_endpoint("--endpoint", bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("--endpoint `{bad}` is not a host[:port]")),
                "{e}"
            );
        }
    }

    #[test]
    fn notification_patterns() {
        for ok in [
            "*:*",
            "hello-world:v1:push",
            "hello-world:*:delete",
            "team/*@sha256:*:push",
            "a/b:tag@sha256:abc:delete",
        ] {
            assert!(validate_notification(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "*",
            "hello:pull",
            "hello world:push",
            ":push",
            "a:b:c:d:push",
        ] {
            assert!(validate_notification(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn containment() {
        let p = |s: &str| RepositoryPattern::parse(s).unwrap();
        assert!(pattern_within(&p("team/app"), &p("*")));
        assert!(pattern_within(&p("team/app"), &p("team/*")));
        assert!(pattern_within(&p("team/x/*"), &p("team/*")));
        assert!(pattern_within(&p("team/app"), &p("team/app")));
        assert!(!pattern_within(&p("*"), &p("team/*")));
        assert!(!pattern_within(&p("team/*"), &p("team/app")));
        assert!(!pattern_within(&p("other"), &p("team/*")));
    }
}
