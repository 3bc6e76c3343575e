//! The change log's vocabulary: [`Change`], one entry, typed, and [`ChangePage`], a page of
//! entries as the gateway's `messages` endpoint serves it to connected registries.
//!
//! A change is parsed once, where it is read (a database row, or a parent's `messages`
//! answer): its repository, digest and tag are `berth-oci`'s validated types, and its
//! [`ChangeEvent`] carries exactly the fields its action has. So a follower never re-parses
//! strings and never meets an entry it must skip; an entry that does not parse is an error,
//! reported with its sequence number.
//!
//! On the wire a change keeps its flat JSON form (`seq`, `repository`, `action`, `digest`,
//! `tag`, `media_type`, `at`, `origin`; absent fields `null`), which is also how the
//! database stores it, so registries of the tree keep understanding each other.

use berth_oci::{Digest, RepositoryName, Tag};
use serde::{Deserialize, Serialize};

/// Where a content change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A client of this registry.
    #[default]
    Local,
    /// Content sync from this registry's parent.
    Parent,
}

impl Origin {
    /// The origin as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Local => "local",
            Origin::Parent => "parent",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "local" => Some(Origin::Local),
            "parent" => Some(Origin::Parent),
            _ => None,
        }
    }
}

/// The kinds of content change, as stored and sent (`action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// A manifest was stored.
    ManifestPut,
    /// A manifest was deleted.
    ManifestDelete,
    /// A tag was created or moved.
    TagPut,
    /// A tag was deleted.
    TagDelete,
    /// A repository, emptied by the deletions before it in the log, was removed.
    RepositoryDelete,
}

impl ChangeAction {
    /// The action as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::ManifestPut => "manifest_put",
            ChangeAction::ManifestDelete => "manifest_delete",
            ChangeAction::TagPut => "tag_put",
            ChangeAction::TagDelete => "tag_delete",
            ChangeAction::RepositoryDelete => "repository_delete",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "manifest_put" => ChangeAction::ManifestPut,
            "manifest_delete" => ChangeAction::ManifestDelete,
            "tag_put" => ChangeAction::TagPut,
            "tag_delete" => ChangeAction::TagDelete,
            "repository_delete" => ChangeAction::RepositoryDelete,
            _ => return None,
        })
    }
}

/// What happened, with exactly the fields each action has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A manifest was stored.
    ManifestPut {
        /// The manifest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// A tag was created or moved to a manifest.
    TagPut {
        /// The tag.
        tag: Tag,
        /// The manifest it now names.
        digest: Digest,
        /// That manifest's media type.
        media_type: String,
    },
    /// A tag was deleted (alone, or with its manifest).
    TagDelete {
        /// The tag.
        tag: Tag,
        /// The manifest it named.
        digest: Digest,
    },
    /// A manifest was deleted (its tags' deletions come just before it in the log).
    ManifestDelete {
        /// The manifest.
        digest: Digest,
    },
    /// The repository was removed, name and blob links, once empty: its manifests'
    /// deletions come before it in the log. A follower removes its copy if nothing of its own
    /// is left in it.
    RepositoryDelete,
}

impl ChangeEvent {
    /// The kind of change.
    pub fn action(&self) -> ChangeAction {
        match self {
            ChangeEvent::ManifestPut { .. } => ChangeAction::ManifestPut,
            ChangeEvent::TagPut { .. } => ChangeAction::TagPut,
            ChangeEvent::TagDelete { .. } => ChangeAction::TagDelete,
            ChangeEvent::ManifestDelete { .. } => ChangeAction::ManifestDelete,
            ChangeEvent::RepositoryDelete => ChangeAction::RepositoryDelete,
        }
    }

