//! The settings of the audit log and webhooks (`berth serve --audit-retention …`, or the
//! `[events]` table of the configuration file), merged like every other setting (see
//! `config`): flag or `BERTH_*` variable, else file, else default.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, duration_setting};

/// The flags (each also readable from its `BERTH_*` variable).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct EventsArgs {
    /// How long the audit log keeps management actions [default: 90d].
    #[arg(long, env = "BERTH_AUDIT_RETENTION", value_name = "DURATION")]
    pub audit_retention: Option<String>,
    /// The longest a call to a webhook may take [default: 10s].
    #[arg(long, env = "BERTH_WEBHOOK_TIMEOUT", value_name = "DURATION")]
    pub webhook_timeout: Option<String>,
    /// Calls made for one event before it is recorded as failed [default: 8].
    #[arg(long, env = "BERTH_WEBHOOK_MAX_ATTEMPTS", value_name = "N")]
    pub webhook_max_attempts: Option<u32>,
    /// The wait after a webhook's first failed call, doubled after each further one (at
    /// most 5 minutes) [default: 2s].
    #[arg(long, env = "BERTH_WEBHOOK_RETRY_DELAY", value_name = "DURATION")]
    pub webhook_retry_delay: Option<String>,
}

/// `[events]` in the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsFile {
    audit_retention: Option<String>,
    webhook_timeout: Option<String>,
    webhook_max_attempts: Option<u32>,
    webhook_retry_delay: Option<String>,
}

/// The audit log's and webhooks' settings, as configured.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// Per call.
    pub webhook_timeout: Duration,
    /// Per event.
    pub webhook_max_attempts: u32,
    /// The first wait between attempts.
    pub webhook_retry_delay: Duration,
}

/// Merges the flags over the file and the defaults.
pub fn load(args: EventsArgs, file: Option<EventsFile>) -> Result<EventsConfig, ConfigError> {
    let file = file.unwrap_or_default();
    let defaults = berth_events::DeliveryOptions::default();
    let max_attempts = args
        .webhook_max_attempts
        .or(file.webhook_max_attempts)
        .unwrap_or(defaults.max_attempts);
    if max_attempts == 0 {
        return Err(ConfigError::Invalid {
            key: "webhook_max_attempts",
            message: "must be at least 1".into(),
        });
    }
    Ok(EventsConfig {
        audit_retention: duration_setting(
            "audit_retention",
            args.audit_retention,
            file.audit_retention,
            Duration::from_secs(90 * 24 * 3600),
        )?,
        webhook_timeout: duration_setting(
            "webhook_timeout",
            args.webhook_timeout,
            file.webhook_timeout,
            defaults.timeout,
        )?,
        webhook_max_attempts: max_attempts,
        webhook_retry_delay: duration_setting(
            "webhook_retry_delay",
            args.webhook_retry_delay,
            file.webhook_retry_delay,
            defaults.retry_delay,
        )?,
    })
}
