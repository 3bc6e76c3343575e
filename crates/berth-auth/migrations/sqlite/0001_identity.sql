-- Identities: scope maps, tokens (with password hashes, never passwords), registry
-- settings, the admin account, and a log of identity changes for connected registries.

CREATE TABLE scope_maps (
    name        TEXT PRIMARY KEY,
    body        TEXT NOT NULL,   -- JSON: description and rules
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE tokens (
    name        TEXT PRIMARY KEY,
    scope_map   TEXT NOT NULL,
    body        TEXT NOT NULL,   -- JSON: status and password slots (hashes)
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX tokens_scope_map ON tokens(scope_map);

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL     -- JSON
);

CREATE TABLE admin (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    username       TEXT NOT NULL,
    password_hash  TEXT NOT NULL,   -- Argon2id PHC string
    updated_at     INTEGER NOT NULL
);

-- Every identity change, in order, so connected registries can follow them.
CREATE TABLE identity_changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,   -- token, scope_map, settings
    name  TEXT NOT NULL,
    at    INTEGER NOT NULL
);
