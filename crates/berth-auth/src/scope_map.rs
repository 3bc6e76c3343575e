//! Scope maps: named lists of repository and gateway actions.
//!
//! A repository rule names a repository, a prefix wildcard (`prod/*`: every repository
//! under `prod/`, at any depth) or `*` (every repository). Every matching rule adds its
//! actions: rules are a union. Rules may name repositories that do not exist yet.
//!
//! A rule holds its actions parsed: a request's action names are parsed where the request
//! arrives ([`RepositoryRule::parse`], [`GatewayRule::parse`]); stored maps and
//! configuration documents carry them by name.

use std::collections::BTreeSet;
use std::fmt;

use berth_oci::RepositoryName;
use serde::{Deserialize, Deserializer, Serialize};

use crate::action::{Actions, GatewayAction, RepositoryAction};
use crate::error::{Choice, Format, IdentityError, NameKind, RequestProblem, Setting};

/// Which repositories a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepositoryPattern {
    /// `*`: every repository.
    All,
    /// `prefix/*`: every repository whose name starts with `prefix/`. Holds `prefix/`.
    Prefix(String),
    /// One repository.
    Exact(String),
}

impl RepositoryPattern {
    /// Parses a rule's repository: a name, `prefix/*`, or `*`.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let invalid = |why: &str| IdentityError::Malformed {
            value: s.to_owned(),
            format: Format::RepositoryPattern {
                why: why.to_owned(),
            },
        };
        if s == "*" {
            return Ok(RepositoryPattern::All);
        }
        if s.contains('*') {
            let Some(prefix) = s.strip_suffix("/*") else {
                return Err(invalid(
                    "a wildcard must be `*` or end in `/*`, as in `prod/*`",
                ));
            };
            if prefix.contains('*') {
                return Err(invalid("a wildcard holds exactly one `*`, at the end"));
            }
            RepositoryName::parse(prefix, berth_oci::name::DEFAULT_MAX_NAME_LENGTH)
                .map_err(|e| invalid(&e.to_string()))?;
            return Ok(RepositoryPattern::Prefix(format!("{prefix}/")));
        }
        RepositoryName::parse(s, berth_oci::name::DEFAULT_MAX_NAME_LENGTH)
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(RepositoryPattern::Exact(s.to_owned()))
    }

    /// Whether the pattern covers `repository`.
    pub fn matches(&self, repository: &str) -> bool {
        match self {
            RepositoryPattern::All => true,
            RepositoryPattern::Prefix(prefix) => repository.starts_with(prefix.as_str()),
            RepositoryPattern::Exact(name) => name == repository,
        }
    }
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepositoryPattern::All => f.write_str("*"),
            RepositoryPattern::Prefix(prefix) => write!(f, "{prefix}*"),
            RepositoryPattern::Exact(name) => f.write_str(name),
        }
    }
}

/// Repository actions granted on a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRule {
    /// `name`, `prefix/*` or `*`.
    pub repository: String,
    /// The actions, written by name (`content/read`).
    #[serde(deserialize_with = "known_actions")]
    pub actions: BTreeSet<RepositoryAction>,
}

impl RepositoryRule {
    /// A rule as a request gives it: each action by name, every name known. The pattern
    /// is checked with the whole scope map ([`ScopeMap::set_rules`]).
    pub fn parse(repository: String, actions: &[String]) -> Result<Self, IdentityError> {
        Ok(RepositoryRule {
            repository,
            actions: parse_actions(actions, Choice::RepositoryAction)?,
        })
    }
}

/// Gateway actions granted on a connected registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRule {
    /// The connected registry's name.
    pub connected_registry: String,
    /// The actions, written by name (`config/read`).
    #[serde(deserialize_with = "known_actions")]
    pub actions: BTreeSet<GatewayAction>,
}

impl GatewayRule {
    /// A rule as a request gives it: each action by name, every name known.
    pub fn parse(connected_registry: String, actions: &[String]) -> Result<Self, IdentityError> {
        Ok(GatewayRule {
            connected_registry,
            actions: parse_actions(actions, Choice::GatewayAction)?,
        })
    }
}

/// An action a rule grants, known by its name.
trait NamedAction: Sized + Ord {
    fn by_name(name: &str) -> Option<Self>;
}

