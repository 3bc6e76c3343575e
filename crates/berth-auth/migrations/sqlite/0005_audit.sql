-- The audit log: one row per management action (who, from where, what, and for settings the
-- value before and after). Never a secret: the server writes only names, addresses and
-- settings views. Pruned by age (`audit_retention`); not identity changes.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,      -- the admin's user name, or the token that acted
    client    TEXT NOT NULL,      -- the client address
    action    TEXT NOT NULL,      -- `<METHOD> <route>`
    resource  TEXT NOT NULL,      -- the path acted on
    status    INTEGER NOT NULL,   -- the answer's status code
    before    TEXT,               -- JSON, settings only
    after     TEXT                -- JSON, settings only
);
CREATE INDEX audit_at ON audit(at);
