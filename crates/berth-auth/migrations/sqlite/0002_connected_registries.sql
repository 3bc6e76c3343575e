-- Connected registries defined on this (root) registry, whatever their parent.
CREATE TABLE connected_registries (
    name        TEXT PRIMARY KEY,
    parent      TEXT,
    body        TEXT NOT NULL,   -- JSON: mode, repositories, tokens, sync settings, activation, status
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX connected_registries_parent ON connected_registries(parent);
