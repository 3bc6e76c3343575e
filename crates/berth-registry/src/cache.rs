//! A small read cache of manifests by repository and reference (tag or digest).
//!
//! Manifest reads by tag are the hottest request a registry serves (every `pull` and every
//! kubelet start asks), so they are answered from memory when possible.
//!
//! Invariant: an entry is served only if no manifest or tag changed since it was read. The
//! cache's generation is the [`Topic::Content`](berth_notify::Topic::Content) generation of
//! the registry's notifier, which every write bumps *after* its transaction commits; a reader
//! records the generation *before* it reads the database. So an entry filled from a read that
//! raced with a write carries an older generation than the write's bump and is never served.
//! With several nodes sharing one database, a shared notifier bumps the generation on every
//! node for every node's writes (an entry may then be served until the notification arrives).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::metadata::StoredManifest;

/// Entries kept at most; the cache is emptied when it would grow past this.
const MAX_ENTRIES: usize = 4096;
/// Manifest bytes kept at most.
const MAX_BYTES: usize = 64 << 20;

#[derive(Default)]
pub(crate) struct ManifestCache {
    entries: RwLock<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<(String, String), (u64, Arc<StoredManifest>)>,
    bytes: usize,
}

impl ManifestCache {
    /// The entry for `(repository, reference)` if it was read at generation `current`.
    pub(crate) fn get(
        &self,
        repository: &str,
        reference: &str,
        current: u64,
    ) -> Option<Arc<StoredManifest>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .map
            .get(&(repository.to_owned(), reference.to_owned()))
            .filter(|(generation, _)| *generation == current)
            .map(|(_, m)| Arc::clone(m))
    }

    /// Keeps `manifest`, read from the database after generation `generation` was recorded.
    pub(crate) fn insert(
        &self,
        repository: &str,
        reference: &str,
        generation: u64,
        manifest: Arc<StoredManifest>,
    ) {
        if manifest.content.len() > MAX_BYTES / 16 {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.map.len() >= MAX_ENTRIES || entries.bytes + manifest.content.len() > MAX_BYTES {
            entries.map.clear();
            entries.bytes = 0;
        }
        entries.bytes += manifest.content.len();
        if let Some((_, old)) = entries.map.insert(
            (repository.to_owned(), reference.to_owned()),
            (generation, manifest),
        ) {
            entries.bytes -= old.content.len();
        }
    }
}
