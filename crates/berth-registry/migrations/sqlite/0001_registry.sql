-- The registry's metadata: repositories, the blobs each may read, manifests, tags, the
-- references between them, upload sessions, and the change log.

CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- A blob is readable in a repository only through a link, so that a digest pushed to one
-- repository cannot be read through another one the caller may read.
CREATE TABLE repository_blobs (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    size           INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

-- Manifests keep the exact bytes pushed: they are small (limited by configuration), and
-- keeping them here makes a manifest and its bytes appear in one transaction.
CREATE TABLE manifests (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    size           INTEGER NOT NULL,
    content        BLOB NOT NULL,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX manifests_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;

-- What each manifest references: blobs (config, layers) and child manifests (of an index).
CREATE TABLE manifest_references (
    repository_id    INTEGER NOT NULL,
    manifest_digest  TEXT NOT NULL,
    target_digest    TEXT NOT NULL,
    target_kind      TEXT NOT NULL CHECK (target_kind IN ('blob', 'manifest')),
    PRIMARY KEY (repository_id, manifest_digest, target_digest, target_kind),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX manifest_references_target ON manifest_references(repository_id, target_digest);

CREATE TABLE tags (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    digest         TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX tags_digest ON tags(repository_id, digest);

CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Every change to repository content, in commit order. Written in the same transaction as
-- the change itself; connected registries and webhooks read it by sequence number.
CREATE TABLE changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    repository  TEXT NOT NULL,
    action      TEXT NOT NULL,
    digest      TEXT,
    tag         TEXT,
    media_type  TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX changes_repository ON changes(repository, seq);
