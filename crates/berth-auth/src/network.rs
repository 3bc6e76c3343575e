//! Network access settings: the public network switch, IP rules, the dedicated data
//! endpoint switch, and the connection states of private endpoints.
//!
//! They are kept with the other registry settings (one JSON value, so they change in one
//! transaction) and never flow down to connected registries: each registry guards its own
//! listeners. [`NetworkPolicy`] is the compiled form the listeners consult on every request.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Choice, Format, IdentityError, Setting};

/// The most IP rules a registry keeps. Matching costs the same whatever their number.
pub const MAX_IP_RULES: usize = 1000;

/// What the public listener does with a client no IP rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DefaultAction {
    /// Every client may connect (IP rules are not consulted).
    #[default]
    Allow,
    /// Only clients inside an IP rule may connect.
    Deny,
}

impl FromStr for DefaultAction {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, IdentityError> {
        match s.to_ascii_lowercase().as_str() {
            "allow" => Ok(DefaultAction::Allow),
            "deny" => Ok(DefaultAction::Deny),
            _ => Err(IdentityError::UnknownChoice {
                setting: Choice::DefaultAction,
                value: s.to_owned(),
            }),
        }
    }
}

/// A private endpoint connection's state; only `Approved` serves registry traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionState {
    /// Configured, waiting for the owner's approval.
    Pending,
    /// Serves.
    Approved,
    /// Refused by the owner.
    Rejected,
    /// Deleted by the owner, or no longer configured.
    Disconnected,
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectionState::Pending => "Pending",
            ConnectionState::Approved => "Approved",
            ConnectionState::Rejected => "Rejected",
            ConnectionState::Disconnected => "Disconnected",
        })
    }
}

/// The owner's decision about one private endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateEndpointConnection {
    /// The endpoint's name, as configured.
    pub name: String,
    /// Its state.
    pub state: ConnectionState,
    /// Why, in the owner's words.
    #[serde(default)]
    pub description: String,
    /// When the state last changed (Unix seconds).
    pub updated_at: i64,
}

/// Network settings as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkSettings {
    /// When false, the public (login server) listener refuses every request.
    pub public_network_enabled: bool,
    /// What the public listener does with clients outside every IP rule.
    pub default_action: DefaultAction,
    /// Allowed client addresses and ranges, canonical (`10.0.0.0/8`, `2001:db8::/32`,
    /// `192.0.2.7/32`).
    pub ip_rules: Vec<String>,
    /// When true (and a data endpoint is configured), blob downloads redirect to it.
    pub data_endpoint_enabled: bool,
    /// Decisions about private endpoints, by name.
    pub private_endpoints: BTreeMap<String, PrivateEndpointConnection>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            public_network_enabled: true,
            default_action: DefaultAction::Allow,
            ip_rules: Vec::new(),
            data_endpoint_enabled: false,
            private_endpoints: BTreeMap::new(),
        }
    }
}

/// Parses an IP rule: an address or a CIDR range, IPv4 or IPv6. An IPv4-mapped IPv6 address
/// is taken as the IPv4 address. A range with host bits set is refused, as ambiguous.
pub fn parse_ip_rule(text: &str) -> Result<IpNet, IdentityError> {
    let text = text.trim();
    let invalid = |why: String| IdentityError::Malformed {
        value: text.to_owned(),
        format: Format::IpRule { why },
    };
    let net = if text.contains('/') {
        let net = IpNet::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if net.trunc() != net {
            return Err(invalid(format!(
                "it has host bits set (the range is {})",
                net.trunc()
            )));
        }
        net
    } else {
        IpNet::from(IpAddr::from_str(text).map_err(|e| invalid(e.to_string()))?)
    };
    // `::ffff:a.b.c.d/n` with n >= 96 is an IPv4 range.
    Ok(match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).expect("prefix <= 32"),
            None => net,
        },
        _ => net,
    })
}

impl NetworkSettings {
    /// Adds an allowed address or range; `false` when it was already there.
    pub fn add_rule(&mut self, rule: &str) -> Result<bool, IdentityError> {
        let canonical = parse_ip_rule(rule)?.to_string();
        if self.ip_rules.contains(&canonical) {
            return Ok(false);
        }
        if self.ip_rules.len() >= MAX_IP_RULES {
            return Err(IdentityError::SettingOutOfRange {
                setting: Setting::IpRules,
                value: (self.ip_rules.len() + 1).to_string(),
            });
        }
        self.ip_rules.push(canonical);
        Ok(true)
    }