impl NamedAction for RepositoryAction {
    fn by_name(name: &str) -> Option<Self> {
        RepositoryAction::parse(name)
    }
}

impl NamedAction for GatewayAction {
    fn by_name(name: &str) -> Option<Self> {
        GatewayAction::parse(name)
    }
}

/// A request's action names, every one known.
fn parse_actions<A: NamedAction>(
    names: &[String],
    setting: Choice,
) -> Result<BTreeSet<A>, IdentityError> {
    names
        .iter()
        .map(|name| {
            A::by_name(name).ok_or_else(|| IdentityError::UnknownChoice {
                setting,
                value: name.clone(),
            })
        })
        .collect()
}

/// A stored or received rule's actions. A name this version does not know (in a document
/// from a newer root) grants nothing here rather than refusing the whole map, as checks
/// always treated it.
fn known_actions<'de, D: Deserializer<'de>, A: NamedAction>(
    deserializer: D,
) -> Result<BTreeSet<A>, D::Error> {
    let names = Vec::<String>::deserialize(deserializer)?;
    Ok(names.iter().filter_map(|name| A::by_name(name)).collect())
}

/// A scope map as stored and exchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeMap {
    /// 5-50 letters, digits, `-` and `_`.
    pub name: String,
    /// Up to 256 characters.
    #[serde(default)]
    pub description: String,
    /// Repository rules, one per pattern, actions sorted.
    #[serde(default)]
    pub repositories: Vec<RepositoryRule>,
    /// Gateway rules, one per connected registry, actions sorted.
    #[serde(default)]
    pub gateways: Vec<GatewayRule>,
    /// Built-in scope maps are read-only.
    #[serde(default)]
    pub built_in: bool,
    /// Creation time, Unix seconds.
    #[serde(default)]
    pub created_at: i64,
}

/// A scope map ready for fast checks: patterns parsed, actions as bit sets.
#[derive(Debug, Clone)]
pub struct CompiledScopeMap {
    repositories: Vec<(RepositoryPattern, Actions)>,
    gateways: Vec<(String, BTreeSet<GatewayAction>)>,
}

impl CompiledScopeMap {
    /// The union of the actions of every rule that covers `repository`.
    pub fn repository_actions(&self, repository: &str) -> Actions {
        self.repositories
            .iter()
            .filter(|(pattern, _)| pattern.matches(repository))
            .fold(Actions::NONE, |set, (_, actions)| set.union(*actions))
    }

    /// Whether some rule could grant `action` on some repository (for the catalog: the
    /// caller may list only what it may read).
    pub fn gateway_actions(&self, connected_registry: &str) -> BTreeSet<GatewayAction> {
        self.gateways
            .iter()
            .filter(|(name, _)| name == connected_registry)
            .flat_map(|(_, actions)| actions.iter().copied())
            .collect()
    }
}

/// Validates a scope map name: 5-50 letters, digits, `-` and `_`.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let ok = (5..=50).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidName {
            kind: NameKind::ScopeMap,
            name: name.to_owned(),
        })
    }
}

impl ScopeMap {
    /// Builds a user scope map from rules, validating and normalising them: one rule per
    /// pattern (actions merged, sorted), every action known, name and description in range.
    pub fn new(
        name: &str,
        description: &str,
        repositories: &[RepositoryRule],
        gateways: &[GatewayRule],
    ) -> Result<ScopeMap, IdentityError> {
        validate_name(name)?;
        let length = description.chars().count();
        if length > 256 {
            return Err(IdentityError::SettingOutOfRange {
                setting: Setting::ScopeMapDescription,
                value: length.to_string(),
            });
        }
        let mut map = ScopeMap {
            name: name.to_owned(),
            description: description.to_owned(),
            repositories: Vec::new(),
            gateways: Vec::new(),
            built_in: false,
            created_at: 0,
        };
        map.set_rules(repositories, gateways)?;
        Ok(map)
    }