    /// The manifest concerned: every change but a repository's removal concerns one.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            ChangeEvent::ManifestPut { digest, .. }
            | ChangeEvent::TagPut { digest, .. }
            | ChangeEvent::TagDelete { digest, .. }
            | ChangeEvent::ManifestDelete { digest } => Some(digest),
            ChangeEvent::RepositoryDelete => None,
        }
    }

    /// The tag concerned, for tag changes.
    pub fn tag(&self) -> Option<&Tag> {
        match self {
            ChangeEvent::TagPut { tag, .. } | ChangeEvent::TagDelete { tag, .. } => Some(tag),
            ChangeEvent::ManifestPut { .. }
            | ChangeEvent::ManifestDelete { .. }
            | ChangeEvent::RepositoryDelete => None,
        }
    }

    /// The manifest's media type, for pushes.
    pub fn media_type(&self) -> Option<&str> {
        match self {
            ChangeEvent::ManifestPut { media_type, .. }
            | ChangeEvent::TagPut { media_type, .. } => Some(media_type),
            ChangeEvent::TagDelete { .. }
            | ChangeEvent::ManifestDelete { .. }
            | ChangeEvent::RepositoryDelete => None,
        }
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FlatChange", try_from = "FlatChange")]
pub struct Change {
    /// Strictly increasing position in the log.
    pub seq: i64,
    /// The repository changed.
    pub repository: RepositoryName,
    /// What happened.
    pub event: ChangeEvent,
    /// When, in Unix seconds.
    pub at: i64,
    /// Where the change came from.
    pub origin: Origin,
}

/// A change log entry that does not parse: a corrupt row, or a parent that sent nonsense.
#[derive(Debug, thiserror::Error)]
#[error("change log entry {seq} is unreadable: {reason}")]
pub struct ChangeError {
    /// The entry's sequence number.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// A change as stored in a row and sent on the wire: flat, with optional fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FlatChange {
    pub seq: i64,
    pub repository: String,
    pub action: ChangeAction,
    pub digest: Option<String>,
    pub tag: Option<String>,
    pub media_type: Option<String>,
    pub at: i64,
    #[serde(default)]
    pub origin: Origin,
}

impl From<Change> for FlatChange {
    fn from(c: Change) -> Self {
        FlatChange {
            seq: c.seq,
            repository: c.repository.as_str().to_owned(),
            action: c.event.action(),
            digest: c.event.digest().map(Digest::to_string),
            tag: c.event.tag().map(|t| t.as_str().to_owned()),
            media_type: c.event.media_type().map(str::to_owned),
            at: c.at,
            origin: c.origin,
        }
    }
}

impl TryFrom<FlatChange> for Change {
    type Error = ChangeError;

    fn try_from(f: FlatChange) -> Result<Self, ChangeError> {
        let seq = f.seq;
        let fail = |reason: String| ChangeError { seq, reason };
        // The length limit is each registry's own (checked when the name was pushed, and by
        // whoever applies the change): only the grammar is the log's concern.
        let repository =
            RepositoryName::parse(&f.repository, usize::MAX).map_err(|e| fail(e.to_string()))?;
        let digest = || match f.digest.as_deref() {
            Some(d) => d
                .parse::<Digest>()
                .map_err(|e| fail(format!("digest: {e}"))),
            None => Err(fail(format!("`{}` without a digest", f.action.as_str()))),
        };
        let tag = || match f.tag.as_deref() {
            Some(t) => Tag::parse(t).map_err(|e| fail(e.to_string())),
            None => Err(fail(format!("`{}` without a tag", f.action.as_str()))),
        };
        let media_type = || {
            f.media_type
                .clone()
                .ok_or_else(|| fail(format!("`{}` without a media type", f.action.as_str())))
        };
        let event = match f.action {
            ChangeAction::ManifestPut => ChangeEvent::ManifestPut {
                digest: digest()?,
                media_type: media_type()?,
            },
            ChangeAction::TagPut => ChangeEvent::TagPut {
                tag: tag()?,
                digest: digest()?,
                media_type: media_type()?,
            },
            ChangeAction::TagDelete => ChangeEvent::TagDelete {
                tag: tag()?,
                digest: digest()?,
            },
            ChangeAction::ManifestDelete => ChangeEvent::ManifestDelete { digest: digest()? },
            ChangeAction::RepositoryDelete => ChangeEvent::RepositoryDelete,
        };
        Ok(Change {
            seq,
            repository,
            event,
            at: f.at,
            origin: f.origin,
        })
    }
}

/// A page of the change log: the body of the gateway's
/// `GET /berth/gateway/v1/<name>/messages?after=<seq>&wait=<s>` (the `Messages` of the
/// protocol), served by every registry and read by its connected registries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePage {
    /// The changes the caller may see, in order.
    pub events: Vec<Change>,
    /// The last sequence number examined (including changes filtered out): the next `after`.
    pub last: i64,
    /// The changes after `after` are no longer all in the log (older than its retention): the
    /// caller must catch up by comparing content, then continue from `last`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn the_wire_form_is_the_flat_one() {
        let change = Change {
            seq: 7,
            repository: RepositoryName::parse("a/b", 255).unwrap(),
            event: ChangeEvent::TagPut {
                tag: Tag::parse("v1").unwrap(),
                digest: DIGEST.parse().unwrap(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            },
            at: 100,
            origin: Origin::Parent,
        };
        let json = serde_json::to_value(&change).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "seq": 7, "repository": "a/b", "action": "tag_put", "digest": DIGEST,
                "tag": "v1", "media_type": "application/vnd.oci.image.manifest.v1+json",
                "at": 100, "origin": "parent",
            })
        );
        let back: Change = serde_json::from_value(json).unwrap();
        assert_eq!(back, change);

        let delete = serde_json::json!({
            "seq": 8, "repository": "a", "action": "manifest_delete", "digest": DIGEST,
            "tag": null, "media_type": null, "at": 101,
        });
        let parsed: Change = serde_json::from_value(delete.clone()).unwrap();
        assert_eq!(parsed.origin, Origin::Local, "origin defaults to local");
        let mut again = serde_json::to_value(&parsed).unwrap();
        again.as_object_mut().unwrap().remove("origin");
        assert_eq!(again, delete);

        // A repository's removal names no manifest.
        let removal = serde_json::json!({
            "seq": 9, "repository": "a", "action": "repository_delete", "digest": null,
            "tag": null, "media_type": null, "at": 102, "origin": "local",
        });
        let parsed: Change = serde_json::from_value(removal.clone()).unwrap();
        assert_eq!(parsed.event, ChangeEvent::RepositoryDelete);
        assert_eq!(parsed.event.digest(), None);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), removal);
    }

    #[test]
    fn an_incomplete_or_invalid_entry_is_an_error() {
        for (bad, why) in [
            (
                serde_json::json!({"seq": 1, "repository": "a", "action": "tag_put", "digest": DIGEST, "media_type": "m", "at": 0}),
                "without a tag",
            ),
            (
                serde_json::json!({"seq": 1, "repository": "a", "action": "manifest_put", "at": 0, "media_type": "m"}),
                "without a digest",
            ),
            (
                serde_json::json!({"seq": 1, "repository": "A", "action": "manifest_delete", "digest": DIGEST, "at": 0}),
                "invalid",
            ),
            (
                serde_json::json!({"seq": 1, "repository": "a", "action": "tag_delete", "digest": DIGEST, "tag": "-x", "at": 0}),
                "invalid",
            ),
        ] {
            let err = serde_json::from_value::<Change>(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
            assert!(err.to_string().contains("entry 1"), "{err}");
        }
    }

    #[test]
    fn a_page_omits_expired_unless_set() {
        let page = ChangePage {
            events: vec![],
            last: 3,
            expired: false,
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"events":[],"last":3}"#
        );
        let read: ChangePage = serde_json::from_str(r#"{"events":[],"last":3}"#).unwrap();
        assert_eq!(read, page);
    }
}
