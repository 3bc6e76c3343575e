//! `/berth/v1/repositories…`: what each repository holds, page by page, and deletions.
//!
//! Repository names contain `/`, and axum cannot route a wildcard in the middle of a path,
//! so everything under `/berth/v1/repositories/` goes to one entry point and [`Target`]
//! reads the path from its end, as the distribution API's `route.rs` does: a trailing
//! `_tags[/<tag>]` or `_manifests[/<digest>]` names what is under the repository (ACR's
//! spelling). A name component never starts with `_`, so no repository name is ambiguous.
//!
//! Deletions are the registry's own operations, so each manifest and tag removed is in the
//! change log (connected registries follow it; on a ReadWrite connected registry it is a
//! local change, sent up like a client's `DELETE`). A ReadOnly connected registry refuses
//! them, as it refuses the distribution API's. Blob bytes stay until garbage collection.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use berth_api as api;
use berth_oci::{Digest, RepositoryName, Tag};
use berth_registry::{
    ManifestInfo, Origin, Registry, RegistryError, RepositorySummary, Selection, TagDetail,
};
use http::{Method, StatusCode};

use super::{Admin, time};
use crate::error::ApiError;
use crate::handlers::QueryParams;
use crate::state::AppState;

/// Entries in a page when the request does not say.
const DEFAULT_PAGE: u32 = 100;
/// The most entries in a page.
const MAX_PAGE: u32 = 1000;

/// `GET /berth/v1/repositories`.
pub(crate) fn list_route() -> MethodRouter<AppState> {
    get(list)
}

/// Everything under `/berth/v1/repositories/`, read by [`Target::parse`].
pub(crate) fn entry_route() -> MethodRouter<AppState> {
    get(entry).delete(entry)
}

/// What a path under `/berth/v1/repositories/` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'a> {
    /// `{name}`
    Repository(&'a str),
    /// `{name}/_tags`
    Tags(&'a str),
    /// `{name}/_tags/{tag}`
    Tag(&'a str, &'a str),
    /// `{name}/_manifests`
    Manifests(&'a str),
    /// `{name}/_manifests/{digest}`
    Manifest(&'a str, &'a str),
}

impl<'a> Target<'a> {
    /// Reads the path after `/berth/v1/repositories/`, from its end. Names are checked
    /// later, by the registry's grammar.
    fn parse(path: &'a str) -> Target<'a> {
        let split = |s: &'a str| s.rsplit_once('/').unwrap_or(("", s));
        let (head, last) = split(path);
        match (split(head), last) {
            (_, "_tags") if !head.is_empty() => Target::Tags(head),
            (_, "_manifests") if !head.is_empty() => Target::Manifests(head),
            ((name, "_tags"), tag) if !name.is_empty() => Target::Tag(name, tag),
            ((name, "_manifests"), digest) if !name.is_empty() => Target::Manifest(name, digest),
            _ => Target::Repository(path),
        }
    }
}

/// A registry failure as the management API reports it: its own codes (`INVALID`,
/// `NOT_FOUND`), so the CLI tells "no such repository" from "no management API here".
fn refusal(e: RegistryError) -> ApiError {
    let message = e.to_string();
    match e {
        RegistryError::NameInvalid(_)
        | RegistryError::TagInvalid(_)
        | RegistryError::DigestInvalid(_) => {
            ApiError::management(StatusCode::BAD_REQUEST, "INVALID", message)
        }
        RegistryError::NameUnknown(_) | RegistryError::ManifestUnknown(_) => {
            ApiError::management(StatusCode::NOT_FOUND, "NOT_FOUND", message)
        }
        other => other.into(),
    }
}

fn repository_name(state: &AppState, name: &str) -> Result<RepositoryName, ApiError> {
    state.registry.repository_name(name).map_err(refusal)
}

fn tag(name: &RepositoryName, tag: &str) -> Result<Tag, ApiError> {
    Tag::parse(tag).map_err(|e| {
        ApiError::management(
            StatusCode::BAD_REQUEST,
            "INVALID",
            format!("`{name}:{tag}`: {e}"),
        )
    })
}

fn digest(name: &RepositoryName, digest: &str) -> Result<Digest, ApiError> {
    Registry::digest(digest).map_err(|e| {
        ApiError::management(
            StatusCode::BAD_REQUEST,
            "INVALID",
            format!("`{name}@{digest}`: {e}; name a manifest by its digest (`sha256:…`)"),
        )
    })
}

/// Refuses a change on a ReadOnly connected registry, with the reason the distribution
/// API gives for its own `DELETE`s.
fn writable(state: &AppState) -> Result<(), ApiError> {
    let read_only = state
        .read_only
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match read_only {
        Some(why) => Err(ApiError::management(
            StatusCode::CONFLICT,
            "READ_ONLY",
            format!("{why}; delete at the parent instead, and the deletion reaches this mirror"),
        )),
        None => Ok(()),
    }
}

/// The page a request asks for: `n` (1 to 1000, 100 by default) entries after `last`, in
/// lexical order or, with `orderby`, by time.
struct Page {
    n: u32,
    /// `Some(newest_first)` with `orderby`.
    by_time: Option<bool>,
    last: Option<String>,
}

impl Page {
    fn parse(query: Option<&str>) -> Result<Page, ApiError> {
        let params = QueryParams::parse(query);
        let invalid =
            |message: String| ApiError::management(StatusCode::BAD_REQUEST, "INVALID", message);
        let n = match params.get("n") {
            None => DEFAULT_PAGE,
            Some(n) => n
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    invalid(format!("`n={n}` is not a page size; use 1 to {MAX_PAGE}"))
                })?,
        };
        let by_time = match params
            .get("orderby")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => None,
            Some("time_desc") => Some(true),
            Some("time_asc") => Some(false),
            Some(other) => {
                return Err(invalid(format!(
                    "`orderby={other}` is not an order; use time_desc or time_asc, or leave it out for lexical order"
                )));
            }
        };
        let page = Page {
            n,
            by_time,
            last: params.get("last").map(str::to_owned),
        };
        // A cursor by time is checked here, so a stale or hand-made one is a clear 400.
        if page.by_time.is_some() && page.last.is_some() && page.time_cursor().is_none() {
            return Err(invalid(format!(
                "`last={}` is not where a page by time ends; pass the `next` of the previous page as it is",
                page.last.as_deref().unwrap_or_default()
            )));
        }
        Ok(page)
    }

    /// `last` of a page by time: `<unix seconds>/<key>`.
    fn time_cursor(&self) -> Option<(i64, &str)> {
        let (at, key) = self.last.as_deref()?.split_once('/')?;
        Some((at.parse().ok()?, key))
    }

    /// What to read: one more than asked, whose arrival tells that a next page exists.
    fn selection(&self) -> Selection<'_> {
        let n = self.n + 1;
        match self.by_time {
            None => Selection::Page {
                last: self.last.as_deref(),
                n,
            },
            Some(newest_first) => Selection::ByTime {
                newest_first,
                last: self.time_cursor(),
                n,
            },
        }
    }

    /// Cuts `items` (read with [`Page::selection`]) to the page, and what to pass as `last`
    /// for the next one: the last entry's key, or by time its time and key.
    fn cut<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> (i64, String),
    ) -> (Vec<T>, Option<String>) {
        let more = items.len() > self.n as usize;
        items.truncate(self.n as usize);
        let next = items.last().filter(|_| more).map(|item| {
            let (at, key) = key(item);
            match self.by_time {
                Some(_) => format!("{at}/{key}"),
                None => key,
            }
        });
        (items, next)
    }
}