    /// Replaces the rules with a validated, normalised version of `repositories` and `gateways`.
    pub fn set_rules(
        &mut self,
        repositories: &[RepositoryRule],
        gateways: &[GatewayRule],
    ) -> Result<(), IdentityError> {
        let mut merged: std::collections::BTreeMap<String, BTreeSet<RepositoryAction>> =
            Default::default();
        for rule in repositories {
            RepositoryPattern::parse(&rule.repository)?;
            if rule.actions.is_empty() {
                return Err(RequestProblem::RepositoryRuleWithoutAction {
                    repository: rule.repository.clone(),
                }
                .into());
            }
            merged
                .entry(rule.repository.clone())
                .or_default()
                .extend(&rule.actions);
        }
        let mut gateway_merged: std::collections::BTreeMap<String, BTreeSet<GatewayAction>> =
            Default::default();
        for rule in gateways {
            if rule.connected_registry.is_empty() {
                return Err(RequestProblem::GatewayRuleWithoutRegistry.into());
            }
            if rule.actions.is_empty() {
                return Err(RequestProblem::GatewayRuleWithoutAction {
                    connected_registry: rule.connected_registry.clone(),
                }
                .into());
            }
            gateway_merged
                .entry(rule.connected_registry.clone())
                .or_default()
                .extend(&rule.actions);
        }
        self.repositories = merged
            .into_iter()
            .map(|(repository, actions)| RepositoryRule {
                repository,
                actions,
            })
            .collect();
        self.gateways = gateway_merged
            .into_iter()
            .map(|(connected_registry, actions)| GatewayRule {
                connected_registry,
                actions,
            })
            .collect();
        Ok(())
    }

    /// The rules as parsed bit sets, for checks on the request path.
    pub fn compile(&self) -> CompiledScopeMap {
        CompiledScopeMap {
            repositories: self
                .repositories
                .iter()
                .filter_map(|rule| {
                    let pattern = RepositoryPattern::parse(&rule.repository).ok()?;
                    let actions = rule
                        .actions
                        .iter()
                        .copied()
                        .fold(Actions::NONE, Actions::with);
                    Some((pattern, actions))
                })
                .collect(),
            gateways: self
                .gateways
                .iter()
                .map(|rule| (rule.connected_registry.clone(), rule.actions.clone()))
                .collect(),
        }
    }

    /// Every action as one string, `repositories/<repo>/<action>` or `gateway/<name>/<action>`.
    pub fn action_strings(&self) -> Vec<String> {
        let repos = self.repositories.iter().flat_map(|r| {
            r.actions
                .iter()
                .map(move |a| format!("repositories/{}/{a}", r.repository))
        });
        let gateways = self.gateways.iter().flat_map(|g| {
            g.actions
                .iter()
                .map(move |a| format!("gateway/{}/{a}", g.connected_registry))
        });
        repos.chain(gateways).collect()
    }
}

