-- The audit log (as migrations/sqlite/0005_audit.sql): one row per management action.
CREATE TABLE audit (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    client    TEXT NOT NULL,
    action    TEXT NOT NULL,
    resource  TEXT NOT NULL,
    status    BIGINT NOT NULL,
    before    TEXT,
    after     TEXT
);
CREATE INDEX audit_at ON audit(at);
