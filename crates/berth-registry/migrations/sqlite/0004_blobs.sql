-- Every blob the store holds, as garbage collection sees it: when it was last uploaded or
-- linked (in milliseconds), and whether a collection is deleting it. A blob being stored
-- claims its row first (`present`, now), and a collection turns a row to `deleting` only if
-- it is unchanged since it was seen and no manifest references the blob; so a blob uploaded,
-- mounted or fetched while a collection runs is never removed (see ARCHITECTURE.md).
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('present', 'deleting')),
    updated_at  INTEGER NOT NULL   -- Unix milliseconds
) WITHOUT ROWID;
CREATE INDEX blobs_collectable ON blobs(state, updated_at);

INSERT INTO blobs (digest, size, state, updated_at)
    SELECT digest, MAX(size), 'present', MAX(created_at) * 1000 FROM repository_blobs GROUP BY digest;

-- "Does any manifest, in any repository, reference this blob?" in one index lookup.
CREATE INDEX manifest_references_any_target ON manifest_references(target_digest);

-- The collections that ran, newest last; the last few are kept.
CREATE TABLE gc_runs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    dry_run            INTEGER NOT NULL,
    outcome            TEXT NOT NULL,   -- running, finished, stopped, failed: <why>
    blobs_removed      INTEGER NOT NULL,
    bytes_freed        INTEGER NOT NULL,
    manifests_removed  INTEGER NOT NULL,
    tags_removed       INTEGER NOT NULL,
    uploads_removed    INTEGER NOT NULL
);
