-- What connected registries' instances report, and the problems the root itself saw for
-- them: kept in the store (not in one process's memory), so every process sharing the store
-- shows the same status. Not identity changes: nothing here enters identity_changes.

CREATE TABLE connected_status (
    name         TEXT PRIMARY KEY,   -- the connected registry
    body         TEXT NOT NULL,      -- JSON: the last report of its active instance
    reported_at  INTEGER NOT NULL
);

CREATE TABLE connected_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    registry     TEXT NOT NULL,
    code         TEXT NOT NULL,
    description  TEXT NOT NULL,
    at           INTEGER NOT NULL,
    resolved_at  INTEGER            -- NULL while the problem lasts
);
CREATE INDEX connected_events_registry ON connected_events(registry, resolved_at);