fn repository_view(r: RepositorySummary) -> api::RepositoryView {
    api::RepositoryView {
        name: r.name.to_string(),
        manifest_count: r.manifest_count,
        tag_count: r.tag_count,
        blob_count: r.blob_count,
        size: r.size,
        created_at: time(r.created_at),
        updated_at: time(r.updated_at),
    }
}

fn tag_view(t: TagDetail) -> api::TagView {
    api::TagView {
        name: t.tag.to_string(),
        digest: t.digest.to_string(),
        media_type: t.media_type,
        size: t.size,
        updated_at: time(t.updated_at),
    }
}

fn manifest_view(m: ManifestInfo) -> api::ManifestView {
    let d = m.detail;
    api::ManifestView {
        digest: d.digest.to_string(),
        media_type: d.media_type,
        artifact_type: d.artifact_type,
        subject: d.subject.map(|s| s.to_string()),
        size: d.size,
        tags: d.tags.iter().map(ToString::to_string).collect(),
        created_at: time(d.created_at),
        children: m
            .children
            .into_iter()
            .map(|c| api::ManifestChildView {
                digest: c.digest.to_string(),
                media_type: c.media_type,
                size: c.size,
                platform: c.platform.map(|p| p.to_string()),
            })
            .collect(),
    }
}

