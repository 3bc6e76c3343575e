-- Identities on PostgreSQL: the same tables as the embedded SQLite database
-- (migrations/sqlite, 0001 to 0004), in one step, with PostgreSQL's types. Later changes get
-- a migration in each folder. Writers take one transaction-level advisory lock (see
-- src/postgres.rs), so the identity change log's sequence is commit order.

CREATE TABLE scope_maps (
    name        TEXT COLLATE "C" PRIMARY KEY,
    body        TEXT NOT NULL,   -- JSON: description and rules
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    name        TEXT COLLATE "C" PRIMARY KEY,
    scope_map   TEXT NOT NULL,
    body        TEXT NOT NULL,   -- JSON: status and password slots (hashes)
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX tokens_scope_map ON tokens(scope_map);

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL     -- JSON
);

CREATE TABLE admin (
    id             BIGINT PRIMARY KEY CHECK (id = 1),
    username       TEXT NOT NULL,
    password_hash  TEXT NOT NULL,   -- Argon2id PHC string
    updated_at     BIGINT NOT NULL
);

-- Every identity change, in commit order, so other nodes and connected registries follow.
CREATE TABLE identity_changes (
    seq   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind  TEXT NOT NULL,
    name  TEXT NOT NULL,
    at    BIGINT NOT NULL
);

CREATE TABLE connected_registries (
    name        TEXT COLLATE "C" PRIMARY KEY,
    parent      TEXT,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX connected_registries_parent ON connected_registries(parent);

CREATE TABLE connected_status (
    name         TEXT PRIMARY KEY,
    body         TEXT NOT NULL,
    reported_at  BIGINT NOT NULL
);

CREATE TABLE connected_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registry     TEXT NOT NULL,
    code         TEXT NOT NULL,
    description  TEXT NOT NULL,
    at           BIGINT NOT NULL,
    resolved_at  BIGINT
);
CREATE INDEX connected_events_registry ON connected_events(registry, resolved_at);

CREATE TABLE keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
