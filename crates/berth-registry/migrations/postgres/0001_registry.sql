-- The registry's metadata on PostgreSQL: the same tables as the embedded SQLite database
-- (migrations/sqlite, 0001 to 0004), in one step, with PostgreSQL's types. Later changes
-- get a migration in each folder. Every write transaction that touches content takes one
-- transaction-level advisory lock (see src/metadata/postgres.rs), so writers commit one
-- after another, as on SQLite, and the change log's sequence is commit order.

CREATE TABLE repositories (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- A blob is readable in a repository only through a link.
CREATE TABLE repository_blobs (
    repository_id  BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT COLLATE "C" NOT NULL,
    size           BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

CREATE TABLE manifests (
    repository_id  BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT COLLATE "C" NOT NULL,
    media_type     TEXT NOT NULL,
    size           BIGINT NOT NULL,
    content        BYTEA NOT NULL,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;

CREATE TABLE manifest_references (
    repository_id    BIGINT NOT NULL,
    manifest_digest  TEXT COLLATE "C" NOT NULL,
    target_digest    TEXT COLLATE "C" NOT NULL,
    target_kind      TEXT NOT NULL CHECK (target_kind IN ('blob', 'manifest')),
    PRIMARY KEY (repository_id, manifest_digest, target_digest, target_kind),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_references_target ON manifest_references(repository_id, target_digest);
CREATE INDEX manifest_references_any_target ON manifest_references(target_digest);

CREATE TABLE tags (
    repository_id  BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name           TEXT COLLATE "C" NOT NULL,
    digest         TEXT COLLATE "C" NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_digest ON tags(repository_id, digest);
CREATE INDEX tags_by_time ON tags(repository_id, updated_at);

-- Upload sessions with their progress, so any node can continue one.
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    received    BIGINT NOT NULL DEFAULT 0,
    hash_state  BYTEA,
    updated_at  BIGINT
);

-- Every change to repository content, in commit order (sequence numbers are taken under
-- the writers' lock, so no transaction commits a smaller one after a larger one is seen).
CREATE TABLE changes (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository  TEXT NOT NULL,
    action      TEXT NOT NULL,
    digest      TEXT,
    tag         TEXT,
    media_type  TEXT,
    at          BIGINT NOT NULL,
    origin      TEXT NOT NULL DEFAULT 'local'
);
CREATE INDEX changes_repository ON changes(repository, seq);

-- Every blob the store holds, as garbage collection sees it (see the SQLite migration 0004
-- and ARCHITECTURE.md).
CREATE TABLE blobs (
    digest      TEXT COLLATE "C" PRIMARY KEY,
    size        BIGINT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('present', 'deleting')),
    updated_at  BIGINT NOT NULL,  -- Unix milliseconds
    generation  BIGINT NOT NULL
);
CREATE INDEX blobs_collectable ON blobs(state, updated_at);

CREATE TABLE gc_runs (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at         BIGINT NOT NULL,
    finished_at        BIGINT,
    dry_run            BOOLEAN NOT NULL,
    outcome            TEXT NOT NULL,
    blobs_removed      BIGINT NOT NULL,
    bytes_freed        BIGINT NOT NULL,
    manifests_removed  BIGINT NOT NULL,
    tags_removed       BIGINT NOT NULL,
    uploads_removed    BIGINT NOT NULL
);