/// The five built-in, read-only scope maps, all on every repository (`*`).
pub fn built_in_scope_maps() -> Vec<ScopeMap> {
    use RepositoryAction::*;
    let make = |name: &str, description: &str, actions: &[RepositoryAction]| ScopeMap {
        name: name.to_owned(),
        description: description.to_owned(),
        repositories: vec![RepositoryRule {
            repository: "*".into(),
            actions: actions.iter().copied().collect(),
        }],
        gateways: Vec::new(),
        built_in: true,
        created_at: 0,
    };
    vec![
        make(
            "_repositories_admin",
            "Can perform all read, write and delete operations on the registry",
            &RepositoryAction::ALL,
        ),
        make(
            "_repositories_pull",
            "Can pull any repository of the registry",
            &[ContentRead],
        ),
        make(
            "_repositories_pull_metadata_read",
            "Can perform all read operations on the registry",
            &[ContentRead, MetadataRead],
        ),
        make(
            "_repositories_push",
            "Can push to any repository of the registry",
            &[ContentRead, ContentWrite],
        ),
        make(
            "_repositories_push_metadata_write",
            "Can perform all read and write operations on the registry",
            &[ContentRead, ContentWrite, MetadataRead, MetadataWrite],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repository: &str, actions: &[&str]) -> RepositoryRule {
        let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        RepositoryRule::parse(repository.into(), &actions).unwrap()
    }

    #[test]
    fn wildcards() {
        assert_eq!(
            RepositoryPattern::parse("*").unwrap(),
            RepositoryPattern::All
        );
        assert_eq!(
            RepositoryPattern::parse("prod/*").unwrap(),
            RepositoryPattern::Prefix("prod/".into())
        );
        assert_eq!(
            RepositoryPattern::parse("a/b/*").unwrap(),
            RepositoryPattern::Prefix("a/b/".into())
        );
        for bad in [
            "prod*", "*/x", "a/*/b", "a/**", "a/*/*", "Prod/*", "/*", "a//*", "", "a b",
        ] {
            assert!(RepositoryPattern::parse(bad).is_err(), "{bad:?}");
        }
        let p = RepositoryPattern::parse("prod/*").unwrap();
        assert!(p.matches("prod/a") && p.matches("prod/a/b"));
        assert!(!p.matches("prod") && !p.matches("production/a"));
    }

    #[test]
    fn rules_add_up() {
        let map = ScopeMap::new(
            "mixed",
            "",
            &[
                rule("*", &["content/read"]),
                rule("team/*", &["content/write"]),
                rule("team/app", &["content/delete"]),
                rule("team/*", &["metadata/read"]),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            map.repositories.len(),
            3,
            "rules with the same pattern merge"
        );
        let compiled = map.compile();
        use RepositoryAction::*;
        assert_eq!(
            compiled.repository_actions("other"),
            Actions::of(&[ContentRead])
        );
        assert_eq!(
            compiled.repository_actions("team/x"),
            Actions::of(&[ContentRead, ContentWrite, MetadataRead])
        );
        assert_eq!(
            compiled.repository_actions("team/app"),
            Actions::of(&[ContentRead, ContentWrite, ContentDelete, MetadataRead])
        );
    }

    #[test]
    fn validation_messages() {
        assert!(
            ScopeMap::new("abc", "", &[], &[])
                .unwrap_err()
                .to_string()
                .contains("5 to 50")
        );
        assert!(ScopeMap::new(&"a".repeat(51), "", &[], &[]).is_err());
        assert!(ScopeMap::new("has space", "", &[], &[]).is_err());
        let e = RepositoryRule::parse("x".into(), &["content/raed".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown repository action `content/raed`"),
            "{e}"
        );
        assert!(ScopeMap::new("valid", &"d".repeat(257), &[], &[]).is_err());
        let gateways = [GatewayRule::parse(
            "factory".into(),
            &["config/read".into(), "message/write".into()],
        )
        .unwrap()];
        let map = ScopeMap::new("valid", "", &[rule("x", &["content/read"])], &gateways).unwrap();
        assert_eq!(
            map.action_strings(),
            [
                "repositories/x/content/read",
                "gateway/factory/config/read",
                "gateway/factory/message/write"
            ]
        );
    }

    /// Rules hold their actions parsed, and are stored and sent as they always were: each
    /// action by name. A name a newer registry wrote and this one does not know grants
    /// nothing, and the rest of the map still reads.
    #[test]
    fn rules_are_written_by_name() {
        let map = ScopeMap::new(
            "valid",
            "",
            &[rule(
                "x",
                &["metadata/read", "content/read", "content/read"],
            )],
            &[GatewayRule::parse("factory".into(), &["config/read".into()]).unwrap()],
        )
        .unwrap();
        let value = serde_json::to_value(&map).unwrap();
        assert_eq!(
            value["repositories"],
            serde_json::json!([{"repository": "x", "actions": ["content/read", "metadata/read"]}])
        );
        assert_eq!(
            value["gateways"],
            serde_json::json!([{"connected_registry": "factory", "actions": ["config/read"]}])
        );
        assert_eq!(serde_json::from_value::<ScopeMap>(value).unwrap(), map);
        let newer: RepositoryRule = serde_json::from_value(
            serde_json::json!({"repository": "x", "actions": ["content/read", "content/sign"]}),
        )
        .unwrap();
        assert_eq!(newer.actions, [RepositoryAction::ContentRead].into());
    }

    #[test]
    fn built_ins() {
        let maps = built_in_scope_maps();
        assert_eq!(maps.len(), 5);
        let admin = maps
            .iter()
            .find(|m| m.name == "_repositories_admin")
            .unwrap()
            .compile();
        assert_eq!(admin.repository_actions("anything/at/all"), Actions::ALL);
        let pull = maps
            .iter()
            .find(|m| m.name == "_repositories_pull")
            .unwrap()
            .compile();
        assert_eq!(
            pull.repository_actions("x"),
            Actions::of(&[RepositoryAction::ContentRead])
        );
    }
}