/// `GET /berth/v1/repositories?n=&last=`: a page of repositories with what each holds.
async fn list(
    _: Admin,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<api::RepositoryList>, ApiError> {
    let page = Page::parse(query.as_deref())?;
    let found = state
        .registry
        .repositories()
        .summaries(page.selection())
        .await
        .map_err(refusal)?;
    let (found, next) = page.cut(found, |r| (r.created_at, r.name.to_string()));
    Ok(Json(api::RepositoryList {
        repositories: found.into_iter().map(repository_view).collect(),
        next,
    }))
}

/// Every route under `/berth/v1/repositories/{name}`.
async fn entry(
    _: Admin,
    State(state): State<AppState>,
    method: Method,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let registry = &state.registry;
    match (Target::parse(&path), method) {
        (Target::Repository(name), Method::GET) => {
            let name = repository_name(&state, name)?;
            let summary = registry
                .repositories()
                .summary(&name)
                .await
                .map_err(refusal)?;
            Ok(Json(repository_view(summary)).into_response())
        }
        (Target::Repository(name), Method::DELETE) => {
            let name = repository_name(&state, name)?;
            writable(&state)?;
            let deleted = registry
                .repositories()
                .delete(Origin::Local, &name)
                .await
                .map_err(refusal)?;
            tracing::info!(
                repository = %name,
                manifests = deleted.manifests,
                tags = deleted.tags,
                blob_links = deleted.blob_links,
                "deleted a repository (its blobs' bytes are left to garbage collection)"
            );
            Ok(Json(api::RepositoryDeleted {
                name: name.to_string(),
                manifests_deleted: deleted.manifests,
                tags_deleted: deleted.tags,
                blob_links_removed: deleted.blob_links,
            })
            .into_response())
        }
        (Target::Tags(name), Method::GET) => {
            let name = repository_name(&state, name)?;
            let page = Page::parse(query.as_deref())?;
            let found = registry
                .repositories()
                .tag_details(&name, page.selection())
                .await
                .map_err(refusal)?;
            let (found, next) = page.cut(found, |t| (t.updated_at, t.tag.to_string()));
            Ok(Json(api::TagList {
                repository: name.to_string(),
                tags: found.into_iter().map(tag_view).collect(),
                next,
            })
            .into_response())
        }
        (Target::Tag(name, t), m @ (Method::GET | Method::DELETE)) => {
            let name = repository_name(&state, name)?;
            let t = tag(&name, t)?;
            let detail = if m == Method::DELETE {
                writable(&state)?;
                let detail = registry
                    .repositories()
                    .untag(Origin::Local, &name, &t)
                    .await;
                if let Ok(d) = &detail {
                    tracing::info!(repository = %name, tag = %t, digest = %d.digest, "untagged");
                }
                detail
            } else {
                registry.repositories().tag_detail(&name, &t).await
            };
            let detail = detail.map_err(|e| match e {
                RegistryError::ManifestUnknown(_) => ApiError::management(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!("repository `{name}` has no tag `{t}`"),
                ),
                e => refusal(e),
            })?;
            Ok(Json(tag_view(detail)).into_response())
        }
        (Target::Manifests(name), Method::GET) => {
            let name = repository_name(&state, name)?;
            let page = Page::parse(query.as_deref())?;
            let found = registry
                .repositories()
                .manifest_details(&name, page.selection())
                .await
                .map_err(refusal)?;
            let (found, next) = page.cut(found, |m| {
                (m.detail.created_at, m.detail.digest.to_string())
            });
            Ok(Json(api::ManifestList {
                repository: name.to_string(),
                manifests: found.into_iter().map(manifest_view).collect(),
                next,
            })
            .into_response())
        }
        (Target::Manifest(name, d), m @ (Method::GET | Method::DELETE)) => {
            let name = repository_name(&state, name)?;
            let d = digest(&name, d)?;
            let unknown = |e| match e {
                RegistryError::ManifestUnknown(_) => ApiError::management(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!("repository `{name}` has no manifest `{d}`"),
                ),
                e => refusal(e),
            };
            let info = registry
                .repositories()
                .manifest_detail(&name, &d)
                .await
                .map_err(unknown)?;
            if m == Method::DELETE {
                writable(&state)?;
                registry
                    .delete_manifest_from(
                        Origin::Local,
                        &name,
                        &berth_oci::Reference::Digest(d.clone()),
                    )
                    .await
                    .map_err(unknown)?;
                tracing::info!(repository = %name, digest = %d, tags = info.detail.tags.len(), "deleted a manifest");
            }
            Ok(Json(manifest_view(info)).into_response())
        }
        (_, method) => Err(ApiError::method_not_allowed(&method)),
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn paths_are_read_from_their_end() {
        let cases = [
            ("app", Target::Repository("app")),
            ("team/app", Target::Repository("team/app")),
            ("team/app/_tags", Target::Tags("team/app")),
            ("team/app/_tags/v1", Target::Tag("team/app", "v1")),
            ("app/_manifests", Target::Manifests("app")),
            (
                "a/b/c/_manifests/sha256:00",
                Target::Manifest("a/b/c", "sha256:00"),
            ),
            // A repository may be named like the words, as long as they are not last.
            ("tags/_tags", Target::Tags("tags")),
            ("_tags/v1/_tags", Target::Tags("_tags/v1")),
            // Nothing before the word: a name (which the grammar then refuses).
            ("_tags", Target::Repository("_tags")),
            ("_tags/v1", Target::Repository("_tags/v1")),
            ("", Target::Repository("")),
        ];
        for (path, expected) in cases {
            assert_eq!(Target::parse(path), expected, "{path}");
        }
    }
}