    /// Records a private endpoint connection's state at `now`, keeping its description
    /// unless a new one is given.
    pub fn set_connection(
        &mut self,
        name: &str,
        state: ConnectionState,
        description: Option<String>,
        now: i64,
    ) {
        let description = description
            .or_else(|| {
                self.private_endpoints
                    .get(name)
                    .map(|c| c.description.clone())
            })
            .unwrap_or_default();
        self.private_endpoints.insert(
            name.to_owned(),
            PrivateEndpointConnection {
                name: name.to_owned(),
                state,
                description,
                updated_at: now,
            },
        );
    }

    /// Removes an address or range; an error when there is no such rule.
    pub fn remove_rule(&mut self, rule: &str) -> Result<(), IdentityError> {
        let canonical = parse_ip_rule(rule)?.to_string();
        let before = self.ip_rules.len();
        self.ip_rules.retain(|r| *r != canonical);
        if self.ip_rules.len() == before {
            return Err(IdentityError::NotFound {
                kind: "IP rule",
                name: canonical,
            });
        }
        Ok(())
    }
}

/// The compiled IP rules: one hash set per prefix length in use, so a check is at most 33
/// (IPv4) or 129 (IPv6) lookups, however many rules there are.
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    v4_lengths: Vec<u8>,
    v4: HashSet<(u8, u32)>,
    v6_lengths: Vec<u8>,
    v6: HashSet<(u8, u128)>,
}

fn mask32(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask128(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len)))
    }
}

impl IpRules {
    /// Compiles canonical rules (as kept in [`NetworkSettings::ip_rules`]).
    pub fn compile(rules: &[String]) -> Self {
        let mut compiled = IpRules::default();
        for net in rules.iter().filter_map(|r| parse_ip_rule(r).ok()) {
            match net {
                IpNet::V4(n) => {
                    compiled.v4.insert((n.prefix_len(), u32::from(n.network())));
                    compiled.v4_lengths.push(n.prefix_len());
                }
                IpNet::V6(n) => {
                    compiled
                        .v6
                        .insert((n.prefix_len(), u128::from(n.network())));
                    compiled.v6_lengths.push(n.prefix_len());
                }
            }
        }
        for lengths in [&mut compiled.v4_lengths, &mut compiled.v6_lengths] {
            lengths.sort_unstable();
            lengths.dedup();
        }
        compiled
    }

    /// Whether `addr` is inside a rule (IPv4-mapped IPv6 addresses are taken as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4_lengths
                    .iter()
                    .any(|&len| self.v4.contains(&(len, mask32(bits, len))))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6_lengths
                    .iter()
                    .any(|&len| self.v6.contains(&(len, mask128(bits, len))))
            }
        }
    }
}

/// What a listener needs to decide on a request: the settings and their compiled rules.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// The settings.
    pub settings: NetworkSettings,
    rules: IpRules,
}

/// Why the public listener refuses a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Public network access is off.
    PublicNetworkDisabled,
    /// The default action is Deny and no rule holds the client.
    NotAllowed(IpAddr),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PublicNetworkDisabled => f.write_str(
                "public network access to this registry is disabled (setting `public_network_enabled`); use a private endpoint",
            ),
            Refusal::NotAllowed(addr) => write!(
                f,
                "client address {} is not allowed by this registry's network rules (default action Deny)",
                addr.to_canonical()
            ),
        }
    }
}

impl NetworkPolicy {
    /// Compiles settings.
    pub fn new(settings: NetworkSettings) -> Self {
        NetworkPolicy {
            rules: IpRules::compile(&settings.ip_rules),
            settings,
        }
    }

    /// Whether the public listener serves a client at `addr`.
    pub fn admit_public(&self, addr: IpAddr) -> Result<(), Refusal> {
        if !self.settings.public_network_enabled {
            return Err(Refusal::PublicNetworkDisabled);
        }
        match self.settings.default_action {
            DefaultAction::Allow => Ok(()),
            DefaultAction::Deny if self.rules.contains(addr) => Ok(()),
            DefaultAction::Deny => Err(Refusal::NotAllowed(addr)),
        }
    }

