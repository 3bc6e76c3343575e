//! Which events a webhook or a connected registry's notification patterns select.
//!
//! Both use `*` as a wildcard matching any run of characters (`/` included), anywhere in a
//! part. A webhook's scope is `repository[:tag]`, as the commercial registry's: `app:*` is
//! every tag of `app`, `app:v1` only that tag, `app` alone means `app:latest`. A tag part of
//! `*` also matches events that name no tag (a manifest pushed or deleted by digest).
//! A notification pattern is `repository[:tag][@digest]:push|delete|*`; a part left out
//! matches anything.

use berth_auth::IdentityError;
use berth_auth::error::Format;
use berth_auth::webhook::WebhookAction;

/// `*` matches any run of characters, every other character itself.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Iterative glob with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A webhook's scope: `repository[:tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    repository: String,
    tag: String,
}

impl Scope {
    /// Parses and checks a scope.
    pub fn parse(scope: &str) -> Result<Self, IdentityError> {
        let invalid = |why: &'static str| IdentityError::Malformed {
            value: scope.to_owned(),
            format: Format::WebhookScope { why },
        };
        let (repository, tag) = scope.split_once(':').unwrap_or((scope, "latest"));
        let ok = |s: &str, extra: &[u8]| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'*' || extra.contains(&b))
        };
        if !ok(repository, b"/._-") {
            return Err(invalid("bad repository part"));
        }
        if !ok(tag, b"._-") {
            return Err(invalid("bad tag part"));
        }
        Ok(Scope {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// Whether an event on `repository` (with `tag`, if it names one) is in scope.
    pub fn matches(&self, repository: &str, tag: Option<&str>) -> bool {
        wildcard(&self.repository, repository)
            && match tag {
                Some(tag) => wildcard(&self.tag, tag),
                None => self.tag == "*",
            }
    }
}

/// A connected registry's notification pattern: `repository[:tag][@digest]:action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPattern {
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    action: Option<WebhookAction>,
}

impl NotificationPattern {
    /// Parses a pattern (`berth_auth::connected::validate_notification` checked it when it
    /// was stored).
    pub fn parse(pattern: &str) -> Result<Self, IdentityError> {
        berth_auth::connected::validate_notification(pattern)?;
        let (target, action) = pattern.rsplit_once(':').expect("validated");
        let action = match action {
            "*" => None,
            other => Some(WebhookAction::parse(other)?),
        };
        let (rest, digest) = match target.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_owned())),
            None => (target, None),
        };
        let (repository, tag) = match rest.split_once(':') {
            Some((repository, tag)) => (repository, Some(tag.to_owned())),
            None => (rest, None),
        };
        Ok(NotificationPattern {
            repository: repository.to_owned(),
            tag,
            digest,
            action,
        })
    }

    /// Whether an event matches. A tag part other than `*` needs the event to name a
    /// matching tag.
    pub fn matches(
        &self,
        action: WebhookAction,
        repository: &str,
        tag: Option<&str>,
        digest: &str,
    ) -> bool {
        self.action.is_none_or(|a| a == action)
            && wildcard(&self.repository, repository)
            && self.tag.as_deref().is_none_or(|p| match tag {
                Some(tag) => wildcard(p, tag),
                None => p == "*",
            })
            && self.digest.as_deref().is_none_or(|p| wildcard(p, digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("*", "team/app"));
        assert!(wildcard("team/*", "team/app/x"));
        assert!(wildcard("a*c*e", "abcde"));
        assert!(wildcard("v1.*", "v1.2"));
        assert!(!wildcard("v1.*", "v2.1"));
        assert!(!wildcard("app", "app2"));
        assert!(!wildcard("a*c", "abcd"));
        assert!(wildcard("**", "x"));
    }

    #[test]
    fn scopes() {
        let all_tags = Scope::parse("app:*").unwrap();
        assert!(all_tags.matches("app", Some("v1")));
        assert!(all_tags.matches("app", None), "`*` takes untagged events");
        assert!(!all_tags.matches("app2", Some("v1")));
        let latest = Scope::parse("app").unwrap();
        assert!(latest.matches("app", Some("latest")));
        assert!(!latest.matches("app", Some("v1")));
        assert!(!latest.matches("app", None));
        let team = Scope::parse("team/*:v1*").unwrap();
        assert!(team.matches("team/a/b", Some("v1.2")));
        assert!(!team.matches("other/a", Some("v1")));
        for bad in ["", ":v1", "app:", "App Name:v1", "app:v1:x"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn notification_patterns() {
        let push = NotificationPattern::parse("hello-world:*:push").unwrap();
        assert!(push.matches(WebhookAction::Push, "hello-world", Some("v1"), "sha256:ab"));
        assert!(!push.matches(
            WebhookAction::Delete,
            "hello-world",
            Some("v1"),
            "sha256:ab"
        ));
        assert!(!push.matches(WebhookAction::Push, "other", Some("v1"), "sha256:ab"));
        let any = NotificationPattern::parse("*:*").unwrap();
        assert!(any.matches(WebhookAction::Delete, "x/y", None, "sha256:ab"));
        let tagged = NotificationPattern::parse("app:v1:delete").unwrap();
        assert!(tagged.matches(WebhookAction::Delete, "app", Some("v1"), "sha256:ab"));
        assert!(!tagged.matches(WebhookAction::Delete, "app", None, "sha256:ab"));
        let digest = NotificationPattern::parse("team/*@sha256:ab*:push").unwrap();
        assert!(digest.matches(WebhookAction::Push, "team/a", Some("v1"), "sha256:abcd"));
        assert!(!digest.matches(WebhookAction::Push, "team/a", None, "sha256:cd"));
        assert!(NotificationPattern::parse("app").is_err());
    }
}