    /// A private endpoint's state; one never decided on counts as `Pending`.
    pub fn private_endpoint_state(&self, name: &str) -> ConnectionState {
        self.settings
            .private_endpoints
            .get(name)
            .map_or(ConnectionState::Pending, |c| c.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rules_parse_to_canonical_forms() {
        let canonical = |s: &str| parse_ip_rule(s).unwrap().to_string();
        assert_eq!(canonical("203.0.113.7"), "203.0.113.7/32");
        assert_eq!(canonical(" 10.0.0.0/8 "), "10.0.0.0/8");
        assert_eq!(canonical("2001:db8::/32"), "2001:db8::/32");
        assert_eq!(canonical("::1"), "::1/128");
        assert_eq!(canonical("::ffff:192.0.2.0/120"), "192.0.2.0/24");
        assert_eq!(canonical("0.0.0.0/0"), "0.0.0.0/0");
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "host.example", "", "1.2.3"] {
            let err = parse_ip_rule(bad).unwrap_err().to_string();
            assert!(err.contains("is invalid"), "{bad}: {err}");
        }
        assert!(
            parse_ip_rule("10.0.0.1/8")
                .unwrap_err()
                .to_string()
                .contains("10.0.0.0/8")
        );
    }

    #[test]
    fn matching_covers_ranges_hosts_and_mapped_addresses() {
        let mut settings = NetworkSettings {
            default_action: DefaultAction::Deny,
            ..NetworkSettings::default()
        };
        for rule in ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"] {
            assert!(settings.add_rule(rule).unwrap());
        }
        assert!(!settings.add_rule("10.0.0.0/8").unwrap(), "duplicate");
        let policy = NetworkPolicy::new(settings);
        for allowed in [
            "10.1.2.3",
            "10.255.255.255",
            "192.0.2.7",
            "::ffff:10.9.9.9",
            "2001:db8:1::5",
            "::1",
        ] {
            assert_eq!(policy.admit_public(ip(allowed)), Ok(()), "{allowed}");
        }
        for refused in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "::2", "127.0.0.1"] {
            assert_eq!(
                policy.admit_public(ip(refused)),
                Err(Refusal::NotAllowed(ip(refused))),
                "{refused}"
            );
        }
    }

    #[test]
    fn zero_length_prefixes_match_everything_of_their_family() {
        let policy = NetworkPolicy::new(NetworkSettings {
            default_action: DefaultAction::Deny,
            ip_rules: vec!["0.0.0.0/0".into()],
            ..NetworkSettings::default()
        });
        assert!(policy.admit_public(ip("198.51.100.1")).is_ok());
        assert!(policy.admit_public(ip("2001:db8::1")).is_err());
    }

    #[test]
    fn thousand_rules_match_like_a_linear_scan() {
        let mut settings = NetworkSettings {
            default_action: DefaultAction::Deny,
            ..NetworkSettings::default()
        };
        for i in 0..MAX_IP_RULES {
            let rule = match i % 3 {
                0 => format!("10.{}.{}.0/24", i / 256, i % 256),
                1 => format!("172.16.{}.{}", i / 256, i % 256),
                _ => format!("2001:db8:{i:x}::/48"),
            };
            settings.add_rule(&rule).unwrap();
        }
        assert!(
            settings.add_rule("198.51.100.0/24").is_err(),
            "over the limit"
        );
        let nets: Vec<IpNet> = settings
            .ip_rules
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let policy = NetworkPolicy::new(settings);
        for probe in [
            "10.0.3.9",
            "10.1.1.1",
            "10.3.231.4",
            "172.16.0.1",
            "172.16.0.2",
            "172.16.3.232",
            "2001:db8:2::1",
            "2001:db8:3::1",
            "2001:db8:3e5::9",
            "8.8.8.8",
        ] {
            let addr = ip(probe);
            let linear = nets.iter().any(|n| n.contains(&addr));
            assert_eq!(policy.admit_public(addr).is_ok(), linear, "{probe}");
        }
    }

    #[test]
    fn public_switch_wins_over_rules() {
        let policy = NetworkPolicy::new(NetworkSettings {
            public_network_enabled: false,
            ..NetworkSettings::default()
        });
        let refusal = policy.admit_public(ip("127.0.0.1")).unwrap_err();
        assert_eq!(refusal, Refusal::PublicNetworkDisabled);
        assert!(refusal.to_string().contains("public_network_enabled"));
    }

    #[test]
    fn removing_a_missing_rule_is_an_error() {
        let mut settings = NetworkSettings::default();
        settings.add_rule("10.0.0.0/8").unwrap();
        assert!(settings.remove_rule("10.0.0.0/16").is_err());
        settings.remove_rule("10.0.0.0/8").unwrap();
        assert!(settings.ip_rules.is_empty());
    }
}
